//! closedloop's outgoing HTTP: helpdesk connectors (Kaseya BMS, ConnectWise PSA, Autotask,
//! HaloPSA, Zendesk, Freshdesk and the generic webhook connector) and the signed webhook a
//! rule's `post_webhook` sends. Both implement core's ports
//! (`closedloop_core::helpdesk`); `docs/webhooks.md` ("Outgoing") documents the requests.
//!
//! How answers are read, for every vendor: 2xx is success; 429 is a rate limit (with its
//! `Retry-After`); 5xx, 408, timeouts and refused connections are transient; 401/403 mean the
//! credentials are wrong; 501 means the receiver lacks the operation; any other 4xx is refused
//! with the vendor's own message. Secrets never reach a log: the types holding them redact
//! them in `Debug`, and errors carry only the vendor's message.

mod autotask;
pub mod block;
mod common;
mod connectwise;
mod freshdesk;
mod generic;
mod halopsa;
mod http;
mod kaseya;
mod webhook;
mod zendesk;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use closedloop_core::helpdesk::{
    self, ConnectorConfig, ConnectorDirectory, ConnectorError, ConnectorKind, HelpdeskConnector,
    HelpdeskOperation,
};
use closedloop_core::ids::TenantId;
use closedloop_core::store::{ItemStore, StoreError};

pub use autotask::AutotaskConnector;
pub use connectwise::ConnectwiseConnector;
pub use freshdesk::FreshdeskConnector;
pub use generic::{GenericWebhookConnector, VENDOR as GENERIC_VENDOR};
pub use halopsa::HaloPsaConnector;
pub use http::{Cap, Limiter};
pub use kaseya::{HOURLY_CAP as KASEYA_HOURLY_CAP, KaseyaBmsConnector};
pub use webhook::HttpWebhookSender;
pub use zendesk::ZendeskConnector;

/// Sent on every call: the receiver verifies it with the shared secret.
pub const SIGNATURE_HEADER: &str = "X-Closedloop-Signature";
/// The same on every retry of one action, so the receiver can apply it once.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// How long one call may take before it counts as a (transient) timeout.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(8);

/// The one HTTP client of a process (connection pools are per client): built once in `main`.
/// Redirects are not followed: a signed POST must reach the configured URL, and nothing else.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(3).min(timeout))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("closedloop/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with rustls builds")
}

/// The connector of each tenant, from its stored configuration (`PUT /admin/v1/connector`).
/// Read per call, so a changed URL or secret applies at once; the client, the vendors' tokens
/// and the client-side call windows are shared by every connector it makes.
#[derive(Clone)]
pub struct StoreConnectorDirectory {
    store: Arc<dyn ItemStore>,
    connectors: Connectors,
}

impl StoreConnectorDirectory {
    pub fn new(store: Arc<dyn ItemStore>, client: reqwest::Client) -> Self {
        StoreConnectorDirectory {
            store,
            connectors: Connectors::new(client),
        }
    }
}

#[async_trait]
impl ConnectorDirectory for StoreConnectorDirectory {
    async fn connector(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<Arc<dyn HelpdeskConnector>>, StoreError> {
        let Some(config) = helpdesk::get_config(self.store.as_ref(), tenant).await? else {
            return Ok(None);
        };
        Ok(Some(self.connectors.build(tenant, config)))
    }
}

/// Builds the connector a configuration names, over one client and one set of tokens and
/// call windows (keyed by tenant and credentials, so tenants never share them).
#[derive(Clone)]
pub struct Connectors {
    client: reqwest::Client,
    shared: Arc<http::Shared>,
}

impl Connectors {
    pub fn new(client: reqwest::Client) -> Self {
        Connectors {
            client,
            shared: Arc::default(),
        }
    }

    pub fn build(&self, tenant: &TenantId, config: ConnectorConfig) -> Arc<dyn HelpdeskConnector> {
        let (client, shared, t) = (self.client.clone(), &self.shared, tenant.as_str());
        match config.kind {
            ConnectorKind::GenericWebhook => Arc::new(GenericWebhookConnector::new(
                client,
                tenant.clone(),
                config.url,
                config.secret,
            )),
            ConnectorKind::KaseyaBms => {
                Arc::new(KaseyaBmsConnector::new(client, shared, t, config))
            }
            ConnectorKind::Connectwise => {
                Arc::new(ConnectwiseConnector::new(client, shared, t, config))
            }
            ConnectorKind::Autotask => {
                Arc::new(AutotaskConnector::new(client, shared.clone(), t, config))
            }
            ConnectorKind::Halopsa => Arc::new(HaloPsaConnector::new(client, shared, t, config)),
            ConnectorKind::Zendesk => Arc::new(ZendeskConnector::new(client, shared, t, config)),
            ConnectorKind::Freshdesk => {
                Arc::new(FreshdeskConnector::new(client, shared, t, config))
            }
        }
    }
}

/// Reads a non-2xx answer. `operation` is set for helpdesk calls (a 501 then says the
/// receiver lacks it).
pub(crate) fn classify(
    vendor: &str,
    operation: Option<HelpdeskOperation>,
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> ConnectorError {
    let message = vendor_message(body).unwrap_or_else(|| format!("HTTP {status}"));
    match status {
        429 => ConnectorError::RateLimited {
            retry_after: retry_after.and_then(parse_retry_after),
        },
        401 | 403 => ConnectorError::Unauthorized(message),
        501 if operation.is_some() => ConnectorError::Unsupported {
            vendor: vendor.to_string(),
            operation: operation.expect("checked"),
        },
        408 | 500..=599 => ConnectorError::Transient(format!("HTTP {status}: {message}")),
        300..=399 => ConnectorError::Rejected {
            status,
            message: "the receiver answered with a redirect; configure the final URL".into(),
        },
        _ => ConnectorError::Rejected { status, message },
    }
}

/// The vendor's own words: `{"error": {"message"}}`, `{"message"}`, `{"error": "..."}`,
/// `{"detail"}`, else the body's text; at most 300 characters.
pub(crate) fn vendor_message(body: &[u8]) -> Option<String> {
    let text = if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        [
            &json["error"]["message"],
            &json["message"],
            &json["error"],
            &json["detail"],
        ]
        .into_iter()
        .find_map(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| json.to_string())
    } else {
        String::from_utf8_lossy(body).trim().to_string()
    };
    let text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
    (!text.is_empty()).then_some(text)
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or_default())
}

/// A transport failure: timeouts and connection failures are worth retrying.
pub(crate) fn transport_error(e: reqwest::Error) -> ConnectorError {
    if e.is_builder() {
        ConnectorError::Misconfigured(e.to_string())
    } else if e.is_timeout() {
        ConnectorError::Transient("the call timed out".into())
    } else if let Some(io) = io_cause(&e) {
        // reqwest's own words ("error sending request") do not say why; the socket's do, and
        // an operator reading a dead letter needs "connection refused" to know where to look.
        let what = if e.is_connect() {
            "could not connect"
        } else {
            "the connection failed"
        };
        ConnectorError::Transient(format!("{what}: {}", io_reason(io)))
    } else {
        // Without the URL: it may carry credentials in its query.
        ConnectorError::Transient(e.without_url().to_string())
    }
}

/// The socket error under a transport failure, if there is one.
fn io_cause(e: &reqwest::Error) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = cause.source();
    }
    None
}

/// A socket error as an operator reads it: its kind, not the OS's numbered message.
fn io_reason(io: &std::io::Error) -> String {
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        std::io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        std::io::ErrorKind::UnexpectedEof => "the connection closed before an answer".into(),
        std::io::ErrorKind::TimedOut => "the connection timed out".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_documented() {
        let op = Some(HelpdeskOperation::ReopenTicket);
        assert_eq!(
            classify("v", op, 429, Some("7"), b""),
            ConnectorError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(classify("v", op, 503, None, b"down").is_transient());
        assert!(classify("v", op, 408, None, b"").is_transient());
        assert_eq!(
            classify(
                "v",
                op,
                422,
                None,
                br#"{"error":{"message":"no such status"}}"#
            ),
            ConnectorError::Rejected {
                status: 422,
                message: "no such status".into()
            }
        );
        assert!(matches!(
            classify("v", op, 401, None, br#"{"message":"bad token"}"#),
            ConnectorError::Unauthorized(m) if m == "bad token"
        ));
        assert!(matches!(
            classify("v", op, 501, None, b""),
            ConnectorError::Unsupported {
                operation: HelpdeskOperation::ReopenTicket,
                ..
            }
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let wait = parse_retry_after(&soon).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
