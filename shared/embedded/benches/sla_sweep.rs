//! The SLA sweep over 100,000 open cases of which 1,000 are due: the time it takes and the
//! items it reads, through a counting wrapper around the real `JournalStore`. The baseline
//! reads every open case of the index and picks the due ones in code (what a sweep without
//! the deadline-sorted sparse index would have to do), then breaches the same 1,000.
//!
//! `cargo bench -p closedloop-embedded --bench sla_sweep`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use closedloop_core::cases;
use closedloop_core::domain::{Case, CaseOrigin, CaseStatus, TenantSettings};
use closedloop_core::ids::{CaseId, SurveyRequestId, TenantId, TicketId};
use closedloop_core::keys;
use closedloop_core::records::record_item;
use closedloop_core::store::{
    Index, Item, ItemExt, ItemStore, Key, Page, Query, StoreError, Update, WriteOp,
};
use closedloop_core::sweeps::SweepReport;
use closedloop_embedded::JournalStore;
use criterion::{Criterion, criterion_group, criterion_main};

const OPEN: usize = 100_000;
const DUE: usize = 1_000;

/// Counts what the store hands back: items returned by queries, and point reads.
struct Counting {
    inner: JournalStore,
    queries: AtomicUsize,
    query_items: AtomicUsize,
    gets: AtomicUsize,
    writes: AtomicUsize,
}

impl Counting {
    fn reset(&self) {
        for c in [&self.queries, &self.query_items, &self.gets, &self.writes] {
            c.store(0, Ordering::Relaxed);
        }
    }
    fn line(&self) -> String {
        format!(
            "{} queries returning {} items, {} point reads, {} transactions",
            self.queries.load(Ordering::Relaxed),
            self.query_items.load(Ordering::Relaxed),
            self.gets.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }
}

#[async_trait]
impl ItemStore for Counting {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }
    async fn put(
        &self,
        item: Item,
        condition: Option<closedloop_core::store::Condition>,
    ) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.put(item, condition).await
    }
    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<closedloop_core::store::Condition>,
    ) -> Result<Item, StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.update(key, update, condition).await
    }
    async fn delete(
        &self,
        key: &Key,
        condition: Option<closedloop_core::store::Condition>,
    ) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(key, condition).await
    }
    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        let page = self.inner.query(query).await?;
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.query_items
            .fetch_add(page.items.len(), Ordering::Relaxed);
        Ok(page)
    }
    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.transact_write(ops).await
    }
}

fn case(tenant: &TenantId, deadline: DateTime<Utc>, n: usize) -> Case {
    Case {
        id: CaseId::new(),
        tenant_id: tenant.clone(),
        survey_request_id: Some(SurveyRequestId::new()),
        ticket_id: Some(TicketId::parse(&format!("{}", 10_000 + n)).unwrap()),
        review: Some(SurveyRequestId::new().to_string()),
        contact_id: None,
        account_id: None,
        assignee: Some(closedloop_core::ids::AgentId::parse("a-alice").unwrap()),
        status: CaseStatus::Open,
        opened_at: deadline - Duration::hours(8),
        origin: CaseOrigin::Rule,
        opened_by_rule: None,
        sla_deadline: Some(deadline),
        sla_breached: false,
        breached_at: None,
        closed_at: None,
        resolution: None,
        resolution_id: None,
        closed_by: None,
        sla_met: None,
        seconds_to_close: None,
        business_seconds_to_close: None,
    }
}

struct World {
    store: Arc<Counting>,
    tenant: TenantId,
    now: DateTime<Utc>,
    /// The due cases as first written: put back before each timed sweep.
    due: Vec<Item>,
}

async fn world() -> World {
    let store = Arc::new(Counting {
        inner: JournalStore::open_in_memory().unwrap(),
        queries: AtomicUsize::new(0),
        query_items: AtomicUsize::new(0),
        gets: AtomicUsize::new(0),
        writes: AtomicUsize::new(0),
    });
    let tenant = TenantId::parse("bench").unwrap();
    let now: DateTime<Utc> = "2026-01-13T12:00:00Z".parse().unwrap();
    closedloop_core::tenancy::provision_tenant(
        store.as_ref(),
        tenant.clone(),
        "Bench",
        TenantSettings::default(),
        now,
    )
    .await
    .unwrap();
    let mut due = Vec::new();
    let mut batch = Vec::new();
    for n in 0..OPEN {
        // 1,000 due in the last 10 hours; the rest due over the next 30 days.
        let deadline = if n < DUE {
            now - Duration::seconds(36 * n as i64 + 1)
        } else {
            now + Duration::seconds(26 * n as i64)
        };
        let case = case(&tenant, deadline, n);
        let item = cases::case_item(&case, 1);
        if n < DUE {
            due.push(item.clone());
        }
        // Each case's review, which a breach event carries.
        let review_key = keys::review(
            &tenant,
            SurveyRequestId::parse(case.review.as_deref().unwrap()).unwrap(),
        );
        batch.push(WriteOp::put(record_item(
            &review_key,
            "review",
            &serde_json::json!({"survey_request_id": case.review, "rating": {"kind": "nps", "value": 3}}),
        )));
        batch.push(WriteOp::put(item));
        if batch.len() == 100 {
            store
                .inner
                .transact_write(std::mem::take(&mut batch))
                .await
                .unwrap();
        }
    }
    World {
        store,
        tenant,
        now,
        due,
    }
}

impl World {
    /// The due cases open and unbreached again (between timed runs).
    async fn restore(&self) {
        for chunk in self.due.chunks(100) {
            self.store
                .inner
                .transact_write(chunk.iter().cloned().map(WriteOp::put).collect())
                .await
                .unwrap();
        }
        self.store.reset();
    }

    async fn sparse(&self) -> SweepReport {
        let mut report = SweepReport::default();
        cases::breach_due(self.store.as_ref(), &self.tenant, self.now, &mut report)
            .await
            .unwrap();
        report
    }

    /// Every open case of the index, due or not, filtered here.
    async fn full_scan(&self) -> SweepReport {
        let mut report = SweepReport::default();
        let mut start = None;
        loop {
            let page = self
                .store
                .query(
                    Query::on_index(Index::Gsi1, keys::open_cases_index(&self.tenant))
                        .limit(100)
                        .start_after(start),
                )
                .await
                .unwrap();
            report.items_read += page.items.len();
            for item in &page.items {
                let deadline = item
                    .str_attr(Index::Gsi1.sk_attribute())
                    .and_then(|sk| sk.split('#').next())
                    .and_then(keys::parse_sortable_time);
                if deadline.is_some_and(|d| d <= self.now)
                    && cases::breach_item(self.store.as_ref(), item, self.now)
                        .await
                        .unwrap()
                {
                    report.changed += 1;
                }
            }
            match page.last_evaluated {
                Some(last) => start = Some(last),
                None => return report,
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let started = Instant::now();
    let world = rt.block_on(world());
    eprintln!(
        "set up {OPEN} open cases ({DUE} due) and their reviews in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // What each sweep reads, once, outside the timings.
    for (name, full) in [("sparse index", false), ("full scan", true)] {
        rt.block_on(world.restore());
        let t = Instant::now();
        let report = rt.block_on(async {
            if full {
                world.full_scan().await
            } else {
                world.sparse().await
            }
        });
        assert_eq!(report.changed, DUE, "{name} breaches exactly the due cases");
        eprintln!(
            "{name}: {} index items read, {} breached, in {:.1} ms; store saw {}",
            report.items_read,
            report.changed,
            t.elapsed().as_secs_f64() * 1e3,
            world.store.line()
        );
    }

    let mut group = c.benchmark_group("sla_sweep_100k_open_1k_due");
    group.sample_size(10);
    group.measurement_time(StdDuration::from_secs(20));
    for (name, full) in [("sparse_index", false), ("full_scan_baseline", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = StdDuration::ZERO;
                for _ in 0..iters {
                    rt.block_on(world.restore());
                    let t = Instant::now();
                    let report = rt.block_on(async {
                        if full {
                            world.full_scan().await
                        } else {
                            world.sparse().await
                        }
                    });
                    total += t.elapsed();
                    assert_eq!(report.changed, DUE);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
