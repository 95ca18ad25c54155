//! A survey provider's response becomes a review on the same contact and account as a
//! rating-link review, with the same events.
//!
//! One transaction holds the dedupe record, the review and its outbox events. Provider
//! responses are final when they arrive, so there is no change window: the first version of a
//! response emits `review.recorded` and `review.received`; a later version (an added comment, a
//! changed score) emits `review.recorded`, plus `review.comment_added` when the comment changed,
//! as a rating-link review does after its window. A version older than the one stored (a late
//! delivery) changes nothing.

use chrono::{DateTime, Utc};

use super::tickets::dedupe_item;
use super::{IngestError, IngestOutcome, Source, SurveyResponse};
use crate::accounts;
use crate::contacts;
use crate::domain::{ProviderResponse, Rating, Review, TicketSnapshot};
use crate::event::{EventEnvelope, EventType};
use crate::ids::{AccountId, AgentId, ContactId, TenantId, TicketId};
use crate::keys;
use crate::outbox::outbox_put;
use crate::records::{read_record, record_item};
use crate::store::{Condition, ItemExt, ItemStore, StoreError, Value, WriteOp};

/// Orders the versions of one response: `<answered_at>#<sequence>`, fixed width.
const VERSION: &str = "response_version";
const RECEIVED_AT: &str = "received_at";
/// Concurrent versions of one response race on the review; the loser re-reads and retries.
const WRITE_ATTEMPTS: usize = 3;

/// Who answered, as far as we can tell.
#[derive(Debug, Default)]
struct Respondent {
    ticket_id: Option<TicketId>,
    agent_id: Option<AgentId>,
    contact_id: Option<ContactId>,
    account_id: Option<AccountId>,
}

pub(super) async fn record(
    store: &dyn ItemStore,
    now: DateTime<Utc>,
    tenant: &TenantId,
    source: Source,
    response: SurveyResponse,
) -> Result<IngestOutcome, IngestError> {
    let respondent = identify(store, tenant, &response).await?;
    let time_zone = crate::tenancy::time_zone(store, tenant).await?;
    let key = keys::provider_review(tenant, source.as_str(), &response.response_id);
    let version = format!(
        "{}#{:020}",
        keys::sortable_time(response.answered_at),
        response.sequence
    );
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        let previous_item = store.get(&key).await?;
        let previous_version = previous_item
            .as_ref()
            .and_then(|i| i.str_attr(VERSION).map(str::to_string));
        match previous_version.as_deref() {
            // The same version again, whatever the delivery id: a redelivery.
            Some(v) if v == version => break IngestOutcome::Duplicate,
            Some(v) if v > version.as_str() => break IngestOutcome::Outdated,
            _ => {}
        }
        let previous: Option<Review> = previous_item.as_ref().map(read_record).transpose()?;
        let review = Review {
            tenant_id: tenant.clone(),
            survey_request_id: None,
            ticket_id: respondent.ticket_id.clone(),
            rating: response.rating,
            comment: response.comment.clone(),
            agent_id: respondent.agent_id.clone(),
            contact_id: respondent.contact_id.clone(),
            account_id: respondent.account_id.clone(),
            recorded_at: previous
                .as_ref()
                .map_or(response.first_answered_at, |p| p.recorded_at),
            updated_at: response.answered_at,
            tags: previous
                .as_ref()
                .map(|p| p.tags.clone())
                .unwrap_or_default(),
            status: previous.as_ref().and_then(|p| p.status.clone()),
            provider: Some(ProviderResponse {
                source: source.as_str().to_string(),
                response_id: response.response_id.clone(),
                respondent_email: response.respondent_email.clone(),
                answered_at: response.answered_at,
            }),
        };
        let recorded = EventEnvelope::new_root(
            tenant.clone(),
            EventType::ReviewRecorded,
            now,
            serde_json::json!({
                "review": review,
                "previous_rating": previous.as_ref().map(|p| p.rating),
            }),
        );
        let follow_up = match &previous {
            None => Some(EventType::ReviewReceived),
            Some(p) if review.comment.is_some() && p.comment != review.comment => {
                Some(EventType::ReviewCommentAdded)
            }
            Some(_) => None,
        };
        let mut item = record_item(&key, "review", &review);
        item.insert(VERSION.into(), Value::S(version.clone()));
        item.insert(
            RECEIVED_AT.into(),
            previous_item
                .as_ref()
                .and_then(|i| i.get(RECEIVED_AT).cloned())
                .unwrap_or_else(|| Value::S(keys::sortable_time(now))),
        );
        // A provider's response counts from its first version; a new version moves the count.
        let (counter_ops, attrs) = crate::reports::on_review_write(
            tenant,
            time_zone,
            &key,
            previous_item
                .as_ref()
                .and_then(|i| i.str_attr(crate::reports::COUNTED)),
            &review,
        );
        item.extend(attrs);
        let guard = match &previous_version {
            None => Condition::item_absent(),
            Some(v) => Condition::eq(VERSION, Value::s(v.clone())),
        };
        let mut ops = vec![
            WriteOp::put_if(
                dedupe_item(tenant, source, &response.delivery_id, &recorded, now),
                Condition::item_absent(),
            ),
            WriteOp::put_if(item, guard),
            outbox_put(&recorded, now),
        ];
        if let Some(event_type) = follow_up {
            let event = recorded.caused(
                event_type,
                now,
                None,
                serde_json::json!({ "review": review }),
            );
            ops.push(outbox_put(&event, now));
        }
        ops.extend(counter_ops);
        match store.transact_write(ops).await {
            Ok(()) => {
                break IngestOutcome::Accepted {
                    event_id: recorded.event_id,
                    event_type: EventType::ReviewRecorded,
                };
            }
            Err(e) if e.condition_failed_at(0) => break IngestOutcome::Duplicate,
            Err(e) if e.condition_failed_at(1) && attempt < WRITE_ATTEMPTS => continue,
            Err(e @ StoreError::TransactionCanceled { .. }) if attempt < WRITE_ATTEMPTS => {
                tracing::debug!(error = %e, "review write conflicted; retrying");
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    };
    // Also on a duplicate or an outdated version: the note is idempotent, and repeating it
    // heals a crash between the review's transaction and this write.
    if let (Rating::Nps(score), Some(account)) = (response.rating, &respondent.account_id) {
        accounts::note_nps_answer(
            store,
            tenant,
            account,
            respondent.contact_id.as_ref(),
            score,
            response.answered_at,
            &key.pk,
            now,
        )
        .await?;
    }
    Ok(outcome)
}

/// The ticket the provider passed through wins; else the contact directory by email; else
/// nobody (the review is still kept, on no account).
async fn identify(
    store: &dyn ItemStore,
    tenant: &TenantId,
    response: &SurveyResponse,
) -> Result<Respondent, StoreError> {
    if let Some(ticket_id) = &response.ticket_id
        && let Some(item) = store.get(&keys::ticket(tenant, ticket_id)).await?
    {
        let ticket: TicketSnapshot = read_record(&item)?;
        return Ok(Respondent {
            ticket_id: Some(ticket.id),
            agent_id: ticket.agent.map(|a| a.id),
            contact_id: Some(ticket.contact.id),
            account_id: ticket.contact.account.map(|a| a.id),
        });
    }
    let unknown = Respondent {
        ticket_id: response.ticket_id.clone(),
        ..Respondent::default()
    };
    let Some(email) = &response.respondent_email else {
        return Ok(unknown);
    };
    Ok(match contacts::find_by_email(store, tenant, email).await? {
        Some(entry) => Respondent {
            contact_id: Some(entry.contact_id),
            account_id: entry.account_id,
            ..unknown
        },
        None => unknown,
    })
}
