//! Zendesk webhooks.
//!
//! Signing (developer.zendesk.com/documentation/webhooks/verifying): `X-Zendesk-Webhook-Signature`
//! is `base64(HMAC-SHA256(secret, TIMESTAMP + BODY))`, where TIMESTAMP is the value of
//! `X-Zendesk-Webhook-Signature-Timestamp` exactly as sent (ISO 8601, e.g.
//! `2024-04-17T17:18:10Z`). The secret is the webhook's signing secret from Zendesk.
//!
//! Payload: Zendesk's event schema (`type`, `id`, `time`, `subject`, `detail`, `event`;
//! developer.zendesk.com/api-reference/webhooks/event-types/ticket-events). Ticket events carry
//! only `requester_id`, and closedloop needs the requester's email to ask for a rating, so the
//! `detail` must also hold `requester: {id, name, email}` (and may hold `assignee` and
//! `organization`): send the webhook from a Zendesk trigger whose JSON body adds them with
//! placeholders (`docs/webhooks.md`).

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Delivery, Headers, IngestError, LooseId, TicketDelivery, key_part};
use crate::domain::{Agent, Contact, CustomerAccount, Email, TicketSnapshot};
use crate::event::EventType;
use crate::ids::{AccountId, AgentId, ContactId, TicketId};
use crate::signature::{self, Proof, SignatureError};

pub const SIGNATURE_HEADER: &str = "X-Zendesk-Webhook-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Zendesk-Webhook-Signature-Timestamp";

const CLOSED_STATUSES: [&str; 2] = ["solved", "closed"];

pub(super) fn proof<'a>(
    headers: &'a dyn Headers,
    body: &'a [u8],
    now: DateTime<Utc>,
) -> Result<Proof<'a>, SignatureError> {
    let signature = headers
        .header(SIGNATURE_HEADER)
        .ok_or(SignatureError::Missing(SIGNATURE_HEADER))?;
    let timestamp = headers
        .header(TIMESTAMP_HEADER)
        .ok_or(SignatureError::Missing(TIMESTAMP_HEADER))?;
    let sent_at = DateTime::parse_from_rfc3339(timestamp.trim())
        .map(|t| t.timestamp())
        .map_err(|_| SignatureError::MalformedHeader {
            header: TIMESTAMP_HEADER,
            expected: "an ISO 8601 time such as 2024-04-17T17:18:10Z",
        })?;
    signature::check_timestamp(sent_at, now)?;
    let digest =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, signature.trim())
            .map_err(|_| SignatureError::MalformedHeader {
                header: SIGNATURE_HEADER,
                expected: "a base64 HMAC-SHA256",
            })?;
    Ok(Proof::Hmac {
        prefix: timestamp.as_bytes().to_vec(),
        body,
        candidates: vec![digest],
    })
}

/// The signature header value Zendesk would send (for tests and the local runner).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        signature::hmac_sha256_parts(secret, &[timestamp.as_bytes(), body]),
    )
}

#[derive(Deserialize)]
struct ZendeskEvent {
    #[serde(rename = "type")]
    event_type: String,
    id: String,
    time: DateTime<Utc>,
    detail: Detail,
    #[serde(default)]
    event: serde_json::Value,
}

#[derive(Deserialize)]
struct Detail {
    id: LooseId,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    requester_id: Option<LooseId>,
    #[serde(default)]
    assignee_id: Option<LooseId>,
    #[serde(default)]
    organization_id: Option<LooseId>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    via: Option<Via>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    requester: Option<Person>,
    #[serde(default)]
    assignee: Option<Person>,
    #[serde(default)]
    organization: Option<Organization>,
}

#[derive(Deserialize)]
struct Via {
    #[serde(default)]
    channel: Option<String>,
}

#[derive(Deserialize)]
struct Person {
    #[serde(default)]
    id: Option<LooseId>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
struct Organization {
    id: LooseId,
    #[serde(default)]
    name: Option<String>,
}

pub(super) fn parse(body: &[u8]) -> Result<Delivery, IngestError> {
    let event: ZendeskEvent =
        serde_json::from_slice(body).map_err(|e| IngestError::BadBody(e.to_string()))?;
    let status = current_status(&event);
    let event_type = match event.event_type.as_str() {
        "zen:event-type:ticket.created" => EventType::TicketCreated,
        "zen:event-type:ticket.status_changed" => {
            let previous = text_at(&event.event, "previous");
            match (status.as_deref(), previous.as_deref()) {
                (Some(now), _) if is_closed(now) => EventType::TicketClosed,
                (Some(_), Some(before)) if is_closed(before) => EventType::TicketReopened,
                _ => EventType::TicketStatusChanged,
            }
        }
        "zen:event-type:ticket.tags_changed" if has_items(&event.event, "tags_added") => {
            EventType::TicketTagAdded
        }
        "zen:event-type:ticket.comment_added" if from_customer(&event) => {
            EventType::TicketCustomerMessage
        }
        other => return Ok(Delivery::Ignored(format!("zendesk event {other}"))),
    };
    let delivery_id = key_part("id", &event.id)?;
    let ticket = snapshot(event.detail, status, event.time)?;
    Ok(Delivery::Ticket(Box::new(TicketDelivery {
        delivery_id,
        event_type,
        occurred_at: event.time,
        ticket,
        message: None,
        tag: None,
    })))
}

fn snapshot(
    detail: Detail,
    status: Option<String>,
    time: DateTime<Utc>,
) -> Result<TicketSnapshot, IngestError> {
    let requester = detail
        .requester
        .ok_or_else(|| IngestError::missing("detail.requester"))?;
    let email = requester
        .email
        .ok_or_else(|| IngestError::missing("detail.requester.email"))?;
    let email =
        Email::parse(&email).map_err(|e| IngestError::invalid("detail.requester.email", e))?;
    let contact_id = requester
        .id
        .or(detail.requester_id)
        .ok_or_else(|| IngestError::missing("detail.requester.id"))?
        .into_string();
    let account = match (detail.organization, detail.organization_id) {
        (Some(org), _) => Some((org.id.into_string(), org.name.unwrap_or_default())),
        (None, Some(id)) => Some((id.into_string(), String::new())),
        (None, None) => None,
    }
    // Zendesk sends organization_id 0 or null for a requester without one.
    .filter(|(id, _)| !id.is_empty() && id != "0");
    let account = account
        .map(|(id, name)| -> Result<_, IngestError> {
            Ok(CustomerAccount {
                id: AccountId::parse(&id)
                    .map_err(|e| IngestError::invalid("detail.organization.id", e))?,
                name,
            })
        })
        .transpose()?;
    let agent = match detail.assignee {
        Some(Person {
            id,
            name,
            email: Some(email),
        }) => {
            let id = id
                .or(detail.assignee_id)
                .ok_or_else(|| IngestError::missing("detail.assignee.id"))?
                .into_string();
            Some(Agent {
                id: AgentId::parse(&id)
                    .map_err(|e| IngestError::invalid("detail.assignee.id", e))?,
                name: name.unwrap_or_default(),
                email: Email::parse(&email)
                    .map_err(|e| IngestError::invalid("detail.assignee.email", e))?,
                email_notifications: true,
                working_hours: None,
            })
        }
        _ => None,
    };
    Ok(TicketSnapshot {
        id: TicketId::parse(&detail.id.into_string())
            .map_err(|e| IngestError::invalid("detail.id", e))?,
        subject: detail.subject.unwrap_or_default(),
        status: status
            .or(detail.status.map(|s| s.to_ascii_lowercase()))
            .ok_or_else(|| IngestError::missing("detail.status"))?,
        agent,
        contact: Contact {
            id: ContactId::parse(&contact_id)
                .map_err(|e| IngestError::invalid("detail.requester.id", e))?,
            name: requester.name.unwrap_or_else(|| email.as_str().to_string()),
            email,
            account,
        },
        channel: detail.via.and_then(|v| v.channel),
        url: None,
        tags: detail.tags,
        ticket_type: None,
        inbox: None,
        inbox_group: None,
        integration: Some("zendesk".into()),
        created_at: None,
        last_customer_message_at: None,
        answered: None,
        updated_at: detail.updated_at.unwrap_or(time),
    })
}

/// The ticket's status after the event, lower-cased: `event.current` (a string, or
/// `{"status": ...}` on ticket.created), else `detail.status`.
fn current_status(event: &ZendeskEvent) -> Option<String> {
    text_at(&event.event, "current")
        .or_else(|| {
            event.event["current"]["status"]
                .as_str()
                .map(str::to_ascii_lowercase)
        })
        .or_else(|| event.detail.status.as_deref().map(str::to_ascii_lowercase))
}

fn text_at(value: &serde_json::Value, field: &str) -> Option<String> {
    value[field].as_str().map(str::to_ascii_lowercase)
}

fn is_closed(status: &str) -> bool {
    CLOSED_STATUSES.contains(&status)
}

fn has_items(value: &serde_json::Value, field: &str) -> bool {
    value[field].as_array().is_some_and(|a| !a.is_empty())
}

/// A public comment whose author is the requester (not staff) is the customer writing in.
fn from_customer(event: &ZendeskEvent) -> bool {
    let comment = &event.event["comment"];
    let author = &comment["author"];
    let requester = event.detail.requester_id.clone().map(LooseId::into_string);
    let author_id = match &author["id"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    comment["is_public"].as_bool() != Some(false)
        && (author["is_staff"].as_bool() == Some(false)
            || (author_id.is_some() && author_id == requester))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zendesk's documented ticket.status_changed shape, with the requester added by a trigger.
    pub(crate) fn solved_event() -> String {
        serde_json::json!({
            "type": "zen:event-type:ticket.status_changed",
            "account_id": 12514403,
            "id": "2b24ef10-19d4-4740-93cf-8f98ec4776c0",
            "time": "2026-11-23T10:00:00Z",
            "zendesk_event_version": "2022-11-06",
            "subject": "zen:ticket:35436",
            "detail": {
                "id": "35436", "subject": "Printer on fire", "status": "SOLVED",
                "requester_id": "20978392", "assignee_id": "235323", "organization_id": "509974",
                "tags": ["hardware"], "via": {"channel": "web"},
                "created_at": "2026-11-20T09:00:00Z", "updated_at": "2026-11-23T10:00:00Z",
                "requester": {"id": "20978392", "name": "Bob Stone", "email": "bob@example.com"},
                "organization": {"id": "509974", "name": "Northwind"}
            },
            "event": {"current": "SOLVED", "previous": "OPEN"}
        })
        .to_string()
    }

    fn ticket_of(delivery: Delivery) -> TicketDelivery {
        match delivery {
            Delivery::Ticket(t) => *t,
            other => panic!("expected a ticket event, got {other:?}"),
        }
    }

    #[test]
    fn a_solved_ticket_is_a_closed_ticket_with_its_requester_and_organisation() {
        let t = ticket_of(parse(solved_event().as_bytes()).unwrap());
        assert_eq!(t.event_type, EventType::TicketClosed);
        assert_eq!(t.delivery_id, "2b24ef10-19d4-4740-93cf-8f98ec4776c0");
        assert_eq!(t.ticket.id.as_str(), "35436");
        assert_eq!(t.ticket.status, "solved");
        assert_eq!(t.ticket.contact.email.as_str(), "bob@example.com");
        assert_eq!(t.ticket.contact.account.unwrap().name, "Northwind");
    }

    #[test]
    fn status_changes_map_to_reopen_and_plain_change() {
        let reopened = solved_event().replace(
            r#""current":"SOLVED","previous":"OPEN""#,
            r#""current":"OPEN","previous":"SOLVED""#,
        );
        assert_eq!(
            ticket_of(parse(reopened.as_bytes()).unwrap()).event_type,
            EventType::TicketReopened
        );
        let pending = solved_event().replace(
            r#""current":"SOLVED","previous":"OPEN""#,
            r#""current":"PENDING","previous":"OPEN""#,
        );
        let t = ticket_of(parse(pending.as_bytes()).unwrap());
        assert_eq!(t.event_type, EventType::TicketStatusChanged);
        assert_eq!(t.ticket.status, "pending");
    }

    #[test]
    fn tags_comments_and_other_events() {
        let tagged = solved_event()
            .replace("ticket.status_changed", "ticket.tags_changed")
            .replace(
                r#""current":"SOLVED","previous":"OPEN""#,
                r#""tags_added":["vip"],"tags_removed":[]"#,
            );
        assert_eq!(
            ticket_of(parse(tagged.as_bytes()).unwrap()).event_type,
            EventType::TicketTagAdded
        );
        let from_customer = solved_event()
            .replace("ticket.status_changed", "ticket.comment_added")
            .replace(r#""current":"SOLVED","previous":"OPEN""#,
                r#""comment":{"id":"1","body":"Still broken","is_public":true,"author":{"id":"20978392","is_staff":false,"name":"Bob"}}"#);
        assert_eq!(
            ticket_of(parse(from_customer.as_bytes()).unwrap()).event_type,
            EventType::TicketCustomerMessage
        );
        let from_agent = from_customer.replace(
            r#""id":"20978392","is_staff":false"#,
            r#""id":"235323","is_staff":true"#,
        );
        assert!(matches!(
            parse(from_agent.as_bytes()).unwrap(),
            Delivery::Ignored(_)
        ));
        let priority = solved_event().replace("ticket.status_changed", "ticket.priority_changed");
        assert!(matches!(
            parse(priority.as_bytes()).unwrap(),
            Delivery::Ignored(_)
        ));
    }

    #[test]
    fn a_native_event_without_the_requesters_email_names_the_field() {
        let mut event: serde_json::Value = serde_json::from_str(&solved_event()).unwrap();
        event["detail"]["requester"]
            .as_object_mut()
            .unwrap()
            .remove("email");
        let err = parse(event.to_string().as_bytes()).unwrap_err().to_string();
        assert!(err.contains("detail.requester.email"), "{err}");
    }

    #[test]
    fn the_signature_is_base64_hmac_over_timestamp_then_body() {
        let now: DateTime<Utc> = "2026-11-23T10:00:30Z".parse().unwrap();
        let body = solved_event();
        let ts = "2026-11-23T10:00:00Z";
        let sig = sign(b"zd-secret", ts, body.as_bytes());
        let headers = [(SIGNATURE_HEADER, sig.as_str()), (TIMESTAMP_HEADER, ts)];
        let secrets = [b"zd-secret".to_vec()];
        proof(&headers, body.as_bytes(), now)
            .unwrap()
            .verify(&secrets)
            .unwrap();
        // The timestamp is part of the message: another one does not verify.
        let moved = [
            (SIGNATURE_HEADER, sig.as_str()),
            (TIMESTAMP_HEADER, "2026-11-23T10:00:01Z"),
        ];
        assert_eq!(
            proof(&moved, body.as_bytes(), now)
                .unwrap()
                .verify(&secrets),
            Err(SignatureError::Mismatch)
        );
        let late: DateTime<Utc> = "2026-11-23T10:05:01Z".parse().unwrap();
        assert_eq!(
            proof(&headers, body.as_bytes(), late).unwrap_err(),
            SignatureError::StaleTimestamp
        );
        assert_eq!(
            proof(&[headers[0]], body.as_bytes(), now).unwrap_err(),
            SignatureError::Missing(TIMESTAMP_HEADER)
        );
    }
}
