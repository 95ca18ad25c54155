//! The product's whole scenario on the stack deployed into ministack (scripts/deploy-ministack.sh,
//! `AUTH=true`): through API Gateway, the real Lambda binaries, the table's stream, EventBridge
//! rules, DynamoDB and SES, with the tenant's helpdesk a local mock on 127.0.0.1 (ministack runs
//! the bootstraps natively, so the `actions` function reaches it).
//!
//! ticket.closed webhook (webhooks) → outbox → stream (event-relay) → bus → survey-scheduler →
//! SES rating request → the customer clicks "negative" and comments (rating-link) →
//! review.received → rules → action.requested → actions: internal note through the generic
//! webhook connector, and a case with its SLA deadline, read back through the admin API
//! (admin-api). The two sweeps are invoked once each. Every function runs under its own role.
#![cfg(feature = "emulators")]

mod common;

use std::time::{Duration, Instant};

use closedloop_aws::store::DynamoStore;
use closedloop_core::domain::TenantSettings;
use closedloop_core::ids::TenantId;
use closedloop_core::ports::{Clock, SystemClock};
use closedloop_core::signature::{hmac_sha256_parts, sign_timestamped};
use closedloop_core::tenancy;
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with scripts/test.sh, which deploys the stack into ministack")
    })
}

async fn ministack_sdk() -> aws_config::SdkConfig {
    common::emulator_sdk(&env("CLOSEDLOOP_MINISTACK_URL")).await
}

/// Every sent message the emulator reports, as JSON. ministack answers
/// `{"messages": {"<account>": [ ... ]}}`; any object with a subject-like field counts.
async fn sent_mail(http: &reqwest::Client) -> Vec<Value> {
    fn collect(value: &Value, found: &mut Vec<Value>) {
        match value {
            Value::Array(items) => items.iter().for_each(|v| collect(v, found)),
            Value::Object(map) => {
                if map.keys().any(|k| k.eq_ignore_ascii_case("subject")) {
                    found.push(value.clone());
                } else {
                    map.values().for_each(|v| collect(v, found));
                }
            }
            _ => {}
        }
    }
    let url = format!(
        "{}/_ministack/ses/messages",
        env("CLOSEDLOOP_MINISTACK_URL")
    );
    let body: Value = http.get(url).send().await.unwrap().json().await.unwrap();
    let mut found = Vec::new();
    collect(&body, &mut found);
    found
}

/// Polls `probe` every 500 ms until it gives a value, or fails naming `what` after `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(found) = probe().await {
            eprintln!(
                "deployed stack: {what} after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return found;
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not seen within {} s (the chain is asynchronous; see the functions' logs \
             with `sam logs` or ministack's log in .emulators/)",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The deployed admin API with the tenant's key: status and JSON answer (`null` if none).
struct Admin {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Admin {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/admin/v1{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// A call that must answer `want`; the answer's JSON.
    async fn expect(&self, want: u16, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert_eq!(status, want, "{method} /admin/v1{path}: {answer}");
        answer
    }
}

/// The rating links in a message's text: `(value the token records, url)`.
fn rating_links(text: &str) -> Vec<(String, String)> {
    use base64::Engine;
    text.split_whitespace()
        .filter(|w| w.starts_with("http") && w.contains("/r/"))
        .map(|w| w.trim_end_matches(['"', '>', ')']).to_string())
        .map(|url| {
            // The token's payload is `v1|kid|tenant|survey|value|expiry`.
            let token = url.rsplit('/').next().unwrap_or_default();
            let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap_or_default())
                .unwrap_or_default();
            let payload = String::from_utf8_lossy(&payload).into_owned();
            (
                payload.split('|').nth(4).unwrap_or_default().to_string(),
                url,
            )
        })
        .collect()
}

/// A customer's browser: requests without a browser's user agent count as mail scanners.
fn customer() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
        .build()
        .unwrap()
}

/// The generic webhook connector's documented signature (docs/webhooks.md, "Outgoing"):
/// `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, recomputed here from the shared secret.
fn assert_signed(header: Option<&str>, secret: &str, body: &[u8]) {
    let header = header.expect("the connector's call carries X-Closedloop-Signature");
    let (mut t, mut v1) = (None, None);
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = Some(value.to_string()),
            Some(("v1", value)) => v1 = Some(value.to_string()),
            _ => {}
        }
    }
    let (t, v1) = (
        t.expect("t= in the signature"),
        v1.expect("v1= in the signature"),
    );
    let age = SystemClock.now().timestamp() - t.parse::<i64>().expect("t is unix seconds");
    assert!(age.abs() < 300, "signature timestamp {age} s away");
    let mac = hmac_sha256_parts(secret.as_bytes(), &[t.as_bytes(), b".", body]);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        v1, hex,
        "the signature is the HMAC of \"<t>.<body>\" with the connector's secret"
    );
}

#[tokio::test]
async fn a_negative_rating_on_the_deployed_stack_adds_a_note_in_the_helpdesk_and_opens_a_case() {
    let started = Instant::now();
    let api = env("CLOSEDLOOP_STACK_API_URL");
    let sdk = ministack_sdk().await;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        env("CLOSEDLOOP_STACK_TABLE"),
    );
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let tenant = TenantId::parse(&format!("t{}", &run[..12])).unwrap();
    // The same call `closedloop tenant provision` makes (docs/operations.md).
    let provisioned = tenancy::provision_tenant(
        &store,
        tenant.clone(),
        "Deployed",
        TenantSettings::default(),
        SystemClock.now(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let admin = Admin {
        http: http.clone(),
        base: api.clone(),
        key: provisioned.api_key.clone(),
    };

    // The tenant's helpdesk: a local mock of a generic-webhook receiver.
    let helpdesk = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/closedloop"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&helpdesk)
        .await;

    // ---- the admin configures the tenant through the deployed admin API
    let keyless = http
        .get(format!("{api}/admin/v1/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        keyless.status(),
        401,
        "the admin API refuses a request without a key"
    );
    let mut settings = admin.expect(200, Method::GET, "/settings", None).await;
    // 0: a posted comment settles the review at once (a click alone waits out the scanner guard).
    settings["change_window_minutes"] = json!(0);
    admin
        .expect(200, Method::PUT, "/settings", Some(settings))
        .await;
    admin
        .expect(
            200,
            Method::PUT,
            "/sla",
            Some(json!({"enabled": true, "close_within_hours": 8})),
        )
        .await;
    let connector_secret = format!("helpdesk-secret-{run}");
    let (status, answer) = admin
        .call(
            Method::PUT,
            "/connector",
            Some(
                json!({"kind": "generic_webhook", "url": format!("{}/closedloop", helpdesk.uri()),
                        "secret": connector_secret}),
            ),
        )
        .await;
    assert!(
        status == 200 || status == 201,
        "PUT /connector: {status} {answer}"
    );
    let connector = admin.expect(200, Method::GET, "/connector", None).await;
    assert_eq!(connector["kind"], "generic_webhook", "{connector}");
    assert_eq!(connector["secret_set"], true, "{connector}");
    assert!(
        !connector.to_string().contains(&connector_secret),
        "the secret is never shown: {connector}"
    );
    let rule = admin
        .expect(
            201,
            Method::POST,
            "/rules",
            Some(json!({
                "name": "Follow up bad ratings",
                "trigger": "review_received",
                "conditions": {"all": [{"field": "rating.csat", "op": "is", "value": "negative"}]},
                "actions": [
                    {"type": "add_internal_note",
                     "body": "{{ customer.name }} rated this ticket {{ rating.value }}. Comment: {{ comment }}"},
                    {"type": "open_case", "assignee": {"kind": "ticket_agent"}}
                ]
            })),
        )
        .await;
    let rule_id = rule["id"].as_str().expect("the rule's id").to_string();

    // ---- the helpdesk closes a ticket: a signed ticket.closed webhook
    let subject = format!("Deployed stack {run}");
    let body = json!({
        "delivery_id": format!("d-{run}"), "type": "ticket.closed", "occurred_at": SystemClock.now(),
        "ticket": { "id": "4711", "subject": subject, "status": "closed",
            "agent": { "id": "a1", "name": "Alice Meyer", "email": "alice@acme.example", "email_notifications": true },
            "contact": { "id": "c1", "name": "Bob Stone", "email": "bob@customer.example" },
            "updated_at": SystemClock.now() }
    })
    .to_string();
    let signature = sign_timestamped(
        provisioned.webhook_secret.as_bytes(),
        SystemClock.now().timestamp(),
        body.as_bytes(),
    );
    let url = format!("{api}/webhooks/{}/generic", tenant.as_str());
    let response = http
        .post(&url)
        .header("content-type", "application/json")
        .header("X-Closedloop-Signature", &signature)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(status, 202, "{}", response.text().await.unwrap_or_default());
    // An unsigned delivery is refused by the deployed function too.
    let refused = http
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // ---- stream → event-relay → bus → survey-scheduler → SES: the rating request
    let request = wait_for("the rating request in SES", Duration::from_secs(90), || {
        let http = http.clone();
        let subject = subject.clone();
        async move {
            let ours: Vec<_> = sent_mail(&http)
                .await
                .into_iter()
                .filter(|m| m.to_string().contains(&subject))
                .collect();
            (!ours.is_empty()).then_some(ours)
        }
    })
    .await;
    assert_eq!(request.len(), 1, "exactly one rating request: {request:?}");
    let request = &request[0];
    assert!(
        request.to_string().contains("bob@customer.example"),
        "sent to the ticket's contact: {request}"
    );
    let text = request
        .as_object()
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("bodytext"))
                .and_then(|(_, v)| v.as_str())
        })
        .unwrap_or_else(|| panic!("a text body in {request}"));
    let links = rating_links(text);
    let mut values: Vec<&str> = links.iter().map(|(v, _)| v.as_str()).collect();
    values.sort_unstable();
    assert_eq!(
        values,
        ["negative", "neutral", "positive"],
        "CSAT offers three links: {text}"
    );
    let negative = &links.iter().find(|(v, _)| v == "negative").unwrap().1;
    assert!(
        negative.starts_with(&api),
        "the link points at the deployed API ({api}): {negative}"
    );

    // ---- the customer clicks "negative" in the mail and writes why
    let browser = customer();
    let page = browser.get(negative).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("<form"), "the comment page: {page}");
    let comment = format!("Printer still jams {run}");
    let posted = browser
        .post(negative)
        .form(&[("rating", "negative"), ("comment", comment.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200, "{}", posted.text().await.unwrap());

    // ---- review.received → rules → actions → the helpdesk gets one signed internal note
    let note = wait_for(
        "the internal note at the mock helpdesk",
        Duration::from_secs(90),
        || {
            let helpdesk = &helpdesk;
            async move {
                let received = helpdesk.received_requests().await.unwrap_or_default();
                received.into_iter().find(|r| {
                    serde_json::from_slice::<Value>(&r.body)
                        .is_ok_and(|b| b["operation"] == "add_internal_note")
                })
            }
        },
    )
    .await;
    let header = |name: &str| {
        note.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_signed(
        header("x-closedloop-signature").as_deref(),
        &connector_secret,
        &note.body,
    );
    let note_body: Value = serde_json::from_slice(&note.body).unwrap();
    assert_eq!(note_body["tenant_id"], tenant.as_str(), "{note_body}");
    assert_eq!(note_body["ticket_id"], "4711", "{note_body}");
    assert_eq!(
        note_body["body"],
        format!("Bob Stone rated this ticket negative. Comment: {comment}"),
        "the rule's note template, rendered with the review"
    );
    let key = note_body["idempotency_key"]
        .as_str()
        .unwrap_or_else(|| panic!("a change carries idempotency_key: {note_body}"));
    assert_eq!(
        header("idempotency-key").as_deref(),
        Some(key),
        "the header and the body carry the same key"
    );

    // ---- the case, read back through the admin API, with its SLA deadline
    let case = wait_for("the case in GET /cases", Duration::from_secs(60), || {
        let admin = &admin;
        async move {
            let (status, answer) = admin.call(Method::GET, "/cases", None).await;
            assert_eq!(status, 200, "GET /cases: {answer}");
            answer["cases"].as_array().and_then(|c| c.first()).cloned()
        }
    })
    .await;
    assert_eq!(case["status"], "open", "{case}");
    assert_eq!(case["ticket_id"], "4711", "{case}");
    assert_eq!(case["assignee"], "a1", "the ticket's agent: {case}");
    assert_eq!(case["opened_by_rule"], rule_id.as_str(), "{case}");
    let instant = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(case[field].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{field} of {case}: {e}"))
    };
    // No business hours set: the 8 SLA hours run around the clock.
    assert_eq!(
        instant("sla_deadline") - instant("opened_at"),
        chrono::Duration::hours(8),
        "{case}"
    );
    let review = admin
        .expect(200, Method::GET, "/tickets/4711/review", None)
        .await;
    assert!(
        review.to_string().contains(&comment) && review.to_string().contains("negative"),
        "the stored review: {review}"
    );

    // ---- the two sweeps, invoked as their schedules would (under their own roles)
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    for (function, fields) in [
        (
            env("CLOSEDLOOP_STACK_SLA_SWEEP_FUNCTION"),
            &["items_read", "changed"][..],
        ),
        (
            env("CLOSEDLOOP_STACK_DETRACTOR_SWEEP_FUNCTION"),
            &["accounts_read", "flagged"][..],
        ),
    ] {
        let out = lambda
            .invoke()
            .function_name(&function)
            .payload(aws_sdk_lambda::primitives::Blob::new(
                json!({"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}})
                    .to_string(),
            ))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke {function}: {e:?}"));
        let payload = out
            .payload()
            .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
            .unwrap_or_default();
        assert_eq!(
            out.function_error(),
            None,
            "{function} failed (a missing IAM permission shows here): {payload}"
        );
        let summary: Value = serde_json::from_str(&payload).unwrap_or_default();
        for field in fields {
            assert!(
                summary[field].is_u64(),
                "{function} reports {field}: {payload}"
            );
        }
    }

    // ---- exactly one effect: nothing arrives twice once the chain is quiet
    tokio::time::sleep(Duration::from_secs(3)).await;
    let notes = helpdesk
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| {
            serde_json::from_slice::<Value>(&r.body)
                .is_ok_and(|b| b["operation"] == "add_internal_note")
        })
        .count();
    assert_eq!(notes, 1, "one internal note");
    let (_, cases) = admin.call(Method::GET, "/cases", None).await;
    assert_eq!(
        cases["cases"].as_array().map(Vec::len),
        Some(1),
        "one case: {cases}"
    );
    let requests = sent_mail(&http)
        .await
        .into_iter()
        .filter(|m| m.to_string().contains(&subject))
        .count();
    assert_eq!(requests, 1, "one rating request");
    eprintln!(
        "deployed stack: the scenario took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
