//! `rules`: evaluates a tenant's enabled rules for each domain event and requests their actions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use closedloop_core::automation::{self, AutomationError, Verdict};
use closedloop_core::domain::Rule;
use closedloop_core::event::envelope_from_bus_event;
use closedloop_core::ids::{RuleId, TenantId};
use closedloop_core::ports::Clock;
use closedloop_core::store::{ItemStore, StoreError};

/// Rules are re-read at most this often per tenant and warm instance.
pub const RULE_CACHE_TTL: Duration = Duration::from_secs(30);

/// A tenant's rules and when they were read.
type CachedRules = (Instant, Arc<Vec<Rule>>);

/// A tenant-scoped cache of rules, kept across warm invocations.
#[derive(Default)]
pub struct RuleCache {
    entries: Mutex<HashMap<TenantId, CachedRules>>,
}

impl RuleCache {
    pub async fn rules(
        &self,
        store: &dyn ItemStore,
        tenant: &TenantId,
    ) -> Result<Arc<Vec<Rule>>, StoreError> {
        if let Some((at, rules)) = self.entries.lock().expect("cache lock").get(tenant)
            && at.elapsed() < RULE_CACHE_TTL
        {
            return Ok(rules.clone());
        }
        let rules = Arc::new(automation::load_rules(store, tenant).await?);
        self.entries
            .lock()
            .expect("cache lock")
            .insert(tenant.clone(), (Instant::now(), rules.clone()));
        Ok(rules)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("not a closedloop event")]
    NotAnEvent,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Automation(#[from] AutomationError),
}

/// Handles one EventBridge delivery. An error fails the invocation, so it is retried.
pub async fn handle(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    cache: &RuleCache,
    event: &serde_json::Value,
) -> Result<Vec<(RuleId, Verdict)>, RulesError> {
    let envelope = envelope_from_bus_event(event).ok_or(RulesError::NotAnEvent)?;
    let rules = cache.rules(store, &envelope.tenant_id).await?;
    let verdicts = automation::evaluate(store, &rules, &envelope, clock.now()).await?;
    tracing::info!(event_id = %envelope.event_id, event_type = %envelope.event_type,
        tenant = %envelope.tenant_id, evaluated = verdicts.len(), "rules evaluated");
    Ok(verdicts)
}
