//! Webhooks in: verify the sender, drop redeliveries, normalise to domain events.
//!
//! Each source has its own adapter module that reads the vendor's proof of origin from the
//! headers and turns the vendor's payload into a [`Delivery`]: a helpdesk ticket event or a
//! survey provider's response. What happens next is shared: a ticket event is written with its
//! dedupe record, ticket snapshot, contact-directory entry and outbox event in one transaction
//! ([`tickets`]); a response becomes a review the same way ([`responses`]). `docs/webhooks.md`
//! documents every source.

mod asknicely;
mod delighted;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzz;
mod generic;
mod responses;
mod tickets;
mod typeform;
mod zendesk;

use chrono::{DateTime, Utc};

use crate::domain::{Comment, DomainError, Email, Rating, TicketSnapshot};
use crate::event::EventType;
use crate::ids::{TenantId, TicketId};
use crate::signature::{Proof, SignatureError};
use crate::store::{ItemStore, StoreError};
use crate::tenancy;

pub use asknicely::SECRET_HEADER as ASKNICELY_SECRET_HEADER;
pub use delighted::{SIGNATURE_HEADER as DELIGHTED_SIGNATURE_HEADER, sign as sign_delighted};
pub use generic::SIGNATURE_HEADER;
pub use typeform::{SIGNATURE_HEADER as TYPEFORM_SIGNATURE_HEADER, sign as sign_typeform};
pub use zendesk::{
    SIGNATURE_HEADER as ZENDESK_SIGNATURE_HEADER, TIMESTAMP_HEADER as ZENDESK_TIMESTAMP_HEADER,
    sign as sign_zendesk,
};

/// Bodies above this are refused before parsing.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Deliveries are remembered this long for deduplication.
pub const DEDUPE_DAYS: i64 = 7;

/// The senders closedloop understands; the `{source}` of the webhook URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Generic,
    Zendesk,
    Delighted,
    Typeform,
    AskNicely,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::Generic,
        Source::Zendesk,
        Source::Delighted,
        Source::Typeform,
        Source::AskNicely,
    ];
    /// For messages: every known source, comma-separated.
    pub const KNOWN: &'static str = "generic, zendesk, delighted, typeform, asknicely";

    pub fn parse(s: &str) -> Option<Self> {
        Source::ALL.into_iter().find(|src| src.as_str() == s)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Generic => "generic",
            Source::Zendesk => "zendesk",
            Source::Delighted => "delighted",
            Source::Typeform => "typeform",
            Source::AskNicely => "asknicely",
        }
    }
}

/// Read access to a request's headers (names case-insensitive), so the core needs no HTTP crate.
pub trait Headers: Sync {
    fn header(&self, name: &str) -> Option<&str>;
}

impl<const N: usize> Headers for [(&str, &str); N] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("unknown webhook source '{0}'; known sources: {known}", known = Source::KNOWN)]
    UnknownSource(String),
    /// No secret for this tenant and source, or no such tenant. Worded like a mismatch, so an
    /// answer never tells whether a tenant exists.
    #[error("{}", SignatureError::Mismatch)]
    NotConfigured,
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the body is larger than the limit of {MAX_BODY_BYTES} bytes (256 KB)")]
    TooLarge(usize),
    #[error("the body is not valid: {0}")]
    BadBody(String),
    #[error("event type '{0}' is not accepted from helpdesks")]
    UnsupportedType(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IngestError {
    /// True when the sender did something wrong (4xx), false when we failed (5xx).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, IngestError::Store(_))
    }
    fn missing(field: &str) -> Self {
        IngestError::BadBody(format!("missing field `{field}`"))
    }
    fn invalid(field: &str, e: impl std::fmt::Display) -> Self {
        IngestError::BadBody(format!("{field}: {e}"))
    }
}

impl From<DomainError> for IngestError {
    fn from(e: DomainError) -> Self {
        IngestError::BadBody(e.to_string())
    }
}

#[derive(Debug, PartialEq)]
pub enum IngestOutcome {
    /// Written: the ticket event, or the review with its `review.recorded` event.
    Accepted {
        event_id: ulid::Ulid,
        event_type: EventType,
    },
    /// Seen before: nothing done.
    Duplicate,
    /// A response older than the one already recorded (a late delivery): nothing done.
    Outdated,
    /// A genuine delivery of something closedloop does not act on (named): nothing done.
    Ignored(String),
}

/// What an adapter makes of a verified delivery.
#[derive(Debug)]
enum Delivery {
    // Boxed: a ticket snapshot is large, and the enum moves through a few calls.
    Ticket(Box<TicketDelivery>),
    Response(SurveyResponse),
    Ignored(String),
}

/// A helpdesk's ticket event, normalised.
#[derive(Debug)]
struct TicketDelivery {
    delivery_id: String,
    event_type: EventType,
    occurred_at: DateTime<Utc>,
    ticket: TicketSnapshot,
    /// The customer's message (`ticket.customer_message`).
    message: Option<Message>,
    /// The tag just added (`ticket.tag_added`).
    tag: Option<String>,
}

/// A customer's message on a ticket, as the helpdesk sent it.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Email>,
}

/// A survey provider's response, normalised.
#[derive(Debug, Clone)]
struct SurveyResponse {
    /// Deduplicates deliveries: the same value means the same delivery.
    delivery_id: String,
    /// The provider's id of the response: every update of it lands on one review.
    response_id: String,
    rating: Rating,
    comment: Option<Comment>,
    respondent_email: Option<Email>,
    /// A ticket id the provider passed through (hidden field / property), if any.
    ticket_id: Option<TicketId>,
    /// When the response was first given, by the provider's clock.
    first_answered_at: DateTime<Utc>,
    /// When this version of the response was given, by the provider's clock.
    answered_at: DateTime<Utc>,
    /// Orders versions that share `answered_at` (AskNicely's `count`); 0 elsewhere.
    sequence: u64,
}

/// Accepts one delivery: verifies it, then writes its effect, its dedupe record and its events
/// in one transaction. Nothing is written when any check fails.
pub async fn ingest_webhook(
    store: &dyn ItemStore,
    now: DateTime<Utc>,
    tenant: &TenantId,
    source: &str,
    headers: &dyn Headers,
    body: &[u8],
) -> Result<IngestOutcome, IngestError> {
    let source = Source::parse(source)
        .ok_or_else(|| IngestError::UnknownSource(source.chars().take(40).collect()))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(IngestError::TooLarge(body.len()));
    }
    // The proof is read before the tenant's secrets, so a missing or stale signature gets the
    // same answer whether or not the tenant exists.
    let proof = proof(source, headers, body, now)?;
    let secrets = tenancy::webhook_secrets(store, tenant, source.as_str()).await?;
    if secrets.is_empty() {
        return Err(IngestError::NotConfigured);
    }
    proof.verify(&secrets)?;
    let delivery = match source {
        Source::Generic => generic::parse(body)?,
        Source::Zendesk => zendesk::parse(body)?,
        Source::Delighted => delighted::parse(body)?,
        Source::Typeform => typeform::parse(body)?,
        Source::AskNicely => asknicely::parse(body)?,
    };
    match delivery {
        Delivery::Ticket(t) => tickets::record(store, now, tenant, source, *t).await,
        Delivery::Response(r) => responses::record(store, now, tenant, source, r).await,
        Delivery::Ignored(what) => Ok(IngestOutcome::Ignored(what)),
    }
}

fn proof<'a>(
    source: Source,
    headers: &'a dyn Headers,
    body: &'a [u8],
    now: DateTime<Utc>,
) -> Result<Proof<'a>, SignatureError> {
    match source {
        Source::Generic => generic::proof(headers, body, now),
        Source::Zendesk => zendesk::proof(headers, body, now),
        Source::Delighted => delighted::proof(headers, body),
        Source::Typeform => typeform::proof(headers, body),
        Source::AskNicely => asknicely::proof(headers),
    }
}

/// Vendor ids become key parts: 1-128 characters, no `#` (the key separator), no controls.
fn key_part(field: &str, value: &str) -> Result<String, IngestError> {
    if value.is_empty()
        || value.len() > 128
        || value.contains('#')
        || value.chars().any(char::is_control)
    {
        return Err(IngestError::invalid(
            field,
            "must be 1-128 characters without '#'",
        ));
    }
    Ok(value.to_string())
}

/// `sha256=<digest>` as Typeform and Delighted send it; `decode` reads the digest's encoding.
fn prefixed_sha256<'a>(
    headers: &'a dyn Headers,
    header: &'static str,
    expected: &'static str,
    body: &'a [u8],
    decode: impl Fn(&str) -> Option<Vec<u8>>,
) -> Result<Proof<'a>, SignatureError> {
    let value = headers
        .header(header)
        .ok_or(SignatureError::Missing(header))?;
    let malformed = SignatureError::MalformedHeader { header, expected };
    let digest = value
        .trim()
        .strip_prefix("sha256=")
        .and_then(decode)
        .ok_or(malformed)?;
    Ok(Proof::Hmac {
        prefix: Vec::new(),
        body,
        candidates: vec![digest],
    })
}

/// Ids that vendors send as numbers or strings, read as strings.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
enum LooseId {
    Text(String),
    Number(i64),
}

impl LooseId {
    fn into_string(self) -> String {
        match self {
            LooseId::Text(s) => s,
            LooseId::Number(n) => n.to_string(),
        }
    }
}

/// Unix seconds that vendors send as numbers or numeric strings.
fn unix_time(field: &str, value: &LooseId) -> Result<DateTime<Utc>, IngestError> {
    let seconds = match value {
        LooseId::Number(n) => *n,
        LooseId::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| IngestError::invalid(field, "must be unix seconds"))?,
    };
    DateTime::from_timestamp(seconds, 0).ok_or_else(|| IngestError::invalid(field, "out of range"))
}
