//! The `actions` function's use case: executes each requested action exactly once per (event,
//! rule, action), retries transient failures with jittered backoff (honouring `Retry-After`),
//! and sends what still fails to a dead letter the admin API lists and can retry. Every outcome
//! is in the audit trail.
//!
//! Exactly once: the action's idempotency record (`ActionRequest::claim`) is claimed first; a
//! change closedloop makes in its own store (a review's tag, a case) is committed in the same
//! transaction that completes the claim, with its audit entry and events. A helpdesk call or an
//! email cannot join that transaction, so it is made once per claim, and helpdesk calls carry an
//! idempotency key that a retry sends again.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::automation::{ActionRequest, audit_put, message_context, review_ref};
use crate::domain::{Agent, CaseAssignee, CaseStatus, Email, Review, TicketSnapshot};
use crate::echoes::{self, ExpectedChange};
use crate::event::{EventEnvelope, EventType};
use crate::helpdesk::{
    ConnectorDirectory, ConnectorError, HelpdeskConnector, NewTicket, OutgoingWebhook, Reopened,
    Requester, WebhookSender,
};
use crate::idempotency::{self, Begin, IdempotencyConfig, IdempotencyError};
use crate::ids::{
    AccountId, AgentId, CaseId, ContactId, RuleId, SurveyRequestId, TenantId, TicketId,
};
use crate::keys;
use crate::outbox::outbox_put;
use crate::ports::{Clock, MailError, Mailer, OutgoingEmail};
use crate::records::{read_record, record_item};
use crate::rules::Action;
use crate::store::{
    CancelReason, Condition, ItemExt, ItemStore, Key, Query, StoreError, Update, Value, WriteOp,
};
use crate::surveys::SurveyError;
use crate::templates;

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error("action.requested event {0} is unreadable: {1}")]
    BadRequest(ulid::Ulid, String),
    #[error("action {0} is being executed by another invocation; retry later")]
    InProgress(String),
}

impl ActionError {
    /// Worth a retry (the function fails the invocation so EventBridge/Lambda retries).
    pub fn is_transient(&self) -> bool {
        match self {
            ActionError::Store(e) | ActionError::Idempotency(IdempotencyError::Store(e)) => {
                e.is_transient()
            }
            ActionError::InProgress(_) => true,
            ActionError::BadRequest(..) => false,
        }
    }
}

/// How failing calls are retried within one invocation. A parameter, so tests run in
/// milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Calls in all, the first included.
    pub max_attempts: u32,
    /// The first retry waits about this long; each next one about twice as long.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited out here: the action goes to the dead
    /// letters, to be retried later from the admin API.
    pub max_retry_after: Duration,
    /// No retry starts once this much time has passed (the function's timeout is 60 s).
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(20),
            budget: Duration::from_secs(40),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `n` (1 for the first retry): exponential, with "equal jitter"
    /// (half fixed, half random) so that many failed actions do not retry in step.
    pub fn backoff(&self, n: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1)))
            .min(self.max_delay);
        let half = exp / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// What `execute` needs: the store, the outside world's ports, the clock, the retry policy.
pub struct Executor<'a> {
    pub store: &'a dyn ItemStore,
    pub mailer: &'a dyn Mailer,
    pub connectors: &'a dyn ConnectorDirectory,
    pub webhooks: &'a dyn WebhookSender,
    pub clock: &'a dyn Clock,
    pub retry: RetryPolicy,
}

/// A recipient left out on purpose: recorded in the audit trail, so the send can be seen to
/// have been decided and not made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuppressedRecipient {
    pub agent_id: String,
    pub email: Email,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ActionOutcome {
    Done {
        detail: String,
    },
    /// Decided not to act: every recipient's notifications are off, the contact unsubscribed.
    Suppressed {
        detail: String,
    },
    /// Nothing to do: the tag is already there, the review already has an open case, ...
    NoOp {
        detail: String,
    },
    /// Failed for good, or retries ran out: a dead letter holds it for a retry.
    Failed {
        dead_letter_id: ulid::Ulid,
        error: String,
        attempts: u32,
    },
    /// An earlier delivery of the same request already ran it.
    AlreadyDone,
}

// ── Recipients and the ticket ────────────────────────────────────────────────────────────────

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
    if to_ticket_agent
        && let Some(agent) =
            ticket_agent_id(cause, ticket).and_then(|id| agents.iter().find(|a| a.id == id))
    {
        wanted.push(agent.email.clone());
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

/// The ticket's agent, else the review's.
fn ticket_agent_id(cause: &EventEnvelope, ticket: Option<&TicketSnapshot>) -> Option<AgentId> {
    ticket
        .and_then(|t| t.agent.as_ref().map(|a| a.id.clone()))
        .or_else(|| {
            cause.data["review"]["agent_id"]
                .as_str()
                .and_then(|a| AgentId::parse(a).ok())
        })
}

/// The ticket the cause names: its own snapshot, else the stored one.
pub async fn ticket_of(
    store: &dyn ItemStore,
    cause: &EventEnvelope,
) -> Result<Option<TicketSnapshot>, StoreError> {
    if let Ok(t) = serde_json::from_value::<TicketSnapshot>(cause.data["ticket"].clone()) {
        return Ok(Some(t));
    }
    let Some(id) = cause.ticket_id() else {
        return Ok(None);
    };
    Ok(store
        .get(&keys::ticket(&cause.tenant_id, &id))
        .await?
        .and_then(|item| read_record(&item).ok()))
}

/// The key of a review, from its reference (`<survey request id>` or `<source>:<response id>`).
pub fn review_key_from_ref(tenant: &TenantId, reference: &str) -> Option<Key> {
    if let Ok(id) = SurveyRequestId::parse(reference) {
        return Some(keys::review(tenant, id));
    }
    let (source, response) = reference.split_once(':')?;
    Some(keys::provider_review(tenant, source, response))
}

/// A stable id for one (event, rule, action), safe in URLs and headers: the idempotency key of
/// helpdesk calls and the `delivery_id` of outgoing webhooks.
pub fn delivery_key(request: &ActionRequest) -> String {
    format!(
        "{}-{}-{}",
        request.cause.event_id, request.rule_id, request.action_index
    )
}

// ── One attempt ──────────────────────────────────────────────────────────────────────────────

/// Why an attempt did not succeed.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt in this invocation.
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Another attempt cannot help (a 4xx, bad credentials, no helpdesk, a broken template).
    Permanent(String),
    /// Our own store failed: the invocation fails, and Lambda retries it.
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<ConnectorError> for Failure {
    fn from(e: ConnectorError) -> Self {
        if e.is_transient() {
            Failure::Transient {
                retry_after: e.retry_after(),
                message: e.to_string(),
            }
        } else {
            Failure::Permanent(e.to_string())
        }
    }
}

impl From<MailError> for Failure {
    fn from(e: MailError) -> Self {
        match e {
            MailError::Transient(_) => Failure::Transient {
                message: e.to_string(),
                retry_after: None,
            },
            MailError::Rejected(_) => Failure::Permanent(e.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Done,
    Suppressed,
    NoOp,
}

/// A successful attempt: what to say, and the writes to commit with the claim's completion.
struct Effect {
    kind: Kind,
    detail: String,
    writes: Vec<WriteOp>,
    suppressed: Vec<SuppressedRecipient>,
}

impl Effect {
    fn done(detail: impl Into<String>) -> Self {
        Effect {
            kind: Kind::Done,
            detail: detail.into(),
            writes: Vec::new(),
            suppressed: Vec::new(),
        }
    }
    fn no_op(detail: impl Into<String>) -> Self {
        Effect {
            kind: Kind::NoOp,
            ..Effect::done(detail)
        }
    }
    fn with(mut self, writes: Vec<WriteOp>) -> Self {
        self.writes = writes;
        self
    }
}

fn render(name: &str, source: &str, context: &Json) -> Result<String, Failure> {
    templates::render_text(name, source, context)
        .map_err(|e| Failure::Permanent(format!("the action's {name} could not be rendered: {e}")))
}

/// What an attempt works on: the request, its ticket and the message variables.
struct Job<'r> {
    request: &'r ActionRequest,
    ticket: Option<TicketSnapshot>,
    context: Json,
    key: String,
    now: DateTime<Utc>,
}

impl Job<'_> {
    fn tenant(&self) -> &TenantId {
        &self.request.cause.tenant_id
    }
    fn cause(&self) -> &EventEnvelope {
        &self.request.cause
    }
    fn ticket_id(&self) -> Result<TicketId, Failure> {
        self.ticket
            .as_ref()
            .map(|t| t.id.clone())
            .or_else(|| self.cause().ticket_id())
            .ok_or_else(|| {
                Failure::Permanent(format!(
                    "{} needs a ticket, and the {} event names none",
                    self.request.action.kind(),
                    self.cause().event_type
                ))
            })
    }
    /// An event caused by this action's rule, in the cause's chain.
    fn event(&self, event_type: EventType, data: Json) -> EventEnvelope {
        self.cause()
            .caused(event_type, self.now, Some(self.request.rule_id), data)
    }
}

impl Executor<'_> {
    /// Executes one `action.requested` event exactly once per (event, rule, action). A failure
    /// of the action itself ends in a dead letter and an `Ok(Failed)`, so EventBridge does not
    /// redeliver it; only a failure of our own store is an `Err` (and the claim is given back).
    pub async fn execute(&self, event: &EventEnvelope) -> Result<ActionOutcome, ActionError> {
        let request: ActionRequest = serde_json::from_value(event.data.clone())
            .map_err(|e| ActionError::BadRequest(event.event_id, e.to_string()))?;
        let tenant = &event.tenant_id;
        let claim = request.claim();
        let started = self.clock.now();
        match idempotency::begin(
            self.store,
            tenant,
            &claim,
            started,
            IdempotencyConfig::default(),
        )
        .await?
        {
            Begin::Started => {}
            Begin::AlreadyCompleted(_) => return Ok(ActionOutcome::AlreadyDone),
            Begin::InProgress => return Err(ActionError::InProgress(claim)),
        }
        match self.run(event, &request, &claim).await {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                let _ = idempotency::release(self.store, tenant, &claim).await;
                Err(e.into())
            }
        }
    }

    async fn run(
        &self,
        event: &EventEnvelope,
        request: &ActionRequest,
        claim: &str,
    ) -> Result<ActionOutcome, StoreError> {
        let ticket = ticket_of(self.store, &request.cause).await?;
        let context = message_context(&request.cause, ticket.as_ref(), &request.rule_name);
        let mut job = Job {
            request,
            ticket,
            context,
            key: delivery_key(request),
            now: self.clock.now(),
        };
        let clock_started = Instant::now();
        let mut attempts = 0;
        let failure = loop {
            attempts += 1;
            job.now = self.clock.now();
            let failure = match self.attempt(&job).await {
                Ok(effect) => match self.commit(&job, claim, event, effect).await {
                    Ok(outcome) => return Ok(outcome),
                    // The effect's own write lost a race (the review changed meanwhile): read
                    // again. Only store-side effects have such writes, so nothing outside is
                    // repeated.
                    Err(Commit::Conflict) => Failure::Transient {
                        message: "the record changed while the action ran".into(),
                        retry_after: None,
                    },
                    Err(Commit::Store(e)) => return Err(e),
                },
                Err(Failure::Store(e)) => return Err(e),
                Err(other) => other,
            };
            let Failure::Transient {
                message,
                retry_after,
            } = failure
            else {
                break failure;
            };
            if let Some(wait) = retry_after
                && wait > self.retry.max_retry_after
            {
                break Failure::Transient {
                    message: format!(
                        "{message}; the helpdesk asked us to wait {} s, longer than we wait within one run",
                        wait.as_secs()
                    ),
                    retry_after,
                };
            }
            let wait = retry_after
                .unwrap_or_default()
                .max(self.retry.backoff(attempts));
            if attempts >= self.retry.max_attempts
                || clock_started.elapsed() + wait > self.retry.budget
            {
                break Failure::Transient {
                    message,
                    retry_after,
                };
            }
            tracing::warn!(action = request.action.kind(), attempts, error = %message,
                wait_ms = wait.as_millis() as u64, "action failed; retrying");
            tokio::time::sleep(wait).await;
        };
        self.dead_letter(&job, claim, event, failure, attempts)
            .await
    }

    /// Completes the claim, with the effect's own writes and its audit entry, in one
    /// transaction. A transient store error after an email or a helpdesk call has been made
    /// is retried here, so the claim is not given back (which would make the call again).
    async fn commit(
        &self,
        job: &Job<'_>,
        claim: &str,
        event: &EventEnvelope,
        effect: Effect,
    ) -> Result<ActionOutcome, Commit> {
        let (outcome, label) = match effect.kind {
            Kind::Done => (
                ActionOutcome::Done {
                    detail: effect.detail.clone(),
                },
                "done",
            ),
            Kind::Suppressed => (
                ActionOutcome::Suppressed {
                    detail: effect.detail.clone(),
                },
                "suppressed",
            ),
            Kind::NoOp => (
                ActionOutcome::NoOp {
                    detail: effect.detail.clone(),
                },
                "no_op",
            ),
        };
        let mut ops = effect.writes;
        let own_writes = ops.len();
        ops.push(idempotency::complete_op(
            job.tenant(),
            claim,
            &json!({ "outcome": label, "detail": effect.detail }),
        ));
        let mut entry = self.audit_entry(job, event, label);
        entry["detail"] = json!(effect.detail);
        entry["suppressed"] = json!(effect.suppressed);
        ops.extend(audit_put(
            job.cause(),
            job.now,
            &audit_suffix(job.request),
            entry,
        ));
        // A transaction conflict (another write on the claim, the audit or the effect's item
        // at the same moment) is retried too: failing here gives the claim back, and the
        // redelivery would make the helpdesk call or send the email a second time.
        let mut tries = 0;
        loop {
            tries += 1;
            match self.store.transact_write(ops.clone()).await {
                Ok(()) => return Ok(outcome),
                Err(e) if (e.is_transient() || e.is_conflict()) && tries < COMMIT_TRIES => {
                    tokio::time::sleep(self.retry.backoff(tries)).await;
                }
                Err(e) if condition_failed_before(&e, own_writes) => return Err(Commit::Conflict),
                Err(e) => return Err(Commit::Store(e)),
            }
        }
    }

    fn audit_entry(&self, job: &Job<'_>, event: &EventEnvelope, outcome: &str) -> Json {
        let r = job.request;
        let mut entry = json!({"kind": "action_executed", "rule_id": r.rule_id,
            "rule_name": r.rule_name, "action_index": r.action_index,
            "action": r.action.kind(), "outcome": outcome,
            "request_event_id": event.event_id,
            "review": review_ref(&r.cause.data["review"])});
        if let Some(retry_of) = event.data.get("retry_of") {
            entry["retry_of"] = retry_of.clone();
        }
        entry
    }

    /// The action failed for good (or ran out of retries): a dead letter, an audit entry and an
    /// `action.failed` event, with the claim completed as failed, in one transaction. An
    /// admin's retry removes the dead letter and the claim, and requests the action again.
    async fn dead_letter(
        &self,
        job: &Job<'_>,
        claim: &str,
        event: &EventEnvelope,
        failure: Failure,
        attempts: u32,
    ) -> Result<ActionOutcome, StoreError> {
        let (error, retryable) = match failure {
            Failure::Transient { message, .. } => (message, true),
            Failure::Permanent(message) => (message, false),
            Failure::Store(e) => return Err(e),
        };
        let r = job.request;
        let now = self.clock.now();
        let letter = FailedAction {
            id: ulid::Ulid::new(),
            failed_at: now,
            rule_id: r.rule_id,
            rule_name: r.rule_name.clone(),
            action_index: r.action_index,
            action: r.action.kind().to_string(),
            error: error.clone(),
            attempts,
            retryable,
            ticket_id: job.cause().ticket_id().map(|t| t.as_str().to_string()),
            event: event.clone(),
        };
        tracing::error!(action = r.action.kind(), tenant = %job.tenant(), attempts,
            dead_letter = %letter.id, %error, "action failed; dead-lettered");
        let failed = job.event(
            EventType::ActionFailed,
            json!({"rule_id": r.rule_id, "rule_name": r.rule_name,
                "action_index": r.action_index, "action": r.action.kind(), "error": error,
                "attempts": attempts, "dead_letter_id": letter.id,
                "ticket_id": letter.ticket_id, "review": r.cause.data["review"]}),
        );
        let mut ops = vec![
            WriteOp::put_if(
                record_item(
                    &keys::failed_action(job.tenant(), letter.id),
                    "failed_action",
                    &letter,
                ),
                Condition::item_absent(),
            ),
            idempotency::complete_op(
                job.tenant(),
                claim,
                &json!({"outcome": "failed", "dead_letter_id": letter.id}),
            ),
            outbox_put(&failed, now),
        ];
        let mut entry = self.audit_entry(job, event, "failed");
        entry["error"] = json!(error);
        entry["attempts"] = json!(attempts);
        entry["dead_letter_id"] = json!(letter.id);
        ops.extend(audit_put(job.cause(), now, &audit_suffix(r), entry));
        // The change was not made: its echo is no longer expected.
        if ExpectedChange::of(&r.action).is_some()
            && let Ok(ticket) = job.ticket_id()
        {
            ops.push(echoes::forget(job.tenant(), &ticket, &job.key));
        }
        // Retried like a completion: giving the claim back would make the calls again.
        let mut tries = 0;
        loop {
            tries += 1;
            match self.store.transact_write(ops.clone()).await {
                Ok(()) => break,
                Err(e) if (e.is_transient() || e.is_conflict()) && tries < COMMIT_TRIES => {
                    tokio::time::sleep(self.retry.backoff(tries)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(ActionOutcome::Failed {
            dead_letter_id: letter.id,
            error,
            attempts,
        })
    }

    /// One attempt at the action.
    async fn attempt(&self, job: &Job<'_>) -> Result<Effect, Failure> {
        let ctx = &job.context;
        match &job.request.action {
            Action::SendEmail {
                to,
                to_ticket_agent,
                subject,
                body,
            } => {
                self.send_email(job, to, *to_ticket_agent, subject, body)
                    .await
            }
            Action::EmailTicketAgents { subject, body } => {
                self.send_email(job, &[], true, subject, body).await
            }
            Action::AddInternalNote { body } => {
                let body = render("body", body, ctx)?;
                let ticket = job.ticket_id()?;
                self.helpdesk(job)
                    .await?
                    .add_internal_note(&job.key, &ticket, &body)
                    .await?;
                Ok(Effect::done(format!(
                    "internal note added to ticket {}",
                    ticket.as_str()
                )))
            }
            Action::SendCustomerMessage { body } => {
                let body = render("body", body, ctx)?;
                let ticket = job.ticket_id()?;
                self.helpdesk(job)
                    .await?
                    .public_reply(&job.key, &ticket, &body)
                    .await?;
                Ok(Effect::done(format!(
                    "reply sent to the customer on ticket {}",
                    ticket.as_str()
                )))
            }
            Action::CreateTicket { subject, body } => {
                let new = NewTicket {
                    subject: render("subject", subject, ctx)?,
                    body: render("body", body, ctx)?,
                    requester: job.ticket.as_ref().map(|t| Requester {
                        name: t.contact.name.clone(),
                        email: t.contact.email.clone(),
                    }),
                    related_ticket_id: job.ticket_id().ok(),
                };
                let connector = self.helpdesk(job).await?;
                let created = connector.create_ticket(&job.key, &new).await?;
                // Its `ticket.created` webhook is this rule's doing too.
                let expect = echoes::expect(
                    &created,
                    &job.key,
                    ExpectedChange::Created,
                    job.request.rule_id,
                    job.cause(),
                    job.now,
                );
                Ok(Effect::done(format!("ticket {} created", created.as_str())).with(vec![expect]))
            }
            Action::ReopenTicket {}
            | Action::SetTicketStatus { .. }
            | Action::AssignAgent { .. }
            | Action::AddTicketTag { .. }
            | Action::ChangeTicketType { .. } => self.change_ticket(job).await,
            Action::AddReviewTag { tag } => self.tag_review(job, tag).await,
            Action::SetReviewStatus { status } => self.set_review_status(job, status).await,
            Action::OpenCase { assignee } => self.open_case(job, assignee).await,
            Action::CloseCase { resolution } => self.close_case(job, resolution).await,
            Action::SendRatingRequest {} => self.send_rating_request(job).await,
            Action::PostWebhook { url, secret } => {
                // The rule's URL was checked when saved; link-local addresses (the cloud's
                // metadata service) are refused here too.
                crate::helpdesk::validate_url(url)
                    .map_err(|e| Failure::Permanent(format!("the webhook's {e}")))?;
                // Requests carry no secret (they pass through queues); the rule holds it.
                let secret = if secret.is_empty() {
                    self.webhook_secret(job, url).await?
                } else {
                    secret.clone()
                };
                let webhook = OutgoingWebhook {
                    url: url.clone(),
                    secret,
                    idempotency_key: job.key.clone(),
                    body: json!({
                        "delivery_id": job.key,
                        "type": "closedloop.rule_action",
                        "rule": {"id": job.request.rule_id, "name": job.request.rule_name},
                        "event": job.cause(),
                    }),
                };
                let status = self.webhooks.post_webhook(&webhook).await?;
                Ok(Effect::done(format!("webhook answered {status}")))
            }
        }
    }

    /// The signing secret of the rule's webhook action for `url`, from the stored rule.
    async fn webhook_secret(&self, job: &Job<'_>, url: &str) -> Result<String, Failure> {
        let rule =
            crate::automation::get_rule(self.store, job.tenant(), job.request.rule_id).await?;
        rule.and_then(|r| {
            r.actions.into_iter().find_map(|a| match a {
                Action::PostWebhook { url: u, secret } if u == url && !secret.is_empty() => {
                    Some(secret)
                }
                _ => None,
            })
        })
        .ok_or_else(|| {
            Failure::Permanent(format!(
                "the rule no longer has a webhook to {url} (it was changed or deleted), so there is no secret to sign with"
            ))
        })
    }

    async fn helpdesk(
        &self,
        job: &Job<'_>,
    ) -> Result<std::sync::Arc<dyn HelpdeskConnector>, Failure> {
        self.connectors
            .connector(job.tenant())
            .await?
            .ok_or_else(|| {
                Failure::Permanent(
                    "no helpdesk is connected (PUT /admin/v1/connector), so the change cannot be made; retry it once one is"
                        .into(),
                )
            })
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_email(
        &self,
        job: &Job<'_>,
        to: &[Email],
        to_ticket_agent: bool,
        subject: &str,
        body: &str,
    ) -> Result<Effect, Failure> {
        let recipients = recipients(
            self.store,
            job.cause(),
            job.ticket.as_ref(),
            to,
            to_ticket_agent,
        )
        .await?;
        let rendered = templates::render_email(subject, body, "", &job.context)
            .map_err(|e| Failure::Permanent(format!("the email could not be rendered: {e}")))?;
        let suppressed = recipients.suppressed;
        if recipients.send.is_empty() {
            let detail = if suppressed.is_empty() {
                "not sent: the ticket has no agent to email".to_string()
            } else {
                "not sent: every recipient has email notifications off".to_string()
            };
            return Ok(Effect {
                kind: if suppressed.is_empty() {
                    Kind::NoOp
                } else {
                    Kind::Suppressed
                },
                suppressed,
                ..Effect::done(detail)
            });
        }
        let id = self
            .mailer
            .send(&OutgoingEmail {
                to: recipients.send.clone(),
                reply_to: None,
                subject: rendered.subject,
                text: rendered.text,
                html: None,
                headers: vec![],
            })
            .await?;
        Ok(Effect {
            suppressed,
            ..Effect::done(format!(
                "email sent to {} (message {id})",
                recipients.send.len()
            ))
        })
    }

    /// Reopen, status, assignee, tag, type: the helpdesk call, with its echo expected first.
    async fn change_ticket(&self, job: &Job<'_>) -> Result<Effect, Failure> {
        let ticket = job.ticket_id()?;
        let connector = self.helpdesk(job).await?;
        let action = &job.request.action;
        if let Some(change) = ExpectedChange::of(action) {
            // Before the call: the helpdesk may send its webhook before it answers.
            self.store
                .transact_write(vec![echoes::expect(
                    &ticket,
                    &job.key,
                    change,
                    job.request.rule_id,
                    job.cause(),
                    job.now,
                )])
                .await?;
        }
        let (key, t) = (job.key.as_str(), &ticket);
        let detail = match action {
            Action::ReopenTicket {} => match connector.reopen_ticket(key, t).await? {
                Reopened::Reopened => format!("ticket {} reopened", t.as_str()),
                Reopened::FollowUpCreated { ticket_id } => format!(
                    "ticket {} is closed for good in {}, so follow-up ticket {} was created",
                    t.as_str(),
                    connector.vendor(),
                    ticket_id.as_str()
                ),
            },
            Action::SetTicketStatus { status } => {
                connector.set_ticket_status(key, t, status).await?;
                format!("ticket {} set to {status}", t.as_str())
            }
            Action::AssignAgent { agent_id } => {
                let agent = AgentId::parse(agent_id)
                    .map_err(|e| Failure::Permanent(format!("agent_id: {e}")))?;
                connector.assign_agent(key, t, &agent).await?;
                format!("ticket {} assigned to {agent_id}", t.as_str())
            }
            Action::AddTicketTag { tag } => {
                connector.add_tag(key, t, tag).await?;
                format!("tag {tag} added to ticket {}", t.as_str())
            }
            Action::ChangeTicketType { ticket_type } => {
                connector.change_ticket_type(key, t, ticket_type).await?;
                format!("ticket {} changed to type {ticket_type}", t.as_str())
            }
            other => unreachable!("{} is not a ticket change", other.kind()),
        };
        Ok(Effect::done(detail))
    }

    /// The cause's review: its key, the stored item and the review.
    async fn stored_review(
        &self,
        job: &Job<'_>,
    ) -> Result<(Key, crate::store::Item, Review), Failure> {
        let reference = review_ref(&job.cause().data["review"]).ok_or_else(|| {
            Failure::Permanent(format!(
                "{} needs a review, and the {} event names none",
                job.request.action.kind(),
                job.cause().event_type
            ))
        })?;
        let key = review_key_from_ref(job.tenant(), &reference)
            .ok_or_else(|| Failure::Permanent(format!("'{reference}' is not a review")))?;
        let item = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| Failure::Permanent(format!("review {reference} is not stored")))?;
        let review: Review = read_record(&item)?;
        Ok((key, item, review))
    }

    /// Rewrites a review's record, guarded by the record as read (the rating-link and provider
    /// writers change it too), and keeps its other attributes (indexes, confirmation, ...).
    fn review_update(key: Key, item: &crate::store::Item, review: &Review) -> WriteOp {
        let old = item.str_attr(crate::records::DATA).unwrap_or_default();
        WriteOp::Update {
            key,
            // The revision moves, so a click that read the review before this write retries
            // instead of writing over the tag or status.
            update: Update::new()
                .set(
                    crate::records::DATA,
                    Value::S(serde_json::to_string(review).expect("reviews serialise")),
                )
                .add(crate::ratings::REVISION, 1),
            condition: Some(Condition::eq(crate::records::DATA, Value::s(old))),
        }
    }

    async fn tag_review(&self, job: &Job<'_>, tag: &str) -> Result<Effect, Failure> {
        let (key, item, mut review) = self.stored_review(job).await?;
        if review.tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
            return Ok(Effect::no_op(format!("the review is already tagged {tag}")));
        }
        review.tags.push(tag.to_string());
        let event = job.event(
            EventType::ReviewTagAdded,
            json!({"review": review, "tag": tag}),
        );
        Ok(
            Effect::done(format!("tag {tag} added to the review")).with(vec![
                Self::review_update(key, &item, &review),
                outbox_put(&event, job.now),
            ]),
        )
    }

    async fn set_review_status(&self, job: &Job<'_>, status: &str) -> Result<Effect, Failure> {
        let (key, item, mut review) = self.stored_review(job).await?;
        if review.status.as_deref() == Some(status) {
            return Ok(Effect::no_op(format!(
                "the review's status is already {status}"
            )));
        }
        let previous = review.status.replace(status.to_string());
        let event = job.event(
            EventType::ReviewStatusChanged,
            json!({"review": review, "status": status, "previous_status": previous}),
        );
        Ok(
            Effect::done(format!("review status set to {status}")).with(vec![
                Self::review_update(key, &item, &review),
                outbox_put(&event, job.now),
            ]),
        )
    }

    async fn open_case(&self, job: &Job<'_>, assignee: &CaseAssignee) -> Result<Effect, Failure> {
        let review_json = &job.cause().data["review"];
        let reference = review_ref(review_json).ok_or_else(|| {
            Failure::Permanent(format!(
                "open_case needs a review, and the {} event names none",
                job.cause().event_type
            ))
        })?;
        let review_key = review_key_from_ref(job.tenant(), &reference)
            .ok_or_else(|| Failure::Permanent(format!("'{reference}' is not a review")))?;
        let marker = keys::review_open_case(&review_key);
        if let Some(open) = self.store.get(&marker).await? {
            return Ok(Effect::no_op(format!(
                "the review already has an open case ({}); a review has at most one",
                open.str_attr("case_id").unwrap_or("?")
            )));
        }
        let (assignee, note) = self.case_assignee(job, assignee);
        let contact_id = review_json["contact_id"]
            .as_str()
            .and_then(|c| ContactId::parse(c).ok())
            .or_else(|| job.ticket.as_ref().map(|t| t.contact.id.clone()));
        let account_id = review_json["account_id"]
            .as_str()
            .and_then(|a| AccountId::parse(a).ok())
            .or_else(|| {
                job.ticket
                    .as_ref()
                    .and_then(|t| t.contact.account.as_ref().map(|a| a.id.clone()))
            });
        let policy = crate::cases::policy(self.store, job.tenant()).await?;
        let (case, mut writes) = crate::cases::open(
            job.tenant(),
            crate::cases::Opening {
                id: CaseId::new(),
                review: reference,
                review_key,
                survey_request_id: review_json["survey_request_id"]
                    .as_str()
                    .and_then(|s| SurveyRequestId::parse(s).ok()),
                ticket_id: job.ticket_id().ok(),
                contact_id,
                account_id,
                assignee: assignee.clone(),
                origin: crate::domain::CaseOrigin::Rule,
                opened_by_rule: Some(job.request.rule_id),
                cause_event: job.cause().event_id,
                message: None,
            },
            &policy,
            job.now,
        );
        let opened = job.event(
            EventType::CaseOpened,
            json!({"case": case, "review": review_json}),
        );
        writes.push(outbox_put(&opened, job.now));
        let who = match &assignee {
            Some(a) => format!("assigned to {}", a.as_str()),
            None => "unassigned".to_string(),
        };
        let due = match case.sla_deadline {
            Some(d) => format!(", due {}", crate::keys::sortable_time(d)),
            None => String::new(),
        };
        // The marker is the first write, so a race with another opening fails at 0.
        Ok(Effect::done(format!("case {} opened, {who}{due}{note}", case.id)).with(writes))
    }

    /// The case's agent, and a note for the audit when the rule's choice found nobody.
    fn case_assignee(&self, job: &Job<'_>, assignee: &CaseAssignee) -> (Option<AgentId>, String) {
        let found = |id: Option<AgentId>, what: &str| match id {
            Some(id) => (Some(id), String::new()),
            None => (None, format!(" ({what} names no agent)")),
        };
        match assignee {
            CaseAssignee::Agent { agent_id } => found(AgentId::parse(agent_id).ok(), "the rule"),
            CaseAssignee::TicketAgent => found(
                ticket_agent_id(job.cause(), job.ticket.as_ref()),
                "the ticket",
            ),
            CaseAssignee::FromField { path } => {
                let value = path.split('.').fold(&job.cause().data, |v, part| &v[part]);
                found(
                    value.as_str().and_then(|s| AgentId::parse(s).ok()),
                    &format!("the event's {path}"),
                )
            }
            CaseAssignee::Unassigned => (None, String::new()),
        }
    }

    async fn close_case(&self, job: &Job<'_>, resolution: &str) -> Result<Effect, Failure> {
        let data = &job.cause().data;
        // A case event names its case; otherwise the review's open case.
        let case_id = match data["case"]["id"].as_str() {
            Some(id) => CaseId::parse(id).ok(),
            None => match review_ref(&data["review"])
                .and_then(|r| review_key_from_ref(job.tenant(), &r))
            {
                Some(review_key) => self
                    .store
                    .get(&keys::review_open_case(&review_key))
                    .await?
                    .and_then(|m| m.str_attr("case_id").and_then(|c| CaseId::parse(c).ok())),
                None => {
                    return Err(Failure::Permanent(format!(
                        "close_case needs a case or a review, and the {} event names neither",
                        job.cause().event_type
                    )));
                }
            },
        };
        let Some(case_id) = case_id else {
            return Ok(Effect::no_op("the review has no open case"));
        };
        let Some((case, revision)) = crate::cases::load(self.store, job.tenant(), case_id).await?
        else {
            return Ok(Effect::no_op(format!("case {case_id} does not exist")));
        };
        if case.status == CaseStatus::Closed {
            return Ok(Effect::no_op(format!("case {case_id} is already closed")));
        }
        let (settings, _) = crate::cases::settings(self.store, job.tenant()).await?;
        let option = settings
            .option_for_resolution(resolution)
            .map_err(|e| Failure::Permanent(format!("close_case resolution: {e}")))?;
        let by = format!("rule:{}", job.request.rule_id);
        let (closed, mut writes) =
            match crate::cases::close_writes(self.store, &case, revision, option, &by, job.now)
                .await
            {
                Ok(done) => done,
                Err(crate::cases::CaseError::Store(e)) => return Err(Failure::Store(e)),
                Err(e) => return Err(Failure::Permanent(e.to_string())),
            };
        let event = job.event(
            EventType::CaseClosed,
            json!({"case": closed, "review": data["review"]}),
        );
        writes.push(outbox_put(&event, job.now));
        Ok(Effect::done(format!("case {case_id} closed: {}", option.label)).with(writes))
    }

    async fn send_rating_request(&self, job: &Job<'_>) -> Result<Effect, Failure> {
        let ticket = job.ticket_id()?;
        let by = format!("rule: {}", job.request.rule_name);
        match crate::surveys::re_request_by_rule(
            self.store,
            &ticket,
            job.cause(),
            job.request.rule_id,
            &by,
            job.now,
        )
        .await
        {
            Ok(done) => Ok(Effect::done(match done.supersedes {
                Some(old) => format!(
                    "rating request {} sent again for ticket {} (supersedes {old})",
                    done.survey_request_id,
                    ticket.as_str()
                ),
                None => format!(
                    "rating request {} sent for ticket {}",
                    done.survey_request_id,
                    ticket.as_str()
                ),
            })),
            Err(e @ SurveyError::ContactUnsubscribed(_)) => Ok(Effect {
                kind: Kind::Suppressed,
                ..Effect::done(format!("not sent: {e}"))
            }),
            Err(e @ SurveyError::Conflict(_)) => Err(Failure::Transient {
                message: e.to_string(),
                retry_after: None,
            }),
            Err(SurveyError::Store(e))
            | Err(SurveyError::Tenancy(crate::tenancy::TenancyError::Store(e))) => {
                Err(Failure::Store(e))
            }
            Err(e) => Err(Failure::Permanent(e.to_string())),
        }
    }
}

/// How many times a completion is written before the invocation fails (and the claim is given
/// back).
const COMMIT_TRIES: u32 = 5;

fn audit_suffix(request: &ActionRequest) -> String {
    format!("ACTION#{}#{}", request.rule_id, request.action_index)
}

/// Why a completion was not written.
enum Commit {
    /// A condition on the effect's own writes failed: the record changed meanwhile.
    Conflict,
    Store(StoreError),
}

/// A transaction cancelled by the condition of one of its first `n` operations.
fn condition_failed_before(e: &StoreError, n: usize) -> bool {
    matches!(e, StoreError::TransactionCanceled { reasons }
        if reasons.iter().take(n).any(|r| matches!(r, Some(CancelReason::ConditionFailed(_)))))
}

// ── Dead letters ─────────────────────────────────────────────────────────────────────────────

/// A failed action, kept for the admin API (`T#<t>#FAILED_ACTIONS` / `<ulid>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedAction {
    pub id: ulid::Ulid,
    pub failed_at: DateTime<Utc>,
    pub rule_id: RuleId,
    pub rule_name: String,
    pub action_index: usize,
    /// The action's kind (`add_internal_note`, ...).
    pub action: String,
    pub error: String,
    pub attempts: u32,
    /// True when retries ran out on a transient failure (worth retrying later); false for a
    /// permanent one (fix the cause first: the credentials, the connector, the template).
    pub retryable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
    /// The `action.requested` event, whole.
    pub event: EventEnvelope,
}

impl FailedAction {
    /// As the admin API shows it: the request's secrets (a webhook action's signing secret)
    /// replaced.
    pub fn redacted(&self) -> Json {
        let mut json = serde_json::to_value(self).expect("failed actions serialise");
        if let Some(secret) = json
            .pointer_mut("/event/data/action/secret")
            .filter(|s| s.is_string())
        {
            *secret = json!("<redacted>");
        }
        json
    }
}

/// A page of failed actions, newest first (their ids are ULIDs, ordered to the millisecond);
/// `before` continues after the page's last id.
pub async fn list_failed(
    store: &dyn ItemStore,
    tenant: &TenantId,
    limit: usize,
    before: Option<ulid::Ulid>,
) -> Result<Vec<FailedAction>, StoreError> {
    let mut query = Query::partition(keys::failed_actions_partition(tenant))
        .backward()
        .limit(limit.clamp(1, 100));
    if let Some(before) = before {
        query = query.sk(crate::store::SortKeyCondition::Lt(before.to_string()));
    }
    let page = store.query(query).await?;
    page.items.iter().map(read_record).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no failed action '{0}'")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Requests a failed action again: in one transaction the dead letter goes, the action's claim
/// is forgotten and a new `action.requested` (same request, same chain) is put in the outbox,
/// so it runs exactly once more. Returns the new event's id.
pub async fn retry_failed(
    store: &dyn ItemStore,
    tenant: &TenantId,
    id: &str,
    now: DateTime<Utc>,
) -> Result<ulid::Ulid, RetryError> {
    let not_found = || RetryError::NotFound(id.chars().take(40).collect());
    let ulid = ulid::Ulid::from_string(id).map_err(|_| not_found())?;
    let key = keys::failed_action(tenant, ulid);
    let letter: FailedAction = match store.get(&key).await? {
        Some(item) => read_record(&item)?,
        None => return Err(not_found()),
    };
    let request: ActionRequest = serde_json::from_value(letter.event.data.clone())
        .map_err(|e| StoreError::Other(format!("failed action {id} is unreadable: {e}")))?;
    let mut data = letter.event.data.clone();
    data["retry_of"] = json!(letter.id);
    let again = EventEnvelope {
        event_id: ulid::Ulid::new(),
        causation_id: letter.event.event_id,
        occurred_at: now,
        data,
        ..letter.event.clone()
    };
    let ops = vec![
        WriteOp::Delete {
            key,
            condition: Some(Condition::item_present()),
        },
        idempotency::forget_op(tenant, &request.claim()),
        outbox_put(&again, now),
    ];
    match store.transact_write(ops).await {
        Ok(()) => Ok(again.event_id),
        // Someone else retried it a moment ago.
        Err(e) if e.condition_failed_at(0) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(800),
            max_retry_after: Duration::from_secs(1),
            budget: Duration::from_secs(10),
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let tenth = policy.backoff(10);
            assert!(tenth >= Duration::from_millis(400) && tenth <= Duration::from_millis(800));
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| policy.backoff(2)).collect();
        assert!(spread.len() > 1, "retries are jittered");
    }

    #[test]
    fn a_webhook_secret_is_redacted_from_a_listed_failure() {
        let tenant = TenantId::parse("acme").unwrap();
        let cause = EventEnvelope::new_root(
            tenant.clone(),
            EventType::TicketClosed,
            Utc::now(),
            json!({"ticket": {"id": "1"}}),
        );
        let request = ActionRequest {
            rule_id: RuleId::new(),
            rule_name: "r".into(),
            action_index: 0,
            action: Action::PostWebhook {
                url: "https://x.example/hook".into(),
                secret: "very-secret-signing-key".into(),
            },
            cause: cause.clone(),
        };
        let event = cause.caused(
            EventType::ActionRequested,
            Utc::now(),
            Some(request.rule_id),
            serde_json::to_value(&request).unwrap(),
        );
        let letter = FailedAction {
            id: ulid::Ulid::new(),
            failed_at: Utc::now(),
            rule_id: request.rule_id,
            rule_name: "r".into(),
            action_index: 0,
            action: "post_webhook".into(),
            error: "500".into(),
            attempts: 3,
            retryable: true,
            ticket_id: Some("1".into()),
            event,
        };
        let shown = letter.redacted().to_string();
        assert!(!shown.contains("very-secret-signing-key"), "{shown}");
        assert!(shown.contains("https://x.example/hook"));
    }
}
