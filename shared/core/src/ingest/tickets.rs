//! Writing a helpdesk's ticket event: one transaction holds the dedupe record, the ticket
//! snapshot, the contact-directory entry and the outbox event.

use chrono::{DateTime, Duration, Utc};

use super::{DEDUPE_DAYS, IngestError, IngestOutcome, Source, TicketDelivery};
use crate::contacts;
use crate::event::EventEnvelope;
use crate::ids::TenantId;
use crate::keys;
use crate::outbox::outbox_put;
use crate::records::record_item;
use crate::store::{Condition, Item, ItemStore, TTL_ATTRIBUTE, Value, WriteOp};

pub(super) async fn record(
    store: &dyn ItemStore,
    now: DateTime<Utc>,
    tenant: &TenantId,
    source: Source,
    delivery: TicketDelivery,
) -> Result<IngestOutcome, IngestError> {
    delivery.ticket.validate()?;
    let data = serde_json::json!({
        "ticket": delivery.ticket,
        "source": source.as_str(),
        "delivery_id": delivery.delivery_id,
    });
    // The echo of a change a rule made is caused by that rule (loop protection), once.
    let echo =
        crate::echoes::recognise(store, tenant, delivery.event_type, &delivery.ticket, now).await?;
    let event = match &echo {
        Some(echo) => echo.event(delivery.event_type, delivery.occurred_at, data),
        None => EventEnvelope::new_root(
            tenant.clone(),
            delivery.event_type,
            delivery.occurred_at,
            data,
        ),
    };
    let mut ops = vec![
        WriteOp::put_if(
            dedupe_item(tenant, source, &delivery.delivery_id, &event, now),
            Condition::item_absent(),
        ),
        WriteOp::put(record_item(
            &keys::ticket(tenant, &delivery.ticket.id),
            "ticket",
            &delivery.ticket,
        )),
        contacts::directory_put(tenant, &delivery.ticket.contact),
        outbox_put(&event, now),
    ];
    ops.extend(echo.as_ref().map(crate::echoes::Echo::consume));
    match store.transact_write(ops).await {
        Ok(()) => Ok(IngestOutcome::Accepted {
            event_id: event.event_id,
            event_type: delivery.event_type,
        }),
        Err(e) if e.condition_failed_at(0) => Ok(IngestOutcome::Duplicate),
        Err(e) => Err(e.into()),
    }
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
