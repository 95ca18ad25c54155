//! `survey-scheduler`: schedules a rating request when a ticket closes (cancels it when the
//! ticket reopens first), and on its every-minute schedule sends the requests that are due.

use closedloop_core::event::envelope_from_bus_event;
use closedloop_core::ports::{Clock, Mailer};
use closedloop_core::ratings;
use closedloop_core::store::ItemStore;
use closedloop_core::surveys::{self, LinkSigner, ScheduleOutcome, SurveyError};

#[derive(Debug, PartialEq)]
pub enum Handled {
    TicketEvent(ScheduleOutcome),
    /// A scheduled tick: how many due requests were sent, and how many reviews settled.
    Tick {
        sent: usize,
        settled: usize,
    },
}

/// A closedloop ticket event is handled as such; anything else is a schedule tick.
pub async fn handle(
    store: &dyn ItemStore,
    mailer: &dyn Mailer,
    clock: &dyn Clock,
    links: &LinkSigner<'_>,
    event: &serde_json::Value,
) -> Result<Handled, SurveyError> {
    match envelope_from_bus_event(event) {
        Some(envelope) => {
            let outcome = surveys::on_ticket_event(store, mailer, clock, links, &envelope).await?;
            tracing::info!(event_id = %envelope.event_id, tenant = %envelope.tenant_id, ?outcome, "ticket event handled");
            Ok(Handled::TicketEvent(outcome))
        }
        None => {
            let sent = surveys::send_due(store, mailer, clock, links).await?;
            let settled = ratings::settle_reviews(store, clock.now()).await?;
            tracing::info!(
                sent,
                settled,
                "due rating requests sent, settled reviews received"
            );
            Ok(Handled::Tick { sent, settled })
        }
    }
}
