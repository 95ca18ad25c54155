//! Reports stay exact while customers change their ratings: after any sequence of link clicks,
//! page posts, settling runs and survey-provider versions, the counters the reports read equal
//! a recount of the stored reviews.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use closedloop_core::domain::{Review, TimeZone};
use closedloop_core::event::{EventEnvelope, EventType};
use closedloop_core::ids::{SurveyRequestId, TenantId};
use closedloop_core::ports::{Clock, MailError, Mailer, OutgoingEmail, SystemClock};
use closedloop_core::ratings::{self, Via};
use closedloop_core::records::read_record;
use closedloop_core::reports::{self, Counts, DateRange, Period, RatedFilter};
use closedloop_core::store::{ItemExt, ItemStore};
use closedloop_core::surveys::{self, LinkSigner, ScheduleOutcome};
use closedloop_core::tokens::{RatingClaims, TokenKeyring};
use closedloop_core::{keys, tenancy};
use common::*;
use proptest::prelude::*;

struct NoMail;

#[async_trait::async_trait]
impl Mailer for NoMail {
    async fn send(&self, _: &OutgoingEmail) -> Result<String, MailError> {
        Ok("m".into())
    }
}

const AGENTS: [&str; 2] = ["a-ann", "a-ben"];
const CSAT: [&str; 3] = ["positive", "neutral", "negative"];

#[derive(Debug, Clone)]
enum Op {
    Click(usize, usize),
    Form(usize, usize),
    Minutes(i64),
    Settle,
    /// A provider response (of 2), score, minutes after its first answer.
    Provider(usize, u8, i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 0..3usize).prop_map(|(r, v)| Op::Click(r, v)),
        (0..3usize, 0..3usize).prop_map(|(r, v)| Op::Form(r, v)),
        prop_oneof![Just(1i64), Just(6), Just(60 * 20)].prop_map(Op::Minutes),
        Just(Op::Settle),
        (0..2usize, 0..=10u8, 0..100i64).prop_map(|(p, s, m)| Op::Provider(p, s, m)),
    ]
}

fn delighted(n: usize, score: u8, updated_at: i64, first: i64) -> String {
    serde_json::json!({
        "event_type": "survey_response.updated",
        "event_id": format!("ev-{n}-{updated_at}-{score}"),
        "event_data": {
            "id": format!("resp-{n}"),
            "person": {"id": "5975", "email": "bob@example.com"},
            "survey_type": "nps", "score": score, "comment": null,
            "created_at": first, "updated_at": updated_at,
            "person_properties": null
        }
    })
    .to_string()
}

async fn run(ops: Vec<Op>) -> (std::sync::Arc<dyn ItemStore>, TenantId) {
    let f = fixture().await;
    let tenant = TenantId::parse("acme").unwrap();
    let mut settings = tenancy::get_settings(f.store.as_ref(), &tenant)
        .await
        .unwrap();
    // Late evening in Warsaw is the next day in UTC's eyes: days are the tenant's.
    settings.time_zone = TimeZone::parse("Asia/Tokyo").unwrap();
    tenancy::put_settings(f.store.as_ref(), &tenant, &settings)
        .await
        .unwrap();
    let store = f.store.as_ref();
    let settings_tz = settings.time_zone.tz();
    let keyring = TokenKeyring::parse(&TokenKeyring::generate_spec("k1")).unwrap();
    let links = LinkSigner {
        keyring: &keyring,
        public_base_url: "https://fb.example",
    };
    let mut requests: Vec<SurveyRequestId> = Vec::new();
    for i in 0..3 {
        let agent = AGENTS[i % 2];
        let event = EventEnvelope::new_root(
            tenant.clone(),
            EventType::TicketClosed,
            SystemClock.now(),
            serde_json::json!({ "ticket": { "id": format!("t{i}"), "subject": "Printer", "status": "closed",
                "agent": {"id": agent, "name": agent, "email": format!("{agent}@acme.example"), "email_notifications": true},
                "contact": { "id": "c1", "name": "Bob", "email": "bob@example.com" },
                "updated_at": SystemClock.now() } }),
        );
        let ScheduleOutcome::Scheduled { survey, .. } =
            surveys::on_ticket_event(store, &NoMail, &SystemClock, &links, &event)
                .await
                .unwrap()
        else {
            panic!("scheduled")
        };
        requests.push(survey);
    }
    let mut now: DateTime<Utc> = SystemClock.now();
    let first_answer = now.timestamp() - 3600;
    let mut provider_minutes = [0i64; 2];
    for op in ops {
        match op {
            Op::Click(r, v) | Op::Form(r, v) => {
                let token = keyring.sign(&RatingClaims {
                    tenant: tenant.clone(),
                    survey_request: requests[r],
                    value: CSAT[v].into(),
                    expires_at: now + Duration::days(30),
                });
                let via = if matches!(op, Op::Click(..)) {
                    Via::Link
                } else {
                    Via::Form
                };
                ratings::submit(
                    store,
                    ratings::Links {
                        keyring: &keyring,
                        settings: &closedloop_core::tenancy::SettingsCache::default(),
                    },
                    now,
                    &token,
                    via,
                    None,
                    None,
                )
                .await
                .unwrap();
                now += Duration::seconds(3);
            }
            Op::Minutes(m) => now += Duration::minutes(m),
            Op::Settle => {
                ratings::settle_reviews(store, now).await.unwrap();
            }
            Op::Provider(p, score, m) => {
                // Versions arrive in any order; only newer ones change the review.
                provider_minutes[p] = m;
                let body = delighted(p, score, first_answer + m * 60, first_answer);
                let headers = delighted_headers(&secret_of("acme", "delighted"), &body);
                let (status, reply) =
                    post(&f.app, "/webhooks/acme/delighted", &headers, &body).await;
                assert!(status.is_success(), "{reply}");
            }
        }
    }

    // The recount: every stored review that counts, by agent and tenant-local day.
    let mut by_agent: BTreeMap<String, Counts> = BTreeMap::new();
    let mut by_day: BTreeMap<String, Counts> = BTreeMap::new();
    let mut counted = 0;
    let mut count = |review: &Review| {
        let agent = review
            .agent_id
            .as_ref()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let day = review
            .recorded_at
            .with_timezone(&settings_tz)
            .format("%Y-%m-%d")
            .to_string();
        by_agent.entry(agent).or_default().count(review.rating);
        by_day.entry(day).or_default().count(review.rating);
        counted += 1;
    };
    for id in &requests {
        if let Some(item) = store.get(&keys::review(&tenant, *id)).await.unwrap()
            && item.contains_key("received_at")
            && item.str_attr("confirmation") != Some("held")
        {
            count(&read_record(&item).unwrap());
        }
    }
    for p in 0..2 {
        if let Some(item) = store
            .get(&keys::provider_review(
                &tenant,
                "delighted",
                &format!("resp-{p}"),
            ))
            .await
            .unwrap()
        {
            count(&read_record(&item).unwrap());
        }
    }

    let today = SystemClock.now().date_naive();
    let range = DateRange {
        from: today - Duration::days(3),
        to: today + Duration::days(5),
    };
    let counters = reports::read_counters(store, &tenant, range, None)
        .await
        .unwrap();
    let mut report_agents: BTreeMap<String, Counts> = BTreeMap::new();
    let mut report_days: BTreeMap<String, Counts> = BTreeMap::new();
    for (day, agent, c) in &counters.rows {
        if *c != Counts::default() {
            report_agents.entry(agent.clone()).or_default().add(c);
            report_days
                .entry(day.format("%Y-%m-%d").to_string())
                .or_default()
                .add(c);
        }
    }
    by_agent.retain(|_, c| *c != Counts::default());
    assert_eq!(report_agents, by_agent, "per agent");
    assert_eq!(report_days, by_day, "per day");
    let report = reports::agent_report(store, &tenant, 6, range, None)
        .await
        .unwrap();
    assert_eq!(report.total.total as usize, counted);
    let trend = reports::trend(store, &tenant, 6, range, Period::Day, None)
        .await
        .unwrap();
    assert_eq!(
        trend
            .periods
            .iter()
            .map(|p| p.figures.total as usize)
            .sum::<usize>(),
        counted
    );
    let rated =
        reports::rated_tickets(store, &tenant, 6, range, &RatedFilter::default(), None, 100)
            .await
            .unwrap();
    assert_eq!(
        rated.tickets.len(),
        counted,
        "one rated-ticket entry per counted review"
    );
    (f.store.clone(), tenant)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn counters_equal_a_recount_of_the_stored_reviews(ops in prop::collection::vec(op(), 1..24)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(ops));
    }
}

#[tokio::test]
async fn a_settled_rating_changed_on_the_page_moves_its_count() {
    let (store, tenant) = run(vec![
        Op::Click(0, 0),
        Op::Minutes(20),
        Op::Settle,
        Op::Form(0, 2),
        Op::Provider(0, 3, 5),
        Op::Provider(0, 10, 9),
        Op::Provider(0, 1, 7),
    ])
    .await;
    let today = SystemClock.now().date_naive();
    let range = DateRange {
        from: today - Duration::days(3),
        to: today + Duration::days(3),
    };
    let report = reports::agent_report(store.as_ref(), &tenant, 6, range, None)
        .await
        .unwrap();
    let ann = report
        .agents
        .iter()
        .find(|a| a.agent_id.as_deref() == Some("a-ann"))
        .unwrap();
    assert_eq!(
        (ann.figures.positive, ann.figures.negative),
        (0, 1),
        "the old bucket went down"
    );
    // The provider's newest version (10, answered last) counts once; the late 1 changed nothing.
    let nobody = report.agents.iter().find(|a| a.agent_id.is_none()).unwrap();
    assert_eq!(
        (
            nobody.figures.promoters,
            nobody.figures.total,
            nobody.figures.nps
        ),
        (1, 1, Some(100.0))
    );
}
