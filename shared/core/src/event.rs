//! The event envelope every domain event travels in, and the catalogue of event types.
//! See `docs/events.md`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::ids::{RuleId, TenantId};

/// EventBridge `Source` of every closedloop event.
pub const EVENT_SOURCE: &str = "closedloop";
/// Chains of rule-caused events stop at this depth (loop protection).
pub const MAX_EVENT_DEPTH: u32 = 10;

/// The domain event types. The string form is the EventBridge `DetailType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "ticket.created")]
    TicketCreated,
    #[serde(rename = "ticket.closed")]
    TicketClosed,
    #[serde(rename = "ticket.reopened")]
    TicketReopened,
    #[serde(rename = "ticket.status_changed")]
    TicketStatusChanged,
    #[serde(rename = "ticket.tag_added")]
    TicketTagAdded,
    #[serde(rename = "ticket.customer_message")]
    TicketCustomerMessage,
    #[serde(rename = "ticket.return_created")]
    TicketReturnCreated,
    /// The hourly check of an open ticket by time-based rules: the cause their actions name.
    /// Never published.
    #[serde(rename = "ticket.time_check")]
    TicketTimeCheck,
    #[serde(rename = "survey.sent")]
    SurveySent,
    /// A due rating request was not sent (the contact unsubscribed).
    #[serde(rename = "survey.skipped")]
    SurveySkipped,
    /// An agent asked for a new rating; the previous request's links stop working.
    #[serde(rename = "survey.re_requested")]
    SurveyReRequested,
    #[serde(rename = "contact.unsubscribed")]
    ContactUnsubscribed,
    #[serde(rename = "review.recorded")]
    ReviewRecorded,
    #[serde(rename = "review.received")]
    ReviewReceived,
    #[serde(rename = "review.comment_added")]
    ReviewCommentAdded,
    #[serde(rename = "review.tag_added")]
    ReviewTagAdded,
    #[serde(rename = "review.status_changed")]
    ReviewStatusChanged,
    #[serde(rename = "case.opened")]
    CaseOpened,
    #[serde(rename = "case.closed")]
    CaseClosed,
    #[serde(rename = "case.sla_breached")]
    CaseSlaBreached,
    #[serde(rename = "action.requested")]
    ActionRequested,
    #[serde(rename = "action.completed")]
    ActionCompleted,
    #[serde(rename = "action.failed")]
    ActionFailed,
    #[serde(rename = "account.flag_changed")]
    AccountFlagChanged,
}

impl EventType {
    pub const ALL: [EventType; 24] = [
        EventType::TicketCreated,
        EventType::TicketClosed,
        EventType::TicketReopened,
        EventType::TicketStatusChanged,
        EventType::TicketTagAdded,
        EventType::TicketCustomerMessage,
        EventType::TicketReturnCreated,
        EventType::TicketTimeCheck,
        EventType::SurveySent,
        EventType::SurveySkipped,
        EventType::SurveyReRequested,
        EventType::ContactUnsubscribed,
        EventType::ReviewRecorded,
        EventType::ReviewReceived,
        EventType::ReviewCommentAdded,
        EventType::ReviewTagAdded,
        EventType::ReviewStatusChanged,
        EventType::CaseOpened,
        EventType::CaseClosed,
        EventType::CaseSlaBreached,
        EventType::ActionRequested,
        EventType::ActionCompleted,
        EventType::ActionFailed,
        EventType::AccountFlagChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TicketCreated => "ticket.created",
            EventType::TicketClosed => "ticket.closed",
            EventType::TicketReopened => "ticket.reopened",
            EventType::TicketStatusChanged => "ticket.status_changed",
            EventType::TicketTagAdded => "ticket.tag_added",
            EventType::TicketCustomerMessage => "ticket.customer_message",
            EventType::TicketReturnCreated => "ticket.return_created",
            EventType::TicketTimeCheck => "ticket.time_check",
            EventType::SurveySent => "survey.sent",
            EventType::SurveySkipped => "survey.skipped",
            EventType::SurveyReRequested => "survey.re_requested",
            EventType::ContactUnsubscribed => "contact.unsubscribed",
            EventType::ReviewRecorded => "review.recorded",
            EventType::ReviewReceived => "review.received",
            EventType::ReviewCommentAdded => "review.comment_added",
            EventType::ReviewTagAdded => "review.tag_added",
            EventType::ReviewStatusChanged => "review.status_changed",
            EventType::CaseOpened => "case.opened",
            EventType::CaseClosed => "case.closed",
            EventType::CaseSlaBreached => "case.sla_breached",
            EventType::ActionRequested => "action.requested",
            EventType::ActionCompleted => "action.completed",
            EventType::ActionFailed => "action.failed",
            EventType::AccountFlagChanged => "account.flag_changed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The envelope. It is the EventBridge `Detail` of every event, whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub tenant_id: TenantId,
    pub event_id: Ulid,
    #[serde(rename = "type")]
    pub event_type: EventType,
    #[serde(with = "crate::rfc3339")]
    pub occurred_at: DateTime<Utc>,
    /// The first event of the chain this one belongs to.
    pub correlation_id: Ulid,
    /// The event that directly caused this one (itself for a chain's first event).
    pub causation_id: Ulid,
    /// 0 for events from outside; one more than the cause for events caused by rules.
    pub depth: u32,
    /// The rule whose action caused this event, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performed_by: Option<RuleId>,
    /// Every rule whose action led to this event, along the chain: none of them runs again on
    /// it (loop protection).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain_rules: Vec<RuleId>,
    /// Event-type-specific payload.
    pub data: serde_json::Value,
}

impl EventEnvelope {
    /// A new chain: an event that nothing inside closedloop caused.
    pub fn new_root(
        tenant_id: TenantId,
        event_type: EventType,
        occurred_at: DateTime<Utc>,
        data: serde_json::Value,
    ) -> Self {
        let event_id = Ulid::new();
        EventEnvelope {
            tenant_id,
            event_id,
            event_type,
            occurred_at,
            correlation_id: event_id,
            causation_id: event_id,
            depth: 0,
            performed_by: None,
            chain_rules: Vec::new(),
            data,
        }
    }

    /// This envelope as JSON, with `data` written as its payload instead of `self.data`: a
    /// typed payload goes straight to JSON, without a `serde_json::Value` built for it first.
    /// Reads back as the envelope whose `data` is `data` as a `Value`.
    pub fn to_json_with_data<T: Serialize + ?Sized>(&self, data: &T) -> String {
        // Field for field the envelope's own serialisation (a test keeps them in step).
        #[derive(Serialize)]
        struct WithData<'a, T: ?Sized> {
            tenant_id: &'a TenantId,
            event_id: Ulid,
            #[serde(rename = "type")]
            event_type: EventType,
            #[serde(serialize_with = "crate::rfc3339::serialize")]
            occurred_at: &'a DateTime<Utc>,
            correlation_id: Ulid,
            causation_id: Ulid,
            depth: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            performed_by: Option<&'a RuleId>,
            #[serde(skip_serializing_if = "<[RuleId]>::is_empty")]
            chain_rules: &'a [RuleId],
            data: &'a T,
        }
        crate::records::to_json(&WithData {
            tenant_id: &self.tenant_id,
            event_id: self.event_id,
            event_type: self.event_type,
            occurred_at: &self.occurred_at,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            depth: self.depth,
            performed_by: self.performed_by.as_ref(),
            chain_rules: &self.chain_rules,
            data,
        })
    }

    /// The ticket the event is about: its ticket snapshot's, its review's or case's, or a bare
    /// `ticket_id`.
    pub fn ticket_id(&self) -> Option<crate::ids::TicketId> {
        let data = &self.data;
        data["ticket"]["id"]
            .as_str()
            .or_else(|| data["review"]["ticket_id"].as_str())
            .or_else(|| data["case"]["ticket_id"].as_str())
            .or_else(|| data["ticket_id"].as_str())
            .and_then(|t| crate::ids::TicketId::parse(t).ok())
    }

    /// An event caused by this one, in the same chain.
    pub fn caused(
        &self,
        event_type: EventType,
        occurred_at: DateTime<Utc>,
        performed_by: Option<RuleId>,
        data: serde_json::Value,
    ) -> Self {
        EventEnvelope {
            tenant_id: self.tenant_id.clone(),
            event_id: Ulid::new(),
            event_type,
            occurred_at,
            correlation_id: self.correlation_id,
            causation_id: self.event_id,
            depth: if performed_by.is_some() || self.performed_by.is_some() {
                self.depth + 1
            } else {
                self.depth
            },
            performed_by: performed_by.or(self.performed_by),
            chain_rules: {
                let mut rules = self.chain_rules.clone();
                if let Some(rule) = performed_by
                    && !rules.contains(&rule)
                {
                    rules.push(rule);
                }
                rules
            },
            data,
        }
    }
}

/// Reads the envelope out of an event as EventBridge delivers it to a target
/// (`{"detail-type": ..., "source": "closedloop", "detail": {envelope}}`).
/// `None` for anything else, such as a scheduled tick.
pub fn envelope_from_bus_event(event: &serde_json::Value) -> Option<EventEnvelope> {
    if event.get("source").and_then(|s| s.as_str()) != Some(EVENT_SOURCE) {
        return None;
    }
    serde_json::from_value(event.get("detail")?.clone()).ok()
}

/// The EventBridge event a target receives for `envelope` (used by the local bus so handlers
/// see exactly what Lambda gives them).
pub fn bus_event(envelope: &EventEnvelope) -> serde_json::Value {
    let mut event = bus_event_head(envelope);
    event["detail"] = serde_json::to_value(envelope).expect("envelopes serialise");
    event
}

/// The bus event without its `detail`: enough to match patterns that do not look inside it,
/// without copying the payload.
pub fn bus_event_head(envelope: &EventEnvelope) -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": envelope.event_id.to_string(),
        "detail-type": envelope.event_type.as_str(),
        "source": EVENT_SOURCE,
        "time": envelope.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "resources": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `to_json_with_data` writes every field the envelope's own serialisation writes.
    #[test]
    fn an_envelope_with_typed_data_reads_back_as_the_envelope() {
        #[derive(Serialize)]
        struct Payload {
            review: &'static str,
            previous_rating: Option<u8>,
        }
        let root = EventEnvelope::new_root(
            TenantId::parse("acme").unwrap(),
            EventType::ReviewRecorded,
            Utc::now(),
            serde_json::Value::Null,
        );
        let caused = root.caused(
            EventType::ActionRequested,
            Utc::now(),
            Some(RuleId::new()),
            serde_json::Value::Null,
        );
        for envelope in [root, caused] {
            let payload = Payload {
                review: "r",
                previous_rating: None,
            };
            let written = envelope.to_json_with_data(&payload);
            let expected = EventEnvelope {
                data: serde_json::to_value(&payload).unwrap(),
                ..envelope.clone()
            };
            let as_value: serde_json::Value = serde_json::from_str(&written).unwrap();
            assert_eq!(as_value, serde_json::to_value(&expected).unwrap());
            assert_eq!(
                serde_json::from_str::<EventEnvelope>(&written).unwrap(),
                expected
            );
        }
    }
}
