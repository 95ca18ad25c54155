//! Helpdesk webhooks in: verify the sender, drop redeliveries, normalise to domain events.
//!
//! The generic format (`docs/webhooks.md`), signed with `X-Closedloop-Signature`:
//! `{"delivery_id": "...", "type": "ticket.closed", "occurred_at": "...", "ticket": {...}}`.

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use crate::domain::TicketSnapshot;
use crate::event::{EventEnvelope, EventType};
use crate::ids::TenantId;
use crate::keys;
use crate::outbox::outbox_put;
use crate::records::record_item;
use crate::signature::{self, SignatureError};
use crate::store::{CancelReason, Condition, ItemStore, StoreError, TTL_ATTRIBUTE, Value, WriteOp};
use crate::tenancy::{self, GENERIC_SOURCE};

pub const SIGNATURE_HEADER: &str = "X-Closedloop-Signature";
/// Bodies above this are refused before parsing.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Deliveries are remembered this long for deduplication.
pub const DEDUPE_DAYS: i64 = 7;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("unknown webhook source '{0}'; known sources: generic")]
    UnknownSource(String),
    #[error("no webhook secret is configured for source '{0}' of this tenant")]
    NotConfigured(String),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the body is {0} bytes; the limit is {MAX_BODY_BYTES}")]
    TooLarge(usize),
    #[error("the body is not valid: {0}")]
    BadBody(String),
    #[error("event type '{0}' is not accepted from helpdesks")]
    UnsupportedType(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IngestError {
    /// True when the sender did something wrong (4xx), false when we failed (5xx).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, IngestError::Store(_))
    }
}

#[derive(Debug, PartialEq)]
pub enum IngestOutcome {
    Accepted {
        event_id: ulid::Ulid,
        event_type: EventType,
    },
    /// Seen before: nothing done.
    Duplicate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericDelivery {
    delivery_id: String,
    #[serde(rename = "type")]
    event_type: String,
    occurred_at: DateTime<Utc>,
    ticket: TicketSnapshot,
}

/// Accepts one delivery: one transaction writes the dedupe record, the ticket and the event.
pub async fn ingest_webhook(
    store: &dyn ItemStore,
    now: DateTime<Utc>,
    tenant: &TenantId,
    source: &str,
    signature_header: Option<&str>,
    body: &[u8],
) -> Result<IngestOutcome, IngestError> {
    if source != GENERIC_SOURCE {
        return Err(IngestError::UnknownSource(
            source.chars().take(40).collect(),
        ));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(IngestError::TooLarge(body.len()));
    }
    let secrets = tenancy::webhook_secrets(store, tenant, source).await?;
    if secrets.is_empty() {
        return Err(IngestError::NotConfigured(source.to_string()));
    }
    signature::verify_timestamped(signature_header, SIGNATURE_HEADER, &secrets, body, now)?;
    let delivery: GenericDelivery =
        serde_json::from_slice(body).map_err(|e| IngestError::BadBody(e.to_string()))?;
    if delivery.delivery_id.is_empty()
        || delivery.delivery_id.len() > 128
        || delivery.delivery_id.contains('#')
    {
        return Err(IngestError::BadBody(
            "delivery_id must be 1-128 characters without '#'".into(),
        ));
    }
    let event_type = match EventType::parse(&delivery.event_type) {
        Some(
            t @ (EventType::TicketCreated
            | EventType::TicketClosed
            | EventType::TicketReopened
            | EventType::TicketStatusChanged
            | EventType::TicketTagAdded
            | EventType::TicketCustomerMessage),
        ) => t,
        _ => {
            return Err(IngestError::UnsupportedType(
                delivery.event_type.chars().take(40).collect(),
            ));
        }
    };
    delivery
        .ticket
        .validate()
        .map_err(|e| IngestError::BadBody(e.to_string()))?;

    let event = EventEnvelope::new_root(
        tenant.clone(),
        event_type,
        delivery.occurred_at,
        serde_json::json!({ "ticket": delivery.ticket, "source": source, "delivery_id": delivery.delivery_id }),
    );
    let mut dedupe = keys::webhook_delivery(tenant, source, &delivery.delivery_id).to_item();
    dedupe.insert("event_id".into(), Value::S(event.event_id.to_string()));
    dedupe.insert(
        TTL_ATTRIBUTE.into(),
        Value::n((now + Duration::days(DEDUPE_DAYS)).timestamp()),
    );
    let ticket_item = record_item(
        &keys::ticket(tenant, &delivery.ticket.id),
        "ticket",
        &delivery.ticket,
    );
    let ops = vec![
        WriteOp::put_if(dedupe, Condition::item_absent()),
        WriteOp::put(ticket_item),
        outbox_put(&event, now),
    ];
    match store.transact_write(ops).await {
        Ok(()) => Ok(IngestOutcome::Accepted {
            event_id: event.event_id,
            event_type,
        }),
        Err(StoreError::TransactionCanceled { reasons })
            if matches!(
                reasons.first(),
                Some(Some(CancelReason::ConditionFailed(_)))
            ) =>
        {
            Ok(IngestOutcome::Duplicate)
        }
        Err(e) => Err(e.into()),
    }
}
