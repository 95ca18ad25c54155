//! Bounded load runs against a runner on 127.0.0.1 (`docs/load.md`): rating clicks, several of
//! them at once on the same survey request, and signed webhook deliveries with redeliveries in
//! random order. Each run then reads the store and the outbox back and lists every invariant
//! that does not hold: a lost rating, a fork in a review's chain of writes (a lost update), a
//! duplicate `review.received`, counters that differ from a recount, a delivery with other than
//! exactly one effect. `scripts/load.sh` runs them at full size; `tests/tests/load.rs` small.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use closedloop_core::domain::{Rating, Review, SurveyKind, TenantSettings};
use closedloop_core::event::{EventEnvelope, EventType};
use closedloop_core::ids::{SurveyRequestId, TenantId};
use closedloop_core::keys;
use closedloop_core::outbox::envelope_from_image;
use closedloop_core::ports::{Clock, MailError, Mailer, OutgoingEmail};
use closedloop_core::records::read_record;
use closedloop_core::reports::{self, Counts, DateRange};
use closedloop_core::store::{ItemExt, ItemStore, Query, StoreError};
use closedloop_core::surveys::{self, LinkSigner, ScheduleOutcome};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::functions::SURVEY_SCHEDULER;
use crate::runner::Running;

/// A phone's browser: other user agents are taken for mail scanners and record nothing.
pub const PHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

/// The system clock plus an offset the run moves forward, so that change windows and the
/// burst guard pass without waiting for them.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_ms: AtomicI64,
}

impl OffsetClock {
    pub fn advance(&self, by: chrono::Duration) {
        self.offset_ms
            .fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }
}

/// Seeding sends no email: the requests are the point, not their messages.
struct NoMail;

#[async_trait]
impl Mailer for NoMail {
    async fn send(&self, _: &OutgoingEmail) -> Result<String, MailError> {
        Ok("load".into())
    }
}

// ── A minimal HTTP/1.1 keep-alive client ─────────────────────────────────────────────────────

/// One keep-alive connection: a request, then its head and Content-Length body.
pub struct Connection {
    stream: BufReader<TcpStream>,
    request: Vec<u8>,
    line: String,
    pub body: Vec<u8>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream: BufReader::new(stream),
            request: Vec::with_capacity(1024),
            line: String::new(),
            body: Vec::new(),
        })
    }

    /// Sends one request and returns the status; the answer's body is left in `self.body`.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<u16> {
        use std::io::Write;
        self.request.clear();
        write!(
            self.request,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {PHONE}\r\n"
        )?;
        for (name, value) in headers {
            write!(self.request, "{name}: {value}\r\n")?;
        }
        if method != "GET" {
            write!(self.request, "Content-Length: {}\r\n", body.len())?;
        }
        self.request.extend_from_slice(b"\r\n");
        self.request.extend_from_slice(body);
        self.stream.get_mut().write_all(&self.request).await?;
        let mut status = 0;
        let mut length = 0usize;
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        loop {
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                return Err(bad("connection closed mid-answer"));
            }
            let line = self.line.trim_end();
            if status == 0 {
                status = line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad("no status line"))?;
            } else if line.is_empty() {
                break;
            } else if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().map_err(|_| bad("content-length"))?;
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(bad("chunked answers are not expected here"));
                }
            }
        }
        self.body.resize(length, 0);
        self.stream.read_exact(&mut self.body).await?;
        Ok(status)
    }
}

/// One request of a run, and what to remember of its answer.
#[derive(Clone)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// An answer: status and the part of the body the checks read.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub latency_us: u64,
}

/// Throughput and latency of one batch of requests.
#[derive(Debug, Clone)]
pub struct Measured {
    pub requests: usize,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Measured {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }
    fn of(answers: &[Answer], seconds: f64) -> Measured {
        let mut sorted: Vec<u64> = answers.iter().map(|a| a.latency_us).collect();
        sorted.sort_unstable();
        let pct = |p: f64| {
            let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
            sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
        };
        Measured {
            requests: answers.len(),
            seconds,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
        }
    }
}

/// Sends every request once, in order, over `connections` keep-alive connections taking the
/// next one as soon as they are free (so neighbours in the list run at the same time). `keep`
/// says which answers' bodies to keep (the rest are dropped to save memory).
pub async fn send_all(
    addr: SocketAddr,
    requests: Arc<Vec<Request>>,
    connections: usize,
    keep_body: fn(&Request) -> bool,
) -> std::io::Result<(Vec<Answer>, Measured)> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections.max(1) {
        let (requests, next) = (requests.clone(), next.clone());
        tasks.spawn(async move {
            let mut connection = Connection::open(addr).await?;
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(i) else {
                    return Ok::<_, std::io::Error>(answers);
                };
                let headers: Vec<(&str, &str)> = request
                    .headers
                    .iter()
                    .map(|(n, v)| (*n, v.as_str()))
                    .collect();
                let sent = Instant::now();
                let status = connection
                    .send(request.method, &request.path, &headers, &request.body)
                    .await?;
                let latency_us = sent.elapsed().as_micros() as u64;
                let body = if keep_body(request) {
                    String::from_utf8_lossy(&connection.body).into_owned()
                } else {
                    String::new()
                };
                answers.push((
                    i,
                    Answer {
                        status,
                        body,
                        latency_us,
                    },
                ));
            }
        });
    }
    let mut all = vec![Answer::default(); requests.len()];
    while let Some(done) = tasks.join_next().await {
        for (i, answer) in done.expect("load task")? {
            all[i] = answer;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let measured = Measured::of(&all, seconds);
    Ok((all, measured))
}

/// One measured run through `running`: the health baseline at the same request count and
/// concurrency, then `requests` (bodies kept), then the outbox drained (timed apart).
async fn measured_run(
    running: &Running,
    requests: Vec<Request>,
    connections: usize,
) -> Result<(Measured, Vec<Answer>, Measured, f64), String> {
    let addr = running.addr;
    let baseline = health(addr, requests.len(), connections)
        .await
        .map_err(|e| e.to_string())?;
    let (answers, measured) = send_all(addr, Arc::new(requests), connections, |_| true)
        .await
        .map_err(|e| e.to_string())?;
    let relaying = Instant::now();
    running.drain().await.map_err(|e| e.to_string())?;
    Ok((
        baseline,
        answers,
        measured,
        relaying.elapsed().as_secs_f64(),
    ))
}

/// The baseline: the runner's health endpoint, `requests` times at the same concurrency.
pub async fn health(
    addr: SocketAddr,
    requests: usize,
    connections: usize,
) -> std::io::Result<Measured> {
    let request = Request {
        method: "GET",
        path: "/admin/v1/health".into(),
        headers: vec![],
        body: vec![],
    };
    let (answers, measured) =
        send_all(addr, Arc::new(vec![request; requests]), connections, |_| {
            false
        })
        .await?;
    let failed = answers.iter().filter(|a| a.status != 200).count();
    if failed > 0 {
        return Err(std::io::Error::other(format!(
            "{failed} health requests failed"
        )));
    }
    Ok(measured)
}

// ── Rating clicks ────────────────────────────────────────────────────────────────────────────

/// What a click run does.
#[derive(Debug, Clone)]
pub struct ClickPlan {
    /// Requests in the measured phase (link clicks and form posts).
    pub clicks: usize,
    pub connections: usize,
    /// How many concurrent requests, each with a different score, hit one survey request of a
    /// group.
    pub group_size: usize,
    /// Shares of `clicks` sent as concurrent link clicks and as concurrent form posts on one
    /// request; the rest are single link clicks.
    pub link_group_share: f64,
    pub form_group_share: f64,
    pub forbid_rating_change: bool,
    pub seed: u64,
}

impl ClickPlan {
    pub fn new(clicks: usize, forbid_rating_change: bool) -> ClickPlan {
        ClickPlan {
            clicks,
            connections: 32,
            group_size: 4,
            link_group_share: 0.2,
            form_group_share: 0.3,
            forbid_rating_change,
            seed: 8,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One link click.
    Single,
    /// Several link clicks with different scores at once (a double tap, or a scanner racing
    /// the customer): the burst guard holds the answer for a person to confirm.
    LinkGroup,
    /// Several page forms posted at once with different scores (tabs, devices): the last
    /// write wins, or with forbid-change the first one holds.
    FormGroup,
}

struct Target {
    survey: SurveyRequestId,
    shape: Shape,
    /// Indexes into the request list.
    requests: Vec<usize>,
    scores: Vec<u8>,
}

/// The figures and findings of a click run.
#[derive(Debug, Default)]
pub struct ClickReport {
    pub surveys: usize,
    pub clicks: Option<Measured>,
    pub baseline: Option<Measured>,
    pub confirmations: usize,
    /// Answers by status.
    pub statuses: BTreeMap<u16, usize>,
    /// Form posts answered with the documented refusal ("can no longer be changed").
    pub refused_changes: usize,
    /// Link clicks held for a person's confirmation (burst guard).
    pub held: usize,
    pub reviews: usize,
    pub review_received: usize,
    pub review_recorded: usize,
    /// The recount of the stored reviews, and what the counters say.
    pub recount: Counts,
    pub counters: Counts,
    /// What the admin API's agent report says in total, and what the recount says.
    pub report_total: (u64, u64),
    pub relay_seconds: f64,
    /// Every invariant that failed, said plainly (empty: all held).
    pub failures: Vec<String>,
}

fn nps_link(
    signer: &LinkSigner<'_>,
    tenant: &TenantId,
    survey: SurveyRequestId,
    score: u8,
    now: DateTime<Utc>,
) -> String {
    signer.rating_url(tenant, survey, &score.to_string(), now)
}

/// Sets the tenant's settings for a run through the admin API, as an operator would.
async fn set_settings(
    running: &Running,
    edit: impl FnOnce(&mut TenantSettings),
) -> Result<(), String> {
    let http = reqwest::Client::new();
    let url = format!("{}/admin/v1/settings", running.info.base_url);
    let key = &running.info.tenant.api_key;
    let mut settings: TenantSettings = http
        .get(&url)
        .bearer_auth(key)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    edit(&mut settings);
    let answer = http
        .put(&url)
        .bearer_auth(key)
        .json(&settings)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !answer.status().is_success() {
        return Err(format!("settings refused: {}", answer.status()));
    }
    Ok(())
}

/// Every outbox item of the tenant, as events.
pub async fn outbox_events(
    store: &dyn ItemStore,
    tenant: &TenantId,
) -> Result<Vec<EventEnvelope>, StoreError> {
    let mut query = Query::partition(keys::outbox_partition(tenant));
    let mut events = Vec::new();
    loop {
        let page = store.query(query.clone()).await?;
        for item in &page.items {
            if let Ok(event) = envelope_from_image(item) {
                events.push(event);
            }
        }
        match page.last_evaluated {
            Some(last) => query = query.start_after(Some(last)),
            None => return Ok(events),
        }
    }
}

fn survey_of(event: &EventEnvelope) -> Option<SurveyRequestId> {
    event.data["review"]["survey_request_id"]
        .as_str()
        .and_then(|s| SurveyRequestId::parse(s).ok())
}

fn rating_at(value: &serde_json::Value) -> Option<Rating> {
    serde_json::from_value(value.clone()).ok()
}

/// Seeds `count` sent rating requests (NPS) through the core's scheduler, spread over agents.
async fn seed_requests(
    running: &Running,
    tenant: &TenantId,
    count: usize,
) -> Result<Vec<SurveyRequestId>, String> {
    let store = running.functions.store.clone();
    let keyring = running.functions.keyring.clone();
    let clock = running.functions.clock.clone();
    let mut seeders = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (store, keyring, tenant, clock) = (
            store.clone(),
            keyring.clone(),
            tenant.clone(),
            clock.clone(),
        );
        seeders.spawn(async move {
            let signer = LinkSigner {
                keyring: &keyring,
                public_base_url: "",
            };
            let mut seeded = Vec::new();
            for n in (worker..count).step_by(8) {
                let agent = n % 5;
                let ticket = serde_json::json!({ "ticket": { "id": format!("L{n}"), "subject": "Load",
                    "status": "closed",
                    "agent": { "id": format!("a{agent}"), "name": format!("Agent {agent}"), "email": format!("a{agent}@load.example"), "email_notifications": false },
                    "contact": { "id": format!("c{n}"), "name": "Load",
                    "email": format!("c{n}@load.example") }, "updated_at": clock.now() } });
                let event =
                    EventEnvelope::new_root(tenant.clone(), EventType::TicketClosed, clock.now(), ticket);
                match surveys::on_ticket_event(store.as_ref(), &NoMail, clock.as_ref(), &signer, &event)
                    .await
                {
                    Ok(ScheduleOutcome::Scheduled { survey, .. }) => seeded.push((n, survey)),
                    Ok(other) => return Err(format!("ticket L{n} got no request: {other:?}")),
                    Err(e) => return Err(format!("seeding L{n}: {e}")),
                }
            }
            Ok(seeded)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(done) = seeders.join_next().await {
        all.extend(done.map_err(|e| e.to_string())??);
    }
    all.sort_by_key(|(n, _)| *n);
    Ok(all.into_iter().map(|(_, s)| s).collect())
}

/// Runs the click load on a runner started with `clock` (and `run_schedules` off): seeds the
/// requests, measures the health baseline and then the clicks at the same concurrency, lets
/// the windows pass, confirms held answers as a person would, and checks everything back.
pub async fn clicks(
    running: &Running,
    clock: &OffsetClock,
    plan: &ClickPlan,
) -> Result<ClickReport, String> {
    let tenant = TenantId::parse(&running.info.tenant.tenant).map_err(|e| e.to_string())?;
    let forbid = plan.forbid_rating_change;
    set_settings(running, |s| {
        s.survey_kind = SurveyKind::Nps;
        // Form posts settle at once, so concurrent posts change settled reviews and move their
        // counters; link clicks still wait out the burst guard (10 s, passed on the clock).
        s.change_window_minutes = 0;
        s.forbid_rating_change = forbid;
    })
    .await?;
    let group = plan.group_size.clamp(2, 11);
    let link_groups = (plan.clicks as f64 * plan.link_group_share) as usize / group;
    let form_groups = (plan.clicks as f64 * plan.form_group_share) as usize / group;
    let singles = plan
        .clicks
        .saturating_sub((link_groups + form_groups) * group);
    let surveys = seed_requests(running, &tenant, singles + link_groups + form_groups).await?;
    running.drain().await.map_err(|e| e.to_string())?;

    let keyring = running.functions.keyring.clone();
    let signer = LinkSigner {
        keyring: &keyring,
        public_base_url: "",
    };
    let now = clock.now();
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut scores: Vec<u8> = (0..=10).collect();
    // Units: one target's requests stay next to each other, so connections take them together.
    let mut units: Vec<(Target, Vec<Request>)> = Vec::with_capacity(surveys.len());
    for (i, survey) in surveys.iter().enumerate() {
        let shape = if i < singles {
            Shape::Single
        } else if i < singles + link_groups {
            Shape::LinkGroup
        } else {
            Shape::FormGroup
        };
        scores.shuffle(&mut rng);
        let n = if shape == Shape::Single { 1 } else { group };
        let picked: Vec<u8> = scores[..n].to_vec();
        let requests = picked
            .iter()
            .map(|&score| {
                let path = nps_link(&signer, &tenant, *survey, score, now);
                match shape {
                    Shape::Single | Shape::LinkGroup => Request {
                        method: "GET",
                        path,
                        headers: vec![],
                        body: vec![],
                    },
                    Shape::FormGroup => Request {
                        method: "POST",
                        path,
                        headers: vec![(
                            "Content-Type",
                            "application/x-www-form-urlencoded".to_string(),
                        )],
                        body: format!("rating={score}&comment=").into_bytes(),
                    },
                }
            })
            .collect();
        units.push((
            Target {
                survey: *survey,
                shape,
                requests: vec![],
                scores: picked,
            },
            requests,
        ));
    }
    units.shuffle(&mut rng);
    let mut targets = Vec::with_capacity(units.len());
    let mut requests = Vec::with_capacity(plan.clicks);
    for (mut target, batch) in units {
        for request in batch {
            target.requests.push(requests.len());
            requests.push(request);
        }
        targets.push(target);
    }
    let addr = running.addr;
    let mut report = ClickReport {
        surveys: targets.len(),
        ..ClickReport::default()
    };
    let (baseline, answers, measured, relay_seconds) =
        measured_run(running, requests, plan.connections).await?;
    report.baseline = Some(baseline);
    report.clicks = Some(measured);
    report.relay_seconds = relay_seconds;
    for answer in &answers {
        *report.statuses.entry(answer.status).or_default() += 1;
        if answer.body.contains("can no longer be changed") {
            report.refused_changes += 1;
        }
        if answer.body.contains("Please confirm your answer") {
            report.held += 1;
        }
    }

    // The burst guard and the (zero) change window pass; the scheduler settles link clicks.
    clock.advance(chrono::Duration::seconds(61));
    settle(running).await?;

    // A person confirms each held answer on the page (the page's preselected choice).
    let store = running.functions.store.as_ref();
    let mut confirmations = Vec::new();
    let mut confirmed_surveys = HashSet::new();
    for target in &targets {
        let item = store
            .get(&keys::review(&tenant, target.survey))
            .await
            .map_err(|e| e.to_string())?;
        let Some(item) = item else { continue };
        if item.str_attr("confirmation") == Some("held") {
            let review: Review = read_record(&item).map_err(|e| e.to_string())?;
            let score = review.rating.value_string();
            let path = signer.rating_url(&tenant, target.survey, &score, clock.now());
            confirmed_surveys.insert(target.survey);
            confirmations.push(Request {
                method: "POST",
                path,
                headers: vec![(
                    "Content-Type",
                    "application/x-www-form-urlencoded".to_string(),
                )],
                body: format!("rating={score}&comment=").into_bytes(),
            });
        }
    }
    report.confirmations = confirmations.len();
    let (confirmed, _) = send_all(addr, Arc::new(confirmations), plan.connections, |_| false)
        .await
        .map_err(|e| e.to_string())?;
    let unconfirmed = confirmed.iter().filter(|a| a.status != 200).count();
    if unconfirmed > 0 {
        report
            .failures
            .push(format!("{unconfirmed} confirmations were not answered 200"));
    }
    running.drain().await.map_err(|e| e.to_string())?;
    // Another run of the scheduler must find nothing left to settle.
    clock.advance(chrono::Duration::seconds(61));
    settle(running).await?;

    let seen = Seen {
        answers: &answers,
        confirmed: &confirmed_surveys,
    };
    check_clicks(running, &tenant, forbid, &targets, seen, &mut report).await?;
    Ok(report)
}

async fn settle(running: &Running) -> Result<(), String> {
    running.fire_schedule(SURVEY_SCHEDULER).await?;
    running.drain().await.map_err(|e| e.to_string())
}

/// What the run saw: each request's answer, and the surveys a person confirmed.
struct Seen<'a> {
    answers: &'a [Answer],
    confirmed: &'a HashSet<SurveyRequestId>,
}

async fn check_clicks(
    running: &Running,
    tenant: &TenantId,
    forbid: bool,
    targets: &[Target],
    seen: Seen<'_>,
    report: &mut ClickReport,
) -> Result<(), String> {
    let store = running.functions.store.as_ref();
    let events = outbox_events(store, tenant)
        .await
        .map_err(|e| e.to_string())?;
    let mut recorded: HashMap<SurveyRequestId, Vec<&EventEnvelope>> = HashMap::new();
    let mut received: HashMap<SurveyRequestId, usize> = HashMap::new();
    for event in &events {
        let Some(survey) = survey_of(event) else {
            continue;
        };
        match event.event_type {
            EventType::ReviewRecorded => recorded.entry(survey).or_default().push(event),
            EventType::ReviewReceived => *received.entry(survey).or_default() += 1,
            _ => {}
        }
    }
    report.review_recorded = recorded.values().map(Vec::len).sum();
    report.review_received = received.values().sum();
    let failures = &mut report.failures;
    let mut say = |failure: String| {
        // A broken invariant is usually broken many times; a few examples say enough.
        if failures.len() < 20 {
            failures.push(failure);
        } else if failures.len() == 20 {
            failures.push("(more failures left out)".into());
        }
    };
    let tz = closedloop_core::tenancy::time_zone(store, tenant)
        .await
        .map_err(|e| e.to_string())?;
    let mut recount_by_bucket: BTreeMap<(String, String), Counts> = BTreeMap::new();
    let answered = |target: &Target| {
        target
            .requests
            .iter()
            .filter(|&&i| seen.answers[i].status == 200)
            .count()
    };
    for target in targets {
        let statuses: Vec<u16> = target
            .requests
            .iter()
            .map(|&i| seen.answers[i].status)
            .collect();
        if let Some(bad) = statuses.iter().find(|&&s| s != 200 && s != 503) {
            say(format!(
                "survey {}: a click was answered {bad}",
                target.survey
            ));
        }
        let ok = answered(target);
        let item = store
            .get(&keys::review(tenant, target.survey))
            .await
            .map_err(|e| e.to_string())?;
        let Some(item) = item else {
            if ok > 0 {
                say(format!(
                    "survey {}: {ok} clicks answered 200 but no review is stored (lost rating)",
                    target.survey
                ));
            }
            continue;
        };
        report.reviews += 1;
        let review: Review = read_record(&item).map_err(|e| e.to_string())?;
        let score = match review.rating {
            Rating::Nps(s) => s.value(),
            other => {
                say(format!(
                    "survey {}: stored {other:?}, not NPS",
                    target.survey
                ));
                continue;
            }
        };
        if !target.scores.contains(&score) {
            say(format!(
                "survey {}: stored score {score} is none of the clicked {:?}",
                target.survey, target.scores
            ));
        }
        // The chain of accepted writes: each review.recorded names the rating it replaced.
        let mut chain: Vec<&EventEnvelope> =
            recorded.get(&target.survey).cloned().unwrap_or_default();
        // A held answer never counted, so its confirmation replaced nothing (previous null) and
        // stands outside the chain of the clicks before it.
        let confirmed = seen.confirmed.contains(&target.survey);
        if confirmed {
            let confirmation = chain.iter().position(|e| {
                e.data.get("previous_rating") == Some(&serde_json::Value::Null)
                    && rating_at(&e.data["review"]["rating"]) == Some(review.rating)
            });
            match confirmation {
                Some(i) => {
                    chain.remove(i);
                }
                None => say(format!(
                    "survey {}: the confirmation of {:?} left no review.recorded",
                    target.survey, review.rating
                )),
            }
        }
        let mut by_previous: HashMap<Option<Rating>, Vec<Rating>> = HashMap::new();
        let mut unreadable = false;
        for event in &chain {
            let (Some(previous), Some(rating)) = (
                event.data.get("previous_rating").map(rating_at),
                rating_at(&event.data["review"]["rating"]),
            ) else {
                unreadable = true;
                continue;
            };
            by_previous.entry(previous).or_default().push(rating);
        }
        if unreadable {
            say(format!(
                "survey {}: an unreadable review.recorded",
                target.survey
            ));
        }
        if let Some((previous, forks)) = by_previous.iter().find(|(_, next)| next.len() > 1) {
            say(format!(
                "survey {}: {} accepted writes replaced the same {previous:?} ({forks:?}): a lost update",
                target.survey,
                forks.len()
            ));
        }
        // Walk the chain from the first write; its end is what must be stored.
        let mut last = None;
        let mut walked = 0;
        while let Some(next) = by_previous.get(&last).and_then(|n| n.first()) {
            last = Some(*next);
            walked += 1;
            if walked > chain.len() {
                break;
            }
        }
        if walked != chain.len() {
            say(format!(
                "survey {}: its {} review.recorded events do not form one chain",
                target.survey,
                chain.len()
            ));
        }
        if chain.is_empty() {
            say(format!(
                "survey {}: a stored review without review.recorded",
                target.survey
            ));
        } else if !confirmed && last != Some(review.rating) {
            say(format!(
                "survey {}: stored {:?} but the last accepted write was {last:?}",
                target.survey, review.rating
            ));
        }
        let form_writes = chain.len();
        match target.shape {
            Shape::FormGroup if forbid => {
                if form_writes != 1 {
                    say(format!(
                        "survey {}: forbid-change, yet {form_writes} writes were accepted",
                        target.survey
                    ));
                }
            }
            Shape::FormGroup => {
                // Every post answered 200 with a different score is an accepted write.
                if form_writes != ok {
                    say(format!(
                        "survey {}: {ok} posts answered 200 but {form_writes} writes recorded",
                        target.survey
                    ));
                }
            }
            Shape::Single | Shape::LinkGroup => {}
        }
        let settled = item.contains_key("received_at");
        let held = item.str_attr("confirmation") == Some("held");
        let received_count = received.get(&target.survey).copied().unwrap_or(0);
        if !settled || held {
            say(format!(
                "survey {}: not settled at the end (held: {held})",
                target.survey
            ));
        }
        if received_count != 1 {
            say(format!(
                "survey {}: {received_count} review.received events (one expected)",
                target.survey
            ));
        }
        if settled && !held {
            let counted = reports::counted_as(&review, tz, None);
            recount_by_bucket
                .entry((counted.day, counted.agent))
                .or_default()
                .count(review.rating);
            report.recount.count(review.rating);
        }
    }
    if forbid {
        let form_posts: usize = targets
            .iter()
            .filter(|t| t.shape == Shape::FormGroup)
            .map(answered)
            .sum();
        let groups = targets
            .iter()
            .filter(|t| t.shape == Shape::FormGroup && answered(t) > 0)
            .count();
        if report.refused_changes != form_posts - groups {
            say(format!(
                "forbid-change: {} posts got the refusal, {} expected",
                report.refused_changes,
                form_posts - groups
            ));
        }
    } else if report.refused_changes > 0 {
        say(format!(
            "{} changes refused without forbid-change",
            report.refused_changes
        ));
    }

    // The counters, as the reports read them, against the recount.
    let today = running.functions.clock.now();
    let range = DateRange::last_days(today, tz, 3);
    let rows = reports::read_counters(store, tenant, range, None)
        .await
        .map_err(|e| e.to_string())?;
    let mut counters_by_bucket: BTreeMap<(String, String), Counts> = BTreeMap::new();
    for (day, agent, counts) in rows.rows {
        report.counters.add(&counts);
        counters_by_bucket
            .entry((day.format("%Y-%m-%d").to_string(), agent))
            .or_default()
            .add(&counts);
    }
    counters_by_bucket.retain(|_, c| *c != Counts::default());
    if counters_by_bucket != recount_by_bucket {
        say(format!(
            "the counters differ from a recount of the stored reviews: counters {:?}, recount {:?}",
            report.counters.nps, report.recount.nps
        ));
    }
    // What a user sees: the agent report's total.
    let total: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}/admin/v1/reports/agents?from={}&to={}",
            running.info.base_url,
            range.from.format("%Y-%m-%d"),
            range.to.format("%Y-%m-%d")
        ))
        .bearer_auth(&running.info.tenant.api_key)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let shown = total["total"]["nps_answers"].as_u64().unwrap_or(u64::MAX);
    let recounted: u64 = report.recount.nps.iter().sum();
    report.report_total = (shown, recounted);
    if shown != recounted {
        say(format!(
            "the agent report shows {shown} NPS answers, the recount {recounted}"
        ));
    }
    Ok(())
}

// ── Webhook deliveries ───────────────────────────────────────────────────────────────────────

#[derive(Debug, Clone)]
pub struct WebhookPlan {
    /// Deliveries sent, redeliveries included.
    pub deliveries: usize,
    pub duplicate_share: f64,
    pub connections: usize,
    pub seed: u64,
}

impl WebhookPlan {
    pub fn new(deliveries: usize) -> WebhookPlan {
        WebhookPlan {
            deliveries,
            duplicate_share: 0.2,
            connections: 32,
            seed: 8,
        }
    }
}

#[derive(Debug, Default)]
pub struct WebhookReport {
    pub unique: usize,
    pub duplicates: usize,
    pub deliveries: Option<Measured>,
    pub baseline: Option<Measured>,
    pub relay_seconds: f64,
    /// Answers by status and `status` field (`202 accepted`, `200 duplicate`, ...).
    pub answers: BTreeMap<String, usize>,
    /// Outbox events by type, after the run.
    pub events: BTreeMap<String, usize>,
    pub rating_requests: usize,
    pub failures: Vec<String>,
}

const KINDS: [&str; 4] = [
    "ticket.closed",
    "ticket.created",
    "ticket.customer_message",
    "ticket.tag_added",
];

fn delivery_body(n: usize, kind: &str, at: DateTime<Utc>) -> Vec<u8> {
    let agent = n % 5;
    let mut body = serde_json::json!({
        "delivery_id": format!("load-{n}"),
        "type": kind,
        "occurred_at": at,
        "ticket": {
            "id": format!("W{n}"),
            "subject": format!("Load ticket {n}"),
            "status": if kind == "ticket.closed" { "closed" } else { "open" },
            "agent": { "id": format!("a{agent}"), "name": format!("Agent {agent}"), "email": format!("a{agent}@load.example"), "email_notifications": false },
            "contact": { "id": format!("wc{n}"), "name": "Customer", "email": format!("wc{n}@load.example") },
            "updated_at": at,
        }
    });
    match kind {
        "ticket.customer_message" => {
            body["message"] =
                serde_json::json!({ "body": "Any news?", "from": format!("wc{n}@load.example") })
        }
        "ticket.tag_added" => body["tag"] = serde_json::json!("vip"),
        _ => {}
    }
    serde_json::to_vec(&body).expect("a JSON body")
}

/// Sends the deliveries (signed like the helpdesk signs them, shuffled with their
/// redeliveries), measures them against the health baseline, and checks one effect each.
pub async fn webhooks(
    running: &Running,
    clock: &OffsetClock,
    plan: &WebhookPlan,
) -> Result<WebhookReport, String> {
    let tenant = TenantId::parse(&running.info.tenant.tenant).map_err(|e| e.to_string())?;
    let secret = running.info.tenant.webhook_secret.as_bytes();
    let duplicates = (plan.deliveries as f64 * plan.duplicate_share).round() as usize;
    let unique = plan.deliveries - duplicates;
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let at = clock.now();
    let bodies: Vec<Vec<u8>> = (0..unique)
        .map(|n| delivery_body(n, KINDS[n % KINDS.len()], at))
        .collect();
    // Redeliveries of random deliveries (some more than once), then everything shuffled.
    let mut order: Vec<usize> = (0..unique).collect();
    order.extend((0..duplicates).map(|_| rand::Rng::gen_range(&mut rng, 0..unique)));
    order.shuffle(&mut rng);
    let path = format!("/webhooks/{tenant}/generic");
    let timestamp = clock.now().timestamp();
    let requests: Vec<Request> = order
        .iter()
        .map(|&n| Request {
            method: "POST",
            path: path.clone(),
            headers: vec![
                ("Content-Type", "application/json".to_string()),
                (
                    "X-Closedloop-Signature",
                    closedloop_core::signature::sign_timestamped(secret, timestamp, &bodies[n]),
                ),
            ],
            body: bodies[n].clone(),
        })
        .collect();
    let mut report = WebhookReport {
        unique,
        duplicates,
        ..WebhookReport::default()
    };
    let (baseline, answers, measured, relay_seconds) =
        measured_run(running, requests, plan.connections).await?;
    report.baseline = Some(baseline);
    report.deliveries = Some(measured);
    report.relay_seconds = relay_seconds;

    let mut accepted = vec![0usize; unique];
    let say = |failures: &mut Vec<String>, failure: String| {
        if failures.len() < 20 {
            failures.push(failure);
        }
    };
    for (answer, &n) in answers.iter().zip(&order) {
        let status = serde_json::from_str::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_string))
            .unwrap_or_else(|| "?".into());
        *report
            .answers
            .entry(format!("{} {status}", answer.status))
            .or_default() += 1;
        match (answer.status, status.as_str()) {
            (202, "accepted") => accepted[n] += 1,
            (200, "duplicate") => {}
            _ => say(
                &mut report.failures,
                format!("load-{n} answered {} {}", answer.status, answer.body),
            ),
        }
    }
    for (n, count) in accepted.iter().enumerate() {
        if *count != 1 {
            say(
                &mut report.failures,
                format!("load-{n} was accepted {count} times (once expected)"),
            );
        }
    }

    // Effects: one ticket event per unique delivery, one rating request per closed ticket.
    let store = running.functions.store.as_ref();
    let events = outbox_events(store, &tenant)
        .await
        .map_err(|e| e.to_string())?;
    let mut per_delivery = vec![0usize; unique];
    for event in &events {
        *report
            .events
            .entry(event.event_type.as_str().to_string())
            .or_default() += 1;
        if let Some(n) = event.data["delivery_id"]
            .as_str()
            .and_then(|d| d.strip_prefix("load-"))
            .and_then(|n| n.parse::<usize>().ok())
            && n < unique
        {
            per_delivery[n] += 1;
        }
    }
    for (n, count) in per_delivery.iter().enumerate() {
        if *count != 1 {
            say(
                &mut report.failures,
                format!("load-{n} has {count} events in the outbox (one expected)"),
            );
        }
    }
    let ticket_events: usize = KINDS
        .iter()
        .map(|k| report.events.get(*k).copied().unwrap_or(0))
        .sum();
    if ticket_events != unique {
        say(
            &mut report.failures,
            format!("{ticket_events} ticket events for {unique} unique deliveries"),
        );
    }
    let closed: Vec<usize> = (0..unique)
        .filter(|n| KINDS[n % KINDS.len()] == "ticket.closed")
        .collect();
    for &n in &closed {
        let ticket =
            closedloop_core::ids::TicketId::parse(&format!("W{n}")).map_err(|e| e.to_string())?;
        let requested = store
            .get(&keys::ticket_survey(&tenant, &ticket))
            .await
            .map_err(|e| e.to_string())?;
        if requested.is_some() {
            report.rating_requests += 1;
        } else {
            say(
                &mut report.failures,
                format!("closed ticket W{n} has no rating request"),
            );
        }
    }
    let sent = report.events.get("survey.sent").copied().unwrap_or(0);
    if sent != closed.len() {
        say(
            &mut report.failures,
            format!(
                "{sent} survey.sent events for {} closed tickets",
                closed.len()
            ),
        );
    }
    // And one email each: the runner's outbox of .eml files.
    let mut emails: HashMap<String, usize> = HashMap::new();
    let outbox = &running.info.outbox_dir;
    for entry in std::fs::read_dir(outbox).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|e| e == "eml") {
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            if let Some(to) = text.lines().find_map(|l| l.strip_prefix("To: ")) {
                // `Name <address>` or the bare address.
                let to = to.trim();
                let address = match (to.rfind('<'), to.rfind('>')) {
                    (Some(open), Some(close)) if open < close => &to[open + 1..close],
                    _ => to,
                };
                *emails.entry(address.to_string()).or_default() += 1;
            }
        }
    }
    for &n in &closed {
        let to = format!("wc{n}@load.example");
        let count = emails.get(&to).copied().unwrap_or(0);
        if count != 1 {
            say(
                &mut report.failures,
                format!("{to} got {count} rating emails (one expected)"),
            );
        }
    }
    Ok(report)
}
