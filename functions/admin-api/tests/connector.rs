//! `/admin/v1/connector` and `/admin/v1/failed-actions` as a tenant's admin meets them: bad
//! input is refused and changes nothing, the connector's secret is never shown, and one
//! tenant never sees or retries another's.

use std::sync::Arc;

use admin_api::{AdminState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use closedloop_core::actions::FailedAction;
use closedloop_core::automation::ActionRequest;
use closedloop_core::domain::TenantSettings;
use closedloop_core::event::{EventEnvelope, EventType};
use closedloop_core::ids::{RuleId, TenantId};
use closedloop_core::outbox::envelope_from_image;
use closedloop_core::ports::SystemClock;
use closedloop_core::records::record_item;
use closedloop_core::rules::Action;
use closedloop_core::store::{ItemStore, Query};
use closedloop_core::{helpdesk, keys, tenancy};
use closedloop_embedded::JournalStore;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Fixture {
    app: axum::Router,
    store: Arc<dyn ItemStore>,
    acme: String,
    globex: String,
}

async fn fixture() -> Fixture {
    let store: Arc<dyn ItemStore> = Arc::new(JournalStore::open_in_memory().unwrap());
    let mut keys = Vec::new();
    for name in ["acme", "globex"] {
        let t = tenancy::provision_tenant(
            store.as_ref(),
            TenantId::parse(name).unwrap(),
            name,
            TenantSettings::default(),
            Utc::now(),
        )
        .await
        .unwrap();
        keys.push(t.api_key);
    }
    Fixture {
        app: router(AdminState {
            store: store.clone(),
            clock: Arc::new(SystemClock),
            connectors: Arc::new(closedloop_connectors::StoreConnectorDirectory::new(
                store.clone(),
                closedloop_connectors::http_client(std::time::Duration::from_secs(2)),
            )),
        }),
        store,
        globex: keys.pop().unwrap(),
        acme: keys.pop().unwrap(),
    }
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"));
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_connector_is_set_shown_without_its_secret_and_removed() {
    let f = fixture().await;
    let acme = TenantId::parse("acme").unwrap();
    let (status, _) = call(&f.app, "GET", "/admin/v1/connector", &f.acme, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bad input: a clear 422 naming the field, and nothing stored.
    for (body, names) in [
        (
            json!({"kind": "generic_webhook", "url": "ftp://x.example"}),
            "url",
        ),
        (
            json!({"kind": "generic_webhook", "url": "http://169.254.169.254/latest"}),
            "url",
        ),
        (
            json!({"kind": "generic_webhook", "url": "https://x.example", "secret": "short"}),
            "secret",
        ),
        (
            json!({"kind": "zendesk", "url": "https://x.example"}),
            "kind",
        ),
        (
            json!({"kind": "generic_webhook", "url": "https://x.example", "token": "x"}),
            "token",
        ),
    ] {
        let (status, answer) =
            call(&f.app, "PUT", "/admin/v1/connector", &f.acme, Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(names),
            "{answer}"
        );
    }
    assert!(
        helpdesk::get_config(f.store.as_ref(), &acme)
            .await
            .unwrap()
            .is_none()
    );

    // Without a secret, one is generated and answered this once.
    let (status, created) = call(
        &f.app,
        "PUT",
        "/admin/v1/connector",
        &f.acme,
        Some(json!({"kind": "generic_webhook", "url": "https://helpdesk.example/closedloop"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32);
    let stored = helpdesk::get_config(f.store.as_ref(), &acme)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.secret, secret);

    let (status, shown) = call(&f.app, "GET", "/admin/v1/connector", &f.acme, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["url"], "https://helpdesk.example/closedloop");
    assert_eq!(shown["secret_set"], true);
    assert!(!shown.to_string().contains(&secret), "{shown}");

    // A new URL keeps the secret, and the answer does not repeat it.
    let (status, changed) = call(
        &f.app,
        "PUT",
        "/admin/v1/connector",
        &f.acme,
        Some(json!({"kind": "generic_webhook", "url": "https://helpdesk.example/v2"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(changed.get("secret").is_none(), "{changed}");
    let stored = helpdesk::get_config(f.store.as_ref(), &acme)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.url.as_str(), stored.secret.as_str()),
        ("https://helpdesk.example/v2", secret.as_str())
    );

    // Another tenant sees none of it.
    let (status, _) = call(&f.app, "GET", "/admin/v1/connector", &f.globex, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&f.app, "DELETE", "/admin/v1/connector", &f.globex, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        helpdesk::get_config(f.store.as_ref(), &acme)
            .await
            .unwrap()
            .is_some()
    );

    let (status, _) = call(&f.app, "DELETE", "/admin/v1/connector", &f.acme, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&f.app, "GET", "/admin/v1/connector", &f.acme, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A dead letter as `actions` writes it, for a `post_webhook` action (which holds a secret).
async fn dead_letter(store: &dyn ItemStore, tenant: &TenantId) -> FailedAction {
    let cause = EventEnvelope::new_root(
        tenant.clone(),
        EventType::TicketClosed,
        Utc::now(),
        json!({"ticket": {"id": "1001"}}),
    );
    let request = ActionRequest {
        rule_id: RuleId::new(),
        rule_name: "Tell the CRM".into(),
        action_index: 0,
        action: Action::PostWebhook {
            url: "https://crm.example/in".into(),
            secret: "crm-signing-secret-0001".into(),
        },
        cause: cause.clone(),
    };
    let event = cause.caused(
        EventType::ActionRequested,
        Utc::now(),
        Some(request.rule_id),
        serde_json::to_value(&request).unwrap(),
    );
    let letter = FailedAction {
        id: ulid::Ulid::new(),
        failed_at: Utc::now(),
        rule_id: request.rule_id,
        rule_name: request.rule_name.clone(),
        action_index: 0,
        action: "post_webhook".into(),
        error: "the webhook receiver is unavailable: HTTP 503".into(),
        attempts: 4,
        retryable: true,
        ticket_id: Some("1001".into()),
        event,
    };
    store
        .put(
            record_item(
                &keys::failed_action(tenant, letter.id),
                "failed_action",
                &letter,
            ),
            None,
        )
        .await
        .unwrap();
    letter
}

#[tokio::test]
async fn failed_actions_are_listed_redacted_and_retried_only_by_their_tenant() {
    let f = fixture().await;
    let acme = TenantId::parse("acme").unwrap();
    let older = dead_letter(f.store.as_ref(), &acme).await;
    // Ids are ULIDs: time-ordered to the millisecond.
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let newer = dead_letter(f.store.as_ref(), &acme).await;

    let (status, listed) = call(&f.app, "GET", "/admin/v1/failed-actions", &f.acme, None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<_> = listed["failed_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        vec![newer.id.to_string(), older.id.to_string()],
        "newest first"
    );
    assert!(
        !listed.to_string().contains("crm-signing-secret-0001"),
        "{listed}"
    );
    assert_eq!(
        listed["failed_actions"][0]["error"],
        "the webhook receiver is unavailable: HTTP 503"
    );
    let (_, page) = call(
        &f.app,
        "GET",
        "/admin/v1/failed-actions?limit=1",
        &f.acme,
        None,
    )
    .await;
    assert_eq!(page["failed_actions"].as_array().unwrap().len(), 1);
    let next = page["next_before"].as_str().unwrap();
    let (_, rest) = call(
        &f.app,
        "GET",
        &format!("/admin/v1/failed-actions?limit=1&before={next}"),
        &f.acme,
        None,
    )
    .await;
    assert_eq!(rest["failed_actions"][0]["id"], older.id.to_string());
    let (status, _) = call(
        &f.app,
        "GET",
        "/admin/v1/failed-actions?limit=0",
        &f.acme,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, answer) = call(
        &f.app,
        "GET",
        "/admin/v1/failed-actions?page=2",
        &f.acme,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // Another tenant neither sees nor retries them.
    let (_, theirs) = call(&f.app, "GET", "/admin/v1/failed-actions", &f.globex, None).await;
    assert!(theirs["failed_actions"].as_array().unwrap().is_empty());
    let retry = format!("/admin/v1/failed-actions/{}/retry", older.id);
    let (status, _) = call(&f.app, "POST", &retry, &f.globex, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &f.app,
        "POST",
        "/admin/v1/failed-actions/not-an-id/retry",
        &f.acme,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, answer) = call(&f.app, "POST", &retry, &f.acme, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let requeued = f
        .store
        .query(Query::partition(keys::outbox_partition(&acme)))
        .await
        .unwrap()
        .items
        .iter()
        .map(|i| envelope_from_image(i).unwrap())
        .filter(|e| e.event_type == EventType::ActionRequested)
        .collect::<Vec<_>>();
    assert_eq!(requeued.len(), 1);
    assert_eq!(
        requeued[0].event_id.to_string(),
        answer["event_id"].as_str().unwrap()
    );
    assert_eq!(requeued[0].data["retry_of"], older.id.to_string());
    assert_eq!(
        requeued[0].correlation_id, older.event.correlation_id,
        "same chain"
    );
    let (_, listed) = call(&f.app, "GET", "/admin/v1/failed-actions", &f.acme, None).await;
    assert_eq!(listed["failed_actions"].as_array().unwrap().len(), 1);
    let (status, _) = call(&f.app, "POST", &retry, &f.acme, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "retried once");
}
