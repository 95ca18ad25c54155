//! One-click ratings from signed links.

use chrono::{DateTime, Utc};

use crate::domain::{Rating, Review, SurveyRequest, SurveyStatus};
use crate::event::{EventEnvelope, EventType};
use crate::keys;
use crate::outbox::outbox_put;
use crate::records::{read_record, record_item};
use crate::store::{ItemStore, StoreError, WriteOp};
use crate::surveys;
use crate::tokens::{TokenError, TokenKeyring};

#[derive(Debug, thiserror::Error)]
pub enum RatingError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("this rating request no longer exists")]
    UnknownRequest,
    #[error("this rating request was withdrawn")]
    Withdrawn,
    #[error("'{0}' is not one of this survey's choices")]
    BadValue(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub request: SurveyRequest,
    pub review: Review,
    /// False when the click repeated the rating already recorded.
    pub changed: bool,
}

/// Verifies the token and records its rating in one write (the review plus its outbox event).
pub async fn record_click(
    store: &dyn ItemStore,
    keyring: &TokenKeyring,
    now: DateTime<Utc>,
    token: &str,
) -> Result<Recorded, RatingError> {
    let claims = keyring.verify(token, now)?;
    let request = surveys::get_request(store, &claims.tenant, claims.survey_request)
        .await?
        .ok_or(RatingError::UnknownRequest)?;
    if request.status == SurveyStatus::Cancelled {
        return Err(RatingError::Withdrawn);
    }
    let rating = Rating::parse(request.kind, &claims.value)
        .map_err(|_| RatingError::BadValue(claims.value.clone()))?;
    let key = keys::review(&claims.tenant, request.id);
    let previous: Option<Review> = store
        .get(&key)
        .await?
        .map(|i| read_record(&i))
        .transpose()?;
    if let Some(previous) = &previous
        && previous.rating == rating
    {
        return Ok(Recorded {
            request,
            review: previous.clone(),
            changed: false,
        });
    }
    let ticket = &request.ticket;
    let review = Review {
        tenant_id: claims.tenant.clone(),
        survey_request_id: request.id,
        ticket_id: ticket.id.clone(),
        rating,
        comment: previous.as_ref().and_then(|p| p.comment.clone()),
        agent_id: ticket.agent.as_ref().map(|a| a.id.clone()),
        contact_id: ticket.contact.id.clone(),
        account_id: ticket.contact.account.as_ref().map(|a| a.id.clone()),
        recorded_at: previous.as_ref().map(|p| p.recorded_at).unwrap_or(now),
        updated_at: now,
    };
    let event = EventEnvelope::new_root(
        claims.tenant.clone(),
        EventType::ReviewRecorded,
        now,
        serde_json::json!({ "review": review, "previous_rating": previous.map(|p| p.rating) }),
    );
    store
        .transact_write(vec![
            WriteOp::put(record_item(&key, "review", &review)),
            outbox_put(&event, now),
        ])
        .await?;
    Ok(Recorded {
        request,
        review,
        changed: true,
    })
}
