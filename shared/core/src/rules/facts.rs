//! The facts a rule's conditions read: one value (or none) per field, taken from the event, the
//! ticket snapshot, the account and the tenant's clock. Built once per event; the simulation
//! stores them with the event, so a replay sees what the live engine saw.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::{Map, Value as Json, json};

use super::model::{Field, WEEKDAYS};
use crate::domain::{Rating, Review, TicketSnapshot};
use crate::event::EventEnvelope;

/// A field's value. Text keeps what was written and a lower-cased copy to compare with.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    Text {
        original: String,
        lower: String,
    },
    Number(f64),
    Bool(bool),
    /// Tags, or the agent ids whose working hours include the event's time; lower-cased.
    List(Vec<String>),
}

impl Fact {
    pub fn text(s: &str) -> Fact {
        let original = s.trim().to_string();
        Fact::Text {
            lower: original.to_lowercase(),
            original,
        }
    }
    pub fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> Fact {
        Fact::List(
            items
                .into_iter()
                .map(|t| t.trim().to_lowercase())
                .filter(|t| !t.is_empty())
                .collect(),
        )
    }
    fn to_json(&self) -> Json {
        match self {
            Fact::Text { original, .. } => json!(original),
            Fact::Number(n) => json!(n),
            Fact::Bool(b) => json!(b),
            Fact::List(v) => json!(v),
        }
    }
}

/// What the rules engine knows about one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    values: Vec<Option<Fact>>,
}

impl Default for Facts {
    fn default() -> Self {
        Facts {
            values: vec![None; Field::COUNT],
        }
    }
}

/// What the event alone does not say; the `rules` function looks it up (only what some rule
/// of the trigger reads).
#[derive(Debug, Clone, Default)]
pub struct FactContext<'a> {
    /// The ticket, when the event names one but carries no snapshot (review and case events).
    pub ticket: Option<&'a TicketSnapshot>,
    pub time_zone: Option<chrono_tz::Tz>,
    /// NPS scores up to this are detractors.
    pub detractor_max_score: u8,
    pub account_flagged_detractor: Option<bool>,
    pub within_business_hours: Option<bool>,
    /// Agents whose working hours include the event's time.
    pub agents_in_working_hours: Option<Vec<String>>,
}

impl Facts {
    pub fn get(&self, field: Field) -> Option<&Fact> {
        self.values[field.index()].as_ref()
    }
    pub fn set(&mut self, field: Field, fact: Option<Fact>) {
        self.values[field.index()] = fact;
    }

    /// The facts of an event, as of `at` (the event's time for events; the sweep's for the
    /// hourly time-based rules).
    pub fn from_event(event: &EventEnvelope, at: DateTime<Utc>, ctx: &FactContext<'_>) -> Facts {
        let data = &event.data;
        let review: Option<Review> = serde_json::from_value(data["review"].clone()).ok();
        let own_ticket: Option<TicketSnapshot> =
            serde_json::from_value(data["ticket"].clone()).ok();
        let ticket = own_ticket.as_ref().or(ctx.ticket);
        let mut facts = Facts::of_ticket(ticket, at, ctx);
        if let Some(review) = &review {
            facts.add_review(review, ctx.detractor_max_score);
        }
        let message = &data["message"];
        if let Some(body) = message["body"].as_str() {
            facts.set(Field::MessageBody, Some(Fact::text(body)));
        }
        if let Some(from) = message["from"].as_str() {
            facts.set(Field::SenderEmail, Some(Fact::text(from)));
        }
        if let Some(tag) = data["tag"].as_str() {
            facts.set(Field::EventTag, Some(Fact::text(tag)));
        }
        if facts.get(Field::Agent).is_none()
            && let Some(assignee) = data["case"]["assignee"].as_str()
        {
            facts.set(Field::Agent, Some(Fact::text(assignee)));
        }
        facts
    }

    /// The facts of a ticket alone (the hourly time-based rules read open tickets this way).
    pub fn of_ticket(
        ticket: Option<&TicketSnapshot>,
        at: DateTime<Utc>,
        ctx: &FactContext<'_>,
    ) -> Facts {
        let mut f = Facts::default();
        if let Some(t) = ticket {
            let text = |v: &Option<String>| v.as_deref().map(Fact::text);
            f.set(Field::TicketChannel, text(&t.channel));
            f.set(Field::TicketType, text(&t.ticket_type));
            f.set(Field::TicketStatus, Some(Fact::text(&t.status)));
            f.set(Field::TicketInbox, text(&t.inbox));
            f.set(Field::TicketInboxGroup, text(&t.inbox_group));
            f.set(Field::TicketIntegration, text(&t.integration));
            f.set(Field::TicketSubject, Some(Fact::text(&t.subject)));
            f.set(
                Field::TicketTags,
                Some(Fact::list(t.tags.iter().map(String::as_str))),
            );
            f.set(Field::CustomerName, Some(Fact::text(&t.contact.name)));
            f.set(
                Field::SenderEmail,
                Some(Fact::text(t.contact.email.as_str())),
            );
            f.set(
                Field::Agent,
                t.agent.as_ref().map(|a| Fact::text(a.id.as_str())),
            );
            f.set(
                Field::Account,
                t.contact
                    .account
                    .as_ref()
                    .map(|a| Fact::text(a.id.as_str())),
            );
            let hours = |since: DateTime<Utc>| {
                Fact::Number(((at - since).num_seconds().max(0) as f64) / 3600.0)
            };
            f.set(Field::TicketAgeHours, t.created_at.map(hours));
            f.set(
                Field::HoursSinceCustomerReply,
                t.last_customer_message_at.map(hours),
            );
            f.set(Field::TicketAnswered, t.answered.map(Fact::Bool));
        }
        f.add_time(at, ctx);
        f
    }

    fn add_review(&mut self, review: &Review, detractor_max: u8) {
        match review.rating {
            Rating::Csat(v) => self.set(Field::RatingCsat, Some(Fact::text(v.as_str()))),
            Rating::Nps(score) => {
                self.set(Field::RatingNps, Some(Fact::Number(score.value().into())));
                let band = match score.band(detractor_max) {
                    crate::domain::NpsBand::Detractor => "detractor",
                    crate::domain::NpsBand::Passive => "passive",
                    crate::domain::NpsBand::Promoter => "promoter",
                };
                self.set(Field::RatingNpsBand, Some(Fact::text(band)));
            }
        }
        self.set(
            Field::ReviewHasComment,
            Some(Fact::Bool(review.comment.is_some())),
        );
        self.set(
            Field::ReviewComment,
            review.comment.as_ref().map(|c| Fact::text(c.as_str())),
        );
        self.set(
            Field::ReviewTags,
            Some(Fact::list(review.tags.iter().map(String::as_str))),
        );
        self.set(
            Field::ReviewStatus,
            review.status.as_deref().map(Fact::text),
        );
        if self.get(Field::Agent).is_none() {
            self.set(
                Field::Agent,
                review.agent_id.as_ref().map(|a| Fact::text(a.as_str())),
            );
        }
        if self.get(Field::Account).is_none() {
            self.set(
                Field::Account,
                review.account_id.as_ref().map(|a| Fact::text(a.as_str())),
            );
        }
        if self.get(Field::SenderEmail).is_none()
            && let Some(email) = review
                .provider
                .as_ref()
                .and_then(|p| p.respondent_email.as_ref())
        {
            self.set(Field::SenderEmail, Some(Fact::text(email.as_str())));
        }
    }

    fn add_time(&mut self, at: DateTime<Utc>, ctx: &FactContext<'_>) {
        let local = at.with_timezone(&ctx.time_zone.unwrap_or(chrono_tz::UTC));
        let day = WEEKDAYS[local.weekday().num_days_from_monday() as usize];
        self.set(Field::Weekday, Some(Fact::text(day)));
        self.set(Field::Hour, Some(Fact::Number(local.hour().into())));
        self.set(
            Field::BusinessHours,
            ctx.within_business_hours.map(Fact::Bool),
        );
        self.set(
            Field::AgentWorkingHours,
            ctx.agents_in_working_hours
                .as_ref()
                .map(|ids| Fact::list(ids.iter().map(String::as_str))),
        );
        self.set(
            Field::AccountFlaggedDetractor,
            ctx.account_flagged_detractor.map(Fact::Bool),
        );
    }

    /// The facts as `{field: value}`, for the audit trail and the simulation's event history.
    pub fn to_json(&self) -> Json {
        let mut map = Map::new();
        for field in Field::ALL {
            if let Some(fact) = self.get(*field) {
                map.insert(field.as_str().to_string(), fact.to_json());
            }
        }
        Json::Object(map)
    }

    /// Reads back [`Facts::to_json`]; values of the wrong shape are left unset.
    pub fn from_json(json: &Json) -> Facts {
        let mut facts = Facts::default();
        let Some(map) = json.as_object() else {
            return facts;
        };
        for (name, value) in map {
            let Some(field) = Field::parse(name) else {
                continue;
            };
            let fact = match value {
                Json::String(s) => Some(Fact::text(s)),
                Json::Number(n) => n.as_f64().map(Fact::Number),
                Json::Bool(b) => Some(Fact::Bool(*b)),
                Json::Array(items) => Some(Fact::list(items.iter().filter_map(|i| i.as_str()))),
                _ => None,
            };
            facts.set(field, fact);
        }
        facts
    }
}
