//! Webhook secrets through the admin API: shown once, listed by id, two at most, revocable,
//! and only ever the caller's own tenant's.

use std::sync::Arc;

use admin_api::{AdminState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use closedloop_core::domain::TenantSettings;
use closedloop_core::ids::TenantId;
use closedloop_core::ports::SystemClock;
use closedloop_core::store::ItemStore;
use closedloop_core::tenancy;
use closedloop_embedded::JournalStore;
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn setup() -> (axum::Router, Arc<dyn ItemStore>, String, String) {
    let store: Arc<dyn ItemStore> = Arc::new(JournalStore::open_in_memory().unwrap());
    let mut keys = Vec::new();
    for name in ["acme", "globex"] {
        let t = tenancy::provision_tenant(
            store.as_ref(),
            TenantId::parse(name).unwrap(),
            name,
            TenantSettings::default(),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        keys.push(t.api_key);
    }
    let app = router(AdminState {
        store: store.clone(),
        clock: Arc::new(SystemClock),
        connectors: Arc::new(closedloop_connectors::StoreConnectorDirectory::new(
            store.clone(),
            closedloop_connectors::http_client(std::time::Duration::from_secs(2)),
        )),
    });
    let globex = keys.pop().unwrap();
    (app, store, keys.pop().unwrap(), globex)
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

const ZENDESK: &str = "/admin/v1/webhook-sources/zendesk/secrets";

#[tokio::test]
async fn a_secret_is_shown_once_then_listed_by_id_only() {
    let (app, store, acme, _) = setup().await;
    let (status, created) = call(&app, "POST", ZENDESK, &acme, "").await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32);
    let (status, listed) = call(&app, "GET", ZENDESK, &acme, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["secrets"][0]["id"], created["id"]);
    assert!(
        !listed.to_string().contains(&secret),
        "a listing must not show the value"
    );
    // The webhook verifier sees exactly that secret.
    let valid =
        tenancy::webhook_secrets(store.as_ref(), &TenantId::parse("acme").unwrap(), "zendesk")
            .await
            .unwrap();
    assert_eq!(valid, vec![secret.into_bytes()]);
}

#[tokio::test]
async fn two_at_most_and_revoking_makes_room() {
    let (app, _, acme, _) = setup().await;
    let (_, first) = call(
        &app,
        "POST",
        ZENDESK,
        &acme,
        r#"{"secret":"zendesk-chosen-signing-secret"}"#,
    )
    .await;
    assert_eq!(first["secret"], "zendesk-chosen-signing-secret");
    let (status, _) = call(&app, "POST", ZENDESK, &acme, "").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, refused) = call(&app, "POST", ZENDESK, &acme, "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoke")
    );
    let first_id = first["id"].as_str().unwrap();
    let (status, _) = call(&app, "DELETE", &format!("{ZENDESK}/{first_id}"), &acme, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&app, "DELETE", &format!("{ZENDESK}/{first_id}"), &acme, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&app, "POST", ZENDESK, &acme, "").await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn bad_requests_and_other_tenants_are_refused() {
    let (app, _, acme, globex) = setup().await;
    let (status, answer) = call(
        &app,
        "POST",
        "/admin/v1/webhook-sources/surveymonkey/secrets",
        &acme,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("asknicely")
    );
    let (status, _) = call(&app, "POST", ZENDESK, &acme, r#"{"secret":"short"}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(
        &app,
        "POST",
        ZENDESK,
        &acme,
        r#"{"secrt":"typo-typo-typo-typo"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, created) = call(&app, "POST", ZENDESK, &acme, "").await;
    // Globex sees none of Acme's secrets and cannot revoke them.
    let (_, listed) = call(&app, "GET", ZENDESK, &globex, "").await;
    assert_eq!(listed["secrets"], serde_json::json!([]));
    let id = created["id"].as_str().unwrap();
    let (status, _) = call(&app, "DELETE", &format!("{ZENDESK}/{id}"), &globex, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = call(&app, "GET", ZENDESK, &acme, "").await;
    assert_eq!(listed["secrets"][0]["id"], created["id"]);
}
