//! Contacts who want no more rating requests. Every request email carries a signed link
//! (`/u/{token}`, and the `List-Unsubscribe` headers). Opening it only shows a page: scanners
//! open links, so the unsubscribe itself is a POST (the page's button, or a mail client's
//! RFC 8058 one-click POST).

use chrono::{DateTime, Utc};

use crate::domain::{Email, SurveyRequest, TenantSettings};
use crate::event::{EventEnvelope, EventType};
use crate::ids::TenantId;
use crate::keys;
use crate::outbox::outbox_put;
use crate::ratings::RatingError;
use crate::store::{Condition, ItemStore, StoreError, Value, WriteOp};
use crate::surveys;
use crate::tenancy;
use crate::tokens::TokenKeyring;

/// The token value that authorises unsubscribing the survey request's contact. It is not a
/// rating, so such a token can never record one.
pub const UNSUBSCRIBE_VALUE: &str = "unsubscribe";
/// Unsubscribe links outlive rating links: people unsubscribe from old emails.
pub const UNSUBSCRIBE_VALIDITY_DAYS: i64 = 365;

/// What the unsubscribe page needs.
#[derive(Debug, Clone)]
pub struct Unsubscribing {
    pub request: SurveyRequest,
    pub settings: TenantSettings,
    pub already: bool,
}

/// True when the address asked for no more rating requests from this tenant.
pub async fn is_unsubscribed(
    store: &dyn ItemStore,
    tenant: &TenantId,
    email: &Email,
) -> Result<bool, StoreError> {
    Ok(store
        .get(&keys::unsubscribed(tenant, email.as_str()))
        .await?
        .is_some())
}

async fn load(
    store: &dyn ItemStore,
    keyring: &TokenKeyring,
    now: DateTime<Utc>,
    token: &str,
) -> Result<(SurveyRequest, TenantSettings), RatingError> {
    let claims = keyring.verify(token, now)?;
    if claims.value != UNSUBSCRIBE_VALUE {
        return Err(RatingError::BadValue(
            claims.value.chars().take(20).collect(),
        ));
    }
    // A withdrawn or superseded request still identifies the contact: unsubscribing works.
    let request = surveys::get_request(store, &claims.tenant, claims.survey_request)
        .await?
        .ok_or(RatingError::UnknownRequest)?;
    let settings = tenancy::get_settings(store, &claims.tenant).await?;
    Ok((request, settings))
}

/// Reads what the confirmation page shows; writes nothing.
pub async fn preview(
    store: &dyn ItemStore,
    keyring: &TokenKeyring,
    now: DateTime<Utc>,
    token: &str,
) -> Result<Unsubscribing, RatingError> {
    let (request, settings) = load(store, keyring, now, token).await?;
    let already = is_unsubscribed(store, &request.tenant_id, &request.ticket.contact.email).await?;
    Ok(Unsubscribing {
        request,
        settings,
        already,
    })
}

/// Records the unsubscribe once, with `contact.unsubscribed` in the same transaction; a second
/// POST changes nothing.
pub async fn unsubscribe(
    store: &dyn ItemStore,
    keyring: &TokenKeyring,
    now: DateTime<Utc>,
    token: &str,
) -> Result<Unsubscribing, RatingError> {
    let (request, settings) = load(store, keyring, now, token).await?;
    let tenant = &request.tenant_id;
    let contact = &request.ticket.contact;
    let mut item = keys::unsubscribed(tenant, contact.email.as_str()).to_item();
    item.insert("entity".into(), Value::s("unsubscribe"));
    item.insert("contact_id".into(), Value::s(contact.id.as_str()));
    item.insert("survey_request_id".into(), Value::S(request.id.to_string()));
    item.insert("unsubscribed_at".into(), Value::S(keys::sortable_time(now)));
    let event = EventEnvelope::new_root(
        tenant.clone(),
        EventType::ContactUnsubscribed,
        now,
        serde_json::json!({ "contact_id": contact.id, "email": contact.email,
            "survey_request_id": request.id }),
    );
    let written = store
        .transact_write(vec![
            WriteOp::put_if(item, Condition::item_absent()),
            outbox_put(&event, now),
        ])
        .await;
    let already = match written {
        Ok(()) => false,
        Err(e) if e.condition_failed_at(0) => true,
        Err(e) => return Err(e.into()),
    };
    Ok(Unsubscribing {
        request,
        settings,
        already,
    })
}
