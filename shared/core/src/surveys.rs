//! Rating requests: scheduled when a ticket closes, cancelled when it reopens first, sent when
//! due (by the `survey-scheduler` function, every minute, or at once when the delay is 0).

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::domain::{
    CsatValue, SurveyKind, SurveyRequest, SurveyStatus, TenantSettings, TicketSnapshot,
};
use crate::due::DueItems;
use crate::event::{EventEnvelope, EventType};
use crate::idempotency::{self, Begin, IdempotencyConfig};
use crate::ids::{SurveyRequestId, TenantId};
use crate::keys;
use crate::outbox::outbox_put;
use crate::ports::{Clock, MailError, Mailer, OutgoingEmail};
use crate::records::{read_record, record_item};
use crate::store::{Condition, Index, ItemExt, ItemStore, StoreError, Update, Value, WriteOp};
use crate::templates::{self, TemplateError};
use crate::tenancy::{self, TenancyError};
use crate::tokens::{RatingClaims, TokenKeyring};
use crate::unsubscribe;

/// How long rating links stay valid.
pub const LINK_VALIDITY_DAYS: i64 = 30;
const STATUS: &str = "status";
/// Why a request was cancelled: `ticket_reopened`, `unsubscribed` or `superseded`.
const CANCEL_REASON: &str = "cancel_reason";

/// What survey links need: the signing keys and the public URL the links point at.
pub struct LinkSigner<'a> {
    pub keyring: &'a TokenKeyring,
    pub public_base_url: &'a str,
}

impl LinkSigner<'_> {
    pub fn rating_url(
        &self,
        tenant: &TenantId,
        survey: SurveyRequestId,
        value: &str,
        now: DateTime<Utc>,
    ) -> String {
        let token = self.keyring.sign(&RatingClaims {
            tenant: tenant.clone(),
            survey_request: survey,
            value: value.to_string(),
            expires_at: now + Duration::days(LINK_VALIDITY_DAYS),
        });
        format!("{}/r/{token}", self.public_base_url.trim_end_matches('/'))
    }

    pub fn unsubscribe_url(
        &self,
        tenant: &TenantId,
        survey: SurveyRequestId,
        now: DateTime<Utc>,
    ) -> String {
        let token = self.keyring.sign(&RatingClaims {
            tenant: tenant.clone(),
            survey_request: survey,
            value: unsubscribe::UNSUBSCRIBE_VALUE.to_string(),
            expires_at: now + Duration::days(unsubscribe::UNSUBSCRIBE_VALIDITY_DAYS),
        });
        format!("{}/u/{token}", self.public_base_url.trim_end_matches('/'))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SurveyError {
    #[error("event {0} carries no readable ticket: {1}")]
    BadEvent(ulid::Ulid, String),
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Idempotency(#[from] idempotency::IdempotencyError),
    #[error("rating request {0} is being sent by another invocation")]
    SendInProgress(SurveyRequestId),
    #[error("no ticket '{0}' has reached closedloop from the helpdesk")]
    UnknownTicket(String),
    #[error("the contact of ticket '{0}' unsubscribed from rating requests")]
    ContactUnsubscribed(String),
    #[error("another rating request for ticket '{0}' was made at the same moment; try again")]
    Conflict(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleOutcome {
    Scheduled {
        survey: SurveyRequestId,
        due_at: DateTime<Utc>,
        sent_now: bool,
    },
    /// The ticket already has its request (a redelivery, or a second close).
    AlreadyScheduled,
    Cancelled(SurveyRequestId),
    NothingToDo,
}

fn request_item(request: &SurveyRequest) -> crate::store::Item {
    let mut item = record_item(
        &keys::survey_request(&request.tenant_id, request.id),
        "survey_request",
        request,
    );
    item.insert(STATUS.into(), Value::s(status_str(request.status)));
    if request.status == SurveyStatus::Scheduled {
        item.insert(
            Index::Gsi1.pk_attribute().into(),
            Value::S(keys::surveys_due_index(&request.tenant_id)),
        );
        item.insert(
            Index::Gsi1.sk_attribute().into(),
            Value::S(format!(
                "{}#{}",
                keys::sortable_time(request.due_at),
                request.id
            )),
        );
    }
    item
}

fn status_str(status: SurveyStatus) -> &'static str {
    match status {
        SurveyStatus::Scheduled => "scheduled",
        SurveyStatus::Sent => "sent",
        SurveyStatus::Cancelled => "cancelled",
    }
}

/// Reacts to `ticket.closed` (schedule, and send at once when due) and `ticket.reopened` (cancel).
pub async fn on_ticket_event(
    store: &dyn ItemStore,
    mailer: &dyn Mailer,
    clock: &dyn Clock,
    links: &LinkSigner<'_>,
    event: &EventEnvelope,
) -> Result<ScheduleOutcome, SurveyError> {
    let ticket: TicketSnapshot = serde_json::from_value(event.data["ticket"].clone())
        .map_err(|e| SurveyError::BadEvent(event.event_id, e.to_string()))?;
    let tenant = &event.tenant_id;
    match event.event_type {
        EventType::TicketClosed => {
            let settings = tenancy::get_settings(store, tenant).await?;
            let now = clock.now();
            let request = SurveyRequest {
                id: SurveyRequestId::new(),
                tenant_id: tenant.clone(),
                kind: settings.survey_kind,
                ticket,
                due_at: event.occurred_at + Duration::hours(settings.survey_delay_hours.into()),
                status: SurveyStatus::Scheduled,
                created_at: now,
            };
            let mut marker = keys::ticket_survey(tenant, &request.ticket.id).to_item();
            marker.insert("survey_request_id".into(), Value::S(request.id.to_string()));
            let written = store
                .transact_write(vec![
                    WriteOp::put_if(marker, Condition::item_absent()),
                    WriteOp::put_if(request_item(&request), Condition::item_absent()),
                ])
                .await;
            match written {
                Ok(()) => {}
                Err(StoreError::TransactionCanceled { .. }) => {
                    return Ok(ScheduleOutcome::AlreadyScheduled);
                }
                Err(e) => return Err(e.into()),
            }
            let sent_now = if request.due_at <= now {
                send_request(store, mailer, clock, links, &settings, request.clone()).await?;
                true
            } else {
                false
            };
            Ok(ScheduleOutcome::Scheduled {
                survey: request.id,
                due_at: request.due_at,
                sent_now,
            })
        }
        EventType::SurveyReRequested => {
            let Some(id) = event.data["survey_request_id"]
                .as_str()
                .and_then(|s| SurveyRequestId::parse(s).ok())
            else {
                return Err(SurveyError::BadEvent(
                    event.event_id,
                    "no survey_request_id".into(),
                ));
            };
            let Some(request) = get_request(store, tenant, id).await? else {
                return Ok(ScheduleOutcome::NothingToDo);
            };
            let settings = tenancy::get_settings(store, tenant).await?;
            let sent_now =
                send_request(store, mailer, clock, links, &settings, request.clone()).await?;
            Ok(ScheduleOutcome::Scheduled {
                survey: id,
                due_at: request.due_at,
                sent_now,
            })
        }
        EventType::TicketReopened => {
            let Some(marker) = store.get(&keys::ticket_survey(tenant, &ticket.id)).await? else {
                return Ok(ScheduleOutcome::NothingToDo);
            };
            let Some(id) = marker
                .str_attr("survey_request_id")
                .and_then(|s| SurveyRequestId::parse(s).ok())
            else {
                return Ok(ScheduleOutcome::NothingToDo);
            };
            let cancelled = store
                .update(
                    &keys::survey_request(tenant, id),
                    Update::new()
                        .set(STATUS, Value::s("cancelled"))
                        .set(CANCEL_REASON, Value::s("ticket_reopened"))
                        .remove(Index::Gsi1.pk_attribute())
                        .remove(Index::Gsi1.sk_attribute()),
                    Some(Condition::eq(STATUS, Value::s("scheduled"))),
                )
                .await;
            match cancelled {
                Ok(_) => Ok(ScheduleOutcome::Cancelled(id)),
                Err(e) if e.is_condition_failure() => Ok(ScheduleOutcome::NothingToDo),
                Err(e) => Err(e.into()),
            }
        }
        _ => Ok(ScheduleOutcome::NothingToDo),
    }
}

/// What a re-request did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReRequested {
    pub survey_request_id: SurveyRequestId,
    /// The request whose links stopped working, if the ticket had one.
    pub supersedes: Option<SurveyRequestId>,
}

/// An agent asks again, e.g. after re-working the ticket: a new request for the ticket as it is
/// now, due at once (`survey-scheduler` sends it on `survey.re_requested`). The previous
/// request is cancelled in the same transaction, so its links show "this survey is closed".
pub async fn re_request(
    store: &dyn ItemStore,
    tenant: &TenantId,
    ticket_id: &crate::ids::TicketId,
    requested_by: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ReRequested, SurveyError> {
    re_request_in_chain(store, tenant, ticket_id, requested_by, None, now).await
}

/// A re-request made by a rule's `send_rating_request`: its `survey.re_requested` event is
/// caused by the rule's event (same chain, `performed_by` the rule), not a new chain.
pub async fn re_request_by_rule(
    store: &dyn ItemStore,
    ticket_id: &crate::ids::TicketId,
    cause: &EventEnvelope,
    rule: crate::ids::RuleId,
    requested_by: &str,
    now: DateTime<Utc>,
) -> Result<ReRequested, SurveyError> {
    re_request_in_chain(
        store,
        &cause.tenant_id,
        ticket_id,
        Some(requested_by),
        Some((cause, rule)),
        now,
    )
    .await
}

async fn re_request_in_chain(
    store: &dyn ItemStore,
    tenant: &TenantId,
    ticket_id: &crate::ids::TicketId,
    requested_by: Option<&str>,
    chain: Option<(&EventEnvelope, crate::ids::RuleId)>,
    now: DateTime<Utc>,
) -> Result<ReRequested, SurveyError> {
    let unknown = || SurveyError::UnknownTicket(ticket_id.as_str().to_string());
    let ticket: TicketSnapshot = store
        .get(&keys::ticket(tenant, ticket_id))
        .await?
        .map(|item| read_record(&item))
        .transpose()?
        .ok_or_else(unknown)?;
    if unsubscribe::is_unsubscribed(store, tenant, &ticket.contact.email).await? {
        return Err(SurveyError::ContactUnsubscribed(
            ticket_id.as_str().to_string(),
        ));
    }
    let settings = tenancy::get_settings(store, tenant).await?;
    let marker_key = keys::ticket_survey(tenant, ticket_id);
    let previous = store
        .get(&marker_key)
        .await?
        .and_then(|m| m.str_attr("survey_request_id").map(str::to_string));
    let request = SurveyRequest {
        id: SurveyRequestId::new(),
        tenant_id: tenant.clone(),
        kind: settings.survey_kind,
        ticket,
        due_at: now,
        status: SurveyStatus::Scheduled,
        created_at: now,
    };
    let supersedes = previous
        .as_deref()
        .and_then(|id| SurveyRequestId::parse(id).ok());
    let mut marker = marker_key.to_item();
    marker.insert("survey_request_id".into(), Value::S(request.id.to_string()));
    let marker_guard = match &previous {
        Some(id) => Condition::eq("survey_request_id", Value::s(id)),
        None => Condition::item_absent(),
    };
    let data = serde_json::json!({ "ticket": request.ticket, "survey_request_id": request.id,
        "supersedes": supersedes, "requested_by": requested_by });
    let event = match chain {
        Some((cause, rule)) => cause.caused(EventType::SurveyReRequested, now, Some(rule), data),
        None => EventEnvelope::new_root(tenant.clone(), EventType::SurveyReRequested, now, data),
    };
    let mut writes = vec![
        WriteOp::put_if(marker, marker_guard),
        WriteOp::put_if(request_item(&request), Condition::item_absent()),
        outbox_put(&event, now),
    ];
    if let Some(old) = supersedes {
        writes.push(WriteOp::Update {
            key: keys::survey_request(tenant, old),
            update: Update::new()
                .set(STATUS, Value::s("cancelled"))
                .set(CANCEL_REASON, Value::s("superseded"))
                .remove(Index::Gsi1.pk_attribute())
                .remove(Index::Gsi1.sk_attribute()),
            condition: Some(Condition::item_present()),
        });
    }
    match store.transact_write(writes).await {
        Ok(()) => Ok(ReRequested {
            survey_request_id: request.id,
            supersedes,
        }),
        Err(StoreError::TransactionCanceled { .. }) => {
            Err(SurveyError::Conflict(ticket_id.as_str().to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Sends every request that is due, for every tenant. Returns how many were sent.
pub async fn send_due(
    store: &dyn ItemStore,
    mailer: &dyn Mailer,
    clock: &dyn Clock,
    links: &LinkSigner<'_>,
) -> Result<usize, SurveyError> {
    let now = clock.now();
    let mut sent = 0;
    for tenant in tenancy::list_tenants(store).await? {
        let settings = tenancy::get_settings(store, &tenant).await?;
        let mut due = DueItems::new(keys::surveys_due_index(&tenant), now);
        while let Some(items) = due.next_page(store).await? {
            for item in &items {
                let request = read_request(item)?;
                if send_request(store, mailer, clock, links, &settings, request).await? {
                    sent += 1;
                }
            }
        }
    }
    Ok(sent)
}

#[derive(Serialize)]
struct Choice {
    label: String,
    url: String,
    color: &'static str,
}

fn choices(request: &SurveyRequest, links: &LinkSigner<'_>, now: DateTime<Utc>) -> Vec<Choice> {
    let url = |value: &str| links.rating_url(&request.tenant_id, request.id, value, now);
    match request.kind {
        SurveyKind::Csat => CsatValue::ALL
            .iter()
            .map(|v| Choice {
                label: match v {
                    CsatValue::Positive => "Good",
                    CsatValue::Neutral => "Okay",
                    CsatValue::Negative => "Bad",
                }
                .into(),
                url: url(v.as_str()),
                color: match v {
                    CsatValue::Positive => "#16a34a",
                    CsatValue::Neutral => "#6b7280",
                    CsatValue::Negative => "#dc2626",
                },
            })
            .collect(),
        SurveyKind::Nps => (0..=10)
            .map(|n| Choice {
                label: n.to_string(),
                url: url(&n.to_string()),
                color: match n {
                    0..=6 => "#dc2626",
                    7 | 8 => "#ca8a04",
                    _ => "#16a34a",
                },
            })
            .collect(),
    }
}

/// Sends one request exactly once (idempotency record), then marks it sent and records
/// `survey.sent` in the outbox. Returns false when it was not due for sending any more.
async fn send_request(
    store: &dyn ItemStore,
    mailer: &dyn Mailer,
    clock: &dyn Clock,
    links: &LinkSigner<'_>,
    settings: &TenantSettings,
    request: SurveyRequest,
) -> Result<bool, SurveyError> {
    let tenant = &request.tenant_id;
    let now = clock.now();
    let claim = format!("survey-send#{}", request.id);
    match idempotency::begin(store, tenant, &claim, now, IdempotencyConfig::default()).await? {
        Begin::Started => {}
        Begin::AlreadyCompleted(_) => return Ok(false),
        Begin::InProgress => return Err(SurveyError::SendInProgress(request.id)),
    }
    let result = deliver(store, mailer, links, settings, &request, now).await;
    match result {
        Ok(sent) => {
            idempotency::complete(store, tenant, &claim, &serde_json::json!({ "sent": sent }))
                .await?;
            Ok(sent)
        }
        Err(e) => {
            // Give the claim back so the next run retries.
            let _ = idempotency::release(store, tenant, &claim).await;
            Err(e)
        }
    }
}

async fn deliver(
    store: &dyn ItemStore,
    mailer: &dyn Mailer,
    links: &LinkSigner<'_>,
    settings: &TenantSettings,
    request: &SurveyRequest,
    now: DateTime<Utc>,
) -> Result<bool, SurveyError> {
    let tenant = &request.tenant_id;
    // Re-read: it may have been cancelled since it was listed.
    let current = store.get(&keys::survey_request(tenant, request.id)).await?;
    if current.as_ref().and_then(|i| i.str_attr(STATUS)) != Some("scheduled") {
        return Ok(false);
    }
    let ticket = &request.ticket;
    if unsubscribe::is_unsubscribed(store, tenant, &ticket.contact.email).await? {
        skip(store, request, "unsubscribed", now).await?;
        return Ok(false);
    }
    let unsubscribe_url = links.unsubscribe_url(tenant, request.id, now);
    let context = serde_json::json!({
        "brand": { "name": settings.brand_name, "color": settings.brand_color },
        "ticket": { "id": ticket.id, "subject": ticket.subject, "url": ticket.url },
        "contact": { "name": ticket.contact.name },
        "agent_name": ticket.agent.as_ref().map(|a| a.name.as_str()).unwrap_or("Our team"),
        "choices": choices(request, links, now),
        "unsubscribe_url": unsubscribe_url,
    });
    let saved = templates::rating_request_templates(store, tenant).await?;
    let rendered = templates::render_email(&saved.subject, &saved.text, &saved.html, &context)?;
    mailer
        .send(&OutgoingEmail {
            to: vec![ticket.contact.email.clone()],
            reply_to: None,
            subject: rendered.subject,
            text: rendered.text,
            html: Some(rendered.html),
            // RFC 8058 one-click: mail clients POST to the URL; nothing happens on a GET.
            headers: vec![
                ("List-Unsubscribe".into(), format!("<{unsubscribe_url}>")),
                (
                    "List-Unsubscribe-Post".into(),
                    "List-Unsubscribe=One-Click".into(),
                ),
            ],
        })
        .await?;
    let sent_event = EventEnvelope::new_root(
        tenant.clone(),
        EventType::SurveySent,
        now,
        serde_json::json!({ "survey_request_id": request.id, "ticket_id": ticket.id }),
    );
    store
        .transact_write(vec![
            WriteOp::Update {
                key: keys::survey_request(tenant, request.id),
                update: Update::new()
                    .set(STATUS, Value::s("sent"))
                    .set("sent_at", Value::S(keys::sortable_time(now)))
                    .remove(Index::Gsi1.pk_attribute())
                    .remove(Index::Gsi1.sk_attribute()),
                condition: Some(Condition::eq(STATUS, Value::s("scheduled"))),
            },
            outbox_put(&sent_event, now),
        ])
        .await?;
    Ok(true)
}

/// Withdraws a due request without sending it, and says why in `survey.skipped`.
async fn skip(
    store: &dyn ItemStore,
    request: &SurveyRequest,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let tenant = &request.tenant_id;
    let event = EventEnvelope::new_root(
        tenant.clone(),
        EventType::SurveySkipped,
        now,
        serde_json::json!({ "survey_request_id": request.id, "ticket_id": request.ticket.id,
            "reason": reason }),
    );
    let written = store
        .transact_write(vec![
            WriteOp::Update {
                key: keys::survey_request(tenant, request.id),
                update: Update::new()
                    .set(STATUS, Value::s("cancelled"))
                    .set(CANCEL_REASON, Value::s(reason))
                    .remove(Index::Gsi1.pk_attribute())
                    .remove(Index::Gsi1.sk_attribute()),
                condition: Some(Condition::eq(STATUS, Value::s("scheduled"))),
            },
            outbox_put(&event, now),
        ])
        .await;
    match written {
        Ok(()) | Err(StoreError::TransactionCanceled { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reads a survey request.
pub async fn get_request(
    store: &dyn ItemStore,
    tenant: &TenantId,
    id: SurveyRequestId,
) -> Result<Option<SurveyRequest>, StoreError> {
    store
        .get_shared(&keys::survey_request(tenant, id))
        .await?
        .map(|item| read_request(&item))
        .transpose()
}

/// The record, with its status from the attribute that conditional writes keep current.
fn read_request(item: &crate::store::Item) -> Result<SurveyRequest, StoreError> {
    let mut request: SurveyRequest = read_record(item)?;
    request.status = match item.str_attr(STATUS) {
        Some("sent") => SurveyStatus::Sent,
        Some("cancelled") => SurveyStatus::Cancelled,
        _ => SurveyStatus::Scheduled,
    };
    Ok(request)
}
