//! `event-relay`: the table's stream in, outbox events out to the bus (transactional outbox).

use closedloop_core::outbox::StreamEvent;
use closedloop_core::ports::EventPublisher;
use closedloop_core::relay;
use serde::Serialize;

/// Lambda's partial-batch response: the records to retry.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct BatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

pub async fn handle(publisher: &dyn EventPublisher, event: StreamEvent) -> BatchResponse {
    let outcome = relay::relay(&event.records, publisher).await;
    tracing::info!(
        published = outcome.published,
        skipped = outcome.skipped,
        failed = outcome.failed_sequence_numbers.len(),
        "relayed outbox batch"
    );
    BatchResponse {
        batch_item_failures: outcome
            .failed_sequence_numbers
            .into_iter()
            .map(|item_identifier| ItemFailure { item_identifier })
            .collect(),
    }
}
