//! The daily detractor sweep over many stored answers, few of them changed since the last run:
//! time, and items read (counted under the store port). On the embedded store at full scale
//! (1,000,000 answers, 100,000 accounts, 2,000 changed), and against moto when
//! `AWS_ENDPOINT_URL_MOTO` is set (a smaller load: moto takes a few ms per write).
//!
//!   cargo bench -p closedloop-tests --bench detractor_sweep --profile profiling
//!   AWS_ENDPOINT_URL_MOTO=http://127.0.0.1:5055 cargo bench ... (moto via scripts/emulators.sh up)
//!
//! Sizes: BENCH_ACCOUNTS (100000), BENCH_MOTO_ACCOUNTS (5000); 10 answers per account. On
//! moto the load uses plain puts: moto copies the table for every transaction.

#[path = "common.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use closedloop_core::accounts;
use closedloop_core::detractors::{self, AccountFlag, FlagMessage, FlagState};
use closedloop_core::domain::{NpsScore, ProviderResponse, Rating, Review, TenantSettings};
use closedloop_core::ids::{AccountId, ContactId, TenantId};
use closedloop_core::records::record_item;
use closedloop_core::store::{ItemStore, Value, WriteOp};
use closedloop_core::{keys, tenancy};
use common::{Counting, Directory, Helpdesk, Mail};

const ANSWERS_PER_ACCOUNT: usize = 10;

fn score(i: usize, j: usize) -> u8 {
    ((i * 7 + j * 3) % 11) as u8
}

fn review(tenant: &TenantId, i: usize, j: usize, score: u8, at: DateTime<Utc>) -> (String, Review) {
    let id = format!("r{i}-{j}");
    let key = keys::provider_review(tenant, "bench", &id);
    let review = Review {
        tenant_id: tenant.clone(),
        survey_request_id: None,
        ticket_id: None,
        rating: Rating::Nps(NpsScore::new(score).unwrap()),
        comment: None,
        agent_id: None,
        contact_id: Some(ContactId::parse(&format!("c-{i}-{}", j % 3)).unwrap()),
        account_id: Some(AccountId::parse(&format!("acc-{i}")).unwrap()),
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
    (key.pk, review)
}

/// Stores `accounts` × 10 answers and every account as a previous run left it (flagged when
/// its latest answer is a detractor, reported, out of the changed index).
async fn seed(store: &dyn ItemStore, tenant: &TenantId, accounts: usize, base: DateTime<Utc>) {
    let mut ops = Vec::with_capacity(100);
    // Plain puts when `one_by_one` (moto copies the whole table for every transaction, so a
    // transactional load of 50,000 items takes hours there), else transactions of 100.
    let one_by_one = std::env::var("BENCH_LOAD_BY_PUT").is_ok();
    let flush = |ops: &mut Vec<WriteOp>| {
        let batch = std::mem::take(ops);
        async move {
            if one_by_one {
                for op in batch {
                    let WriteOp::Put { item, .. } = op else {
                        unreachable!()
                    };
                    store.put(item, None).await.unwrap();
                }
            } else {
                store.transact_write(batch).await.unwrap()
            }
        }
    };
    for i in 0..accounts {
        for j in 0..ANSWERS_PER_ACCOUNT {
            let at = base + Duration::days(j as i64) + Duration::seconds(i as i64);
            let (pk, r) = review(tenant, i, j, score(i, j), at);
            ops.push(WriteOp::put(record_item(
                &closedloop_core::store::Key::new(pk, "REVIEW"),
                "review",
                &r,
            )));
            if ops.len() == 100 {
                flush(&mut ops).await;
            }
        }
        let last = ANSWERS_PER_ACCOUNT - 1;
        let at = base + Duration::days(last as i64) + Duration::seconds(i as i64);
        let s = score(i, last);
        let detractor = s <= 6;
        let message = detractor.then(|| FlagMessage {
            subject: format!("NPS detractor ({s}/10)"),
            text: "flagged before".into(),
        });
        let flag = AccountFlag {
            state: if detractor {
                FlagState::Flagged
            } else {
                FlagState::Unflagged
            },
            detractor,
            answer_at: keys::sortable_time(at),
            on_record: message.clone(),
            pending: None,
            error: None,
            checked_at: at,
            reported: message,
            error_reported_on: None,
        };
        let mut item =
            keys::account_latest(tenant, &AccountId::parse(&format!("acc-{i}")).unwrap()).to_item();
        item.insert("entity".into(), Value::s("account"));
        item.insert("latest_score".into(), Value::n(s.into()));
        item.insert(
            "latest_answered_at".into(),
            Value::S(keys::sortable_time(at)),
        );
        item.insert(
            "latest_contact_id".into(),
            Value::S(format!("c-{i}-{}", last % 3)),
        );
        item.insert(
            "latest_review".into(),
            Value::S(keys::provider_review(tenant, "bench", &format!("r{i}-{last}")).pk),
        );
        item.insert(
            "flag".into(),
            Value::S(serde_json::to_string(&flag).unwrap()),
        );
        item.insert("flag_version".into(), Value::s("v0"));
        ops.push(WriteOp::put(item));
        if ops.len() == 100 {
            flush(&mut ops).await;
        }
    }
    if !ops.is_empty() {
        flush(&mut ops).await;
    }
}

/// A newer answer on `changed` accounts spread over all of them: detractors become promoters
/// (to unflag) and the others detractors (to flag).
async fn change(
    store: &dyn ItemStore,
    tenant: &TenantId,
    accounts: usize,
    changed: usize,
    round: usize,
    at: DateTime<Utc>,
) {
    for k in 0..changed {
        let i = k * (accounts / changed) + round;
        let j = ANSWERS_PER_ACCOUNT + round;
        let was = accounts::latest_nps_answer(
            store,
            tenant,
            &AccountId::parse(&format!("acc-{i}")).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
        let s = if was.score.value() <= 6 { 10 } else { 2 };
        let (pk, r) = review(tenant, i, j, s, at);
        store
            .put(
                record_item(
                    &closedloop_core::store::Key::new(pk.clone(), "REVIEW"),
                    "review",
                    &r,
                ),
                None,
            )
            .await
            .unwrap();
        accounts::note_nps_answer(
            store,
            tenant,
            r.account_id.as_ref().unwrap(),
            r.contact_id.as_ref(),
            NpsScore::new(s).unwrap(),
            at,
            &pk,
            at,
        )
        .await
        .unwrap();
    }
}

async fn run<S: ItemStore>(label: &str, store: S, accounts: usize) {
    let counting = Counting::new(store);
    let tenant = TenantId::parse("bench").unwrap();
    let settings = TenantSettings {
        digest_recipients: vec![
            closedloop_core::domain::Email::parse("lead@bench.example").unwrap(),
        ],
        ..TenantSettings::default()
    };
    let base: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    tenancy::provision_tenant(&counting, tenant.clone(), "Bench", settings, base)
        .await
        .unwrap();
    let started = Instant::now();
    seed(&counting, &tenant, accounts, base).await;
    eprintln!(
        "{label}: stored {} answers over {accounts} accounts in {:.1} s",
        accounts * ANSWERS_PER_ACCOUNT,
        started.elapsed().as_secs_f64()
    );
    let helpdesk = Arc::new(Helpdesk::default());
    let directory = Directory(helpdesk.clone());
    let mail = Mail::default();
    let mut now = base + Duration::days(30);
    for (round, changed) in [2000usize, 200, 0].into_iter().enumerate() {
        if changed > 0 {
            change(
                &counting,
                &tenant,
                accounts,
                changed,
                round,
                now - Duration::hours(3),
            )
            .await;
        }
        counting.reset();
        let calls = helpdesk.calls.load(Ordering::Relaxed);
        let started = Instant::now();
        let summary = detractors::sweep(&counting, &directory, &mail, now)
            .await
            .unwrap();
        let elapsed = started.elapsed();
        let (items, requests) = counting.read();
        println!(
            "{label}: {} answers, {accounts} accounts, {changed} changed: sweep {:.1} ms, {items} items read in {requests} requests (accounts {}, flagged {}, unflagged {}, helpdesk calls {}, digests {})",
            accounts * ANSWERS_PER_ACCOUNT,
            elapsed.as_secs_f64() * 1000.0,
            summary.accounts_read,
            summary.flagged,
            summary.unflagged,
            helpdesk.calls.load(Ordering::Relaxed) - calls,
            summary.digests_sent,
        );
        now += Duration::days(1);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let accounts: usize = std::env::var("BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let embedded = closedloop_embedded::JournalStore::open_in_memory().unwrap();
    run("embedded", embedded, accounts).await;

    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL_MOTO") {
        // SAFETY: set before any other thread reads the environment.
        unsafe { std::env::set_var("BENCH_LOAD_BY_PUT", "1") };
        let accounts: usize = std::env::var("BENCH_MOTO_ACCOUNTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5_000);
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "bench",
            ))
            .load()
            .await;
        let client = aws_sdk_dynamodb::Client::new(&config);
        let table = format!(
            "closedloop-bench-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        closedloop_aws::store::create_table(&client, &table)
            .await
            .unwrap();
        run(
            "moto",
            closedloop_aws::store::DynamoStore::new(client, table),
            accounts,
        )
        .await;
    }
}
