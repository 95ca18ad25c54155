//! Rule actions end to end through the local runner: the rules run on the sandbox helpdesk's
//! webhooks, their helpdesk actions go through the real generic connector to the sandbox, and
//! the sandbox reports its changes back as webhooks, as a helpdesk does.

mod common;

use closedloop::runner::Running;
use closedloop_core::automation;
use closedloop_core::ids::TenantId;
use reqwest::Method;
use serde_json::{Value, json};

use common::{start_demo, temp_dir};

async fn add_rule(running: &Running, rule: Value) {
    let draft = closedloop_core::rules::parse_draft(rule.to_string().as_bytes()).unwrap();
    automation::create_rule(
        running.store(),
        &TenantId::parse(&running.info.tenant.tenant).unwrap(),
        draft,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
}

async fn sandbox(running: &Running, method: Method, path: &str) -> Value {
    reqwest::Client::new()
        .request(method, format!("{}/sandbox{path}", running.info.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The connector calls the sandbox helpdesk received.
async fn helpdesk_calls(running: &Running) -> Vec<Value> {
    sandbox(running, Method::GET, "/helpdesk/calls")
        .await
        .as_array()
        .unwrap()
        .clone()
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

#[tokio::test]
async fn our_reopen_coming_back_as_a_webhook_does_not_retrigger_the_rule_that_made_it() {
    let dir = temp_dir();
    let running = start_demo(&dir).await;
    // A rule that matches every status change, its own reopen's echo included.
    add_rule(
        &running,
        json!({"name": "Keep tickets open", "trigger": "ticket_status_set",
            "actions": [{"type": "reopen_ticket"},
                {"type": "add_internal_note", "body": "Reopened: {{ ticket.subject }}"}]}),
    )
    .await;
    // Someone sets ticket 1003 to pending in the helpdesk.
    sandbox(&running, Method::POST, "/tickets/1003/pending").await;
    // Without echo detection the rule would reopen, hear its own reopen, reopen again, ...
    tokio::time::timeout(std::time::Duration::from_secs(20), running.drain())
        .await
        .expect("the rule keeps re-triggering itself on its own change")
        .unwrap();

    let calls = helpdesk_calls(&running).await;
    let operations: Vec<_> = calls
        .iter()
        .map(|c| c["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        operations.iter().filter(|o| **o == "reopen_ticket").count(),
        1,
        "{calls:?}"
    );
    assert_eq!(
        operations
            .iter()
            .filter(|o| **o == "add_internal_note")
            .count(),
        1,
        "{calls:?}"
    );
    let ticket = sandbox(&running, Method::GET, "/tickets/1003").await;
    assert_eq!(ticket["ticket"]["status"], "open");
    assert_eq!(
        ticket["notes"][0]["body"],
        "Reopened: New laptop for the sales team"
    );

    // The audit shows the echo arrived, caused by the rule, and the rule skipped it.
    let (_, audit) = admin(&running, Method::GET, "/tickets/1003/audit", None).await;
    let evaluations: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "rules_evaluated" && e["event_type"] == "ticket.status_changed")
        .collect();
    assert_eq!(evaluations.len(), 2, "the change and its echo: {audit}");
    let echo = evaluations
        .iter()
        .find(|e| e["performed_by"].is_string())
        .expect("the echo names the rule that caused it");
    assert_eq!(echo["depth"], 1);
    assert_eq!(echo["rules"][0]["outcome"], "skipped", "{echo}");
    let done: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "action_executed")
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(done, vec!["done", "done"], "{audit}");

    // The expectation was consumed by its echo: nothing is left waiting on the ticket.
    let tenant = TenantId::parse("demo").unwrap();
    let waiting = running
        .store()
        .query(
            closedloop_core::store::Query::partition(closedloop_core::keys::ticket_partition(
                &tenant,
                &closedloop_core::ids::TicketId::parse("1003").unwrap(),
            ))
            .sk(closedloop_core::store::SortKeyCondition::BeginsWith(
                "EXPECT#".into(),
            )),
        )
        .await
        .unwrap();
    assert!(waiting.items.is_empty(), "{:?}", waiting.items);

    // A status change from a person later is a new chain: the rule runs again.
    sandbox(&running, Method::POST, "/tickets/1003/pending").await;
    running.drain().await.unwrap();
    let reopens = helpdesk_calls(&running)
        .await
        .iter()
        .filter(|c| c["operation"] == "reopen_ticket")
        .count();
    assert_eq!(reopens, 2);
    running.shutdown().await;
}

#[tokio::test]
async fn a_failed_action_is_listed_and_an_admins_retry_runs_it_exactly_once() {
    let dir = temp_dir();
    let running = start_demo(&dir).await;
    add_rule(
        &running,
        json!({"name": "Note closed tickets", "trigger": "ticket_closed",
            "actions": [{"type": "add_internal_note", "body": "Closed; rating requested."}]}),
    )
    .await;
    // The helpdesk is disconnected, so the note cannot be added.
    let (status, _) = admin(&running, Method::DELETE, "/connector", None).await;
    assert_eq!(status, 204);
    sandbox(&running, Method::POST, "/tickets/1002/close").await;
    running.drain().await.unwrap();
    assert!(helpdesk_calls(&running).await.is_empty());

    let (status, listed) = admin(&running, Method::GET, "/failed-actions", None).await;
    assert_eq!(status, 200);
    let failed = listed["failed_actions"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{listed}");
    assert_eq!(failed[0]["action"], "add_internal_note");
    assert_eq!(failed[0]["ticket_id"], "1002");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("no helpdesk is connected"),
        "{listed}"
    );
    let (_, audit) = admin(&running, Method::GET, "/tickets/1002/audit", None).await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "action_executed" && e["outcome"] == "failed"),
        "{audit}"
    );

    // The admin connects the helpdesk again and retries.
    let url = format!("{}/sandbox/helpdesk", running.info.base_url);
    let (status, connected) = admin(
        &running,
        Method::PUT,
        "/connector",
        Some(json!({"kind": "generic_webhook", "url": url})),
    )
    .await;
    assert_eq!(status, 201, "{connected}");
    let id = failed[0]["id"].as_str().unwrap();
    let (status, _) = admin(
        &running,
        Method::POST,
        &format!("/failed-actions/{id}/retry"),
        None,
    )
    .await;
    assert_eq!(status, 202);
    running.drain().await.unwrap();
    let calls = helpdesk_calls(&running).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["body"], "Closed; rating requested.");
    let (_, listed) = admin(&running, Method::GET, "/failed-actions", None).await;
    assert!(listed["failed_actions"].as_array().unwrap().is_empty());
    // Retrying it again: it is gone, and nothing runs twice.
    let (status, _) = admin(
        &running,
        Method::POST,
        &format!("/failed-actions/{id}/retry"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    running.drain().await.unwrap();
    assert_eq!(helpdesk_calls(&running).await.len(), 1);
    running.shutdown().await;
}

#[tokio::test]
async fn the_demo_tenants_helpdesk_is_the_sandbox_and_its_secret_is_never_shown() {
    let dir = temp_dir();
    let running = start_demo(&dir).await;
    let (status, connector) = admin(&running, Method::GET, "/connector", None).await;
    assert_eq!(status, 200);
    assert_eq!(connector["kind"], "generic_webhook");
    assert_eq!(
        connector["url"],
        format!("{}/sandbox/helpdesk", running.info.base_url)
    );
    assert_eq!(connector["secret_set"], true);
    assert!(connector.get("secret").is_none(), "{connector}");
    // An unsigned call to the sandbox helpdesk is refused, and changes nothing.
    let response = reqwest::Client::new()
        .post(format!("{}/sandbox/helpdesk", running.info.base_url))
        .json(&json!({"operation": "reopen_ticket", "tenant_id": "demo", "ticket_id": "1001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(helpdesk_calls(&running).await.is_empty());
    running.shutdown().await;
}

#[tokio::test]
async fn a_bad_review_is_tagged_and_the_tag_triggers_a_note_and_a_case_in_the_helpdesk() {
    use std::sync::Arc;
    let dir = temp_dir();
    let clock = Arc::new(closedloop_core::ports::ManualClock::new(chrono::Utc::now()));
    let running = closedloop::runner::start(closedloop::runner::RunnerConfig {
        clock: clock.clone(),
        ..common::demo_config(&dir)
    })
    .await
    .unwrap();
    add_rule(
        &running,
        json!({"name": "Tag bad reviews", "trigger": "review_received",
            "conditions": {"all": [{"field": "rating.csat", "op": "is", "value": "negative"}]},
            "actions": [{"type": "add_review_tag", "tag": "unhappy"}]}),
    )
    .await;
    add_rule(
        &running,
        json!({"name": "Escalate unhappy reviews", "trigger": "review_tag_added",
            "conditions": {"all": [{"field": "event.tag", "op": "is", "value": "unhappy"}]},
            "actions": [
                {"type": "add_internal_note", "body": "{{ customer.name }} is unhappy: {{ comment or 'no comment' }}"},
                {"type": "open_case", "assignee": {"kind": "ticket_agent"}}]}),
    )
    .await;
    let links = common::close_and_read_links(&running, &dir, "1001", "bob@northwind.example").await;
    let negative = links
        .iter()
        .find(|l| common::link_value(l) == "negative")
        .unwrap();
    let browser = reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15")
        .build()
        .unwrap();
    assert_eq!(browser.get(negative).send().await.unwrap().status(), 200);
    // The change window passes; the review is received, tagged, and the tag escalates it.
    clock.advance(chrono::Duration::minutes(10));
    running
        .fire_schedule("SurveySchedulerFunction")
        .await
        .unwrap();
    running.drain().await.unwrap();

    let calls = helpdesk_calls(&running).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["operation"], "add_internal_note");
    assert_eq!(calls[0]["body"], "Bob Stone is unhappy: no comment");
    let (_, review) = admin(&running, Method::GET, "/tickets/1001/review", None).await;
    assert_eq!(review["tags"], json!(["unhappy"]), "{review}");
    let (_, audit) = admin(&running, Method::GET, "/tickets/1001/audit", None).await;
    let case = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "open_case")
        .expect("the case was opened");
    assert_eq!(case["outcome"], "done", "{case}");
    assert!(
        case["detail"]
            .as_str()
            .unwrap()
            .contains("assigned to a-alice"),
        "{case}"
    );
    running.shutdown().await;
}
