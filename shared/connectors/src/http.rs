//! What every vendor connector shares: one call with its rate limit checked first and the
//! vendor's rate headers read after, answers typed the same way for every vendor, and the
//! per-tenant state that outlives one connector (cached tokens, call windows).
//!
//! The directory builds a connector per call (so a changed configuration applies at once);
//! tokens and call windows live in `Shared`, keyed by tenant and credentials, so they survive
//! from one call to the next within a process. Each Lambda instance keeps its own: the
//! client-side caps are per instance, the vendor's 429 still bounds the whole.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use closedloop_core::helpdesk::{ConnectorError, HelpdeskOperation};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::{parse_retry_after, transport_error};

/// Answers larger than this are not read (a ticket or an account is a few KB).
const MAX_ANSWER_BYTES: usize = 512 * 1024;
/// A token this close to its expiry is renewed before use.
const TOKEN_SKEW: Duration = Duration::from_secs(60);
/// How long to hold off after a vendor said "0 calls left" without saying until when.
const DEFAULT_EXHAUSTED_WAIT: Duration = Duration::from_secs(10);

/// How a vendor is named in errors, and what to check when it refuses our credentials.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vendor {
    pub name: &'static str,
    /// Said after "401 from <name>: ".
    pub on_401: &'static str,
}

/// A client-side cap: at most `calls` per `per`, counted per bucket (Kaseya BMS counts per
/// endpoint; the others per account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub calls: u32,
    pub per: Duration,
}

/// Calls made per bucket in the cap's window, and a hold-off the vendor asked for.
#[derive(Debug)]
pub struct Limiter {
    cap: Option<Cap>,
    state: Mutex<LimiterState>,
}

#[derive(Debug, Default)]
struct LimiterState {
    windows: HashMap<String, VecDeque<Instant>>,
    blocked_until: Option<Instant>,
}

impl Limiter {
    pub fn new(cap: Option<Cap>) -> Self {
        Limiter {
            cap,
            state: Mutex::new(LimiterState::default()),
        }
    }

    /// Takes one call from `bucket`, or says how long until one is free. A refused call is not
    /// counted: the vendor never saw it.
    pub fn acquire(&self, bucket: &str) -> Result<(), ConnectorError> {
        let now = Instant::now();
        let mut state = self.state.lock().expect("limiter lock");
        if let Some(until) = state.blocked_until {
            if until > now {
                return Err(ConnectorError::RateLimited {
                    retry_after: Some(until - now),
                });
            }
            state.blocked_until = None;
        }
        let Some(cap) = self.cap else {
            return Ok(());
        };
        let window = state.windows.entry(bucket.to_string()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= cap.per)
        {
            window.pop_front();
        }
        if window.len() >= cap.calls as usize {
            let oldest = *window.front().expect("a full window has a first call");
            return Err(ConnectorError::RateLimited {
                retry_after: Some(cap.per - now.duration_since(oldest)),
            });
        }
        window.push_back(now);
        Ok(())
    }

    /// The vendor asked us to wait this long before any next call.
    pub fn hold_off(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut state = self.state.lock().expect("limiter lock");
        if state.blocked_until.is_none_or(|u| u < until) {
            state.blocked_until = Some(until);
        }
    }
}

/// A bearer token and when it stops working. Not `Debug`: it never reaches a log.
struct Token {
    value: String,
    expires: Instant,
}

/// One tenant's token for one set of credentials. Renewing holds the slot's lock, so callers
/// at once wait for one renewal instead of each logging in.
#[derive(Default)]
pub(crate) struct TokenSlot {
    token: tokio::sync::Mutex<Option<Token>>,
}

impl TokenSlot {
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<String, ConnectorError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(String, Duration), ConnectorError>>,
    {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref()
            && t.expires > Instant::now() + TOKEN_SKEW
        {
            return Ok(t.value.clone());
        }
        let (value, ttl) = fetch().await?;
        *slot = Some(Token {
            value: value.clone(),
            expires: Instant::now() + ttl,
        });
        Ok(value)
    }

    /// The vendor refused this token before its time (revoked, clock skew): forget it.
    pub async fn forget(&self, value: &str) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|t| t.value == value) {
            *slot = None;
        }
    }
}

/// What outlives one connector: the HTTP client, tokens, call windows and looked-up zones.
#[derive(Default)]
pub(crate) struct Shared {
    tokens: Mutex<HashMap<String, Arc<TokenSlot>>>,
    limiters: Mutex<HashMap<String, Arc<Limiter>>>,
    pub zones: Mutex<HashMap<String, String>>,
}

impl Shared {
    pub fn token_slot(&self, key: &str) -> Arc<TokenSlot> {
        self.tokens
            .lock()
            .expect("token map lock")
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    pub fn limiter(&self, key: &str, cap: Option<Cap>) -> Arc<Limiter> {
        let mut map = self.limiters.lock().expect("limiter map lock");
        match map.get(key) {
            Some(l) if l.cap == cap => l.clone(),
            _ => {
                let l = Arc::new(Limiter::new(cap));
                map.insert(key.to_string(), l.clone());
                l
            }
        }
    }
}

/// A short, stable name for a set of credentials (never the credentials themselves): a changed
/// secret or account gets a new token slot and a new call window.
pub(crate) fn fingerprint(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A 2xx answer: its status and JSON body (`Null` when empty).
#[derive(Debug)]
pub(crate) struct Answer {
    pub body: Value,
}

/// One vendor's HTTP: its client, name and call window.
#[derive(Clone)]
pub(crate) struct Api {
    pub client: reqwest::Client,
    pub vendor: Vendor,
    pub limiter: Arc<Limiter>,
}

impl Api {
    /// Sends `request` once: the call window first, the vendor's rate headers after; a non-2xx
    /// answer becomes the typed error.
    pub async fn send(
        &self,
        operation: Option<HelpdeskOperation>,
        bucket: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, ConnectorError> {
        self.limiter.acquire(bucket)?;
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = read_limited(response).await?;
        let wait = rate_wait(status, &headers);
        if let Some(wait) = wait {
            self.limiter.hold_off(wait);
        }
        if !(200..300).contains(&status) {
            tracing::warn!(
                vendor = self.vendor.name,
                ?operation,
                status,
                "helpdesk call refused"
            );
            return Err(self.classify(operation, status, wait, &bytes));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Answer { body: Value::Null });
        }
        let body = serde_json::from_slice(&bytes).map_err(|e| ConnectorError::Rejected {
            status,
            message: format!(
                "{} answered with something that is not JSON: {e}",
                self.vendor.name
            ),
        })?;
        Ok(Answer { body })
    }

    fn classify(
        &self,
        operation: Option<HelpdeskOperation>,
        status: u16,
        wait: Option<Duration>,
        body: &[u8],
    ) -> ConnectorError {
        let name = self.vendor.name;
        let message = vendor_message(body).unwrap_or_else(|| format!("HTTP {status}"));
        match status {
            429 => ConnectorError::RateLimited { retry_after: wait },
            401 => ConnectorError::Unauthorized(format!(
                "401 from {name}: {} ({message})",
                self.vendor.on_401
            )),
            403 => ConnectorError::Unauthorized(format!(
                "403 from {name}: the API user lacks the permission{} ({message})",
                operation.map(|o| format!(" to {o}")).unwrap_or_default()
            )),
            408 | 500..=599 => {
                ConnectorError::Transient(format!("{name} answered {status}: {message}"))
            }
            300..=399 => ConnectorError::Rejected {
                status,
                message: format!("{name} answered with a redirect; check the configured URL"),
            },
            _ => ConnectorError::Rejected { status, message },
        }
    }

    /// A vendor's refusal inside a 2xx (Kaseya BMS `Success: false`).
    pub fn refused_in_body(&self, message: String) -> ConnectorError {
        ConnectorError::Rejected {
            status: 200,
            message: format!("{} refused the request: {message}", self.vendor.name),
        }
    }

    /// An answer without what the vendor documents it to carry.
    pub fn malformed(&self, what: &str) -> ConnectorError {
        ConnectorError::Rejected {
            status: 200,
            message: format!("{}'s answer has no {what}", self.vendor.name),
        }
    }
}

/// How long the vendor wants us to wait: `Retry-After` on a 429, or its own headers saying no
/// calls are left (`X-RateLimit-Remaining: 0` and a reset). `None`: no need to wait.
fn rate_wait(status: u16, headers: &HeaderMap) -> Option<Duration> {
    let header = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
            .map(str::trim)
    };
    let retry_after = header(&["retry-after"]).and_then(parse_retry_after);
    let reset = header(&["x-ratelimit-reset", "x-rate-limit-reset", "ratelimit-reset"])
        .and_then(|v| v.parse::<u64>().ok())
        .map(|v| {
            // Seconds from now, or a Unix time.
            if v > 1_000_000_000 {
                let now = chrono::Utc::now().timestamp().max(0) as u64;
                Duration::from_secs(v.saturating_sub(now))
            } else {
                Duration::from_secs(v)
            }
        });
    let exhausted = header(&[
        "x-ratelimit-remaining",
        "x-rate-limit-remaining",
        "ratelimit-remaining",
    ])
    .and_then(|v| v.parse::<i64>().ok())
    .is_some_and(|left| left <= 0);
    if status == 429 {
        return Some(retry_after.or(reset).unwrap_or(DEFAULT_EXHAUSTED_WAIT));
    }
    exhausted.then(|| retry_after.or(reset).unwrap_or(DEFAULT_EXHAUSTED_WAIT))
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, ConnectorError> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if out.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ConnectorError::Rejected {
                status: response.status().as_u16(),
                message: format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The vendor's own words, from the error shapes the six vendors use: `{"message"}`,
/// `{"error": {"message"}}`, Zendesk's `{"error", "description"}`, Freshdesk's
/// `{"description", "errors": [{"field", "message"}]}`, Kaseya BMS's `{"Error": {"Message"}}`,
/// Autotask's `{"errors": ["..."]}`; else the text. At most 300 characters.
pub(crate) fn vendor_message(body: &[u8]) -> Option<String> {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(json) => json_message(&json).unwrap_or_else(|| json.to_string()),
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    };
    let text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
    (!text.is_empty()).then_some(text)
}

fn json_message(json: &Value) -> Option<String> {
    let s = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let first_error = json["errors"].as_array().and_then(|errors| {
        errors.first().and_then(|e| {
            s(e).or_else(|| {
                let msg = s(&e["message"])?;
                Some(match s(&e["field"]) {
                    Some(field) => format!("{field}: {msg}"),
                    None => msg,
                })
            })
        })
    });
    let main = s(&json["error"]["message"])
        .or_else(|| s(&json["Error"]["Message"]))
        .or_else(|| s(&json["message"]))
        .or_else(|| s(&json["Message"]))
        .or_else(|| s(&json["description"]))
        .or_else(|| s(&json["error_description"]))
        .or_else(|| s(&json["error"]))
        .or_else(|| s(&json["detail"]));
    match (main, first_error) {
        (Some(m), Some(e)) if m != e => Some(format!("{m}: {e}")),
        (Some(m), _) => Some(m),
        (None, e) => e,
    }
}

/// A field of a JSON object whatever its case (Kaseya BMS documents `Success`, `Result`; some
/// of its hosts answer in camelCase).
pub(crate) fn field<'a>(value: &'a Value, name: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    match value {
        Value::Object(map) => map
            .get(name)
            .or_else(|| {
                map.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            })
            .unwrap_or(&NULL),
        _ => &NULL,
    }
}

/// An id the vendor gives as a number or a string.
pub(crate) fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// A ticket or account id the vendor keys by number: ours are strings, theirs integers.
pub(crate) fn numeric_id(vendor: &str, what: &str, id: &str) -> Result<i64, ConnectorError> {
    id.parse::<i64>().map_err(|_| ConnectorError::Rejected {
        status: 400,
        message: format!("{vendor} {what} ids are numbers; '{id}' is not one"),
    })
}

/// Joins a base URL and a path with exactly one slash between them.
pub(crate) fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_window_refuses_with_the_wait_until_its_oldest_call_leaves() {
        let l = Limiter::new(Some(Cap {
            calls: 2,
            per: Duration::from_secs(3600),
        }));
        l.acquire("tickets").unwrap();
        l.acquire("tickets").unwrap();
        let ConnectorError::RateLimited {
            retry_after: Some(wait),
        } = l.acquire("tickets").unwrap_err()
        else {
            panic!("not a rate limit")
        };
        assert!(wait > Duration::from_secs(3590) && wait <= Duration::from_secs(3600));
        // Another endpoint has its own window.
        l.acquire("accounts").unwrap();
    }

    #[test]
    fn a_window_frees_up_as_calls_age_out() {
        let l = Limiter::new(Some(Cap {
            calls: 1,
            per: Duration::from_millis(30),
        }));
        l.acquire("x").unwrap();
        assert!(l.acquire("x").is_err());
        std::thread::sleep(Duration::from_millis(40));
        l.acquire("x").unwrap();
    }

    #[test]
    fn rate_headers_saying_none_left_hold_calls_off_until_the_reset() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        h.insert("x-ratelimit-reset", "12".parse().unwrap());
        assert_eq!(rate_wait(200, &h), Some(Duration::from_secs(12)));
        h.insert("x-ratelimit-remaining", "5".parse().unwrap());
        assert_eq!(rate_wait(200, &h), None);
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(rate_wait(429, &h), Some(Duration::from_secs(7)));
    }

    #[test]
    fn vendor_messages_are_read_from_each_vendors_error_shape() {
        let m = |b: &str| vendor_message(b.as_bytes()).unwrap();
        assert_eq!(
            m(
                r#"{"description":"Validation failed","errors":[{"field":"status","message":"It should be one of these values: '2,3,4,5'","code":"invalid_value"}]}"#
            ),
            "Validation failed: status: It should be one of these values: '2,3,4,5'"
        );
        assert_eq!(
            m(r#"{"error":"RecordInvalid","description":"Record validation errors"}"#),
            "Record validation errors"
        );
        assert_eq!(
            m(r#"{"Success":false,"Error":{"Code":400,"Message":"Ticket not found"}}"#),
            "Ticket not found"
        );
        assert_eq!(
            m(r#"{"errors":["Invalid ticket id"]}"#),
            "Invalid ticket id"
        );
        assert_eq!(m("plain words"), "plain words");
    }
}
