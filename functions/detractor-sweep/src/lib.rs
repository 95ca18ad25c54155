//! `detractor-sweep`: daily, reads the customer accounts whose latest NPS answer changed since
//! the last run (sparse index), never every answer.

use closedloop_core::ports::Clock;
use closedloop_core::store::{ItemStore, StoreError};
use closedloop_core::sweeps::{self, SweepReport};

pub async fn handle(store: &dyn ItemStore, clock: &dyn Clock) -> Result<SweepReport, StoreError> {
    let report = sweeps::detractor_sweep(store, clock.now()).await?;
    tracing::info!(
        items_read = report.items_read,
        changed = report.changed,
        "detractor sweep done"
    );
    Ok(report)
}
