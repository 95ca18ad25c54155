//! `actions`: executes one requested action exactly once per (event, rule, action).
//! A transient failure fails the invocation: EventBridge retries it, then the DLQ keeps it.

use closedloop_core::actions::{self, ActionError, ActionOutcome};
use closedloop_core::event::{EventType, envelope_from_bus_event};
use closedloop_core::ports::{Clock, Mailer};
use closedloop_core::store::ItemStore;

#[derive(Debug, thiserror::Error)]
pub enum ActionsError {
    #[error("not an action.requested event")]
    NotAnActionRequest,
    #[error(transparent)]
    Action(#[from] ActionError),
}

pub async fn handle(
    store: &dyn ItemStore,
    mailer: &dyn Mailer,
    clock: &dyn Clock,
    event: &serde_json::Value,
) -> Result<ActionOutcome, ActionsError> {
    let envelope = envelope_from_bus_event(event)
        .filter(|e| e.event_type == EventType::ActionRequested)
        .ok_or(ActionsError::NotAnActionRequest)?;
    let outcome = actions::execute(store, mailer, &envelope, clock.now()).await?;
    tracing::info!(event_id = %envelope.event_id, tenant = %envelope.tenant_id, ?outcome, "action handled");
    Ok(outcome)
}
