//! The generic connector and the webhook sender against a local HTTP server that asserts the
//! request shapes `docs/webhooks.md` ("Outgoing") documents: method, path, headers, the exact
//! JSON body, and a signature checked the way a receiver would (written out here from the
//! docs, not borrowed from the code under test).

use std::time::Duration;

use closedloop_connectors::{
    GenericWebhookConnector, HttpWebhookSender, StoreConnectorDirectory, http_client,
};
use closedloop_core::domain::{Email, TenantSettings};
use closedloop_core::helpdesk::{
    self, AccountBlock, ConnectorDirectory, ConnectorError, ConnectorKind, HelpdeskConnector,
    HelpdeskOperation, NewTicket, OutgoingWebhook, Requester, WebhookSender,
};
use closedloop_core::ids::{AccountId, AgentId, TenantId, TicketId};
use closedloop_core::tenancy;
use closedloop_embedded::JournalStore;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

const SECRET: &str = "connector-secret-0123456789";

/// `X-Closedloop-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, with `t`
/// within five minutes of now.
struct SignedWith(&'static str);

impl Match for SignedWith {
    fn matches(&self, request: &Request) -> bool {
        let Some(value) = request
            .headers
            .get("x-closedloop-signature")
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let mut t = None;
        let mut v1 = None;
        for part in value.split(',') {
            match part.split_once('=') {
                Some(("t", x)) => t = x.parse::<i64>().ok(),
                Some(("v1", x)) => v1 = hex::decode(x).ok(),
                _ => {}
            }
        }
        let (Some(t), Some(v1)) = (t, v1) else {
            return false;
        };
        if (chrono::Utc::now().timestamp() - t).abs() > 300 {
            return false;
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(&request.body);
        mac.verify_slice(&v1).is_ok()
    }
}

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn ticket() -> TicketId {
    TicketId::parse("1001").unwrap()
}

fn connector(server: &MockServer) -> GenericWebhookConnector {
    GenericWebhookConnector::new(
        http_client(Duration::from_secs(2)),
        tenant(),
        format!("{}/closedloop/calls", server.uri()),
        SECRET.into(),
    )
}

/// A call that must arrive exactly once, signed, with exactly this body.
async fn expect_call(server: &MockServer, body: serde_json::Value, answer: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/closedloop/calls"))
        .and(header("content-type", "application/json"))
        .and(SignedWith(SECRET))
        .and(body_json(body))
        .respond_with(answer)
        .expect(1)
        .mount(server)
        .await;
}

fn ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"ok": true}))
}

#[tokio::test]
async fn every_change_is_a_signed_post_of_its_documented_body_with_an_idempotency_key() {
    let server = MockServer::start().await;
    let c = connector(&server);
    let base = |op: &str| json!({"operation": op, "tenant_id": "acme", "idempotency_key": "k1"});
    let with = |op: &str, fields: serde_json::Value| {
        let mut body = base(op);
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        body
    };
    expect_call(
        &server,
        with(
            "add_internal_note",
            json!({"ticket_id": "1001", "body": "Customer unhappy"}),
        ),
        ok(),
    )
    .await;
    expect_call(
        &server,
        with(
            "change_ticket_type",
            json!({"ticket_id": "1001", "ticket_type": "incident"}),
        ),
        ok(),
    )
    .await;
    expect_call(
        &server,
        with("reopen_ticket", json!({"ticket_id": "1001"})),
        ok(),
    )
    .await;
    expect_call(
        &server,
        with(
            "set_ticket_status",
            json!({"ticket_id": "1001", "status": "pending"}),
        ),
        ok(),
    )
    .await;
    expect_call(
        &server,
        with(
            "assign_agent",
            json!({"ticket_id": "1001", "agent_id": "a-alice"}),
        ),
        ok(),
    )
    .await;
    expect_call(
        &server,
        with("add_tag", json!({"ticket_id": "1001", "tag": "vip"})),
        ok(),
    )
    .await;
    expect_call(
        &server,
        with(
            "public_reply",
            json!({"ticket_id": "1001", "body": "Sorry about that"}),
        ),
        ok(),
    )
    .await;
    expect_call(
        &server,
        with(
            "upsert_account_block",
            json!({"account_id": "acc-1", "block": {"detractor": true, "subject": "NPS detractor",
                "latest_score": 3, "text": "Latest NPS: 3 (detractor)"}}),
        ),
        ok(),
    )
    .await;
    expect_call(
        &server,
        with("remove_account_block", json!({"account_id": "acc-1"})),
        ok(),
    )
    .await;

    let t = ticket();
    c.add_internal_note("k1", &t, "Customer unhappy")
        .await
        .unwrap();
    c.change_ticket_type("k1", &t, "incident").await.unwrap();
    c.reopen_ticket("k1", &t).await.unwrap();
    c.set_ticket_status("k1", &t, "pending").await.unwrap();
    c.assign_agent("k1", &t, &AgentId::parse("a-alice").unwrap())
        .await
        .unwrap();
    c.add_tag("k1", &t, "vip").await.unwrap();
    c.public_reply("k1", &t, "Sorry about that").await.unwrap();
    let account = AccountId::parse("acc-1").unwrap();
    let block = AccountBlock {
        detractor: true,
        subject: "NPS detractor".into(),
        latest_score: Some(3),
        answered_at: None,
        text: "Latest NPS: 3 (detractor)".into(),
    };
    c.upsert_account_block("k1", &account, &block)
        .await
        .unwrap();
    c.remove_account_block("k1", &account).await.unwrap();
    // Every change carried the key as a header too.
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 9);
    assert!(
        requests
            .iter()
            .all(|r| r.headers.get("idempotency-key").unwrap() == "k1")
    );
}

#[tokio::test]
async fn reads_and_creates_return_what_the_receiver_answers() {
    let server = MockServer::start().await;
    let c = connector(&server);
    expect_call(
        &server,
        json!({"operation": "list_ticket_types", "tenant_id": "acme"}),
        ResponseTemplate::new(200).set_body_json(json!({"ticket_types": ["question", "incident"]})),
    )
    .await;
    expect_call(
        &server,
        json!({"operation": "create_ticket", "tenant_id": "acme", "idempotency_key": "k2",
            "subject": "Follow up", "body": "Call the customer",
            "requester": {"name": "Bob Stone", "email": "bob@example.com"},
            "related_ticket_id": "1001"}),
        ResponseTemplate::new(201).set_body_json(json!({"ticket_id": "2001"})),
    )
    .await;
    let snapshot = json!({"id": "1001", "subject": "Printer", "status": "open",
        "contact": {"id": "c-bob", "name": "Bob Stone", "email": "bob@example.com"},
        "updated_at": "2026-11-23T10:00:00Z"});
    expect_call(
        &server,
        json!({"operation": "fetch_ticket", "tenant_id": "acme", "ticket_id": "1001"}),
        ResponseTemplate::new(200).set_body_json(json!({ "ticket": snapshot })),
    )
    .await;

    assert_eq!(
        c.list_ticket_types().await.unwrap(),
        vec!["question", "incident"]
    );
    let created = c
        .create_ticket(
            "k2",
            &NewTicket {
                subject: "Follow up".into(),
                body: "Call the customer".into(),
                requester: Some(Requester {
                    name: "Bob Stone".into(),
                    email: Email::parse("bob@example.com").unwrap(),
                }),
                related_ticket_id: Some(ticket()),
            },
        )
        .await
        .unwrap();
    assert_eq!(created.as_str(), "2001");
    let fetched = c.fetch_ticket(&ticket()).await.unwrap();
    assert_eq!(fetched.subject, "Printer");
    assert_eq!(fetched.contact.email.as_str(), "bob@example.com");
}

async fn answer_once(server: &MockServer, answer: ResponseTemplate) {
    Mock::given(method("POST"))
        .respond_with(answer)
        .up_to_n_times(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn failures_are_typed_as_the_receiver_answered() {
    let server = MockServer::start().await;
    let c = connector(&server);
    let t = ticket();

    answer_once(
        &server,
        ResponseTemplate::new(429).insert_header("Retry-After", "3"),
    )
    .await;
    assert_eq!(
        c.reopen_ticket("k", &t).await.unwrap_err(),
        ConnectorError::RateLimited {
            retry_after: Some(Duration::from_secs(3))
        }
    );

    answer_once(
        &server,
        ResponseTemplate::new(503).set_body_string("maintenance"),
    )
    .await;
    let e = c.reopen_ticket("k", &t).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");

    answer_once(
        &server,
        ResponseTemplate::new(401).set_body_json(json!({"error": {"message": "token expired"}})),
    )
    .await;
    let e = c.reopen_ticket("k", &t).await.unwrap_err();
    assert_eq!(e, ConnectorError::Unauthorized("token expired".into()));
    assert!(!e.is_transient());
    assert!(
        e.to_string().contains("credentials") && e.to_string().contains("token expired"),
        "{e}"
    );

    answer_once(
        &server,
        ResponseTemplate::new(422).set_body_json(json!({"message": "status 'frozen' unknown"})),
    )
    .await;
    assert_eq!(
        c.set_ticket_status("k", &t, "frozen").await.unwrap_err(),
        ConnectorError::Rejected {
            status: 422,
            message: "status 'frozen' unknown".into()
        }
    );

    answer_once(&server, ResponseTemplate::new(501)).await;
    assert_eq!(
        c.change_ticket_type("k", &t, "x").await.unwrap_err(),
        ConnectorError::Unsupported {
            vendor: "generic_webhook".into(),
            operation: HelpdeskOperation::ChangeTicketType
        }
    );

    // A redirect is not followed: the signed call goes to the configured URL only.
    answer_once(
        &server,
        ResponseTemplate::new(302).insert_header("Location", "http://169.254.169.254/"),
    )
    .await;
    assert!(matches!(
        c.reopen_ticket("k", &t).await.unwrap_err(),
        ConnectorError::Rejected { status: 302, .. }
    ));
}

#[tokio::test]
async fn a_slow_receiver_is_a_transient_timeout_and_a_dead_one_too() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(800)))
        .mount(&server)
        .await;
    let slow = GenericWebhookConnector::new(
        http_client(Duration::from_millis(200)),
        tenant(),
        server.uri(),
        SECRET.into(),
    );
    let e = slow.reopen_ticket("k", &ticket()).await.unwrap_err();
    assert_eq!(e, ConnectorError::Transient("the call timed out".into()));

    // Nothing listens on port 9 (discard) of loopback.
    let dead = GenericWebhookConnector::new(
        http_client(Duration::from_millis(500)),
        tenant(),
        "http://127.0.0.1:9/x".into(),
        SECRET.into(),
    );
    assert!(
        dead.reopen_ticket("k", &ticket())
            .await
            .unwrap_err()
            .is_transient()
    );
}

#[tokio::test]
async fn a_secret_never_appears_in_debug_output_or_errors() {
    let server = MockServer::start().await;
    answer_once(&server, ResponseTemplate::new(500)).await;
    let c = connector(&server);
    assert!(!format!("{c:?}").contains(SECRET));
    let e = c.reopen_ticket("k", &ticket()).await.unwrap_err();
    assert!(!format!("{e:?}").contains(SECRET));
}

#[tokio::test]
async fn the_directory_gives_each_tenant_its_own_connector_or_none() {
    let store = std::sync::Arc::new(JournalStore::open_in_memory().unwrap());
    let now = chrono::Utc::now();
    for name in ["acme", "globex"] {
        tenancy::provision_tenant(
            store.as_ref(),
            TenantId::parse(name).unwrap(),
            name,
            TenantSettings::default(),
            now,
        )
        .await
        .unwrap();
    }
    let server = MockServer::start().await;
    helpdesk::put_config(
        store.as_ref(),
        &tenant(),
        ConnectorKind::GenericWebhook,
        &format!("{}/closedloop/calls", server.uri()),
        Default::default(),
        Some(SECRET),
        now,
    )
    .await
    .unwrap();
    let directory =
        StoreConnectorDirectory::new(store.clone(), http_client(Duration::from_secs(2)));
    let globex = TenantId::parse("globex").unwrap();
    assert!(directory.connector(&globex).await.unwrap().is_none());
    expect_call(
        &server,
        json!({"operation": "add_tag", "tenant_id": "acme", "idempotency_key": "k",
            "ticket_id": "1001", "tag": "vip"}),
        ok(),
    )
    .await;
    let acme = directory.connector(&tenant()).await.unwrap().unwrap();
    assert_eq!(acme.vendor(), "generic_webhook");
    acme.add_tag("k", &ticket(), "vip").await.unwrap();
}

#[tokio::test]
async fn a_rule_webhook_is_signed_with_its_own_secret_and_carries_its_key() {
    let server = MockServer::start().await;
    let body = json!({"delivery_id": "d-1", "type": "closedloop.rule_action", "event": {"x": 1}});
    Mock::given(method("POST"))
        .and(path("/hooks/feedback"))
        .and(header("content-type", "application/json"))
        .and(header("idempotency-key", "d-1"))
        .and(SignedWith("rule-webhook-secret-0001"))
        .and(body_json(body.clone()))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let sender = HttpWebhookSender::new(http_client(Duration::from_secs(2)));
    let hook = OutgoingWebhook {
        url: format!("{}/hooks/feedback", server.uri()),
        secret: "rule-webhook-secret-0001".into(),
        idempotency_key: "d-1".into(),
        body,
    };
    assert_eq!(sender.post_webhook(&hook).await.unwrap(), 204);

    let failing = MockServer::start().await;
    answer_once(
        &failing,
        ResponseTemplate::new(400).set_body_string("bad payload"),
    )
    .await;
    let e = sender
        .post_webhook(&OutgoingWebhook {
            url: failing.uri(),
            ..hook
        })
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ConnectorError::Rejected {
            status: 400,
            message: "bad payload".into()
        }
    );
}
