//! Each vendor's webhook as the vendor sends it: signed its way, in its documented shape.

mod common;

use axum::http::StatusCode;
use closedloop_core::accounts;
use closedloop_core::domain::Review;
use closedloop_core::ids::{AccountId, TenantId};
use closedloop_core::keys;
use closedloop_core::records::read_record;
use closedloop_core::sources;
use common::*;

/// Zendesk's ticket.status_changed event; the trigger body adds the requester and organisation.
fn zendesk_solved(id: &str, ticket: &str, email: &str, account: &str) -> String {
    serde_json::json!({
        "type": "zen:event-type:ticket.status_changed",
        "account_id": 12514403,
        "id": id,
        "time": "2026-11-23T10:00:00Z",
        "zendesk_event_version": "2022-11-06",
        "subject": format!("zen:ticket:{ticket}"),
        "detail": {
            "id": ticket, "subject": "Printer on fire", "status": "SOLVED",
            "requester_id": "20978392", "assignee_id": "235323", "organization_id": account,
            "tags": ["hardware"], "via": {"channel": "web"},
            "updated_at": "2026-11-23T10:00:00Z",
            "requester": {"id": "20978392", "name": "Bob Stone", "email": email},
            "assignee": {"id": "235323", "name": "Alice Meyer", "email": "alice@example.com"},
            "organization": {"id": account, "name": "Northwind"}
        },
        "event": {"current": "SOLVED", "previous": "OPEN"}
    })
    .to_string()
}

/// Delighted's documented survey_response event.
fn delighted(
    event_type: &str,
    event_id: &str,
    response: &str,
    email: &str,
    score: u8,
    comment: Option<&str>,
    updated_at: i64,
) -> String {
    serde_json::json!({
        "event_type": event_type,
        "event_id": event_id,
        "event_data": {
            "id": response,
            "person": {"id": "5975", "email": email, "name": "Bob Stone", "created_at": 1732186784},
            "survey_type": "nps", "score": score, "comment": comment,
            "permalink": "https://app.delighted.com/r/5pFDpmlyC8GUc5oxU6USto5VonSKAqOa",
            "created_at": 1732186844, "updated_at": updated_at,
            "person_properties": null, "notes": [], "tags": [], "additional_answers": []
        }
    })
    .to_string()
}

async fn close_ticket_for_bob(f: &Fixture) {
    let body = zendesk_solved("zd-1", "35436", "Bob.Stone@example.com", "509974");
    let (status, answer) = post(
        &f.app,
        "/webhooks/acme/zendesk",
        &zendesk_headers(&secret_of("acme", "zendesk"), &zendesk_now(), &body),
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

async fn review_of(f: &Fixture, source: &str, response: &str) -> Option<Review> {
    let tenant = TenantId::parse("acme").unwrap();
    f.store
        .get(&keys::provider_review(&tenant, source, response))
        .await
        .unwrap()
        .map(|item| read_record(&item).unwrap())
}

#[tokio::test]
async fn a_zendesk_solved_ticket_becomes_ticket_closed_once() {
    let f = fixture().await;
    let body = zendesk_solved("zd-1", "35436", "bob@example.com", "509974");
    let headers = zendesk_headers(&secret_of("acme", "zendesk"), &zendesk_now(), &body);
    let (status, answer) = post(&f.app, "/webhooks/acme/zendesk", &headers, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["type"], "ticket.closed");
    let events = outbox(f.store.as_ref(), "acme").await;
    assert_eq!(types(&events), ["ticket.closed"]);
    let ticket = &events[0].1["ticket"];
    assert_eq!(ticket["id"], "35436");
    assert_eq!(ticket["contact"]["email"], "bob@example.com");
    assert_eq!(ticket["contact"]["account"]["id"], "509974");
    assert_eq!(ticket["agent"]["email"], "alice@example.com");
    assert_eq!(events[0].1["source"], "zendesk");

    let (status, answer) = post(&f.app, "/webhooks/acme/zendesk", &headers, &body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    assert_eq!(outbox(f.store.as_ref(), "acme").await.len(), 1);
}

#[tokio::test]
async fn zendesk_events_closedloop_does_not_act_on_are_ignored_without_writes() {
    let f = fixture().await;
    let body = zendesk_solved("zd-9", "35436", "bob@example.com", "509974")
        .replace("ticket.status_changed", "ticket.priority_changed");
    let headers = zendesk_headers(&secret_of("acme", "zendesk"), &zendesk_now(), &body);
    let (status, answer) = post(&f.app, "/webhooks/acme/zendesk", &headers, &body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("ignored"))
    );
    assert!(outbox(f.store.as_ref(), "acme").await.is_empty());
}

#[tokio::test]
async fn a_delighted_response_from_a_known_contact_lands_on_their_account_and_emits_review_events()
{
    let f = fixture().await;
    close_ticket_for_bob(&f).await;
    // The address differs in case from the helpdesk's: still the same person.
    let body = delighted(
        "survey_response.created",
        "ev-1",
        "5435",
        "bob.stone@EXAMPLE.com",
        4,
        None,
        1732186844,
    );
    let headers = delighted_headers(&secret_of("acme", "delighted"), &body);
    let (status, answer) = post(&f.app, "/webhooks/acme/delighted", &headers, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    let review = review_of(&f, "delighted", "5435").await.expect("a review");
    assert_eq!(review.contact_id.unwrap().as_str(), "20978392");
    assert_eq!(review.account_id.as_ref().unwrap().as_str(), "509974");
    assert_eq!(review.rating.value_string(), "4");
    let events = outbox(f.store.as_ref(), "acme").await;
    assert_eq!(
        types(&events),
        ["review.received", "review.recorded", "ticket.closed"]
    );
    assert_eq!(
        data_of(&events, "review.received")["review"]["account_id"],
        "509974"
    );

    let tenant = TenantId::parse("acme").unwrap();
    let account = AccountId::parse("509974").unwrap();
    let latest = accounts::latest_nps_answer(f.store.as_ref(), &tenant, &account)
        .await
        .unwrap()
        .expect("the account holds the answer");
    assert_eq!(latest.score.value(), 4);
    assert!(latest.changed, "the sweep must see the account");

    // The comment arrives in an update: one more review.recorded and a comment_added, no
    // second review.received; a redelivery of that update does nothing.
    let update = delighted(
        "survey_response.updated",
        "ev-2",
        "5435",
        "bob.stone@example.com",
        4,
        Some("Slow reply"),
        1732187444,
    );
    let headers = delighted_headers(&secret_of("acme", "delighted"), &update);
    let (status, _) = post(&f.app, "/webhooks/acme/delighted", &headers, &update).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, answer) = post(&f.app, "/webhooks/acme/delighted", &headers, &update).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    let events = outbox(f.store.as_ref(), "acme").await;
    assert_eq!(
        types(&events),
        [
            "review.comment_added",
            "review.received",
            "review.recorded",
            "review.recorded",
            "ticket.closed"
        ]
    );
    let review = review_of(&f, "delighted", "5435").await.unwrap();
    assert_eq!(review.comment.unwrap().as_str(), "Slow reply");
    assert_eq!(review.recorded_at.timestamp(), 1732186844);

    // The created event delivered late (after the update) changes nothing.
    let (status, answer) = post(
        &f.app,
        "/webhooks/acme/delighted",
        &delighted_headers(
            &secret_of("acme", "delighted"),
            &body.replace("ev-1", "ev-1-late"),
        ),
        &body.replace("ev-1", "ev-1-late"),
    )
    .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("outdated"))
    );
    assert_eq!(outbox(f.store.as_ref(), "acme").await.len(), 5);
}

#[tokio::test]
async fn a_response_from_an_unknown_respondent_is_kept_on_no_account() {
    let f = fixture().await;
    let body = delighted(
        "survey_response.created",
        "ev-7",
        "9001",
        "stranger@example.org",
        2,
        None,
        1732186844,
    );
    let headers = delighted_headers(&secret_of("acme", "delighted"), &body);
    let (status, answer) = post(&f.app, "/webhooks/acme/delighted", &headers, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let review = review_of(&f, "delighted", "9001").await.expect("kept");
    assert!(review.account_id.is_none() && review.contact_id.is_none());
    assert_eq!(
        review.provider.unwrap().respondent_email.unwrap().as_str(),
        "stranger@example.org"
    );
}

#[tokio::test]
async fn a_typeform_response_with_a_hidden_ticket_id_lands_on_that_tickets_contact_and_agent() {
    let f = fixture().await;
    close_ticket_for_bob(&f).await;
    let body = serde_json::json!({
        "event_id": "01EK4R5PFZZP6C8H14RTP4YW6C",
        "event_type": "form_response",
        "form_response": {
            "form_id": "g8hcyeXS", "token": "x71for1wr6irs2rx71fotn12b3izh25v",
            "landed_at": "2026-11-23T10:01:00Z", "submitted_at": "2026-11-23T10:02:00Z",
            "hidden": {"ticket_id": "35436"},
            "definition": {"id": "g8hcyeXS", "title": "Feedback", "fields": []},
            "answers": [
                {"type": "number", "number": 10, "field": {"id": "nps1", "type": "nps", "ref": "nps"}},
                {"type": "text", "text": "Great", "field": {"id": "t1", "type": "long_text", "ref": "why"}}
            ]
        }
    })
    .to_string();
    let headers = typeform_headers(&secret_of("acme", "typeform"), &body);
    let (status, answer) = post(&f.app, "/webhooks/acme/typeform", &headers, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let review = review_of(&f, "typeform", "x71for1wr6irs2rx71fotn12b3izh25v")
        .await
        .unwrap();
    assert_eq!(review.ticket_id.unwrap().as_str(), "35436");
    assert_eq!(review.agent_id.unwrap().as_str(), "235323");
    assert_eq!(review.account_id.unwrap().as_str(), "509974");
    assert_eq!(review.comment.unwrap().as_str(), "Great");
}

#[tokio::test]
async fn asknicely_needs_the_secret_header_and_counts_updates() {
    let f = fixture().await;
    let payload = |count: u32, score: &str| {
        serde_json::json!({
            "count": count,
            "person": {"id": "163012", "name": "Firstname Lastname", "email": "tester@asknice.ly", "segment": "general"},
            "question": {"id": "345094", "score": score, "comment": "The gym was great, love it!",
                "sent": "1774990116", "opened": "1774990122", "responded": "1774990125",
                "segment": "general", "deliverymethod": "email"}
        })
        .to_string()
    };
    let good = asknicely_headers(&secret_of("acme", "asknicely"));
    let (status, answer) = post(
        &f.app,
        "/webhooks/acme/asknicely",
        &asknicely_headers("guessed-secret-0001"),
        &payload(1, "10"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(outbox(f.store.as_ref(), "acme").await.is_empty());
    let (status, _) = post(&f.app, "/webhooks/acme/asknicely", &good, &payload(1, "10")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, answer) = post(&f.app, "/webhooks/acme/asknicely", &good, &payload(1, "10")).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    // The customer changes the score: same response time, higher count.
    let (status, _) = post(&f.app, "/webhooks/acme/asknicely", &good, &payload(2, "6")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let review = review_of(&f, "asknicely", "345094").await.unwrap();
    assert_eq!(review.rating.value_string(), "6");
    assert_eq!(
        types(&outbox(f.store.as_ref(), "acme").await),
        ["review.received", "review.recorded", "review.recorded"]
    );
}

#[tokio::test]
async fn both_rotation_secrets_work_and_a_revoked_one_does_not() {
    let f = fixture().await;
    let tenant = TenantId::parse("acme").unwrap();
    let next = sources::create_secret(f.store.as_ref(), &tenant, "typeform", None, now())
        .await
        .unwrap();
    let body = |n: u32| {
        serde_json::json!({
            "event_id": format!("ev-{n}"), "event_type": "form_response",
            "form_response": {"token": format!("tok-{n}"), "submitted_at": "2026-11-23T10:02:00Z",
                "answers": [{"type": "number", "number": 9, "field": {"id": "q", "type": "nps"}}]}
        })
        .to_string()
    };
    for (n, secret) in [(1, secret_of("acme", "typeform")), (2, next.secret.clone())] {
        let (status, answer) = post(
            &f.app,
            "/webhooks/acme/typeform",
            &typeform_headers(&secret, &body(n)),
            &body(n),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "secret {n}: {answer}");
    }
    let old = sources::list_secrets(f.store.as_ref(), &tenant, "typeform")
        .await
        .unwrap()[0]
        .id
        .clone();
    sources::revoke_secret(f.store.as_ref(), &tenant, "typeform", &old)
        .await
        .unwrap();
    let (status, _) = post(
        &f.app,
        "/webhooks/acme/typeform",
        &typeform_headers(&secret_of("acme", "typeform"), &body(3)),
        &body(3),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(
        &f.app,
        "/webhooks/acme/typeform",
        &typeform_headers(&next.secret, &body(4)),
        &body(4),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

/// Every refusal, per vendor: a 4xx that says what is wrong, and no write anywhere the
/// delivery would have written.
#[tokio::test]
async fn bad_deliveries_are_refused_and_write_nothing() {
    let f = fixture().await;
    let zd = zendesk_solved("zd-bad", "777", "carol@example.com", "acc-9");
    let zd_secret = secret_of("acme", "zendesk");
    let stale = (now() - chrono::Duration::minutes(6))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let dl = delighted(
        "survey_response.created",
        "ev-bad",
        "666",
        "carol@example.com",
        3,
        None,
        1732186844,
    );
    let dl_secret = secret_of("acme", "delighted");
    let no_score = dl.replace("\"score\":3,", "");
    // (path, headers, body, expected status, what the message must mention)
    type Case<'a> = (&'a str, Vec<(String, String)>, String, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/webhooks/acme/zendesk",
            vec![],
            zd.clone(),
            StatusCode::UNAUTHORIZED,
            "X-Zendesk-Webhook-Signature",
        ),
        (
            "/webhooks/acme/zendesk",
            zendesk_headers(&zd_secret, &stale, &zd),
            zd.clone(),
            StatusCode::UNAUTHORIZED,
            "5 minutes",
        ),
        (
            "/webhooks/acme/zendesk",
            zendesk_headers(&zd_secret, &zendesk_now(), &zd),
            zd.replace("Printer", "Scanner"),
            StatusCode::UNAUTHORIZED,
            "does not match",
        ),
        (
            "/webhooks/acme/zendesk",
            zendesk_headers(&secret_of("globex", "zendesk"), &zendesk_now(), &zd),
            zd.clone(),
            StatusCode::UNAUTHORIZED,
            "does not match",
        ),
        (
            "/webhooks/acme/zendesk",
            zendesk_headers(&zd_secret, &zendesk_now(), "{oops"),
            "{oops".into(),
            StatusCode::BAD_REQUEST,
            "not valid",
        ),
        (
            "/webhooks/acme/delighted",
            delighted_headers(&dl_secret, &no_score),
            no_score.clone(),
            StatusCode::BAD_REQUEST,
            "event_data.score",
        ),
        (
            "/webhooks/acme/delighted",
            delighted_headers(&dl_secret, &dl)
                .into_iter()
                .map(|(n, v)| (n, v.replace("sha256=", "sha1=")))
                .collect(),
            dl.clone(),
            StatusCode::UNAUTHORIZED,
            "malformed",
        ),
        (
            "/webhooks/acme/typeform",
            delighted_headers(&secret_of("acme", "typeform"), &dl),
            dl.clone(),
            StatusCode::UNAUTHORIZED,
            "Typeform-Signature",
        ),
        (
            "/webhooks/acme/surveymonkey",
            delighted_headers(&dl_secret, &dl),
            dl.clone(),
            StatusCode::NOT_FOUND,
            "zendesk, delighted, typeform, asknicely",
        ),
        // A tenant that does not exist answers like a wrong secret.
        (
            "/webhooks/initech/delighted",
            delighted_headers(&dl_secret, &dl),
            dl.clone(),
            StatusCode::UNAUTHORIZED,
            "does not match",
        ),
        // Tenant A's secret cannot post to tenant B.
        (
            "/webhooks/globex/delighted",
            delighted_headers(&dl_secret, &dl),
            dl.clone(),
            StatusCode::UNAUTHORIZED,
            "does not match",
        ),
    ];
    for (path, headers, body, want, mention) in cases {
        let (status, answer) = post(&f.app, path, &headers, &body).await;
        assert_eq!(status, want, "{path}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(mention), "{path}: {message}");
    }
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(300 * 1024));
    let (status, answer) = post(
        &f.app,
        "/webhooks/acme/asknicely",
        &asknicely_headers(&secret_of("acme", "asknicely")),
        &big,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");

    for tenant in ["acme", "globex"] {
        assert!(
            outbox(f.store.as_ref(), tenant).await.is_empty(),
            "{tenant}"
        );
    }
    let acme = TenantId::parse("acme").unwrap();
    let untouched = [
        keys::webhook_delivery(&acme, "zendesk", "zd-bad"),
        keys::webhook_delivery(&acme, "delighted", "ev-bad"),
        keys::ticket(
            &acme,
            &closedloop_core::ids::TicketId::parse("777").unwrap(),
        ),
        keys::contact_by_email(&acme, "carol@example.com"),
        keys::provider_review(&acme, "delighted", "666"),
    ];
    for key in untouched {
        assert!(
            f.store.get(&key).await.unwrap().is_none(),
            "{key:?} was written"
        );
    }
}
