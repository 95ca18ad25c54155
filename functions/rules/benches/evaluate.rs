//! What a tenant's rule count costs per event, and what loading and caching the rules costs per
//! warm invocation.
//!
//! `cargo bench -p rules --bench evaluate`
//!
//! The rules look like a large tenant's: spread over six triggers, most narrowed by an agent,
//! an account, an inbox or a rating (filed in the index), a few general ones that only
//! `contains` or `any` groups describe (always evaluated). The baseline is the same 10,000 rules
//! written so the index cannot use them (every condition inside an `any` group): a full scan.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use closedloop_core::automation;
use closedloop_core::domain::TenantSettings;
use closedloop_core::event::{EventEnvelope, EventType};
use closedloop_core::ids::{RuleId, TenantId};
use closedloop_core::rules::{FactContext, Facts, Rule, RuleSet, Trigger, parse_draft};
use closedloop_core::tenancy;
use closedloop_embedded::JournalStore;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::json;

const TRIGGERS: [&str; 6] = [
    "review_received",
    "nps_response_received",
    "ticket_created",
    "customer_message",
    "ticket_tag_added",
    "case_opened",
];

const CSAT: [&str; 3] = ["positive", "neutral", "negative"];

fn at() -> DateTime<Utc> {
    "2026-11-25T13:30:00Z".parse().unwrap()
}

/// Rule `i` of a tenant with many: 95% narrowed by an equality on a selective field.
fn rule_json(i: usize, scannable: bool) -> serde_json::Value {
    let trigger = TRIGGERS[i % TRIGGERS.len()];
    let narrowing = match i % 4 {
        0 => json!({"field": "agent", "op": "is", "value": format!("a-{}", i % 500)}),
        1 => json!({"field": "account", "op": "is", "value": format!("acc-{}", i % 2000)}),
        2 => {
            json!({"field": "ticket.inbox", "op": "is_any_of", "value": [format!("inbox-{}", i % 300), format!("inbox-{}", (i + 1) % 300)]})
        }
        _ => json!({"field": "rating.csat", "op": "is", "value": CSAT[i % 3]}),
    };
    let rest = json!({"any": [
        {"field": "review.comment", "op": "contains", "value": format!("word{}", i % 50)},
        {"field": "ticket.age_hours", "op": "greater_than", "value": (i % 72) as f64}
    ]});
    let conditions = if scannable {
        // The same test, inside an `any` group: the index cannot file it.
        json!({"all": [{"any": [narrowing]}, rest]})
    } else if i.is_multiple_of(20) {
        // A general rule: narrowed by nothing the index can use.
        json!({"all": [{"any": [narrowing, {"field": "ticket.subject", "op": "contains", "value": format!("topic {}", i % 97)}]}, rest]})
    } else {
        json!({"all": [narrowing, rest]})
    };
    json!({"name": format!("rule {i}"), "trigger": trigger, "conditions": conditions,
        "actions": [{"type": "add_internal_note", "body": "rule {{ rule }}"}]})
}

fn rules(n: usize, scannable: bool) -> Vec<Rule> {
    (0..n)
        .map(|i| {
            parse_draft(rule_json(i, scannable).to_string().as_bytes())
                .unwrap()
                .into_rule(RuleId::new(), at())
        })
        .collect()
}

fn facts() -> Facts {
    let event = EventEnvelope::new_root(
        TenantId::parse("acme").unwrap(),
        EventType::ReviewReceived,
        at(),
        json!({
            "review": {"tenant_id": "acme", "ticket_id": "1001", "rating": {"kind": "csat", "value": "negative"},
                "comment": "word7 and more", "agent_id": "a-7", "account_id": "acc-7",
                "recorded_at": "2026-11-25T13:00:00Z", "updated_at": "2026-11-25T13:00:00Z"},
            "ticket": {"id": "1001", "subject": "topic 12 again", "status": "open",
                "agent": {"id": "a-7", "name": "A", "email": "a@x.example", "email_notifications": true},
                "contact": {"id": "c-1", "name": "Bob", "email": "bob@x.example", "account": {"id": "acc-7", "name": "N"}},
                "inbox": "inbox-7", "created_at": "2026-11-24T13:30:00Z", "updated_at": "2026-11-25T13:00:00Z"}
        }),
    );
    Facts::from_event(&event, at(), &FactContext::default())
}

fn evaluation(c: &mut Criterion) {
    let facts = facts();
    let mut group = c.benchmark_group("evaluate_one_event");
    for n in [10, 1_000, 10_000] {
        let set = RuleSet::compile(rules(n, false));
        let matched = set.evaluate(Trigger::ReviewReceived, &facts).matched.len();
        eprintln!("{n} rules: {matched} match the event");
        group.bench_with_input(BenchmarkId::new("indexed", n), &set, |b, set| {
            b.iter(|| black_box(set.evaluate(Trigger::ReviewReceived, black_box(&facts))))
        });
    }
    let scan = RuleSet::compile(rules(10_000, true));
    group.bench_with_input(
        BenchmarkId::new("full_scan_baseline", 10_000),
        &scan,
        |b, set| b.iter(|| black_box(set.evaluate(Trigger::ReviewReceived, black_box(&facts)))),
    );
    group.finish();
}

fn loading(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("rules_per_invocation");
    group.sample_size(20);
    for n in [10, 1_000, 10_000] {
        let store = JournalStore::open_in_memory().unwrap();
        let tenant = TenantId::parse("acme").unwrap();
        rt.block_on(async {
            tenancy::provision_tenant(
                &store,
                tenant.clone(),
                "Acme",
                TenantSettings::default(),
                at(),
            )
            .await
            .unwrap();
            for rule in rules(n, false) {
                automation::save_rule(&store, &tenant, &rule).await.unwrap();
            }
        });
        group.bench_function(BenchmarkId::new("cold_load_and_compile", n), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let cache = rules::RuleCache::default();
                    black_box(cache.rules(&store, &tenant).await.unwrap())
                })
            })
        });
        let cache = rules::RuleCache::default();
        rt.block_on(cache.rules(&store, &tenant)).unwrap();
        group.bench_function(BenchmarkId::new("warm_cache_hit", n), |b| {
            b.iter(|| rt.block_on(async { black_box(cache.rules(&store, &tenant).await.unwrap()) }))
        });
    }
    group.finish();
}

criterion_group!(benches, evaluation, loading);
criterion_main!(benches);
