//! One-click ratings from signed links.

use chrono::{DateTime, Utc};

use crate::domain::{
    Comment, DomainError, Rating, Review, SurveyRequest, SurveyStatus, TenantSettings,
};
use crate::due::DueItems;
use crate::event::{EventEnvelope, EventType};
use crate::keys;
use crate::outbox::outbox_put;
use crate::records::{read_record, record_item};
use crate::store::{Condition, Index, ItemExt, ItemStore, StoreError, Update, Value, WriteOp};
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

const RECEIVED_AT: &str = "received_at";

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
        let previous_item = store.get(&key).await?;
        let previous: Option<Review> = previous_item.as_ref().map(read_record).transpose()?;
        // Set once review.received went out; from then on the review has settled.
        let received_at = previous_item
            .as_ref()
            .and_then(|i| i.get(RECEIVED_AT).cloned());
        let change_refused =
            settings.forbid_rating_change && previous.as_ref().is_some_and(|p| p.rating != rating);
        let ticket = &request.ticket;
        let review = Review {
            tenant_id: claims.tenant.clone(),
            survey_request_id: Some(request.id),
            ticket_id: Some(ticket.id.clone()),
            rating: match &previous {
                Some(p) if change_refused => p.rating,
                _ => rating,
            },
            comment: match comment.clone() {
                Some(new) => new,
                None => previous.as_ref().and_then(|p| p.comment.clone()),
            },
            agent_id: ticket.agent.as_ref().map(|a| a.id.clone()),
            contact_id: Some(ticket.contact.id.clone()),
            account_id: ticket.contact.account.as_ref().map(|a| a.id.clone()),
            recorded_at: previous.as_ref().map(|p| p.recorded_at).unwrap_or(now),
            updated_at: now,
            provider: None,
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
        let mut writes = vec![outbox_put(&event, now)];
        match received_at {
            Some(at) => {
                item.insert(RECEIVED_AT.into(), at);
                // After the window only a new comment is news.
                if review.comment.is_some()
                    && previous
                        .as_ref()
                        .is_some_and(|p| p.comment != review.comment)
                {
                    let added = event.caused(
                        EventType::ReviewCommentAdded,
                        now,
                        None,
                        serde_json::json!({ "review": review }),
                    );
                    writes.push(outbox_put(&added, now));
                }
            }
            None if settings.change_window_minutes == 0 => {
                item.insert(RECEIVED_AT.into(), Value::S(keys::sortable_time(now)));
                let received = event.caused(
                    EventType::ReviewReceived,
                    now,
                    None,
                    serde_json::json!({ "review": review }),
                );
                writes.push(outbox_put(&received, now));
            }
            None => {
                // Every change restarts the window; the survey scheduler emits review.received
                // once it has passed (`settle_reviews`).
                let settles_at =
                    now + chrono::Duration::minutes(settings.change_window_minutes.into());
                item.insert(
                    Index::Gsi1.pk_attribute().into(),
                    Value::S(keys::reviews_settling_index(&claims.tenant)),
                );
                item.insert(
                    Index::Gsi1.sk_attribute().into(),
                    Value::S(format!(
                        "{}#{}",
                        keys::sortable_time(settles_at),
                        request.id
                    )),
                );
            }
        }
        writes.insert(0, WriteOp::put_if(item, guard));
        match store.transact_write(writes).await {
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

/// Emits `review.received` for every review whose change window has ended, once each: the
/// review leaves the settling index in the same transaction, guarded by the window it was read
/// with, so a change made meanwhile restarts its window instead.
pub async fn settle_reviews(
    store: &dyn ItemStore,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut settled = 0;
    for tenant in tenancy::list_tenants(store).await? {
        let mut due = DueItems::new(keys::reviews_settling_index(&tenant), now);
        while let Some(items) = due.next_page(store).await? {
            for item in &items {
                let (Some(key), Some(window)) =
                    (item.key(), item.str_attr(Index::Gsi1.sk_attribute()))
                else {
                    continue;
                };
                let review: Review = read_record(item)?;
                let received = EventEnvelope::new_root(
                    tenant.clone(),
                    EventType::ReviewReceived,
                    now,
                    serde_json::json!({ "review": review }),
                );
                let written = store
                    .transact_write(vec![
                        WriteOp::Update {
                            key,
                            update: Update::new()
                                .set(RECEIVED_AT, Value::S(keys::sortable_time(now)))
                                .remove(Index::Gsi1.pk_attribute())
                                .remove(Index::Gsi1.sk_attribute()),
                            condition: Some(Condition::eq(
                                Index::Gsi1.sk_attribute(),
                                Value::s(window),
                            )),
                        },
                        outbox_put(&received, now),
                    ])
                    .await;
                match written {
                    Ok(()) => settled += 1,
                    Err(StoreError::TransactionCanceled { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(settled)
}
