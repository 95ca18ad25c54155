//! Reports as an admin reads them: figures per agent and period from the counters, tickets
//! with ratings, CSV, the report page and its signed links; bad input refused, tenants apart.

use std::sync::Arc;

use admin_api::{AdminState, router};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Duration, Utc};
use closedloop_core::domain::{
    Agent, Comment, CsatValue, Email, NpsScore, ProviderResponse, Rating, Review, TenantSettings,
    TimeZone,
};
use closedloop_core::ids::{AgentId, TenantId, TicketId};
use closedloop_core::ports::ManualClock;
use closedloop_core::records::record_item;
use closedloop_core::store::{ItemStore, WriteOp};
use closedloop_core::{keys, reports, tenancy};
use closedloop_embedded::JournalStore;
use http_body_util::BodyExt;
use tower::ServiceExt;

struct World {
    app: axum::Router,
    store: Arc<dyn ItemStore>,
    clock: Arc<ManualClock>,
    acme: String,
    globex: String,
    n: usize,
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

async fn world() -> World {
    let store: Arc<dyn ItemStore> = Arc::new(JournalStore::open_in_memory().unwrap());
    let now = t("2026-03-20T12:00:00Z");
    let settings = TenantSettings {
        time_zone: TimeZone::parse("Europe/Warsaw").unwrap(),
        brand_name: "Acme <Support> & Co".into(),
        ..TenantSettings::default()
    };
    let a = tenancy::provision_tenant(
        store.as_ref(),
        TenantId::parse("acme").unwrap(),
        "Acme",
        settings,
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
    let agent = Agent {
        id: AgentId::parse("a-ann").unwrap(),
        name: "Ann <script>alert(1)</script>".into(),
        email: Email::parse("ann@acme.example").unwrap(),
        email_notifications: true,
        working_hours: None,
    };
    let acme = TenantId::parse("acme").unwrap();
    store
        .put(
            record_item(&keys::agent(&acme, "a-ann"), "agent", &agent),
            None,
        )
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(now));
    World {
        app: router(AdminState {
            store: store.clone(),
            clock: clock.clone(),
            settings: Default::default(),
            connectors: Arc::new(closedloop_connectors::StoreConnectorDirectory::new(
                store.clone(),
                closedloop_connectors::http_client(std::time::Duration::from_secs(2)),
            )),
        }),
        store,
        clock,
        acme: a.api_key,
        globex: b.api_key,
        n: 0,
    }
}

impl World {
    /// A counted review, written as ingest writes one (review item, its counted attributes and
    /// the counter ADDs in one transaction).
    async fn review(
        &mut self,
        agent: Option<&str>,
        rating: Rating,
        comment: Option<&str>,
        at: &str,
    ) {
        self.n += 1;
        let tenant = TenantId::parse("acme").unwrap();
        let key = keys::provider_review(&tenant, "delighted", &format!("r{}", self.n));
        let review = Review {
            tenant_id: tenant.clone(),
            survey_request_id: None,
            ticket_id: Some(TicketId::parse(&format!("{}", 1000 + self.n)).unwrap()),
            rating,
            comment: comment.and_then(|c| Comment::parse(c).unwrap()),
            agent_id: agent.map(|a| AgentId::parse(a).unwrap()),
            contact_id: None,
            account_id: None,
            recorded_at: t(at),
            updated_at: t(at),
            provider: Some(ProviderResponse {
                source: "delighted".into(),
                response_id: format!("r{}", self.n),
                respondent_email: None,
                answered_at: t(at),
            }),
            tags: vec![],
            status: None,
        };
        let (mut ops, attrs) =
            reports::on_review_write(&tenant, chrono_tz::Europe::Warsaw, &key, None, &review);
        let mut item = record_item(&key, "review", &review);
        item.extend(attrs);
        ops.push(WriteOp::put(item));
        self.store.transact_write(ops).await.unwrap();
    }

    async fn get(&self, path: &str, key: Option<&str>) -> (StatusCode, String, String) {
        let mut request = Request::get(path);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let kind = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, kind, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn json(&self, path: &str) -> serde_json::Value {
        let (status, _, body) = self.get(path, Some(&self.acme)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

const POS: Rating = Rating::Csat(CsatValue::Positive);
const NEU: Rating = Rating::Csat(CsatValue::Neutral);
const NEG: Rating = Rating::Csat(CsatValue::Negative);
fn nps(n: u8) -> Rating {
    Rating::Nps(NpsScore::new(n).unwrap())
}

async fn seeded() -> World {
    let mut w = world().await;
    w.review(
        Some("a-ann"),
        POS,
        Some("Quick, thanks"),
        "2026-03-02T09:00:00Z",
    )
    .await;
    w.review(Some("a-ann"), POS, None, "2026-03-03T09:00:00Z")
        .await;
    w.review(
        Some("a-ann"),
        NEG,
        Some("=HYPERLINK(\"x\"), still broken"),
        "2026-03-10T09:00:00Z",
    )
    .await;
    w.review(Some("a-ben"), NEU, None, "2026-03-04T09:00:00Z")
        .await;
    w.review(Some("a-ben"), nps(10), None, "2026-03-05T09:00:00Z")
        .await;
    w.review(Some("a-ben"), nps(3), Some("slow"), "2026-03-05T10:00:00Z")
        .await;
    w.review(None, nps(8), None, "2026-03-06T09:00:00Z").await;
    w
}

#[tokio::test]
async fn the_agent_report_shows_counts_satisfaction_and_nps_per_agent() {
    let w = seeded().await;
    let r = w
        .json("/admin/v1/reports/agents?from=2026-03-01&to=2026-03-31")
        .await;
    let ann = &r["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == "a-ann")
        .unwrap();
    assert_eq!(
        (
            ann["positive"].as_u64(),
            ann["negative"].as_u64(),
            ann["total"].as_u64()
        ),
        (Some(2), Some(1), Some(3))
    );
    assert_eq!(ann["satisfaction"], 0.67);
    assert_eq!(
        ann["agent_name"], "Ann <script>alert(1)</script>",
        "JSON carries the name as is"
    );
    let ben = &r["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == "a-ben")
        .unwrap();
    // One promoter, one detractor of two NPS answers: 0; the CSAT neutral counts as neutral.
    assert_eq!(
        (
            ben["nps"].as_f64(),
            ben["nps_answers"].as_u64(),
            ben["neutral"].as_u64()
        ),
        (Some(0.0), Some(2), Some(1))
    );
    assert_eq!(r["total"]["total"], 7);
    assert_eq!(
        r["agents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["agent_id"].is_null())
            .count(),
        1,
        "no-agent row"
    );
    assert!(r["items_read"].as_u64().unwrap() <= 7, "counter items only");

    let only_ann = w
        .json("/admin/v1/reports/agents?from=2026-03-01&to=2026-03-31&agent=a-ann")
        .await;
    assert_eq!(only_ann["agents"].as_array().unwrap().len(), 1);
    let early = w
        .json("/admin/v1/reports/agents?from=2026-03-01&to=2026-03-04")
        .await;
    assert_eq!(early["total"]["total"], 3, "the range is honoured");

    // Another tenant's key sees none of it.
    let (status, _, body) = w
        .get(
            "/admin/v1/reports/agents?from=2026-03-01&to=2026-03-31",
            Some(&w.globex),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let other: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(other["total"]["total"], 0);
}

#[tokio::test]
async fn days_are_the_tenants_and_weeks_start_on_monday() {
    let mut w = world().await;
    // 23:30 UTC on Sunday 1 March is 00:30 on Monday 2 March in Warsaw.
    w.review(Some("a-ann"), POS, None, "2026-03-01T23:30:00Z")
        .await;
    w.review(Some("a-ann"), NEG, None, "2026-03-01T20:00:00Z")
        .await;
    let days = w
        .json("/admin/v1/reports/trend?from=2026-03-01&to=2026-03-02&period=day")
        .await;
    let totals: Vec<(String, u64)> = days["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["period"].as_str().unwrap().to_string(),
                p["total"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        totals,
        vec![("2026-03-01".into(), 1), ("2026-03-02".into(), 1)]
    );
    let weeks = w
        .json("/admin/v1/reports/trend?from=2026-03-01&to=2026-03-08&period=week")
        .await;
    let weeks: Vec<(String, u64)> = weeks["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["period"].as_str().unwrap().to_string(),
                p["total"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        weeks,
        vec![("2026-02-23".into(), 1), ("2026-03-02".into(), 1)]
    );
    let months = w
        .json("/admin/v1/reports/trend?from=2026-02-01&to=2026-03-31&period=month")
        .await;
    assert_eq!(months["periods"][1]["satisfaction"], 0.5);
}

#[tokio::test]
async fn tickets_with_ratings_filter_and_page() {
    let w = seeded().await;
    let base = "/admin/v1/reports/ratings?from=2026-03-01&to=2026-03-31";
    let all = w.json(base).await;
    assert_eq!(all["tickets"].as_array().unwrap().len(), 7);
    let neg = w.json(&format!("{base}&rating=negative")).await;
    let ids: Vec<&str> = neg["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ticket_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["1006", "1003"],
        "the NPS detractor and the CSAT negative, by day"
    );
    let commented = w
        .json(&format!("{base}&agent=a-ann&has_comment=true"))
        .await;
    assert_eq!(commented["tickets"].as_array().unwrap().len(), 2);
    let first = w.json(&format!("{base}&limit=4")).await;
    assert_eq!(first["tickets"].as_array().unwrap().len(), 4);
    let after = first["next_after"].as_str().unwrap();
    let rest = w
        .json(&format!("{base}&limit=4&after={}", urlencode(after)))
        .await;
    assert_eq!(rest["tickets"].as_array().unwrap().len(), 3);
    assert!(rest["next_after"].is_null());
    assert_eq!(
        rest["tickets"][0]["ticket_id"], "1006",
        "no overlap, nothing skipped"
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn csv_exports_quote_fields_and_defuse_formulas() {
    let w = seeded().await;
    let (status, kind, body) = w
        .get(
            "/admin/v1/reports/ratings?from=2026-03-01&to=2026-03-31&rating=negative&format=csv",
            Some(&w.acme),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/csv"));
    let lines: Vec<&str> = body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "day,ticket_id,agent_id,kind,value,rating,comment,recorded_at,updated_at,source"
    );
    assert_eq!(lines.len(), 3);
    assert!(
        lines[1].starts_with("2026-03-05,1006,a-ben,nps,3,negative,slow,"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(r#","'=HYPERLINK(""x""), still broken","#),
        "{}",
        lines[2]
    );
    let (_, _, agents) = w
        .get(
            "/admin/v1/reports/agents?from=2026-03-01&to=2026-03-31&format=csv",
            Some(&w.acme),
        )
        .await;
    assert!(
        agents.starts_with("agent_id,agent_name,positive,"),
        "{agents}"
    );
    assert!(
        agents.contains("a-ann,Ann <script>alert(1)</script>,2,0,1,3,0.67,0,0,0,0,\r\n"),
        "{agents}"
    );
}

#[tokio::test]
async fn bad_report_requests_get_a_400_that_says_why() {
    let w = seeded().await;
    for (path, says) in [
        (
            "/admin/v1/reports/agents?from=2026-03-31&to=2026-03-01",
            "before",
        ),
        (
            "/admin/v1/reports/agents?from=2025-01-01&to=2026-03-01",
            "at most 400 days",
        ),
        (
            "/admin/v1/reports/agents?from=march&to=2026-03-01",
            "from must be a date",
        ),
        (
            "/admin/v1/reports/agents?from=2026-03-01",
            "both from and to",
        ),
        (
            "/admin/v1/reports/agents?form=2026-03-01",
            "this report takes from, to, agent, format",
        ),
        ("/admin/v1/reports/trend?period=year", "day, week or month"),
        (
            "/admin/v1/reports/ratings?rating=great",
            "positive, neutral or negative",
        ),
        ("/admin/v1/reports/ratings?limit=0", "limit"),
        ("/admin/v1/reports/agents?format=xml", "json or csv"),
    ] {
        let (status, _, body) = w.get(path, Some(&w.acme)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body.contains(says), "{path}: {body}");
    }
    let (status, _, _) = w.get("/admin/v1/reports/agents", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_report_page_is_self_contained_and_escapes_what_people_typed() {
    let w = seeded().await;
    let (status, kind, html) = w
        .get(
            "/admin/v1/reports/page?from=2026-03-01&to=2026-03-31",
            Some(&w.acme),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/html"));
    assert!(
        html.contains("Acme &lt;Support&gt; &amp; Co"),
        "the brand, escaped"
    );
    assert!(html.contains("Ann &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        !html.contains("<script"),
        "no markup from a name, and no script at all"
    );
    assert!(
        html.contains("<svg") && html.contains("<polyline"),
        "the trend chart is inline SVG"
    );
    for external in ["src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html.contains(external), "loads {external}");
    }
    assert!(html.contains(">67%<"), "Ann's satisfaction in the table");
    assert!(
        !html.contains("Follow-up cases"),
        "no case figures without cases"
    );
}

#[tokio::test]
async fn a_signed_link_opens_the_page_until_it_expires() {
    let w = seeded().await;
    let request = Request::post("/admin/v1/reports/links")
        .header("authorization", format!("Bearer {}", w.acme))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"minutes": 10}"#))
        .unwrap();
    let response = w.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let link: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let path = link["path"].as_str().unwrap().to_string();

    let (status, _, html) = w
        .get(&format!("{path}&from=2026-03-01&to=2026-03-31"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Acme &lt;Support&gt;"));

    // A link edited to name another tenant is refused.
    let token = path.split("link=").nth(1).unwrap();
    let (payload, mac) = token.split_once('.').unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let forged_payload = String::from_utf8(b64.decode(payload).unwrap())
        .unwrap()
        .replace("acme", "globex");
    let forged = format!("{}.{mac}", b64.encode(forged_payload));
    let (status, _, body) = w
        .get(&format!("/admin/v1/reports/page?link={forged}"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("not issued by us"), "{body}");
    let (status, _, _) = w.get("/admin/v1/reports/page", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The link does not open the JSON API.
    let (status, _, _) = w
        .get(&format!("/admin/v1/reports/agents?link={token}"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    w.clock.advance(Duration::minutes(11));
    let (status, _, body) = w.get(&path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("expired"), "{body}");
}

async fn send(w: &World, method: &str, path: &str, body: &str) -> (StatusCode, String) {
    let response = w
        .app
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", format!("Bearer {}", w.acme))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn account_block_limits_are_set_per_connector_and_checked() {
    let w = world().await;
    let path = "/admin/v1/connector/account-block-limits";
    let limits = r#"{"subject_chars": 40, "message_chars": 2000}"#;
    let (status, _) = send(&w, "PUT", path, limits).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no connector yet");
    let (status, body) = send(
        &w,
        "PUT",
        "/admin/v1/connector",
        r#"{"kind": "generic_webhook", "url": "https://erp.acme.example/hook"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = send(&w, "GET", path, "").await;
    assert!(
        body.contains(r#""subject_chars":32"#) && body.contains("connector default"),
        "{body}"
    );
    let (status, body) = send(
        &w,
        "PUT",
        path,
        r#"{"subject_chars": 3, "message_chars": 2000}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body.contains("account_block_limits.subject_chars"),
        "{body}"
    );
    let (status, _) = send(
        &w,
        "PUT",
        path,
        r#"{"subject_chars": 40, "message_chars": 2000, "x": 1}"#,
    )
    .await;
    assert!(status.is_client_error());
    let (status, _) = send(&w, "PUT", path, limits).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = send(&w, "GET", path, "").await;
    assert!(
        body.contains(r#""message_chars":2000"#) && body.contains("configured"),
        "{body}"
    );
    // Saving the connector again keeps its limits.
    send(
        &w,
        "PUT",
        "/admin/v1/connector",
        r#"{"kind": "generic_webhook", "url": "https://erp2.acme.example/hook"}"#,
    )
    .await;
    let (_, body) = send(&w, "GET", path, "").await;
    assert!(body.contains(r#""message_chars":2000"#), "{body}");
    let (status, _) = send(&w, "DELETE", path, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = send(&w, "GET", path, "").await;
    assert!(body.contains("connector default"), "{body}");
}

#[tokio::test]
async fn digest_recipients_are_a_setting_and_bad_addresses_are_refused() {
    let w = world().await;
    let (_, body) = send(&w, "GET", "/admin/v1/settings", "").await;
    let mut settings: serde_json::Value = serde_json::from_str(&body).unwrap();
    settings["digest_recipients"] = serde_json::json!(["lead@acme.example", "not an address"]);
    let (status, body) = send(&w, "PUT", "/admin/v1/settings", &settings.to_string()).await;
    assert!(status.is_client_error(), "{body}");
    assert!(body.contains("not an address"), "{body}");
    settings["digest_recipients"] = serde_json::json!(["lead@acme.example"]);
    let (status, _) = send(&w, "PUT", "/admin/v1/settings", &settings.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = send(&w, "GET", "/admin/v1/settings", "").await;
    assert!(body.contains("lead@acme.example"));
}
