//! Write throughput of the embedded store on a real file: conditional puts (`item_absent`, the
//! one-click rating write) against plain puts, with one writer and with four concurrent
//! writers, in both durability modes.
//!
//! `cargo bench -p closedloop-embedded --bench store`

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use closedloop_core::store::{Condition, Item, ItemStore, Key, Value};
use closedloop_embedded::{Durability, JournalStore, StoreOptions};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Every put writes a key never written before, so conditional puts always succeed.
static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

/// About the size and shape of a review item: a dozen attributes, on GSI1.
fn review_item() -> Item {
    let n = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
    let mut item = Key::new(format!("T#bench#REQ#{n:012}"), "REVIEW").to_item();
    for (name, value) in [
        ("entity", Value::s("review")),
        ("tenant", Value::s("bench")),
        ("ticket", Value::s(format!("TICKET-{n}"))),
        ("agent", Value::s("agent-42")),
        ("score", Value::n((n % 11) as i64)),
        ("kind", Value::s("nps")),
        (
            "comment",
            Value::s("Quick and friendly, thanks for sorting it out so fast."),
        ),
        ("recorded_at", Value::s("2025-01-01T12:00:00.000Z")),
        ("GSI1PK", Value::s("T#bench#REVIEWS")),
        (
            "GSI1SK",
            Value::s(format!("2025-01-01T12:00:00.000Z#{n:012}")),
        ),
        ("expires_at", Value::n(1_900_000_000)),
    ] {
        item.insert(name.to_string(), value);
    }
    item
}

async fn put_many(store: &JournalStore, writers: u64, total: u64, conditional: bool) -> Duration {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let store = store.clone();
        let count = total / writers + u64::from(writer < total % writers);
        tasks.spawn(async move {
            for _ in 0..count {
                let condition = conditional.then(Condition::item_absent);
                store.put(review_item(), condition).await.expect("put");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("writer task");
    }
    start.elapsed()
}

fn puts(c: &mut Criterion) {
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("runtime"),
    );
    let scratch = std::env::temp_dir().join(format!("closedloop-bench-{}", std::process::id()));
    for (label, durability) in [
        ("process_crash", Durability::ProcessCrash),
        ("power_loss", Durability::PowerLoss),
    ] {
        let path: PathBuf = scratch.join(format!("{label}.journal"));
        let options = StoreOptions {
            durability,
            ..StoreOptions::default()
        };
        let store = JournalStore::open_with(&path, options).expect("open the bench store");
        let mut group = c.benchmark_group(format!("journal_store_{label}"));
        group.throughput(Throughput::Elements(1));
        for writers in [1u64, 4] {
            for (name, conditional) in [("conditional_put", true), ("plain_put", false)] {
                group.bench_function(BenchmarkId::new(name, format!("{writers}_writers")), |b| {
                    b.iter_custom(|iters| {
                        runtime.block_on(put_many(&store, writers, iters, conditional))
                    });
                });
            }
        }
        group.finish();
        drop(store);
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = puts
}
criterion_main!(benches);
