//! The transactional outbox. A use case writes its state change and the events it causes in one
//! transaction; the outbox items are then published by `event-relay` from the table's stream
//! (or, locally, from the embedded store's stream). Consumers are idempotent on the event id.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::event::EventEnvelope;
use crate::keys;
use crate::store::{Condition, Item, ItemExt, Key, TTL_ATTRIBUTE, Value, WriteOp};

/// The `entity` attribute value that the stream filter selects.
pub const OUTBOX_ENTITY: &str = "outbox";
/// Outbox items only need to live until the relay has published them.
pub const OUTBOX_RETENTION_DAYS: i64 = 7;

/// The put that records `event` in the outbox (guarded so an event id is written once).
pub fn outbox_put(event: &EventEnvelope, now: DateTime<Utc>) -> WriteOp {
    outbox_item(event, crate::records::to_json(event), now)
}

/// [`outbox_put`] for `event` carrying `data` (in place of `event.data`), written straight
/// from its type: for payloads built on every request, such as a click's review.
pub fn outbox_put_with<T: Serialize + ?Sized>(
    event: &EventEnvelope,
    data: &T,
    now: DateTime<Utc>,
) -> WriteOp {
    outbox_item(event, event.to_json_with_data(data), now)
}

fn outbox_item(event: &EventEnvelope, json: String, now: DateTime<Utc>) -> WriteOp {
    let key = Key::new(
        keys::outbox_partition(&event.tenant_id),
        event.event_id.to_string(),
    );
    let mut item = key.to_item();
    item.insert("entity".into(), Value::s(OUTBOX_ENTITY));
    item.insert("event_type".into(), Value::s(event.event_type.as_str()));
    item.insert("event".into(), Value::S(json));
    item.insert(
        TTL_ATTRIBUTE.into(),
        Value::n((now + Duration::days(OUTBOX_RETENTION_DAYS)).timestamp()),
    );
    WriteOp::put_if(item, Condition::item_absent())
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("stream record is not an outbox item")]
    NotOutbox,
    #[error("outbox item holds an unreadable event: {0}")]
    BadEvent(String),
}

/// Reads the event back out of an outbox item's image.
pub fn envelope_from_image(image: &Item) -> Result<EventEnvelope, OutboxError> {
    if image.str_attr("entity") != Some(OUTBOX_ENTITY) {
        return Err(OutboxError::NotOutbox);
    }
    let json = image.str_attr("event").ok_or(OutboxError::NotOutbox)?;
    serde_json::from_str(json).map_err(|e| OutboxError::BadEvent(e.to_string()))
}

/// A DynamoDB stream event as Lambda delivers it (only the parts the relay reads).
#[derive(Debug, Clone, Deserialize)]
pub struct StreamEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<StreamRecord>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamRecord {
    #[serde(rename = "eventName", default)]
    pub event_name: String,
    pub dynamodb: StreamPayload,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamPayload {
    #[serde(rename = "SequenceNumber", default)]
    pub sequence_number: String,
    /// Shared: the embedded store hands the relay its own copy of the outbox item.
    #[serde(rename = "NewImage", default)]
    pub new_image: Option<Arc<Item>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::ids::TenantId;

    #[test]
    fn an_outbox_item_round_trips_its_event_through_a_stream_record() {
        let now = Utc::now();
        let event = EventEnvelope::new_root(
            TenantId::parse("acme").unwrap(),
            EventType::TicketClosed,
            now,
            serde_json::json!({"ticket": {"id": "42"}}),
        );
        let WriteOp::Put { item, condition } = outbox_put(&event, now) else {
            panic!("outbox writes are puts")
        };
        assert_eq!(condition, Some(Condition::item_absent()));
        // The image travels as DynamoDB JSON inside the Lambda stream event.
        let record = serde_json::json!({"Records": [{"eventName": "INSERT", "dynamodb": {
            "SequenceNumber": "100", "NewImage": serde_json::to_value(&item).unwrap()}}]});
        let stream: StreamEvent = serde_json::from_value(record).unwrap();
        let image = stream.records[0].dynamodb.new_image.as_ref().unwrap();
        assert_eq!(envelope_from_image(image).unwrap(), event);
        assert!(item.key().unwrap().pk.starts_with("T#acme#OUTBOX"));
    }
}
