//! Rating clicks through the local runner, against its health endpoint in the same run.
//!
//! `cargo run --release -p closedloop --example bench_clicks -- [clicks] [connections] [rate] [seconds]`
//! (defaults 20000, 32, 1000, 10). Loopback only, bounded in count and time.
//!
//! It starts the runner on a fresh embedded store, sends N real rating requests through the core
//! (`surveys::on_ticket_event`), then measures, for the health endpoint and for clicks:
//! 1. throughput: `connections` keep-alive connections as fast as they go (each link once), in
//!    three rounds of health then clicks (timed until their events are relayed), so both see
//!    the same machine; the ratio reported is
//!    the median of the three rounds' ratios (this machine's speed drifts by ±20% over seconds);
//! 2. latency at a fixed rate: requests scheduled every 1/rate s for `seconds`, timed from their
//!    scheduled moment (open loop, so a slow server cannot hide its queue).
//!
//! Finally it counts the reviews in the store: they must equal the clicks answered 200.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

/// The same allocator as the `closedloop` binary, so the figures are the runner's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use closedloop::runner::{self, RunnerConfig};
use closedloop_core::event::{EventEnvelope, EventType};
use closedloop_core::ids::{SurveyRequestId, TenantId};
use closedloop_core::keys;
use closedloop_core::ports::{Clock, MailError, Mailer, OutgoingEmail, SystemClock};
use closedloop_core::surveys::{self, LinkSigner, ScheduleOutcome};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const PHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

/// The emails are not the point here; the requests they name are.
struct NoMail;

#[async_trait]
impl Mailer for NoMail {
    async fn send(&self, _: &OutgoingEmail) -> Result<String, MailError> {
        Ok("bench".into())
    }
}

/// A minimal HTTP/1.1 keep-alive client: GET, read the head, read Content-Length bytes.
struct Connection {
    stream: BufReader<TcpStream>,
    request: Vec<u8>,
    line: String,
    body: Vec<u8>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Connection {
            stream: BufReader::new(stream),
            request: Vec::with_capacity(512),
            line: String::new(),
            body: Vec::new(),
        }
    }

    /// Returns the status code.
    async fn get(&mut self, path: &str) -> u16 {
        self.request.clear();
        self.request.extend_from_slice(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {PHONE}\r\n\r\n")
                .as_bytes(),
        );
        self.stream
            .get_mut()
            .write_all(&self.request)
            .await
            .expect("write");
        let mut status = 0;
        let mut length = 0usize;
        loop {
            self.line.clear();
            self.stream.read_line(&mut self.line).await.expect("read");
            let line = self.line.trim_end();
            if status == 0 {
                status = line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .expect("status line");
            } else if line.is_empty() {
                break;
            } else if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("content-length");
            } else if line.to_ascii_lowercase().starts_with("transfer-encoding") {
                panic!("chunked responses are not expected here");
            }
        }
        self.body.resize(length, 0);
        self.stream.read_exact(&mut self.body).await.expect("body");
        status
    }
}

struct Measured {
    requests: usize,
    ok: usize,
    seconds: f64,
    latencies_us: Vec<u64>,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
    fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
    }
}

/// How requests are sent.
#[derive(Clone, Copy)]
enum Pace {
    /// As fast as the connections go, for at most this long; timed from sending.
    Max(Duration),
    /// One request every 1/rate s, timed from its scheduled moment (open loop: a slow server
    /// cannot hide its queue).
    Fixed(usize),
}

/// Sends each of `paths` once over `connections` keep-alive connections.
async fn load(
    addr: SocketAddr,
    paths: Arc<Vec<String>>,
    connections: usize,
    pace: Pace,
) -> Measured {
    // A fixed schedule starts a moment ahead, once every connection is open.
    let start = match pace {
        Pace::Max(_) => Instant::now(),
        Pace::Fixed(_) => Instant::now() + Duration::from_millis(50),
    };
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (paths, next, ok) = (paths.clone(), next.clone(), ok.clone());
        tasks.spawn(async move {
            let mut connection = Connection::open(addr).await;
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= paths.len() {
                    return latencies;
                }
                let timed_from = match pace {
                    Pace::Max(limit) if start.elapsed() > limit => return latencies,
                    Pace::Max(_) => Instant::now(),
                    Pace::Fixed(rate) => {
                        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                };
                if connection.get(&paths[i]).await == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                latencies.push(timed_from.elapsed().as_micros() as u64);
            }
        });
    }
    let mut latencies_us = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies_us.extend(done.expect("load task"));
    }
    Measured {
        requests: latencies_us.len(),
        ok: ok.load(Ordering::Relaxed),
        seconds: start.elapsed().as_secs_f64(),
        latencies_us,
    }
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .map(|a| a.parse().expect("numeric arguments"))
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let clicks = arg(1, 20_000);
    let connections = arg(2, 32);
    let rate = arg(3, 1_000);
    let seconds = arg(4, 10);
    assert!(
        clicks > 0 && connections > 0 && rate > 0 && seconds > 0,
        "clicks, connections, rate and seconds must all be at least 1"
    );
    let paced = rate * seconds;

    let dir = std::env::temp_dir().join(format!("closedloop-bench-{}", ulid::Ulid::new()));
    let mut config = RunnerConfig::new(&dir, "127.0.0.1:0".parse().unwrap());
    config.run_schedules = false;
    let running = runner::start(config).await.expect("runner starts");
    let addr = running.addr;
    let tenant = TenantId::parse(&running.info.tenant.tenant).unwrap();
    let store = running.functions.store.clone();
    let keyring = running.functions.keyring.clone();

    eprintln!("seeding {} sent rating requests ...", clicks + paced);
    let seeded = Instant::now();
    // Eight tickets at a time, like a busy helpdesk; each goes through the real scheduler.
    let total = clicks + paced;
    let mut seeders = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (store, keyring, tenant) = (store.clone(), keyring.clone(), tenant.clone());
        seeders.spawn(async move {
            let signer = LinkSigner {
                keyring: &keyring,
                public_base_url: "",
            };
            let mut seeded = Vec::new();
            for n in (worker..total).step_by(8) {
                let ticket = serde_json::json!({ "ticket": { "id": format!("B{n}"), "subject": "Bench",
                    "status": "closed", "contact": { "id": format!("c{n}"), "name": "Bench",
                    "email": format!("c{n}@bench.example") }, "updated_at": SystemClock.now() } });
                let event = EventEnvelope::new_root(
                    tenant.clone(),
                    EventType::TicketClosed,
                    SystemClock.now(),
                    ticket,
                );
                let ScheduleOutcome::Scheduled { survey, .. } =
                    surveys::on_ticket_event(store.as_ref(), &NoMail, &SystemClock, &signer, &event)
                        .await
                        .expect("seeding")
                else {
                    panic!("each bench ticket gets one request");
                };
                let link = signer.rating_url(&tenant, survey, "positive", SystemClock.now());
                seeded.push((n, survey, link));
            }
            seeded
        });
    }
    let mut seeded_all = Vec::with_capacity(total);
    while let Some(done) = seeders.join_next().await {
        seeded_all.extend(done.expect("seeding task"));
    }
    seeded_all.sort_by_key(|(n, _, _)| *n);
    let surveys_sent: Vec<SurveyRequestId> = seeded_all.iter().map(|(_, s, _)| *s).collect();
    let links_by_survey: Vec<String> = seeded_all.into_iter().map(|(_, _, l)| l).collect();
    running.drain().await.expect("drain");
    eprintln!("seeded in {:.1} s", seeded.elapsed().as_secs_f64());

    // Health runs for `seconds` a round; clicks run until the round's links are clicked (or
    // 3 × `seconds`).
    const ROUNDS: usize = 3;
    let health: Arc<Vec<String>> = Arc::new(vec!["/admin/v1/health".to_string(); 2_000_000]);
    let limit = Duration::from_secs(seconds as u64 * 3);
    let (click_paths, paced_paths) = links_by_survey.split_at(clicks);
    let mut rounds = Vec::new();
    for round_links in click_paths.chunks(clicks.div_ceil(ROUNDS)) {
        let health_max = load(
            addr,
            health.clone(),
            connections,
            Pace::Max(Duration::from_secs(seconds as u64)),
        )
        .await;
        let mut clicks_max = load(
            addr,
            Arc::new(round_links.to_vec()),
            connections,
            Pace::Max(limit),
        )
        .await;
        // A click's work ends when its review.recorded is relayed; count that time too, or the
        // relay's backlog would slow the next health round instead.
        let relaying = Instant::now();
        running.drain().await.expect("drain");
        let relayed_in = relaying.elapsed().as_secs_f64();
        clicks_max.seconds += relayed_in;
        eprintln!(
            "round {}: clicks took {:.2} s, relaying their events {:.2} s more",
            rounds.len() + 1,
            clicks_max.seconds - relayed_in,
            relayed_in
        );
        rounds.push((health_max, clicks_max));
    }
    let health_paced = load(
        addr,
        Arc::new(vec!["/admin/v1/health".to_string(); paced]),
        connections,
        Pace::Fixed(rate),
    )
    .await;
    let clicks_paced = load(
        addr,
        Arc::new(paced_paths.to_vec()),
        connections,
        Pace::Fixed(rate),
    )
    .await;

    running.drain().await.expect("drain");
    let mut stored = 0;
    for survey in &surveys_sent {
        if store
            .get(&keys::review(&tenant, *survey))
            .await
            .expect("read")
            .is_some()
        {
            stored += 1;
        }
    }
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "{:<22} {:>9} {:>9} {:>10} {:>9} {:>9}",
        "target", "requests", "200s", "req/s", "p50 ms", "p99 ms"
    );
    let mut rows: Vec<(String, &Measured)> = Vec::new();
    for (n, (health_max, clicks_max)) in rounds.iter().enumerate() {
        rows.push((format!("health, max, round {}", n + 1), health_max));
        rows.push((format!("clicks, max, round {}", n + 1), clicks_max));
    }
    rows.push(("health, fixed rate".into(), &health_paced));
    rows.push(("clicks, fixed rate".into(), &clicks_paced));
    for (name, m) in rows {
        println!(
            "{:<22} {:>9} {:>9} {:>10.0} {:>9.2} {:>9.2}",
            name,
            m.requests,
            m.ok,
            m.per_second(),
            m.percentile_ms(0.5),
            m.percentile_ms(0.99)
        );
    }
    let mut ratios: Vec<f64> = rounds
        .iter()
        .map(|(health, clicks)| clicks.per_second() / health.per_second())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let clicks_answered: usize = rounds.iter().map(|(_, c)| c.ok).sum();
    let clicks_sent: usize = rounds.iter().map(|(_, c)| c.requests).sum();
    let answered = clicks_answered + clicks_paced.ok;
    println!(
        "clicks/health throughput ratio: median {:.2} (rounds: {})",
        ratios[ratios.len() / 2],
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "fixed rate {rate}/s: p99 clicks/health ratio: {:.2}",
        clicks_paced.percentile_ms(0.99) / health_paced.percentile_ms(0.99).max(0.001)
    );
    println!(
        "clicks answered 200: {answered}; reviews in the store: {stored}; lost: {}",
        answered as i64 - stored as i64
    );
    let failed = clicks_sent + clicks_paced.requests - answered;
    if stored != answered || failed > 0 || answered == 0 {
        eprintln!("FAIL: {failed} clicks not answered 200, {stored} stored of {answered}");
        std::process::exit(1);
    }
}
