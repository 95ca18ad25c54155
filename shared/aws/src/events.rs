//! EventBridge publisher: PutEvents in batches of 10 (the API's limit), checking each entry.

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use closedloop_core::event::{EVENT_SOURCE, EventEnvelope};
use closedloop_core::ports::{EventPublisher, PublishError};

/// PutEvents accepts at most 10 entries per call.
pub const MAX_ENTRIES_PER_CALL: usize = 10;

pub struct EventBridgePublisher {
    client: Client,
    bus_name: String,
}

impl EventBridgePublisher {
    pub fn new(client: Client, bus_name: impl Into<String>) -> Self {
        EventBridgePublisher {
            client,
            bus_name: bus_name.into(),
        }
    }
}

#[async_trait]
impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), PublishError> {
        let mut failed = Vec::new();
        for chunk in events.chunks(MAX_ENTRIES_PER_CALL) {
            let entries = chunk
                .iter()
                .map(|event| {
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus_name)
                        .source(EVENT_SOURCE)
                        .detail_type(event.event_type.as_str())
                        .detail(serde_json::to_string(event).expect("envelopes serialise"))
                        .time(aws_sdk_eventbridge::primitives::DateTime::from_millis(
                            event.occurred_at.timestamp_millis(),
                        ))
                        .build()
                })
                .collect::<Vec<_>>();
            let output = match self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => output,
                Err(e) => {
                    let why = aws_sdk_eventbridge::error::DisplayErrorContext(&e).to_string();
                    // Nothing of this chunk went out; report it and the rest as failed.
                    failed.extend(chunk.iter().map(|ev| (ev.event_id, why.clone())));
                    continue;
                }
            };
            // Entries come back in request order; a failed one carries an error code.
            for (event, entry) in chunk.iter().zip(output.entries()) {
                if let Some(code) = entry.error_code() {
                    failed.push((
                        event.event_id,
                        format!("{code}: {}", entry.error_message().unwrap_or_default()),
                    ));
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else if failed.len() == events.len() {
            Err(PublishError::Unavailable(failed[0].1.clone()))
        } else {
            Err(PublishError::Partial { failed })
        }
    }
}
