//! Security cases through the local runner (docs/security.md): one tenant's tokens, links,
//! secrets and API key used on another tenant; expired links and replayed webhooks; markup in
//! every customer- and tenant-entered string; templates that try to escape their sandbox or
//! run forever; oversized and deeply nested bodies. Each gets a refusal a person can act on,
//! and the whole table is compared before and after to show nothing was written.
//!
//! The victim is the demo tenant (`demo`, with the sandbox helpdesk and its data); the other
//! tenant (`rival`) is provisioned beside it in the same store, as tenants share one table.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Duration, Utc};
use closedloop::runner::{self, RunnerConfig, Running};
use closedloop_core::automation;
use closedloop_core::domain::TenantSettings;
use closedloop_core::ids::{SurveyRequestId, TenantId};
use closedloop_core::ports::{Clock, ManualClock};
use closedloop_core::signature::sign_timestamped;
use closedloop_core::store::Item;
use closedloop_core::tenancy::{self, ProvisionedTenant};
use closedloop_core::tokens::RatingClaims;
use reqwest::Method;
use serde_json::{Value, json};

use common::{close_and_read_links, demo_config, link_value, links, outbox, temp_dir, token_field};

/// Markup that would run if any of it reached a page unescaped: a script element and an attribute
/// breakout into an event handler (56 characters: fits a brand name).
const XSS: &str = r#"<script>alert(1)</script>"><img src=x onerror=alert(2)>"#;
/// What must never appear in rendered HTML once `XSS` went in.
const EXECUTABLE: [&str; 2] = ["<script", "<img src=x"];
/// `XSS` as our escaping writes it (either escaper: `'` is not in it).
const ESCAPED: &str = "&lt;script&gt;alert(1)&lt;";

struct World {
    dir: PathBuf,
    running: Running,
    clock: Arc<ManualClock>,
    /// The other tenant, holding its own API key and webhook secret.
    rival: ProvisionedTenant,
}

async fn world() -> World {
    let dir = temp_dir();
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let running = runner::start(RunnerConfig {
        clock: clock.clone(),
        ..demo_config(&dir)
    })
    .await
    .unwrap();
    let rival = tenancy::provision_tenant(
        running.store(),
        TenantId::parse("rival").unwrap(),
        "Rival",
        TenantSettings::default(),
        clock.now(),
    )
    .await
    .unwrap();
    World {
        dir,
        running,
        clock,
        rival,
    }
}

impl World {
    fn base(&self) -> &str {
        &self.running.info.base_url
    }
    fn demo_key(&self) -> String {
        self.running.info.tenant.api_key.clone()
    }
    /// Every item in the table, ordered by key.
    fn table(&self) -> Vec<Item> {
        self.running.store.items()
    }
    /// Lets the relay finish, then checks the table is as `before`.
    async fn assert_nothing_written(&self, before: &[Item], what: &str) {
        self.running.drain().await.unwrap();
        let after = self.table();
        if after != before {
            let keys = |items: &[Item]| -> Vec<String> {
                items
                    .iter()
                    .map(|i| format!("{:?}", i.get("PK").zip(i.get("SK"))))
                    .collect()
            };
            let (b, a) = (keys(before), keys(&after));
            let added: Vec<_> = a.iter().filter(|k| !b.contains(k)).collect();
            let removed: Vec<_> = b.iter().filter(|k| !a.contains(k)).collect();
            panic!("{what} wrote to the table: added {added:?}, removed {removed:?} (or changed)");
        }
    }

    /// The admin API with `key`; the status and the raw body.
    async fn admin(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}/admin/v1{path}", self.base()))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
    async fn demo(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, text) = self.admin(&self.demo_key(), method, path, body).await;
        assert!((200..300).contains(&status), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A generic webhook for the demo tenant, signed with `secret` at `at`.
    async fn webhook(
        &self,
        tenant: &str,
        secret: &str,
        at: DateTime<Utc>,
        body: &str,
    ) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/webhooks/{tenant}/generic", self.base()))
            .header(
                "X-Closedloop-Signature",
                sign_timestamped(secret.as_bytes(), at.timestamp(), body.as_bytes()),
            )
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }
    async fn demo_webhook(&self, body: &Value) -> (u16, Value) {
        let secret = self.running.info.tenant.webhook_secret.clone();
        self.webhook("demo", &secret, self.clock.now(), &body.to_string())
            .await
    }

    async fn scheduler_tick(&self) {
        self.running
            .fire_schedule("SurveySchedulerFunction")
            .await
            .unwrap();
        self.running.drain().await.unwrap();
    }

    async fn add_demo_rule(&self, rule: Value) {
        let draft = closedloop_core::rules::parse_draft(rule.to_string().as_bytes()).unwrap();
        automation::create_rule(
            self.running.store(),
            &TenantId::parse("demo").unwrap(),
            draft,
            self.clock.now(),
        )
        .await
        .unwrap();
    }
}

fn customer() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
        .build()
        .unwrap()
}

/// A generic `ticket.closed` delivery.
fn closed_ticket(
    delivery: &str,
    id: &str,
    subject: &str,
    contact: Value,
    at: DateTime<Utc>,
) -> Value {
    json!({
        "delivery_id": delivery, "type": "ticket.closed", "occurred_at": at,
        "ticket": {"id": id, "subject": subject, "status": "closed",
            "agent": {"id": "a-alice", "name": "Alice Meyer", "email": "alice@demo.example",
                "email_notifications": true},
            "contact": contact, "updated_at": at}
    })
}

fn html_part(eml: &str) -> &str {
    eml.split("Content-Type: text/html").nth(1).unwrap_or("")
}

fn assert_inert(html: &str, what: &str) {
    for bad in EXECUTABLE {
        assert!(
            !html.contains(bad),
            "{what} carries executable markup {bad:?}:\n{html}"
        );
    }
    assert!(!html.contains("href=\"javascript:"), "{what}: {html}");
}

/// Rewrites the tenant inside a signed token's payload, keeping the signature.
fn with_tenant(token: &str, tenant: &str, field: usize) -> String {
    let (payload, mac) = token.split_once('.').unwrap();
    let payload = String::from_utf8(B64.decode(payload).unwrap()).unwrap();
    let mut parts: Vec<&str> = payload.split('|').collect();
    parts[field] = tenant;
    format!("{}.{mac}", B64.encode(parts.join("|")))
}

/// A fresh id of the same shape (a ULID keeps any prefix), which exists nowhere.
fn unknown_like(id: &str) -> String {
    let cut = id.len().saturating_sub(26);
    if ulid::Ulid::from_string(&id[cut..]).is_ok() {
        format!("{}{}", &id[..cut], ulid::Ulid::new())
    } else {
        format!("{id}zz")
    }
}

/// The demo tenant's data: a negative review with a comment that opens a case by a rule, a
/// failed action, a second rule, a close option, a webhook secret. Returns what identifies it.
struct DemoData {
    rule_ids: Vec<String>,
    review_id: String,
    case_id: String,
    failed_id: String,
    secret_id: String,
    option_id: String,
    /// Strings only the demo tenant's data holds.
    private: Vec<String>,
}

async fn demo_data(w: &World) -> DemoData {
    w.add_demo_rule(
        json!({"name": "Case for Globex-secret detractors", "trigger": "review_received",
        "conditions": {"all": [{"field": "rating.csat", "op": "is", "value": "negative"}]},
        "actions": [{"type": "open_case", "assignee": {"kind": "ticket_agent"}}]}),
    )
    .await;
    // The sandbox knows no ticket 9001, so the note fails for good: a dead letter.
    w.add_demo_rule(
        json!({"name": "Note on every close", "trigger": "ticket_closed",
        "actions": [{"type": "add_internal_note", "body": "Closed."}]}),
    )
    .await;
    let links = close_and_read_links(&w.running, &w.dir, "1001", "bob@northwind.example").await;
    let negative = links.iter().find(|l| link_value(l) == "negative").unwrap();
    let page = customer()
        .post(negative)
        .form(&[
            ("rating", "negative"),
            ("comment", "Demo-only complaint text"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    w.clock.advance(Duration::minutes(10));
    w.scheduler_tick().await;
    let contact = json!({"id": "c-zed", "name": "Zed Quill", "email": "zed@northwind.example"});
    let (status, answer) = w
        .demo_webhook(&closed_ticket(
            "d-9001",
            "9001",
            "Ghost ticket",
            contact,
            w.clock.now(),
        ))
        .await;
    assert_eq!(status, 202, "{answer}");
    w.running.drain().await.unwrap();

    let rules = w.demo(Method::GET, "/rules", None).await;
    // The case rule first: its name is the demo tenant's own text, looked for in answers.
    let mut rule_ids: Vec<(bool, String)> = rules
        .as_array()
        .or_else(|| rules["rules"].as_array())
        .unwrap()
        .iter()
        .map(|r| {
            let private = r["name"].as_str().unwrap().contains("Globex-secret");
            (!private, r["id"].as_str().unwrap().to_string())
        })
        .collect();
    rule_ids.sort();
    let rule_ids: Vec<String> = rule_ids.into_iter().map(|(_, id)| id).collect();
    let review = w.demo(Method::GET, "/tickets/1001/review", None).await;
    let cases = w.demo(Method::GET, "/cases", None).await;
    let failed = w.demo(Method::GET, "/failed-actions", None).await;
    let secrets = w
        .demo(Method::GET, "/webhook-sources/generic/secrets", None)
        .await;
    // Every tenant starts with the same default close options; this one is the demo's own.
    let option = w
        .demo(
            Method::POST,
            "/close-options",
            Some(json!({"label": "Globex-secret refund"})),
        )
        .await;
    let first_id = |v: &Value, list: &str| -> String {
        let items = v.as_array().or_else(|| v[list].as_array());
        items
            .and_then(|a| a.first())
            .and_then(|i| i["id"].as_str())
            .unwrap_or_else(|| panic!("no {list} in {v}"))
            .to_string()
    };
    DemoData {
        review_id: review["id"]
            .as_str()
            .or_else(|| review["survey_request_id"].as_str())
            .unwrap_or_else(|| panic!("review id in {review}"))
            .to_string(),
        case_id: first_id(&cases, "cases"),
        failed_id: first_id(&failed, "failed_actions"),
        secret_id: first_id(&secrets, "secrets"),
        option_id: option["id"]
            .as_str()
            .unwrap_or_else(|| panic!("an option id in {option}"))
            .to_string(),
        rule_ids,
        private: [
            "Printer on floor 2 jams",
            "bob@northwind.example",
            "Bob Stone",
            "Demo-only complaint text",
            "Globex-secret",
            "Ghost ticket",
            "team-lead@demo.example",
            "sandbox/helpdesk",
        ]
        .map(String::from)
        .to_vec(),
    }
}

#[tokio::test]
async fn another_tenants_api_key_reaches_none_of_the_tenants_data() {
    let w = world().await;
    let d = demo_data(&w).await;
    let rival = w.rival.api_key.clone();
    let before = w.table();

    // Every admin route that takes an id, with the demo tenant's ids. The answer must be the
    // one the rival gets for an id that exists nowhere: no oracle, no data.
    let rule = &d.rule_ids[0];
    let close = json!({"option_id": d.option_id});
    let id_routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/rules/{rule}"), None),
        (
            Method::PUT,
            format!("/rules/{rule}"),
            Some(
                json!({"name": "Hijacked", "trigger": "ticket_closed", "version": 1,
                "actions": [{"type": "reopen_ticket"}]}),
            ),
        ),
        (Method::DELETE, format!("/rules/{rule}"), None),
        (Method::POST, format!("/rules/{rule}/enable"), None),
        (Method::POST, format!("/rules/{rule}/disable"), None),
        (Method::GET, format!("/reviews/{}/audit", d.review_id), None),
        (Method::GET, "/tickets/1001/review".into(), None),
        (Method::GET, "/tickets/1001/audit".into(), None),
        (
            Method::POST,
            "/tickets/1001/rating-requests".into(),
            Some(json!({"requested_by": "a-alice"})),
        ),
        (Method::GET, format!("/cases/{}", d.case_id), None),
        (
            Method::POST,
            format!("/cases/{}/close", d.case_id),
            Some(close.clone()),
        ),
        (
            Method::POST,
            format!("/cases/{}/assign", d.case_id),
            Some(json!({"agent_id": null})),
        ),
        (
            Method::POST,
            format!("/cases/{}/reply", d.case_id),
            Some(json!({"body": "hello"})),
        ),
        (
            Method::POST,
            format!("/failed-actions/{}/retry", d.failed_id),
            None,
        ),
        (
            Method::DELETE,
            format!("/webhook-sources/generic/secrets/{}", d.secret_id),
            None,
        ),
        (
            Method::PATCH,
            format!("/close-options/{}", d.option_id),
            Some(json!({"label": "Hijacked"})),
        ),
    ];
    let ids = [
        rule.clone(),
        d.review_id.clone(),
        d.case_id.clone(),
        d.failed_id.clone(),
        d.secret_id.clone(),
        d.option_id.clone(),
    ];
    for (method, path, body) in &id_routes {
        let (status, text) = w.admin(&rival, method.clone(), path, body.clone()).await;
        // The same route with an id nobody has.
        let mut nowhere = path.replace("/tickets/1001/", "/tickets/nowhere-1001/");
        for id in &ids {
            nowhere = nowhere.replace(id.as_str(), &unknown_like(id));
        }
        let (status_nowhere, _) = w
            .admin(&rival, method.clone(), &nowhere, body.clone())
            .await;
        assert_eq!(
            status, status_nowhere,
            "{method} {path}: the demo tenant's id answers {status} ({text}), an unknown one {status_nowhere}"
        );
        assert!(
            status == 404 || (status == 200 && text == "[]"),
            "{method} {path}: refused as not found, not {status}: {text}"
        );
        if status == 404 {
            let error: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(error["error"]["code"], "not_found", "{text}");
        }
        for private in &d.private {
            assert!(
                !text.contains(private.as_str()),
                "{path} leaks {private}: {text}"
            );
        }
    }
    // Tenant-wide resources and listings answer with the rival's own data only.
    for path in [
        "/rules",
        "/cases",
        "/failed-actions",
        "/settings",
        "/connector",
        "/agents",
        "/close-options",
        "/webhook-sources/generic/secrets",
        "/templates/rating-request",
        "/reports/agents",
        "/reports/ratings",
        "/reports/cases",
        "/reports/page",
    ] {
        let (status, text) = w.admin(&rival, Method::GET, path, None).await;
        assert!(status < 500, "{path}: {status} {text}");
        for private in d.private.iter().chain(&ids) {
            assert!(
                !text.contains(private.as_str()),
                "{path} leaks {private}: {text}"
            );
        }
    }
    w.assert_nothing_written(&before, "the rival's requests")
        .await;

    // The demo tenant still sees all of it, unchanged.
    let rules = w.demo(Method::GET, &format!("/rules/{rule}"), None).await;
    assert!(rules.to_string().contains("Globex-secret"), "{rules}");
    let failed = w.demo(Method::GET, "/failed-actions", None).await;
    assert!(failed.to_string().contains(&d.failed_id));
    w.running.shutdown().await;
}

#[tokio::test]
async fn rating_and_report_links_work_only_for_the_tenant_and_time_they_were_made_for() {
    let w = world().await;
    let links = close_and_read_links(&w.running, &w.dir, "1001", "bob@northwind.example").await;
    let positive = links.iter().find(|l| link_value(l) == "positive").unwrap();
    let token = positive.rsplit('/').next().unwrap();
    let survey = SurveyRequestId::parse(&token_field(positive, 3)).unwrap();
    let keyring = w.running.functions.keyring.clone();
    let http = customer();
    let before = w.table();

    // The demo tenant's link, re-addressed to the rival: the signature no longer matches.
    let readdressed = with_tenant(token, "rival", 2);
    // A genuinely signed link naming the rival's tenant but the demo tenant's survey request
    // (links of all tenants share the keyring): the request is looked up inside the tenant
    // the link names, where it does not exist.
    let cross = keyring.sign(&RatingClaims {
        tenant: TenantId::parse("rival").unwrap(),
        survey_request: survey,
        value: "negative".into(),
        expires_at: w.clock.now() + Duration::days(30),
    });
    // The demo tenant's own link, expired yesterday.
    let expired = keyring.sign(&RatingClaims {
        tenant: TenantId::parse("demo").unwrap(),
        survey_request: survey,
        value: "negative".into(),
        expires_at: w.clock.now() - Duration::days(1),
    });
    for (token, status, says) in [
        (&readdressed, 400, "This link doesn&#39;t work"),
        (&cross, 404, "This survey is closed"),
        (&expired, 410, "This link has expired"),
    ] {
        let url = format!("{}/r/{token}", w.base());
        let page = http.get(&url).send().await.unwrap();
        assert_eq!(page.status().as_u16(), status, "GET {token}");
        let text = page.text().await.unwrap();
        assert!(
            text.contains(says) && text.contains("<!doctype html>"),
            "{text}"
        );
        assert!(
            !text.contains("Printer"),
            "nothing of the survey shows: {text}"
        );
        let posted = http
            .post(&url)
            .form(&[("rating", "negative"), ("comment", "sneaky")])
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status().as_u16(), status, "POST {token}");
        assert!(posted.text().await.unwrap().contains(says));
    }
    // The unsubscribe link of the demo tenant, re-addressed, unsubscribes no one.
    let request = outbox(&w.dir)
        .into_iter()
        .find(|m| m.contains("To: bob@northwind.example"))
        .unwrap();
    let unsubscribe = request
        .split_whitespace()
        .find(|w| w.contains("/u/"))
        .map(|w| {
            w.trim_matches(['"', '>', '<'])
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .expect("an unsubscribe link");
    let readdressed = with_tenant(&unsubscribe, "rival", 2);
    let answer = http
        .post(format!("{}/u/{readdressed}", w.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    w.assert_nothing_written(&before, "foreign and expired rating links")
        .await;

    // The rival's report link, re-addressed to the demo tenant, opens nothing.
    let (status, text) = w
        .admin(
            &w.rival.api_key,
            Method::POST,
            "/reports/links",
            Some(json!({"minutes": 15})),
        )
        .await;
    assert_eq!(status, 201, "{text}");
    let path = serde_json::from_str::<Value>(&text).unwrap()["path"]
        .as_str()
        .unwrap()
        .to_string();
    let rival_link = path.split("link=").nth(1).unwrap().to_string();
    let before = w.table();
    let open = |link: String| {
        let url = format!("{}/admin/v1/reports/page?link={link}", w.base());
        async move {
            let page = reqwest::get(url).await.unwrap();
            (page.status().as_u16(), page.text().await.unwrap())
        }
    };
    let (status, own) = open(rival_link.clone()).await;
    assert_eq!(status, 200, "the rival's own link works: {own}");
    assert!(own.contains("how customers rate us"), "{own}");
    let (status, page) = open(with_tenant(&rival_link, "demo", 1)).await;
    assert_eq!(status, 401, "{page}");
    assert!(
        !page.contains("Support:") && !page.contains("Alice"),
        "{page}"
    );
    assert!(page.contains("<p>"), "a page a person reads: {page}");
    // Sixteen minutes later the rival's own link has expired.
    w.clock.advance(Duration::minutes(16));
    let (status, page) = open(rival_link).await;
    assert_eq!(status, 401, "{page}");
    assert!(page.to_lowercase().contains("expired"), "{page}");
    w.assert_nothing_written(&before, "foreign and expired report links")
        .await;
    w.running.shutdown().await;
}

#[tokio::test]
async fn replayed_stale_and_foreign_webhooks_have_no_effect() {
    let w = world().await;
    let contact = json!({"id": "c-yve", "name": "Yve Stone", "email": "yve@northwind.example"});
    let delivery = closed_ticket("replay-1", "7001", "Fan noise", contact, w.clock.now());
    let body = delivery.to_string();
    let secret = w.running.info.tenant.webhook_secret.clone();
    let before = w.table();

    // The rival's secret on the demo tenant's URL, and the demo tenant's secret on the
    // rival's URL: both refused as unsigned, neither tenant changes.
    for (tenant, key) in [("demo", &w.rival.webhook_secret), ("rival", &secret)] {
        let (status, answer) = w.webhook(tenant, key, w.clock.now(), &body).await;
        assert_eq!(status, 401, "{tenant}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_signature");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("secret"),
            "{answer}"
        );
    }
    // Signed six minutes ago (a captured delivery sent again later).
    let stale = w.clock.now() - Duration::minutes(6);
    let (status, answer) = w.webhook("demo", &secret, stale, &body).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than 5 minutes"),
        "{answer}"
    );
    w.assert_nothing_written(&before, "foreign and stale webhooks")
        .await;
    assert!(outbox(&w.dir).is_empty());

    // The genuine delivery, then the very same signed request again a minute later.
    let at = w.clock.now();
    let (status, answer) = w.webhook("demo", &secret, at, &body).await;
    assert_eq!(status, 202, "{answer}");
    w.running.drain().await.unwrap();
    let after_first = w.table();
    let mails = outbox(&w.dir).len();
    w.clock.advance(Duration::minutes(1));
    let (status, answer) = w.webhook("demo", &secret, at, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "duplicate");
    w.assert_nothing_written(&after_first, "the replay").await;
    let requests = outbox(&w.dir)
        .into_iter()
        .filter(|m| m.contains("To: yve@northwind.example"))
        .count();
    assert_eq!(requests, 1, "one rating request");
    assert_eq!(outbox(&w.dir).len(), mails);
    w.running.shutdown().await;
}

#[tokio::test]
async fn markup_in_comments_names_and_subjects_never_runs_where_it_is_shown() {
    let w = world().await;
    let mut settings = w.demo(Method::GET, "/settings", None).await;
    settings["brand_name"] = json!(XSS);
    settings["survey_kind"] = json!("nps");
    settings["change_window_minutes"] = json!(0);
    settings["digest_recipients"] = json!(["lead@demo.example"]);
    w.demo(Method::PUT, "/settings", Some(settings)).await;
    // A rule that mails the comment, with the subject in its subject, and notes it.
    w.add_demo_rule(json!({"name": "Mail every answer", "trigger": "review_received",
        "actions": [
            {"type": "send_email", "to": ["lead@demo.example"],
             "subject": "Review: {{ ticket.subject }}", "body": "{{ customer.name }} said: {{ comment }}"},
            {"type": "add_internal_note", "body": "{{ customer.name }} said: {{ comment }}"}]}))
        .await;

    // The helpdesk sends a ticket whose subject and contact and agent names carry markup
    // and a header injection.
    let subject = format!("{XSS}\r\nBcc: evil@attacker.example");
    let mut delivery = closed_ticket(
        "xss-1",
        "1001",
        &subject,
        json!({"id": "c-bob", "name": XSS, "email": "bob@northwind.example",
            "account": {"id": "acc-northwind", "name": XSS}}),
        w.clock.now(),
    );
    delivery["ticket"]["agent"]["name"] = json!(XSS);
    let (status, answer) = w.demo_webhook(&delivery).await;
    assert_eq!(status, 202, "{answer}");
    w.running.drain().await.unwrap();

    // The rating-request email.
    let request = outbox(&w.dir)
        .into_iter()
        .find(|m| m.contains("To: bob@northwind.example"))
        .expect("a rating request");
    let headers = |eml: &str| eml.split("\r\n\r\n").next().unwrap().to_string();
    assert!(
        !headers(&request).lines().any(|l| l.starts_with("Bcc:")),
        "no header smuggled in: {request}"
    );
    let html = html_part(&request);
    assert_inert(html, "the rating-request email");
    assert!(
        html.contains(ESCAPED),
        "the subject and names are shown, escaped: {html}"
    );

    // The rating page after the click, and after posting a comment with markup.
    let three = links(request.split("text/html").next().unwrap())
        .into_iter()
        .find(|l| link_value(l) == "3")
        .unwrap();
    let http = customer();
    let page = http.get(&three).send().await.unwrap().text().await.unwrap();
    assert_inert(&page, "the rating page");
    assert!(page.contains(ESCAPED), "{page}");
    let comment = format!("{XSS} </textarea><script>alert(3)</script> javascript:alert(4)");
    let page = http
        .post(&three)
        .form(&[("rating", "3"), ("comment", comment.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert_inert(&page, "the comment page");
    assert!(!page.contains("</textarea><script>"), "{page}");
    assert!(page.contains("&lt;&#x2f;textarea&gt;") || page.contains("&lt;/textarea&gt;"));
    w.scheduler_tick().await;

    // The rule's email is plain text (no HTML part to run in), its subject one line; the note
    // goes to the helpdesk as the plain text the connector documents.
    let mail = outbox(&w.dir)
        .into_iter()
        .find(|m| m.contains("Subject: Review:"))
        .expect("the rule's email");
    assert!(!mail.contains("text/html"), "{mail}");
    assert!(
        !headers(&mail).lines().any(|l| l.starts_with("Bcc:")),
        "{mail}"
    );
    let calls: Value = reqwest::get(format!("{}/sandbox/helpdesk/calls", w.base()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let note = calls
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["operation"] == "add_internal_note")
        .expect("the note");
    assert_eq!(note["body"], format!("{XSS} said: {comment}"), "{note}");

    // The detractor digest's HTML part.
    w.clock.advance(Duration::hours(20));
    w.running
        .fire_schedule("DetractorSweepFunction")
        .await
        .unwrap();
    w.running.drain().await.unwrap();
    let digest = outbox(&w.dir)
        .into_iter()
        .find(|m| m.contains("Subject: Detractor flags"))
        .expect("a digest");
    let html = html_part(&digest);
    assert_inert(html, "the digest");
    assert!(
        html.contains(ESCAPED),
        "the comment is in the digest, escaped: {html}"
    );

    // The report page (brand and agent name).
    let (status, page) = w
        .admin(&w.demo_key(), Method::GET, "/reports/page", None)
        .await;
    assert_eq!(status, 200);
    assert_inert(&page, "the report page");
    assert!(page.contains(ESCAPED), "{page}");
    w.running.shutdown().await;
}

/// Rating-request templates a tenant saves, with the parts every send needs, around `body`.
fn template_with(body: &str) -> Value {
    let needed = "{% for choice in choices %}{{ choice.url }}{% endfor %} {{ unsubscribe_url }}";
    json!({"subject": "Rate us", "text": format!("{body} {needed}"), "html": format!("<p>{body}</p> {needed}")})
}

#[tokio::test]
async fn templates_that_reach_outside_or_run_away_are_refused_and_nothing_is_saved() {
    let w = world().await;
    let key = w.demo_key();
    let saved_before = w.demo(Method::GET, "/templates/rating-request", None).await;
    let before = w.table();
    let nested = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
    let cases: Vec<(String, &str)> = vec![
        ("{% include 'secrets.txt' %}".into(), "include"),
        ("{% import 'x.html' as x %}".into(), "import"),
        ("{% extends '/etc/passwd' %}".into(), "extends"),
        ("{% for i in range(1000000000) %}x{% endfor %}".into(), "range"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
                .into(),
            "fuel",
        ),
        (
            "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}".into(),
            "macro",
        ),
        ("{{ 'x' * 99999999 }}".into(), "*"),
        (
            format!("{{% set a = 'xx' %}}{}{{{{ a }}}}", "{% set a = a ~ a %}".repeat(40)),
            "set",
        ),
        (
            "{{ 'x'|replace('x', 'xxxxxxxxxx')|replace('x', 'xxxxxxxxxx')|replace('x', 'xxxxxxxxxx') }}"
                .into(),
            "replace",
        ),
        (nested, "recursion"),
        ("x".repeat(70_000), "limit"),
    ];
    for (body, names) in &cases {
        let shown: String = body.chars().take(60).collect();
        let (status, text) = w
            .admin(
                &key,
                Method::PUT,
                "/templates/rating-request",
                Some(template_with(body)),
            )
            .await;
        assert_eq!(status, 422, "{shown}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["code"], "invalid_template", "{text}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(names),
            "{shown}: the message names the problem ({names}): {message}"
        );
        // A rule's email template is refused the same way.
        let rule = json!({"name": "r", "trigger": "ticket_closed",
            "actions": [{"type": "send_email", "to": ["lead@demo.example"], "subject": "s", "body": body}]});
        let (status, text) = w.admin(&key, Method::POST, "/rules", Some(rule)).await;
        assert_eq!(status, 400, "rule with {shown}: {text}");
        assert!(text.contains("invalid_rule"), "{text}");
    }
    w.assert_nothing_written(&before, "refused templates").await;
    assert_eq!(
        w.demo(Method::GET, "/templates/rating-request", None).await,
        saved_before
    );

    // Names a template might hope hold the environment or the configuration render nothing.
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let snoop = "{{ env }}{{ environ }}{{ config }}{{ self }}{{ HOME }}{{ settings }}";
    let (status, text) = w
        .admin(
            &key,
            Method::POST,
            "/templates/rating-request/preview",
            Some(template_with(snoop)),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(&home), "the environment leaks: {text}");
    assert!(
        !text.contains("TOKEN") && !text.contains("api_key"),
        "{text}"
    );
    w.running.shutdown().await;
}

#[tokio::test]
async fn oversized_and_deeply_nested_bodies_get_a_clear_4xx_and_write_nothing() {
    let w = world().await;
    let links = close_and_read_links(&w.running, &w.dir, "1001", "bob@northwind.example").await;
    let positive = links
        .iter()
        .find(|l| link_value(l) == "positive")
        .unwrap()
        .clone();
    let key = w.demo_key();
    let before = w.table();
    let secret = w.running.info.tenant.webhook_secret.clone();
    let http = reqwest::Client::new();

    // Webhooks: a body over 256 KB, correctly signed.
    let big = format!(
        r#"{{"delivery_id":"big","type":"ticket.closed","pad":"{}"}}"#,
        "x".repeat(300 * 1024)
    );
    let (status, answer) = w.webhook("demo", &secret, w.clock.now(), &big).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "too_large");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("KB")
            || answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("bytes"),
        "{answer}"
    );

    // The admin API: settings and a rule, 3 MB each.
    let pad = "x".repeat(3 << 20);
    for path in ["/settings", "/rules"] {
        let response = http
            .request(
                if path == "/settings" {
                    Method::PUT
                } else {
                    Method::POST
                },
                format!("{}/admin/v1{path}", w.base()),
            )
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(format!(r#"{{"name":"{pad}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413, "{path}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "too_large", "{answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains("MB"),
            "the limit is named: {answer}"
        );
    }

    // The rating page's form: a 100 KB comment (the form takes 64 KB).
    let page = customer()
        .post(&positive)
        .form(&[("rating", "positive"), ("comment", &"y".repeat(100 * 1024))])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 413);
    let text = page.text().await.unwrap();
    assert!(
        text.contains("<!doctype html>") && text.contains("too long"),
        "a page the customer understands: {text}"
    );

    // JSON nested 100,000 deep: refused, no crash.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for path in ["/settings", "/rules", "/templates/rating-request"] {
        let response = http
            .request(
                if path == "/rules" {
                    Method::POST
                } else {
                    Method::PUT
                },
                format!("{}/admin/v1{path}", w.base()),
            )
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(deep.clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert!((400..500).contains(&status), "{path}: {status} {answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    let (status, answer) = w.webhook("demo", &secret, w.clock.now(), &deep).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_body");
    w.assert_nothing_written(&before, "oversized and nested bodies")
        .await;
    // The server still answers, and the longest comment a customer may write fits the form
    // even in four-byte characters.
    let health = reqwest::get(format!("{}/admin/v1/health", w.base()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let longest = "\u{1F600}".repeat(5000);
    let page = customer()
        .post(&positive)
        .form(&[("rating", "positive"), ("comment", longest.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "{}", page.text().await.unwrap());
    w.running.shutdown().await;
}
