//! The load checks of `docs/load.md` at full size, through the local runner on 127.0.0.1.
//!
//! `cargo run --release -p closedloop --example load -- [clicks] [deliveries] [connections]`
//! (defaults 10000, 10000, 32). Three runs, each on a fresh runner and embedded store: rating
//! clicks with last-write-wins, the same with forbid-change, and signed webhook deliveries with
//! 20% redeliveries in random order. Each prints its throughput against the health endpoint
//! at the same concurrency in the same run, p50/p99, and the checks; exits 1 if a check failed.

use std::sync::Arc;

use closedloop::load::{self, ClickPlan, ClickReport, Measured, OffsetClock, WebhookPlan};
use closedloop::runner::{self, RunnerConfig, Running};

/// The same allocator as the `closedloop` binary, so the figures are the runner's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .map(|a| a.parse().expect("numeric arguments"))
        .unwrap_or(default)
}

async fn start() -> (Running, Arc<OffsetClock>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("closedloop-load-{}", ulid::Ulid::new()));
    let clock = Arc::new(OffsetClock::default());
    let mut config = RunnerConfig::new(&dir, "127.0.0.1:0".parse().unwrap());
    config.run_schedules = false;
    config.clock = clock.clone();
    (
        runner::start(config).await.expect("runner starts"),
        clock,
        dir,
    )
}

fn row(name: &str, m: &Measured) {
    println!(
        "  {:<28} {:>8} {:>10.0} {:>9.2} {:>9.2}",
        name,
        m.requests,
        m.per_second(),
        m.p50_ms,
        m.p99_ms
    );
}

fn header() {
    println!(
        "  {:<28} {:>8} {:>10} {:>9} {:>9}",
        "", "requests", "req/s", "p50 ms", "p99 ms"
    );
}

fn print_clicks(title: &str, r: &ClickReport) -> bool {
    println!("\n== {title}");
    header();
    let (base, clicks) = (r.baseline.as_ref().unwrap(), r.clicks.as_ref().unwrap());
    row("health (baseline)", base);
    row("rating clicks", clicks);
    println!(
        "  clicks/health throughput ratio: {:.2}; relaying their events took {:.2} s more",
        clicks.per_second() / base.per_second(),
        r.relay_seconds
    );
    println!(
        "  {} survey requests; answers by status {:?}; {} held for confirmation (then confirmed: {}); {} changes refused",
        r.surveys, r.statuses, r.held, r.confirmations, r.refused_changes
    );
    println!(
        "  reviews stored {}; review.recorded {}; review.received {}; counters {} = recount {}; agent report total {} = recount {}",
        r.reviews,
        r.review_recorded,
        r.review_received,
        r.counters.nps.iter().sum::<u64>(),
        r.recount.nps.iter().sum::<u64>(),
        r.report_total.0,
        r.report_total.1
    );
    checks(&r.failures)
}

fn checks(failures: &[String]) -> bool {
    if failures.is_empty() {
        println!("  checks: all hold");
        true
    } else {
        println!("  checks FAILED:");
        for f in failures {
            println!("    - {f}");
        }
        false
    }
}

#[tokio::main]
async fn main() {
    let clicks = arg(1, 10_000);
    let deliveries = arg(2, 10_000);
    let connections = arg(3, 32);
    let mut ok = true;
    for forbid in [false, true] {
        let (running, clock, dir) = start().await;
        let plan = ClickPlan {
            connections,
            ..ClickPlan::new(clicks, forbid)
        };
        let report = load::clicks(&running, &clock, &plan)
            .await
            .expect("the click run");
        let title = if forbid {
            "rating clicks, forbid_rating_change on"
        } else {
            "rating clicks, last write wins (default)"
        };
        ok &= print_clicks(title, &report);
        running.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    let (running, clock, dir) = start().await;
    let plan = WebhookPlan {
        connections,
        ..WebhookPlan::new(deliveries)
    };
    let r = load::webhooks(&running, &clock, &plan)
        .await
        .expect("the webhook run");
    println!("\n== webhook deliveries (generic, signed; 20% redelivered, shuffled)");
    header();
    let (base, sent) = (r.baseline.as_ref().unwrap(), r.deliveries.as_ref().unwrap());
    row("health (baseline)", base);
    row("webhook deliveries", sent);
    println!(
        "  deliveries/health throughput ratio: {:.2}; relaying their events took {:.2} s more",
        sent.per_second() / base.per_second(),
        r.relay_seconds
    );
    println!(
        "  {} unique + {} redeliveries; answers {:?}; rating requests {}",
        r.unique, r.duplicates, r.answers, r.rating_requests
    );
    println!("  outbox events {:?}", r.events);
    ok &= checks(&r.failures);
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    if !ok {
        std::process::exit(1);
    }
}
