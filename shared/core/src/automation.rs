//! Rules, stored and run: the admin API's rule repository (versioned writes), the `rules`
//! function's evaluation of an event (audit entry for every rule, one `action.requested` per
//! action of each match, loop protection), the hourly time-based rules, and the simulation
//! that replays stored events through a rule without side effects. Executing the requested
//! actions is [`crate::actions`].

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::domain::{Rating, Review, TenantSettings, TicketSnapshot};
use crate::event::{EventEnvelope, EventType, MAX_EVENT_DEPTH};
use crate::ids::{RuleId, TenantId, TicketId};
use crate::keys;
use crate::outbox::outbox_put;
use crate::records::{read_record, record_item};
use crate::rules::{Action, FactContext, Facts, Rule, RuleDraft, RuleOutcome, RuleSet, Trigger};
use crate::store::{
    Condition, Index, Item, ItemStore, Key, Query, SortKeyCondition, StoreError, TTL_ATTRIBUTE,
    Value, WriteOp,
};

#[derive(Debug, thiserror::Error)]
pub enum AutomationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no rule {0}")]
    RuleNotFound(RuleId),
    #[error(
        "rule {id} is at version {current}, not {given}: someone else changed it; read it again and re-apply your change"
    )]
    VersionConflict {
        id: RuleId,
        given: u64,
        current: u64,
    },
    #[error("an update must say which version it changes (`version`, from the rule as read)")]
    VersionMissing,
    #[error(transparent)]
    InvalidRule(crate::rules::RuleError),
}

impl AutomationError {
    pub fn is_transient(&self) -> bool {
        matches!(self, AutomationError::Store(e) if e.is_transient())
    }
}

/// The payload of `action.requested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRequest {
    pub rule_id: RuleId,
    pub rule_name: String,
    pub action_index: usize,
    pub action: Action,
    /// The event that made the rule match.
    pub cause: EventEnvelope,
}

impl ActionRequest {
    /// The key that makes this action run once: (event, rule, action).
    pub fn claim(&self) -> String {
        format!(
            "action#{}#{}#{}",
            self.cause.event_id, self.rule_id, self.action_index
        )
    }
}

// ── The rule repository ──────────────────────────────────────────────────────────────────────

const VERSION: &str = "version";
const REVISION: &str = "revision";

/// Every rule write bumps the tenant's rules revision in the same transaction, so a warm
/// `rules` function re-reads a tenant's rules only when one changed (one point read per event).
fn bump_revision(tenant: &TenantId) -> WriteOp {
    WriteOp::Update {
        key: keys::rules_revision(tenant),
        update: crate::store::Update::new().add(REVISION, 1),
        condition: None,
    }
}

/// The tenant's rules revision (0 before the first rule write).
pub async fn rules_revision(store: &dyn ItemStore, tenant: &TenantId) -> Result<i64, StoreError> {
    use crate::store::ItemExt;
    Ok(store
        .get(&keys::rules_revision(tenant))
        .await?
        .and_then(|i| i.i64_attr(REVISION))
        .unwrap_or(0))
}

async fn write_rule(
    store: &dyn ItemStore,
    tenant: &TenantId,
    rule: &Rule,
    condition: Option<Condition>,
) -> Result<(), StoreError> {
    let put = WriteOp::Put {
        item: rule_item(tenant, rule),
        condition,
    };
    store.transact_write(vec![put, bump_revision(tenant)]).await
}

fn rule_item(tenant: &TenantId, rule: &Rule) -> Item {
    let mut item = record_item(&keys::rule(tenant, rule.id), "rule", rule);
    item.insert(VERSION.into(), Value::n(rule.version as i64));
    item
}

pub async fn create_rule(
    store: &dyn ItemStore,
    tenant: &TenantId,
    draft: RuleDraft,
    now: DateTime<Utc>,
) -> Result<Rule, AutomationError> {
    if let Some(e) = draft.missing_secret() {
        return Err(AutomationError::InvalidRule(e));
    }
    let rule = draft.into_rule(RuleId::new(), now);
    write_rule(store, tenant, &rule, Some(Condition::item_absent())).await?;
    Ok(rule)
}

/// Stores a rule as it is (the demo set-up and tests).
pub async fn save_rule(
    store: &dyn ItemStore,
    tenant: &TenantId,
    rule: &Rule,
) -> Result<(), StoreError> {
    write_rule(store, tenant, rule, None).await
}

pub async fn get_rule(
    store: &dyn ItemStore,
    tenant: &TenantId,
    id: RuleId,
) -> Result<Option<Rule>, StoreError> {
    store
        .get(&keys::rule(tenant, id))
        .await?
        .map(|item| read_record(&item))
        .transpose()
}

/// Replaces a rule if it is still at the version the writer read: two admins editing at once
/// get a conflict, never a lost update.
pub async fn update_rule(
    store: &dyn ItemStore,
    tenant: &TenantId,
    id: RuleId,
    mut draft: RuleDraft,
    now: DateTime<Utc>,
) -> Result<Rule, AutomationError> {
    let given = draft.version.ok_or(AutomationError::VersionMissing)?;
    let current = get_rule(store, tenant, id)
        .await?
        .ok_or(AutomationError::RuleNotFound(id))?;
    draft.keep_secrets_of(&current);
    if let Some(e) = draft.missing_secret() {
        return Err(AutomationError::InvalidRule(e));
    }
    if current.version != given {
        return Err(AutomationError::VersionConflict {
            id,
            given,
            current: current.version,
        });
    }
    let rule = Rule {
        id,
        version: given + 1,
        created_at: current.created_at,
        updated_at: now,
        ..draft.into_rule(id, now)
    };
    write_versioned(store, tenant, &rule, given).await?;
    Ok(rule)
}

/// Switches a rule on or off (a new version; no version check, as the switch is the whole
/// change).
pub async fn set_enabled(
    store: &dyn ItemStore,
    tenant: &TenantId,
    id: RuleId,
    enabled: bool,
    now: DateTime<Utc>,
) -> Result<Rule, AutomationError> {
    for _ in 0..3 {
        let current = get_rule(store, tenant, id)
            .await?
            .ok_or(AutomationError::RuleNotFound(id))?;
        if current.enabled == enabled {
            return Ok(current);
        }
        let rule = Rule {
            enabled,
            version: current.version + 1,
            updated_at: now,
            ..current.clone()
        };
        match write_versioned(store, tenant, &rule, current.version).await {
            Ok(()) => return Ok(rule),
            Err(AutomationError::VersionConflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Transient("the rule keeps changing; try again".into()).into())
}

async fn write_versioned(
    store: &dyn ItemStore,
    tenant: &TenantId,
    rule: &Rule,
    expected: u64,
) -> Result<(), AutomationError> {
    match write_rule(
        store,
        tenant,
        rule,
        Some(Condition::eq(VERSION, Value::n(expected as i64))),
    )
    .await
    {
        Ok(()) => Ok(()),
        Err(e) if e.condition_failed_at(0) => match get_rule(store, tenant, rule.id).await? {
            Some(now) => Err(AutomationError::VersionConflict {
                id: rule.id,
                given: expected,
                current: now.version,
            }),
            None => Err(AutomationError::RuleNotFound(rule.id)),
        },
        Err(e) => Err(e.into()),
    }
}

/// Deletes a rule for good. `false` if there was none.
pub async fn delete_rule(
    store: &dyn ItemStore,
    tenant: &TenantId,
    id: RuleId,
) -> Result<bool, StoreError> {
    let delete = WriteOp::Delete {
        key: keys::rule(tenant, id),
        condition: Some(Condition::item_present()),
    };
    match store
        .transact_write(vec![delete, bump_revision(tenant)])
        .await
    {
        Ok(()) => Ok(true),
        Err(e) if e.condition_failed_at(0) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The tenant's rules (one partition; a tenant has at most a few thousand... or ten thousand).
pub async fn load_rules(store: &dyn ItemStore, tenant: &TenantId) -> Result<Vec<Rule>, StoreError> {
    let mut rules = Vec::new();
    let mut start = None;
    loop {
        let page = store
            .query(
                Query::partition(keys::rules_partition(tenant))
                    .sk(SortKeyCondition::BeginsWith("RULE#".into()))
                    .start_after(start),
            )
            .await?;
        for item in &page.items {
            rules.push(read_record(item)?);
        }
        match page.last_evaluated {
            Some(last) => start = Some(last),
            None => return Ok(rules),
        }
    }
}

// ── The audit trail ──────────────────────────────────────────────────────────────────────────

/// What an audit entry is about: the event's ticket, else its review.
pub fn audit_partition_of(event: &EventEnvelope) -> Option<String> {
    if let Some(ticket) = event.ticket_id() {
        return Some(keys::audit_partition(&event.tenant_id, &ticket));
    }
    review_ref(&event.data["review"]).map(|r| keys::review_audit_partition(&event.tenant_id, &r))
}

/// A review's reference in audit keys: its survey request, or `source:response id`.
pub fn review_ref(review: &Json) -> Option<String> {
    review["survey_request_id"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            let p = &review["provider"];
            Some(format!(
                "{}:{}",
                p["source"].as_str()?,
                p["response_id"].as_str()?
            ))
        })
}

/// An audit entry under a stable key (so a redelivery rewrites it rather than adding one).
pub fn audit_put(
    event: &EventEnvelope,
    at: DateTime<Utc>,
    suffix: &str,
    entry: Json,
) -> Option<WriteOp> {
    let partition = audit_partition_of(event)?;
    let key = Key::new(
        partition,
        format!("{}#{}#{suffix}", keys::sortable_time(at), event.event_id),
    );
    Some(WriteOp::put(record_item(&key, "audit", &entry)))
}

/// Every audit entry of an audit partition, oldest first (up to 1,000).
async fn audit_entries(store: &dyn ItemStore, partition: String) -> Result<Vec<Json>, StoreError> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = store
            .query(Query::partition(partition.clone()).start_after(start))
            .await?;
        out.extend(page.items.iter().filter_map(|i| read_record(i).ok()));
        match page.last_evaluated {
            Some(last) if out.len() < 1000 => start = Some(last),
            _ => return Ok(out),
        }
    }
}

/// A ticket's audit trail: every rule evaluation and action, oldest first.
pub async fn audit_trail(
    store: &dyn ItemStore,
    tenant: &TenantId,
    ticket: &TicketId,
) -> Result<Vec<Json>, StoreError> {
    audit_entries(store, keys::audit_partition(tenant, ticket)).await
}

/// A review's audit trail: the entries about it (on its ticket's trail, or its own).
pub async fn review_audit_trail(
    store: &dyn ItemStore,
    tenant: &TenantId,
    ticket: Option<&TicketId>,
    review: &str,
) -> Result<Vec<Json>, StoreError> {
    let mut entries = match ticket {
        Some(t) => audit_trail(store, tenant, t).await?,
        None => Vec::new(),
    };
    entries.retain(|e| e["review"].as_str() == Some(review));
    entries.extend(audit_entries(store, keys::review_audit_partition(tenant, review)).await?);
    Ok(entries)
}

// ── Evaluating an event ──────────────────────────────────────────────────────────────────────

/// How a rule fared on an event, beyond its conditions.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Verdict {
    Matched {
        actions_requested: usize,
    },
    NotMatched,
    /// A rule never re-fires on a chain it started (or an echo of its own change).
    SkippedOwnChain,
    /// The chain reached the depth limit: nothing was evaluated.
    StoppedAtDepth {
        depth: u32,
    },
}

/// What the rules function decided for one event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    pub verdicts: Vec<(RuleId, Verdict)>,
    /// Rules whose actions were requested now (not on an earlier delivery).
    pub requested: Vec<RuleId>,
}

/// Events the rules saw are kept this long for the simulation.
pub const HISTORY_DAYS: i64 = 90;
/// Outcomes per audit item, so a tenant with thousands of rules stays under the item size.
const OUTCOMES_PER_AUDIT_ITEM: usize = 200;

/// Looks up what the event does not carry and builds its facts: the ticket snapshot (review and
/// case events), the account's detractor state, the tenant's clock.
pub async fn facts_for(
    store: &dyn ItemStore,
    settings: &TenantSettings,
    event: &EventEnvelope,
    at: DateTime<Utc>,
) -> Result<Facts, StoreError> {
    let data = &event.data;
    // Review and case events name their ticket; ticket events carry it whole.
    let snapshot = if data["ticket"]["subject"].is_null() {
        crate::actions::ticket_of(store, event).await?
    } else {
        None
    };
    let account = data["ticket"]["contact"]["account"]["id"]
        .as_str()
        .or_else(|| data["review"]["account_id"].as_str())
        .or_else(|| {
            snapshot
                .as_ref()
                .and_then(|s| s.contact.account.as_ref().map(|a| a.id.as_str()))
        })
        .and_then(|a| crate::ids::AccountId::parse(a).ok());
    // The daily sweep's verdict, as the account's helpdesk record shows it.
    let flagged = match account {
        Some(a) => Some(crate::detractors::flagged_detractor(store, &event.tenant_id, &a).await?),
        None => None,
    };
    let agents_in_working_hours = crate::tenancy::list_agents(store, &event.tenant_id)
        .await?
        .into_iter()
        .filter(|a| {
            a.working_hours
                .as_ref()
                .is_some_and(|h| h.is_business_time(at))
        })
        .map(|a| a.id.as_str().to_string())
        .collect();
    let ctx = FactContext {
        ticket: snapshot.as_ref(),
        time_zone: Some(settings.time_zone.tz()),
        detractor_max_score: settings.detractor_max_score,
        account_flagged_detractor: flagged,
        within_business_hours: settings
            .business_hours
            .as_ref()
            .map(|h| h.is_business_time(at)),
        agents_in_working_hours: Some(agents_in_working_hours),
    };
    Ok(Facts::from_event(event, at, &ctx))
}

/// Evaluates the tenant's enabled rules on an event. For every rule of the event's triggers the
/// audit trail records the outcome (matched, or the first condition that failed and why); each
/// match writes its decision marker and one `action.requested` per action in one transaction,
/// so a redelivered event requests nothing twice. The event and its facts go to the history the
/// simulation replays.
pub async fn evaluate(
    store: &dyn ItemStore,
    rules: &RuleSet,
    settings: &TenantSettings,
    event: &EventEnvelope,
    now: DateTime<Utc>,
) -> Result<Decision, AutomationError> {
    let triggers = Trigger::fired_by(event);
    if triggers.is_empty() {
        return Ok(Decision::default());
    }
    let facts = facts_for(store, settings, event, event.occurred_at).await?;
    store
        .put(history_item(event, &triggers, &facts), None)
        .await?;
    let review = review_ref(&event.data["review"]);
    let mut decision = Decision::default();
    if event.depth >= MAX_EVENT_DEPTH {
        if triggers.iter().any(|t| rules.has_trigger(*t))
            && let Some(put) = audit_put(
                event,
                event.occurred_at,
                "STOPPED",
                json!({"kind": "chain_stopped", "event_id": event.event_id,
                    "event_type": event.event_type, "review": review, "depth": event.depth,
                    "reason": format!("the chain of rule-caused events reached the depth limit of {MAX_EVENT_DEPTH}; no rule was evaluated")}),
            )
        {
            store.transact_write(vec![put]).await?;
        }
        // Nothing is evaluated: every enabled rule of the triggers is simply stopped.
        for t in &triggers {
            for rule in rules.enabled(*t) {
                decision
                    .verdicts
                    .push((rule.id, Verdict::StoppedAtDepth { depth: event.depth }));
            }
        }
        return Ok(decision);
    }
    for trigger in triggers {
        let evaluation = rules.evaluate(trigger, &facts);
        let outcomes = rules.explain(trigger, &facts, &evaluation);
        if outcomes.is_empty() {
            continue;
        }
        let own_chain =
            |id: &RuleId| event.chain_rules.contains(id) || event.performed_by == Some(*id);
        let mut audited: Vec<Json> = Vec::with_capacity(outcomes.len());
        for o in &outcomes {
            let verdict = if own_chain(&o.rule_id) {
                Verdict::SkippedOwnChain
            } else if o.matched {
                Verdict::Matched {
                    actions_requested: 0,
                }
            } else {
                Verdict::NotMatched
            };
            audited.push(outcome_json(o, &verdict));
            decision.verdicts.push((o.rule_id, verdict));
        }
        for (chunk_no, chunk) in audited.chunks(OUTCOMES_PER_AUDIT_ITEM).enumerate() {
            if let Some(put) = audit_put(
                event,
                event.occurred_at,
                &format!("EVAL#{trigger}#{chunk_no:04}"),
                json!({"kind": "rules_evaluated", "event_id": event.event_id,
                    "event_type": event.event_type, "trigger": trigger, "review": review,
                    "depth": event.depth, "performed_by": event.performed_by,
                    "facts": facts.to_json(), "rules": chunk}),
            ) {
                store.transact_write(vec![put]).await?;
            }
        }
        for &position in &evaluation.matched {
            let rule = rules.rule(position);
            if own_chain(&rule.id) {
                continue;
            }
            if request_actions(store, rule, event, now).await? {
                decision.requested.push(rule.id);
            }
            if let Some((_, Verdict::Matched { actions_requested })) =
                decision.verdicts.iter_mut().find(|(id, _)| *id == rule.id)
            {
                *actions_requested = rule.actions.len();
            }
        }
    }
    Ok(decision)
}

fn outcome_json(o: &RuleOutcome, verdict: &Verdict) -> Json {
    let mut j =
        json!({"rule_id": o.rule_id, "rule_name": o.rule_name, "rule_version": o.rule_version});
    match verdict {
        Verdict::Matched { .. } => j["outcome"] = json!("matched"),
        Verdict::SkippedOwnChain => {
            j["outcome"] = json!("skipped");
            j["reason"] = json!(
                "this rule caused the event (or an echo of its own change): it never re-fires on its own chain"
            );
        }
        _ => {
            j["outcome"] = json!("not_matched");
            j["failed"] = o.failed.clone().unwrap_or(Json::Null);
        }
    }
    j
}

/// One transaction: the (event, rule) marker, then an `action.requested` per action. `false`
/// when an earlier delivery already did it.
async fn request_actions(
    store: &dyn ItemStore,
    rule: &Rule,
    event: &EventEnvelope,
    now: DateTime<Utc>,
) -> Result<bool, AutomationError> {
    let marker = keys::rule_evaluated(&event.tenant_id, event.event_id, rule.id);
    let mut marker_item = marker.to_item();
    marker_item.insert(
        TTL_ATTRIBUTE.into(),
        Value::n((now + Duration::days(HISTORY_DAYS)).timestamp()),
    );
    let mut ops = vec![WriteOp::put_if(marker_item, Condition::item_absent())];
    ops.extend(action_requests(rule, event, now));
    match store.transact_write(ops).await {
        Ok(()) => Ok(true),
        Err(e) if e.condition_failed_at(0) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn action_requests<'a>(
    rule: &'a Rule,
    event: &'a EventEnvelope,
    now: DateTime<Utc>,
) -> impl Iterator<Item = WriteOp> + 'a {
    rule.actions.iter().enumerate().map(move |(index, action)| {
        let request = ActionRequest {
            rule_id: rule.id,
            rule_name: rule.name.clone(),
            action_index: index,
            // Secrets stay in the rule: events travel through queues and dead letters.
            action: action.without_secrets(),
            cause: event.clone(),
        };
        let requested = event.caused(
            EventType::ActionRequested,
            now,
            Some(rule.id),
            serde_json::to_value(&request).expect("action requests serialise"),
        );
        outbox_put(&requested, now)
    })
}

fn month_of(at: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", at.year(), at.month())
}

fn history_item(event: &EventEnvelope, triggers: &[Trigger], facts: &Facts) -> Item {
    let key = Key::new(
        keys::event_history(&event.tenant_id, &month_of(event.occurred_at)),
        format!(
            "{}#{}",
            keys::sortable_time(event.occurred_at),
            event.event_id
        ),
    );
    let mut item = record_item(
        &key,
        "history",
        &json!({"event": event, "triggers": triggers, "facts": facts.to_json()}),
    );
    item.insert(
        TTL_ATTRIBUTE.into(),
        Value::n((event.occurred_at + Duration::days(HISTORY_DAYS)).timestamp()),
    );
    item
}

// ── Time-based rules ─────────────────────────────────────────────────────────────────────────

/// Statuses after which a ticket is no longer open.
pub fn is_open_status(status: &str) -> bool {
    !matches!(
        status.to_ascii_lowercase().as_str(),
        "closed" | "resolved" | "solved" | "completed" | "complete" | "done" | "cancelled"
    )
}

/// The attributes that list a ticket snapshot in the open-tickets index (none once it closes).
pub fn open_ticket_index_attributes(
    tenant: &TenantId,
    ticket: &TicketSnapshot,
) -> Vec<(String, Value)> {
    if !is_open_status(&ticket.status) {
        return Vec::new();
    }
    vec![
        (
            Index::Gsi2.pk_attribute().into(),
            Value::S(keys::open_tickets_index(tenant)),
        ),
        (
            Index::Gsi2.sk_attribute().into(),
            Value::S(ticket.id.as_str().to_string()),
        ),
    ]
}

/// The hourly run of a tenant's time-based rules over its open tickets: each rule fires at most
/// once per ticket (a marker written with its action requests). Returns how many fired.
pub async fn run_time_based(
    store: &dyn ItemStore,
    tenant: &TenantId,
    rules: &RuleSet,
    settings: &TenantSettings,
    now: DateTime<Utc>,
) -> Result<usize, AutomationError> {
    if !rules.has_trigger(Trigger::TimeBased) {
        return Ok(0);
    }
    let mut fired = 0;
    let mut start = None;
    loop {
        let page = store
            .query(
                Query::on_index(Index::Gsi2, keys::open_tickets_index(tenant))
                    .limit(100)
                    .start_after(start),
            )
            .await?;
        for item in &page.items {
            let Ok(ticket) = read_record::<TicketSnapshot>(item) else {
                continue;
            };
            let cause = EventEnvelope::new_root(
                tenant.clone(),
                EventType::TicketTimeCheck,
                now,
                json!({"ticket": ticket}),
            );
            let facts = facts_for(store, settings, &cause, now).await?;
            let evaluation = rules.evaluate(Trigger::TimeBased, &facts);
            for &position in &evaluation.matched {
                let rule = rules.rule(position);
                let marker = keys::time_rule_fired(tenant, rule.id, &ticket.id);
                let mut ops = vec![WriteOp::put_if(marker.to_item(), Condition::item_absent())];
                if let Some(audit) = audit_put(
                    &cause,
                    now,
                    &format!("TIMED#{}", rule.id),
                    json!({"kind": "rules_evaluated", "event_id": cause.event_id,
                        "event_type": cause.event_type, "trigger": Trigger::TimeBased,
                        "facts": facts.to_json(),
                        "rules": [{"rule_id": rule.id, "rule_name": rule.name,
                            "rule_version": rule.version, "outcome": "matched"}]}),
                ) {
                    ops.push(audit);
                }
                ops.extend(action_requests(rule, &cause, now));
                match store.transact_write(ops).await {
                    Ok(()) => fired += 1,
                    Err(e) if e.condition_failed_at(0) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        match page.last_evaluated {
            Some(last) => start = Some(last),
            None => return Ok(fired),
        }
    }
}

// ── Simulation ───────────────────────────────────────────────────────────────────────────────

/// One stored event the simulated rule would have matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimulatedMatch {
    pub event_id: ulid::Ulid,
    pub event_type: EventType,
    pub occurred_at: DateTime<Utc>,
    pub ticket_id: Option<String>,
    /// The actions that would have run, in order (their kinds).
    pub actions: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Simulation {
    pub events_replayed: usize,
    pub matched: Vec<SimulatedMatch>,
    /// The first few events that did not match, with the condition that failed.
    pub not_matched_examples: Vec<Json>,
}

/// Replays the stored events of `[from, to)` through `rule` (saved or not), with the facts the
/// live engine saw. Writes nothing. Time-based rules are not replayed: they read the open
/// tickets of each hour, which the history does not hold.
pub async fn simulate(
    store: &dyn ItemStore,
    tenant: &TenantId,
    rule: &Rule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Simulation, StoreError> {
    let set = RuleSet::compile([Rule {
        enabled: true,
        ..rule.clone()
    }]);
    let mut result = Simulation {
        events_replayed: 0,
        matched: Vec::new(),
        not_matched_examples: Vec::new(),
    };
    let mut month = DateTime::<Utc>::from_naive_utc_and_offset(
        from.date_naive()
            .with_day(1)
            .expect("day 1 exists")
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists"),
        Utc,
    );
    while month < to {
        let mut start = None;
        loop {
            let page = store
                .query(
                    Query::partition(keys::event_history(tenant, &month_of(month)))
                        .sk(SortKeyCondition::Between(
                            keys::sortable_time(from),
                            format!("{}#~", keys::sortable_time(to - Duration::milliseconds(1))),
                        ))
                        .start_after(start),
                )
                .await?;
            for item in &page.items {
                let Ok(stored) = read_record::<Json>(item) else {
                    continue;
                };
                let Ok(event) = serde_json::from_value::<EventEnvelope>(stored["event"].clone())
                else {
                    continue;
                };
                let triggers: Vec<Trigger> =
                    serde_json::from_value(stored["triggers"].clone()).unwrap_or_default();
                if !triggers.contains(&rule.trigger) {
                    continue;
                }
                result.events_replayed += 1;
                let facts = Facts::from_json(&stored["facts"]);
                let evaluation = set.evaluate(rule.trigger, &facts);
                let own_chain = event.chain_rules.contains(&rule.id);
                if !evaluation.matched.is_empty() && !own_chain && event.depth < MAX_EVENT_DEPTH {
                    result.matched.push(SimulatedMatch {
                        event_id: event.event_id,
                        event_type: event.event_type,
                        occurred_at: event.occurred_at,
                        ticket_id: event.ticket_id().map(|t| t.as_str().to_string()),
                        actions: rule.actions.iter().map(Action::kind).collect(),
                    });
                } else if result.not_matched_examples.len() < 20 {
                    let failed = set
                        .explain(rule.trigger, &facts, &evaluation)
                        .into_iter()
                        .next()
                        .and_then(|o| o.failed);
                    result.not_matched_examples.push(json!({
                        "event_id": event.event_id, "occurred_at": event.occurred_at,
                        "failed": failed,
                        "skipped": own_chain.then_some("the rule caused this event"),
                    }));
                }
            }
            match page.last_evaluated {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        month = next_month(month);
    }
    Ok(result)
}

fn next_month(at: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    DateTime::<Utc>::from_naive_utc_and_offset(
        chrono::NaiveDate::from_ymd_opt(y, m, 1)
            .expect("valid month")
            .and_hms_opt(0, 0, 0)
            .expect("midnight"),
        Utc,
    )
}

/// The rating's words for message templates (`rating.label`).
pub fn rating_label(rating: &Rating) -> String {
    match rating {
        Rating::Csat(v) => match v {
            crate::domain::CsatValue::Positive => "good".into(),
            crate::domain::CsatValue::Neutral => "okay".into(),
            crate::domain::CsatValue::Negative => "bad".into(),
        },
        Rating::Nps(s) => format!("{} out of 10", s.value()),
    }
}

/// The variables action templates see: customer, rating, comment, ticket (with its link),
/// agent, review, the event and the rule.
pub fn message_context(
    cause: &EventEnvelope,
    ticket: Option<&TicketSnapshot>,
    rule_name: &str,
) -> Json {
    let review: Option<Review> = serde_json::from_value(cause.data["review"].clone()).ok();
    let own: Option<TicketSnapshot> = serde_json::from_value(cause.data["ticket"].clone()).ok();
    let ticket = own.as_ref().or(ticket);
    json!({
        "customer": ticket.map(|t| json!({"name": t.contact.name, "email": t.contact.email})),
        "rating": review.as_ref().map(|r| json!({
            "kind": r.rating.kind(), "value": r.rating.value_string(), "label": rating_label(&r.rating)})),
        "comment": review.as_ref().and_then(|r| r.comment.as_ref().map(|c| c.as_str().to_string())),
        "ticket": ticket.map(|t| json!({"id": t.id, "subject": t.subject, "status": t.status,
            "url": t.url, "type": t.ticket_type})),
        "agent": ticket.and_then(|t| t.agent.as_ref()).map(|a| json!({"id": a.id, "name": a.name, "email": a.email})),
        "review": cause.data["review"],
        "case": cause.data["case"],
        "event": cause.data,
        "rule": rule_name,
    })
}
