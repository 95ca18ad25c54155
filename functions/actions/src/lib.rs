//! `actions`: executes one requested action exactly once per (event, rule, action). Transient
//! failures of the action are retried within the invocation; what still fails is dead-lettered
//! (listed and retried by the admin API) and the invocation succeeds, so EventBridge does not
//! redeliver it. Only a failure of the store fails the invocation (EventBridge retries it).

use closedloop_core::actions::{ActionError, ActionOutcome, Executor};
use closedloop_core::event::{EventType, envelope_from_bus_event};

#[derive(Debug, thiserror::Error)]
pub enum ActionsError {
    #[error("not an action.requested event")]
    NotAnActionRequest,
    #[error(transparent)]
    Action(#[from] ActionError),
}

/// The handler. `executor` holds the ports `main` built once (store, mailer, connector
/// directory, webhook sender, clock) and the retry policy.
pub async fn handle(
    executor: &Executor<'_>,
    event: &serde_json::Value,
) -> Result<ActionOutcome, ActionsError> {
    let envelope = envelope_from_bus_event(event)
        .filter(|e| e.event_type == EventType::ActionRequested)
        .ok_or(ActionsError::NotAnActionRequest)?;
    let outcome = executor.execute(&envelope).await?;
    tracing::info!(event_id = %envelope.event_id, tenant = %envelope.tenant_id, ?outcome, "action handled");
    Ok(outcome)
}
