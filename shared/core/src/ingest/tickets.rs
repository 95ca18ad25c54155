//! Writing a helpdesk's ticket event: one transaction holds the dedupe record, the ticket
//! snapshot, the contact-directory entry and the outbox event.

use chrono::{DateTime, Duration, Utc};

use super::{DEDUPE_DAYS, IngestError, IngestOutcome, Source, TicketDelivery};
use crate::contacts;
use crate::domain::TicketSnapshot;
use crate::event::EventEnvelope;
use crate::event::EventType;
use crate::ids::TenantId;
use crate::keys;
use crate::outbox::outbox_put;
use crate::records::{read_record, record_item};
use crate::store::{Condition, Item, ItemStore, TTL_ATTRIBUTE, Value, WriteOp};

pub(super) async fn record(
    store: &dyn ItemStore,
    now: DateTime<Utc>,
    tenant: &TenantId,
    source: Source,
    delivery: TicketDelivery,
) -> Result<IngestOutcome, IngestError> {
    delivery.ticket.validate()?;
    let ticket_key = keys::ticket(tenant, &delivery.ticket.id);
    let first_message_key = keys::first_customer_message(tenant, &delivery.ticket.id);
    let previous: Option<TicketSnapshot> = store
        .get(&ticket_key)
        .await?
        .and_then(|item| read_record(&item).ok());
    let ticket = with_history(delivery.ticket.clone(), previous.as_ref(), &delivery);
    let is_message = delivery.event_type == EventType::TicketCustomerMessage;
    // Concurrent first messages race on the marker; the loser is simply not the first.
    let mut first = is_message && store.get(&first_message_key).await?.is_none();
    // The echo of a change a rule made is caused by that rule (loop protection), once.
    let echo = crate::echoes::recognise(store, tenant, delivery.event_type, &ticket, now).await?;
    loop {
        let mut data = serde_json::json!({
            "ticket": ticket,
            "source": source.as_str(),
            "delivery_id": delivery.delivery_id,
        });
        if let Some(message) = &delivery.message {
            data["message"] = serde_json::json!({
                "body": message.body, "from": message.from, "first": first,
            });
        }
        if let Some(tag) = &delivery.tag {
            data["tag"] = serde_json::json!(tag.trim());
        }
        let event = match &echo {
            Some(echo) => echo.event(delivery.event_type, delivery.occurred_at, data),
            None => EventEnvelope::new_root(
                tenant.clone(),
                delivery.event_type,
                delivery.occurred_at,
                data,
            ),
        };
        let mut snapshot = record_item(&ticket_key, "ticket", &ticket);
        snapshot.extend(crate::automation::open_ticket_index_attributes(
            tenant, &ticket,
        ));
        let mut ops = vec![
            WriteOp::put_if(
                dedupe_item(tenant, source, &delivery.delivery_id, &event, now),
                Condition::item_absent(),
            ),
            WriteOp::put(snapshot),
            contacts::directory_put(tenant, &ticket.contact),
            outbox_put(&event, now),
        ];
        if first {
            ops.push(WriteOp::put_if(
                first_message_key.to_item(),
                Condition::item_absent(),
            ));
        }
        ops.extend(echo.as_ref().map(crate::echoes::Echo::consume));
        match store.transact_write(ops).await {
            Ok(()) => {
                return Ok(IngestOutcome::Accepted {
                    event_id: event.event_id,
                    event_type: delivery.event_type,
                });
            }
            Err(e) if e.condition_failed_at(0) => return Ok(IngestOutcome::Duplicate),
            Err(e) if first && e.condition_failed_at(4) => first = false,
            Err(e) => return Err(e.into()),
        }
    }
}

/// What helpdesks often leave out of a later event, kept from the earlier snapshot: when the
/// ticket was created, the customer's last message, whether it was answered.
fn with_history(
    mut ticket: TicketSnapshot,
    previous: Option<&TicketSnapshot>,
    delivery: &TicketDelivery,
) -> TicketSnapshot {
    let earlier = |f: fn(&TicketSnapshot) -> Option<DateTime<Utc>>| previous.and_then(f);
    ticket.created_at = ticket
        .created_at
        .or(earlier(|p| p.created_at))
        .or((delivery.event_type == EventType::TicketCreated).then_some(delivery.occurred_at));
    if delivery.event_type == EventType::TicketCustomerMessage {
        ticket.last_customer_message_at = ticket
            .last_customer_message_at
            .or(Some(delivery.occurred_at));
    } else {
        ticket.last_customer_message_at = ticket
            .last_customer_message_at
            .or(earlier(|p| p.last_customer_message_at));
    }
    ticket.answered = ticket.answered.or(previous.and_then(|p| p.answered));
    ticket
}

/// The record that makes a delivery id count once, for `DEDUPE_DAYS`.
pub(super) fn dedupe_item(
    tenant: &TenantId,
    source: Source,
    delivery_id: &str,
    event: &EventEnvelope,
    now: DateTime<Utc>,
) -> Item {
    let mut item = keys::webhook_delivery(tenant, source.as_str(), delivery_id).to_item();
    item.insert("event_id".into(), Value::S(event.event_id.to_string()));
    item.insert(
        TTL_ATTRIBUTE.into(),
        Value::n((now + Duration::days(DEDUPE_DAYS)).timestamp()),
    );
    item
}
