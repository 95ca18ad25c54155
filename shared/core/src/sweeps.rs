//! Scheduled sweeps that read only what is due, through sparse indexes.

use chrono::{DateTime, Utc};

use crate::domain::Case;
use crate::due::DueItems;
use crate::event::{EventEnvelope, EventType};
use crate::keys;
use crate::outbox::outbox_put;
use crate::records::read_record;
use crate::store::{Condition, Index, ItemStore, StoreError, Update, Value, WriteOp};
use crate::tenancy;

#[derive(Debug, Default, PartialEq)]
pub struct SweepReport {
    pub items_read: usize,
    pub changed: usize,
}

/// Marks open cases past their SLA deadline as breached and emits `case.sla_breached` once each.
pub async fn sla_sweep(
    store: &dyn ItemStore,
    now: DateTime<Utc>,
) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    for tenant in tenancy::list_tenants(store).await? {
        let mut due = DueItems::new(keys::open_cases_index(&tenant), now);
        while let Some(items) = due.next_page(store).await? {
            report.items_read += items.len();
            for item in &items {
                let case: Case = read_record(item)?;
                let event = EventEnvelope::new_root(
                    tenant.clone(),
                    EventType::CaseSlaBreached,
                    now,
                    serde_json::json!({ "case": case, "ticket": { "id": case.ticket_id } }),
                );
                let key = crate::store::ItemExt::key(item)
                    .ok_or_else(|| StoreError::Other("case without key".into()))?;
                let marked = store
                    .transact_write(vec![
                        WriteOp::Update {
                            key,
                            // Leaving the due index makes the breach a one-time event.
                            update: Update::new()
                                .set("sla_breached", Value::Bool(true))
                                .remove(Index::Gsi1.pk_attribute())
                                .remove(Index::Gsi1.sk_attribute()),
                            condition: Some(Condition::Exists(Index::Gsi1.pk_attribute().into())),
                        },
                        outbox_put(&event, now),
                    ])
                    .await;
                match marked {
                    Ok(()) => report.changed += 1,
                    Err(StoreError::TransactionCanceled { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(report)
}

// The detractor sweep lives in `crate::detractors`.
