//! Small pieces the vendor connectors share: building a ticket snapshot from what a vendor
//! answers, and finding a status or type id by the name a rule gives.

use chrono::{DateTime, Utc};
use closedloop_core::domain::{Contact, CustomerAccount, Email, TicketSnapshot};
use closedloop_core::helpdesk::{ConnectorError, HelpdeskOperation};
use closedloop_core::ids::{AccountId, ContactId, TicketId};

/// What a vendor's ticket says, in closedloop's terms.
#[derive(Debug, Default)]
pub(crate) struct TicketParts {
    pub id: String,
    pub subject: String,
    pub status: String,
    pub contact_id: Option<String>,
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
    pub account: Option<(String, String)>,
    pub ticket_type: Option<String>,
    pub tags: Vec<String>,
    pub updated_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
}

impl TicketParts {
    pub fn into_snapshot(self, vendor: &str) -> Result<TicketSnapshot, ConnectorError> {
        let bad = |what: &str| ConnectorError::Rejected {
            status: 200,
            message: format!("{vendor} ticket {}: {what}", self.id),
        };
        let email = self
            .contact_email
            .as_deref()
            .and_then(|e| Email::parse(e).ok())
            .ok_or_else(|| bad("its contact has no valid email address"))?;
        let contact_id = self
            .contact_id
            .clone()
            .unwrap_or_else(|| email.as_str().to_string());
        Ok(TicketSnapshot {
            id: TicketId::parse(&self.id).map_err(|_| bad("the id is not usable"))?,
            subject: self.subject.chars().take(500).collect(),
            status: if self.status.is_empty() {
                "unknown".into()
            } else {
                self.status.chars().take(64).collect()
            },
            agent: None,
            contact: Contact {
                id: ContactId::parse(&contact_id)
                    .map_err(|_| bad("the contact id is not usable"))?,
                name: self.contact_name.unwrap_or_default(),
                email,
                account: match self.account {
                    Some((id, name)) => Some(CustomerAccount {
                        id: AccountId::parse(&id)
                            .map_err(|_| bad("the account id is not usable"))?,
                        name,
                    }),
                    None => None,
                },
            },
            channel: None,
            url: None,
            tags: self.tags,
            ticket_type: self.ticket_type,
            inbox: None,
            inbox_group: None,
            integration: None,
            created_at: self.created_at,
            last_customer_message_at: None,
            answered: None,
            updated_at: self.updated_at.unwrap_or_else(Utc::now),
        })
    }
}

pub(crate) fn parse_time(value: &serde_json::Value) -> Option<DateTime<Utc>> {
    let s = value.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            // Some vendors leave the zone out; they mean UTC.
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// The id of `wanted` among `(id, name)` choices: a number is taken as the id itself, a name
/// is matched without regard to case.
pub(crate) fn pick_id(
    vendor: &str,
    what: &str,
    wanted: &str,
    choices: &[(i64, String)],
) -> Result<i64, ConnectorError> {
    if let Ok(id) = wanted.trim().parse::<i64>() {
        return Ok(id);
    }
    choices
        .iter()
        .find(|(_, name)| name.trim().eq_ignore_ascii_case(wanted.trim()))
        .map(|(id, _)| *id)
        .ok_or_else(|| ConnectorError::Rejected {
            status: 400,
            message: format!(
                "{vendor} has no {what} '{wanted}'; it has {}",
                choices
                    .iter()
                    .map(|(_, n)| n.as_str())
                    .take(20)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

pub(crate) fn unsupported(vendor: &str, operation: HelpdeskOperation) -> ConnectorError {
    ConnectorError::Unsupported {
        vendor: vendor.to_string(),
        operation,
    }
}

/// A setting the call needs and the configuration lacks.
pub(crate) fn missing(vendor: &str, setting: &str, why: &str) -> ConnectorError {
    ConnectorError::Misconfigured(format!(
        "{vendor} needs settings.{setting} to {why} (PUT /admin/v1/connector)"
    ))
}

/// The subject of a follow-up ticket, from its cause's.
pub(crate) fn follow_up_subject(subject: &str) -> String {
    let s = format!("Follow-up: {subject}");
    s.chars().take(250).collect()
}
