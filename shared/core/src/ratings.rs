//! One-click ratings from signed links.

use chrono::{DateTime, Utc};

use crate::domain::{
    Comment, DomainError, Rating, Review, SurveyRequest, SurveyStatus, TenantSettings,
};
use crate::event::{EventEnvelope, EventType};
use crate::keys;
use crate::outbox::outbox_put;
use crate::records::{read_record, record_item};
use crate::store::{Condition, ItemStore, StoreError, Value, WriteOp};
use crate::surveys;
use crate::tenancy::{self, TenancyError};
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
    BadComment(DomainError),
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub request: SurveyRequest,
    pub settings: TenantSettings,
    pub review: Review,
    /// False when nothing new was submitted (a repeated click, an unchanged form).
    pub changed: bool,
    /// True when a different rating was refused because the tenant forbids changing it.
    pub change_refused: bool,
}

/// Concurrent first clicks race on creating the review; the loser re-reads and tries again.
const WRITE_ATTEMPTS: usize = 3;

/// Verifies the token and records the rating it names.
pub async fn record_click(
    store: &dyn ItemStore,
    keyring: &TokenKeyring,
    now: DateTime<Utc>,
    token: &str,
) -> Result<Recorded, RatingError> {
    submit(store, keyring, now, token, None, None).await
}

/// Verifies the token, then records the rating (the form's choice, else the token's) and the
/// comment, if given. Each attempt is one conditional write of the review and its outbox event:
/// created only if absent, replaced only if unchanged since it was read.
pub async fn submit(
    store: &dyn ItemStore,
    keyring: &TokenKeyring,
    now: DateTime<Utc>,
    token: &str,
    value: Option<&str>,
    comment: Option<&str>,
) -> Result<Recorded, RatingError> {
    let claims = keyring.verify(token, now)?;
    let request = surveys::get_request(store, &claims.tenant, claims.survey_request)
        .await?
        .ok_or(RatingError::UnknownRequest)?;
    if request.status == SurveyStatus::Cancelled {
        return Err(RatingError::Withdrawn);
    }
    let value = value.unwrap_or(&claims.value);
    let rating = Rating::parse(request.kind, value)
        .map_err(|_| RatingError::BadValue(value.chars().take(20).collect()))?;
    let comment = comment
        .map(Comment::parse)
        .transpose()
        .map_err(RatingError::BadComment)?;
    let settings = tenancy::get_settings(store, &claims.tenant).await?;
    let key = keys::review(&claims.tenant, request.id);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let previous: Option<Review> = store
            .get(&key)
            .await?
            .map(|i| read_record(&i))
            .transpose()?;
        let change_refused =
            settings.forbid_rating_change && previous.as_ref().is_some_and(|p| p.rating != rating);
        let ticket = &request.ticket;
        let review = Review {
            tenant_id: claims.tenant.clone(),
            survey_request_id: request.id,
            ticket_id: ticket.id.clone(),
            rating: match &previous {
                Some(p) if change_refused => p.rating,
                _ => rating,
            },
            comment: match comment.clone() {
                Some(new) => new,
                None => previous.as_ref().and_then(|p| p.comment.clone()),
            },
            agent_id: ticket.agent.as_ref().map(|a| a.id.clone()),
            contact_id: ticket.contact.id.clone(),
            account_id: ticket.contact.account.as_ref().map(|a| a.id.clone()),
            recorded_at: previous.as_ref().map(|p| p.recorded_at).unwrap_or(now),
            updated_at: now,
        };
        let unchanged = previous
            .as_ref()
            .is_some_and(|p| p.rating == review.rating && p.comment == review.comment);
        if unchanged {
            let review = previous.expect("unchanged implies a previous review");
            return Ok(Recorded {
                request,
                settings,
                review,
                changed: false,
                change_refused,
            });
        }
        let guard = match &previous {
            None => Condition::item_absent(),
            Some(p) => Condition::eq("updated_at", Value::S(keys::sortable_time(p.updated_at))),
        };
        let event = EventEnvelope::new_root(
            claims.tenant.clone(),
            EventType::ReviewRecorded,
            now,
            serde_json::json!({ "review": review, "previous_rating": previous.as_ref().map(|p| p.rating) }),
        );
        let mut item = record_item(&key, "review", &review);
        item.insert(
            "updated_at".into(),
            Value::S(keys::sortable_time(review.updated_at)),
        );
        match store
            .transact_write(vec![WriteOp::put_if(item, guard), outbox_put(&event, now)])
            .await
        {
            Ok(()) => {
                return Ok(Recorded {
                    request,
                    settings,
                    review,
                    changed: true,
                    change_refused,
                });
            }
            Err(StoreError::TransactionCanceled { .. }) if attempt < WRITE_ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
