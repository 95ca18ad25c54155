//! The rules resource as a helpdesk admin uses it: create, read, edit with versions, switch,
//! delete for good, templates, simulation, and bad rules refused with the offending path.

use std::sync::Arc;

use admin_api::{AdminState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use closedloop_core::domain::TenantSettings;
use closedloop_core::ids::TenantId;
use closedloop_core::ports::SystemClock;
use closedloop_core::store::ItemStore;
use closedloop_core::{automation, tenancy};
use closedloop_embedded::JournalStore;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Api {
    app: axum::Router,
    store: Arc<dyn ItemStore>,
    acme: String,
    globex: String,
}

async fn api() -> Api {
    let store: Arc<dyn ItemStore> = Arc::new(JournalStore::open_in_memory().unwrap());
    let now = chrono::Utc::now();
    let mut keys = Vec::new();
    for (id, name) in [("acme", "Acme"), ("globex", "Globex")] {
        keys.push(
            tenancy::provision_tenant(
                store.as_ref(),
                TenantId::parse(id).unwrap(),
                name,
                TenantSettings::default(),
                now,
            )
            .await
            .unwrap()
            .api_key,
        );
    }
    Api {
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

impl Api {
    async fn call(
        &self,
        key: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn stored_rules(&self, tenant: &str) -> usize {
        automation::load_rules(self.store.as_ref(), &TenantId::parse(tenant).unwrap())
            .await
            .unwrap()
            .len()
    }
}

fn negative_review_rule() -> Value {
    json!({
        "name": "Alert on negative reviews",
        "description": "The lead hears of every bad rating",
        "trigger": "review_received",
        "conditions": {"all": [
            {"field": "rating.csat", "op": "is", "value": "negative"},
            {"any": [
                {"field": "review.has_comment", "op": "is", "value": false},
                {"field": "review.comment", "op": "contains", "value": "refund"}
            ]}
        ]},
        "actions": [{"type": "send_email", "to": ["lead@acme.example"],
            "subject": "Negative review from {{ customer.name }}", "body": "{{ comment }}"}]
    })
}

#[tokio::test]
async fn a_rule_is_created_read_listed_edited_switched_and_deleted() {
    let api = api().await;
    let (status, created) = api
        .call(
            &api.acme,
            "POST",
            "/admin/v1/rules",
            Some(negative_review_rule()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["version"], 1);
    assert_eq!(created["enabled"], true);
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/admin/v1/rules/{id}");

    let (status, read) = api.call(&api.acme, "GET", &path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["conditions"], negative_review_rule()["conditions"]);
    let (_, list) = api.call(&api.acme, "GET", "/admin/v1/rules", None).await;
    assert_eq!(list["rules"].as_array().unwrap().len(), 1);

    // Edit what was read, sending it back with its version.
    let mut edit = read.clone();
    edit["name"] = json!("Alert the lead on negative reviews");
    let (status, edited) = api.call(&api.acme, "PUT", &path, Some(edit.clone())).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["version"], 2);
    // A second admin still holding version 1 is told, and their change is not applied.
    edit["name"] = json!("Someone else's name");
    let (status, conflict) = api.call(&api.acme, "PUT", &path, Some(edit)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["error"]["code"], "version_conflict");
    let (_, now) = api.call(&api.acme, "GET", &path, None).await;
    assert_eq!(now["name"], "Alert the lead on negative reviews");

    let (status, off) = api
        .call(&api.acme, "POST", &format!("{path}/disable"), None)
        .await;
    assert_eq!(
        (status, off["enabled"].clone()),
        (StatusCode::OK, json!(false))
    );
    let (_, on) = api
        .call(&api.acme, "POST", &format!("{path}/enable"), None)
        .await;
    assert_eq!(on["enabled"], true);

    let (status, _) = api.call(&api.acme, "DELETE", &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.call(&api.acme, "GET", &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a deleted rule is gone");
    let (status, _) = api.call(&api.acme, "DELETE", &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_invalid_rule_gets_a_400_naming_the_path_and_nothing_is_saved() {
    let api = api().await;
    let with = |pointer: &str, value: Value| {
        let mut rule = negative_review_rule();
        *rule.pointer_mut(pointer).unwrap() = value;
        rule
    };
    let mut unknown_field = negative_review_rule();
    unknown_field["priority"] = json!(1);
    let cases = [
        (unknown_field, "priority"),
        (
            with("/conditions/all/0/field", json!("rating.colour")),
            "conditions.all[0].field",
        ),
        (
            with("/conditions/all/0/op", json!("greater_than")),
            "conditions.all[0].op",
        ),
        (with("/actions", json!([])), "actions"),
        (
            with("/actions/0/to/0", json!("lead-at-acme")),
            "actions[0].to[0]",
        ),
        (
            with(
                "/conditions/all/1/any/1",
                json!({"field": "review.comment", "op": "matches", "value": "(refund"}),
            ),
            "conditions.all[1].any[1].value",
        ),
        (
            with(
                "/conditions/all/0",
                json!({"field": "rating.nps", "op": "between", "value": [9, "x"]}),
            ),
            "conditions.all[0].value[1]",
        ),
        (with("/trigger", json!("when_it_rains")), "trigger"),
    ];
    for (rule, path) in cases {
        let (status, body) = api
            .call(&api.acme, "POST", "/admin/v1/rules", Some(rule.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{rule}");
        assert_eq!(body["error"]["code"], "invalid_rule");
        assert_eq!(body["error"]["path"], path, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().starts_with(path));
    }
    assert_eq!(api.stored_rules("acme").await, 0, "nothing was saved");

    // A bad edit leaves the stored rule as it was.
    let (_, created) = api
        .call(
            &api.acme,
            "POST",
            "/admin/v1/rules",
            Some(negative_review_rule()),
        )
        .await;
    let mut bad = created.clone();
    bad["actions"] = json!([{"type": "send_email", "to": [], "subject": "s", "body": "b"}]);
    let path = format!("/admin/v1/rules/{}", created["id"].as_str().unwrap());
    let (status, body) = api.call(&api.acme, "PUT", &path, Some(bad)).await;
    assert_eq!(
        (status, body["error"]["path"].clone()),
        (StatusCode::BAD_REQUEST, json!("actions[0].to"))
    );
    let (_, still) = api.call(&api.acme, "GET", &path, None).await;
    assert_eq!(still, created);
}

#[tokio::test]
async fn another_tenants_rules_are_out_of_reach() {
    let api = api().await;
    let (_, created) = api
        .call(
            &api.acme,
            "POST",
            "/admin/v1/rules",
            Some(negative_review_rule()),
        )
        .await;
    let path = format!("/admin/v1/rules/{}", created["id"].as_str().unwrap());
    for (method, p) in [
        ("GET", path.clone()),
        ("DELETE", path.clone()),
        ("POST", format!("{path}/disable")),
    ] {
        let (status, _) = api.call(&api.globex, method, &p, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {p}");
    }
    let mut edit = created.clone();
    edit["name"] = json!("hijacked");
    let (status, _) = api.call(&api.globex, "PUT", &path, Some(edit)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = api.call(&api.globex, "GET", "/admin/v1/rules", None).await;
    assert_eq!(list["rules"], json!([]));
    let (_, mine) = api.call(&api.acme, "GET", &path, None).await;
    assert_eq!(mine, created, "untouched");
}

#[tokio::test]
async fn templates_are_listed_and_added_with_the_tenants_addresses() {
    let api = api().await;
    let (_, list) = api
        .call(&api.acme, "GET", "/admin/v1/rule-templates", None)
        .await;
    let ids: Vec<&str> = list["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    for expected in [
        "alert-managers-on-negative-review",
        "reopen-on-negative-review",
        "case-for-silent-detractor",
        "thank-promoters",
        "remind-unanswered-after-24h",
        "detractor-alert-on-new-ticket",
    ] {
        assert!(ids.contains(&expected), "{expected} in {ids:?}");
    }
    let (status, body) = api
        .call(
            &api.acme,
            "POST",
            "/admin/v1/rule-templates/alert-managers-on-negative-review",
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["path"].clone()),
        (StatusCode::BAD_REQUEST, json!("to"))
    );
    let (status, rule) = api
        .call(
            &api.acme,
            "POST",
            "/admin/v1/rule-templates/alert-managers-on-negative-review",
            Some(json!({"to": ["lead@acme.example"], "enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rule}");
    assert_eq!(rule["actions"][0]["to"], json!(["lead@acme.example"]));
    assert_eq!(rule["enabled"], true);
    let (status, _) = api
        .call(
            &api.acme,
            "POST",
            "/admin/v1/rule-templates/no-such-thing",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_simulation_needs_a_rule_and_a_sane_range() {
    let api = api().await;
    let (status, body) = api
        .call(&api.acme, "POST", "/admin/v1/rules/simulate",
            Some(json!({"rule": negative_review_rule(), "from": "2026-11-01T00:00:00Z", "to": "2026-10-01T00:00:00Z"})))
        .await;
    assert_eq!(
        (status, body["error"]["path"].clone()),
        (StatusCode::BAD_REQUEST, json!("to"))
    );
    let mut bad = negative_review_rule();
    bad["conditions"]["all"][0]["op"] = json!("between");
    let (status, body) = api
        .call(
            &api.acme,
            "POST",
            "/admin/v1/rules/simulate",
            Some(
                json!({"rule": bad, "from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}),
            ),
        )
        .await;
    assert_eq!(
        (status, body["error"]["path"].clone()),
        (StatusCode::BAD_REQUEST, json!("rule.conditions.all[0].op"))
    );
    let (status, body) = api
        .call(&api.acme, "POST", "/admin/v1/rules/simulate",
            Some(json!({"rule": negative_review_rule(), "from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events_replayed"], 0);
    assert_eq!(
        api.stored_rules("acme").await,
        0,
        "simulating does not save the rule"
    );
}
