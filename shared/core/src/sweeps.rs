//! Scheduled sweeps that read only what is due, through sparse indexes.

use chrono::{DateTime, Utc};

use crate::keys;
use crate::store::{Condition, Index, ItemStore, Query, StoreError, Update, Value};
use crate::tenancy;

#[derive(Debug, Default, PartialEq)]
pub struct SweepReport {
    pub items_read: usize,
    pub changed: usize,
}

/// Marks open cases past their SLA deadline as breached and emits `case.sla_breached` once each,
/// reading only the due ones (`cases::breach_due`).
pub async fn sla_sweep(
    store: &dyn ItemStore,
    now: DateTime<Utc>,
) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    for tenant in tenancy::list_tenants(store).await? {
        crate::cases::breach_due(store, &tenant, now, &mut report).await?;
    }
    Ok(report)
}

/// Reads the accounts whose latest NPS answer changed since the last run (sparse GSI2) and
/// clears their change mark. Flagging them in the helpdesk arrives with the connectors.
pub async fn detractor_sweep(
    store: &dyn ItemStore,
    now: DateTime<Utc>,
) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    for tenant in tenancy::list_tenants(store).await? {
        let page = store
            .query(Query::on_index(Index::Gsi2, keys::accounts_changed_index(&tenant)).limit(1000))
            .await?;
        report.items_read += page.items.len();
        for item in &page.items {
            if let Some(key) = crate::store::ItemExt::key(item) {
                store
                    .update(
                        &key,
                        Update::new()
                            .set("swept_at", Value::S(keys::sortable_time(now)))
                            .remove(Index::Gsi2.pk_attribute())
                            .remove(Index::Gsi2.sk_attribute()),
                        Some(Condition::item_present()),
                    )
                    .await?;
                report.changed += 1;
            }
        }
    }
    Ok(report)
}
