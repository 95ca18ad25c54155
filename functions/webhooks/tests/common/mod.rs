//! What the vendor tests share: a store with two tenants, the router, and each vendor's
//! signing scheme written out from its documentation (not borrowed from the code under test).

#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use closedloop_core::domain::TenantSettings;
use closedloop_core::ids::TenantId;
use closedloop_core::ports::{Clock, SystemClock};
use closedloop_core::store::{ItemStore, Query};
use closedloop_core::{keys, sources, tenancy};
use closedloop_embedded::JournalStore;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use sha2::Sha256;
use tower::ServiceExt;
use webhooks::{WebhooksState, router};

pub struct Fixture {
    pub app: axum::Router,
    pub store: Arc<dyn ItemStore>,
    pub generic_secret: String,
}

pub const VENDORS: [&str; 4] = ["zendesk", "delighted", "typeform", "asknicely"];

/// The secret a tenant configured for a vendor (vendor-chosen secrets are pasted in).
pub fn secret_of(tenant: &str, vendor: &str) -> String {
    format!("{tenant}-{vendor}-secret-0001")
}

pub async fn fixture() -> Fixture {
    let store: Arc<dyn ItemStore> = Arc::new(JournalStore::open_in_memory().unwrap());
    let now = chrono::Utc::now();
    let mut generic_secret = String::new();
    for name in ["acme", "globex"] {
        let tenant = TenantId::parse(name).unwrap();
        let t = tenancy::provision_tenant(
            store.as_ref(),
            tenant.clone(),
            name,
            TenantSettings::default(),
            now,
        )
        .await
        .unwrap();
        if name == "acme" {
            generic_secret = t.webhook_secret;
        }
        for vendor in VENDORS {
            sources::create_secret(
                store.as_ref(),
                &tenant,
                vendor,
                Some(&secret_of(name, vendor)),
                now,
            )
            .await
            .unwrap();
        }
    }
    let app = router(WebhooksState {
        store: store.clone(),
        clock: Arc::new(SystemClock),
    });
    Fixture {
        app,
        store,
        generic_secret,
    }
}

pub fn now() -> chrono::DateTime<chrono::Utc> {
    SystemClock.now()
}

fn hmac(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Zendesk: base64(HMACSHA256(TIMESTAMP + BODY)), timestamp header ISO 8601.
pub fn zendesk_headers(secret: &str, timestamp: &str, body: &str) -> Vec<(String, String)> {
    vec![
        (
            "X-Zendesk-Webhook-Signature".into(),
            STANDARD.encode(hmac(secret, &[timestamp.as_bytes(), body.as_bytes()])),
        ),
        (
            "X-Zendesk-Webhook-Signature-Timestamp".into(),
            timestamp.into(),
        ),
    ]
}

pub fn zendesk_now() -> String {
    now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Delighted: sha256=<hex HMAC-SHA256(body)>.
pub fn delighted_headers(secret: &str, body: &str) -> Vec<(String, String)> {
    vec![(
        "X-Delighted-Webhook-Signature".into(),
        format!("sha256={}", hex::encode(hmac(secret, &[body.as_bytes()]))),
    )]
}

/// Typeform: sha256=<base64 HMAC-SHA256(body)>.
pub fn typeform_headers(secret: &str, body: &str) -> Vec<(String, String)> {
    vec![(
        "Typeform-Signature".into(),
        format!(
            "sha256={}",
            STANDARD.encode(hmac(secret, &[body.as_bytes()]))
        ),
    )]
}

/// AskNicely: a custom header carrying the secret.
pub fn asknicely_headers(secret: &str) -> Vec<(String, String)> {
    vec![("X-Closedloop-Webhook-Secret".into(), secret.into())]
}

pub async fn post(
    app: &axum::Router,
    path: &str,
    headers: &[(String, String)],
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let mut request = Request::post(path).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// The events in a tenant's outbox, as (type, data), in the order written.
pub async fn outbox(store: &dyn ItemStore, tenant: &str) -> Vec<(String, serde_json::Value)> {
    let tenant = TenantId::parse(tenant).unwrap();
    store
        .query(Query::partition(keys::outbox_partition(&tenant)))
        .await
        .unwrap()
        .items
        .iter()
        .map(|item| {
            let event = closedloop_core::outbox::envelope_from_image(item).unwrap();
            (event.event_type.as_str().to_string(), event.data)
        })
        .collect()
}

/// The event types, sorted: events written in the same millisecond have no defined order.
pub fn types(events: &[(String, serde_json::Value)]) -> Vec<&str> {
    let mut types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    types.sort_unstable();
    types
}

/// The data of the one event of this type.
pub fn data_of<'a>(
    events: &'a [(String, serde_json::Value)],
    event_type: &str,
) -> &'a serde_json::Value {
    let mut found = events.iter().filter(|(t, _)| t == event_type);
    let (_, data) = found.next().unwrap_or_else(|| panic!("no {event_type}"));
    assert!(found.next().is_none(), "more than one {event_type}");
    data
}
