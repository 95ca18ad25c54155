//! Helpers the local-runner scenarios share: a demo runner on a free port, the outbox's emails,
//! and the rating links in them. Each test file uses some of them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use closedloop::runner::{self, RunnerConfig, Running};
use closedloop_core::domain::Review;
use closedloop_core::ids::{SurveyRequestId, TenantId};
use closedloop_core::keys;
use closedloop_core::records::read_record;

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("closedloop-e2e-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A demo runner on a free port; schedules are fired by hand in tests.
pub fn demo_config(dir: &Path) -> RunnerConfig {
    let mut config = RunnerConfig::new(dir, "127.0.0.1:0".parse::<SocketAddr>().unwrap());
    config.demo = true;
    config.run_schedules = false;
    config
}

pub async fn start_demo(dir: &Path) -> Running {
    runner::start(demo_config(dir)).await.unwrap()
}

/// Every `.eml` in the outbox, oldest first.
pub fn outbox(dir: &Path) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// The rating links in (part of) an email, unsubscribe links left out.
pub fn links(eml: &str) -> Vec<String> {
    eml.split_whitespace()
        .filter(|w| w.contains("/r/") && w.starts_with("http") && !w.ends_with("/unsubscribe"))
        .map(|w| w.trim_end_matches(['"', '>']).to_string())
        .collect()
}

/// Field `n` of a rating link's token payload (`v1|kid|tenant|survey|value|expiry`).
pub fn token_field(link: &str, n: usize) -> String {
    use base64::Engine;
    let token = link.rsplit('/').next().unwrap();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .unwrap();
    String::from_utf8(payload)
        .unwrap()
        .split('|')
        .nth(n)
        .unwrap()
        .to_string()
}

/// The value a rating link records, read from its token.
pub fn link_value(link: &str) -> String {
    token_field(link, 4)
}

/// The sandbox helpdesk closes a ticket (and sends its webhook).
pub async fn close_ticket(running: &Running, ticket: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!(
            "{}/sandbox/tickets/{ticket}/close",
            running.info.base_url
        ))
        .send()
        .await
        .unwrap()
}

/// Closes a sandbox ticket, relays until quiet, and returns the text part's rating links of the
/// request sent to `contact`.
pub async fn close_and_read_links(
    running: &Running,
    dir: &Path,
    ticket: &str,
    contact: &str,
) -> Vec<String> {
    close_ticket(running, ticket).await;
    running.drain().await.unwrap();
    let mails = outbox(dir);
    let request = mails
        .iter()
        .find(|m| m.contains(&format!("To: {contact}")))
        .expect("a rating request");
    links(request.split("text/html").next().unwrap())
}

/// The review stored under the survey request a rating link's token names.
pub async fn stored_review(running: &Running, link: &str) -> Option<Review> {
    let survey = SurveyRequestId::parse(&token_field(link, 3)).unwrap();
    let tenant = TenantId::parse(&token_field(link, 2)).unwrap();
    let item = running
        .store()
        .get(&keys::review(&tenant, survey))
        .await
        .unwrap()?;
    Some(read_record(&item).unwrap())
}

/// The SDK configuration for an AWS emulator on loopback (moto or ministack).
pub async fn emulator_sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

/// moto's URL: scripts/test.sh exports `AWS_ENDPOINT_URL_MOTO`.
pub fn moto_url() -> String {
    std::env::var("AWS_ENDPOINT_URL_MOTO").unwrap_or_else(|_| "http://127.0.0.1:5055".into())
}

/// A helpdesk behind the generic connector that applies each idempotency key once, as the
/// connector's contract asks (docs/webhooks.md), and answers after `delay`, so a kill or an
/// abort lands while calls are in flight. Mount it with `respond_with(receiver.clone())`.
#[derive(Clone)]
pub struct NoteReceiver {
    /// Every note call whose body and header carry the same key: (key, ticket, arrival).
    pub calls: std::sync::Arc<std::sync::Mutex<Vec<(String, String, std::time::Instant)>>>,
    delay: std::time::Duration,
}

impl NoteReceiver {
    pub fn new(delay: std::time::Duration) -> Self {
        NoteReceiver {
            calls: Default::default(),
            delay,
        }
    }
}

impl wiremock::Respond for NoteReceiver {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let key = request
            .headers
            .get("Idempotency-Key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if body["operation"] == "add_internal_note" && body["idempotency_key"] == key.as_str() {
            let ticket = body["ticket_id"].as_str().unwrap_or_default().to_string();
            self.calls
                .lock()
                .unwrap()
                .push((key, ticket, std::time::Instant::now()));
        }
        wiremock::ResponseTemplate::new(200)
            .set_body_json(serde_json::json!({"ok": true}))
            .set_delay(self.delay)
    }
}
