//! Scheduled sweeps that read only what is due, through sparse indexes.

use chrono::{DateTime, Utc};

use crate::store::{ItemStore, StoreError};
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

// The detractor sweep lives in `crate::detractors`.
