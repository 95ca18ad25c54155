//! The helpdesk ports: what closedloop asks of a tenant's helpdesk (notes, status, tags, ...),
//! which connector a tenant has, and outgoing signed webhooks. The connectors themselves live
//! in `closedloop-connectors`; core only sees these traits.
//!
//! Also here: a tenant's connector configuration (`T#<t>` / `CONNECTOR`). Its secret is stored
//! because the connector signs with it, and never shown again after it is set.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Email, TicketSnapshot};
use crate::ids::{AccountId, AgentId, TenantId, TicketId};
use crate::keys;
use crate::store::{Condition, ItemExt, ItemStore, StoreError, Value};

/// One operation of the helpdesk port, named as the generic connector's payload names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HelpdeskOperation {
    AddInternalNote,
    ChangeTicketType,
    ListTicketTypes,
    CreateTicket,
    ReopenTicket,
    SetTicketStatus,
    AssignAgent,
    AddTag,
    PublicReply,
    FetchTicket,
    UpsertAccountBlock,
    RemoveAccountBlock,
}

impl HelpdeskOperation {
    pub const ALL: [HelpdeskOperation; 12] = [
        HelpdeskOperation::AddInternalNote,
        HelpdeskOperation::ChangeTicketType,
        HelpdeskOperation::ListTicketTypes,
        HelpdeskOperation::CreateTicket,
        HelpdeskOperation::ReopenTicket,
        HelpdeskOperation::SetTicketStatus,
        HelpdeskOperation::AssignAgent,
        HelpdeskOperation::AddTag,
        HelpdeskOperation::PublicReply,
        HelpdeskOperation::FetchTicket,
        HelpdeskOperation::UpsertAccountBlock,
        HelpdeskOperation::RemoveAccountBlock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HelpdeskOperation::AddInternalNote => "add_internal_note",
            HelpdeskOperation::ChangeTicketType => "change_ticket_type",
            HelpdeskOperation::ListTicketTypes => "list_ticket_types",
            HelpdeskOperation::CreateTicket => "create_ticket",
            HelpdeskOperation::ReopenTicket => "reopen_ticket",
            HelpdeskOperation::SetTicketStatus => "set_ticket_status",
            HelpdeskOperation::AssignAgent => "assign_agent",
            HelpdeskOperation::AddTag => "add_tag",
            HelpdeskOperation::PublicReply => "public_reply",
            HelpdeskOperation::FetchTicket => "fetch_ticket",
            HelpdeskOperation::UpsertAccountBlock => "upsert_account_block",
            HelpdeskOperation::RemoveAccountBlock => "remove_account_block",
        }
    }
}

impl std::fmt::Display for HelpdeskOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a helpdesk (or webhook) call failed. Transient ones are worth retrying.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectorError {
    /// 429: wait at least `retry_after` (when the vendor said) before the next call.
    #[error("the helpdesk is rate limiting us{}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs_f64())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    /// A timeout, a refused connection, a 5xx.
    #[error("the helpdesk is unavailable: {0}")]
    Transient(String),
    /// A 4xx other than 401/403/429: the vendor refused this request; its message says why.
    #[error("the helpdesk refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// 401/403: the stored credentials are wrong or lack the permission.
    #[error("the helpdesk refused our credentials: {0}")]
    Unauthorized(String),
    /// The vendor has no such operation.
    #[error("{vendor} cannot {operation}")]
    Unsupported {
        vendor: String,
        operation: HelpdeskOperation,
    },
    /// The request could not even be built (a bad URL in the configuration).
    #[error("the connector is misconfigured: {0}")]
    Misconfigured(String),
}

impl ConnectorError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ConnectorError::RateLimited { .. } | ConnectorError::Transient(_)
        )
    }
    /// How long the vendor asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ConnectorError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// A ticket closedloop asks the helpdesk to create (a follow-up to the cause's ticket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTicket {
    pub subject: String,
    pub body: String,
    /// Whom the ticket is for: the cause's customer, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<Requester>,
    /// The ticket that led to this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_ticket_id: Option<TicketId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requester {
    pub name: String,
    pub email: Email,
}

/// closedloop's block on a customer account's record in the helpdesk (the detractor flag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountBlock {
    /// Whether the account's latest NPS answer is a detractor.
    pub detractor: bool,
    /// A short title for the block (an ERP's subject line); within the connector's limits.
    #[serde(default)]
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_score: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<DateTime<Utc>>,
    /// A line for people reading the record.
    pub text: String,
}

/// What a reopen did. Some helpdesks (Zendesk) never reopen a closed ticket: the connector
/// then opens a follow-up ticket instead and says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Reopened {
    Reopened,
    FollowUpCreated { ticket_id: TicketId },
}

/// How much text a helpdesk takes in an account block. The default follows a classic ERP/PSA
/// account message: a 32-character subject and a 1,024-character message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountBlockLimits {
    pub subject_chars: usize,
    pub message_chars: usize,
}

impl Default for AccountBlockLimits {
    fn default() -> Self {
        AccountBlockLimits {
            subject_chars: 32,
            message_chars: 1024,
        }
    }
}

impl AccountBlockLimits {
    /// Sane bounds for a configured value (a helpdesk that takes no text cannot be flagged).
    pub fn validate(&self) -> Result<(), ConnectorConfigError> {
        if !(8..=1000).contains(&self.subject_chars) {
            return Err(invalid(
                "account_block_limits.subject_chars",
                "must be 8 to 1000",
            ));
        }
        if !(64..=100_000).contains(&self.message_chars) {
            return Err(invalid(
                "account_block_limits.message_chars",
                "must be 64 to 100000",
            ));
        }
        Ok(())
    }
}

/// What the helpdesk connector does for the `actions` function and the sweeps. Every call that
/// changes something carries an idempotency key: the same key is sent again when a call is
/// retried, so a vendor (or the generic webhook's receiver) can apply it once.
#[async_trait]
pub trait HelpdeskConnector: Send + Sync {
    /// The vendor's name, as errors name it (`generic_webhook`, `zendesk`, ...).
    fn vendor(&self) -> &str;
    /// Whether this helpdesk has the operation at all; one it lacks answers
    /// `ConnectorError::Unsupported` without a call.
    fn supports(&self, operation: HelpdeskOperation) -> bool {
        let _ = operation;
        true
    }
    /// One cheap authenticated call, for `POST /admin/v1/connector/test`: what it reached.
    async fn test_connection(&self) -> Result<String, ConnectorError> {
        let types = self.list_ticket_types().await?;
        Ok(format!("connected; {} ticket types", types.len()))
    }
    /// How much text the vendor's account record takes; a tenant's connector configuration
    /// may set other limits (`ConnectorConfig::account_block_limits`).
    fn account_block_limits(&self) -> AccountBlockLimits {
        AccountBlockLimits::default()
    }
    async fn add_internal_note(
        &self,
        key: &str,
        ticket: &TicketId,
        body: &str,
    ) -> Result<(), ConnectorError>;
    async fn change_ticket_type(
        &self,
        key: &str,
        ticket: &TicketId,
        ticket_type: &str,
    ) -> Result<(), ConnectorError>;
    async fn list_ticket_types(&self) -> Result<Vec<String>, ConnectorError>;
    /// Returns the new ticket's id.
    async fn create_ticket(
        &self,
        key: &str,
        ticket: &NewTicket,
    ) -> Result<TicketId, ConnectorError>;
    async fn reopen_ticket(&self, key: &str, ticket: &TicketId)
    -> Result<Reopened, ConnectorError>;
    async fn set_ticket_status(
        &self,
        key: &str,
        ticket: &TicketId,
        status: &str,
    ) -> Result<(), ConnectorError>;
    async fn assign_agent(
        &self,
        key: &str,
        ticket: &TicketId,
        agent: &AgentId,
    ) -> Result<(), ConnectorError>;
    async fn add_tag(&self, key: &str, ticket: &TicketId, tag: &str) -> Result<(), ConnectorError>;
    /// A reply the customer sees.
    async fn public_reply(
        &self,
        key: &str,
        ticket: &TicketId,
        body: &str,
    ) -> Result<(), ConnectorError>;
    async fn fetch_ticket(&self, ticket: &TicketId) -> Result<TicketSnapshot, ConnectorError>;
    async fn upsert_account_block(
        &self,
        key: &str,
        account: &AccountId,
        block: &AccountBlock,
    ) -> Result<(), ConnectorError>;
    async fn remove_account_block(
        &self,
        key: &str,
        account: &AccountId,
    ) -> Result<(), ConnectorError>;
}

/// Which connector a tenant has (`None`: no helpdesk connected).
#[async_trait]
pub trait ConnectorDirectory: Send + Sync {
    async fn connector(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<Arc<dyn HelpdeskConnector>>, StoreError>;
}

/// A signed JSON POST to a URL a rule names.
#[derive(Clone, PartialEq)]
pub struct OutgoingWebhook {
    pub url: String,
    pub secret: String,
    /// Sent as `Idempotency-Key`, the same on every retry.
    pub idempotency_key: String,
    pub body: serde_json::Value,
}

impl std::fmt::Debug for OutgoingWebhook {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingWebhook")
            .field("url", &without_userinfo(&self.url))
            .field("secret", &"<redacted>")
            .field("idempotency_key", &self.idempotency_key)
            .finish()
    }
}

#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// Returns the receiver's HTTP status (2xx; anything else is an error).
    async fn post_webhook(&self, webhook: &OutgoingWebhook) -> Result<u16, ConnectorError>;
}

// ── The tenant's connector configuration ─────────────────────────────────────────────────────

/// The kinds of connector closedloop has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    /// Signed JSON POSTs to one URL (`docs/webhooks.md`, "Outgoing: the generic connector").
    GenericWebhook,
    KaseyaBms,
    Connectwise,
    Autotask,
    Halopsa,
    Zendesk,
    Freshdesk,
}

use HelpdeskOperation as Op;

/// Every operation but tags and public replies (the PSAs without them).
const ALL_BUT_TAGS_AND_REPLIES: &[HelpdeskOperation] = &[
    Op::AddInternalNote,
    Op::ChangeTicketType,
    Op::ListTicketTypes,
    Op::CreateTicket,
    Op::ReopenTicket,
    Op::SetTicketStatus,
    Op::AssignAgent,
    Op::FetchTicket,
    Op::UpsertAccountBlock,
    Op::RemoveAccountBlock,
];

impl ConnectorKind {
    pub const ALL: [ConnectorKind; 7] = [
        ConnectorKind::GenericWebhook,
        ConnectorKind::KaseyaBms,
        ConnectorKind::Connectwise,
        ConnectorKind::Autotask,
        ConnectorKind::Halopsa,
        ConnectorKind::Zendesk,
        ConnectorKind::Freshdesk,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::GenericWebhook => "generic_webhook",
            ConnectorKind::KaseyaBms => "kaseya_bms",
            ConnectorKind::Connectwise => "connectwise",
            ConnectorKind::Autotask => "autotask",
            ConnectorKind::Halopsa => "halopsa",
            ConnectorKind::Zendesk => "zendesk",
            ConnectorKind::Freshdesk => "freshdesk",
        }
    }

    /// The vendor's name, as people know it (messages name it).
    pub fn display_name(self) -> &'static str {
        match self {
            ConnectorKind::GenericWebhook => "the generic webhook connector",
            ConnectorKind::KaseyaBms => "Kaseya BMS",
            ConnectorKind::Connectwise => "ConnectWise PSA",
            ConnectorKind::Autotask => "Autotask",
            ConnectorKind::Halopsa => "HaloPSA",
            ConnectorKind::Zendesk => "Zendesk",
            ConnectorKind::Freshdesk => "Freshdesk",
        }
    }

    /// The operations this vendor's API has (`docs/connectors.md` says what each maps to).
    /// A rule using another one is refused when it is saved.
    pub fn capabilities(self) -> &'static [HelpdeskOperation] {
        match self {
            ConnectorKind::GenericWebhook | ConnectorKind::Zendesk | ConnectorKind::Freshdesk => {
                &HelpdeskOperation::ALL
            }
            // Kaseya BMS and Autotask tickets have no tags (and Autotask notes email no one).
            ConnectorKind::KaseyaBms => &[
                Op::AddInternalNote,
                Op::ChangeTicketType,
                Op::ListTicketTypes,
                Op::CreateTicket,
                Op::ReopenTicket,
                Op::SetTicketStatus,
                Op::AssignAgent,
                Op::PublicReply,
                Op::FetchTicket,
                Op::UpsertAccountBlock,
                Op::RemoveAccountBlock,
            ],
            ConnectorKind::Autotask => ALL_BUT_TAGS_AND_REPLIES,
            // ConnectWise and HaloPSA tickets have no free tags either.
            ConnectorKind::Connectwise | ConnectorKind::Halopsa => &[
                Op::AddInternalNote,
                Op::ChangeTicketType,
                Op::ListTicketTypes,
                Op::CreateTicket,
                Op::ReopenTicket,
                Op::SetTicketStatus,
                Op::AssignAgent,
                Op::PublicReply,
                Op::FetchTicket,
                Op::UpsertAccountBlock,
                Op::RemoveAccountBlock,
            ],
        }
    }

    pub fn supports(self, operation: HelpdeskOperation) -> bool {
        self.capabilities().contains(&operation)
    }

    /// The generic connector's secret is ours (it signs); every other is the vendor's.
    pub fn secret_name(self) -> &'static str {
        match self {
            ConnectorKind::GenericWebhook => "the signing secret",
            ConnectorKind::KaseyaBms => "the BMS API user's password",
            ConnectorKind::Connectwise => "the API member's private key",
            ConnectorKind::Autotask => "the API user's secret",
            ConnectorKind::Halopsa => "the API application's client secret",
            ConnectorKind::Zendesk => "the API token (or OAuth access token)",
            ConnectorKind::Freshdesk => "the API key",
        }
    }
}

/// A vendor's settings besides the URL and the secret: who we log in as, which region, which
/// ids to use. None of them is a secret; each kind needs its own (`ConnectorSettings::check`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSettings {
    /// Kaseya BMS: `us`, `emea`, `apac` or `vorex`; it decides the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Kaseya BMS and Autotask: the API user's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Kaseya BMS: the company (tenant) name; ConnectWise: the company id used at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// ConnectWise: the API member's public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// ConnectWise: the integration's `clientId`; HaloPSA: the API application's client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Autotask: the API integration code (tracking identifier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_code: Option<String>,
    /// HaloPSA (hosted): the tenant the token is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Zendesk: the agent's address for API-token auth; without it the secret is an OAuth token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The status a reopen sets (a name or an id), where the vendor has no "reopen" of its own:
    /// `Open` by default (Autotask: `1`, its "New").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reopen_status: Option<String>,
    /// Vendor ids the API needs and has no name for (ConnectWise `board_id`, Kaseya BMS
    /// `priority_id`, Autotask `queue_id`, ...; `docs/connectors.md` lists them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ids: BTreeMap<String, i64>,
    /// Calls per hour to stay under, when the vendor's account allows fewer than its documented
    /// default (Kaseya BMS: 1,500 per endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_cap: Option<u32>,
}

impl ConnectorSettings {
    /// The settings `kind` needs are there and sane, and none that it does not use is set.
    pub fn check(&self, kind: ConnectorKind) -> Result<(), ConnectorConfigError> {
        let fields: [(&'static str, &Option<String>); 9] = [
            ("settings.region", &self.region),
            ("settings.username", &self.username),
            ("settings.company", &self.company),
            ("settings.public_key", &self.public_key),
            ("settings.client_id", &self.client_id),
            ("settings.integration_code", &self.integration_code),
            ("settings.tenant", &self.tenant),
            ("settings.email", &self.email),
            ("settings.reopen_status", &self.reopen_status),
        ];
        let (required, optional): (&[&str], &[&str]) = match kind {
            ConnectorKind::GenericWebhook => (&[], &[]),
            ConnectorKind::KaseyaBms => (
                &["settings.username", "settings.company"],
                &["settings.region", "settings.reopen_status"],
            ),
            ConnectorKind::Connectwise => (
                &[
                    "settings.company",
                    "settings.public_key",
                    "settings.client_id",
                ],
                &["settings.reopen_status"],
            ),
            ConnectorKind::Autotask => (
                &["settings.username", "settings.integration_code"],
                &["settings.reopen_status"],
            ),
            ConnectorKind::Halopsa => (
                &["settings.client_id"],
                &["settings.tenant", "settings.reopen_status"],
            ),
            ConnectorKind::Zendesk => (&[], &["settings.email"]),
            ConnectorKind::Freshdesk => (&[], &[]),
        };
        for (name, value) in fields {
            match value {
                Some(v) => {
                    if !required.contains(&name) && !optional.contains(&name) {
                        return Err(invalid(name, &format!("is not used by {}", kind.as_str())));
                    }
                    let n = v.chars().count();
                    if n == 0 || n > 200 || v.chars().any(char::is_control) {
                        return Err(invalid(name, "must be 1 to 200 characters, one line"));
                    }
                }
                None if required.contains(&name) => {
                    return Err(invalid(name, &format!("is required for {}", kind.as_str())));
                }
                None => {}
            }
        }
        if let Some(region) = &self.region
            && !["us", "emea", "apac", "vorex"].contains(&region.as_str())
        {
            return Err(invalid(
                "settings.region",
                "must be us, emea, apac or vorex",
            ));
        }
        if kind == ConnectorKind::GenericWebhook
            && (!self.ids.is_empty() || self.hourly_cap.is_some())
        {
            return Err(invalid("settings", "is not used by generic_webhook"));
        }
        if self.ids.len() > 20 || self.ids.keys().any(|k| k.is_empty() || k.len() > 40) {
            return Err(invalid(
                "settings.ids",
                "at most 20 names of 1 to 40 characters",
            ));
        }
        if self.hourly_cap == Some(0) {
            return Err(invalid("settings.hourly_cap", "must be at least 1"));
        }
        Ok(())
    }

    pub fn id(&self, name: &str) -> Option<i64> {
        self.ids.get(name).copied()
    }
}

/// A tenant's connector, as stored.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorConfig {
    pub kind: ConnectorKind,
    /// The helpdesk's base URL (empty where the vendor decides it: Kaseya BMS by region,
    /// Autotask by its zone lookup).
    pub url: String,
    /// Signs every call (generic) or is the vendor's credential. Stored, never shown.
    pub secret: String,
    #[serde(default)]
    pub settings: ConnectorSettings,
    pub updated_at: DateTime<Utc>,
    /// Overrides the connector's own account-block limits (the detractor flag's text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_block_limits: Option<AccountBlockLimits>,
}

impl std::fmt::Debug for ConnectorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorConfig")
            .field("kind", &self.kind)
            .field("url", &without_userinfo(&self.url))
            .field("secret", &"<redacted>")
            .field("settings", &self.settings)
            .field("updated_at", &self.updated_at)
            .field("account_block_limits", &self.account_block_limits)
            .finish()
    }
}

/// The configuration as the admin API shows it: never the secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectorView {
    pub kind: ConnectorKind,
    pub url: String,
    pub settings: ConnectorSettings,
    pub secret_set: bool,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_block_limits: Option<AccountBlockLimits>,
}

impl ConnectorConfig {
    pub fn view(&self) -> ConnectorView {
        ConnectorView {
            kind: self.kind,
            url: without_userinfo(&self.url),
            settings: self.settings.clone(),
            secret_set: !self.secret.is_empty(),
            updated_at: self.updated_at,
            account_block_limits: self.account_block_limits,
        }
    }
}

/// The URL with any `user:password@` replaced: credentials put in a URL are not shown either.
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{tail}"),
        None => url.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorConfigError {
    #[error("{field} {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, reason: &str) -> ConnectorConfigError {
    ConnectorConfigError::Invalid {
        field,
        reason: reason.to_string(),
    }
}

/// An http(s) URL with a host, no spaces, at most 2,000 characters. Link-local addresses
/// (cloud metadata services) are refused: a tenant must not make us call our own host's.
pub fn validate_url(url: &str) -> Result<(), ConnectorConfigError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid("url", "must start with https:// or http://"))?;
    if url.len() > 2000 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "url",
            "must be at most 2000 characters, without spaces",
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(invalid("url", "must name a host"));
    }
    let bare = host.trim_start_matches('[').to_ascii_lowercase();
    if bare.starts_with("169.254.") || bare.starts_with("fe80:") || bare.starts_with("fd00:ec2") {
        return Err(invalid("url", "must not be a link-local address"));
    }
    Ok(())
}

/// 16 to 512 printable characters without spaces (the same rule as webhook secrets).
pub fn validate_secret(secret: &str) -> Result<(), ConnectorConfigError> {
    if secret.len() < 16
        || secret.len() > 512
        || secret.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            "secret",
            "must be 16 to 512 printable characters without spaces",
        ));
    }
    Ok(())
}

/// A vendor's credential: 1 to 1,024 characters, no control characters (passwords may hold
/// spaces; vendors decide the rest).
pub fn validate_vendor_secret(secret: &str) -> Result<(), ConnectorConfigError> {
    if secret.is_empty() || secret.len() > 1024 || secret.chars().any(char::is_control) {
        return Err(invalid(
            "secret",
            "must be 1 to 1024 characters without control characters",
        ));
    }
    Ok(())
}

/// The tenant's connector configuration, if one is set.
pub async fn get_config(
    store: &dyn ItemStore,
    tenant: &TenantId,
) -> Result<Option<ConnectorConfig>, StoreError> {
    store
        .get(&keys::connector(tenant))
        .await?
        .map(|item| crate::records::read_record(&item))
        .transpose()
}

/// What `put_config` did: the secret is returned only when closedloop generated it.
#[derive(Clone, PartialEq)]
pub struct ConfigSaved {
    pub config: ConnectorConfig,
    pub generated_secret: Option<String>,
    pub created: bool,
}

/// Sets the tenant's connector. `secret: None` keeps the current secret, or generates one for
/// a new configuration (returned this once). Guarded by the stored `updated_at`, so two admins
/// saving at once cannot mix one's URL with the other's secret. The account-block limits are
/// kept (`set_account_block_limits` changes them).
#[allow(clippy::too_many_arguments)]
pub async fn put_config(
    store: &dyn ItemStore,
    tenant: &TenantId,
    kind: ConnectorKind,
    url: &str,
    settings: ConnectorSettings,
    secret: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ConfigSaved, ConnectorConfigError> {
    // Kaseya BMS finds its host from the region and Autotask from its zone lookup.
    let url_optional = matches!(kind, ConnectorKind::KaseyaBms | ConnectorKind::Autotask);
    if !(url_optional && url.is_empty()) {
        validate_url(url)?;
    }
    settings.check(kind)?;
    if kind == ConnectorKind::KaseyaBms && url.is_empty() && settings.region.is_none() {
        return Err(invalid(
            "settings.region",
            "or url is required for kaseya_bms",
        ));
    }
    if let Some(s) = secret {
        if kind == ConnectorKind::GenericWebhook {
            validate_secret(s)?;
        } else {
            validate_vendor_secret(s)?;
        }
    }
    let key = keys::connector(tenant);
    let current = store.get(&key).await?;
    let previous: Option<ConnectorConfig> = current
        .as_ref()
        .map(crate::records::read_record)
        .transpose()?;
    // A kept secret belongs to the vendor it was given for: switching vendors needs a new one.
    let (secret, generated_secret) = match (secret, &previous) {
        (Some(s), _) => (s.to_string(), None),
        (None, Some(p)) if p.kind == kind => (p.secret.clone(), None),
        (None, _) if kind != ConnectorKind::GenericWebhook => {
            return Err(invalid(
                "secret",
                &format!(
                    "is required: {} ({})",
                    kind.secret_name(),
                    kind.display_name()
                ),
            ));
        }
        (None, _) => {
            let s = crate::sources::random_secret();
            (s.clone(), Some(s))
        }
    };
    let config = ConnectorConfig {
        kind,
        url: url.to_string(),
        secret,
        settings,
        updated_at: now,
        account_block_limits: previous.as_ref().and_then(|p| p.account_block_limits),
    };
    let mut item = crate::records::record_item(&key, "connector", &config);
    item.insert("revision".into(), Value::S(ulid::Ulid::new().to_string()));
    let guard = match current.as_ref().and_then(|c| c.str_attr("revision")) {
        Some(rev) => Condition::eq("revision", Value::s(rev)),
        None => Condition::item_absent(),
    };
    match store.put(item, Some(guard)).await {
        Ok(()) => Ok(ConfigSaved {
            created: previous.is_none(),
            config,
            generated_secret,
        }),
        Err(StoreError::ConditionFailed { .. }) => Err(StoreError::Transient(
            "the connector was changed at the same moment; retry".into(),
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Sets (or, with `None`, clears) the account-block limits of the tenant's connector, guarded
/// like `put_config`. `Ok(None)`: no connector is configured.
pub async fn set_account_block_limits(
    store: &dyn ItemStore,
    tenant: &TenantId,
    limits: Option<AccountBlockLimits>,
    now: DateTime<Utc>,
) -> Result<Option<ConnectorConfig>, ConnectorConfigError> {
    if let Some(l) = &limits {
        l.validate()?;
    }
    let key = keys::connector(tenant);
    let Some(current) = store.get(&key).await? else {
        return Ok(None);
    };
    let mut config: ConnectorConfig = crate::records::read_record(&current)?;
    config.account_block_limits = limits;
    config.updated_at = now;
    let mut item = crate::records::record_item(&key, "connector", &config);
    item.insert("revision".into(), Value::S(ulid::Ulid::new().to_string()));
    let guard = match current.str_attr("revision") {
        Some(rev) => Condition::eq("revision", Value::s(rev)),
        None => Condition::item_present(),
    };
    match store.put(item, Some(guard)).await {
        Ok(()) => Ok(Some(config)),
        Err(StoreError::ConditionFailed { .. }) => Err(StoreError::Transient(
            "the connector was changed at the same moment; retry".into(),
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Disconnects the helpdesk. `false` if none was configured.
pub async fn delete_config(store: &dyn ItemStore, tenant: &TenantId) -> Result<bool, StoreError> {
    match store
        .delete(&keys::connector(tenant), Some(Condition::item_present()))
        .await
    {
        Ok(()) => Ok(true),
        Err(e) if e.is_condition_failure() => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_with_a_host_and_not_link_local() {
        for ok in [
            "https://helpdesk.example.com/closedloop",
            "http://127.0.0.1:8080/sandbox/helpdesk",
        ] {
            assert!(validate_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://x.example",
            "https://",
            "https:///path",
            "https://a b.example",
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/",
        ] {
            assert!(validate_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_in_a_url_are_not_shown() {
        assert_eq!(
            without_userinfo("https://bot:pa55@helpdesk.example/hook?x=1"),
            "https://***@helpdesk.example/hook?x=1"
        );
        assert_eq!(
            without_userinfo("https://helpdesk.example/a@b"),
            "https://helpdesk.example/a@b"
        );
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let config = ConnectorConfig {
            kind: ConnectorKind::GenericWebhook,
            url: "https://x.example".into(),
            secret: "s3cr3t-value-0123456789".into(),
            settings: ConnectorSettings::default(),
            updated_at: Utc::now(),
            account_block_limits: None,
        };
        assert!(!format!("{config:?}").contains("s3cr3t"));
        let hook = OutgoingWebhook {
            url: "https://x.example".into(),
            secret: "s3cr3t-value-0123456789".into(),
            idempotency_key: "k".into(),
            body: serde_json::json!({}),
        };
        assert!(!format!("{hook:?}").contains("s3cr3t"));
    }

    #[test]
    fn each_vendor_needs_its_own_settings_and_refuses_the_others() {
        let s = |f: fn(&mut ConnectorSettings)| {
            let mut x = ConnectorSettings::default();
            f(&mut x);
            x
        };
        let cw = s(|x| {
            x.company = Some("acme".into());
            x.public_key = Some("pub".into());
            x.client_id = Some("id".into());
        });
        assert!(cw.check(ConnectorKind::Connectwise).is_ok());
        let mut no_key = cw.clone();
        no_key.public_key = None;
        assert!(matches!(
            no_key.check(ConnectorKind::Connectwise),
            Err(ConnectorConfigError::Invalid {
                field: "settings.public_key",
                ..
            })
        ));
        // A Kaseya region set on a ConnectWise connector is a mistake worth saying.
        let mut region = cw.clone();
        region.region = Some("emea".into());
        assert!(region.check(ConnectorKind::Connectwise).is_err());
        let bms = s(|x| {
            x.username = Some("u".into());
            x.company = Some("c".into());
            x.region = Some("mars".into());
        });
        assert!(bms.check(ConnectorKind::KaseyaBms).is_err());
        assert!(
            ConnectorSettings::default()
                .check(ConnectorKind::Freshdesk)
                .is_ok()
        );
    }

    #[test]
    fn capabilities_say_what_each_vendor_lacks() {
        use HelpdeskOperation as O;
        for kind in ConnectorKind::ALL {
            // Every vendor can at least note, fetch and flag accounts.
            for op in [
                O::AddInternalNote,
                O::FetchTicket,
                O::UpsertAccountBlock,
                O::RemoveAccountBlock,
            ] {
                assert!(kind.supports(op), "{kind:?} {op}");
            }
        }
        assert!(!ConnectorKind::Autotask.supports(O::AddTag));
        assert!(!ConnectorKind::Autotask.supports(O::PublicReply));
        assert!(!ConnectorKind::KaseyaBms.supports(O::AddTag));
        assert!(ConnectorKind::Zendesk.supports(O::AddTag));
        assert_eq!(
            ConnectorKind::GenericWebhook.capabilities().len(),
            HelpdeskOperation::ALL.len()
        );
    }

    #[test]
    fn only_rate_limits_and_outages_are_transient() {
        assert!(
            ConnectorError::RateLimited {
                retry_after: Some(Duration::from_secs(2))
            }
            .is_transient()
        );
        assert!(ConnectorError::Transient("503".into()).is_transient());
        assert!(
            !ConnectorError::Rejected {
                status: 422,
                message: "bad".into()
            }
            .is_transient()
        );
        assert!(!ConnectorError::Unauthorized("no".into()).is_transient());
    }
}
