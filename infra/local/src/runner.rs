//! `closedloop up`: every function in one process, on the embedded adapters, routed by the
//! same `template.yaml` that deploys to AWS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use closedloop_core::outbox::{StreamEvent, StreamPayload};
use closedloop_core::ports::{Clock, SystemClock};
use closedloop_core::store::{Item, ItemStore, Value};
use closedloop_embedded::outbox_mailer::OutboxMailer;
use closedloop_embedded::{JournalStore, OpenError, StreamRecord};
use closedloop_eventpattern::pattern::EventPattern;
use closedloop_eventpattern::template::{Routes, TemplateError};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::bus::LocalBus;
use crate::functions::{EVENT_RELAY, Functions};
use crate::{sandbox, setup};

/// The template the runner was built with; `--template` reads another.
pub const BUILT_IN_TEMPLATE: &str = include_str!("../../../template.yaml");
const RELAY_CONSUMER: &str = "event-relay";
const RELAY_BATCH: usize = 100;
/// How long the relay lets events gather after a partial batch (delivery latency it adds).
const RELAY_LINGER: Duration = Duration::from_millis(10);

#[derive(Clone)]
pub struct RunnerConfig {
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    pub demo: bool,
    pub template_yaml: String,
    pub clock: Arc<dyn Clock>,
    /// Fire the template's schedules on their expressions (tests fire them by hand instead).
    pub run_schedules: bool,
    /// Relay the outbox to the functions (tests turn it off to leave events queued).
    pub relay_outbox: bool,
    pub mail_from: String,
    /// How `actions` retries failing helpdesk and webhook calls (tests use milliseconds).
    pub action_retry: closedloop_core::actions::RetryPolicy,
}

impl RunnerConfig {
    pub fn new(data_dir: impl Into<PathBuf>, bind: SocketAddr) -> Self {
        RunnerConfig {
            data_dir: data_dir.into(),
            bind,
            demo: false,
            template_yaml: BUILT_IN_TEMPLATE.to_string(),
            clock: Arc::new(SystemClock),
            run_schedules: true,
            relay_outbox: true,
            mail_from: "feedback@closedloop.local".into(),
            action_retry: closedloop_core::actions::RetryPolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("{0}")]
    Store(#[from] OpenError),
    #[error(
        "cannot listen on {addr}: {source}. Is another closedloop running? Pick another port with --port"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("template.yaml is invalid: {0}")]
    Template(#[from] TemplateError),
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setting up the first tenant failed: {0}")]
    Setup(String),
}

/// What the runner prints at start: where everything is.
#[derive(Debug, Clone)]
pub struct StartupInfo {
    pub base_url: String,
    pub store_path: PathBuf,
    pub outbox_dir: PathBuf,
    pub dead_letter_dir: PathBuf,
    pub tenant: setup::TenantCredentials,
    pub demo_tickets: Vec<String>,
}

pub struct Running {
    pub addr: SocketAddr,
    pub info: StartupInfo,
    pub store: JournalStore,
    pub functions: Arc<Functions>,
    bus: Arc<LocalBus>,
    stream: Arc<StreamFeed>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunnerError + '_ {
    move |source| RunnerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub async fn start(config: RunnerConfig) -> Result<Running, RunnerError> {
    let routes = Routes::from_template_yaml(&config.template_yaml)?;
    std::fs::create_dir_all(&config.data_dir).map_err(io_err(&config.data_dir))?;
    let store_path = config.data_dir.join("store.journal");
    let store = JournalStore::open(&store_path)?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| RunnerError::Bind {
            addr: config.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| RunnerError::Bind {
        addr: config.bind,
        source,
    })?;
    let base_url = format!("http://{addr}");

    let keyring =
        setup::load_or_create_keyring(&config.data_dir).map_err(io_err(&config.data_dir))?;
    let outbox_dir = config.data_dir.join("outbox");
    let dead_letter_dir = config.data_dir.join("dead-letters");
    let mailer = OutboxMailer::new(&outbox_dir, &config.mail_from).map_err(io_err(&outbox_dir))?;
    let store_port: Arc<dyn ItemStore> = Arc::new(store.clone());
    // One HTTP client for every connector and webhook call, as the Lambda has.
    let http = closedloop_connectors::http_client(closedloop_connectors::CALL_TIMEOUT);
    let functions = Arc::new(Functions {
        store: store_port.clone(),
        mailer: Arc::new(mailer),
        clock: config.clock.clone(),
        keyring: Arc::new(keyring),
        public_base_url: base_url.clone(),
        rule_cache: rules::RuleCache::default(),
        connectors: Arc::new(closedloop_connectors::StoreConnectorDirectory::new(
            store_port,
            http.clone(),
        )),
        webhooks: Arc::new(closedloop_connectors::HttpWebhookSender::new(http)),
        action_retry: config.action_retry,
        settings_cache: Default::default(),
    });
    let tenant = setup::first_tenant(
        &config.data_dir,
        functions.store.as_ref(),
        config.demo,
        config.clock.now(),
    )
    .await
    .map_err(|e| RunnerError::Setup(e.to_string()))?;
    if config.demo {
        // The demo tenant's helpdesk is the sandbox, reached through the real generic
        // connector; its URL follows the port this run listens on.
        sandbox::connect_demo_tenant(
            functions.store.as_ref(),
            &tenant,
            &base_url,
            config.clock.now(),
        )
        .await
        .map_err(|e| RunnerError::Setup(e.to_string()))?;
    }
    let bus = Arc::new(
        LocalBus::new(&routes, functions.clone(), dead_letter_dir.clone())
            .map_err(io_err(&dead_letter_dir))?,
    );

    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let app = http_app(&routes, &functions, config.demo, &tenant);
    let mut http_stop = stopped.clone();
    tasks.spawn(async move {
        let shutdown = async move {
            let _ = http_stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    // The template's FilterCriteria on the table's stream, as Lambda applies them.
    let stream = Arc::new(StreamFeed::new(
        routes
            .function(EVENT_RELAY)
            .and_then(|f| f.streams.first())
            .map(|s| s.filters.clone())
            .unwrap_or_default(),
    ));
    // Before anything runs: claims a killed run left behind.
    match release_orphaned_claims(&store).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            released = n,
            "gave back the claims a stopped run left mid-way; their work runs again"
        ),
        Err(e) => tracing::error!(error = %e, "could not check for work left mid-way"),
    }
    if config.relay_outbox {
        tasks.spawn(relay_loop(
            store.clone(),
            functions.clone(),
            bus.clone(),
            stream.clone(),
            stopped.clone(),
        ));
    }
    tasks.spawn(purge_loop(
        store.clone(),
        config.clock.clone(),
        stopped.clone(),
    ));
    if config.run_schedules {
        for function in &routes.functions {
            for schedule in function.schedules.iter().filter(|s| s.enabled) {
                tasks.spawn(schedule_loop(
                    functions.clone(),
                    function.logical_id.clone(),
                    schedule.expression.clone(),
                    stopped.clone(),
                ));
            }
        }
    }
    let info = StartupInfo {
        base_url,
        store_path,
        outbox_dir,
        dead_letter_dir,
        demo_tickets: if config.demo {
            sandbox::DEMO_TICKETS
                .iter()
                .map(|t| t.id.to_string())
                .collect()
        } else {
            vec![]
        },
        tenant,
    };
    Ok(Running {
        addr,
        info,
        store,
        functions,
        bus,
        stream,
        stop,
        tasks,
    })
}

/// API Gateway routes from the template, each served by its function's Router.
fn http_app(
    routes: &Routes,
    functions: &Arc<Functions>,
    demo: bool,
    tenant: &setup::TenantCredentials,
) -> Router {
    // The template's paths pick the function; the function's own Router then checks the method
    // and reads the path parameters. matchit is the matcher axum routes with, so a path picks
    // the function an axum route of the same path would, without the parameters being decoded
    // once more out here (a rating token is a few hundred bytes).
    let mut paths = matchit::Router::new();
    let mut routers = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for function in &routes.functions {
        let Some(router) = functions.http_router(&function.logical_id) else {
            continue;
        };
        for route in &function.http {
            let path = route.path.replace("+}", "}").replace("{proxy}", "{*proxy}");
            if seen.insert(path.clone()) {
                paths
                    .insert(path.as_str(), routers.len())
                    .unwrap_or_else(|e| panic!("template path {path}: {e}"));
            }
        }
        routers.push(router);
    }
    let (paths, routers) = (Arc::new(paths), Arc::new(routers));
    let dispatch = tower::service_fn(move |mut request: axum::extract::Request| {
        let (paths, routers) = (paths.clone(), routers.clone());
        async move {
            let Ok(matched) = paths.at(request.uri().path()) else {
                let unknown = closedloop_http::unknown_route(request).await;
                return Ok::<_, std::convert::Infallible>(unknown.into_response());
            };
            let function = routers[*matched.value].clone();
            // A fresh request, as Lambda gives each function.
            *request.extensions_mut() = axum::http::Extensions::new();
            function.oneshot(request).await
        }
    });
    let app = if demo {
        sandbox::router(functions.clone(), tenant.clone())
    } else {
        Router::new()
    };
    app.fallback_service(dispatch)
}

/// Feeds new outbox records to `event-relay`, as the table's stream does in AWS. The checkpoint
/// moves only after the bus has delivered a batch, so a crash replays instead of losing.
async fn relay_loop(
    store: JournalStore,
    functions: Arc<Functions>,
    bus: Arc<LocalBus>,
    stream: Arc<StreamFeed>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut newest = store.stream_watch();
    loop {
        match relay_once(&store, &functions, bus.as_ref(), &stream).await {
            Ok(0) => {
                if *stopped.borrow() {
                    return; // Drained and asked to stop.
                }
                tokio::select! {
                    _ = newest.changed() => {}
                    _ = stopped.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            // A partial batch: let the next events gather for a moment instead of reading the
            // stream and moving the checkpoint (a write) again for every commit that lands.
            Ok(n) if n < RELAY_BATCH => tokio::time::sleep(RELAY_LINGER).await,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "relaying the outbox failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Gives back the claims a killed run left in progress (actions, rating-request sends, any
/// other side effect), and returns how many.
///
/// A claim blocks every other run of its effect for its in-progress timeout (2 minutes), in
/// case its holder is still working. On AWS, EventBridge keeps retrying for longer than that;
/// the local bus gives up after a few seconds and would dead-letter the redelivered work. But
/// here the store's lock says no other process is running anything, so every claim still in
/// progress at start belongs to a dead run. The redelivery then does the work again: a helpdesk
/// call the dead run had made is repeated with the same idempotency key (docs/faults.md).
async fn release_orphaned_claims(
    store: &JournalStore,
) -> Result<usize, closedloop_core::store::StoreError> {
    closedloop_core::idempotency::release_abandoned(store, store.items())
        .await
        .map_err(|closedloop_core::idempotency::IdempotencyError::Store(e)| e)
}

/// The table's stream as the relay reads it: the template's filters, and one reader at a time
/// (like a shard), so `drain` waits for a batch the background loop is delivering.
pub(crate) struct StreamFeed {
    filters: Vec<EventPattern>,
    /// The image attributes the filters look at (`None`: they look elsewhere too, so each
    /// record is matched whole).
    filtered_attributes: Option<Vec<String>>,
    one_reader: tokio::sync::Mutex<()>,
}

impl StreamFeed {
    fn new(filters: Vec<EventPattern>) -> Self {
        let filtered_attributes = image_attributes_matched(&filters);
        StreamFeed {
            filters,
            filtered_attributes,
            one_reader: tokio::sync::Mutex::new(()),
        }
    }

    /// [`Self::passes`] for a batch, in order. With the filters' attributes known, the decision
    /// depends only on those attributes' values, so it is worked out once per run of records
    /// that agree on them (a stream of outbox items all say `entity: outbox`).
    fn keep_passing(&self, records: Vec<StreamRecord>) -> Vec<StreamRecord> {
        let Some(names) = self
            .filtered_attributes
            .as_ref()
            .filter(|_| !self.filters.is_empty())
        else {
            return records
                .into_iter()
                .filter(|r| self.passes(r.seq, &r.new_image))
                .collect();
        };
        let mut last: Option<(Vec<Option<&Value>>, bool)> = None;
        let mut kept = Vec::with_capacity(records.len());
        for record in &records {
            let seen: Vec<Option<&Value>> = names.iter().map(|n| record.new_image.get(n)).collect();
            let pass = match &last {
                Some((values, pass)) if *values == seen => *pass,
                _ => {
                    let pass = self.passes(record.seq, &record.new_image);
                    last = Some((seen, pass));
                    pass
                }
            };
            kept.push(pass);
        }
        records
            .into_iter()
            .zip(kept)
            .filter_map(|(record, pass)| pass.then_some(record))
            .collect()
    }

    /// Whether a new image passes the FilterCriteria, as Lambda decides it. The record is
    /// built as JSON with only the attributes the filters look at: the result is the same,
    /// and the relay does not copy every event payload once more.
    fn passes(&self, seq: u64, image: &Item) -> bool {
        if self.filters.is_empty() {
            return true;
        }
        let new_image = match &self.filtered_attributes {
            Some(names) => serde_json::Value::Object(
                names
                    .iter()
                    .filter_map(|name| {
                        let value = serde_json::to_value(image.get(name)?).ok()?;
                        Some((name.clone(), value))
                    })
                    .collect(),
            ),
            None => serde_json::to_value(image).unwrap_or_default(),
        };
        let record = serde_json::json!({ "eventName": "INSERT", "dynamodb": {
            "SequenceNumber": seq.to_string(), "NewImage": new_image } });
        self.filters.iter().any(|f| f.matches(&record))
    }
}

/// The `dynamodb.NewImage` attributes that `filters` test, when that is all they test
/// (besides `eventName`, which is `INSERT` for every record the relay reads).
fn image_attributes_matched(filters: &[EventPattern]) -> Option<Vec<String>> {
    fn walk(pattern: &serde_json::Value, names: &mut Vec<String>) -> Option<()> {
        for (key, value) in pattern.as_object()? {
            match key.as_str() {
                "$or" => {
                    for branch in value.as_array()? {
                        walk(branch, names)?;
                    }
                }
                "eventName" => {}
                "dynamodb" => {
                    for (field, inner) in value.as_object()? {
                        match field.as_str() {
                            "NewImage" => {
                                for (name, _) in inner.as_object()? {
                                    if name == "$or" {
                                        return None;
                                    }
                                    names.push(name.clone());
                                }
                            }
                            _ => return None,
                        }
                    }
                }
                _ => return None,
            }
        }
        Some(())
    }
    let mut names = Vec::new();
    for filter in filters {
        walk(filter.as_json(), &mut names)?;
    }
    names.sort();
    names.dedup();
    Some(names)
}

/// Relays one batch; returns how many records it consumed.
pub(crate) async fn relay_once(
    store: &JournalStore,
    functions: &Functions,
    bus: &LocalBus,
    stream: &StreamFeed,
) -> Result<usize, closedloop_core::store::StoreError> {
    let _reading = stream.one_reader.lock().await;
    let after = store.stream_checkpoint_get(RELAY_CONSUMER).await?;
    let records = store.stream_read(after, RELAY_BATCH).await?;
    let Some(last) = records.last().map(|r| r.seq) else {
        return Ok(0);
    };
    // What Lambda gets from a DynamoDB stream, filtered by the template's FilterCriteria.
    let event = StreamEvent {
        records: stream
            .keep_passing(records)
            .into_iter()
            .map(|r| closedloop_core::outbox::StreamRecord {
                event_name: "INSERT".into(),
                dynamodb: StreamPayload {
                    sequence_number: r.seq.to_string(),
                    new_image: Some(r.new_image),
                },
            })
            .collect(),
    };
    let failed = functions.invoke_relay(bus, event).await;
    // Like Lambda's ReportBatchItemFailures: resume from the first failure.
    let checkpoint = match failed.iter().filter_map(|s| s.parse::<u64>().ok()).min() {
        Some(first_failed) => first_failed - 1,
        None => last,
    };
    store
        .stream_checkpoint_set(RELAY_CONSUMER, checkpoint)
        .await?;
    // The relay is the stream's only reader: what it has passed is not needed again (the
    // outbox items themselves stay until their TTL, as in DynamoDB).
    store.stream_trim(checkpoint).await?;
    Ok((checkpoint - after) as usize)
}

async fn purge_loop(
    store: JournalStore,
    clock: Arc<dyn Clock>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        if let Err(e) = store.purge_expired(clock.now().timestamp()).await {
            tracing::warn!(error = %e, "purging expired items failed");
        }
    }
}

async fn schedule_loop(
    functions: Arc<Functions>,
    function: String,
    expression: closedloop_eventpattern::schedule::ScheduleExpression,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let now = chrono::Utc::now();
        let Some(next) = expression.next_after(now) else {
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        if let Err(e) = functions
            .invoke_event(&function, scheduled_event(next))
            .await
        {
            tracing::warn!(function, error = %e, "scheduled run failed");
        }
    }
}

/// What EventBridge Scheduler sends a target when the schedule sets no input.
pub fn scheduled_event(at: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    serde_json::json!({ "source": "aws.scheduler", "detail-type": "Scheduled Event",
        "time": at.to_rfc3339(), "detail": {} })
}

impl Running {
    /// Runs a scheduled function once, now (what its schedule would do).
    pub async fn fire_schedule(&self, function: &str) -> Result<(), String> {
        self.functions
            .invoke_event(function, scheduled_event(self.functions.clock.now()))
            .await
    }

    /// Relays until the outbox is empty: every event so far has been handled.
    pub async fn drain(&self) -> Result<(), closedloop_core::store::StoreError> {
        while relay_once(&self.store, &self.functions, &self.bus, &self.stream).await? > 0 {}
        Ok(())
    }

    pub fn store(&self) -> &dyn ItemStore {
        self.functions.store.as_ref()
    }

    /// Stops taking requests, relays what is still in the outbox, and stops.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined {
                tracing::error!(error = %e, "a runner task failed");
            }
        }
    }

    /// Waits for Ctrl-C (or SIGTERM), then shuts down cleanly.
    pub async fn run_until_signal(self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        eprintln!("\nclosedloop: stopping; finishing queued events...");
        self.shutdown().await;
        eprintln!("closedloop: stopped cleanly");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entity: &str) -> Item {
        let mut item = closedloop_core::store::Key::new("T#acme#OUTBOX", "E1").to_item();
        item.insert("entity".into(), Value::s(entity));
        item.insert("event".into(), Value::s("{\"big\":\"payload\"}"));
        item
    }

    /// The relay matches only the attributes the filters name, and decides as the whole record
    /// would: the template's own filter keeps outbox items and drops the rest.
    #[test]
    fn the_template_filter_is_applied_to_the_attributes_it_names() {
        let template = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml"),
        )
        .expect("template.yaml");
        let routes = Routes::from_template_yaml(&template).expect("routes");
        let filters = routes
            .function(EVENT_RELAY)
            .and_then(|f| f.streams.first())
            .map(|s| s.filters.clone())
            .expect("the relay has a stream filter");
        let feed = StreamFeed::new(filters);
        assert_eq!(
            feed.filtered_attributes.as_deref(),
            Some(&["entity".to_string()][..])
        );
        assert!(feed.passes(1, &image("outbox")));
        assert!(!feed.passes(2, &image("review")));
    }

    /// A batch is filtered as record-by-record matching would, deciding once per run of
    /// records that agree on the filtered attributes.
    #[test]
    fn a_batch_keeps_what_each_record_would_pass() {
        let feed = StreamFeed::new(vec![
            r#"{"dynamodb": {"NewImage": {"entity": {"S": ["outbox"]}}}}"#
                .parse()
                .expect("pattern"),
        ]);
        let entities = [
            "outbox", "outbox", "review", "review", "outbox", "ticket", "outbox",
        ];
        let records: Vec<StreamRecord> = entities
            .iter()
            .enumerate()
            .map(|(i, entity)| StreamRecord {
                seq: i as u64 + 1,
                new_image: Arc::new(image(entity)),
            })
            .collect();
        let one_by_one: Vec<u64> = records
            .iter()
            .filter(|r| feed.passes(r.seq, &r.new_image))
            .map(|r| r.seq)
            .collect();
        let kept: Vec<u64> = feed.keep_passing(records).iter().map(|r| r.seq).collect();
        assert_eq!(kept, one_by_one);
        assert_eq!(kept, [1, 2, 5, 7]);
    }

    /// A filter on anything besides the new image's attributes is matched on the whole record.
    #[test]
    fn other_filters_see_the_whole_record() {
        let on_keys: EventPattern =
            r#"{"dynamodb": {"Keys": {"PK": {"S": [{"prefix": "T#acme"}]}}}}"#
                .parse()
                .expect("pattern");
        assert_eq!(image_attributes_matched(&[on_keys]), None);
        let on_sequence: EventPattern = r#"{"dynamodb": {"SequenceNumber": [{"prefix": "1"}]}}"#
            .parse()
            .expect("pattern");
        assert_eq!(image_attributes_matched(&[on_sequence]), None);
        let on_event: EventPattern =
            r#"{"dynamodb": {"NewImage": {"event": {"S": [{"prefix": "{\"big"}]}}}}"#
                .parse()
                .expect("pattern");
        let feed = StreamFeed::new(vec![on_event]);
        assert!(
            feed.passes(1, &image("outbox")),
            "the named attribute is there to match"
        );
    }
}
