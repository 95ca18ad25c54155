//! Connector overhead and throughput under the vendors' rate limits, on loopback only, bounded.
//!
//! `cargo bench -p closedloop-connectors --bench connectors --profile profiling`
//!
//! 1. Per call: a bare reqwest POST of a small JSON body to a local wiremock server, then each
//!    vendor connector's `add_internal_note` against the same kind of server (token cached).
//! 2. The `actions` executor (journal store in memory, Zendesk connector, one note per action):
//!    actions per second with no limit in the way.
//! 3. Each vendor's limit, modelled: the client-side cap (Kaseya BMS 1,500/h per endpoint,
//!    Autotask 10,000/h) through the real `Limiter`, time-scaled 1,000×, with every allowed call
//!    made to wiremock; the header-limited vendors (Zendesk, Freshdesk, ConnectWise, HaloPSA) as
//!    a server that counts calls per window and answers 429 past its limit, and the connector
//!    holding off on `X-RateLimit-Remaining: 0` until `ratelimit-reset` (the limit kept at its
//!    ratio in 4-second windows). Each reports calls made per window, the most in any window,
//!    and the 429s seen.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use closedloop_connectors::{Cap, Connectors, Limiter, StoreConnectorDirectory, http_client};
use closedloop_core::helpdesk::{
    ConnectorConfig, ConnectorError, ConnectorKind, ConnectorSettings, HelpdeskConnector,
};
use closedloop_core::ids::{TenantId, TicketId};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const CALLS: usize = 2000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

fn report(name: &str, mut samples: Vec<Duration>, bare: Option<Duration>) -> Duration {
    samples.sort();
    let median = percentile(&samples, 0.5);
    let extra = bare
        .map(|b| {
            format!(
                "  overhead {:>6.1} µs",
                (median.as_secs_f64() - b.as_secs_f64()) * 1e6
            )
        })
        .unwrap_or_default();
    println!(
        "{name:<28} median {:>7.1} µs  p99 {:>7.1} µs{extra}",
        median.as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6
    );
    median
}

fn settings(kind: ConnectorKind) -> ConnectorSettings {
    let s = |v: &str| Some(v.to_string());
    match kind {
        ConnectorKind::KaseyaBms => ConnectorSettings {
            username: s("u"),
            company: s("c"),
            ..Default::default()
        },
        ConnectorKind::Connectwise => ConnectorSettings {
            company: s("c"),
            public_key: s("p"),
            client_id: s("id"),
            ..Default::default()
        },
        ConnectorKind::Autotask => ConnectorSettings {
            username: s("u"),
            integration_code: s("code"),
            ..Default::default()
        },
        ConnectorKind::Halopsa => ConnectorSettings {
            client_id: s("id"),
            ..Default::default()
        },
        ConnectorKind::Zendesk => ConnectorSettings {
            email: s("a@x.example"),
            ..Default::default()
        },
        _ => ConnectorSettings::default(),
    }
}

/// A server that answers every vendor's calls: tokens, the Autotask zone, 200 for the rest.
async fn helpdesk() -> MockServer {
    let server = MockServer::start().await;
    let uri = server.uri();
    Mock::given(path("/v2/security/authenticate"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"Success": true,
            "Result": {"AccessToken": "t", "AccessTokenExpireOn": "2099-01-01T00:00:00Z"}})),
        )
        .mount(&server)
        .await;
    Mock::given(path("/auth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "t", "expires_in": 3600})),
        )
        .mount(&server)
        .await;
    Mock::given(path("/atservicesrest/v1.0/zoneInformation"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"url": format!("{uri}/atservicesrest/")})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"Success": true, "Result": {"Id": 1}})),
        )
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ticket": {"id": 1}})))
        .mount(&server)
        .await;
    server
}

fn connector(
    connectors: &Connectors,
    kind: ConnectorKind,
    uri: &str,
) -> Arc<dyn HelpdeskConnector> {
    let url = match kind {
        ConnectorKind::Autotask => format!("{uri}/atservicesrest"),
        _ => uri.to_string(),
    };
    connectors.build(
        &TenantId::parse("acme").unwrap(),
        ConnectorConfig {
            kind,
            url,
            secret: "bench-secret-0123456789".into(),
            settings: settings(kind),
            updated_at: chrono::Utc::now(),
            account_block_limits: None,
        },
    )
}

async fn overhead() {
    println!("== per call, loopback wiremock, {CALLS} sequential calls each ==");
    let server = helpdesk().await;
    let client = http_client(Duration::from_secs(5));
    let url = format!("{}/bare", server.uri());
    let mut bare = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        let r = client
            .post(&url)
            .json(&json!({"body": "Customer unhappy", "private": true}))
            .send()
            .await
            .unwrap();
        let _ = r.bytes().await.unwrap();
        bare.push(t.elapsed());
    }
    let base = report("bare reqwest POST", bare, None);
    let connectors = Connectors::new(client);
    let t = TicketId::parse("1001").unwrap();
    for kind in [
        ConnectorKind::KaseyaBms,
        ConnectorKind::Connectwise,
        ConnectorKind::Autotask,
        ConnectorKind::Halopsa,
        ConnectorKind::Zendesk,
        ConnectorKind::Freshdesk,
        ConnectorKind::GenericWebhook,
    ] {
        // As the directory does: a connector per call, tokens and zones shared.
        connector(&connectors, kind, &server.uri())
            .add_internal_note("k", &t, "warm-up")
            .await
            .unwrap();
        let mut samples = Vec::with_capacity(CALLS);
        for _ in 0..CALLS.min(1400) {
            let c = connector(&connectors, kind, &server.uri());
            let started = Instant::now();
            c.add_internal_note("k", &t, "Customer unhappy")
                .await
                .unwrap();
            samples.push(started.elapsed());
        }
        report(kind.as_str(), samples, Some(base));
    }
}

async fn executor_throughput() -> f64 {
    use closedloop_connectors::HttpWebhookSender;
    use closedloop_core::actions::{Executor, RetryPolicy};
    use closedloop_core::automation::ActionRequest;
    use closedloop_core::domain::TenantSettings;
    use closedloop_core::event::{EventEnvelope, EventType};
    use closedloop_core::ids::RuleId;
    use closedloop_core::ports::SystemClock;
    use closedloop_core::rules::Action;
    use closedloop_core::store::ItemStore;
    use closedloop_core::{helpdesk, tenancy};
    use closedloop_embedded::JournalStore;
    use closedloop_embedded::outbox_mailer::OutboxMailer;

    let store: Arc<dyn ItemStore> = Arc::new(JournalStore::open_in_memory().unwrap());
    let tenant = TenantId::parse("acme").unwrap();
    tenancy::provision_tenant(
        store.as_ref(),
        tenant.clone(),
        "Acme",
        TenantSettings::default(),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let server = helpdesk().await;
    helpdesk::put_config(
        store.as_ref(),
        &tenant,
        ConnectorKind::Zendesk,
        &server.uri(),
        settings(ConnectorKind::Zendesk),
        Some("token"),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let http = http_client(Duration::from_secs(5));
    let directory = StoreConnectorDirectory::new(store.clone(), http.clone());
    let mail = std::env::temp_dir().join("closedloop-bench-mail");
    let mailer = OutboxMailer::new(&mail, "f@acme.example").unwrap();
    let webhooks = HttpWebhookSender::new(http);
    let executor = Executor {
        store: store.as_ref(),
        mailer: &mailer,
        connectors: &directory,
        webhooks: &webhooks,
        clock: &SystemClock,
        retry: RetryPolicy::default(),
    };
    let n = 500;
    let cause = EventEnvelope::new_root(
        tenant.clone(),
        EventType::TicketClosed,
        chrono::Utc::now(),
        json!({"ticket": {"id": "1001"}, "source": "zendesk"}),
    );
    let started = Instant::now();
    for _ in 0..n {
        let request = ActionRequest {
            rule_id: RuleId::new(),
            rule_name: "bench".into(),
            action_index: 0,
            action: Action::AddInternalNote {
                body: "Customer unhappy".into(),
            },
            cause: cause.clone(),
        };
        let event = cause.caused(
            EventType::ActionRequested,
            chrono::Utc::now(),
            Some(request.rule_id),
            serde_json::to_value(&request).unwrap(),
        );
        executor.execute(&event).await.unwrap();
    }
    let per_second = n as f64 / started.elapsed().as_secs_f64();
    println!(
        "\n== actions executor ==\n{n} add_internal_note actions (Zendesk, journal store in memory): {per_second:.0} actions/s, one helpdesk call each"
    );
    per_second
}

/// The client-side caps, through the real `Limiter`, time-scaled: a window of `per / scale`.
async fn client_side_cap(name: &str, calls: u32, per: Duration, executor_rate: f64) {
    const SCALE: u32 = 1000;
    let server = helpdesk().await;
    let client = http_client(Duration::from_secs(5));
    let window = per / SCALE;
    let limiter = Limiter::new(Some(Cap { calls, per: window }));
    let url = format!("{}/v2/servicedesk/tickets/1/notes", server.uri());
    let mut stamps: Vec<Instant> = Vec::new();
    let (mut refused, started) = (0u64, Instant::now());
    // Three windows, offering calls as fast as the client goes.
    while started.elapsed() < window * 3 {
        match limiter.acquire("POST /v2/servicedesk/tickets/{id}/notes") {
            Ok(()) => {
                // Counted when let through, as the limiter counts (the vendor sees it a
                // loopback round trip later at most).
                stamps.push(Instant::now());
                client.post(&url).json(&json!({})).send().await.unwrap();
            }
            Err(ConnectorError::RateLimited { retry_after }) => {
                refused += 1;
                tokio::time::sleep(
                    retry_after
                        .unwrap_or_default()
                        .min(Duration::from_millis(2)),
                )
                .await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // The most calls in any window the vendor would count.
    let mut worst = 0;
    for (i, s) in stamps.iter().enumerate() {
        worst = worst.max(
            stamps[i..]
                .iter()
                .take_while(|t| t.duration_since(*s) < window)
                .count(),
        );
    }
    let real_rate = calls as f64 / per.as_secs_f64();
    println!(
        "{name:<12} cap {calls}/{}s: {} calls in 3 scaled windows, at most {worst} in any window (cap {calls}), {refused} refused before leaving; sustained {:.2} calls/s per endpoint or account (executor alone: {executor_rate:.0}/s)",
        per.as_secs(),
        stamps.len(),
        real_rate.min(executor_rate)
    );
    assert!(worst <= calls as usize, "the cap was exceeded");
}

/// A vendor server that allows `limit` calls per `window` and says so in its headers.
struct Windowed {
    limit: u64,
    window: Duration,
    started: Instant,
    counts: std::sync::Mutex<Vec<u64>>,
    too_many: AtomicU64,
}

impl Respond for Windowed {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let slot = (self.started.elapsed().as_nanos() / self.window.as_nanos()) as usize;
        let mut counts = self.counts.lock().unwrap();
        if counts.len() <= slot {
            counts.resize(slot + 1, 0);
        }
        let into = self.started.elapsed().as_millis() as u64 % self.window.as_millis() as u64;
        let reset_secs = (self.window.as_millis() as u64 - into).div_ceil(1000);
        if counts[slot] >= self.limit {
            self.too_many.fetch_add(1, Ordering::SeqCst);
            return ResponseTemplate::new(429)
                .insert_header("Retry-After", reset_secs.to_string().as_str());
        }
        counts[slot] += 1;
        let left = self.limit - counts[slot];
        ResponseTemplate::new(200)
            .insert_header("X-RateLimit-Remaining", left.to_string().as_str())
            .insert_header("ratelimit-reset", reset_secs.to_string().as_str())
            .set_body_json(json!({"ticket": {"id": 1}}))
    }
}

/// A server-side limit of `limit` per `per`, kept at its ratio in 4-second windows (the reset
/// header counts whole seconds).
async fn header_limited(name: &str, limit: u64, per: Duration, executor_rate: f64) {
    let server = MockServer::start().await;
    let window = Duration::from_secs(4);
    let scaled = ((limit as f64 * 4.0 / per.as_secs_f64()).round() as u64).max(1);
    let responder = Arc::new(Windowed {
        limit: scaled,
        window,
        started: Instant::now(),
        counts: std::sync::Mutex::new(vec![]),
        too_many: AtomicU64::new(0),
    });
    struct Shared(Arc<Windowed>);
    impl Respond for Shared {
        fn respond(&self, r: &Request) -> ResponseTemplate {
            self.0.respond(r)
        }
    }
    Mock::given(method("PUT"))
        .respond_with(Shared(responder.clone()))
        .mount(&server)
        .await;
    let connectors = Connectors::new(http_client(Duration::from_secs(5)));
    let c = connector(&connectors, ConnectorKind::Zendesk, &server.uri());
    let t = TicketId::parse("1001").unwrap();
    let (held, started) = (AtomicUsize::new(0), Instant::now());
    while started.elapsed() < window * 3 {
        match c.add_internal_note("k", &t, "x").await {
            Ok(()) => {}
            Err(ConnectorError::RateLimited { .. }) => {
                held.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let counts = responder.counts.lock().unwrap().clone();
    let worst = counts.iter().copied().max().unwrap_or(0);
    println!(
        "{name:<12} limit {limit}/{}s (server-side, as {scaled} per 4 s): calls per window {counts:?}, at most {worst}, {} answered 429, {} held back client-side; sustained {:.2} calls/s",
        per.as_secs(),
        responder.too_many.load(Ordering::SeqCst),
        held.load(Ordering::SeqCst),
        (limit as f64 / per.as_secs_f64()).min(executor_rate)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    overhead().await;
    let rate = executor_throughput().await;
    println!("\n== under each vendor's limit (windows scaled 1000x; rates given in real time) ==");
    client_side_cap(
        "kaseya_bms",
        closedloop_connectors::KASEYA_HOURLY_CAP,
        Duration::from_secs(3600),
        rate,
    )
    .await;
    client_side_cap("autotask", 10_000, Duration::from_secs(3600), rate).await;
    header_limited("zendesk", 700, Duration::from_secs(60), rate).await;
    header_limited("freshdesk", 3000, Duration::from_secs(3600), rate).await;
}
