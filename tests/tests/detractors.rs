//! The detractor loop end to end through the local runner: NPS answers on the rating page,
//! the daily sweep flagging and unflagging the account record in the sandbox helpdesk through
//! the real generic connector, the digest in the outbox, and the detractor alert rule
//! (the shipped template) on a new ticket from the flagged account.

mod common;

use std::path::Path;
use std::sync::Arc;

use closedloop::runner::{self, RunnerConfig, Running};
use closedloop_core::ports::{Clock, ManualClock};
use reqwest::Method;
use serde_json::{Value, json};

use common::{close_and_read_links, demo_config, link_value, outbox, temp_dir};

fn customer() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
        .build()
        .unwrap()
}

async fn admin(running: &Running, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/admin/v1{path}", running.info.base_url))
        .bearer_auth(&running.info.tenant.api_key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn sandbox(running: &Running, path: &str) -> Value {
    reqwest::get(format!("{}/sandbox{path}", running.info.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The customer answers `score` on the page of the request sent for `ticket`.
async fn answer(
    running: &Running,
    dir: &Path,
    ticket: &str,
    contact: &str,
    score: &str,
    comment: &str,
) {
    let links = close_and_read_links(running, dir, ticket, contact).await;
    let link = links.iter().find(|l| link_value(l) == score).unwrap();
    let posted = customer()
        .post(link)
        .form(&[("rating", score), ("comment", comment)])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    running.drain().await.unwrap();
}

async fn sweep(running: &Running) {
    running
        .fire_schedule("DetractorSweepFunction")
        .await
        .unwrap();
    running.drain().await.unwrap();
}

fn digests(dir: &Path) -> Vec<String> {
    outbox(dir)
        .into_iter()
        .filter(|m| m.contains("Subject: Detractor flags"))
        .collect()
}

/// A signed generic `ticket.created` for a contact of an account, as the helpdesk sends it.
async fn ticket_created(
    running: &Running,
    now: chrono::DateTime<chrono::Utc>,
    id: &str,
    contact: Value,
) {
    let body = json!({
        "delivery_id": format!("created-{id}"), "type": "ticket.created",
        "occurred_at": now,
        "ticket": {"id": id, "subject": "Printer again", "status": "open",
            "agent": {"id": "a-alice", "name": "Alice Meyer", "email": "alice@demo.example", "email_notifications": true},
            "contact": contact, "updated_at": now}
    })
    .to_string();
    let signature = closedloop_core::signature::sign_timestamped(
        running.info.tenant.webhook_secret.as_bytes(),
        now.timestamp(),
        body.as_bytes(),
    );
    let response = reqwest::Client::new()
        .post(format!("{}/webhooks/demo/generic", running.info.base_url))
        .header("X-Closedloop-Signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    running.drain().await.unwrap();
}

#[tokio::test]
async fn bob_flags_northwind_the_alert_fires_on_its_next_ticket_and_cindy_unflags_it() {
    let dir = temp_dir();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let running = runner::start(RunnerConfig {
        clock: clock.clone(),
        ..demo_config(&dir)
    })
    .await
    .unwrap();
    let (_, mut settings) = admin(&running, Method::GET, "/settings", None).await;
    settings["survey_kind"] = json!("nps");
    settings["change_window_minutes"] = json!(0);
    settings["digest_recipients"] = json!(["lead@demo.example"]);
    let (status, body) = admin(&running, Method::PUT, "/settings", Some(settings)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin(
        &running,
        Method::POST,
        "/rule-templates/detractor-alert-on-new-ticket",
        Some(json!({"to": ["lead@demo.example"], "enabled": true})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let notes_before = sandbox(&running, "/accounts/acc-northwind").await["notes"].clone();

    // Bob of Northwind gives a 3; the daily run flags the account record.
    answer(
        &running,
        &dir,
        "1001",
        "bob@northwind.example",
        "3",
        "Printer <still> jams",
    )
    .await;
    clock.advance(chrono::Duration::hours(20));
    sweep(&running).await;
    let record = sandbox(&running, "/accounts/acc-northwind").await;
    assert_eq!(
        record["notes"], notes_before,
        "the record's own text is kept"
    );
    let block = &record["closedloop_block"];
    assert_eq!(block["detractor"], true);
    assert!(block["subject"].as_str().unwrap().chars().count() <= 32);
    let text = block["text"].as_str().unwrap();
    for wanted in [
        "Bob Stone <bob@northwind.example>",
        "3/10",
        "Printer <still> jams",
    ] {
        assert!(text.contains(wanted), "the flag names {wanted}: {text}");
    }
    let digest = digests(&dir);
    assert_eq!(digest.len(), 1);
    assert!(digest[0].contains("To: lead@demo.example") && digest[0].contains("1 flagged"));
    assert!(
        digest[0].contains("Printer &lt;still&gt; jams"),
        "escaped in the HTML part"
    );

    // A new ticket from Northwind alerts its technician and the lead; one from Contoso does not.
    let before = outbox(&dir).len();
    ticket_created(
        &running,
        clock.now(),
        "3001",
        json!({"id": "c-cindy", "name": "Cindy Park", "email": "cindy@northwind.example",
        "account": {"id": "acc-northwind", "name": "Northwind Traders"}}),
    )
    .await;
    ticket_created(
        &running,
        clock.now(),
        "3002",
        json!({"id": "c-dan", "name": "Dan Ortiz", "email": "dan@contoso.example",
        "account": {"id": "acc-contoso", "name": "Contoso Ltd"}}),
    )
    .await;
    let alerts: Vec<String> = outbox(&dir)[before..]
        .iter()
        .filter(|m| m.contains("Detractor alert"))
        .cloned()
        .collect();
    assert_eq!(alerts.len(), 1, "only Northwind's ticket: {alerts:?}");
    assert!(alerts[0].contains("ticket 3001") && alerts[0].contains("alice@demo.example"));
    assert!(alerts[0].contains("lead@demo.example"));

    // Two weeks later Cindy of Northwind gives a 10: the next run removes the flag.
    clock.advance(chrono::Duration::days(14));
    answer(&running, &dir, "1002", "cindy@northwind.example", "10", "").await;
    sweep(&running).await;
    let record = sandbox(&running, "/accounts/acc-northwind").await;
    assert!(record["closedloop_block"].is_null(), "{record}");
    assert_eq!(record["notes"], notes_before);
    let digest = digests(&dir);
    assert_eq!(digest.len(), 2);
    assert!(digest[1].contains("1 unflagged"));

    // Running again changes nothing: no helpdesk call, no email.
    let calls = sandbox(&running, "/helpdesk/calls")
        .await
        .as_array()
        .unwrap()
        .len();
    let mails = outbox(&dir).len();
    sweep(&running).await;
    assert_eq!(
        sandbox(&running, "/helpdesk/calls")
            .await
            .as_array()
            .unwrap()
            .len(),
        calls
    );
    assert_eq!(outbox(&dir).len(), mails);
    running.shutdown().await;
}
