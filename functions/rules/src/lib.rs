//! `rules`: evaluates a tenant's enabled rules for each domain event and requests their actions;
//! on its hourly schedule, runs the time-based rules over open tickets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use closedloop_core::automation::{self, AutomationError, Decision};
use closedloop_core::event::envelope_from_bus_event;
use closedloop_core::ids::TenantId;
use closedloop_core::ports::Clock;
use closedloop_core::rules::RuleSet;
use closedloop_core::store::{ItemStore, StoreError};
use closedloop_core::tenancy::{self, TenancyError};

/// A tenant's compiled rules and the rules revision they were read at.
type CachedRules = (i64, Arc<RuleSet>);

/// A tenant-scoped cache of compiled rules, kept across warm invocations. Each event costs one
/// point read of the tenant's rules revision; the rules are re-read and re-compiled only when
/// it moved.
#[derive(Default)]
pub struct RuleCache {
    entries: Mutex<HashMap<TenantId, CachedRules>>,
}

impl RuleCache {
    pub async fn rules(
        &self,
        store: &dyn ItemStore,
        tenant: &TenantId,
    ) -> Result<Arc<RuleSet>, StoreError> {
        let revision = automation::rules_revision(store, tenant).await?;
        if let Some((at, rules)) = self.entries.lock().expect("cache lock").get(tenant)
            && *at == revision
        {
            return Ok(rules.clone());
        }
        let rules = Arc::new(RuleSet::compile(
            automation::load_rules(store, tenant).await?,
        ));
        self.entries
            .lock()
            .expect("cache lock")
            .insert(tenant.clone(), (revision, rules.clone()));
        Ok(rules)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error(transparent)]
    Automation(#[from] AutomationError),
}

#[derive(Debug, PartialEq)]
pub enum Handled {
    Event(Decision),
    /// The hourly tick: how many time-based rules fired, over all tenants.
    Tick {
        fired: usize,
    },
}

/// Handles one EventBridge delivery: a closedloop event, or the hourly schedule's tick. An
/// error fails the invocation, so it is retried.
pub async fn handle(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    cache: &RuleCache,
    event: &serde_json::Value,
) -> Result<Handled, RulesError> {
    let now = clock.now();
    let Some(envelope) = envelope_from_bus_event(event) else {
        let mut fired = 0;
        for tenant in tenancy::list_tenants(store).await? {
            let rules = cache.rules(store, &tenant).await?;
            if !rules.has_trigger(closedloop_core::rules::Trigger::TimeBased) {
                continue;
            }
            let settings = tenancy::get_settings(store, &tenant).await?;
            fired += automation::run_time_based(store, &tenant, &rules, &settings, now).await?;
        }
        tracing::info!(fired, "time-based rules run");
        return Ok(Handled::Tick { fired });
    };
    if envelope.event_type == closedloop_core::event::EventType::TicketCustomerMessage {
        // A customer answering a closed case's follow-up opens a new case (idempotent on the
        // event id), before the rules see the message.
        let outcome = closedloop_core::cases::on_customer_message(store, &envelope, now).await?;
        tracing::info!(event_id = %envelope.event_id, ?outcome, "customer message and cases");
    }
    let rules = cache.rules(store, &envelope.tenant_id).await?;
    let settings = tenancy::get_settings(store, &envelope.tenant_id).await?;
    let decision = automation::evaluate(store, &rules, &settings, &envelope, now).await?;
    tracing::info!(event_id = %envelope.event_id, event_type = %envelope.event_type,
        tenant = %envelope.tenant_id, evaluated = decision.verdicts.len(),
        requested = decision.requested.len(), "rules evaluated");
    Ok(Handled::Event(decision))
}
