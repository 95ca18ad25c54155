//! One-click ratings from signed links.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::{
    Comment, DomainError, Rating, Review, SurveyRequest, SurveyStatus, TenantSettings,
};
use crate::due::DueItems;
use crate::event::{EventEnvelope, EventType};
use crate::keys;
use crate::outbox::{outbox_put, outbox_put_with};
use crate::records::{read_record, record_item};
use crate::scanners::BURST_SECONDS;
use crate::store::{
    Condition, Index, Item, ItemExt, ItemStore, StoreError, Update, Value, WriteOp,
};
use crate::surveys;
use crate::tenancy::{self, SettingsCache, TenancyError};
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

/// How an answer arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A one-click link in the email was opened: a person, or a scanner that got past the
    /// user-agent check.
    Link,
    /// The rating page's form was posted: only people do that.
    Form,
}

/// What became of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Saved (or already saved, when `changed` is false); it counts.
    Saved { changed: bool },
    /// Looks machine-made (several choices within seconds): kept aside, it does not count until
    /// a person confirms it on the page.
    AwaitingConfirmation,
    /// A link for a different choice was opened after the answer settled. Nothing changed; the
    /// page offers the new choice to confirm.
    ConfirmChange,
    /// Opened by a scanner's user agent: nothing was written.
    NotRecorded,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub request: SurveyRequest,
    pub settings: Arc<TenantSettings>,
    /// The answer as stored, or as proposed when the outcome is not `Saved`.
    pub review: Review,
    pub outcome: Outcome,
    /// True when a different rating was refused because the tenant forbids changing it.
    pub change_refused: bool,
}

const RECEIVED_AT: &str = "received_at";
/// `link`, `form`, or `held` (awaiting a person's confirmation).
const CONFIRMATION: &str = "confirmation";
const LINK_CLICKED_AT: &str = "link_clicked_at";
/// Moves by one with every write of the review item (a click, a post, settling, a rule's tag
/// or status), and guards every write: `updated_at` has millisecond resolution and settling
/// leaves it alone, so two writes in one millisecond, or a post racing the scheduler, would
/// otherwise pass each other's guard (a lost update, a second `review.received`, a review
/// counted twice).
pub const REVISION: &str = "revision";

/// The condition that the review item is still at the revision `item` was read at. Items
/// written before revisions existed are guarded by what their writers compared then, and by
/// whether they had settled.
pub fn unchanged_since(item: &Item) -> Condition {
    match item.i64_attr(REVISION) {
        Some(revision) => Condition::eq(REVISION, Value::n(revision)),
        None => {
            let mut guard = Condition::NotExists(REVISION.into());
            if let Some(updated_at) = item.get("updated_at") {
                guard = guard.and(Condition::eq("updated_at", updated_at.clone()));
            }
            guard.and(if item.contains_key(RECEIVED_AT) {
                Condition::Exists(RECEIVED_AT.into())
            } else {
                Condition::NotExists(RECEIVED_AT.into())
            })
        }
    }
}

/// The revision a write of `item` (as read) sets.
pub fn next_revision(item: Option<&Item>) -> Value {
    Value::n(item.and_then(|i| i.i64_attr(REVISION)).unwrap_or(0) + 1)
}

/// Concurrent first clicks race on creating the review; the loser re-reads and tries again.
const WRITE_ATTEMPTS: usize = 3;

struct Answering {
    claims: crate::tokens::RatingClaims,
    request: SurveyRequest,
    settings: Arc<TenantSettings>,
}

/// What answering a link needs besides the store: the keys that verify its token and the
/// tenants' settings (cached: a click reads them every time).
#[derive(Clone, Copy)]
pub struct Links<'a> {
    pub keyring: &'a TokenKeyring,
    pub settings: &'a SettingsCache,
}

async fn answering(
    store: &dyn ItemStore,
    links: Links<'_>,
    now: DateTime<Utc>,
    token: &str,
) -> Result<Answering, RatingError> {
    let keyring = links.keyring;
    let claims = keyring.verify(token, now)?;
    let request = surveys::get_request(store, &claims.tenant, claims.survey_request)
        .await?
        .ok_or(RatingError::UnknownRequest)?;
    if request.status == SurveyStatus::Cancelled {
        return Err(RatingError::Withdrawn);
    }
    let settings = links.settings.get(store, &claims.tenant).await?;
    Ok(Answering {
        claims,
        request,
        settings,
    })
}

fn parse_rating(request: &SurveyRequest, value: &str) -> Result<Rating, RatingError> {
    Rating::parse(request.kind, value)
        .map_err(|_| RatingError::BadValue(value.chars().take(20).collect()))
}

fn new_review(request: &SurveyRequest, rating: Rating, now: DateTime<Utc>) -> Review {
    let ticket = &request.ticket;
    Review {
        tenant_id: request.tenant_id.clone(),
        survey_request_id: Some(request.id),
        ticket_id: Some(ticket.id.clone()),
        rating,
        comment: None,
        agent_id: ticket.agent.as_ref().map(|a| a.id.clone()),
        contact_id: Some(ticket.contact.id.clone()),
        account_id: ticket.contact.account.as_ref().map(|a| a.id.clone()),
        recorded_at: now,
        updated_at: now,
        provider: None,
        tags: Vec::new(),
        status: None,
    }
}

/// For a link opened by a scanner's user agent: verifies the token and reads what the page
/// needs, writing nothing. A stored answer is shown as it is; otherwise the link's choice is
/// offered for confirmation.
pub async fn preview(
    store: &dyn ItemStore,
    links: Links<'_>,
    now: DateTime<Utc>,
    token: &str,
) -> Result<Recorded, RatingError> {
    let Answering {
        claims,
        request,
        settings,
    } = answering(store, links, now, token).await?;
    let rating = parse_rating(&request, &claims.value)?;
    let stored = store.get(&keys::review(&claims.tenant, request.id)).await?;
    let counted = stored
        .as_ref()
        .filter(|item| item.str_attr(CONFIRMATION) != Some("held"));
    let (review, outcome) = match counted {
        Some(item) => (read_record(item)?, Outcome::Saved { changed: false }),
        None => (new_review(&request, rating, now), Outcome::NotRecorded),
    };
    Ok(Recorded {
        request,
        settings,
        review,
        outcome,
        change_refused: false,
    })
}

/// Verifies the token and records the rating it names (a link click).
pub async fn record_click(
    store: &dyn ItemStore,
    links: Links<'_>,
    now: DateTime<Utc>,
    token: &str,
) -> Result<Recorded, RatingError> {
    submit(store, links, now, token, Via::Link, None, None).await
}

/// Verifies the token, then records the rating (the form's choice, else the token's) and the
/// comment, if given. Each attempt is one conditional write of the review and its outbox event:
/// created only if absent, replaced only if unchanged since it was read.
///
/// Scanner defence (`docs/rating-links.md`): a link for a different choice opened within
/// [`BURST_SECONDS`] of the previous link holds the answer for a person's confirmation, and a
/// settled answer changes only through the form.
pub async fn submit(
    store: &dyn ItemStore,
    links: Links<'_>,
    now: DateTime<Utc>,
    token: &str,
    via: Via,
    value: Option<&str>,
    comment: Option<&str>,
) -> Result<Recorded, RatingError> {
    let Answering {
        claims,
        request,
        settings,
    } = answering(store, links, now, token).await?;
    let rating = parse_rating(&request, value.unwrap_or(&claims.value))?;
    let comment = comment
        .map(Comment::parse)
        .transpose()
        .map_err(RatingError::BadComment)?;
    let key = keys::review(&claims.tenant, request.id);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let shared = store.get_shared(&key).await?;
        let previous_item = shared.as_deref();
        let previous: Option<Review> = previous_item.map(read_record).transpose()?;
        let attr = |name: &str| previous_item.and_then(|i| i.str_attr(name));
        // Set once review.received went out; from then on the review has settled.
        let received_at = previous_item.and_then(|i| i.get(RECEIVED_AT).cloned());
        let was_held = attr(CONFIRMATION) == Some("held");
        let differs = previous.as_ref().is_some_and(|p| p.rating != rating);
        let last_link_click = attr(LINK_CLICKED_AT).and_then(keys::parse_sortable_time);
        let burst = via == Via::Link
            && previous.is_some()
            && (differs || was_held)
            && last_link_click
                .is_some_and(|at| now - at < chrono::Duration::seconds(BURST_SECONDS));
        // Held answers never counted, so confirming one is not a change.
        let change_refused = settings.forbid_rating_change && differs && !was_held && !burst;

        if via == Via::Link && received_at.is_some() && differs {
            // A settled answer is not changed by opening a link: a person confirms on the page.
            let previous = previous.expect("a settled review exists");
            let (review, outcome) = if change_refused {
                (previous, Outcome::Saved { changed: false })
            } else {
                (Review { rating, ..previous }, Outcome::ConfirmChange)
            };
            return Ok(Recorded {
                request,
                settings,
                review,
                outcome,
                change_refused,
            });
        }

        let mut review = match &previous {
            Some(p) => Review {
                rating: if change_refused { p.rating } else { rating },
                // A posted form replaces the comment (empty clears it); a click keeps it.
                comment: match comment.clone() {
                    Some(new) => new,
                    None => p.comment.clone(),
                },
                updated_at: now,
                ..p.clone()
            },
            None => Review {
                comment: comment.clone().flatten(),
                ..new_review(&request, rating, now)
            },
        };
        let confirmation = match (burst, via) {
            (true, _) => "held",
            (false, Via::Form) => "form",
            (false, Via::Link) => "link",
        };
        let outcome = if burst {
            Outcome::AwaitingConfirmation
        } else {
            Outcome::Saved { changed: true }
        };
        let unchanged = previous.as_ref().is_some_and(|p| {
            p.rating == review.rating && p.comment == review.comment && was_held == burst
        });
        if unchanged {
            review = previous.expect("unchanged implies a previous review");
            return Ok(Recorded {
                request,
                settings,
                review,
                outcome: if burst {
                    Outcome::AwaitingConfirmation
                } else {
                    Outcome::Saved { changed: false }
                },
                change_refused,
            });
        }
        let guard = match previous_item {
            None => Condition::item_absent(),
            Some(read) => unchanged_since(read),
        };
        let mut item = record_item(&key, "review", &review);
        item.insert(REVISION.into(), next_revision(previous_item));
        item.insert(
            "updated_at".into(),
            Value::S(keys::sortable_time(review.updated_at)),
        );
        item.insert(CONFIRMATION.into(), Value::s(confirmation));
        let link_clicked_at = match via {
            Via::Link => Some(keys::sortable_time(now)),
            Via::Form => attr(LINK_CLICKED_AT).map(str::to_string),
        };
        if let Some(at) = link_clicked_at {
            item.insert(LINK_CLICKED_AT.into(), Value::S(at));
        }
        let mut writes = Vec::with_capacity(3);
        // Only a review that has settled counts (a first click inside the window does not).
        let mut counter_ops = Vec::new();
        if burst {
            // Held answers leave the settling index and publish nothing until confirmed.
        } else {
            // The payloads are written straight from the review (no `Value` for them): this
            // runs on every click.
            let event = EventEnvelope::new_root(
                claims.tenant.clone(),
                EventType::ReviewRecorded,
                now,
                serde_json::Value::Null,
            );
            let previous_rating = previous.as_ref().filter(|_| !was_held).map(|p| p.rating);
            writes.push(outbox_put_with(
                &event,
                &ReviewPayload {
                    previous_rating: Some(previous_rating),
                    review: &review,
                },
                now,
            ));
            // review.received or review.comment_added, caused by this review.recorded.
            let follow_up = |event_type| {
                let follow = event.caused(event_type, now, None, serde_json::Value::Null);
                let data = ReviewPayload {
                    previous_rating: None,
                    review: &review,
                };
                outbox_put_with(&follow, &data, now)
            };
            match received_at {
                Some(at) => {
                    item.insert(RECEIVED_AT.into(), at);
                    // A settled review counts: a changed rating moves its count.
                    let (ops, attrs) = crate::reports::on_review_write(
                        &claims.tenant,
                        settings.time_zone.tz(),
                        &key,
                        attr(crate::reports::COUNTED),
                        &review,
                    );
                    item.extend(attrs);
                    counter_ops = ops;
                    // After the window only a new comment is news.
                    if review.comment.is_some()
                        && previous
                            .as_ref()
                            .is_some_and(|p| p.comment != review.comment)
                    {
                        writes.push(follow_up(EventType::ReviewCommentAdded));
                    }
                }
                None => {
                    // Every change restarts the window. A link click also waits out the burst
                    // guard, so a scanner's first click never settles before its second.
                    let mut window =
                        chrono::Duration::minutes(settings.change_window_minutes.into());
                    if via == Via::Link {
                        window = window.max(chrono::Duration::seconds(BURST_SECONDS));
                    }
                    if window.is_zero() {
                        item.insert(RECEIVED_AT.into(), Value::S(keys::sortable_time(now)));
                        writes.push(follow_up(EventType::ReviewReceived));
                        let (ops, attrs) = crate::reports::on_review_write(
                            &claims.tenant,
                            settings.time_zone.tz(),
                            &key,
                            attr(crate::reports::COUNTED),
                            &review,
                        );
                        item.extend(attrs);
                        counter_ops = ops;
                    } else {
                        // `settle_reviews` emits review.received once the window has passed.
                        item.insert(
                            Index::Gsi1.pk_attribute().into(),
                            Value::S(keys::reviews_settling_index(&claims.tenant)),
                        );
                        item.insert(
                            Index::Gsi1.sk_attribute().into(),
                            Value::S({
                                let mut id = [0; ulid::ULID_LEN];
                                let mut sk = keys::sortable_time(now + window);
                                sk.push('#');
                                sk.push_str(request.id.ulid().array_to_str(&mut id));
                                sk
                            }),
                        );
                    }
                }
            }
        }
        let counted_now = !burst && item.contains_key(RECEIVED_AT);
        writes.insert(0, WriteOp::put_if(item, guard));
        writes.extend(counter_ops);
        match store.transact_write(writes).await {
            Ok(()) => {
                if counted_now {
                    note_account_answer(store, &review, now).await?;
                }
                return Ok(Recorded {
                    request,
                    settings,
                    review,
                    outcome,
                    change_refused,
                });
            }
            Err(StoreError::TransactionCanceled { .. }) if attempt < WRITE_ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `{"review": ...}`, plus `previous_rating` (null if none) for review.recorded.
#[derive(serde::Serialize)]
struct ReviewPayload<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_rating: Option<Option<Rating>>,
    review: &'a Review,
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
        let mut time_zone = None;
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
                let tz = match time_zone {
                    Some(tz) => tz,
                    None => *time_zone.insert(tenancy::time_zone(store, &tenant).await?),
                };
                // Settling is when a review starts to count: its counter moves with it.
                let (counter_ops, attrs) = crate::reports::on_review_write(
                    &tenant,
                    tz,
                    &key,
                    item.str_attr(crate::reports::COUNTED),
                    &review,
                );
                let mut update = Update::new()
                    .set(RECEIVED_AT, Value::S(keys::sortable_time(now)))
                    .set(REVISION, next_revision(Some(item)))
                    .remove(Index::Gsi1.pk_attribute())
                    .remove(Index::Gsi1.sk_attribute());
                for (name, value) in attrs {
                    update = update.set(name, value);
                }
                let mut ops = vec![
                    WriteOp::Update {
                        key,
                        update,
                        // Its window as read, and no write since (a change in the same
                        // millisecond keeps the window's text).
                        condition: Some(
                            Condition::eq(Index::Gsi1.sk_attribute(), Value::s(window))
                                .and(unchanged_since(item)),
                        ),
                    },
                    outbox_put(&received, now),
                ];
                ops.extend(counter_ops);
                let written = store.transact_write(ops).await;
                match written {
                    Ok(()) => {
                        settled += 1;
                        note_account_answer(store, &review, now).await?;
                    }
                    Err(StoreError::TransactionCanceled { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(settled)
}

/// Keeps the account's latest NPS answer (for the detractor sweep) once a rating-link answer
/// counts: when it settles, or when a settled answer is changed on the page.
async fn note_account_answer(
    store: &dyn ItemStore,
    review: &Review,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if let (Rating::Nps(score), Some(account)) = (review.rating, &review.account_id) {
        let reference = review
            .survey_request_id
            .map(|id| id.to_string())
            .unwrap_or_default();
        crate::accounts::note_nps_answer(
            store,
            &review.tenant_id,
            account,
            review.contact_id.as_ref(),
            score,
            review.updated_at,
            &reference,
            now,
        )
        .await?;
    }
    Ok(())
}

/// A review as staff see it: read-only, with whether it counts yet.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredReview {
    #[serde(flatten)]
    pub review: Review,
    /// `counted`, or `awaiting_confirmation` when it looked machine-made.
    pub status: &'static str,
    /// True once `review.received` went out (the change window has passed).
    pub settled: bool,
}

/// The review of the ticket's current rating request, if it was answered.
pub async fn review_for_ticket(
    store: &dyn ItemStore,
    tenant: &crate::ids::TenantId,
    ticket: &crate::ids::TicketId,
) -> Result<Option<StoredReview>, StoreError> {
    let Some(request) = store
        .get(&keys::ticket_survey(tenant, ticket))
        .await?
        .and_then(|m| m.str_attr("survey_request_id").map(str::to_string))
        .and_then(|id| crate::ids::SurveyRequestId::parse(&id).ok())
    else {
        return Ok(None);
    };
    let Some(item) = store.get(&keys::review(tenant, request)).await? else {
        return Ok(None);
    };
    Ok(Some(StoredReview {
        review: read_record(&item)?,
        status: if item.str_attr(CONFIRMATION) == Some("held") {
            "awaiting_confirmation"
        } else {
            "counted"
        },
        settled: item.contains_key(RECEIVED_AT),
    }))
}
