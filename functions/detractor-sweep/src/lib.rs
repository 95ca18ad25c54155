//! `detractor-sweep`: daily, flags and unflags customer accounts in the helpdesk from their
//! latest NPS answer and mails the digest. It reads only the accounts whose latest answer
//! changed since the last run and those still in error (a sparse index), never every answer.

use closedloop_core::detractors::{self, SweepError, SweepSummary};
use closedloop_core::helpdesk::ConnectorDirectory;
use closedloop_core::ports::{Clock, Mailer};
use closedloop_core::store::ItemStore;

pub async fn handle(
    store: &dyn ItemStore,
    connectors: &dyn ConnectorDirectory,
    mailer: &dyn Mailer,
    clock: &dyn Clock,
) -> Result<SweepSummary, SweepError> {
    let summary = detractors::sweep(store, connectors, mailer, clock.now()).await?;
    tracing::info!(
        accounts_read = summary.accounts_read,
        items_read = summary.items_read,
        flagged = summary.flagged,
        updated = summary.updated,
        unflagged = summary.unflagged,
        in_error = summary.in_error,
        digests_sent = summary.digests_sent,
        digest_failures = summary.digest_failures,
        "detractor sweep done"
    );
    Ok(summary)
}
