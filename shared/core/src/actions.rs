//! The `actions` function's use case: executes each requested action exactly once per (event,
//! rule, action), records the outcome in the audit trail.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::automation::{ActionRequest, audit_put, message_context};
use crate::domain::{Agent, Email, TicketSnapshot};
use crate::event::EventEnvelope;
use crate::idempotency::{self, Begin, IdempotencyConfig, IdempotencyError};
use crate::keys;
use crate::ports::{MailError, Mailer, OutgoingEmail};
use crate::records::read_record;
use crate::rules::Action;
use crate::store::{ItemStore, StoreError};
use crate::templates;

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
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
    #[error("{0} is not available in this build yet")]
    Unsupported(&'static str),
}

impl ActionError {
    /// Worth a retry (the function fails the invocation so EventBridge/Lambda retries).
    pub fn is_transient(&self) -> bool {
        match self {
            ActionError::Store(e) | ActionError::Idempotency(IdempotencyError::Store(e)) => {
                e.is_transient()
            }
            ActionError::Mail(MailError::Transient(_)) | ActionError::InProgress(_) => true,
            _ => false,
        }
    }
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
    ticket: Option<&TicketSnapshot>,
    to: &[Email],
    to_ticket_agent: bool,
) -> Result<Recipients, StoreError> {
    let mut agents = crate::tenancy::list_agents(store, &cause.tenant_id).await?;
    let snapshot_agent: Option<Agent> = ticket.and_then(|t| t.agent.clone());
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

/// The ticket the cause names: its own snapshot, else the stored one.
pub async fn ticket_of(
    store: &dyn ItemStore,
    cause: &EventEnvelope,
) -> Result<Option<TicketSnapshot>, StoreError> {
    if let Ok(t) = serde_json::from_value::<TicketSnapshot>(cause.data["ticket"].clone()) {
        return Ok(Some(t));
    }
    let id = cause.data["review"]["ticket_id"]
        .as_str()
        .or_else(|| cause.data["case"]["ticket_id"].as_str())
        .and_then(|t| crate::ids::TicketId::parse(t).ok());
    let Some(id) = id else { return Ok(None) };
    Ok(store
        .get(&keys::ticket(&cause.tenant_id, &id))
        .await?
        .and_then(|item| read_record(&item).ok()))
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
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
) -> Result<ActionOutcome, ActionError> {
    let request: ActionRequest = serde_json::from_value(event.data.clone())
        .map_err(|e| ActionError::BadRequest(event.event_id, e.to_string()))?;
    let tenant = &event.tenant_id;
    let claim = request.claim();
    match idempotency::begin(store, tenant, &claim, now, IdempotencyConfig::default()).await? {
        Begin::Started => {}
        Begin::AlreadyCompleted(_) => return Ok(ActionOutcome::AlreadyDone),
        Begin::InProgress => return Err(ActionError::InProgress(claim)),
    }
    let ticket = ticket_of(store, &request.cause).await?;
    let mut suppressed: Vec<SuppressedRecipient> = Vec::new();
    let result = match &request.action {
        Action::SendEmail {
            to,
            to_ticket_agent,
            subject,
            body,
        } => {
            send_email(
                store,
                mailer,
                &request,
                ticket.as_ref(),
                to,
                *to_ticket_agent,
                subject,
                body,
                &mut suppressed,
            )
            .await
        }
        Action::EmailTicketAgents { subject, body } => {
            send_email(
                store,
                mailer,
                &request,
                ticket.as_ref(),
                &[],
                true,
                subject,
                body,
                &mut suppressed,
            )
            .await
        }
        other => Err(ActionError::Unsupported(other.kind())),
    };
    match result {
        Ok(detail) => {
            idempotency::complete(store, tenant, &claim, &json!({ "detail": detail })).await?;
            if let Some(audit) = audit_put(
                &request.cause,
                now,
                &format!("ACTION#{}#{}", request.rule_id, request.action_index),
                json!({"kind": "action_executed", "rule_id": request.rule_id,
                    "rule_name": request.rule_name, "action_index": request.action_index,
                    "action": request.action.kind(), "outcome": "done", "detail": detail,
                    "suppressed": suppressed,
                    "review": crate::automation::review_ref(&request.cause.data["review"])}),
            ) {
                store.transact_write(vec![audit]).await?;
            }
            Ok(ActionOutcome::Done { detail })
        }
        Err(e) => {
            let _ = idempotency::release(store, tenant, &claim).await;
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn send_email(
    store: &dyn ItemStore,
    mailer: &dyn Mailer,
    request: &ActionRequest,
    ticket: Option<&TicketSnapshot>,
    to: &[Email],
    to_ticket_agent: bool,
    subject: &str,
    body: &str,
    suppressed: &mut Vec<SuppressedRecipient>,
) -> Result<String, ActionError> {
    let recipients = recipients(store, &request.cause, ticket, to, to_ticket_agent).await?;
    *suppressed = recipients.suppressed.clone();
    let context = message_context(&request.cause, ticket, &request.rule_name);
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
            .map_err(ActionError::from),
        Err(e) => Ok(format!("not sent: {e}")),
    }
}
