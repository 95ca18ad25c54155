//! The generic signed webhook, as a helpdesk integration meets it.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use closedloop_core::domain::TenantSettings;
use closedloop_core::ids::TenantId;
use closedloop_core::ports::{Clock, SystemClock};
use closedloop_core::signature::sign_timestamped;
use closedloop_core::store::{ItemStore, Query};
use closedloop_core::{keys, tenancy};
use closedloop_embedded::JournalStore;
use http_body_util::BodyExt;
use tower::ServiceExt;
use webhooks::{WebhooksState, router};

struct Fixture {
    app: axum::Router,
    store: Arc<dyn ItemStore>,
    secret: String,
}

async fn fixture() -> Fixture {
    let store: Arc<dyn ItemStore> = Arc::new(JournalStore::open_in_memory().unwrap());
    let t = tenancy::provision_tenant(
        store.as_ref(),
        TenantId::parse("acme").unwrap(),
        "Acme",
        TenantSettings::default(),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let app = router(WebhooksState {
        store: store.clone(),
        clock: Arc::new(SystemClock),
    });
    Fixture {
        app,
        store,
        secret: t.webhook_secret,
    }
}

fn delivery(id: &str) -> String {
    serde_json::json!({
        "delivery_id": id,
        "type": "ticket.closed",
        "occurred_at": "2026-11-20T10:00:00Z",
        "ticket": {
            "id": "T-1", "subject": "Printer", "status": "closed",
            "contact": {"id": "c1", "name": "Bob", "email": "bob@example.com"},
            "updated_at": "2026-11-20T10:00:00Z"
        }
    })
    .to_string()
}

async fn post(
    app: &axum::Router,
    path: &str,
    signature: Option<String>,
    body: String,
) -> (StatusCode, serde_json::Value) {
    let mut request = Request::post(path).header("content-type", "application/json");
    if let Some(sig) = signature {
        request = request.header("X-Closedloop-Signature", sig);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn sign(secret: &str, body: &str) -> Option<String> {
    Some(sign_timestamped(
        secret.as_bytes(),
        SystemClock.now().timestamp(),
        body.as_bytes(),
    ))
}

async fn outbox_len(store: &dyn ItemStore) -> usize {
    let tenant = TenantId::parse("acme").unwrap();
    store
        .query(Query::partition(keys::outbox_partition(&tenant)))
        .await
        .unwrap()
        .items
        .len()
}

#[tokio::test]
async fn a_resolved_ticket_counts_as_closed() {
    let f = fixture().await;
    let body = delivery("d-r").replace("ticket.closed", "ticket.resolved");
    let (status, answer) = post(
        &f.app,
        "/webhooks/acme/generic",
        sign(&f.secret, &body),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["type"], "ticket.closed");
}

#[tokio::test]
async fn a_signed_delivery_is_accepted_once_and_a_redelivery_does_nothing() {
    let f = fixture().await;
    let body = delivery("d-1");
    let (status, answer) = post(
        &f.app,
        "/webhooks/acme/generic",
        sign(&f.secret, &body),
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["type"], "ticket.closed");
    assert_eq!(outbox_len(f.store.as_ref()).await, 1);
    let (status, answer) = post(
        &f.app,
        "/webhooks/acme/generic",
        sign(&f.secret, &body),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["status"], "duplicate");
    assert_eq!(outbox_len(f.store.as_ref()).await, 1);
}

#[tokio::test]
async fn bad_requests_get_clear_4xx_and_write_nothing() {
    let f = fixture().await;
    let good = delivery("d-2");
    let stale = Some(sign_timestamped(
        f.secret.as_bytes(),
        SystemClock.now().timestamp() - 600,
        good.as_bytes(),
    ));
    let no_field = good.replace("\"subject\":\"Printer\",", "");
    let unknown_field = good.replace("\"delivery_id\"", "\"surprise\":1,\"delivery_id\"");
    let cases: Vec<(&str, Option<String>, String, StatusCode, &str)> = vec![
        (
            "/webhooks/acme/generic",
            None,
            good.clone(),
            StatusCode::UNAUTHORIZED,
            "X-Closedloop-Signature",
        ),
        (
            "/webhooks/acme/generic",
            sign("wrong", &good),
            good.clone(),
            StatusCode::UNAUTHORIZED,
            "secret",
        ),
        (
            "/webhooks/acme/generic",
            stale,
            good.clone(),
            StatusCode::UNAUTHORIZED,
            "5 minutes",
        ),
        (
            "/webhooks/acme/generic",
            sign(&f.secret, "{not json"),
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "not valid",
        ),
        (
            "/webhooks/acme/generic",
            sign(&f.secret, &no_field),
            no_field.clone(),
            StatusCode::BAD_REQUEST,
            "subject",
        ),
        (
            "/webhooks/acme/generic",
            sign(&f.secret, &unknown_field),
            unknown_field.clone(),
            StatusCode::BAD_REQUEST,
            "surprise",
        ),
        (
            "/webhooks/acme/nosuch",
            sign(&f.secret, &good),
            good.clone(),
            StatusCode::NOT_FOUND,
            "unknown webhook source",
        ),
        (
            "/webhooks/globex/generic",
            sign(&f.secret, &good),
            good.clone(),
            StatusCode::UNAUTHORIZED,
            "secret",
        ),
        (
            "/webhooks/NOT_A_TENANT/generic",
            sign(&f.secret, &good),
            good.clone(),
            StatusCode::UNAUTHORIZED,
            "not signed",
        ),
    ];
    for (path, signature, body, want, mention) in cases {
        let (status, answer) = post(&f.app, path, signature, body).await;
        assert_eq!(status, want, "{path}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(mention), "{path}: {message}");
    }
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(300 * 1024));
    let (status, _) = post(&f.app, "/webhooks/acme/generic", sign(&f.secret, &big), big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(outbox_len(f.store.as_ref()).await, 0);
}
