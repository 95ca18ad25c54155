//! The event path killed mid-batch on the AWS adapters against moto: the `actions` handler on
//! DynamoDB aborted after its first helpdesk calls and run again as EventBridge redelivers, and
//! `event-relay` crashing half-way through publishing a stream batch to EventBridge and retried
//! as Lambda retries a failed batch. Nothing is lost and nothing takes effect twice.
#![cfg(feature = "emulators")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_eventbridge::types::Target;
use closedloop_aws::events::EventBridgePublisher;
use closedloop_aws::store::{DynamoStore, create_table};
use closedloop_connectors::{HttpWebhookSender, StoreConnectorDirectory, http_client};
use closedloop_core::actions::{ActionError, ActionOutcome, Executor, RetryPolicy};
use closedloop_core::automation::{ActionRequest, audit_trail};
use closedloop_core::domain::TenantSettings;
use closedloop_core::event::{EventEnvelope, EventType, bus_event};
use closedloop_core::helpdesk::{self, ConnectorKind, ConnectorSettings};
use closedloop_core::ids::{RuleId, TenantId, TicketId};
use closedloop_core::outbox::{StreamEvent, outbox_put};
use closedloop_core::ports::{Clock, EventPublisher, ManualClock, PublishError, SystemClock};
use closedloop_core::rules::Action;
use closedloop_core::store::{ItemStore, Query};
use closedloop_core::{keys, tenancy};
use closedloop_embedded::outbox_mailer::OutboxMailer;
use serde_json::{Value, json};
use wiremock::matchers::{header_exists, method, path};
use wiremock::{Mock, MockServer};

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

const SECRET: &str = "generic-secret-0123456789abcdef";

/// A tenant on DynamoDB (moto) whose helpdesk is the generic connector to a local receiver.
struct World {
    store: Arc<dyn ItemStore>,
    // Kept alive: dropping it stops the receiver.
    _server: MockServer,
    receiver: common::NoteReceiver,
    directory: StoreConnectorDirectory,
    mailer: OutboxMailer,
    webhooks: HttpWebhookSender,
    sdk: aws_config::SdkConfig,
    run: String,
}

async fn world() -> World {
    let sdk = common::emulator_sdk(&common::moto_url()).await;
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("faults-{run}");
    create_table(&dynamo, &table).await.unwrap();
    let store: Arc<dyn ItemStore> = Arc::new(DynamoStore::new(dynamo, table));
    tenancy::provision_tenant(
        store.as_ref(),
        acme(),
        "Acme",
        TenantSettings::default(),
        SystemClock.now(),
    )
    .await
    .unwrap();
    let server = MockServer::start().await;
    let receiver = common::NoteReceiver::new(Duration::from_millis(100));
    Mock::given(method("POST"))
        .and(path("/helpdesk"))
        .and(header_exists("X-Closedloop-Signature"))
        .respond_with(receiver.clone())
        .mount(&server)
        .await;
    helpdesk::put_config(
        store.as_ref(),
        &acme(),
        ConnectorKind::GenericWebhook,
        &format!("{}/helpdesk", server.uri()),
        ConnectorSettings::default(),
        Some(SECRET),
        SystemClock.now(),
    )
    .await
    .unwrap();
    let http = http_client(Duration::from_secs(2));
    let dir = std::env::temp_dir().join(format!("closedloop-faults-moto-{run}"));
    World {
        directory: StoreConnectorDirectory::new(store.clone(), http.clone()),
        mailer: OutboxMailer::new(dir, "feedback@acme.example").unwrap(),
        webhooks: HttpWebhookSender::new(http),
        store,
        _server: server,
        receiver,
        sdk,
        run,
    }
}

impl World {
    fn executor<'a>(&'a self, clock: &'a dyn Clock) -> Executor<'a> {
        Executor {
            store: self.store.as_ref(),
            mailer: &self.mailer,
            connectors: &self.directory,
            webhooks: &self.webhooks,
            clock,
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(40),
                max_retry_after: Duration::from_secs(1),
                budget: Duration::from_secs(10),
            },
        }
    }

    /// The ticket → idempotency keys of the notes the receiver got, and the keys sent more
    /// than once (with when each call arrived).
    fn notes(
        &self,
    ) -> (
        BTreeMap<String, BTreeSet<String>>,
        BTreeMap<String, Vec<Instant>>,
    ) {
        let mut by_ticket: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut by_key: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
        for (key, ticket, at) in self.receiver.calls.lock().unwrap().iter() {
            by_ticket
                .entry(ticket.clone())
                .or_default()
                .insert(key.clone());
            by_key.entry(key.clone()).or_default().push(*at);
        }
        by_key.retain(|_, at| at.len() > 1);
        (by_ticket, by_key)
    }

    /// Each of `tickets` got one note under one key; a key sent twice was first sent before
    /// `cut` (by the run that was cut off). Returns how many calls were repeated.
    fn assert_notes_once(&self, tickets: usize, cut: Instant) -> usize {
        let (by_ticket, repeated) = self.notes();
        assert_eq!(by_ticket.len(), tickets, "every ticket got its note");
        for (ticket, keys) in &by_ticket {
            assert_eq!(keys.len(), 1, "ticket {ticket}: one action, one key");
        }
        for (key, at) in &repeated {
            assert_eq!(at.len(), 2, "{key}: repeated at most once");
            assert!(
                at[0] < cut,
                "{key}: only a call cut off mid-way is repeated"
            );
        }
        repeated.len()
    }

    /// Each action has exactly one audit entry saying it was done.
    async fn assert_audited_once(&self, events: &[EventEnvelope]) {
        for event in events {
            let ticket = event.data["cause"]["data"]["ticket"]["id"]
                .as_str()
                .unwrap();
            let trail = audit_trail(
                self.store.as_ref(),
                &acme(),
                &TicketId::parse(ticket).unwrap(),
            )
            .await
            .unwrap();
            let done: Vec<_> = trail
                .iter()
                .filter(|e| e["kind"] == "action_executed")
                .collect();
            assert_eq!(done.len(), 1, "ticket {ticket}: {trail:?}");
            assert_eq!(done[0]["outcome"], "done");
        }
    }
}

/// An `action.requested` for a note on `ticket`, caused by its `ticket.closed`.
fn note_request(ticket: usize) -> EventEnvelope {
    let cause = EventEnvelope::new_root(
        acme(),
        EventType::TicketClosed,
        SystemClock.now(),
        json!({"ticket": {"id": ticket.to_string()}}),
    );
    let request = ActionRequest {
        rule_id: RuleId::new(),
        rule_name: "Note the close".into(),
        action_index: 0,
        action: Action::AddInternalNote {
            body: format!("Ticket {ticket} closed"),
        },
        cause: cause.clone(),
    };
    cause.caused(
        EventType::ActionRequested,
        SystemClock.now(),
        Some(request.rule_id),
        serde_json::to_value(&request).unwrap(),
    )
}

/// Runs the `actions` handler on every event at once, as concurrent Lambda invocations.
async fn handle_all(
    executor: &Executor<'_>,
    events: &[Value],
) -> Vec<Result<ActionOutcome, actions::ActionsError>> {
    let runs = events.iter().map(|e| actions::handle(executor, e));
    futures_join_all(runs).await
}

/// `join_all` without another dependency: each future polled in turn in one task.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}

#[tokio::test]
async fn the_actions_handler_aborted_mid_batch_on_dynamodb_runs_each_action_once_after_redelivery()
{
    const ACTIONS: usize = 30;
    const CUT_AFTER: usize = 5;
    let w = Arc::new(world().await);
    let requests: Vec<EventEnvelope> = (1..=ACTIONS).map(note_request).collect();
    let events: Vec<Value> = requests.iter().map(bus_event).collect();

    // The batch, cut off (the invocations die: no completion, no release) after the first
    // notes reach the helpdesk.
    let batch = {
        let (w, events) = (w.clone(), events.clone());
        tokio::spawn(async move {
            let executor = w.executor(&SystemClock);
            handle_all(&executor, &events).await;
        })
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        while w.receiver.calls.lock().unwrap().len() < CUT_AFTER {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the first notes arrived");
    batch.abort();
    let cut = Instant::now();
    assert!(batch.await.unwrap_err().is_cancelled());
    let sent_before = w.receiver.calls.lock().unwrap().len();
    assert!(sent_before < ACTIONS, "cut mid-batch");

    // EventBridge redelivers at once: a claim the dead invocation holds is "in progress", a
    // transient error, so EventBridge retries it later; the rest run now.
    let early = handle_all(&w.executor(&SystemClock), &events).await;
    let in_progress = early
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(actions::ActionsError::Action(ActionError::InProgress(_)))
            )
        })
        .count();
    assert!(in_progress > 0, "the cut-off invocations still held claims");
    for r in &early {
        match r {
            Ok(ActionOutcome::Done { .. } | ActionOutcome::AlreadyDone) => {}
            Err(actions::ActionsError::Action(e @ ActionError::InProgress(_))) => {
                assert!(e.is_transient())
            }
            other => panic!("{other:?}"),
        }
    }
    // A retry after the claims' in-progress timeout (2 minutes) runs the rest.
    let later = ManualClock::new(SystemClock.now() + chrono::Duration::minutes(3));
    let retried = handle_all(&w.executor(&later), &events).await;
    for r in &retried {
        assert!(
            matches!(
                r,
                Ok(ActionOutcome::Done { .. } | ActionOutcome::AlreadyDone)
            ),
            "{r:?}"
        );
    }
    let repeated = w.assert_notes_once(ACTIONS, cut);
    w.assert_audited_once(&requests).await;
    assert!(
        closedloop_core::actions::list_failed(w.store.as_ref(), &acme(), 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    eprintln!(
        "actions on moto: {ACTIONS} actions, cut after {sent_before} calls, {in_progress} still claimed at the first redelivery, {repeated} calls repeated with the same key"
    );
}

/// A relay that dies (panics: the Lambda crashes) after publishing its first `n` events.
struct DiesAfter {
    inner: EventBridgePublisher,
    n: usize,
}

#[async_trait]
impl EventPublisher for DiesAfter {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), PublishError> {
        self.inner
            .publish(&events[..self.n.min(events.len())])
            .await?;
        panic!("the relay was killed mid-batch");
    }
}

#[tokio::test]
async fn the_relay_killed_mid_batch_on_moto_loses_nothing_and_redeliveries_act_once() {
    const EVENTS: usize = 25;
    const DIES_AFTER: usize = 10;
    let w = world().await;
    let events = aws_sdk_eventbridge::Client::new(&w.sdk);
    let sqs = aws_sdk_sqs::Client::new(&w.sdk);
    let bus = format!("faults-{}", w.run);
    events.create_event_bus().name(&bus).send().await.unwrap();
    let queue = sqs
        .create_queue()
        .queue_name(format!("faults-{}", w.run))
        .send()
        .await
        .unwrap();
    let url = queue.queue_url().unwrap().to_string();
    // The template's own pattern for the actions function routes to the queue.
    let routes = closedloop_eventpattern::template::Routes::from_template_yaml(include_str!(
        "../../template.yaml"
    ))
    .unwrap();
    let pattern = routes.function("ActionsFunction").unwrap().events[0]
        .pattern
        .as_json()
        .to_string();
    events
        .put_rule()
        .name(format!("actions-{}", w.run))
        .event_bus_name(&bus)
        .event_pattern(pattern)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule(format!("actions-{}", w.run))
        .event_bus_name(&bus)
        .targets(
            Target::builder()
                .id("q")
                .arn(format!(
                    "arn:aws:sqs:us-east-1:123456789012:faults-{}",
                    w.run
                ))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // The outbox, written in DynamoDB as the rules function writes it.
    let requests: Vec<EventEnvelope> = (1..=EVENTS).map(note_request).collect();
    for event in &requests {
        w.store
            .transact_write(vec![outbox_put(event, SystemClock.now())])
            .await
            .unwrap();
    }
    let outbox = w
        .store
        .query(Query::partition(keys::outbox_partition(&acme())))
        .await
        .unwrap();
    assert_eq!(outbox.items.len(), EVENTS);
    let records: Vec<Value> = outbox
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| json!({"eventName": "INSERT", "dynamodb": {"SequenceNumber": (i + 1).to_string(), "NewImage": item}}))
        .collect();
    let stream: StreamEvent = serde_json::from_value(json!({ "Records": records })).unwrap();

    // The relay dies half-way: Lambda gets no batch response and retries the whole batch.
    let dying = DiesAfter {
        inner: EventBridgePublisher::new(events.clone(), bus.clone()),
        n: DIES_AFTER,
    };
    let crashed = tokio::spawn({
        let stream = stream.clone();
        async move { event_relay::handle(&dying, stream).await }
    })
    .await;
    assert!(crashed.unwrap_err().is_panic());
    let publisher = EventBridgePublisher::new(events.clone(), bus.clone());
    let retried = event_relay::handle(&publisher, stream).await;
    assert!(retried.batch_item_failures.is_empty());

    // Every event arrived; the ones published before the crash arrived twice.
    let mut delivered: Vec<Value> = Vec::new();
    for _ in 0..30 {
        let received = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in received.messages() {
            delivered.push(serde_json::from_str(message.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(&url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        if delivered.len() >= EVENTS + DIES_AFTER {
            break;
        }
    }
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for event in &delivered {
        *times
            .entry(event["detail"]["event_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let expected: BTreeSet<String> = requests.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(
        times.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "no event lost"
    );
    assert_eq!(
        times.values().filter(|n| **n == 2).count(),
        DIES_AFTER,
        "the events published before the crash came again"
    );
    assert_eq!(delivered.len(), EVENTS + DIES_AFTER);

    // The actions function, fed every delivery (duplicates included), acts once per event.
    let start = Instant::now();
    let outcomes = handle_all(&w.executor(&SystemClock), &delivered).await;
    let done = outcomes
        .iter()
        .filter(|r| matches!(r, Ok(ActionOutcome::Done { .. })))
        .count();
    let already = outcomes
        .iter()
        .filter(|r| matches!(r, Ok(ActionOutcome::AlreadyDone)))
        .count();
    let in_progress = outcomes
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(actions::ActionsError::Action(ActionError::InProgress(_)))
            )
        })
        .count();
    // Two copies handled at the same moment: one runs, the other is told to come back.
    assert_eq!(done, EVENTS, "{outcomes:?}");
    assert_eq!(already + in_progress, DIES_AFTER, "{outcomes:?}");
    // EventBridge retries the "in progress" ones; by then they are done.
    let again = handle_all(&w.executor(&SystemClock), &delivered).await;
    assert!(
        again
            .iter()
            .all(|r| matches!(r, Ok(ActionOutcome::AlreadyDone))),
        "{again:?}"
    );
    assert_eq!(
        w.assert_notes_once(EVENTS, start),
        0,
        "no call was repeated"
    );
    w.assert_audited_once(&requests).await;
    eprintln!(
        "relay on moto: {EVENTS} events, killed after publishing {DIES_AFTER}, {} deliveries, {done} done, {already} already done, {in_progress} in progress then already done",
        delivered.len()
    );
}
