//! The load checks of `docs/load.md`, reduced for CI: 1,000 rating clicks (with concurrent
//! clicks on the same survey request) under last-write-wins and under forbid-change, and 1,000
//! signed webhook deliveries with 20% redeliveries in random order, each through a local runner
//! on 127.0.0.1. No timing is asserted; the invariants are. `scripts/load.sh` runs them at full
//! size in release mode and prints the figures.

use std::sync::Arc;

use closedloop::load::{self, ClickPlan, OffsetClock, WebhookPlan};
use closedloop::runner::{self, RunnerConfig, Running};

async fn start() -> (Running, Arc<OffsetClock>) {
    let dir = std::env::temp_dir().join(format!("closedloop-load-{}", ulid::Ulid::new()));
    let clock = Arc::new(OffsetClock::default());
    let mut config = RunnerConfig::new(&dir, "127.0.0.1:0".parse().unwrap());
    config.run_schedules = false;
    config.clock = clock.clone();
    (runner::start(config).await.unwrap(), clock)
}

async fn click_run(forbid: bool) -> load::ClickReport {
    let (running, clock) = start().await;
    let plan = ClickPlan {
        connections: 16,
        ..ClickPlan::new(1_000, forbid)
    };
    let report = load::clicks(&running, &clock, &plan).await.unwrap();
    running.shutdown().await;
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    // Every survey request clicked has its review, settled once, counted once.
    assert!(report.surveys > 500, "{report:?}");
    assert_eq!(report.reviews, report.surveys);
    assert_eq!(report.review_received, report.surveys);
    assert_eq!(report.recount, report.counters);
    // The concurrent link clicks tripped the burst guard, and people confirmed them.
    assert!(report.held > 0 && report.confirmations > 0, "{report:?}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clicks_last_write_wins_and_nothing_is_lost_or_counted_twice() {
    let report = click_run(false).await;
    // Concurrent posts with different scores each replaced the one before: more writes were
    // recorded than there are reviews.
    assert!(report.review_recorded > report.reviews, "{report:?}");
    assert_eq!(report.refused_changes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clicks_with_forbid_change_keep_the_first_and_refuse_the_rest() {
    let report = click_run(true).await;
    assert!(report.refused_changes > 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_redelivered_webhooks_have_exactly_one_effect_each() {
    let (running, clock) = start().await;
    let plan = WebhookPlan {
        connections: 16,
        ..WebhookPlan::new(1_000)
    };
    let report = load::webhooks(&running, &clock, &plan).await.unwrap();
    running.shutdown().await;
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert_eq!((report.unique, report.duplicates), (800, 200));
    assert_eq!(report.answers.get("202 accepted"), Some(&800), "{report:?}");
    assert_eq!(
        report.answers.get("200 duplicate"),
        Some(&200),
        "{report:?}"
    );
    // A quarter of the deliveries close a ticket: one rating request each.
    assert_eq!(report.rating_requests, 200);
    assert_eq!(report.events.get("survey.sent"), Some(&200));
}
