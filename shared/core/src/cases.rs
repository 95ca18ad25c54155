//! Cases: the follow-up on a review until someone closes the loop, and the SLA in business
//! hours that says whether it was closed in time. `docs/cases.md` describes the behaviour.
//!
//! Every change to a case is one transaction: the case item (a whole put, guarded by the
//! `revision` it was read at, so two changes cannot interleave), its history entry, and the
//! events it causes. The case item carries its own index keys: GSI1 `CASES_OPEN` by deadline
//! while it is open, has a deadline and is not yet breached (the SLA sweep reads only the due
//! ones), and GSI2 `CASES` by opening time always (the list and the reports read a range).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::calendar::BusinessCalendar;
use crate::domain::{Case, CaseOrigin, CaseStatus};
use crate::event::{EventEnvelope, EventType};
use crate::helpdesk::{ConnectorDirectory, ConnectorError};
use crate::ids::{
    AccountId, AgentId, CaseId, ContactId, RuleId, SurveyRequestId, TenantId, TicketId,
};
use crate::keys;
use crate::outbox::outbox_put;
use crate::records::{read_record, record_item};
use crate::store::{
    CancelReason, Condition, Index, Item, ItemExt, ItemStore, Key, Query, SortKeyCondition,
    StoreError, Value, WriteOp,
};
use crate::sweeps::SweepReport;

// ── Settings: the SLA policy and the close options ───────────────────────────────────────────

/// The longest SLA accepted: a year of 40-hour weeks.
pub const MAX_SLA_HOURS: u32 = 2080;
pub const MAX_CLOSE_OPTIONS: usize = 50;
pub const MAX_LABEL_CHARS: usize = 80;

/// The tenant's SLA: on or off, and the business hours within which a case must close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    pub enabled: bool,
    /// Business hours from opening to closing (by the tenant's `business_hours`, 24/7 without).
    #[serde(default)]
    pub close_within_hours: u32,
}

impl SlaPolicy {
    pub fn validate(&self) -> Result<(), CaseError> {
        if self.enabled && self.close_within_hours == 0 {
            return Err(CaseError::invalid(
                "close_within_hours",
                "must be at least 1 when the SLA is on",
            ));
        }
        if self.close_within_hours > MAX_SLA_HOURS {
            return Err(CaseError::invalid(
                "close_within_hours",
                format!("must be at most {MAX_SLA_HOURS} business hours"),
            ));
        }
        Ok(())
    }
}

/// A resolution a case can be closed with. Retired options stay listed (closed cases name
/// them) but close nothing new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseOption {
    pub id: String,
    pub label: String,
    #[serde(default)]
    pub retired: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSettings {
    pub sla: SlaPolicy,
    pub close_options: Vec<CloseOption>,
}

impl Default for CaseSettings {
    /// What a tenant has before an admin changes anything: SLA off, three common resolutions.
    fn default() -> Self {
        let option = |id: &str, label: &str| CloseOption {
            id: id.into(),
            label: label.into(),
            retired: false,
        };
        CaseSettings {
            sla: SlaPolicy {
                enabled: false,
                close_within_hours: 8,
            },
            close_options: vec![
                option("called-customer", "Called the customer"),
                option("issue-fixed", "Issue fixed"),
                option("no-response", "No response"),
            ],
        }
    }
}

impl CaseSettings {
    fn active_ids(&self) -> String {
        let ids: Vec<_> = self
            .close_options
            .iter()
            .filter(|o| !o.retired)
            .map(|o| o.id.as_str())
            .collect();
        if ids.is_empty() {
            "none: add one with POST /admin/v1/close-options".into()
        } else {
            ids.join(", ")
        }
    }

    /// The option an admin names by id; a retired one is refused.
    pub fn option(&self, id: &str) -> Result<&CloseOption, CaseError> {
        let found = self
            .close_options
            .iter()
            .find(|o| o.id == id)
            .ok_or_else(|| CaseError::UnknownOption {
                given: clip(id),
                known: self.active_ids(),
            })?;
        if found.retired {
            return Err(CaseError::RetiredOption {
                id: found.id.clone(),
                known: self.active_ids(),
            });
        }
        Ok(found)
    }

    /// The option a rule's `close_case` resolution means: its id, else its label (ignoring
    /// case and surrounding spaces).
    pub fn option_for_resolution(&self, resolution: &str) -> Result<&CloseOption, CaseError> {
        let wanted = resolution.trim();
        match self.close_options.iter().find(|o| {
            o.id.eq_ignore_ascii_case(wanted) || o.label.trim().eq_ignore_ascii_case(wanted)
        }) {
            Some(o) => self.option(&o.id),
            None => Err(CaseError::UnknownOption {
                given: clip(wanted),
                known: self.active_ids(),
            }),
        }
    }

    fn check_label(&self, label: &str, except: Option<&str>) -> Result<String, CaseError> {
        let label = label.trim();
        let n = label.chars().count();
        if n == 0 || n > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
            return Err(CaseError::invalid(
                "label",
                format!("must be 1 to {MAX_LABEL_CHARS} characters, on one line"),
            ));
        }
        if let Some(twin) = self.close_options.iter().find(|o| {
            !o.retired && Some(o.id.as_str()) != except && o.label.eq_ignore_ascii_case(label)
        }) {
            return Err(CaseError::invalid(
                "label",
                format!("option '{}' is already called '{}'", twin.id, twin.label),
            ));
        }
        Ok(label.to_string())
    }
}

/// A stable id from a label: lower-case ASCII letters and digits joined by '-', unique among
/// every option the tenant ever had (retired ones keep theirs).
fn option_id(label: &str, taken: &[CloseOption]) -> String {
    let mut slug = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let mut slug: String = slug.trim_end_matches('-').chars().take(40).collect();
    if slug.is_empty() {
        slug = "option".into();
    }
    let mut id = slug.clone();
    let mut n = 2;
    while taken.iter().any(|o| o.id == id) {
        id = format!("{slug}-{n}");
        n += 1;
    }
    id
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The tenant's case settings and the revision they were read at (none: never saved, the
/// defaults apply).
pub async fn settings(
    store: &dyn ItemStore,
    tenant: &TenantId,
) -> Result<(CaseSettings, Option<i64>), StoreError> {
    match store.get(&keys::case_settings(tenant)).await? {
        Some(item) => Ok((read_record(&item)?, item.i64_attr("revision"))),
        None => Ok((CaseSettings::default(), None)),
    }
}

async fn save_settings(
    store: &dyn ItemStore,
    tenant: &TenantId,
    settings: &CaseSettings,
    read_at: Option<i64>,
) -> Result<(), CaseError> {
    let key = keys::case_settings(tenant);
    let mut item = record_item(&key, "case_settings", settings);
    item.insert("revision".into(), Value::n(read_at.unwrap_or(0) + 1));
    let guard = match read_at {
        Some(r) => Condition::eq("revision", Value::n(r)),
        None => Condition::item_absent(),
    };
    match store.put(item, Some(guard)).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_condition_failure() => Err(CaseError::Conflict(
            "the case settings were changed at the same moment; read them again and retry".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn set_sla(
    store: &dyn ItemStore,
    tenant: &TenantId,
    sla: SlaPolicy,
) -> Result<CaseSettings, CaseError> {
    sla.validate()?;
    let (mut settings, revision) = settings(store, tenant).await?;
    settings.sla = sla;
    save_settings(store, tenant, &settings, revision).await?;
    Ok(settings)
}

pub async fn add_close_option(
    store: &dyn ItemStore,
    tenant: &TenantId,
    label: &str,
) -> Result<CloseOption, CaseError> {
    let (mut settings, revision) = settings(store, tenant).await?;
    let label = settings.check_label(label, None)?;
    if settings.close_options.len() >= MAX_CLOSE_OPTIONS {
        return Err(CaseError::invalid(
            "label",
            format!(
                "a tenant has at most {MAX_CLOSE_OPTIONS} close options, retired ones included"
            ),
        ));
    }
    let option = CloseOption {
        id: option_id(&label, &settings.close_options),
        label,
        retired: false,
    };
    settings.close_options.push(option.clone());
    save_settings(store, tenant, &settings, revision).await?;
    Ok(option)
}

/// Renames an option and/or retires it (or brings it back). Cases already closed with it keep
/// the label they were closed with.
pub async fn change_close_option(
    store: &dyn ItemStore,
    tenant: &TenantId,
    id: &str,
    label: Option<&str>,
    retired: Option<bool>,
) -> Result<CloseOption, CaseError> {
    let (mut settings, revision) = settings(store, tenant).await?;
    let Some(index) = settings.close_options.iter().position(|o| o.id == id) else {
        return Err(CaseError::NotFound(format!(
            "no close option '{}'",
            clip(id)
        )));
    };
    let label = match label {
        Some(l) => Some(settings.check_label(l, Some(id))?),
        None => None,
    };
    let option = &mut settings.close_options[index];
    if let Some(label) = label {
        option.label = label;
    }
    if let Some(retired) = retired {
        option.retired = retired;
    }
    let option = option.clone();
    if !option.retired {
        // Bringing one back must not leave two active options of one label.
        settings.check_label(&option.label, Some(id))?;
    }
    save_settings(store, tenant, &settings, revision).await?;
    Ok(option)
}

/// What opening and closing a case need: the SLA (when on) and the calendar it counts in.
#[derive(Debug, Clone)]
pub struct CasePolicy {
    pub sla: Option<Duration>,
    /// The tenant's `business_hours`, or 24/7 when it has none.
    pub calendar: BusinessCalendar,
}

pub async fn policy(store: &dyn ItemStore, tenant: &TenantId) -> Result<CasePolicy, StoreError> {
    let (settings, _) = settings(store, tenant).await?;
    let calendar = crate::tenancy::get_settings(store, tenant)
        .await
        .map_err(|e| match e {
            crate::tenancy::TenancyError::Store(e) => e,
            other => StoreError::Other(other.to_string()),
        })?
        .business_hours
        .unwrap_or_else(BusinessCalendar::always_open);
    Ok(CasePolicy {
        sla: settings
            .sla
            .enabled
            .then(|| Duration::hours(i64::from(settings.sla.close_within_hours))),
        calendar,
    })
}

// ── Errors ───────────────────────────────────────────────────────────────────────────────────

#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("'{given}' is not one of this tenant's close options ({known})")]
    UnknownOption { given: String, known: String },
    #[error("close option '{id}' is retired; use one of {known}")]
    RetiredOption { id: String, known: String },
    #[error("case {id} is already closed (at {closed_at}, with '{resolution}')")]
    AlreadyClosed {
        id: CaseId,
        closed_at: String,
        resolution: String,
    },
    #[error("{0}")]
    NotFound(String),
    /// Another change won the race; nothing of this one was written.
    #[error("{0}")]
    Conflict(String),
    #[error("no helpdesk is connected (PUT /admin/v1/connector), so the reply cannot be sent")]
    NoHelpdesk,
    #[error("case {0} has no ticket to reply on")]
    NoTicket(CaseId),
    #[error("the helpdesk did not take the reply: {0}")]
    Helpdesk(ConnectorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CaseError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        CaseError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

// ── History ──────────────────────────────────────────────────────────────────────────────────

/// One thing that happened to a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CaseChange {
    Opened {
        origin: CaseOrigin,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_rule: Option<RuleId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignee: Option<AgentId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sla_deadline: Option<DateTime<Utc>>,
        /// The event that led to it (the review, or the customer's message).
        cause_event: ulid::Ulid,
        /// The customer's message, for a case their reply opened.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    Assigned {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<AgentId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<AgentId>,
        by: String,
    },
    /// A reply to the customer, sent through the helpdesk.
    Replied {
        by: String,
        body: String,
    },
    /// The customer wrote on the ticket while the case was open.
    CustomerReplied {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        event_id: ulid::Ulid,
    },
    SlaBreached {
        deadline: DateTime<Utc>,
    },
    Closed {
        resolution_id: String,
        resolution: String,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sla_met: Option<bool>,
        seconds_to_close: i64,
        business_seconds_to_close: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub change: CaseChange,
}

fn history_put(
    tenant: &TenantId,
    id: CaseId,
    at: DateTime<Utc>,
    unique: &str,
    change: CaseChange,
) -> WriteOp {
    let entry = HistoryEntry { at, change };
    WriteOp::put(record_item(
        &keys::case_history(tenant, id, at, unique),
        "case_history",
        &entry,
    ))
}

fn new_history(tenant: &TenantId, id: CaseId, at: DateTime<Utc>, change: CaseChange) -> WriteOp {
    history_put(tenant, id, at, &ulid::Ulid::new().to_string(), change)
}

// ── The case item ────────────────────────────────────────────────────────────────────────────

const REVISION: &str = "revision";

/// The whole case item: the record, its status and revision, and the index keys its state
/// calls for.
pub fn case_item(case: &Case, revision: i64) -> Item {
    let mut item = record_item(&keys::case(&case.tenant_id, case.id), "case", case);
    let status = match case.status {
        CaseStatus::Open => "open",
        CaseStatus::Closed => "closed",
    };
    item.insert("status".into(), Value::s(status));
    item.insert(REVISION.into(), Value::n(revision));
    if case.status == CaseStatus::Open
        && !case.sla_breached
        && let Some(deadline) = case.sla_deadline
    {
        item.insert(
            Index::Gsi1.pk_attribute().into(),
            Value::S(keys::open_cases_index(&case.tenant_id)),
        );
        item.insert(
            Index::Gsi1.sk_attribute().into(),
            Value::S(format!("{}#{}", keys::sortable_time(deadline), case.id)),
        );
    }
    item.insert(
        Index::Gsi2.pk_attribute().into(),
        Value::S(keys::cases_by_opening_index(&case.tenant_id)),
    );
    item.insert(
        Index::Gsi2.sk_attribute().into(),
        Value::S(format!(
            "{}#{}",
            keys::sortable_time(case.opened_at),
            case.id
        )),
    );
    item
}

/// Replaces the case, if it is still at the revision it was read at. Cases written before
/// revisions existed read as 0 and are guarded by having none.
fn case_replace(case: &Case, read_at: i64) -> WriteOp {
    let guard = if read_at == 0 {
        Condition::item_present().and(Condition::NotExists(REVISION.into()))
    } else {
        Condition::eq(REVISION, Value::n(read_at))
    };
    WriteOp::put_if(case_item(case, read_at + 1), guard)
}

/// A case and the revision it was read at.
pub async fn load(
    store: &dyn ItemStore,
    tenant: &TenantId,
    id: CaseId,
) -> Result<Option<(Case, i64)>, StoreError> {
    Ok(match store.get(&keys::case(tenant, id)).await? {
        Some(item) => Some(read_case(&item)?),
        None => None,
    })
}

fn read_case(item: &Item) -> Result<(Case, i64), StoreError> {
    Ok((read_record(item)?, item.i64_attr(REVISION).unwrap_or(0)))
}

/// The case and its history, oldest entry first (one query of the case's partition).
pub async fn get_with_history(
    store: &dyn ItemStore,
    tenant: &TenantId,
    id: CaseId,
) -> Result<Option<(Case, Vec<HistoryEntry>)>, StoreError> {
    let mut case = None;
    let mut history: Vec<HistoryEntry> = Vec::new();
    let mut start = None;
    loop {
        let page = store
            .query(Query::partition(keys::case_partition(tenant, id)).start_after(start))
            .await?;
        for item in &page.items {
            match item.str_attr(crate::store::SK) {
                Some("CASE") => case = Some(read_record::<Case>(item)?),
                Some(sk) if sk.starts_with(keys::CASE_HISTORY_PREFIX) => {
                    history.push(read_record(item)?)
                }
                _ => {}
            }
        }
        match page.last_evaluated {
            Some(last) => start = Some(last),
            None => break,
        }
    }
    // Entries of one instant (a reply and its close) sort by their random suffix; the close
    // is what ends a case, so it goes last among them.
    history.sort_by_key(|e| (e.at, matches!(e.change, CaseChange::Closed { .. })));
    Ok(case.map(|c| (c, history)))
}

/// The review a case is about, as events carry it (`null` if it is gone).
async fn review_json(
    store: &dyn ItemStore,
    tenant: &TenantId,
    case: &Case,
) -> Result<Json, StoreError> {
    let Some(key) = case
        .review
        .as_deref()
        .and_then(|r| crate::actions::review_key_from_ref(tenant, r))
    else {
        return Ok(Json::Null);
    };
    Ok(match store.get(&key).await? {
        Some(item) => read_record::<Json>(&item).unwrap_or(Json::Null),
        None => Json::Null,
    })
}

// ── Opening ──────────────────────────────────────────────────────────────────────────────────

/// What a new case is linked to and who it is for.
#[derive(Debug, Clone)]
pub struct Opening {
    pub id: CaseId,
    /// The review's reference (`<survey request>` or `<source>:<response>`) and its key.
    pub review: String,
    pub review_key: Key,
    pub survey_request_id: Option<SurveyRequestId>,
    pub ticket_id: Option<TicketId>,
    pub contact_id: Option<ContactId>,
    pub account_id: Option<AccountId>,
    pub assignee: Option<AgentId>,
    pub origin: CaseOrigin,
    pub opened_by_rule: Option<RuleId>,
    /// The event that led to it.
    pub cause_event: ulid::Ulid,
    /// The customer's message, when their reply opened it.
    pub message: Option<String>,
}

/// A new open case: its deadline is `close_within_hours` of business time from `now` by the
/// tenant's calendar (none while the SLA is off). The writes claim the review's open-case
/// marker first (so a race with another opening fails at operation 0), then put the case, note
/// it as the ticket's latest case, and start its history. The caller adds the `case.opened`
/// event.
pub fn open(
    tenant: &TenantId,
    opening: Opening,
    policy: &CasePolicy,
    now: DateTime<Utc>,
) -> (Case, Vec<WriteOp>) {
    let case = Case {
        id: opening.id,
        tenant_id: tenant.clone(),
        survey_request_id: opening.survey_request_id,
        ticket_id: opening.ticket_id,
        review: Some(opening.review.clone()),
        contact_id: opening.contact_id,
        account_id: opening.account_id,
        assignee: opening.assignee,
        status: CaseStatus::Open,
        opened_at: now,
        origin: opening.origin,
        opened_by_rule: opening.opened_by_rule,
        sla_deadline: policy.sla.map(|sla| policy.calendar.deadline(now, sla)),
        sla_breached: false,
        breached_at: None,
        closed_at: None,
        resolution: None,
        resolution_id: None,
        closed_by: None,
        sla_met: None,
        seconds_to_close: None,
        business_seconds_to_close: None,
    };
    let mut marker = keys::review_open_case(&opening.review_key).to_item();
    marker.insert("case_id".into(), Value::S(case.id.to_string()));
    let mut writes = vec![
        WriteOp::put_if(marker, Condition::item_absent()),
        WriteOp::put_if(case_item(&case, 1), Condition::item_absent()),
    ];
    if let Some(ticket) = &case.ticket_id {
        let mut latest = keys::ticket_latest_case(tenant, ticket).to_item();
        latest.insert("case_id".into(), Value::S(case.id.to_string()));
        writes.push(WriteOp::put(latest));
    }
    writes.push(new_history(
        tenant,
        case.id,
        now,
        CaseChange::Opened {
            origin: case.origin,
            by_rule: case.opened_by_rule,
            assignee: case.assignee.clone(),
            sla_deadline: case.sla_deadline,
            cause_event: opening.cause_event,
            message: opening.message,
        },
    ));
    (case, writes)
}

// ── Closing ──────────────────────────────────────────────────────────────────────────────────

/// The writes that close `case` (read at `revision`) with `option`: the case with its close
/// figures (SLA met, wall-clock and business-hours duration) and out of the SLA index, the
/// review's open-case marker gone, a history entry. The caller adds the `case.closed` event.
pub async fn close_writes(
    store: &dyn ItemStore,
    case: &Case,
    revision: i64,
    option: &CloseOption,
    by: &str,
    now: DateTime<Utc>,
) -> Result<(Case, Vec<WriteOp>), CaseError> {
    if case.status == CaseStatus::Closed {
        return Err(already_closed(case));
    }
    let tenant = &case.tenant_id;
    let policy = policy(store, tenant).await?;
    let mut closed = case.clone();
    let seconds = (now - case.opened_at).num_seconds().max(0);
    let business = policy
        .calendar
        .business_duration(case.opened_at, now)
        .num_seconds();
    closed.status = CaseStatus::Closed;
    closed.closed_at = Some(now);
    closed.resolution = Some(option.label.clone());
    closed.resolution_id = Some(option.id.clone());
    closed.closed_by = Some(by.to_string());
    closed.sla_met = case.sla_deadline.map(|d| now <= d);
    closed.seconds_to_close = Some(seconds);
    closed.business_seconds_to_close = Some(business);
    let mut writes = vec![case_replace(&closed, revision)];
    if let Some(review_key) = case
        .review
        .as_deref()
        .and_then(|r| crate::actions::review_key_from_ref(tenant, r))
    {
        let marker = keys::review_open_case(&review_key);
        let id = case.id.to_string();
        // Only this case's marker goes (a marker from before cases had one is left alone).
        if store
            .get(&marker)
            .await?
            .is_some_and(|m| m.str_attr("case_id") == Some(id.as_str()))
        {
            writes.push(WriteOp::Delete {
                key: marker,
                condition: Some(Condition::eq("case_id", Value::S(id))),
            });
        }
    }
    writes.push(new_history(
        tenant,
        case.id,
        now,
        CaseChange::Closed {
            resolution_id: option.id.clone(),
            resolution: option.label.clone(),
            by: by.to_string(),
            sla_met: closed.sla_met,
            seconds_to_close: seconds,
            business_seconds_to_close: business,
        },
    ));
    Ok((closed, writes))
}

fn already_closed(case: &Case) -> CaseError {
    CaseError::AlreadyClosed {
        id: case.id,
        closed_at: case
            .closed_at
            .map(keys::sortable_time)
            .unwrap_or_else(|| "?".into()),
        resolution: case.resolution.clone().unwrap_or_default(),
    }
}

fn lost_race(e: StoreError) -> CaseError {
    match e {
        StoreError::TransactionCanceled { .. } => CaseError::Conflict(
            "the case changed while this request ran; read it again and retry".into(),
        ),
        e => e.into(),
    }
}

async fn loaded(
    store: &dyn ItemStore,
    tenant: &TenantId,
    id: CaseId,
) -> Result<(Case, i64), CaseError> {
    load(store, tenant, id)
        .await?
        .ok_or_else(|| CaseError::NotFound(format!("no case {id}")))
}

/// Closes a case with one of the tenant's close options (the admin API). Closing a closed case
/// or naming an unknown or retired option is refused, and nothing is written.
pub async fn close_case(
    store: &dyn ItemStore,
    tenant: &TenantId,
    id: CaseId,
    option_id: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Case, CaseError> {
    let (case, revision) = loaded(store, tenant, id).await?;
    if case.status == CaseStatus::Closed {
        return Err(already_closed(&case));
    }
    let (settings, _) = settings(store, tenant).await?;
    let option = settings.option(option_id)?;
    let (closed, mut writes) = close_writes(store, &case, revision, option, by, now).await?;
    let event = EventEnvelope::new_root(
        tenant.clone(),
        EventType::CaseClosed,
        now,
        json!({"case": closed, "review": review_json(store, tenant, &case).await?}),
    );
    writes.push(outbox_put(&event, now));
    store.transact_write(writes).await.map_err(lost_race)?;
    Ok(closed)
}

/// Reassigns an open case (or unassigns it, with `None`).
pub async fn assign_case(
    store: &dyn ItemStore,
    tenant: &TenantId,
    id: CaseId,
    agent: Option<AgentId>,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Case, CaseError> {
    let (case, revision) = loaded(store, tenant, id).await?;
    if case.status == CaseStatus::Closed {
        return Err(already_closed(&case));
    }
    if case.assignee == agent {
        return Ok(case);
    }
    let mut assigned = case.clone();
    assigned.assignee = agent.clone();
    store
        .transact_write(vec![
            case_replace(&assigned, revision),
            new_history(
                tenant,
                id,
                now,
                CaseChange::Assigned {
                    from: case.assignee.clone(),
                    to: agent,
                    by: by.to_string(),
                },
            ),
        ])
        .await
        .map_err(lost_race)?;
    Ok(assigned)
}

pub const MAX_REPLY_CHARS: usize = 10_000;

/// What `reply` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Replied {
    pub case: Case,
    /// The key the helpdesk call carried (the same for the same reply again).
    pub idempotency_key: String,
}

/// Sends the agent's reply to the customer through the tenant's helpdesk and, with
/// `close_with`, closes the case in the same step: the reply's history entry, the close and
/// `case.closed` are one transaction, written once the helpdesk took the reply. Everything is
/// checked before the call (open case, valid option, a ticket, a helpdesk), so a refusal sends
/// nothing. The call's idempotency key is derived from the case and the body, so a retried
/// request is applied once by the helpdesk.
#[allow(clippy::too_many_arguments)]
pub async fn reply(
    store: &dyn ItemStore,
    connectors: &dyn ConnectorDirectory,
    tenant: &TenantId,
    id: CaseId,
    body: &str,
    by: &str,
    close_with: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Replied, CaseError> {
    let body = body.trim();
    let n = body.chars().count();
    if n == 0 || n > MAX_REPLY_CHARS {
        return Err(CaseError::invalid(
            "body",
            format!("must be 1 to {MAX_REPLY_CHARS} characters"),
        ));
    }
    let (case, revision) = loaded(store, tenant, id).await?;
    if case.status == CaseStatus::Closed {
        return Err(already_closed(&case));
    }
    let (settings, _) = settings(store, tenant).await?;
    let option = close_with.map(|o| settings.option(o)).transpose()?;
    let ticket = case.ticket_id.clone().ok_or(CaseError::NoTicket(id))?;
    let connector = connectors
        .connector(tenant)
        .await?
        .ok_or(CaseError::NoHelpdesk)?;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{id}\n{body}").as_bytes());
    let key = format!("case-{id}-reply-{}", hex::encode(&digest[..8]));
    connector
        .public_reply(&key, &ticket, body)
        .await
        .map_err(CaseError::Helpdesk)?;
    // The reply went out: from here on, its history entry is written whatever else happens.
    let replied = history_put(
        tenant,
        id,
        now,
        &key,
        CaseChange::Replied {
            by: by.to_string(),
            body: body.to_string(),
        },
    );
    let Some(option) = option else {
        store.transact_write(vec![replied]).await?;
        return Ok(Replied {
            case,
            idempotency_key: key,
        });
    };
    let (closed, mut writes) = close_writes(store, &case, revision, option, by, now).await?;
    writes.push(replied.clone());
    let event = EventEnvelope::new_root(
        tenant.clone(),
        EventType::CaseClosed,
        now,
        json!({"case": closed, "review": review_json(store, tenant, &case).await?}),
    );
    writes.push(outbox_put(&event, now));
    match store.transact_write(writes).await {
        Ok(()) => Ok(Replied {
            case: closed,
            idempotency_key: key,
        }),
        Err(StoreError::TransactionCanceled { .. }) => {
            store.transact_write(vec![replied]).await?;
            Err(CaseError::Conflict(format!(
                "the reply was sent, but case {id} changed meanwhile and was not closed; read it again"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

// ── A customer's reply to a follow-up ────────────────────────────────────────────────────────

/// What a customer's message on a ticket did to its cases.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerMessageOutcome {
    /// No case was ever opened on the ticket.
    NoCase,
    /// The ticket's case is open: the message is in its history.
    Noted(CaseId),
    /// The ticket's last case was closed before the message: a new case opened.
    Opened(CaseId),
    /// The message is not after the last case's close (an old message replayed).
    Before(CaseId),
    /// An earlier delivery of the event already opened it, or another case is open.
    AlreadyHandled,
}

/// The customer wrote again on a ticket whose review had a case. While the case is open the
/// message joins its history; once it is closed, the customer answering the follow-up means the
/// loop is not closed after all, so a new case opens for the same review, ticket, contact and
/// account, assigned to whoever had the last one (else the ticket's agent), with a fresh SLA.
/// The new case's id is the message event's id, so a redelivery opens nothing twice.
pub async fn on_customer_message(
    store: &dyn ItemStore,
    event: &EventEnvelope,
    now: DateTime<Utc>,
) -> Result<CustomerMessageOutcome, StoreError> {
    let tenant = &event.tenant_id;
    let Some(ticket) = event.data["ticket"]["id"]
        .as_str()
        .and_then(|t| TicketId::parse(t).ok())
    else {
        return Ok(CustomerMessageOutcome::NoCase);
    };
    let Some(last_id) = store
        .get(&keys::ticket_latest_case(tenant, &ticket))
        .await?
        .and_then(|m| m.str_attr("case_id").and_then(|c| CaseId::parse(c).ok()))
    else {
        return Ok(CustomerMessageOutcome::NoCase);
    };
    let Some((last, _)) = load(store, tenant, last_id).await? else {
        return Ok(CustomerMessageOutcome::NoCase);
    };
    let body = event.data["message"]["body"].as_str().map(clip_body);
    if last.id.to_string() == event.event_id.to_string() {
        // This very message opened it: a redelivery.
        return Ok(CustomerMessageOutcome::AlreadyHandled);
    }
    if last.status == CaseStatus::Open {
        // Keyed by the event: a redelivery rewrites the same entry.
        store
            .transact_write(vec![history_put(
                tenant,
                last.id,
                event.occurred_at,
                &event.event_id.to_string(),
                CaseChange::CustomerReplied {
                    body,
                    event_id: event.event_id,
                },
            )])
            .await?;
        return Ok(CustomerMessageOutcome::Noted(last.id));
    }
    if last
        .closed_at
        .is_none_or(|closed| event.occurred_at <= closed)
    {
        return Ok(CustomerMessageOutcome::Before(last.id));
    }
    let (Some(review), Ok(id)) = (
        last.review.clone(),
        CaseId::parse(&event.event_id.to_string()),
    ) else {
        return Ok(CustomerMessageOutcome::NoCase);
    };
    let Some(review_key) = crate::actions::review_key_from_ref(tenant, &review) else {
        return Ok(CustomerMessageOutcome::NoCase);
    };
    let ticket_agent = event.data["ticket"]["agent"]["id"]
        .as_str()
        .and_then(|a| AgentId::parse(a).ok());
    let policy = policy(store, tenant).await?;
    let (case, mut writes) = open(
        tenant,
        Opening {
            id,
            review,
            review_key,
            survey_request_id: last.survey_request_id,
            ticket_id: Some(ticket.clone()),
            contact_id: last.contact_id.clone(),
            account_id: last.account_id.clone(),
            assignee: last.assignee.clone().or(ticket_agent),
            origin: CaseOrigin::CustomerReply,
            opened_by_rule: None,
            cause_event: event.event_id,
            message: body,
        },
        &policy,
        now,
    );
    let opened = event.caused(
        EventType::CaseOpened,
        now,
        None,
        json!({"case": case, "review": review_json(store, tenant, &case).await?}),
    );
    writes.push(outbox_put(&opened, now));
    writes.extend(crate::automation::audit_put(
        event,
        now,
        "CASE_ON_REPLY",
        json!({"kind": "case_opened", "case_id": id, "reason": format!(
            "the customer wrote after case {} was closed", last.id)}),
    ));
    match store.transact_write(writes).await {
        Ok(()) => Ok(CustomerMessageOutcome::Opened(id)),
        Err(StoreError::TransactionCanceled { reasons })
            if reasons
                .iter()
                .any(|r| matches!(r, Some(CancelReason::ConditionFailed(_)))) =>
        {
            Ok(CustomerMessageOutcome::AlreadyHandled)
        }
        Err(e) => Err(e),
    }
}

fn clip_body(body: &str) -> String {
    body.chars().take(2000).collect()
}

// ── The SLA sweep ────────────────────────────────────────────────────────────────────────────

/// Breaches the tenant's open cases whose deadline is at or before `now`, reading only those
/// (GSI1 `CASES_OPEN`, sort key ≤ `<now>#~`). Each breach is one transaction guarded by the
/// case's revision: the case leaves the index (so it is breached once), gets a history entry,
/// and `case.sla_breached` goes to the outbox. A case that changed since the index was read is
/// read again; one that was closed meanwhile is left alone.
pub async fn breach_due(
    store: &dyn ItemStore,
    tenant: &TenantId,
    now: DateTime<Utc>,
    report: &mut SweepReport,
) -> Result<(), StoreError> {
    let mut due = crate::due::DueItems::new(keys::open_cases_index(tenant), now);
    while let Some(items) = due.next_page(store).await? {
        report.items_read += items.len();
        for item in &items {
            if breach_item(store, item, now).await? {
                report.changed += 1;
            }
        }
    }
    Ok(())
}

/// Breaches the case `item` (as read from the index) if it is open and due at `now`; `true`
/// when this call breached it.
pub async fn breach_item(
    store: &dyn ItemStore,
    item: &Item,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    match read_case(item) {
        Ok((case, revision)) => breach(store, case, revision, now).await,
        Err(e) => {
            // One unreadable item must not stop every other tenant's sweep.
            tracing::error!(error = %e, "unreadable case in the SLA index; skipped");
            Ok(false)
        }
    }
}

async fn breach(
    store: &dyn ItemStore,
    mut case: Case,
    mut revision: i64,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    for _ in 0..3 {
        let Some(deadline) = case.sla_deadline else {
            return Ok(false);
        };
        if case.status != CaseStatus::Open || case.sla_breached || deadline > now {
            return Ok(false);
        }
        let mut breached = case.clone();
        breached.sla_breached = true;
        breached.breached_at = Some(now);
        let event = EventEnvelope::new_root(
            case.tenant_id.clone(),
            EventType::CaseSlaBreached,
            now,
            json!({
                "case": breached,
                "ticket": {"id": case.ticket_id},
                "review": review_json(store, &case.tenant_id, &case).await?,
            }),
        );
        let writes = vec![
            case_replace(&breached, revision),
            new_history(
                &case.tenant_id,
                case.id,
                now,
                CaseChange::SlaBreached { deadline },
            ),
            outbox_put(&event, now),
        ];
        match store.transact_write(writes).await {
            Ok(()) => return Ok(true),
            Err(StoreError::TransactionCanceled { .. }) => {
                // The index copy was stale, or someone changed the case: read it again.
                match load(store, &case.tenant_id, case.id).await? {
                    Some((fresh, r)) => (case, revision) = (fresh, r),
                    None => return Ok(false),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

// ── Listing ──────────────────────────────────────────────────────────────────────────────────

/// Which cases to list. Cases are read newest first from the tenant's by-opening index within
/// `[from, to)`; `status`, `assignee` and `breached` are applied to what was read.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub status: Option<CaseStatus>,
    /// An agent id, or `Some(None)` for unassigned cases.
    pub assignee: Option<Option<AgentId>>,
    pub breached: Option<bool>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: usize,
    /// The cursor a previous page answered.
    pub before: Option<String>,
}

/// At most this many index items are read per page, so a narrow filter over a long range
/// answers a short page with a cursor rather than reading everything.
pub const MAX_READ_PER_PAGE: usize = 1000;

/// A page of cases and, when more may follow, the cursor for the next one.
pub async fn list(
    store: &dyn ItemStore,
    tenant: &TenantId,
    filter: &CaseFilter,
) -> Result<(Vec<Case>, Option<String>), StoreError> {
    let low = filter.from.map(keys::sortable_time).unwrap_or_default();
    let mut high = filter
        .to
        .map(keys::sortable_time)
        .unwrap_or_else(|| "~".into());
    // The cursor is a sort key with '_' for '#', so it travels in a URL as it is.
    if let Some(before) = filter.before.as_deref().map(|b| b.replace('_', "#"))
        && before < high
    {
        high = before;
    }
    let limit = filter.limit.clamp(1, 100);
    let mut found = Vec::new();
    let mut read = 0;
    let mut start = None;
    if low >= high {
        return Ok((found, None));
    }
    loop {
        // `high` is exclusive: a sort key is `<time>#<id>`, and `to` / a cursor sort below
        // every key that starts at or after them.
        // DynamoDB refuses an empty string in a key condition: without `from`, only the top.
        let range = if low.is_empty() {
            SortKeyCondition::Lt(high.clone())
        } else {
            SortKeyCondition::Between(low.clone(), high.clone())
        };
        let page = store
            .query(
                Query::on_index(Index::Gsi2, keys::cases_by_opening_index(tenant))
                    .sk(range)
                    .backward()
                    .limit(100)
                    .start_after(start),
            )
            .await?;
        for item in &page.items {
            let sk = item
                .str_attr(Index::Gsi2.sk_attribute())
                .unwrap_or_default();
            if sk >= high.as_str() {
                continue;
            }
            read += 1;
            let case: Case = read_record(item)?;
            if matches(&case, filter) {
                found.push(case);
                if found.len() == limit {
                    return Ok((found, Some(sk.replace('#', "_"))));
                }
            }
            if read >= MAX_READ_PER_PAGE {
                return Ok((found, Some(sk.replace('#', "_"))));
            }
        }
        match page.last_evaluated {
            Some(last) => start = Some(last),
            None => return Ok((found, None)),
        }
    }
}

fn matches(case: &Case, filter: &CaseFilter) -> bool {
    filter.status.is_none_or(|s| case.status == s)
        && filter.breached.is_none_or(|b| case.sla_breached == b)
        && filter.assignee.as_ref().is_none_or(|a| case.assignee == *a)
}

/// Every case opened in `[from, to)`, oldest first, at most `max` (`None` when there are more).
pub async fn opened_between(
    store: &dyn ItemStore,
    tenant: &TenantId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max: usize,
) -> Result<Option<Vec<Case>>, StoreError> {
    let (low, high) = (keys::sortable_time(from), keys::sortable_time(to));
    let mut cases = Vec::new();
    if low >= high {
        return Ok(Some(cases));
    }
    let mut start = None;
    loop {
        let page = store
            .query(
                Query::on_index(Index::Gsi2, keys::cases_by_opening_index(tenant))
                    .sk(SortKeyCondition::Between(low.clone(), high.clone()))
                    .start_after(start),
            )
            .await?;
        for item in &page.items {
            if item
                .str_attr(Index::Gsi2.sk_attribute())
                .unwrap_or_default()
                >= high.as_str()
            {
                continue;
            }
            if cases.len() == max {
                return Ok(None);
            }
            cases.push(read_record(item)?);
        }
        match page.last_evaluated {
            Some(last) => start = Some(last),
            None => return Ok(Some(cases)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_ids_are_slugs_unique_among_every_option_ever() {
        let settings = CaseSettings::default();
        assert_eq!(
            option_id("Called back — twice!", &settings.close_options),
            "called-back-twice"
        );
        assert_eq!(
            option_id("Issue fixed", &settings.close_options),
            "issue-fixed-2"
        );
        assert_eq!(option_id("Überprüft", &[]), "berpr-ft");
        assert_eq!(option_id("???", &[]), "option");
    }

    #[test]
    fn a_rule_names_an_option_by_id_or_label_and_never_a_retired_one() {
        let mut settings = CaseSettings::default();
        assert_eq!(
            settings.option_for_resolution(" issue FIXED ").unwrap().id,
            "issue-fixed"
        );
        assert_eq!(
            settings.option_for_resolution("no-response").unwrap().id,
            "no-response"
        );
        let unknown = settings
            .option_for_resolution("Printer replaced")
            .unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "'Printer replaced' is not one of this tenant's close options (called-customer, issue-fixed, no-response)"
        );
        settings.close_options[2].retired = true;
        let retired = settings.option("no-response").unwrap_err().to_string();
        assert!(
            retired.contains("retired") && retired.contains("called-customer, issue-fixed"),
            "{retired}"
        );
    }

    #[test]
    fn the_sla_needs_hours_only_when_on() {
        let off = SlaPolicy {
            enabled: false,
            close_within_hours: 0,
        };
        assert!(off.validate().is_ok());
        let on = SlaPolicy {
            enabled: true,
            close_within_hours: 0,
        };
        assert!(
            on.validate()
                .unwrap_err()
                .to_string()
                .starts_with("close_within_hours:")
        );
        let long = SlaPolicy {
            enabled: true,
            close_within_hours: MAX_SLA_HOURS + 1,
        };
        assert!(long.validate().is_err());
    }

    #[test]
    fn case_keys_start_with_their_tenant() {
        let t = TenantId::parse("acme").unwrap();
        let ticket = TicketId::parse("1").unwrap();
        for key in [
            keys::case_settings(&t),
            keys::ticket_latest_case(&t, &ticket),
            keys::case_history(&t, CaseId::new(), Utc::now(), "x"),
        ] {
            assert!(
                key.pk == "T#acme" || key.pk.starts_with("T#acme#"),
                "{key:?}"
            );
        }
        assert!(keys::cases_by_opening_index(&t).starts_with("T#acme#"));
    }

    #[test]
    fn only_an_open_unbreached_case_with_a_deadline_is_in_the_sla_index() {
        let t = TenantId::parse("acme").unwrap();
        let now: DateTime<Utc> = "2026-01-12T09:00:00Z".parse().unwrap();
        let policy = CasePolicy {
            sla: Some(Duration::hours(8)),
            calendar: BusinessCalendar::always_open(),
        };
        let opening = Opening {
            id: CaseId::new(),
            review: SurveyRequestId::new().to_string(),
            review_key: Key::new("T#acme#SURVEY#x", "REVIEW"),
            survey_request_id: None,
            ticket_id: None,
            contact_id: None,
            account_id: None,
            assignee: None,
            origin: CaseOrigin::Rule,
            opened_by_rule: None,
            cause_event: ulid::Ulid::new(),
            message: None,
        };
        let (mut case, _) = open(&t, opening, &policy, now);
        assert_eq!(case.sla_deadline, Some(now + Duration::hours(8)));
        let item = case_item(&case, 1);
        assert_eq!(
            item.str_attr("GSI1SK").unwrap(),
            format!("2026-01-12T17:00:00.000Z#{}", case.id)
        );
        assert_eq!(
            item.str_attr("GSI2SK").unwrap(),
            format!("2026-01-12T09:00:00.000Z#{}", case.id)
        );
        case.sla_breached = true;
        assert!(!case_item(&case, 2).contains_key("GSI1PK"));
        case.sla_breached = false;
        case.status = CaseStatus::Closed;
        assert!(!case_item(&case, 2).contains_key("GSI1PK"));
        case.status = CaseStatus::Open;
        case.sla_deadline = None;
        assert!(!case_item(&case, 2).contains_key("GSI1PK"));
        assert!(
            case_item(&case, 2).contains_key("GSI2PK"),
            "every case is listed"
        );
    }
}
