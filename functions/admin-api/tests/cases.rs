//! Cases through the admin API: SLA settings, business hours and close options, closing,
//! assigning, reply and close through the helpdesk, history, lists and reports; bad input
//! refused by name with nothing written; tenants kept apart.

use std::sync::Arc;

use admin_api::{AdminState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Duration, Utc};
use closedloop_connectors::{StoreConnectorDirectory, http_client};
use closedloop_core::cases::{self, Opening};
use closedloop_core::domain::{CaseOrigin, TenantSettings};
use closedloop_core::helpdesk::{self, ConnectorKind};
use closedloop_core::ids::{AgentId, CaseId, SurveyRequestId, TenantId, TicketId};
use closedloop_core::outbox::envelope_from_image;
use closedloop_core::ports::ManualClock;
use closedloop_core::store::{ItemStore, Query};
use closedloop_core::{keys, tenancy};
use closedloop_embedded::JournalStore;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Monday 2026-01-12, 10:00 in Warsaw (CET, UTC+1).
const MONDAY_10_WARSAW: &str = "2026-01-12T09:00:00Z";

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

struct Fixture {
    app: axum::Router,
    store: Arc<dyn ItemStore>,
    clock: Arc<ManualClock>,
    acme: String,
    globex: String,
}

async fn fixture() -> Fixture {
    let store: Arc<dyn ItemStore> = Arc::new(JournalStore::open_in_memory().unwrap());
    let mut api_keys = Vec::new();
    for name in ["acme", "globex"] {
        let t = tenancy::provision_tenant(
            store.as_ref(),
            TenantId::parse(name).unwrap(),
            name,
            TenantSettings {
                time_zone: closedloop_core::domain::TimeZone::parse("Europe/Warsaw").unwrap(),
                ..TenantSettings::default()
            },
            Utc::now(),
        )
        .await
        .unwrap();
        api_keys.push(t.api_key);
    }
    let clock = Arc::new(ManualClock::new(at(MONDAY_10_WARSAW)));
    Fixture {
        app: router(AdminState {
            store: store.clone(),
            clock: clock.clone(),
            settings: Default::default(),
            connectors: Arc::new(StoreConnectorDirectory::new(
                store.clone(),
                http_client(std::time::Duration::from_secs(2)),
            )),
        }),
        store,
        clock,
        globex: api_keys.pop().unwrap(),
        acme: api_keys.pop().unwrap(),
    }
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, _, bytes) = raw(app, method, uri, key, body, None).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn raw(
    app: &axum::Router,
    method: &str,
    uri: &str,
    key: &str,
    body: Option<Value>,
    accept: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {key}"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let body = match body {
        Some(b) => {
            request = request.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

/// A case opened as a rule opens one, at the clock's time, with the tenant's policy.
async fn open_case(f: &Fixture, tenant: &TenantId, ticket: &str, assignee: Option<&str>) -> CaseId {
    let survey = SurveyRequestId::new();
    let policy = cases::policy(f.store.as_ref(), tenant).await.unwrap();
    let (case, writes) = cases::open(
        tenant,
        Opening {
            id: CaseId::new(),
            review: survey.to_string(),
            review_key: keys::review(tenant, survey),
            survey_request_id: Some(survey),
            ticket_id: Some(TicketId::parse(ticket).unwrap()),
            contact_id: None,
            account_id: None,
            assignee: assignee.map(|a| AgentId::parse(a).unwrap()),
            origin: CaseOrigin::Rule,
            opened_by_rule: None,
            cause_event: ulid::Ulid::new(),
            message: None,
        },
        &policy,
        f.clock.now_utc(),
    );
    f.store.transact_write(writes).await.unwrap();
    case.id
}

trait Now {
    fn now_utc(&self) -> DateTime<Utc>;
}
impl Now for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        closedloop_core::ports::Clock::now(self)
    }
}

async fn closed_events(f: &Fixture, tenant: &TenantId) -> Vec<Value> {
    f.store
        .query(Query::partition(keys::outbox_partition(tenant)))
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|i| envelope_from_image(i).ok())
        .filter(|e| e.event_type.as_str() == "case.closed")
        .map(|e| e.data)
        .collect()
}

fn warsaw_office_hours() -> Value {
    json!({"time_zone": "Europe/Warsaw", "hours": {
        "monday": ["09:00-17:00"], "tuesday": ["09:00-17:00"], "wednesday": ["09:00-17:00"],
        "thursday": ["09:00-17:00"], "friday": ["09:00-17:00"]}})
}

/// Business hours Mon-Fri 09-17 Warsaw, SLA on at 8 business hours.
async fn sla_on(f: &Fixture, key: &str) {
    let (status, answer) = call(
        &f.app,
        "PUT",
        "/admin/v1/business-hours",
        key,
        Some(warsaw_office_hours()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = call(
        &f.app,
        "PUT",
        "/admin/v1/sla",
        key,
        Some(json!({"enabled": true, "close_within_hours": 8})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

fn error_of(answer: &Value) -> (&str, &str, Option<&str>) {
    (
        answer["error"]["code"].as_str().unwrap_or_default(),
        answer["error"]["message"].as_str().unwrap_or_default(),
        answer["error"]["path"].as_str(),
    )
}

#[tokio::test]
async fn closing_records_the_sla_verdict_and_durations_and_is_refused_twice_or_with_an_unknown_option()
 {
    let f = fixture().await;
    sla_on(&f, &f.acme).await;
    let id = open_case(&f, &acme(), "1001", Some("a-alice")).await;
    let (_, shown) = call(
        &f.app,
        "GET",
        &format!("/admin/v1/cases/{id}"),
        &f.acme,
        None,
    )
    .await;
    // Monday 10:00 + 8 business hours: 7 on Monday, the 8th on Tuesday from 09:00.
    assert_eq!(shown["case"]["sla_deadline"], "2026-01-13T09:00:00Z");

    let close = format!("/admin/v1/cases/{id}/close");
    let (status, answer) = call(
        &f.app,
        "POST",
        &close,
        &f.acme,
        Some(json!({"option_id": "fixed-it"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (code, message, path) = error_of(&answer);
    assert_eq!((code, path), ("unknown_close_option", Some("option_id")));
    assert_eq!(
        message,
        "option_id: 'fixed-it' is not one of this tenant's close options (called-customer, issue-fixed, no-response)"
    );
    let (status, answer) = call(&f.app, "POST", &close, &f.acme, Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(error_of(&answer).1.contains("option_id"), "{answer}");
    // Nothing was written: still open, only its opening in the history, no event.
    let (_, shown) = call(
        &f.app,
        "GET",
        &format!("/admin/v1/cases/{id}"),
        &f.acme,
        None,
    )
    .await;
    assert_eq!(shown["case"]["status"], "open");
    assert_eq!(shown["history"].as_array().unwrap().len(), 1);
    assert!(closed_events(&f, &acme()).await.is_empty());

    // Tuesday 12:00 in Warsaw: three hours past the deadline.
    f.clock.set(at("2026-01-13T11:00:00Z"));
    let (status, answer) = call(
        &f.app,
        "POST",
        &close,
        &f.acme,
        Some(json!({"option_id": "called-customer", "by": "a-alice"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let case = &answer["case"];
    assert_eq!(case["status"], "closed");
    assert_eq!(case["resolution"], "Called the customer");
    assert_eq!(case["sla_met"], false);
    assert_eq!(case["seconds_to_close"], 26 * 3600);
    // Monday 10:00-17:00 and Tuesday 09:00-12:00.
    assert_eq!(case["business_seconds_to_close"], 10 * 3600);
    assert_eq!(case["closed_by"], "a-alice");

    let (status, answer) = call(
        &f.app,
        "POST",
        &close,
        &f.acme,
        Some(json!({"option_id": "issue-fixed"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (code, message, _) = error_of(&answer);
    assert_eq!(code, "case_closed");
    assert!(
        message.contains(&format!("case {id} is already closed"))
            && message.contains("Called the customer"),
        "{message}"
    );
    let events = closed_events(&f, &acme()).await;
    assert_eq!(events.len(), 1, "one close, one event");
    assert_eq!(events[0]["case"]["resolution_id"], "called-customer");

    let (_, shown) = call(
        &f.app,
        "GET",
        &format!("/admin/v1/cases/{id}"),
        &f.acme,
        None,
    )
    .await;
    let kinds: Vec<_> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "closed"]);
    assert_eq!(shown["history"][1]["by"], "a-alice");
}

#[tokio::test]
async fn close_options_are_added_renamed_and_retired_and_a_closed_case_keeps_its_label() {
    let f = fixture().await;
    let (status, added) = call(
        &f.app,
        "POST",
        "/admin/v1/close-options",
        &f.acme,
        Some(json!({"label": "Refund issued"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(
        added,
        json!({"id": "refund-issued", "label": "Refund issued", "retired": false})
    );
    for (body, field) in [
        (json!({"label": "refund ISSUED"}), "label"),
        (json!({"label": "  "}), "label"),
        (json!({"label": "x".repeat(81)}), "label"),
        (json!({"name": "Refund"}), "name"),
    ] {
        let (status, answer) = call(
            &f.app,
            "POST",
            "/admin/v1/close-options",
            &f.acme,
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(error_of(&answer).1.starts_with(field), "{answer}");
    }
    let (_, listed) = call(&f.app, "GET", "/admin/v1/close-options", &f.acme, None).await;
    assert_eq!(listed["close_options"].as_array().unwrap().len(), 4);

    let first = open_case(&f, &acme(), "1001", None).await;
    let second = open_case(&f, &acme(), "1002", None).await;
    let (status, _) = call(
        &f.app,
        "POST",
        &format!("/admin/v1/cases/{first}/close"),
        &f.acme,
        Some(json!({"option_id": "refund-issued"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let option = "/admin/v1/close-options/refund-issued";
    let (status, renamed) = call(
        &f.app,
        "PATCH",
        option,
        &f.acme,
        Some(json!({"label": "Refund sent"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["label"], "Refund sent");
    let (status, retired) = call(
        &f.app,
        "PATCH",
        option,
        &f.acme,
        Some(json!({"retired": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(retired["retired"], true);

    // The closed case keeps the label it was closed with.
    let (_, shown) = call(
        &f.app,
        "GET",
        &format!("/admin/v1/cases/{first}"),
        &f.acme,
        None,
    )
    .await;
    assert_eq!(shown["case"]["resolution"], "Refund issued");
    assert_eq!(shown["case"]["resolution_id"], "refund-issued");
    // A retired option closes nothing new.
    let (status, answer) = call(
        &f.app,
        "POST",
        &format!("/admin/v1/cases/{second}/close"),
        &f.acme,
        Some(json!({"option_id": "refund-issued"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&answer).0, "retired_close_option");
    assert!(
        error_of(&answer)
            .1
            .contains("called-customer, issue-fixed, no-response"),
        "{answer}"
    );
    let (_, shown) = call(
        &f.app,
        "GET",
        &format!("/admin/v1/cases/{second}"),
        &f.acme,
        None,
    )
    .await;
    assert_eq!(shown["case"]["status"], "open");

    let (status, _) = call(
        &f.app,
        "PATCH",
        "/admin/v1/close-options/nope",
        &f.acme,
        Some(json!({"retired": true})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Another tenant's options are its own.
    let (_, theirs) = call(&f.app, "GET", "/admin/v1/close-options", &f.globex, None).await;
    assert_eq!(theirs["close_options"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn an_invalid_calendar_or_sla_is_refused_naming_the_problem_and_nothing_changes() {
    let f = fixture().await;
    sla_on(&f, &f.acme).await;
    let mut overlapping = warsaw_office_hours();
    overlapping["hours"]["monday"] = json!(["09:00-12:00", "11:00-13:00"]);
    let mut unknown_zone = warsaw_office_hours();
    unknown_zone["time_zone"] = json!("Europe/Warsw");
    let mut typo = warsaw_office_hours();
    typo["hours"]["mondy"] = json!(["09:00-17:00"]);
    for (calendar, says) in [
        (
            overlapping,
            "monday: windows 09:00–12:00 and 11:00–13:00 overlap",
        ),
        (
            unknown_zone,
            "unknown time zone 'Europe/Warsw' (use an IANA name such as Europe/Warsaw)",
        ),
        (typo, "mondy"),
    ] {
        let (status, answer) = call(
            &f.app,
            "PUT",
            "/admin/v1/business-hours",
            &f.acme,
            Some(calendar),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        let (code, message, _) = error_of(&answer);
        assert_eq!(code, "invalid_calendar");
        assert!(message.contains(says), "{message}");
    }
    let (_, hours) = call(&f.app, "GET", "/admin/v1/business-hours", &f.acme, None).await;
    assert_eq!(
        hours["business_hours"],
        warsaw_office_hours(),
        "the calendar stayed"
    );

    for (sla, path) in [
        (
            json!({"enabled": true, "close_within_hours": 0}),
            "close_within_hours",
        ),
        (
            json!({"enabled": true, "close_within_hours": 5000}),
            "close_within_hours",
        ),
        (
            json!({"enabled": true, "close_within_hours": -1}),
            "close_within_hours",
        ),
        (json!({"enabled": "yes"}), "enabled"),
        (json!({"enabled": true, "hours": 4}), "hours"),
    ] {
        let (status, answer) = call(&f.app, "PUT", "/admin/v1/sla", &f.acme, Some(sla)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(error_of(&answer).1.starts_with(path), "{answer}");
    }
    let (_, sla) = call(&f.app, "GET", "/admin/v1/sla", &f.acme, None).await;
    assert_eq!(
        (sla["enabled"].clone(), sla["close_within_hours"].clone()),
        (json!(true), json!(8))
    );
    // Another tenant's SLA is untouched by all of this.
    let (_, theirs) = call(&f.app, "GET", "/admin/v1/sla", &f.globex, None).await;
    assert_eq!(theirs["enabled"], false);
    assert_eq!(theirs["business_hours"], json!({"always_open": true}));
}

async fn connect(f: &Fixture, helpdesk: &MockServer) {
    helpdesk::put_config(
        f.store.as_ref(),
        &acme(),
        ConnectorKind::GenericWebhook,
        &format!("{}/helpdesk", helpdesk.uri()),
        Default::default(),
        Some("connector-secret-0123456789"),
        Utc::now(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn reply_and_close_sends_the_reply_through_the_helpdesk_and_closes_in_one_step() {
    let f = fixture().await;
    let id = open_case(&f, &acme(), "1001", Some("a-alice")).await;
    let reply = format!("/admin/v1/cases/{id}/reply");
    let body = "Sorry about the printer, Bob: a technician replaced the drum today.";
    // No helpdesk yet: refused, nothing sent or written.
    let (status, answer) = call(
        &f.app,
        "POST",
        &reply,
        &f.acme,
        Some(json!({"body": body, "close_with": "issue-fixed"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_of(&answer).0, "no_helpdesk");

    let helpdesk = MockServer::start().await;
    connect(&f, &helpdesk).await;
    Mock::given(method("POST"))
        .and(path("/helpdesk"))
        .and(body_partial_json(
            json!({"operation": "public_reply", "tenant_id": "acme",
            "ticket_id": "1001", "body": body}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .expect(1)
        .mount(&helpdesk)
        .await;
    // An unknown option is refused before anything is sent.
    let (status, answer) = call(
        &f.app,
        "POST",
        &reply,
        &f.acme,
        Some(json!({"body": body, "close_with": "solved"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, message, path) = error_of(&answer);
    assert_eq!(path, Some("close_with"));
    assert!(
        message.starts_with("close_with: 'solved' is not one"),
        "{message}"
    );
    let (status, answer) = call(&f.app, "POST", &reply, &f.acme, Some(json!({"body": " "}))).await;
    assert_eq!(
        (status, error_of(&answer).2),
        (StatusCode::BAD_REQUEST, Some("body"))
    );

    f.clock.advance(Duration::hours(2));
    let (status, answer) = call(
        &f.app,
        "POST",
        &reply,
        &f.acme,
        Some(json!({"body": body, "close_with": "issue-fixed", "by": "a-alice"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["case"]["status"], "closed");
    assert_eq!(answer["case"]["resolution"], "Issue fixed");
    assert_eq!(answer["case"]["seconds_to_close"], 7200);
    let (_, shown) = call(
        &f.app,
        "GET",
        &format!("/admin/v1/cases/{id}"),
        &f.acme,
        None,
    )
    .await;
    let history = shown["history"].as_array().unwrap();
    let kinds: Vec<_> = history
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "replied", "closed"], "{shown}");
    let replied = history.iter().find(|e| e["kind"] == "replied").unwrap();
    assert_eq!(
        (replied["body"].as_str(), replied["by"].as_str()),
        (Some(body), Some("a-alice"))
    );
    assert_eq!(closed_events(&f, &acme()).await.len(), 1);

    // Replying to a closed case sends nothing (the mock expects exactly one call).
    let (status, answer) = call(
        &f.app,
        "POST",
        &reply,
        &f.acme,
        Some(json!({"body": "again"})),
    )
    .await;
    assert_eq!(
        (status, error_of(&answer).0),
        (StatusCode::BAD_REQUEST, "case_closed")
    );
}

#[tokio::test]
async fn a_reply_the_helpdesk_refuses_leaves_the_case_open() {
    let f = fixture().await;
    let id = open_case(&f, &acme(), "1001", None).await;
    let helpdesk = MockServer::start().await;
    connect(&f, &helpdesk).await;
    Mock::given(method("POST"))
        .and(path("/helpdesk"))
        .respond_with(
            ResponseTemplate::new(422).set_body_json(json!({"error": "ticket 1001 is archived"})),
        )
        .mount(&helpdesk)
        .await;
    let (status, answer) = call(
        &f.app,
        "POST",
        &format!("/admin/v1/cases/{id}/reply"),
        &f.acme,
        Some(json!({"body": "Hello", "close_with": "issue-fixed"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(error_of(&answer).1.contains("archived"), "{answer}");
    let (_, shown) = call(
        &f.app,
        "GET",
        &format!("/admin/v1/cases/{id}"),
        &f.acme,
        None,
    )
    .await;
    assert_eq!(shown["case"]["status"], "open");
    assert_eq!(shown["history"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn tenants_never_reach_each_others_cases() {
    let f = fixture().await;
    let id = open_case(&f, &acme(), "1001", Some("a-alice")).await;
    let (status, _) = call(
        &f.app,
        "GET",
        &format!("/admin/v1/cases/{id}"),
        &f.globex,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for (action, body) in [
        ("close", json!({"option_id": "issue-fixed"})),
        ("assign", json!({"agent_id": "a-x"})),
        ("reply", json!({"body": "hi", "close_with": "issue-fixed"})),
    ] {
        let uri = format!("/admin/v1/cases/{id}/{action}");
        let (status, _) = call(&f.app, "POST", &uri, &f.globex, Some(body)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}");
    }
    let (_, listed) = call(&f.app, "GET", "/admin/v1/cases", &f.globex, None).await;
    assert_eq!(listed["cases"], json!([]));
    let (_, report) = call(
        &f.app,
        "GET",
        "/admin/v1/reports/cases?from=2026-01-01&to=2026-01-31",
        &f.globex,
        None,
    )
    .await;
    assert_eq!(report["total"]["opened"], 0);
    let (_, ours) = call(
        &f.app,
        "GET",
        &format!("/admin/v1/cases/{id}"),
        &f.acme,
        None,
    )
    .await;
    assert_eq!(
        ours["case"]["status"], "open",
        "untouched by the other tenant"
    );
}

#[tokio::test]
async fn cases_are_listed_newest_first_by_filter_and_reassigned_with_history() {
    let f = fixture().await;
    let first = open_case(&f, &acme(), "1001", Some("a-alice")).await;
    f.clock.advance(Duration::minutes(1));
    let second = open_case(&f, &acme(), "1002", None).await;
    f.clock.advance(Duration::minutes(1));
    let third = open_case(&f, &acme(), "1003", Some("a-alice")).await;
    call(
        &f.app,
        "POST",
        &format!("/admin/v1/cases/{third}/close"),
        &f.acme,
        Some(json!({"option_id": "no-response"})),
    )
    .await;
    let ids = |answer: &Value| -> Vec<String> {
        answer["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, all) = call(&f.app, "GET", "/admin/v1/cases", &f.acme, None).await;
    assert_eq!(
        ids(&all),
        [third.to_string(), second.to_string(), first.to_string()]
    );
    let (_, open) = call(
        &f.app,
        "GET",
        "/admin/v1/cases?status=open&assignee=a-alice",
        &f.acme,
        None,
    )
    .await;
    assert_eq!(ids(&open), [first.to_string()]);
    let (_, nobody) = call(
        &f.app,
        "GET",
        "/admin/v1/cases?assignee=none",
        &f.acme,
        None,
    )
    .await;
    assert_eq!(ids(&nobody), [second.to_string()]);
    let (_, page) = call(&f.app, "GET", "/admin/v1/cases?limit=2", &f.acme, None).await;
    assert_eq!(ids(&page).len(), 2);
    let next = page["next_before"].as_str().unwrap();
    let (_, rest) = call(
        &f.app,
        "GET",
        &format!("/admin/v1/cases?limit=2&before={next}"),
        &f.acme,
        None,
    )
    .await;
    assert_eq!(ids(&rest), [first.to_string()]);
    for (query, field) in [
        ("status=pending", "status"),
        ("limit=0", "limit"),
        ("from=soon", "from"),
        ("colour=red", "colour"),
    ] {
        let (status, answer) = call(
            &f.app,
            "GET",
            &format!("/admin/v1/cases?{query}"),
            &f.acme,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(error_of(&answer).1.contains(field), "{answer}");
    }

    let (status, answer) = call(
        &f.app,
        "POST",
        &format!("/admin/v1/cases/{second}/assign"),
        &f.acme,
        Some(json!({"agent_id": "a-mark", "by": "lead"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["case"]["assignee"], "a-mark");
    let (_, shown) = call(
        &f.app,
        "GET",
        &format!("/admin/v1/cases/{second}"),
        &f.acme,
        None,
    )
    .await;
    let assigned = &shown["history"][1];
    assert_eq!(
        (
            assigned["kind"].as_str(),
            assigned["to"].as_str(),
            assigned["by"].as_str()
        ),
        (Some("assigned"), Some("a-mark"), Some("lead"))
    );
    let (status, _) = call(
        &f.app,
        "POST",
        &format!("/admin/v1/cases/{third}/assign"),
        &f.acme,
        Some(json!({"agent_id": "a-mark"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a closed case is not reassigned"
    );
}

#[tokio::test]
async fn reports_count_cases_per_assignee_in_json_and_csv_and_the_sla_tab_needs_the_sla() {
    let f = fixture().await;
    let (status, answer) = call(&f.app, "GET", "/admin/v1/reports/sla", &f.acme, None).await;
    assert_eq!(
        (status, error_of(&answer).0),
        (StatusCode::CONFLICT, "sla_off")
    );
    sla_on(&f, &f.acme).await;
    // Monday 10:00: three cases. Alice closes one in an hour (inside), Mark one on Wednesday
    // (outside); Alice's other stays open past its deadline.
    let inside = open_case(&f, &acme(), "1", Some("a-alice")).await;
    let _late_open = open_case(&f, &acme(), "2", Some("a-alice")).await;
    let outside = open_case(&f, &acme(), "3", Some("a-mark")).await;
    f.clock.advance(Duration::hours(1));
    call(
        &f.app,
        "POST",
        &format!("/admin/v1/cases/{inside}/close"),
        &f.acme,
        Some(json!({"option_id": "called-customer"})),
    )
    .await;
    f.clock.set(at("2026-01-14T09:00:00Z"));
    call(
        &f.app,
        "POST",
        &format!("/admin/v1/cases/{outside}/close"),
        &f.acme,
        Some(json!({"option_id": "issue-fixed"})),
    )
    .await;

    let range = "from=2026-01-01&to=2026-01-31";
    let (status, report) = call(
        &f.app,
        "GET",
        &format!("/admin/v1/reports/cases?{range}"),
        &f.acme,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["range"]["from"], "2025-12-31T23:00:00Z",
        "dates are the tenant's days"
    );
    let total = &report["total"];
    assert_eq!(
        (
            total["opened"].as_u64(),
            total["open"].as_u64(),
            total["closed"].as_u64()
        ),
        (Some(3), Some(1), Some(2))
    );
    // 1 h and 48 h wall-clock; 1 h and 16 business hours (Mon 10-17, Tue 9-17, Wed 9-10).
    assert_eq!(total["avg_hours_to_close"], 24.5);
    assert_eq!(total["avg_business_hours_to_close"], 8.5);
    let alice = &report["by_assignee"][0];
    assert_eq!(
        (
            alice["assignee"].as_str(),
            alice["open"].as_u64(),
            alice["closed"].as_u64()
        ),
        (Some("a-alice"), Some(1), Some(1))
    );

    let (_, sla) = call(
        &f.app,
        "GET",
        &format!("/admin/v1/reports/sla?{range}"),
        &f.acme,
        None,
    )
    .await;
    let total = &sla["total"];
    assert_eq!(
        (
            total["inside"].as_u64(),
            total["outside"].as_u64(),
            total["open_within_sla"].as_u64()
        ),
        (Some(1), Some(2), Some(0))
    );
    assert_eq!(sla["by_assignee"][0]["assignee"], "a-alice");
    assert_eq!(
        (
            sla["by_assignee"][0]["inside"].as_u64(),
            sla["by_assignee"][0]["outside"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(
        (
            sla["by_assignee"][1]["assignee"].as_str(),
            sla["by_assignee"][1]["outside"].as_u64()
        ),
        (Some("a-mark"), Some(1))
    );

    // CSV, by query or by Accept.
    let (status, headers, csv) = raw(
        &f.app,
        "GET",
        &format!("/admin/v1/reports/sla?{range}&format=csv"),
        &f.acme,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<_> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "from,to,assignee,inside,outside,open_within_sla,without_sla,inside_percent"
    );
    assert_eq!(
        lines[1],
        "2025-12-31T23:00:00.000Z,2026-01-31T23:00:00.000Z,(all),1,2,0,0,33.3"
    );
    assert!(lines[3].contains(",a-mark,0,1,0,0,0"), "{csv}");
    let (_, headers, csv) = raw(
        &f.app,
        "GET",
        &format!("/admin/v1/reports/cases?{range}"),
        &f.acme,
        None,
        Some("text/csv"),
    )
    .await;
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"cases-")
    );
    assert!(
        String::from_utf8(csv)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .ends_with(",(all),3,1,2,24.5,8.5")
    );

    for (query, field) in [
        ("from=2026-02-01&to=2026-01-01", "from"),
        ("from=2024-01-01&to=2026-01-01", "to"),
        ("format=xml", "format"),
    ] {
        let (status, answer) = call(
            &f.app,
            "GET",
            &format!("/admin/v1/reports/cases?{query}"),
            &f.acme,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(error_of(&answer).2, Some(field), "{answer}");
    }
}
