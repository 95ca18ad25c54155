//! The outbox relay: stream records in, events out to the bus.

use crate::event::EventEnvelope;
use crate::outbox::{OutboxError, StreamRecord, envelope_from_image};
use crate::ports::{EventPublisher, PublishError};

/// What the relay could not publish, by stream sequence number, so Lambda retries only those
/// (`ReportBatchItemFailures`).
#[derive(Debug, Default, PartialEq)]
pub struct RelayOutcome {
    pub published: usize,
    pub skipped: usize,
    pub failed_sequence_numbers: Vec<String>,
}

/// Publishes the outbox events among `records`, in order.
pub async fn relay(records: &[StreamRecord], publisher: &dyn EventPublisher) -> RelayOutcome {
    let mut outcome = RelayOutcome::default();
    let mut batch = Vec::with_capacity(records.len());
    for record in records {
        let Some(image) = record
            .dynamodb
            .new_image
            .as_ref()
            .filter(|_| record.event_name == "INSERT")
        else {
            outcome.skipped += 1;
            continue;
        };
        match envelope_from_image(image) {
            Ok(event) => batch.push((record.dynamodb.sequence_number.clone(), event)),
            Err(OutboxError::NotOutbox) => outcome.skipped += 1,
            Err(e @ OutboxError::BadEvent(_)) => {
                // Retrying cannot fix it; the DLQ destination of the stream keeps the record.
                tracing::error!(sequence = %record.dynamodb.sequence_number, error = %e, "unreadable outbox item");
                outcome
                    .failed_sequence_numbers
                    .push(record.dynamodb.sequence_number.clone());
            }
        }
    }
    let (sequence_numbers, events): (Vec<String>, Vec<EventEnvelope>) = batch.into_iter().unzip();
    match publisher.publish(&events).await {
        Ok(()) => outcome.published = events.len(),
        Err(PublishError::Partial { failed }) => {
            for (seq, event) in sequence_numbers.iter().zip(&events) {
                if failed.iter().any(|(id, _)| *id == event.event_id) {
                    outcome.failed_sequence_numbers.push(seq.clone());
                } else {
                    outcome.published += 1;
                }
            }
        }
        Err(PublishError::Unavailable(why)) => {
            tracing::warn!(error = %why, "event bus unavailable; the batch will be retried");
            outcome.failed_sequence_numbers.extend(sequence_numbers);
        }
    }
    outcome
}
