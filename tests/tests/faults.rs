//! Faults, injected into real parts: a helpdesk (wiremock, asserting the vendor's request
//! shape) that answers 429s, 500s, hangs past the connector's timeout, or is not listening at
//! all, driven through the real `actions` executor and connectors; the admin API's replay of
//! the dead letters; the local runner killed (SIGKILL) mid-batch and restarted on its data
//! directory; and a store that rejects conditional writes under real contention.
//! docs/faults.md says what each fault does.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request as HttpRequest;
use closedloop_connectors::{HttpWebhookSender, StoreConnectorDirectory, http_client};
use closedloop_core::actions::{ActionOutcome, Executor, RetryPolicy};
use closedloop_core::automation::{ActionRequest, audit_trail};
use closedloop_core::domain::TenantSettings;
use closedloop_core::event::{EventEnvelope, EventType};
use closedloop_core::helpdesk::{self, ConnectorKind, ConnectorSettings};
use closedloop_core::ids::{RuleId, TenantId, TicketId};
use closedloop_core::outbox::envelope_from_image;
use closedloop_core::ports::{Clock, SystemClock};
use closedloop_core::rules::Action;
use closedloop_core::store::{ItemStore, Key};
use closedloop_core::{keys, tenancy};
use closedloop_embedded::JournalStore;
use closedloop_embedded::outbox_mailer::OutboxMailer;
use serde_json::{Value, json};
use tower::ServiceExt;
use wiremock::matchers::{header, header_exists, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

// ── The helpdesk connector ───────────────────────────────────────────────────────────────────

/// What the mock helpdesk does with the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// 429, with `Retry-After: <s>` when set.
    RateLimited(Option<u64>),
    /// 500 with an error body.
    ServerError,
    /// Answers only after the connector's timeout (and then a 503: it did not apply it).
    Hang,
}

/// How long the connector waits for an answer here, and how long a hanging helpdesk takes.
const CALL_TIMEOUT: Duration = Duration::from_millis(300);
const HANG: Duration = Duration::from_millis(1500);

/// A helpdesk that plays a script of faults, then applies calls; it keeps what it applied.
#[derive(Default)]
struct Script {
    faults: Mutex<VecDeque<Fault>>,
    applied: Mutex<Vec<Request>>,
    calls: AtomicUsize,
}

struct Desk {
    script: Arc<Script>,
    ok: ResponseTemplate,
}

impl Respond for Desk {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.script.calls.fetch_add(1, Ordering::SeqCst);
        let next = self.script.faults.lock().unwrap().pop_front();
        match next {
            Some(Fault::RateLimited(None)) => ResponseTemplate::new(429),
            Some(Fault::RateLimited(Some(s))) => {
                ResponseTemplate::new(429).insert_header("Retry-After", s.to_string().as_str())
            }
            Some(Fault::ServerError) => ResponseTemplate::new(500)
                .set_body_json(json!({"error": "InternalError", "description": "backend down"})),
            Some(Fault::Hang) => ResponseTemplate::new(503).set_delay(HANG),
            None => {
                self.script.applied.lock().unwrap().push(request.clone());
                self.ok.clone()
            }
        }
    }
}

/// One tenant on an in-memory embedded store, its helpdesk (one vendor) at a mock server.
struct Helpdesk {
    kind: ConnectorKind,
    store: Arc<dyn ItemStore>,
    api_key: String,
    server: MockServer,
    script: Arc<Script>,
    http: reqwest::Client,
    mailer: OutboxMailer,
    webhooks: HttpWebhookSender,
}

const GENERIC_SECRET: &str = "generic-secret-0123456789abcdef";

impl Helpdesk {
    async fn start(kind: ConnectorKind) -> Helpdesk {
        let store: Arc<dyn ItemStore> = Arc::new(JournalStore::open_in_memory().unwrap());
        let provisioned = tenancy::provision_tenant(
            store.as_ref(),
            acme(),
            "Acme",
            TenantSettings::default(),
            SystemClock.now(),
        )
        .await
        .unwrap();
        let server = MockServer::start().await;
        let script = Arc::new(Script::default());
        // The vendor's documented request for an internal note; anything else gets wiremock's
        // 404, which the executor would dead-letter as refused (and the test would see).
        let mock = match kind {
            ConnectorKind::GenericWebhook => Mock::given(method("POST"))
                .and(path("/helpdesk"))
                .and(header_exists("Idempotency-Key"))
                .and(header_exists("X-Closedloop-Signature")),
            ConnectorKind::Zendesk => Mock::given(method("PUT"))
                .and(path("/api/v2/tickets/1001.json"))
                .and(header(
                    "authorization",
                    // base64("agent@acme.example/token:zd-token")
                    "Basic YWdlbnRAYWNtZS5leGFtcGxlL3Rva2VuOnpkLXRva2Vu",
                )),
            other => panic!("no mock for {other:?}"),
        };
        let ok = match kind {
            ConnectorKind::Zendesk => {
                ResponseTemplate::new(200).set_body_json(json!({"ticket": {"id": 1001}}))
            }
            _ => ResponseTemplate::new(200).set_body_json(json!({"ok": true})),
        };
        mock.respond_with(Desk {
            script: script.clone(),
            ok,
        })
        .mount(&server)
        .await;
        let http = http_client(CALL_TIMEOUT);
        let dir = common::temp_dir();
        let desk = Helpdesk {
            kind,
            http: http.clone(),
            mailer: OutboxMailer::new(dir.join("outbox"), "feedback@acme.example").unwrap(),
            webhooks: HttpWebhookSender::new(http),
            api_key: provisioned.api_key,
            store,
            server,
            script,
        };
        desk.connect(&desk.url()).await;
        desk
    }

    fn url(&self) -> String {
        match self.kind {
            ConnectorKind::GenericWebhook => format!("{}/helpdesk", self.server.uri()),
            _ => self.server.uri(),
        }
    }

    /// Points the tenant's connector at `url` (PUT /admin/v1/connector does the same).
    async fn connect(&self, url: &str) {
        let (settings, secret) = match self.kind {
            ConnectorKind::Zendesk => (
                ConnectorSettings {
                    email: Some("agent@acme.example".into()),
                    ..Default::default()
                },
                "zd-token",
            ),
            _ => (ConnectorSettings::default(), GENERIC_SECRET),
        };
        helpdesk::put_config(
            self.store.as_ref(),
            &acme(),
            self.kind,
            url,
            settings,
            Some(secret),
            SystemClock.now(),
        )
        .await
        .unwrap();
    }

    /// The connectors of one process (a Lambda instance): their tokens and the vendor's
    /// hold-offs (a 429's wait) live in it.
    fn instance(&self) -> StoreConnectorDirectory {
        StoreConnectorDirectory::new(self.store.clone(), self.http.clone())
    }

    fn executor<'a>(&'a self, connectors: &'a StoreConnectorDirectory) -> Executor<'a> {
        Executor {
            store: self.store.as_ref(),
            mailer: &self.mailer,
            connectors,
            webhooks: &self.webhooks,
            clock: &SystemClock,
            // Milliseconds, three calls at most; a Retry-After of up to 2 s is waited out.
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(40),
                max_retry_after: Duration::from_secs(2),
                budget: Duration::from_secs(10),
            },
        }
    }

    /// A fresh `action.requested`: a note on ticket 1001, caused by a `ticket.closed`.
    fn note_request(&self, text: &str) -> EventEnvelope {
        let cause = EventEnvelope::new_root(
            acme(),
            EventType::TicketClosed,
            SystemClock.now(),
            json!({"ticket": {"id": "1001"}}),
        );
        let request = ActionRequest {
            rule_id: RuleId::new(),
            rule_name: "Note the close".into(),
            action_index: 0,
            action: Action::AddInternalNote { body: text.into() },
            cause: cause.clone(),
        };
        cause.caused(
            EventType::ActionRequested,
            SystemClock.now(),
            Some(request.rule_id),
            serde_json::to_value(&request).unwrap(),
        )
    }

    /// The notes the helpdesk applied with `text`, checked against the vendor's body shape.
    fn applied(&self, text: &str) -> usize {
        let applied = self.script.applied.lock().unwrap();
        applied
            .iter()
            .filter(|r| {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                match self.kind {
                    ConnectorKind::Zendesk => {
                        body == json!({"ticket": {"comment": {"body": text, "public": false}}})
                    }
                    _ => {
                        body["operation"] == "add_internal_note"
                            && body["ticket_id"] == "1001"
                            && body["body"] == text
                            && body["idempotency_key"].as_str()
                                == r.headers
                                    .get("Idempotency-Key")
                                    .and_then(|v| v.to_str().ok())
                    }
                }
            })
            .count()
    }

    async fn admin(&self, request: HttpRequest<Body>) -> (u16, Value) {
        let app = admin_api::router(admin_api::AdminState {
            store: self.store.clone(),
            clock: Arc::new(SystemClock),
            settings: Default::default(),
            connectors: Arc::new(self.instance()),
        });
        let response = app.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn retry(&self, id: ulid::Ulid) -> (u16, Value) {
        self.admin(
            HttpRequest::post(format!("/admin/v1/failed-actions/{id}/retry"))
                .header("authorization", format!("Bearer {}", self.api_key))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn listed_failures(&self) -> Vec<Value> {
        let (status, body) = self
            .admin(
                HttpRequest::get("/admin/v1/failed-actions")
                    .header("authorization", format!("Bearer {}", self.api_key))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["failed_actions"].as_array().unwrap().clone()
    }

    /// The audit entries of ticket 1001 about `request_event`.
    async fn audit_of(&self, request_event: ulid::Ulid) -> Vec<Value> {
        audit_trail(
            self.store.as_ref(),
            &acme(),
            &TicketId::parse("1001").unwrap(),
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e["request_event_id"] == json!(request_event))
        .collect()
    }

    /// The event a replay put in the outbox.
    async fn queued(&self, event_id: &str) -> EventEnvelope {
        let item = self
            .store
            .get(&Key::new(keys::outbox_partition(&acme()), event_id))
            .await
            .unwrap()
            .expect("the replay is in the outbox");
        envelope_from_image(&item).unwrap()
    }
}

/// How one scripted action must end.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Delivered,
    /// Dead-lettered, the record's error containing this.
    DeadLetter(&'static str),
}

/// The port of a listener that was just closed: connecting to it is refused.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs each scripted action through the executor and checks that it ended delivered exactly
/// once or dead-lettered with its reason, and that a dead letter's replay delivers it exactly
/// once and a second replay does not. Returns the injected faults by kind.
async fn connector_faults(kind: ConnectorKind) -> BTreeMap<String, usize> {
    use Fault::*;
    let desk = Helpdesk::start(kind).await;
    let mut injected: BTreeMap<String, usize> = BTreeMap::new();
    // A vendor's 429 without Retry-After holds its calls off for 10 s (docs/connectors.md),
    // longer than this policy waits within one run; the generic receiver's is retried.
    let bare_429 = match kind {
        ConnectorKind::GenericWebhook => Expect::Delivered,
        _ => Expect::DeadLetter("asked us to wait 10 s"),
    };
    let cases: Vec<(&str, Vec<Fault>, Expect)> = vec![
        ("429-once", vec![RateLimited(None)], bare_429),
        (
            "429-retry-after-1",
            vec![RateLimited(Some(1))],
            Expect::Delivered,
        ),
        (
            "500-twice",
            vec![ServerError, ServerError],
            Expect::Delivered,
        ),
        ("hang-once", vec![Hang], Expect::Delivered),
        (
            "429-retry-after-3600",
            vec![RateLimited(Some(3600))],
            Expect::DeadLetter("asked us to wait 3600 s"),
        ),
        (
            "500-thrice",
            vec![ServerError; 3],
            Expect::DeadLetter("500"),
        ),
        (
            "hang-thrice",
            vec![Hang; 3],
            Expect::DeadLetter("timed out"),
        ),
        (
            "429-500-hang",
            vec![RateLimited(Some(1)), ServerError, Hang],
            Expect::DeadLetter("timed out"),
        ),
        ("refused", vec![], Expect::DeadLetter("connection refused")),
    ];
    for (name, faults, expect) in cases {
        for f in &faults {
            let label = match f {
                RateLimited(None) => "429".to_string(),
                RateLimited(Some(s)) => format!("429 Retry-After {s}"),
                ServerError => "500".into(),
                Hang => "timeout".into(),
            };
            *injected.entry(label).or_default() += 1;
        }
        let refused = name == "refused";
        if refused {
            *injected.entry("connection refused".into()).or_default() += 1;
            desk.connect(&format!("http://127.0.0.1:{}/helpdesk", closed_port()))
                .await;
        }
        *desk.script.faults.lock().unwrap() = faults.into();
        let instance = desk.instance();
        let text = format!("{name}: the customer was unhappy");
        let event = desk.note_request(&text);
        let started = Instant::now();
        let outcome = desk.executor(&instance).execute(&event).await.unwrap();
        assert!(
            desk.script.faults.lock().unwrap().is_empty(),
            "{name}: every scripted fault was met"
        );
        // A redelivery of the same request never runs it again, whatever its outcome.
        assert_eq!(
            desk.executor(&instance).execute(&event).await.unwrap(),
            ActionOutcome::AlreadyDone,
            "{name}"
        );
        match expect {
            Expect::Delivered => {
                assert!(
                    matches!(outcome, ActionOutcome::Done { .. }),
                    "{name}: {outcome:?}"
                );
                assert_eq!(desk.applied(&text), 1, "{name}: delivered exactly once");
                if name == "429-retry-after-1" {
                    assert!(
                        started.elapsed() >= Duration::from_secs(1),
                        "{name}: the Retry-After was waited out"
                    );
                }
                let audit = desk.audit_of(event.event_id).await;
                assert_eq!(audit.len(), 1, "{name}: {audit:?}");
                assert_eq!(audit[0]["outcome"], "done", "{name}");
            }
            Expect::DeadLetter(reason) => {
                let ActionOutcome::Failed {
                    dead_letter_id,
                    error,
                    ..
                } = outcome
                else {
                    panic!("{name}: {outcome:?}")
                };
                assert!(error.contains(reason), "{name}: {error}");
                assert_eq!(desk.applied(&text), 0, "{name}: nothing applied");
                // The dead letter, as the admin API lists it, and the audit say why.
                let listed = desk.listed_failures().await;
                let letter = listed
                    .iter()
                    .find(|l| l["id"] == json!(dead_letter_id))
                    .expect("listed");
                assert!(
                    letter["error"].as_str().unwrap().contains(reason),
                    "{letter}"
                );
                assert_eq!(letter["retryable"], true, "{name}: transient, so retryable");
                assert_eq!(letter["action"], "add_internal_note");
                let audit = desk.audit_of(event.event_id).await;
                assert_eq!(audit.len(), 1, "{name}: {audit:?}");
                assert_eq!(audit[0]["outcome"], "failed");
                assert_eq!(audit[0]["dead_letter_id"], json!(dead_letter_id));
                assert!(audit[0]["error"].as_str().unwrap().contains(reason));

                // The helpdesk is back; replay the dead letter.
                if refused {
                    desk.connect(&desk.url()).await;
                }
                let (status, body) = desk.retry(dead_letter_id).await;
                assert_eq!(status, 202, "{name}: {body}");
                // Later, and in another instance: a vendor's hold-off was that instance's.
                let instance = desk.instance();
                let replay = desk.queued(body["event_id"].as_str().unwrap()).await;
                let again = desk.executor(&instance).execute(&replay).await.unwrap();
                assert!(
                    matches!(again, ActionOutcome::Done { .. }),
                    "{name}: {again:?}"
                );
                assert_eq!(desk.applied(&text), 1, "{name}: the replay delivered once");
                let audit = desk.audit_of(replay.event_id).await;
                assert_eq!(audit.len(), 1, "{name}: {audit:?}");
                assert_eq!(audit[0]["outcome"], "done");
                assert_eq!(audit[0]["retry_of"], json!(dead_letter_id));
                // A second replay finds no dead letter; the replayed event redelivered does
                // nothing; the helpdesk saw one note.
                let (status, _) = desk.retry(dead_letter_id).await;
                assert_eq!(status, 404, "{name}: a second replay is refused");
                assert_eq!(
                    desk.executor(&instance).execute(&replay).await.unwrap(),
                    ActionOutcome::AlreadyDone
                );
                assert_eq!(desk.applied(&text), 1, "{name}");
                assert!(
                    !desk
                        .listed_failures()
                        .await
                        .iter()
                        .any(|l| l["id"] == json!(dead_letter_id)),
                    "{name}: the dead letter is gone"
                );
            }
        }
    }
    assert!(
        desk.listed_failures().await.is_empty(),
        "every dead letter was replayed"
    );
    injected
}

#[tokio::test]
async fn the_generic_webhook_connector_under_429_500_timeouts_and_refusal_delivers_once_or_dead_letters()
 {
    let injected = connector_faults(ConnectorKind::GenericWebhook).await;
    eprintln!("generic_webhook: injected faults {injected:?}");
}

#[tokio::test]
async fn zendesk_under_429_500_timeouts_and_refusal_delivers_once_or_dead_letters() {
    let injected = connector_faults(ConnectorKind::Zendesk).await;
    eprintln!("zendesk: injected faults {injected:?}");
}

// ── The event path: the local runner killed mid-batch ────────────────────────────────────────

use closedloop::runner::{self, RunnerConfig};

/// Set in a child process: run the runner on this data directory until killed.
const CHILD_ENV: &str = "CLOSEDLOOP_FAULTS_RUNNER_CHILD";

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(1),
        budget: Duration::from_secs(10),
    }
}

fn runner_config(dir: &std::path::Path) -> RunnerConfig {
    let mut config = RunnerConfig::new(dir, "127.0.0.1:0".parse().unwrap());
    config.run_schedules = false;
    config.action_retry = quick_retries();
    config
}

/// Does nothing in a normal run; in the child (this test binary run again with `CHILD_ENV`),
/// runs the local runner, as `closedloop up` does, until it is killed.
#[test]
fn child_process_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let running = runner::start(runner_config(&dir)).await.unwrap();
        std::fs::write(dir.join("child.addr"), running.info.base_url.as_bytes()).unwrap();
        running.run_until_signal().await;
    });
}

fn signed_ticket_created(secret: &str, ticket: usize) -> (String, String) {
    let body = json!({
        "delivery_id": format!("created-{ticket}"), "type": "ticket.created",
        "occurred_at": SystemClock.now(),
        "ticket": { "id": ticket.to_string(), "subject": format!("Ticket {ticket}"), "status": "open",
            "contact": { "id": "c1", "name": "Bob Stone", "email": "bob@customer.example" },
            "updated_at": SystemClock.now() }
    })
    .to_string();
    let signature = closedloop_core::signature::sign_timestamped(
        secret.as_bytes(),
        SystemClock.now().timestamp(),
        body.as_bytes(),
    );
    (body, signature)
}

#[tokio::test]
async fn the_runner_killed_mid_batch_and_restarted_drains_with_each_note_applied_once() {
    // More than one relay batch (100), so a kill after the first notes is mid-batch.
    const TICKETS: usize = 150;
    const KILL_AFTER: usize = 10;
    let dir = common::temp_dir();
    let server = MockServer::start().await;
    let receiver = common::NoteReceiver::new(Duration::from_millis(150));
    Mock::given(method("POST"))
        .and(path("/helpdesk"))
        .and(header_exists("X-Closedloop-Signature"))
        .respond_with(receiver.clone())
        .mount(&server)
        .await;

    // First start: the tenant, its helpdesk (the generic connector to the receiver), one rule.
    let running = runner::start(runner_config(&dir)).await.unwrap();
    let tenant = TenantId::parse(&running.info.tenant.tenant).unwrap();
    let secret = running.info.tenant.webhook_secret.clone();
    helpdesk::put_config(
        running.store(),
        &tenant,
        ConnectorKind::GenericWebhook,
        &format!("{}/helpdesk", server.uri()),
        ConnectorSettings::default(),
        Some(GENERIC_SECRET),
        SystemClock.now(),
    )
    .await
    .unwrap();
    let draft = closedloop_core::rules::parse_draft(
        json!({"name": "Note new tickets", "trigger": "ticket_created",
            "actions": [{"type": "add_internal_note", "body": "New: {{ ticket.subject }}"}]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    closedloop_core::automation::create_rule(running.store(), &tenant, draft, SystemClock.now())
        .await
        .unwrap();
    running.shutdown().await;

    // The runner in its own process, fed a batch, killed once the first notes arrive.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr_file = dir.join("child.addr");
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(base) = std::fs::read_to_string(&addr_file) {
                return base;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the child runner started");
    let http = reqwest::Client::new();
    let webhook = format!("{base}/webhooks/{tenant}/generic");
    for ticket in 1..=TICKETS {
        let (body, signature) = signed_ticket_created(&secret, ticket);
        let response = http
            .post(&webhook)
            .header("content-type", "application/json")
            .header("X-Closedloop-Signature", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "ticket {ticket}");
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while receiver.calls.lock().unwrap().len() < KILL_AFTER {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the first notes arrived");
    child.kill().unwrap(); // SIGKILL: no shutdown, no drain.
    child.wait().unwrap();
    // Calls the killed run had already sent may still be in the sockets: let them land, so
    // everything stamped before the restart came from the killed run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted_at = Instant::now();
    let before_kill = receiver.calls.lock().unwrap().len();
    assert!(
        before_kill < TICKETS,
        "killed mid-batch: {before_kill} of {TICKETS} notes were out"
    );

    // Restart on the same data directory: the outbox drains.
    let running = runner::start(runner_config(&dir)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            running.drain().await.unwrap();
            let noted = {
                let calls = receiver.calls.lock().unwrap();
                calls
                    .iter()
                    .map(|c| &c.1)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
            };
            if noted >= TICKETS {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        let calls = receiver.calls.lock().unwrap();
        let tickets: std::collections::BTreeSet<_> = calls.iter().map(|c| &c.1).collect();
        let dead: Vec<_> = std::fs::read_dir(dir.join("dead-letters"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        panic!(
            "after the restart only {} of {TICKETS} tickets got their note; bus dead letters: {}",
            tickets.len(),
            dead.len()
        )
    });
    running.drain().await.unwrap();

    // Every outbox item was relayed: the stream has nothing past the relay's checkpoint.
    let checkpoint = running
        .store
        .stream_checkpoint_get("event-relay")
        .await
        .unwrap();
    assert!(
        running
            .store
            .stream_read(checkpoint, 1)
            .await
            .unwrap()
            .is_empty()
    );
    // Nothing was dead-lettered, by the bus or as a failed action.
    let bus_dead = std::fs::read_dir(dir.join("dead-letters")).unwrap().count();
    assert_eq!(bus_dead, 0, "no delivery was given up");
    assert!(
        closedloop_core::actions::list_failed(running.store(), &tenant, 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    // Each ticket's note under one idempotency key: applied once. A call repeated with the same
    // key is one the killed run had made without recording it (the call-to-commit window).
    let calls = receiver.calls.lock().unwrap().clone();
    let mut by_ticket: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut by_key: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
    for (key, ticket, at) in &calls {
        by_ticket
            .entry(ticket.clone())
            .or_default()
            .insert(key.clone());
        by_key.entry(key.clone()).or_default().push(*at);
    }
    assert_eq!(by_ticket.len(), TICKETS, "every ticket got a note");
    for (ticket, keys) in &by_ticket {
        assert_eq!(
            keys.len(),
            1,
            "ticket {ticket}: one action, one key: {keys:?}"
        );
    }
    let repeated: Vec<_> = by_key.iter().filter(|(_, at)| at.len() > 1).collect();
    for (key, at) in &repeated {
        assert_eq!(
            at.len(),
            2,
            "{key}: sent again at most once, by the restart"
        );
        assert!(
            at[0] < restarted_at,
            "{key}: only a call the killed run had in flight is repeated"
        );
    }
    eprintln!(
        "runner kill: {TICKETS} tickets, killed after {before_kill} note calls, \
         {} calls repeated after the restart with the same key (applied once), {} calls in all",
        repeated.len(),
        calls.len()
    );
    running.shutdown().await;
}

// ── The store: conditional writes rejected under contention ─────────────────────────────────

use closedloop_core::store::{CancelReason, Item, Page, Query, StoreError, Update, WriteOp};

/// A real store whose transactions are cancelled as DynamoDB cancels them when another write
/// is touching one of their items (`TransactionConflict`): every `every`-th transaction, up to
/// `budget` of them, fails and writes nothing. Single-item conditional writes go through, so
/// their `ConditionalCheckFailed` comes from the real contention the tests make.
struct Contended {
    inner: Arc<dyn ItemStore>,
    every: usize,
    budget: AtomicUsize,
    seen: AtomicUsize,
    injected: AtomicUsize,
}

impl Contended {
    fn new(inner: Arc<dyn ItemStore>, every: usize, budget: usize) -> Self {
        Contended {
            inner,
            every,
            budget: AtomicUsize::new(budget),
            seen: AtomicUsize::new(0),
            injected: AtomicUsize::new(0),
        }
    }
}

#[async_trait::async_trait]
impl ItemStore for Contended {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(
        &self,
        item: Item,
        condition: Option<closedloop_core::store::Condition>,
    ) -> Result<(), StoreError> {
        self.inner.put(item, condition).await
    }
    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<closedloop_core::store::Condition>,
    ) -> Result<Item, StoreError> {
        self.inner.update(key, update, condition).await
    }
    async fn delete(
        &self,
        key: &Key,
        condition: Option<closedloop_core::store::Condition>,
    ) -> Result<(), StoreError> {
        self.inner.delete(key, condition).await
    }
    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.inner.query(query).await
    }
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        if n.is_multiple_of(self.every)
            && self
                .budget
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
                .is_ok()
        {
            self.injected.fetch_add(1, Ordering::SeqCst);
            let mut reasons = vec![None; ops.len()];
            reasons[ops.len() / 2] = Some(CancelReason::Conflict);
            return Err(StoreError::TransactionCanceled { reasons });
        }
        self.inner.transact_write(ops).await
    }
}

/// The completion of an action, after its helpdesk call, meets a transaction conflict: it is
/// written on a retry; the claim is not given back, so no redelivery makes the call again.
#[tokio::test]
async fn a_transaction_conflict_on_an_actions_completion_does_not_repeat_its_helpdesk_call() {
    let mut desk = Helpdesk::start(ConnectorKind::GenericWebhook).await;
    // Every transaction of this action conflicts once: its completion is the first.
    let contended = Arc::new(Contended::new(desk.store.clone(), 1, 1));
    desk.store = contended.clone();
    let instance = desk.instance();
    let event = desk.note_request("after a conflict");
    let outcome = desk.executor(&instance).execute(&event).await;
    assert_eq!(contended.injected.load(Ordering::SeqCst), 1);
    // Whatever the first delivery answered, EventBridge's redelivery must not call again.
    let again = desk.executor(&instance).execute(&event).await;
    assert_eq!(
        desk.applied("after a conflict"),
        1,
        "the note was made once (first: {outcome:?}, redelivery: {again:?})"
    );
    assert!(
        matches!(outcome, Ok(ActionOutcome::Done { .. })),
        "{outcome:?}"
    );
    assert_eq!(again.unwrap(), ActionOutcome::AlreadyDone);
    let audit = desk.audit_of(event.event_id).await;
    assert_eq!(audit.len(), 1, "one audit entry: {audit:?}");
}

/// Many customers' clicks at once on the same survey requests, then a change of choice, with a third of the store's
/// transactions cancelled as conflicts: every click is answered 200 or 503 ("click again");
/// each request keeps one review with the clicked rating, settles into one `review.received`,
/// and the report counters equal a recount of the reviews.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clicks_on_the_same_requests_under_transaction_conflicts_stay_consistent() {
    use closedloop_core::surveys::{self, LinkSigner, ScheduleOutcome};
    use closedloop_core::tokens::TokenKeyring;
    const REQUESTS: usize = 4;
    const CLICKS: usize = 16;
    let real: Arc<dyn ItemStore> = Arc::new(JournalStore::open_in_memory().unwrap());
    tenancy::provision_tenant(
        real.as_ref(),
        acme(),
        "Acme",
        TenantSettings::default(),
        SystemClock.now(),
    )
    .await
    .unwrap();
    let keyring = Arc::new(TokenKeyring::parse(&TokenKeyring::generate_spec("k1")).unwrap());
    let signer = LinkSigner {
        keyring: &keyring,
        public_base_url: "https://fb.example",
    };
    let mut targets = Vec::new();
    for ticket in 0..REQUESTS {
        let mailer = common_mail::Sent::default();
        let closed = EventEnvelope::new_root(
            acme(),
            EventType::TicketClosed,
            SystemClock.now(),
            json!({ "ticket": { "id": format!("{}", 500 + ticket), "subject": "VPN", "status": "closed",
                "contact": { "id": format!("c{ticket}"), "name": "Bob", "email": format!("bob{ticket}@example.com") },
                "updated_at": SystemClock.now() } }),
        );
        let ScheduleOutcome::Scheduled { survey, .. } =
            surveys::on_ticket_event(real.as_ref(), &mailer, &SystemClock, &signer, &closed)
                .await
                .unwrap()
        else {
            panic!("scheduled")
        };
        let text = mailer.0.lock().unwrap()[0].text.clone();
        let links: Vec<String> = text
            .lines()
            .filter_map(|l| l.split_once("https://fb.example"))
            .map(|(_, p)| p.trim().to_string())
            .filter(|p| p.starts_with("/r/") && !p.ends_with("/unsubscribe"))
            .collect();
        // Each request's link is clicked by everyone it was forwarded to; a minute later they
        // all click another choice (a change, which the default settings allow).
        let first = links[ticket % links.len()].clone();
        let second = links[(ticket + 1) % links.len()].clone();
        targets.push((survey, first, second));
    }
    let contended = Arc::new(Contended::new(real.clone(), 3, usize::MAX));
    let clock = Arc::new(closedloop_core::ports::ManualClock::new(SystemClock.now()));
    let app = rating_link::router(rating_link::RatingLinkState {
        store: contended.clone(),
        clock: clock.clone(),
        keyring: keyring.clone(),
        settings: Default::default(),
    });
    let mut answered: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for round in 0..2 {
        if round == 1 {
            // Past the burst guard: the second choice is a person's change, not a scanner.
            clock.advance(chrono::Duration::seconds(60));
        }
        let mut clicks = tokio::task::JoinSet::new();
        for (survey, first, second) in &targets {
            let link = if round == 0 { first } else { second };
            for _ in 0..CLICKS {
                let (app, link, survey) = (app.clone(), link.clone(), *survey);
                clicks.spawn(async move {
                let response = app
                    .oneshot(
                        HttpRequest::get(&link)
                            .header("user-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
                            .body(Body::empty())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                (survey, response.status().as_u16())
            });
            }
        }
        while let Some(joined) = clicks.join_next().await {
            let (survey, status) = joined.unwrap();
            let entry = answered.entry(survey.to_string()).or_default();
            match status {
                200 => entry.0 += 1,
                503 => entry.1 += 1,
                other => panic!("a click got {other}"),
            }
        }
    }
    let injected = contended.injected.load(Ordering::SeqCst);
    assert!(injected > 0, "conflicts were injected");
    let mut recount = [0u64; 3];
    for (survey, _, link) in &targets {
        let (ok, _) = answered[&survey.to_string()];
        assert!(ok > 0, "a click on {survey} was recorded");
        let item = real
            .get(&keys::review(&acme(), *survey))
            .await
            .unwrap()
            .expect("one review per request");
        let review: closedloop_core::domain::Review =
            closedloop_core::records::read_record(&item).unwrap();
        let clicked = common::link_value(&format!("https://fb.example{link}"));
        let rating = serde_json::to_value(review.rating).unwrap();
        assert!(
            rating.to_string().contains(&clicked),
            "{survey}: the last choice {clicked} is recorded: {rating}"
        );
        let bucket = ["positive", "neutral", "negative"]
            .iter()
            .position(|b| *b == clicked)
            .expect("a CSAT choice");
        recount[bucket] += 1;
    }
    // The sweep settles them (a settle cancelled by a conflict is left for the next sweep).
    let later = clock.now() + chrono::Duration::days(1);
    let mut settled = 0;
    for _ in 0..10 {
        settled += closedloop_core::ratings::settle_reviews(contended.as_ref(), later)
            .await
            .unwrap();
        if settled == REQUESTS {
            break;
        }
    }
    assert_eq!(settled, REQUESTS, "every review settled once");
    assert_eq!(
        closedloop_core::ratings::settle_reviews(contended.as_ref(), later)
            .await
            .unwrap(),
        0,
        "and only once"
    );
    // One review.received per request in the outbox, whatever the retries.
    let outbox = real
        .query(Query::partition(keys::outbox_partition(&acme())))
        .await
        .unwrap();
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for item in &outbox.items {
        let event = envelope_from_image(item).unwrap();
        if event.event_type == EventType::ReviewReceived {
            *received
                .entry(
                    event.data["review"]["survey_request_id"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
                .or_default() += 1;
        }
    }
    assert_eq!(received.len(), REQUESTS, "{received:?}");
    assert!(received.values().all(|n| *n == 1), "{received:?}");
    // The counters equal the recount.
    let today = later.date_naive();
    let counters = closedloop_core::reports::read_counters(
        real.as_ref(),
        &acme(),
        closedloop_core::reports::DateRange {
            from: today - chrono::Duration::days(1),
            to: today + chrono::Duration::days(1),
        },
        None,
    )
    .await
    .unwrap();
    let mut counted = [0u64; 3];
    for (_, _, counts) in &counters.rows {
        for (i, n) in counts.csat.iter().enumerate() {
            counted[i] += n;
        }
    }
    assert_eq!(
        counted, recount,
        "counters {counted:?}, recount {recount:?}"
    );
    let refused: usize = answered.values().map(|(_, r)| r).sum();
    eprintln!(
        "clicks: {} on {REQUESTS} requests, {} transactions, {injected} cancelled as conflicts (injected), {refused} answered 503 (click again), counters = recount {recount:?}",
        2 * REQUESTS * CLICKS,
        contended.seen.load(Ordering::SeqCst)
    );
}

mod common_mail {
    use closedloop_core::ports::{MailError, Mailer, OutgoingEmail};

    /// Keeps sent mail in memory, so the test reads the links.
    #[derive(Default)]
    pub struct Sent(pub std::sync::Mutex<Vec<OutgoingEmail>>);

    #[async_trait::async_trait]
    impl Mailer for Sent {
        async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
            self.0.lock().unwrap().push(email.clone());
            Ok("m".into())
        }
    }
}

/// Eight admins saving the same rule at once, each retrying as the API asks (409: read it
/// again; 503: send again), while a third of the transactions are cancelled as conflicts:
/// nobody gets a 500, every save lands once, versions go up by one per save with no gap or
/// repeat, and the rule ends as the last save left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rule_saves_under_transaction_conflicts_get_409_or_503_and_versions_stay_monotonic()
 {
    const ADMINS: usize = 8;
    let mut desk = Helpdesk::start(ConnectorKind::GenericWebhook).await;
    let auth = format!("Bearer {}", desk.api_key);
    let (status, created) = desk
        .admin(
            HttpRequest::post("/admin/v1/rules")
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"name": "v1", "trigger": "ticket_created",
                        "actions": [{"type": "add_internal_note", "body": "New ticket"}]})
                    .to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let contended = Arc::new(Contended::new(desk.store.clone(), 3, usize::MAX));
    desk.store = contended.clone();
    let desk = Arc::new(desk);
    let mut admins = tokio::task::JoinSet::new();
    for admin in 0..ADMINS {
        let (desk, auth, id) = (desk.clone(), auth.clone(), id.clone());
        admins.spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..40 {
                let (status, rule) = desk
                    .admin(
                        HttpRequest::get(format!("/admin/v1/rules/{id}"))
                            .header("authorization", &auth)
                            .body(Body::empty())
                            .unwrap(),
                    )
                    .await;
                if status == 503 {
                    answers.push(503);
                    continue;
                }
                assert_eq!(status, 200, "{rule}");
                let mut mine = rule.clone();
                mine["name"] = json!(format!("saved by admin {admin}"));
                let (status, saved) = desk
                    .admin(
                        HttpRequest::put(format!("/admin/v1/rules/{id}"))
                            .header("authorization", &auth)
                            .header("content-type", "application/json")
                            .body(Body::from(mine.to_string()))
                            .unwrap(),
                    )
                    .await;
                answers.push(status);
                match status {
                    200 => return (admin, saved["version"].as_u64().unwrap(), answers),
                    409 => assert_eq!(saved["error"]["code"], "version_conflict", "{saved}"),
                    503 => {}
                    other => panic!("admin {admin}: a save answered {other}: {saved}"),
                }
            }
            panic!("admin {admin} never saved: {answers:?}")
        });
    }
    let mut versions = Vec::new();
    let mut answers: BTreeMap<u16, usize> = BTreeMap::new();
    let mut last = None;
    while let Some(joined) = admins.join_next().await {
        let (admin, version, seen) = joined.unwrap();
        for status in seen {
            *answers.entry(status).or_default() += 1;
        }
        if version == 1 + ADMINS as u64 {
            last = Some(admin);
        }
        versions.push(version);
    }
    versions.sort();
    let expected: Vec<u64> = (2..=1 + ADMINS as u64).collect();
    assert_eq!(
        versions, expected,
        "one version per save, no gap, no repeat"
    );
    let (_, rule) = desk
        .admin(
            HttpRequest::get(format!("/admin/v1/rules/{id}"))
                .header("authorization", &auth)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(rule["version"], 1 + ADMINS as u64);
    assert_eq!(
        rule["name"],
        json!(format!("saved by admin {}", last.unwrap())),
        "the rule is as the last save left it"
    );
    let injected = contended.injected.load(Ordering::SeqCst);
    assert!(injected > 0);
    eprintln!(
        "rule saves: {ADMINS} admins, {injected} transaction conflicts injected, answers {answers:?}"
    );
}

/// Eight agents reassigning one case at once while an admin closes it, a third of the
/// transactions cancelled as conflicts: answers are 200, 409 `conflict` (send again) or 400
/// `case_closed`, never a 500; each 200 left exactly one history entry (nothing partial); the
/// case ends closed once, assigned to an agent whose assignment went through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_case_changes_under_transaction_conflicts_answer_409_and_leave_no_partial_write()
{
    use closedloop_core::cases;
    use closedloop_core::ids::{CaseId, SurveyRequestId};
    const AGENTS: usize = 8;
    let mut desk = Helpdesk::start(ConnectorKind::GenericWebhook).await;
    let auth = format!("Bearer {}", desk.api_key);
    let survey = SurveyRequestId::new();
    let policy = cases::policy(desk.store.as_ref(), &acme()).await.unwrap();
    let id = CaseId::new();
    let (_, writes) = cases::open(
        &acme(),
        cases::Opening {
            id,
            review: survey.to_string(),
            review_key: keys::review(&acme(), survey),
            survey_request_id: Some(survey),
            ticket_id: None,
            contact_id: None,
            account_id: None,
            assignee: None,
            origin: closedloop_core::domain::CaseOrigin::Rule,
            opened_by_rule: None,
            cause_event: ulid::Ulid::new(),
            message: None,
        },
        &policy,
        SystemClock.now(),
    );
    desk.store.transact_write(writes).await.unwrap();
    let contended = Arc::new(Contended::new(desk.store.clone(), 3, usize::MAX));
    desk.store = contended.clone();
    let desk = Arc::new(desk);
    let mut changes = tokio::task::JoinSet::new();
    for who in 0..=AGENTS {
        let (desk, auth) = (desk.clone(), auth.clone());
        changes.spawn(async move {
            // The last one closes; the others assign themselves.
            let (path, body) = if who == AGENTS {
                (
                    "close",
                    json!({"option_id": "issue-fixed", "by": "a-admin"}),
                )
            } else {
                (
                    "assign",
                    json!({"agent_id": format!("a-{who}"), "by": format!("a-{who}")}),
                )
            };
            let mut answers = Vec::new();
            for _ in 0..40 {
                let (status, answer) = desk
                    .admin(
                        HttpRequest::post(format!("/admin/v1/cases/{id}/{path}"))
                            .header("authorization", &auth)
                            .header("content-type", "application/json")
                            .body(Body::from(body.to_string()))
                            .unwrap(),
                    )
                    .await;
                answers.push(status);
                match (status, answer["error"]["code"].as_str()) {
                    (200, _) => return (who, true, answers),
                    (400, Some("case_closed")) => return (who, false, answers),
                    (409, Some("conflict")) | (503, _) => {}
                    (other, _) => panic!("{path} by {who} answered {other}: {answer}"),
                }
            }
            panic!("{path} by {who} never got through: {answers:?}")
        });
    }
    let mut answers: BTreeMap<u16, usize> = BTreeMap::new();
    let mut succeeded = 0;
    let mut closed = false;
    while let Some(joined) = changes.join_next().await {
        let (who, ok, seen) = joined.unwrap();
        for status in seen {
            *answers.entry(status).or_default() += 1;
        }
        if ok {
            succeeded += 1;
            closed |= who == AGENTS;
        }
    }
    assert!(closed, "the close went through");
    let (case, history) = cases::get_with_history(contended.as_ref(), &acme(), id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(case.status, closedloop_core::domain::CaseStatus::Closed);
    assert_eq!(
        history.len(),
        1 + succeeded,
        "the opening and one entry per change that answered 200: {history:?}"
    );
    // One close; the assignee is one that an assignment answering 200 wrote. (History entries
    // are stamped when their request began, so concurrent ones need not sort in commit order.)
    let kinds: Vec<Value> = history
        .iter()
        .map(|h| serde_json::to_value(&h.change).unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| k["kind"] == "closed").count(),
        1,
        "{kinds:?}"
    );
    let assigned: Vec<&str> = kinds
        .iter()
        .filter(|k| k["kind"] == "assigned")
        .filter_map(|k| k["to"].as_str())
        .collect();
    assert_eq!(assigned.len(), succeeded - 1, "{kinds:?}");
    match &case.assignee {
        Some(agent) => assert!(assigned.contains(&agent.as_str()), "{agent:?} {kinds:?}"),
        None => assert!(assigned.is_empty(), "{kinds:?}"),
    }
    let injected = contended.injected.load(Ordering::SeqCst);
    assert!(injected > 0);
    eprintln!(
        "case changes: {AGENTS} assigns + 1 close, {injected} transaction conflicts injected, {succeeded} went through, answers {answers:?}"
    );
}
