//! The generic format (`docs/webhooks.md`), signed Stripe-style with `X-Closedloop-Signature`:
//! `{"delivery_id": "...", "type": "ticket.closed", "occurred_at": "...", "ticket": {...}}`.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Delivery, Headers, IngestError, TicketDelivery, key_part};
use crate::domain::TicketSnapshot;
use crate::event::EventType;
use crate::signature::{self, Proof, SignatureError};

pub const SIGNATURE_HEADER: &str = "X-Closedloop-Signature";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericDelivery {
    delivery_id: String,
    #[serde(rename = "type")]
    event_type: String,
    occurred_at: DateTime<Utc>,
    ticket: TicketSnapshot,
    /// The customer's message, for `ticket.customer_message`.
    #[serde(default)]
    message: Option<super::Message>,
    /// The tag just added, for `ticket.tag_added`.
    #[serde(default)]
    tag: Option<String>,
}

pub(super) fn proof<'a>(
    headers: &'a dyn Headers,
    body: &'a [u8],
    now: DateTime<Utc>,
) -> Result<Proof<'a>, SignatureError> {
    signature::timestamped_proof(
        headers.header(SIGNATURE_HEADER),
        SIGNATURE_HEADER,
        body,
        now,
    )
}

pub(super) fn parse(body: &[u8]) -> Result<Delivery, IngestError> {
    let delivery: GenericDelivery =
        serde_json::from_slice(body).map_err(|e| IngestError::BadBody(e.to_string()))?;
    let delivery_id = key_part("delivery_id", &delivery.delivery_id)?;
    // Helpdesks that resolve rather than close: a resolved ticket asks for a rating the same way.
    let event_type = match EventType::parse(&delivery.event_type)
        .or((delivery.event_type == "ticket.resolved").then_some(EventType::TicketClosed))
    {
        Some(
            t @ (EventType::TicketCreated
            | EventType::TicketClosed
            | EventType::TicketReopened
            | EventType::TicketStatusChanged
            | EventType::TicketTagAdded
            | EventType::TicketCustomerMessage
            | EventType::TicketReturnCreated),
        ) => t,
        _ => {
            return Err(IngestError::UnsupportedType(
                delivery.event_type.chars().take(40).collect(),
            ));
        }
    };
    if event_type == EventType::TicketCustomerMessage && delivery.message.is_none() {
        return Err(IngestError::missing("message"));
    }
    if let Some(m) = &delivery.message
        && (m.body.chars().count() > 20_000)
    {
        return Err(IngestError::invalid(
            "message.body",
            "must be at most 20,000 characters",
        ));
    }
    if let Some(tag) = &delivery.tag
        && (tag.trim().is_empty() || tag.chars().count() > 100)
    {
        return Err(IngestError::invalid("tag", "must be 1 to 100 characters"));
    }
    if event_type == EventType::TicketTagAdded && delivery.tag.is_none() {
        return Err(IngestError::missing("tag"));
    }
    Ok(Delivery::Ticket(Box::new(TicketDelivery {
        delivery_id,
        event_type,
        occurred_at: delivery.occurred_at,
        ticket: delivery.ticket,
        message: delivery.message,
        tag: delivery.tag,
    })))
}
