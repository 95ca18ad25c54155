//! A per-agent report over one year for a tenant with 1,000,000 counted reviews, on the
//! embedded store: the time, and the items read (counters only, never a review). Also the same
//! report through the admin API route, and what a recount from the reviews would cost.
//!
//!   cargo bench -p closedloop-tests --bench reports --profile profiling
//!
//! Sizes: BENCH_REVIEWS (1000000), BENCH_AGENTS (20).

#[path = "common.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use closedloop_core::domain::{
    CsatValue, NpsScore, ProviderResponse, Rating, Review, TenantSettings,
};
use closedloop_core::ids::{AgentId, TenantId};
use closedloop_core::ports::SystemClock;
use closedloop_core::records::record_item;
use closedloop_core::reports::{self, DateRange};
use closedloop_core::store::{ItemStore, WriteOp};
use closedloop_core::{keys, tenancy};
use common::Counting;
use tower::ServiceExt;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let total: usize = std::env::var("BENCH_REVIEWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let agents: usize = std::env::var("BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let store = Arc::new(Counting::new(
        closedloop_embedded::JournalStore::open_in_memory().unwrap(),
    ));
    let tenant = TenantId::parse("bench").unwrap();
    let p = tenancy::provision_tenant(
        store.as_ref(),
        tenant.clone(),
        "Bench",
        TenantSettings::default(),
        Utc::now(),
    )
    .await
    .unwrap();
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let step = (365 * 86_400) as f64 / total as f64;
    let started = Instant::now();
    for n in 0..total {
        let at = start + Duration::milliseconds((n as f64 * step * 1000.0) as i64);
        let rating = if n % 4 == 0 {
            Rating::Nps(NpsScore::new((n % 11) as u8).unwrap())
        } else {
            Rating::Csat(CsatValue::ALL[n % 3])
        };
        let id = format!("r{n}");
        let key = keys::provider_review(&tenant, "bench", &id);
        let review = Review {
            tenant_id: tenant.clone(),
            survey_request_id: None,
            ticket_id: None,
            rating,
            comment: None,
            agent_id: Some(AgentId::parse(&format!("agent-{}", n % agents)).unwrap()),
            contact_id: None,
            account_id: None,
            recorded_at: at,
            updated_at: at,
            provider: Some(ProviderResponse {
                source: "bench".into(),
                response_id: id,
                respondent_email: None,
                answered_at: at,
            }),
            tags: vec![],
            status: None,
        };
        // As ingest writes it: the review with its counted attributes, and the counter ADD.
        let (mut ops, attrs) =
            reports::on_review_write(&tenant, chrono_tz::UTC, &key, None, &review);
        let mut item = record_item(&key, "review", &review);
        item.extend(attrs);
        ops.push(WriteOp::put(item));
        store.transact_write(ops).await.unwrap();
    }
    eprintln!(
        "stored {total} reviews and their counters in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let year = DateRange {
        from: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        to: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
    };
    let mut times = Vec::new();
    let mut report = None;
    for _ in 0..21 {
        store.reset();
        let t = Instant::now();
        report = Some(
            reports::agent_report(store.as_ref(), &tenant, 6, year, None)
                .await
                .unwrap(),
        );
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let report = report.unwrap();
    let (items, requests) = store.read();
    assert_eq!(report.total.total as usize, total);
    println!(
        "per-agent report, one year, {total} reviews, {agents} agents: median {:.2} ms (max {:.2}), {items} items read in {requests} requests",
        median(times.clone()),
        times.iter().cloned().fold(0.0, f64::max)
    );

    let app = admin_api::router(admin_api::AdminState {
        store: store.clone(),
        clock: Arc::new(SystemClock),
        settings: Default::default(),
        connectors: Arc::new(closedloop_connectors::StoreConnectorDirectory::new(
            store.clone(),
            closedloop_connectors::http_client(std::time::Duration::from_secs(2)),
        )),
    });
    let mut times = Vec::new();
    for _ in 0..21 {
        store.reset();
        let t = Instant::now();
        let response = app
            .clone()
            .oneshot(
                Request::get("/admin/v1/reports/agents?from=2026-01-01&to=2026-12-31")
                    .header("authorization", format!("Bearer {}", p.api_key))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(response.status().is_success());
        let _ = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (items, requests) = store.read();
    println!(
        "GET /admin/v1/reports/agents (one year): median {:.2} ms, {items} items read in {requests} requests (API key, settings, agents, counters)",
        median(times)
    );

    // For scale: the same answer recounted from the reviews (the rated-tickets index).
    store.reset();
    let t = Instant::now();
    let mut after: Option<String> = None;
    let mut n = 0;
    loop {
        let page = reports::rated_tickets(
            store.as_ref(),
            &tenant,
            6,
            year,
            &Default::default(),
            after.as_deref(),
            10_000,
        )
        .await
        .unwrap();
        n += page.tickets.len();
        match page.next_after {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    let (items, _) = store.read();
    println!(
        "recount from the reviews instead: {:.0} ms, {items} items read ({n} reviews)",
        t.elapsed().as_secs_f64() * 1000.0
    );
}
