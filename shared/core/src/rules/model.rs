//! The rule model as admins write it: a trigger, conditions in an all/any group (groups nest one
//! level), and actions run in order. `docs/rules.md` is the reference for the JSON shape.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Email;
use crate::event::EventType;
use crate::ids::RuleId;

/// When a rule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A review (CSAT or NPS) is received, once its change window has passed.
    ReviewReceived,
    /// An NPS response is received (NPS reviews only).
    NpsResponseReceived,
    /// A tag is added to a review.
    ReviewTagAdded,
    /// A review's status changes (for example to "done").
    ReviewStatusChanged,
    TicketCreated,
    TicketClosed,
    /// The first message from the customer on a ticket.
    CustomerFirstMessage,
    /// Every message from the customer.
    CustomerMessage,
    TicketTagAdded,
    /// The helpdesk set a ticket's status.
    TicketStatusSet,
    ReturnCreated,
    CaseOpened,
    CaseClosed,
    CaseSlaBreached,
    /// Evaluated every hour over open tickets; fires at most once per ticket.
    TimeBased,
}

impl Trigger {
    pub const ALL: [Trigger; 15] = [
        Trigger::ReviewReceived,
        Trigger::NpsResponseReceived,
        Trigger::ReviewTagAdded,
        Trigger::ReviewStatusChanged,
        Trigger::TicketCreated,
        Trigger::TicketClosed,
        Trigger::CustomerFirstMessage,
        Trigger::CustomerMessage,
        Trigger::TicketTagAdded,
        Trigger::TicketStatusSet,
        Trigger::ReturnCreated,
        Trigger::CaseOpened,
        Trigger::CaseClosed,
        Trigger::CaseSlaBreached,
        Trigger::TimeBased,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::ReviewReceived => "review_received",
            Trigger::NpsResponseReceived => "nps_response_received",
            Trigger::ReviewTagAdded => "review_tag_added",
            Trigger::ReviewStatusChanged => "review_status_changed",
            Trigger::TicketCreated => "ticket_created",
            Trigger::TicketClosed => "ticket_closed",
            Trigger::CustomerFirstMessage => "customer_first_message",
            Trigger::CustomerMessage => "customer_message",
            Trigger::TicketTagAdded => "ticket_tag_added",
            Trigger::TicketStatusSet => "ticket_status_set",
            Trigger::ReturnCreated => "return_created",
            Trigger::CaseOpened => "case_opened",
            Trigger::CaseClosed => "case_closed",
            Trigger::CaseSlaBreached => "case_sla_breached",
            Trigger::TimeBased => "time_based",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The event type that fires this trigger (`None` for the hourly time-based trigger).
    pub fn event_type(self) -> Option<EventType> {
        use EventType as E;
        Some(match self {
            Trigger::ReviewReceived | Trigger::NpsResponseReceived => E::ReviewReceived,
            Trigger::ReviewTagAdded => E::ReviewTagAdded,
            Trigger::ReviewStatusChanged => E::ReviewStatusChanged,
            Trigger::TicketCreated => E::TicketCreated,
            Trigger::TicketClosed => E::TicketClosed,
            Trigger::CustomerFirstMessage | Trigger::CustomerMessage => E::TicketCustomerMessage,
            Trigger::TicketTagAdded => E::TicketTagAdded,
            Trigger::TicketStatusSet => E::TicketStatusChanged,
            Trigger::ReturnCreated => E::TicketReturnCreated,
            Trigger::CaseOpened => E::CaseOpened,
            Trigger::CaseClosed => E::CaseClosed,
            Trigger::CaseSlaBreached => E::CaseSlaBreached,
            Trigger::TimeBased => return None,
        })
    }

    /// The triggers an event fires. A review fires `nps_response_received` only when it is an
    /// NPS answer; a customer message fires `customer_first_message` only when it is the first.
    pub fn fired_by(event: &crate::event::EventEnvelope) -> Vec<Trigger> {
        let data = &event.data;
        Trigger::ALL
            .into_iter()
            .filter(|t| t.event_type() == Some(event.event_type))
            .filter(|t| match t {
                Trigger::NpsResponseReceived => {
                    data["review"]["rating"]["kind"].as_str() == Some("nps")
                }
                Trigger::CustomerFirstMessage => data["message"]["first"].as_bool() == Some(true),
                _ => true,
            })
            .collect()
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a field's value is, which decides the operators it takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldKind {
    /// Free text, compared case-insensitively.
    Text,
    Number {
        min: f64,
        max: f64,
        whole: bool,
    },
    Bool,
    /// One of a fixed list of values.
    Choice(&'static [&'static str]),
    /// A set of tags.
    Tags,
    /// An id of the helpdesk's (agent, account).
    Id,
    /// Agent ids: true for the agents whose working hours include the event's time.
    AgentHours,
}

macro_rules! fields {
    ($($variant:ident = $name:literal : $kind:expr, $doc:literal;)*) => {
        /// A condition's field: what of the event, its ticket, review, account or time it reads.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Field { $(#[doc = $doc] $variant,)* }

        impl Field {
            pub const ALL: &'static [Field] = &[$(Field::$variant,)*];
            pub const COUNT: usize = Field::ALL.len();
            pub fn as_str(self) -> &'static str {
                match self { $(Field::$variant => $name,)* }
            }
            pub fn kind(self) -> FieldKind {
                match self { $(Field::$variant => $kind,)* }
            }
            pub fn description(self) -> &'static str {
                match self { $(Field::$variant => $doc,)* }
            }
        }
    };
}

pub const CSAT_VALUES: &[&str] = &["positive", "neutral", "negative"];
pub const NPS_BANDS: &[&str] = &["detractor", "passive", "promoter"];
pub const WEEKDAYS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

const SCORE: FieldKind = FieldKind::Number {
    min: 0.0,
    max: 10.0,
    whole: true,
};
const HOUR: FieldKind = FieldKind::Number {
    min: 0.0,
    max: 23.0,
    whole: true,
};
const HOURS: FieldKind = FieldKind::Number {
    min: 0.0,
    max: 100_000.0,
    whole: false,
};

fields! {
    RatingCsat = "rating.csat": FieldKind::Choice(CSAT_VALUES), "the CSAT answer: positive, neutral or negative";
    RatingNps = "rating.nps": SCORE, "the NPS score, 0 to 10";
    RatingNpsBand = "rating.nps_band": FieldKind::Choice(NPS_BANDS), "the NPS band (the detractor threshold is the tenant's setting)";
    ReviewHasComment = "review.has_comment": FieldKind::Bool, "whether the review has a comment";
    ReviewComment = "review.comment": FieldKind::Text, "the review's comment";
    ReviewTags = "review.tags": FieldKind::Tags, "the review's tags";
    ReviewStatus = "review.status": FieldKind::Text, "the review's status";
    TicketChannel = "ticket.channel": FieldKind::Text, "the ticket's source channel (email, chat, phone, ...)";
    TicketType = "ticket.type": FieldKind::Text, "the ticket's type";
    TicketStatus = "ticket.status": FieldKind::Text, "the ticket's status";
    TicketInbox = "ticket.inbox": FieldKind::Text, "the ticket's inbox (queue, board)";
    TicketInboxGroup = "ticket.inbox_group": FieldKind::Text, "the group of the ticket's inbox";
    TicketIntegration = "ticket.integration": FieldKind::Text, "the helpdesk integration the ticket came through";
    TicketSubject = "ticket.subject": FieldKind::Text, "the ticket's subject";
    TicketTags = "ticket.tags": FieldKind::Tags, "the ticket's tags";
    EventTag = "event.tag": FieldKind::Text, "the tag just added (tag triggers)";
    CustomerName = "customer.name": FieldKind::Text, "the customer's (contact's) name";
    SenderEmail = "sender.email": FieldKind::Text, "the sender's email address (the message's, else the contact's)";
    MessageBody = "message.body": FieldKind::Text, "the new message's text";
    Agent = "agent": FieldKind::Id, "the ticket's (or review's) agent id";
    Account = "account": FieldKind::Id, "the customer account id";
    AccountFlaggedDetractor = "account.flagged_detractor": FieldKind::Bool, "whether the customer account's latest NPS answer is a detractor";
    Weekday = "time.weekday": FieldKind::Choice(WEEKDAYS), "the day of the week, in the tenant's time zone";
    Hour = "time.hour": HOUR, "the hour of the day (0-23), in the tenant's time zone";
    BusinessHours = "time.business_hours": FieldKind::Bool, "whether it is within the tenant's business hours";
    AgentWorkingHours = "time.agent_working_hours": FieldKind::AgentHours, "whether it is within the named agent's working hours (value: the agent id)";
    TicketAgeHours = "ticket.age_hours": HOURS, "hours since the ticket was created";
    HoursSinceCustomerReply = "ticket.hours_since_customer_reply": HOURS, "hours since the customer's last message";
    TicketAnswered = "ticket.answered": FieldKind::Bool, "whether an agent has answered the ticket";
}

impl Field {
    pub fn parse(s: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.as_str() == s)
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A condition's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Is,
    IsNot,
    Contains,
    NotContains,
    GreaterThan,
    LessThan,
    Between,
    IsAnyOf,
    IsSet,
    IsNotSet,
    /// A regular expression (linear-time engine, size-limited).
    Matches,
}

impl Op {
    pub const ALL: [Op; 11] = [
        Op::Is,
        Op::IsNot,
        Op::Contains,
        Op::NotContains,
        Op::GreaterThan,
        Op::LessThan,
        Op::Between,
        Op::IsAnyOf,
        Op::IsSet,
        Op::IsNotSet,
        Op::Matches,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Is => "is",
            Op::IsNot => "is_not",
            Op::Contains => "contains",
            Op::NotContains => "not_contains",
            Op::GreaterThan => "greater_than",
            Op::LessThan => "less_than",
            Op::Between => "between",
            Op::IsAnyOf => "is_any_of",
            Op::IsSet => "is_set",
            Op::IsNotSet => "is_not_set",
            Op::Matches => "matches",
        }
    }
    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|o| o.as_str() == s)
    }
    /// The operators a field of this kind takes.
    pub fn allowed(kind: FieldKind) -> &'static [Op] {
        match kind {
            FieldKind::Text => &[
                Op::Is,
                Op::IsNot,
                Op::Contains,
                Op::NotContains,
                Op::IsAnyOf,
                Op::Matches,
                Op::IsSet,
                Op::IsNotSet,
            ],
            FieldKind::Number { .. } => &[
                Op::Is,
                Op::IsNot,
                Op::GreaterThan,
                Op::LessThan,
                Op::Between,
                Op::IsAnyOf,
                Op::IsSet,
                Op::IsNotSet,
            ],
            FieldKind::Bool => &[Op::Is, Op::IsNot],
            FieldKind::Choice(_) | FieldKind::Id => {
                &[Op::Is, Op::IsNot, Op::IsAnyOf, Op::IsSet, Op::IsNotSet]
            }
            FieldKind::Tags => &[
                Op::Contains,
                Op::NotContains,
                Op::IsAnyOf,
                Op::IsSet,
                Op::IsNotSet,
            ],
            FieldKind::AgentHours => &[Op::Is, Op::IsNot],
        }
    }
}

/// A condition's operand, checked against its field and operator when the rule is saved.
/// Text is kept as written; the engine compares it case-insensitively.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    None,
    Text(String),
    Texts(Vec<String>),
    Number(f64),
    Numbers(Vec<f64>),
    Range(f64, f64),
    Bool(bool),
}

/// One test of one field.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: Field,
    pub op: Op,
    pub value: Operand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combinator {
    /// Every item must hold.
    All,
    /// At least one item must hold.
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConditionNode {
    Condition(Condition),
    Group(ConditionGroup),
}

/// An all/any group. The rule's top group may hold groups; those hold only conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionGroup {
    pub combinator: Combinator,
    pub items: Vec<ConditionNode>,
}

impl Default for ConditionGroup {
    /// No conditions: the rule matches every event of its trigger.
    fn default() -> Self {
        ConditionGroup {
            combinator: Combinator::All,
            items: Vec::new(),
        }
    }
}

/// Who a case opened by a rule is assigned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CaseAssignee {
    /// A named agent.
    Agent { agent_id: String },
    /// The ticket's (or review's) agent.
    TicketAgent,
    /// The agent id found at a path of the event's data, such as `ticket.custom.owner_id`.
    FromField { path: String },
    /// Nobody yet.
    Unassigned,
}

/// What a rule does when it matches. Text fields are templates over the event (customer,
/// rating, comment, ticket link, agent); `docs/rules.md` lists the variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Email fixed addresses, and the ticket's agent when `to_ticket_agent` is set. Agents whose
    /// email notifications are off are skipped (and the audit trail says so).
    SendEmail {
        #[serde(default)]
        to: Vec<Email>,
        #[serde(default)]
        to_ticket_agent: bool,
        subject: String,
        body: String,
    },
    /// Email the ticket's agent(s) only.
    EmailTicketAgents {
        subject: String,
        body: String,
    },
    /// An internal (private) note on the ticket.
    AddInternalNote {
        body: String,
    },
    ChangeTicketType {
        ticket_type: String,
    },
    CreateTicket {
        subject: String,
        body: String,
    },
    ReopenTicket {},
    SetTicketStatus {
        status: String,
    },
    AssignAgent {
        agent_id: String,
    },
    AddTicketTag {
        tag: String,
    },
    /// A public reply to the customer through the helpdesk.
    SendCustomerMessage {
        body: String,
    },
    AddReviewTag {
        tag: String,
    },
    SetReviewStatus {
        status: String,
    },
    OpenCase {
        #[serde(default = "unassigned")]
        assignee: CaseAssignee,
    },
    CloseCase {
        resolution: String,
    },
    /// Sends (or re-sends) a rating request for the ticket.
    SendRatingRequest {},
    /// POSTs the event, signed like closedloop's generic webhooks, to a URL. The secret is
    /// write-only: the API shows `secret_set`, events carry none, and an update that leaves it
    /// out keeps the one stored for the same URL.
    PostWebhook {
        url: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        secret: String,
    },
}

fn unassigned() -> CaseAssignee {
    CaseAssignee::Unassigned
}

impl Action {
    /// The action without secrets, as events and the admin API carry it.
    pub fn without_secrets(&self) -> Action {
        match self {
            Action::PostWebhook { url, .. } => Action::PostWebhook {
                url: url.clone(),
                secret: String::new(),
            },
            other => other.clone(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Action::SendEmail { .. } => "send_email",
            Action::EmailTicketAgents { .. } => "email_ticket_agents",
            Action::AddInternalNote { .. } => "add_internal_note",
            Action::ChangeTicketType { .. } => "change_ticket_type",
            Action::CreateTicket { .. } => "create_ticket",
            Action::ReopenTicket {} => "reopen_ticket",
            Action::SetTicketStatus { .. } => "set_ticket_status",
            Action::AssignAgent { .. } => "assign_agent",
            Action::AddTicketTag { .. } => "add_ticket_tag",
            Action::SendCustomerMessage { .. } => "send_customer_message",
            Action::AddReviewTag { .. } => "add_review_tag",
            Action::SetReviewStatus { .. } => "set_review_status",
            Action::OpenCase { .. } => "open_case",
            Action::CloseCase { .. } => "close_case",
            Action::SendRatingRequest {} => "send_rating_request",
            Action::PostWebhook { .. } => "post_webhook",
        }
    }

    /// The helpdesk operation this action needs from the tenant's connector, if any.
    pub fn helpdesk_operation(&self) -> Option<crate::helpdesk::HelpdeskOperation> {
        use crate::helpdesk::HelpdeskOperation as Op;
        Some(match self {
            Action::AddInternalNote { .. } => Op::AddInternalNote,
            Action::ChangeTicketType { .. } => Op::ChangeTicketType,
            Action::CreateTicket { .. } => Op::CreateTicket,
            Action::ReopenTicket {} => Op::ReopenTicket,
            Action::SetTicketStatus { .. } => Op::SetTicketStatus,
            Action::AssignAgent { .. } => Op::AssignAgent,
            Action::AddTicketTag { .. } => Op::AddTag,
            Action::SendCustomerMessage { .. } => Op::PublicReply,
            _ => return None,
        })
    }

    /// True for actions that change the ticket in the helpdesk (through the connector).
    pub fn is_helpdesk_change(&self) -> bool {
        matches!(
            self,
            Action::AddInternalNote { .. }
                | Action::ChangeTicketType { .. }
                | Action::CreateTicket { .. }
                | Action::ReopenTicket {}
                | Action::SetTicketStatus { .. }
                | Action::AssignAgent { .. }
                | Action::AddTicketTag { .. }
                | Action::SendCustomerMessage { .. }
        )
    }
}

/// An automation rule, as stored and as the admin API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: RuleId,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub trigger: Trigger,
    pub conditions: ConditionGroup,
    pub actions: Vec<Action>,
    /// Starts at 1; every update adds one. An update naming an older version is refused.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
