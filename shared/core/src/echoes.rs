//! Echo detection: a change closedloop makes in the helpdesk (a reopen, a status, a tag, a
//! type, an assignee) usually comes back as a webhook ("status changed"). Before making the
//! change, `actions` records what it expects back, in the ticket's partition, for about an
//! hour; the webhook ingest recognises the echo ([`recognise`]), builds its event as caused by
//! the rule that made the change (so that rule, in `chain_rules`, does not run on it again), and
//! consumes the expectation in the same transaction.
//!
//! The expectation is written *before* the call because a helpdesk may send its webhook before
//! it answers our call.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::TicketSnapshot;
use crate::event::{EventEnvelope, EventType};
use crate::ids::{RuleId, TenantId, TicketId};
use crate::keys;
use crate::records::{read_record, record_item};
use crate::rules::Action;
use crate::store::{
    Condition, ItemExt, ItemStore, Key, Query, SortKeyCondition, StoreError, TTL_ATTRIBUTE, Value,
    WriteOp,
};

/// How long an expected echo is waited for.
pub const ECHO_WINDOW_MINUTES: i64 = 60;

/// The change whose echo is expected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ExpectedChange {
    Reopen,
    Status {
        status: String,
    },
    Tag {
        tag: String,
    },
    Type {
        ticket_type: String,
    },
    Agent {
        agent_id: String,
    },
    /// A ticket we created, coming back as `ticket.created`.
    Created,
}

impl ExpectedChange {
    /// The echo a helpdesk action may cause (none for notes and replies).
    pub fn of(action: &Action) -> Option<ExpectedChange> {
        Some(match action {
            Action::ReopenTicket {} => ExpectedChange::Reopen,
            Action::SetTicketStatus { status } => ExpectedChange::Status {
                status: status.clone(),
            },
            Action::AddTicketTag { tag } => ExpectedChange::Tag { tag: tag.clone() },
            Action::ChangeTicketType { ticket_type } => ExpectedChange::Type {
                ticket_type: ticket_type.clone(),
            },
            Action::AssignAgent { agent_id } => ExpectedChange::Agent {
                agent_id: agent_id.clone(),
            },
            _ => return None,
        })
    }

    /// Whether a helpdesk's ticket event is what this change looks like coming back.
    pub fn matches(&self, event_type: EventType, ticket: &TicketSnapshot) -> bool {
        use EventType as E;
        let same = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
        match self {
            ExpectedChange::Reopen => {
                matches!(event_type, E::TicketReopened | E::TicketStatusChanged)
                    && crate::automation::is_open_status(&ticket.status)
            }
            ExpectedChange::Status { status } => {
                matches!(
                    event_type,
                    E::TicketStatusChanged | E::TicketClosed | E::TicketReopened
                ) && same(&ticket.status, status)
            }
            ExpectedChange::Tag { tag } => {
                event_type == E::TicketTagAdded && ticket.tags.iter().any(|t| same(t, tag))
            }
            // Helpdesks report type and assignee changes as a generic ticket change.
            ExpectedChange::Type { ticket_type } => {
                event_type == E::TicketStatusChanged
                    && ticket
                        .ticket_type
                        .as_deref()
                        .is_some_and(|t| same(t, ticket_type))
            }
            ExpectedChange::Agent { agent_id } => {
                event_type == E::TicketStatusChanged
                    && ticket
                        .agent
                        .as_ref()
                        .is_some_and(|a| a.id.as_str() == agent_id)
            }
            ExpectedChange::Created => event_type == E::TicketCreated,
        }
    }
}

/// What is stored: the change, the rule that made it, and the event whose chain it belongs to
/// (its envelope without the payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expectation {
    pub change: ExpectedChange,
    pub rule_id: RuleId,
    pub cause: EventEnvelope,
    pub expires_at: DateTime<Utc>,
}

/// The put that records an expected echo of `action_key`'s change on `ticket`. Re-putting it
/// (a retried call) rewrites the same item.
pub fn expect(
    ticket: &TicketId,
    action_key: &str,
    change: ExpectedChange,
    rule_id: RuleId,
    cause: &EventEnvelope,
    now: DateTime<Utc>,
) -> WriteOp {
    let expires_at = now + Duration::minutes(ECHO_WINDOW_MINUTES);
    let expectation = Expectation {
        change,
        rule_id,
        cause: EventEnvelope {
            data: serde_json::Value::Null,
            ..cause.clone()
        },
        expires_at,
    };
    let key = keys::expected_echo(&cause.tenant_id, ticket, action_key);
    let mut item = record_item(&key, "expected_echo", &expectation);
    item.insert(TTL_ATTRIBUTE.into(), Value::n(expires_at.timestamp()));
    WriteOp::put(item)
}

/// Removes an expectation whose change was never made (the call failed).
pub fn forget(tenant: &TenantId, ticket: &TicketId, action_key: &str) -> WriteOp {
    WriteOp::Delete {
        key: keys::expected_echo(tenant, ticket, action_key),
        condition: None,
    }
}

/// A recognised echo.
#[derive(Debug, Clone, PartialEq)]
pub struct Echo {
    key: Key,
    pub expectation: Expectation,
}

impl Echo {
    /// The ticket event, as caused by the rule that made the change: `performed_by` names it,
    /// `depth` is one more than its cause's, and `chain_rules` includes it.
    pub fn event(
        &self,
        event_type: EventType,
        occurred_at: DateTime<Utc>,
        data: serde_json::Value,
    ) -> EventEnvelope {
        self.expectation.cause.caused(
            event_type,
            occurred_at,
            Some(self.expectation.rule_id),
            data,
        )
    }

    /// Consumes the expectation (in the transaction that writes the event): one echo each. A
    /// second delivery racing for it fails its transaction and is retried by the sender.
    pub fn consume(&self) -> WriteOp {
        WriteOp::Delete {
            key: self.key.clone(),
            condition: Some(Condition::item_present()),
        }
    }
}

/// Whether an incoming helpdesk ticket event is the echo of a change closedloop made: the oldest
/// unexpired expectation on the ticket that it matches.
pub async fn recognise(
    store: &dyn ItemStore,
    tenant: &TenantId,
    event_type: EventType,
    ticket: &TicketSnapshot,
    now: DateTime<Utc>,
) -> Result<Option<Echo>, StoreError> {
    let page = store
        .query(
            Query::partition(keys::ticket_partition(tenant, &ticket.id))
                .sk(SortKeyCondition::BeginsWith(
                    keys::EXPECTED_ECHO_PREFIX.into(),
                ))
                .limit(50),
        )
        .await?;
    for item in &page.items {
        let Ok(expectation) = read_record::<Expectation>(item) else {
            continue;
        };
        // TTL deletes lazily: an expired expectation is no longer waited for.
        if expectation.expires_at < now || !expectation.change.matches(event_type, ticket) {
            continue;
        }
        if let Some(key) = item.key() {
            return Ok(Some(Echo { key, expectation }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Contact, Email};
    use crate::ids::ContactId;

    fn ticket(status: &str, tags: &[&str]) -> TicketSnapshot {
        TicketSnapshot {
            id: TicketId::parse("7").unwrap(),
            subject: "s".into(),
            status: status.into(),
            agent: None,
            contact: Contact {
                id: ContactId::parse("c").unwrap(),
                name: "C".into(),
                email: Email::parse("c@example.com").unwrap(),
                account: None,
            },
            channel: None,
            url: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ticket_type: None,
            inbox: None,
            inbox_group: None,
            integration: None,
            created_at: None,
            last_customer_message_at: None,
            answered: None,
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_reopen_echoes_as_reopened_or_an_open_status_but_not_a_close() {
        let reopen = ExpectedChange::Reopen;
        assert!(reopen.matches(EventType::TicketReopened, &ticket("open", &[])));
        assert!(reopen.matches(EventType::TicketStatusChanged, &ticket("open", &[])));
        assert!(!reopen.matches(EventType::TicketClosed, &ticket("closed", &[])));
        assert!(!reopen.matches(EventType::TicketStatusChanged, &ticket("solved", &[])));
    }

    #[test]
    fn a_tag_or_status_echo_must_carry_the_value_we_set() {
        let tag = ExpectedChange::Tag { tag: "VIP".into() };
        assert!(tag.matches(EventType::TicketTagAdded, &ticket("open", &["vip"])));
        assert!(!tag.matches(EventType::TicketTagAdded, &ticket("open", &["other"])));
        let status = ExpectedChange::Status {
            status: "pending".into(),
        };
        assert!(status.matches(EventType::TicketStatusChanged, &ticket("Pending", &[])));
        assert!(!status.matches(EventType::TicketStatusChanged, &ticket("open", &[])));
    }
}
