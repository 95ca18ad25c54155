//! `sla-sweep`: every few minutes, marks open cases past their business-hours deadline as
//! breached, reading only the due ones through the sparse open-cases index.

use closedloop_core::ports::Clock;
use closedloop_core::store::{ItemStore, StoreError};
use closedloop_core::sweeps::{self, SweepReport};

pub async fn handle(store: &dyn ItemStore, clock: &dyn Clock) -> Result<SweepReport, StoreError> {
    let report = sweeps::sla_sweep(store, clock.now()).await?;
    tracing::info!(
        items_read = report.items_read,
        breached = report.changed,
        "sla sweep done"
    );
    Ok(report)
}
