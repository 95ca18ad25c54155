//! An account's latest NPS answer is the newest one, whatever order the deliveries arrive in.

mod common;

use axum::http::StatusCode;
use closedloop_core::accounts;
use closedloop_core::ids::{AccountId, TenantId};
use common::*;
use proptest::prelude::*;

/// One Delighted response per answer, all from Bob at account 509974.
fn answer(n: usize, score: u8, answered_at: i64) -> String {
    serde_json::json!({
        "event_type": "survey_response.created",
        "event_id": format!("ev-{n}"),
        "event_data": {
            "id": format!("resp-{n}"),
            "person": {"id": "5975", "email": "bob@example.com"},
            "survey_type": "nps", "score": score, "comment": null,
            "created_at": answered_at, "updated_at": answered_at,
            "person_properties": null
        }
    })
    .to_string()
}

async fn deliver_in_order(answers: &[(u8, i64)], order: &[usize]) -> (u8, usize) {
    let f = fixture().await;
    let ticket = serde_json::json!({
        "delivery_id": "t-1", "type": "ticket.closed", "occurred_at": "2026-11-20T10:00:00Z",
        "ticket": {"id": "1001", "subject": "Printer", "status": "closed",
            "contact": {"id": "c-bob", "name": "Bob", "email": "bob@example.com",
                "account": {"id": "509974", "name": "Northwind"}},
            "updated_at": "2026-11-20T10:00:00Z"}
    })
    .to_string();
    let signature = closedloop_core::signature::sign_timestamped(
        f.generic_secret.as_bytes(),
        now().timestamp(),
        ticket.as_bytes(),
    );
    let (status, _) = post(
        &f.app,
        "/webhooks/acme/generic",
        &[("X-Closedloop-Signature".into(), signature)],
        &ticket,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for &i in order {
        let (score, at) = answers[i];
        let body = answer(i, score, at);
        let headers = delighted_headers(&secret_of("acme", "delighted"), &body);
        // Each delivery twice: redeliveries must not disturb the order either.
        for _ in 0..2 {
            let (status, reply) = post(&f.app, "/webhooks/acme/delighted", &headers, &body).await;
            assert!(status.is_success(), "{reply}");
        }
    }
    let latest = accounts::latest_nps_answer(
        f.store.as_ref(),
        &TenantId::parse("acme").unwrap(),
        &AccountId::parse("509974").unwrap(),
    )
    .await
    .unwrap()
    .expect("the account has an answer");
    let reviews = outbox(f.store.as_ref(), "acme")
        .await
        .iter()
        .filter(|(t, _)| t == "review.received")
        .count();
    (latest.score.value(), reviews)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_newest_answer_wins_in_any_delivery_order(
        (answers, order) in prop::collection::btree_map(1_700_000_000i64..1_800_000_000, 0u8..=10, 1..6)
            .prop_map(|m| m.into_iter().map(|(at, score)| (score, at)).collect::<Vec<_>>())
            .prop_flat_map(|answers| {
                let order = Just((0..answers.len()).collect::<Vec<_>>()).prop_shuffle();
                (Just(answers), order)
            })
    ) {
        let newest = answers.iter().max_by_key(|(_, at)| *at).unwrap().0;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (latest, received) = runtime.block_on(deliver_in_order(&answers, &order));
        prop_assert_eq!(latest, newest);
        prop_assert_eq!(received, answers.len());
    }
}
