//! The admin API as a client meets it: auth, errors, and the settings resource.

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
    let now = chrono::Utc::now();
    let a = tenancy::provision_tenant(
        store.as_ref(),
        TenantId::parse("acme").unwrap(),
        "Acme",
        TenantSettings::default(),
        now,
    )
    .await
    .unwrap();
    let b = tenancy::provision_tenant(
        store.as_ref(),
        TenantId::parse("globex").unwrap(),
        "Globex",
        TenantSettings::default(),
        now,
    )
    .await
    .unwrap();
    (
        router(AdminState {
            store: store.clone(),
            clock: Arc::new(SystemClock),
            connectors: Arc::new(closedloop_connectors::StoreConnectorDirectory::new(
                store.clone(),
                closedloop_connectors::http_client(std::time::Duration::from_secs(2)),
            )),
        }),
        store,
        a.api_key,
        b.api_key,
    )
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let response = app
        .clone()
        .oneshot(
            request
                .body(Body::from(body.unwrap_or("").to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn health_needs_no_key() {
    let (app, ..) = setup().await;
    let (status, body) = call(&app, "GET", "/admin/v1/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn missing_malformed_and_wrong_keys_get_401_with_a_reason() {
    let (app, _, key, _) = setup().await;
    let (status, body) = call(&app, "GET", "/admin/v1/settings", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer")
    );
    for bad in [
        "nonsense",
        "cl.acme.x.y",
        &format!("{key}x"),
        &key.replace("cl.acme.", "cl.globex."),
    ] {
        let (status, body) = call(&app, "GET", "/admin/v1/settings", Some(bad), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
}

#[tokio::test]
async fn settings_round_trip_and_stay_within_their_tenant() {
    let (app, _, acme, globex) = setup().await;
    let (status, mut settings) = call(&app, "GET", "/admin/v1/settings", Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK);
    settings["time_zone"] = "Europe/Warsaw".into();
    settings["survey_kind"] = "nps".into();
    settings["survey_delay_hours"] = 4.into();
    let (status, saved) = call(
        &app,
        "PUT",
        "/admin/v1/settings",
        Some(&acme),
        Some(&settings.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let (_, read_back) = call(&app, "GET", "/admin/v1/settings", Some(&acme), None).await;
    assert_eq!(read_back, settings);
    // The other tenant's settings did not move.
    let (_, other) = call(&app, "GET", "/admin/v1/settings", Some(&globex), None).await;
    assert_eq!(other["time_zone"], "UTC");
    assert_eq!(other["survey_kind"], "csat");
}

#[tokio::test]
async fn invalid_settings_are_refused_with_the_field_named_and_nothing_saved() {
    let (app, _, key, _) = setup().await;
    let (_, original) = call(&app, "GET", "/admin/v1/settings", Some(&key), None).await;
    let cases = [
        (
            r#"{"time_zone":"#,
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "",
        ),
        (
            &*original.to_string().replace("\"UTC\"", "\"Mars/Olympus\""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "Mars/Olympus",
        ),
        (
            &*original.to_string().replace("\"csat\"", "\"stars\""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "survey_kind",
        ),
        (
            &*original.to_string().replace("{", "{\"colour\":1,"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "colour",
        ),
        (
            &*original.to_string().replace("#2563eb", "blue"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "brand_color",
        ),
    ];
    for (body, want_status, want_code, mention) in cases {
        let (status, answer) =
            call(&app, "PUT", "/admin/v1/settings", Some(&key), Some(body)).await;
        assert_eq!(status, want_status, "{body} -> {answer}");
        assert_eq!(answer["error"]["code"], want_code, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(mention),
            "{answer}"
        );
    }
    let (_, after) = call(&app, "GET", "/admin/v1/settings", Some(&key), None).await;
    assert_eq!(after, original);
}

#[tokio::test]
async fn unknown_routes_get_a_json_404() {
    let (app, _, key, _) = setup().await;
    let (status, body) = call(&app, "GET", "/admin/v1/nothing-here", Some(&key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/admin/v1/nothing-here")
    );
}

#[tokio::test]
async fn a_tenant_saves_its_own_rating_request_email_only_if_it_works() {
    let (app, _store, acme, globex) = setup().await;
    let path = "/admin/v1/templates/rating-request";
    let (status, defaults) = call(&app, "GET", path, Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        defaults["html"]
            .as_str()
            .unwrap()
            .contains("unsubscribe_url")
    );

    let mut mine = defaults.clone();
    mine["subject"] = "{{ agent_name }} would love your feedback on {{ ticket.subject }}".into();
    let (status, _) = call(&app, "PUT", path, Some(&acme), Some(&mine.to_string())).await;
    assert_eq!(status, StatusCode::OK);

    let (status, preview) = call(
        &app,
        "POST",
        &format!("{path}/preview"),
        Some(&acme),
        Some(&mine.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        preview["subject"],
        "Alice Meyer would love your feedback on Printer jams"
    );

    // Dropping the unsubscribe link, a syntax error, or a runaway loop is refused, and the
    // saved template stays as it was.
    for (part, source) in [
        ("text", "{% for c in choices %}{{ c.url }}{% endfor %}"),
        ("html", "{% if %}"),
        (
            "html",
            "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}",
        ),
    ] {
        let mut broken = mine.clone();
        broken[part] = source.into();
        let (status, body) = call(&app, "PUT", path, Some(&acme), Some(&broken.to_string())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "invalid_template");
    }
    let (_, saved) = call(&app, "GET", path, Some(&acme), None).await;
    assert_eq!(saved, mine);
    // Another tenant still has the defaults.
    let (_, theirs) = call(&app, "GET", path, Some(&globex), None).await;
    assert_eq!(theirs, defaults);
    let (status, reset) = call(&app, "DELETE", path, Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reset, defaults);
}
