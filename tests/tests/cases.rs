//! A case's life end to end through the local runner: a detractor's review opens it by a rule,
//! time moves on, the SLA sweep breaches it and a rule emails the team lead, an admin closes it
//! with an option, and the reports put it in the right SLA bucket. Then reply and close through
//! the sandbox helpdesk, and a customer's answer to that follow-up opening a new case.

mod common;

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use closedloop::runner::{self, RunnerConfig, Running};
use closedloop_core::automation;
use closedloop_core::ids::TenantId;
use closedloop_core::ports::ManualClock;
use reqwest::Method;
use serde_json::{Value, json};

use common::{close_and_read_links, demo_config, link_value, outbox, temp_dir};

/// Monday 2026-01-12, 10:00 in Warsaw (CET, UTC+1).
const MONDAY_10_WARSAW: &str = "2026-01-12T09:00:00Z";

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
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

async fn add_rule(running: &Running, rule: Value) {
    let draft = closedloop_core::rules::parse_draft(rule.to_string().as_bytes()).unwrap();
    automation::create_rule(
        running.store(),
        &TenantId::parse(&running.info.tenant.tenant).unwrap(),
        draft,
        Utc::now(),
    )
    .await
    .unwrap();
}

fn customer() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
        .build()
        .unwrap()
}

/// The demo tenant asking NPS, working Mon-Fri 09:00-17:00 in Warsaw, with an 8-business-hour
/// SLA and a rule that opens a case for the ticket's agent on every detractor.
async fn start(dir: &Path, clock: Arc<ManualClock>) -> Running {
    let running = runner::start(RunnerConfig {
        clock,
        ..demo_config(dir)
    })
    .await
    .unwrap();
    let (_, mut settings) = admin(&running, Method::GET, "/settings", None).await;
    settings["survey_kind"] = json!("nps");
    settings["time_zone"] = json!("Europe/Warsaw");
    let (status, answer) = admin(&running, Method::PUT, "/settings", Some(settings)).await;
    assert_eq!(status, 200, "{answer}");
    let hours = json!({"time_zone": "Europe/Warsaw", "hours": {
        "monday": ["09:00-17:00"], "tuesday": ["09:00-17:00"], "wednesday": ["09:00-17:00"],
        "thursday": ["09:00-17:00"], "friday": ["09:00-17:00"]}});
    let (status, answer) = admin(&running, Method::PUT, "/business-hours", Some(hours)).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = admin(
        &running,
        Method::PUT,
        "/sla",
        Some(json!({"enabled": true, "close_within_hours": 8})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    add_rule(
        &running,
        json!({"name": "A case for every detractor", "trigger": "nps_response_received",
            "conditions": {"all": [{"field": "rating.nps_band", "op": "is", "value": "detractor"}]},
            "actions": [{"type": "open_case", "assignee": {"kind": "ticket_agent"}}]}),
    )
    .await;
    running
}

/// Ticket 1001 closes, Bob answers 3 out of 10, the change window passes: the review is
/// received and the rule opens a case. Returns the open case.
async fn detractor_opens_a_case(running: &Running, dir: &Path, clock: &ManualClock) -> Value {
    let links = close_and_read_links(running, dir, "1001", "bob@northwind.example").await;
    assert_eq!(links.len(), 11, "NPS offers 0 to 10");
    let three = links.iter().find(|l| link_value(l) == "3").unwrap();
    assert_eq!(customer().get(three).send().await.unwrap().status(), 200);
    clock.advance(Duration::minutes(10));
    running
        .fire_schedule("SurveySchedulerFunction")
        .await
        .unwrap();
    running.drain().await.unwrap();
    let (_, open) = admin(running, Method::GET, "/cases?status=open", None).await;
    let cases = open["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1, "{open}");
    cases[0].clone()
}

fn breach_alerts(dir: &Path) -> Vec<String> {
    outbox(dir)
        .into_iter()
        .filter(|m| m.contains("Subject: SLA breached"))
        .collect()
}

#[tokio::test]
async fn a_detractors_case_is_breached_once_alerted_closed_with_an_option_and_reported_outside_the_sla()
 {
    let dir = temp_dir();
    let clock = Arc::new(ManualClock::new(at(MONDAY_10_WARSAW)));
    let running = start(&dir, clock.clone()).await;
    add_rule(
        &running,
        json!({"name": "Tell the lead about breaches", "trigger": "case_sla_breached",
            "actions": [{"type": "send_email", "to": ["team-lead@demo.example"],
                "subject": "SLA breached on ticket #{{ ticket.id }}",
                "body": "Case {{ case.id }} for {{ customer.name }} ({{ rating.value }}/10) is past its deadline."}]}),
    )
    .await;

    let case = detractor_opens_a_case(&running, &dir, &clock).await;
    let id = case["id"].as_str().unwrap().to_string();
    assert_eq!(case["assignee"], "a-alice");
    assert_eq!(case["ticket_id"], "1001");
    assert_eq!(case["contact_id"], "c-bob");
    assert_eq!(case["account_id"], "acc-northwind");
    // Opened Monday 10:10: 6 h 50 min of business time that day, the rest on Tuesday.
    assert_eq!(case["opened_at"], "2026-01-12T09:10:00Z");
    assert_eq!(case["sla_deadline"], "2026-01-13T09:10:00Z");

    // Tuesday 10:00: not yet due; the sweep breaches nothing.
    clock.set(at("2026-01-13T09:00:00Z"));
    running.fire_schedule("SlaSweepFunction").await.unwrap();
    running.drain().await.unwrap();
    assert!(breach_alerts(&dir).is_empty());

    // Tuesday 10:30: past due. The sweep breaches it and the rule emails the lead, once.
    clock.set(at("2026-01-13T09:30:00Z"));
    for _ in 0..2 {
        running.fire_schedule("SlaSweepFunction").await.unwrap();
        running.drain().await.unwrap();
    }
    let alerts = breach_alerts(&dir);
    assert_eq!(alerts.len(), 1, "one breach, one email");
    assert!(alerts[0].contains("To: team-lead@demo.example"));
    assert!(alerts[0].contains("Subject: SLA breached on ticket #1001"));
    assert!(
        alerts[0].contains(&format!("Case {id} for Bob Stone (3/10)")),
        "{}",
        alerts[0]
    );
    let (_, shown) = admin(&running, Method::GET, &format!("/cases/{id}"), None).await;
    assert_eq!(shown["case"]["sla_breached"], true);
    assert_eq!(shown["case"]["status"], "open");

    // Closing with an unknown option is refused and changes nothing.
    clock.set(at("2026-01-13T11:10:00Z"));
    let close = format!("/cases/{id}/close");
    let (status, answer) = admin(
        &running,
        Method::POST,
        &close,
        Some(json!({"option_id": "sorted"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], "unknown_close_option");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'sorted'"),
        "{answer}"
    );
    let (_, open) = admin(&running, Method::GET, "/cases?status=open", None).await;
    assert_eq!(open["cases"].as_array().unwrap().len(), 1);

    // Tuesday 12:10: Alice called Bob.
    let (status, closed) = admin(
        &running,
        Method::POST,
        &close,
        Some(json!({"option_id": "called-customer", "by": "a-alice"})),
    )
    .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["case"]["sla_met"], false);
    assert_eq!(closed["case"]["seconds_to_close"], 26 * 3600);
    // Monday 10:10-17:00 and Tuesday 09:00-12:10.
    assert_eq!(closed["case"]["business_seconds_to_close"], 10 * 3600);
    let (status, again) = admin(
        &running,
        Method::POST,
        &close,
        Some(json!({"option_id": "issue-fixed"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(again["error"]["code"], "case_closed");
    running.drain().await.unwrap();

    let (_, shown) = admin(&running, Method::GET, &format!("/cases/{id}"), None).await;
    let kinds: Vec<_> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "sla_breached", "closed"], "{shown}");
    assert_eq!(shown["case"]["resolution"], "Called the customer");

    let range = "from=2026-01-01&to=2026-01-31";
    let (_, sla) = admin(
        &running,
        Method::GET,
        &format!("/reports/sla?{range}"),
        None,
    )
    .await;
    assert_eq!(
        (
            sla["total"]["inside"].as_u64(),
            sla["total"]["outside"].as_u64()
        ),
        (Some(0), Some(1)),
        "{sla}"
    );
    assert_eq!(sla["by_assignee"][0]["assignee"], "a-alice");
    assert_eq!(sla["by_assignee"][0]["outside"], 1);
    let (_, report) = admin(
        &running,
        Method::GET,
        &format!("/reports/cases?{range}"),
        None,
    )
    .await;
    assert_eq!(
        (
            report["total"]["closed"].as_u64(),
            report["total"]["open"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(report["total"]["avg_hours_to_close"], 26.0);
    assert_eq!(report["total"]["avg_business_hours_to_close"], 10.0);
    let csv = reqwest::Client::new()
        .get(format!(
            "{}/admin/v1/reports/sla?{range}",
            running.info.base_url
        ))
        .bearer_auth(&running.info.tenant.api_key)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.lines().any(|l| l.ends_with(",a-alice,0,1,0,0,0")),
        "{csv}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn reply_and_close_reaches_the_customer_and_their_answer_opens_a_new_case() {
    let dir = temp_dir();
    let clock = Arc::new(ManualClock::new(at(MONDAY_10_WARSAW)));
    let running = start(&dir, clock.clone()).await;
    let case = detractor_opens_a_case(&running, &dir, &clock).await;
    let id = case["id"].as_str().unwrap().to_string();

    clock.advance(Duration::hours(1));
    let body = "Hi Bob, we replaced the drum on the floor 2 printer. Sorry for the trouble!";
    let (status, answer) = admin(
        &running,
        Method::POST,
        &format!("/cases/{id}/reply"),
        Some(json!({"body": body, "close_with": "issue-fixed", "by": "a-alice"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["case"]["status"], "closed");
    assert_eq!(answer["case"]["sla_met"], true);
    // The sandbox helpdesk got the public reply on the ticket.
    let ticket: Value = reqwest::get(format!("{}/sandbox/tickets/1001", running.info.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ticket["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["public"] == true && n["body"] == body),
        "{ticket}"
    );
    running.drain().await.unwrap();

    // Bob answers the follow-up: the loop is not closed after all.
    clock.advance(Duration::minutes(30));
    let sent: Value = reqwest::Client::new()
        .post(format!(
            "{}/sandbox/tickets/1001/customer-message",
            running.info.base_url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sent["webhooks_answered"]["status"], "accepted", "{sent}");
    running.drain().await.unwrap();
    let (_, open) = admin(&running, Method::GET, "/cases?status=open", None).await;
    let cases = open["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1, "{open}");
    let reopened = &cases[0];
    assert_ne!(reopened["id"].as_str().unwrap(), id);
    assert_eq!(reopened["origin"], "customer_reply");
    assert_eq!(reopened["review"], case["review"]);
    assert_eq!(reopened["assignee"], "a-alice");
    assert_eq!(reopened["contact_id"], "c-bob");
    // A fresh SLA from the message: Monday 11:40 + 8 business hours.
    assert_eq!(reopened["sla_deadline"], "2026-01-13T10:40:00Z");
    let new_id = reopened["id"].as_str().unwrap();
    let (_, shown) = admin(&running, Method::GET, &format!("/cases/{new_id}"), None).await;
    assert_eq!(shown["history"][0]["kind"], "opened");
    assert_eq!(
        shown["history"][0]["message"],
        "Thanks, but it jams again. Please call me."
    );

    // Another message while that case is open joins its history; no third case.
    clock.advance(Duration::minutes(5));
    reqwest::Client::new()
        .post(format!(
            "{}/sandbox/tickets/1001/customer-message",
            running.info.base_url
        ))
        .send()
        .await
        .unwrap();
    running.drain().await.unwrap();
    let (_, all) = admin(&running, Method::GET, "/cases", None).await;
    assert_eq!(all["cases"].as_array().unwrap().len(), 2);
    let (_, shown) = admin(&running, Method::GET, &format!("/cases/{new_id}"), None).await;
    let kinds: Vec<_> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "customer_replied"]);
    running.shutdown().await;
}
