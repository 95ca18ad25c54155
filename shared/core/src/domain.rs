//! Domain types. Each validates on construction, so a value that exists is a valid one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, AgentId, CaseId, ContactId, SurveyRequestId, TenantId, TicketId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("'{0}' is not a valid email address")]
    InvalidEmail(String),
    #[error("an NPS score is a whole number from 0 to 10, got '{0}'")]
    InvalidNpsScore(String),
    #[error("a CSAT rating is one of positive, neutral or negative, got '{0}'")]
    InvalidCsat(String),
    #[error("a comment may hold at most {max} characters, got {got}")]
    CommentTooLong { max: usize, got: usize },
    #[error("'{0}' is not a known IANA time zone (for example Europe/Warsaw)")]
    InvalidTimeZone(String),
    #[error("{field} {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// An email address: one '@', a dotted domain, no spaces or angle brackets, at most 254 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let s = s.trim();
        Self::check(s)?;
        Ok(Email(s.to_string()))
    }
    /// Whether a trimmed address is valid.
    fn check(s: &str) -> Result<(), DomainError> {
        let bad = || DomainError::InvalidEmail(s.chars().take(80).collect());
        if s.len() > 254
            || s.chars()
                .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
        {
            return Err(bad());
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || local.len() > 64
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(bad());
        }
        Ok(())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = DomainError;
    /// Keeps the string it checked when there is nothing to trim (as when reading a record).
    fn try_from(s: String) -> Result<Self, DomainError> {
        if s.trim().len() != s.len() {
            return Email::parse(&s);
        }
        Email::check(&s)?;
        Ok(Email(s))
    }
}
impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}
impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which question a tenant asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SurveyKind {
    Csat,
    Nps,
}

/// NPS 0-10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct NpsScore(u8);

impl NpsScore {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        s.trim()
            .parse::<u8>()
            .ok()
            .and_then(|n| Self::new(n).ok())
            .ok_or_else(|| DomainError::InvalidNpsScore(s.chars().take(20).collect()))
    }
    pub fn new(n: u8) -> Result<Self, DomainError> {
        if n <= 10 {
            Ok(NpsScore(n))
        } else {
            Err(DomainError::InvalidNpsScore(n.to_string()))
        }
    }
    pub fn value(self) -> u8 {
        self.0
    }
    /// The band of this score; `detractor_max` is the tenant's threshold (6 by default).
    pub fn band(self, detractor_max: u8) -> NpsBand {
        match self.0 {
            n if n <= detractor_max => NpsBand::Detractor,
            9 | 10 => NpsBand::Promoter,
            _ => NpsBand::Passive,
        }
    }
}

impl TryFrom<u8> for NpsScore {
    type Error = DomainError;
    fn try_from(n: u8) -> Result<Self, DomainError> {
        NpsScore::new(n)
    }
}
impl From<NpsScore> for u8 {
    fn from(s: NpsScore) -> u8 {
        s.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NpsBand {
    Detractor,
    Passive,
    Promoter,
}

/// CSAT: three faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CsatValue {
    Positive,
    Neutral,
    Negative,
}

impl CsatValue {
    pub const ALL: [CsatValue; 3] = [CsatValue::Positive, CsatValue::Neutral, CsatValue::Negative];
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "positive" => Ok(CsatValue::Positive),
            "neutral" => Ok(CsatValue::Neutral),
            "negative" => Ok(CsatValue::Negative),
            _ => Err(DomainError::InvalidCsat(s.chars().take(20).collect())),
        }
    }
    pub const fn as_str(self) -> &'static str {
        match self {
            CsatValue::Positive => "positive",
            CsatValue::Neutral => "neutral",
            CsatValue::Negative => "negative",
        }
    }
}

/// A rating: CSAT or NPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum Rating {
    Csat(CsatValue),
    Nps(NpsScore),
}

impl Rating {
    /// Parses the value of a rating of the given kind, as it appears in a link or a form.
    pub fn parse(kind: SurveyKind, value: &str) -> Result<Self, DomainError> {
        match kind {
            SurveyKind::Csat => CsatValue::parse(value).map(Rating::Csat),
            SurveyKind::Nps => NpsScore::parse(value).map(Rating::Nps),
        }
    }
    pub fn kind(self) -> SurveyKind {
        match self {
            Rating::Csat(_) => SurveyKind::Csat,
            Rating::Nps(_) => SurveyKind::Nps,
        }
    }
    /// The value as it appears in links and reports ("positive", "7").
    pub fn value_string(self) -> String {
        match self {
            Rating::Csat(v) => v.as_str().to_string(),
            Rating::Nps(s) => s.value().to_string(),
        }
    }
}

/// A customer's free-text comment: trimmed, at most 5,000 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Comment(String);

impl Comment {
    pub const MAX_CHARS: usize = 5000;
    /// `None` for an empty comment.
    pub fn parse(s: &str) -> Result<Option<Self>, DomainError> {
        let t = s.trim();
        let n = t.chars().count();
        if n > Self::MAX_CHARS {
            return Err(DomainError::CommentTooLong {
                max: Self::MAX_CHARS,
                got: n,
            });
        }
        Ok((!t.is_empty()).then(|| Comment(t.to_string())))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Comment {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        Comment::parse(&s)?.ok_or(DomainError::Invalid {
            field: "comment",
            reason: "must not be empty".into(),
        })
    }
}
impl From<Comment> for String {
    fn from(c: Comment) -> String {
        c.0
    }
}

/// A validated IANA time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZone(chrono_tz::Tz);

impl TimeZone {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        s.parse::<chrono_tz::Tz>()
            .map(TimeZone)
            .map_err(|_| DomainError::InvalidTimeZone(s.chars().take(60).collect()))
    }
    pub fn tz(self) -> chrono_tz::Tz {
        self.0
    }
}
impl TryFrom<String> for TimeZone {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        TimeZone::parse(&s)
    }
}
impl From<TimeZone> for String {
    fn from(t: TimeZone) -> String {
        t.0.name().to_string()
    }
}

/// A tenant of closedloop: one helpdesk's customer-feedback loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// The settings a helpdesk admin edits. Every field is validated by its type or `validate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    pub time_zone: TimeZone,
    pub survey_kind: SurveyKind,
    /// Hours between a ticket's close and its rating request; 0 sends at once.
    pub survey_delay_hours: u32,
    /// Minutes a rating may still be changed before `review.received` fires; 0 fires at once.
    pub change_window_minutes: u32,
    /// NPS scores up to this one are detractors (6 by default).
    pub detractor_max_score: u8,
    /// The brand shown on rating pages and in emails.
    pub brand_name: String,
    /// `#rrggbb`.
    pub brand_color: String,
    /// On: once recorded, a rating cannot be changed from the public page (comments still can).
    #[serde(default)]
    pub forbid_rating_change: bool,
    /// The tenant's business hours (rules' `time.business_hours`; case SLAs). None: not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_hours: Option<crate::calendar::BusinessCalendar>,
    /// Who gets the detractor sweep's digest email (none: no digest is sent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digest_recipients: Vec<Email>,
}

impl Default for TenantSettings {
    fn default() -> Self {
        TenantSettings {
            time_zone: TimeZone(chrono_tz::UTC),
            survey_kind: SurveyKind::Csat,
            survey_delay_hours: 0,
            change_window_minutes: 5,
            detractor_max_score: 6,
            brand_name: "Support".into(),
            brand_color: "#2563eb".into(),
            forbid_rating_change: false,
            business_hours: None,
            digest_recipients: Vec::new(),
        }
    }
}

impl TenantSettings {
    pub const MAX_SURVEY_DELAY_HOURS: u32 = 24 * 30;
    pub const MAX_CHANGE_WINDOW_MINUTES: u32 = 24 * 60;
    pub const MAX_DIGEST_RECIPIENTS: usize = 20;

    /// Checks the rules no type expresses. Errors name the field.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.survey_delay_hours > Self::MAX_SURVEY_DELAY_HOURS {
            return Err(DomainError::Invalid {
                field: "survey_delay_hours",
                reason: format!("must be at most {} (30 days)", Self::MAX_SURVEY_DELAY_HOURS),
            });
        }
        if self.change_window_minutes > Self::MAX_CHANGE_WINDOW_MINUTES {
            return Err(DomainError::Invalid {
                field: "change_window_minutes",
                reason: format!(
                    "must be at most {} (one day)",
                    Self::MAX_CHANGE_WINDOW_MINUTES
                ),
            });
        }
        if !(6..=7).contains(&self.detractor_max_score) {
            return Err(DomainError::Invalid {
                field: "detractor_max_score",
                reason: "must be 6 (scores 0-6 are detractors) or 7 ('7 or less')".into(),
            });
        }
        if self.digest_recipients.len() > Self::MAX_DIGEST_RECIPIENTS {
            return Err(DomainError::Invalid {
                field: "digest_recipients",
                reason: format!("may hold at most {} addresses", Self::MAX_DIGEST_RECIPIENTS),
            });
        }
        let name_len = self.brand_name.trim().chars().count();
        if name_len == 0 || name_len > 80 {
            return Err(DomainError::Invalid {
                field: "brand_name",
                reason: "must be 1 to 80 characters".into(),
            });
        }
        let c = self.brand_color.as_bytes();
        if c.len() != 7 || c[0] != b'#' || !c[1..].iter().all(u8::is_ascii_hexdigit) {
            return Err(DomainError::Invalid {
                field: "brand_color",
                reason: "must be a colour like #2563eb".into(),
            });
        }
        Ok(())
    }
}

/// A helpdesk agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub name: String,
    pub email: Email,
    /// Off: the agent gets no notification emails (sends are recorded as suppressed).
    pub email_notifications: bool,
    /// The agent's own working hours (rules' `time.agent_working_hours`), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_hours: Option<crate::calendar::BusinessCalendar>,
}

/// A customer account (company) in the helpdesk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerAccount {
    pub id: AccountId,
    pub name: String,
}

/// A person at a customer account who raised tickets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub id: ContactId,
    pub name: String,
    pub email: Email,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<CustomerAccount>,
}

/// What closedloop knows of a ticket, as the helpdesk last told it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketSnapshot {
    pub id: TicketId,
    pub subject: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Agent>,
    pub contact: Contact,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_type: Option<String>,
    /// The queue, board or inbox the ticket sits in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox_group: Option<String>,
    /// The helpdesk integration (mailbox, widget, API client) it came through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_customer_message_at: Option<DateTime<Utc>>,
    /// Whether an agent has replied to the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered: Option<bool>,
    #[serde(with = "crate::rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl TicketSnapshot {
    pub fn validate(&self) -> Result<(), DomainError> {
        let n = self.subject.chars().count();
        if n > 500 {
            return Err(DomainError::Invalid {
                field: "ticket.subject",
                reason: "must be at most 500 characters".into(),
            });
        }
        if self.status.is_empty() || self.status.len() > 64 {
            return Err(DomainError::Invalid {
                field: "ticket.status",
                reason: "must be 1 to 64 characters".into(),
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SurveyStatus {
    /// Waiting for its send time.
    Scheduled,
    Sent,
    /// Not sent: the ticket reopened, the contact unsubscribed, or it was superseded.
    Cancelled,
}

/// One rating request for one ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurveyRequest {
    pub id: SurveyRequestId,
    pub tenant_id: TenantId,
    pub kind: SurveyKind,
    pub ticket: TicketSnapshot,
    // Read on every click (chrono's times, without chrono's parser).
    #[serde(with = "crate::rfc3339")]
    pub due_at: DateTime<Utc>,
    pub status: SurveyStatus,
    #[serde(with = "crate::rfc3339")]
    pub created_at: DateTime<Utc>,
}

/// A customer's answer to a survey request (or a survey provider's response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub tenant_id: TenantId,
    /// Ours, for rating-link reviews; none for a survey provider's response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survey_request_id: Option<SurveyRequestId>,
    /// None when a provider's response names no ticket and its respondent matched no contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<TicketId>,
    pub rating: Rating,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<Comment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// None for a provider's response from a respondent we could not match to a contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<ContactId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<AccountId>,
    // Written twice and read on every click: chrono's text, without chrono's formatter.
    #[serde(with = "crate::rfc3339")]
    pub recorded_at: DateTime<Utc>,
    #[serde(with = "crate::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// Set when the review came from a survey provider's webhook rather than a rating link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderResponse>,
    /// Tags staff or rules added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// A workflow status staff or rules set (for example "done").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Where a survey provider's response came from, and who answered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderResponse {
    /// The webhook source (`delighted`, `typeform`, `asknicely`).
    pub source: String,
    /// The provider's id of the response.
    pub response_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respondent_email: Option<Email>,
    /// When the respondent answered (or last changed the answer), by the provider's clock.
    pub answered_at: DateTime<Utc>,
}

pub use crate::rules::model::{Action, CaseAssignee, Rule, Trigger};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Open,
    Closed,
}

/// What opened a case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseOrigin {
    /// A rule's `open_case` action.
    #[default]
    Rule,
    /// The customer wrote again on a ticket whose review's case had been closed.
    CustomerReply,
}

/// A follow-up case opened for a review (by a rule's `open_case`, or a customer's reply after
/// its last case closed). `shared/core/src/cases.rs` holds its life cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub id: CaseId,
    pub tenant_id: TenantId,
    /// The rating-link review's survey request (none for a survey provider's response).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survey_request_id: Option<SurveyRequestId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<TicketId>,
    /// The review's reference: its survey request id, or `source:response id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<ContactId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<AccountId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<AgentId>,
    pub status: CaseStatus,
    pub opened_at: DateTime<Utc>,
    #[serde(default)]
    pub origin: CaseOrigin,
    /// The rule whose action opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_by_rule: Option<crate::ids::RuleId>,
    /// When the SLA runs out; none when the tenant's SLA was off at opening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_deadline: Option<DateTime<Utc>>,
    #[serde(default)]
    pub sla_breached: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breached_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    /// The close option's label as it was at closing (kept if the option is renamed or retired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// The close option's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution_id: Option<String>,
    /// Who closed it: `admin`, `agent:<id>`, `rule:<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
    /// Closed by its deadline (none without an SLA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_met: Option<bool>,
    /// Wall-clock seconds from opening to closing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_to_close: Option<i64>,
    /// Business-hours seconds from opening to closing, by the tenant's calendar (24/7 without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_seconds_to_close: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nps_scores_are_0_to_10_and_banded_by_the_tenant_threshold() {
        assert_eq!(NpsScore::parse("0").unwrap().value(), 0);
        assert_eq!(NpsScore::parse(" 10 ").unwrap().value(), 10);
        for bad in ["11", "-1", "7.5", "", "ten"] {
            assert!(NpsScore::parse(bad).is_err(), "{bad}");
        }
        let seven = NpsScore::new(7).unwrap();
        assert_eq!(seven.band(6), NpsBand::Passive);
        assert_eq!(seven.band(7), NpsBand::Detractor);
        assert_eq!(NpsScore::new(9).unwrap().band(6), NpsBand::Promoter);
        assert_eq!(NpsScore::new(6).unwrap().band(6), NpsBand::Detractor);
    }

    #[test]
    fn emails_must_look_like_addresses() {
        assert!(Email::parse("ann@example.com").is_ok());
        for bad in [
            "ann",
            "ann@",
            "@x.com",
            "a b@x.com",
            "a@x",
            "a@@x.com",
            "a@x..com",
            "<a@x.com>",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn comments_are_trimmed_and_bounded() {
        assert_eq!(Comment::parse("  ").unwrap(), None);
        assert_eq!(Comment::parse(" hi ").unwrap().unwrap().as_str(), "hi");
        assert!(Comment::parse(&"x".repeat(5001)).is_err());
    }

    #[test]
    fn settings_validation_names_the_field() {
        let mut s = TenantSettings::default();
        assert!(s.validate().is_ok());
        s.brand_color = "blue".into();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .starts_with("brand_color")
        );
        let json = r##"{"time_zone":"Mars/Base","survey_kind":"csat","survey_delay_hours":1,"change_window_minutes":5,"detractor_max_score":6,"brand_name":"x","brand_color":"#000000"}"##;
        assert!(
            serde_json::from_str::<TenantSettings>(json)
                .unwrap_err()
                .to_string()
                .contains("Mars/Base")
        );
    }

    #[test]
    fn reviews_stored_before_providers_existed_still_read() {
        let json = r#"{"tenant_id":"acme","survey_request_id":"01JD2Q8Y3S7W0M5V6T9B2K4N1C","ticket_id":"42","rating":{"kind":"csat","value":"positive"},"contact_id":"c1","recorded_at":"2026-11-23T10:00:00Z","updated_at":"2026-11-23T10:00:00Z"}"#;
        let review: Review = serde_json::from_str(json).unwrap();
        assert_eq!(review.ticket_id.unwrap().as_str(), "42");
        assert!(review.survey_request_id.is_some() && review.provider.is_none());
    }

    #[test]
    fn ratings_parse_per_kind() {
        assert_eq!(
            Rating::parse(SurveyKind::Csat, "negative").unwrap(),
            Rating::Csat(CsatValue::Negative)
        );
        assert!(Rating::parse(SurveyKind::Csat, "7").is_err());
        assert_eq!(
            Rating::parse(SurveyKind::Nps, "7").unwrap().value_string(),
            "7"
        );
    }
}
