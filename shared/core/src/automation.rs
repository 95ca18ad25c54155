//! Rules and actions: the `rules` function turns a domain event into `action.requested`
//! events (one per action of each matching rule), recording every decision in the audit trail;
//! the `actions` function executes each exactly once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Action, Agent, Email, Rule, Trigger};
use crate::event::{EventEnvelope, EventType, MAX_EVENT_DEPTH};
use crate::idempotency::{self, Begin, IdempotencyConfig, IdempotencyError};
use crate::ids::{RuleId, TenantId};
use crate::keys;
use crate::outbox::outbox_put;
use crate::ports::{MailError, Mailer, OutgoingEmail};
use crate::records::{read_record, record_item};
use crate::store::{Condition, Item, ItemStore, Key, Query, SortKeyCondition, StoreError, WriteOp};
use crate::templates;

#[derive(Debug, thiserror::Error)]
pub enum AutomationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error("action.requested event {0} is unreadable: {1}")]
    BadRequest(ulid::Ulid, String),
    #[error("action {0} is being executed by another invocation; retry later")]
    InProgress(String),
}

impl AutomationError {
    /// Worth a retry (the function fails the invocation so EventBridge/Lambda retries).
    pub fn is_transient(&self) -> bool {
        match self {
            AutomationError::Store(e)
            | AutomationError::Idempotency(IdempotencyError::Store(e)) => e.is_transient(),
            AutomationError::Mail(MailError::Transient(_)) | AutomationError::InProgress(_) => true,
            _ => false,
        }
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

pub async fn save_rule(
    store: &dyn ItemStore,
    tenant: &TenantId,
    rule: &Rule,
) -> Result<(), StoreError> {
    store
        .put(
            record_item(&keys::rule(tenant, rule.id), "rule", rule),
            None,
        )
        .await
}

/// The tenant's rules (one partition; a tenant has at most a few thousand).
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Verdict {
    Matched {
        actions_requested: usize,
    },
    /// A rule never re-fires on a chain it started.
    SkippedOwnChain,
    /// The chain reached the depth limit.
    StoppedAtDepth {
        depth: u32,
    },
}

fn ticket_of(event: &EventEnvelope) -> Option<String> {
    event.data["ticket"]["id"]
        .as_str()
        .or_else(|| event.data["review"]["ticket_id"].as_str())
        .map(str::to_string)
}

/// A recipient left out on purpose: recorded in the audit trail, so the send can be seen to
/// have been decided and not made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuppressedRecipient {
    pub agent_id: String,
    pub email: Email,
    pub reason: &'static str,
}

struct Recipients {
    send: Vec<Email>,
    suppressed: Vec<SuppressedRecipient>,
}

/// The addresses to email: the action's own, plus the ticket's agent if asked, minus every
/// agent whose email notifications are off. The agent directory (`AGENT#` items, kept by the
/// admin API) decides; the flag on the event's ticket snapshot counts for agents not in it.
async fn recipients(
    store: &dyn ItemStore,
    cause: &EventEnvelope,
    to: &[Email],
    to_ticket_agent: bool,
) -> Result<Recipients, StoreError> {
    let mut agents = crate::tenancy::list_agents(store, &cause.tenant_id).await?;
    let snapshot_agent: Option<Agent> =
        serde_json::from_value(cause.data["ticket"]["agent"].clone()).ok();
    if let Some(agent) = &snapshot_agent
        && !agents.iter().any(|a| a.id == agent.id)
    {
        agents.push(agent.clone());
    }
    let mut wanted: Vec<Email> = to.to_vec();
    if to_ticket_agent {
        let agent_id = snapshot_agent
            .as_ref()
            .map(|a| a.id.as_str().to_string())
            .or_else(|| {
                cause.data["review"]["agent_id"]
                    .as_str()
                    .map(str::to_string)
            });
        if let Some(agent) = agent_id.and_then(|id| agents.iter().find(|a| a.id.as_str() == id)) {
            wanted.push(agent.email.clone());
        }
    }
    let mut recipients = Recipients {
        send: Vec::new(),
        suppressed: Vec::new(),
    };
    for email in wanted {
        let muted = agents.iter().find(|a| {
            !a.email_notifications && a.email.as_str().eq_ignore_ascii_case(email.as_str())
        });
        match muted {
            Some(agent) => recipients.suppressed.push(SuppressedRecipient {
                agent_id: agent.id.as_str().to_string(),
                email,
                reason: "the agent's email notifications are off",
            }),
            None if !recipients.send.contains(&email) => recipients.send.push(email),
            None => {}
        }
    }
    Ok(recipients)
}

/// Every audit entry of a ticket, oldest first (up to 500).
pub async fn audit_trail(
    store: &dyn ItemStore,
    tenant: &TenantId,
    ticket: &crate::ids::TicketId,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let page = store
        .query(Query::partition(keys::audit_partition(tenant, ticket)).limit(500))
        .await?;
    Ok(page
        .items
        .iter()
        .filter_map(|i| read_record(i).ok())
        .collect())
}

fn audit_item(event: &EventEnvelope, at: DateTime<Utc>, entry: serde_json::Value) -> Option<Item> {
    let ticket = ticket_of(event).and_then(|t| crate::ids::TicketId::parse(&t).ok())?;
    let key = Key::new(
        keys::audit_partition(&event.tenant_id, &ticket),
        format!("{}#{}", keys::sortable_time(at), ulid::Ulid::new()),
    );
    Some(record_item(&key, "audit", &entry))
}

/// Evaluates the enabled rules of the event's trigger; writes the audit entries and the
/// `action.requested` events in one transaction per rule, guarded so a redelivered event
/// requests nothing twice.
pub async fn evaluate(
    store: &dyn ItemStore,
    rules: &[Rule],
    event: &EventEnvelope,
    now: DateTime<Utc>,
) -> Result<Vec<(RuleId, Verdict)>, AutomationError> {
    let Some(trigger) = Trigger::for_event(event.event_type) else {
        return Ok(Vec::new());
    };
    let mut verdicts = Vec::new();
    for rule in rules.iter().filter(|r| r.enabled && r.trigger == trigger) {
        let verdict = if event.performed_by == Some(rule.id) {
            Verdict::SkippedOwnChain
        } else if event.depth >= MAX_EVENT_DEPTH {
            Verdict::StoppedAtDepth { depth: event.depth }
        } else {
            Verdict::Matched {
                actions_requested: rule.actions.len(),
            }
        };
        // The marker makes a redelivery of the same event a no-op for this rule.
        let marker = Key::new(
            format!(
                "{}#EVALUATED#{}",
                keys::tenant_prefix(&event.tenant_id),
                event.event_id
            ),
            format!("RULE#{}", rule.id),
        );
        let mut ops = vec![WriteOp::put_if(marker.to_item(), Condition::item_absent())];
        if let Some(audit) = audit_item(
            event,
            now,
            serde_json::json!({"kind": "rule_evaluated", "rule_id": rule.id, "rule_name": rule.name,
                "event_id": event.event_id, "event_type": event.event_type, "verdict": verdict}),
        ) {
            ops.push(WriteOp::put(audit));
        }
        if matches!(verdict, Verdict::Matched { .. }) {
            for (index, action) in rule.actions.iter().enumerate() {
                let request = ActionRequest {
                    rule_id: rule.id,
                    rule_name: rule.name.clone(),
                    action_index: index,
                    action: action.clone(),
                    cause: event.clone(),
                };
                let requested = event.caused(
                    EventType::ActionRequested,
                    now,
                    Some(rule.id),
                    serde_json::to_value(&request).expect("action requests serialise"),
                );
                ops.push(outbox_put(&requested, now));
            }
        }
        match store.transact_write(ops).await {
            Ok(()) => verdicts.push((rule.id, verdict)),
            Err(e) if e.condition_failed_at(0) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(verdicts)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ActionOutcome {
    Done { detail: String },
    AlreadyDone,
}

/// Executes one requested action exactly once per (event, rule, action).
pub async fn execute(
    store: &dyn ItemStore,
    mailer: &dyn Mailer,
    event: &EventEnvelope,
    now: DateTime<Utc>,
) -> Result<ActionOutcome, AutomationError> {
    let request: ActionRequest = serde_json::from_value(event.data.clone())
        .map_err(|e| AutomationError::BadRequest(event.event_id, e.to_string()))?;
    let tenant = &event.tenant_id;
    let claim = format!(
        "action#{}#{}#{}",
        request.cause.event_id, request.rule_id, request.action_index
    );
    match idempotency::begin(store, tenant, &claim, now, IdempotencyConfig::default()).await? {
        Begin::Started => {}
        Begin::AlreadyCompleted(_) => return Ok(ActionOutcome::AlreadyDone),
        Begin::InProgress => return Err(AutomationError::InProgress(claim)),
    }
    let suppressed: Vec<SuppressedRecipient>;
    let result = match &request.action {
        Action::SendEmail {
            to,
            to_ticket_agent,
            subject,
            body,
        } => {
            let recipients = recipients(store, &request.cause, to, *to_ticket_agent).await?;
            suppressed = recipients.suppressed.clone();
            let context =
                serde_json::json!({ "event": request.cause.data, "rule": request.rule_name });
            match templates::render_email(subject, body, "", &context) {
                Ok(_) if recipients.send.is_empty() => {
                    Ok("not sent: every recipient has email notifications off".to_string())
                }
                Ok(rendered) => mailer
                    .send(&OutgoingEmail {
                        to: recipients.send.clone(),
                        reply_to: None,
                        subject: rendered.subject,
                        text: rendered.text,
                        html: None,
                        headers: vec![],
                    })
                    .await
                    .map(|id| format!("email sent to {} (message {id})", recipients.send.len()))
                    .map_err(AutomationError::from),
                Err(e) => Ok(format!("not sent: {e}")),
            }
        }
    };
    match result {
        Ok(detail) => {
            idempotency::complete(
                store,
                tenant,
                &claim,
                &serde_json::json!({ "detail": detail }),
            )
            .await?;
            if let Some(audit) = audit_item(
                &request.cause,
                now,
                serde_json::json!({"kind": "action_executed", "rule_id": request.rule_id,
                    "action_index": request.action_index, "detail": detail,
                    "suppressed": suppressed}),
            ) {
                store.put(audit, None).await?;
            }
            Ok(ActionOutcome::Done { detail })
        }
        Err(e) => {
            let _ = idempotency::release(store, tenant, &claim).await;
            Err(e)
        }
    }
}
