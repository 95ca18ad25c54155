//! End to end through the local runner, as a newcomer uses it: close a ticket in the sandbox
//! helpdesk, watch the rating request land in the outbox, click a link.

mod common;

use std::path::Path;
use std::sync::Arc;

use closedloop_core::ports::ManualClock;
use reqwest::Method;

use closedloop::runner::{self, RunnerConfig, RunnerError, Running};
use closedloop_core::domain::{CsatValue, Rating};

use common::{
    close_and_read_links, close_ticket, demo_config, link_value, links, outbox, start_demo,
    stored_review, temp_dir,
};

async fn start_demo_relaying(dir: &Path, relay_outbox: bool) -> Running {
    runner::start(RunnerConfig {
        relay_outbox,
        ..demo_config(dir)
    })
    .await
    .unwrap()
}

/// A customer's phone browser. Requests without a browser's user agent are treated as mail
/// scanners and record nothing.
fn customer() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
        .build()
        .unwrap()
}

#[tokio::test]
async fn closing_a_ticket_sends_a_rating_request_whose_link_records_the_rating() {
    let dir = temp_dir();
    let running = start_demo(&dir).await;
    let base = running.info.base_url.clone();
    let http = customer();

    let answer: serde_json::Value = http
        .post(format!("{base}/sandbox/tickets/1001/close"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["webhooks_answered"]["status"], "accepted",
        "{answer}"
    );
    running.drain().await.unwrap();

    let mails = outbox(&dir);
    let request = mails
        .iter()
        .find(|m| m.contains("To: bob@northwind.example"))
        .expect("a rating request to the ticket's contact");
    assert!(request.contains("Printer on floor 2 jams on every job"));
    assert!(request.contains("Alice Meyer"), "the agent's name appears");
    // The demo rule routed ticket.closed to `rules`, and `actions` emailed the team lead.
    assert!(
        mails
            .iter()
            .any(|m| m.contains("To: team-lead@demo.example"))
    );
    assert_eq!(mails.len(), 2);

    let text_links = links(request.split("text/html").next().unwrap());
    assert_eq!(
        text_links.len(),
        3,
        "CSAT offers three choices: {text_links:?}"
    );
    let negative = text_links.iter().find(|l| link_value(l) == "negative");
    let negative = negative.expect("a negative link");
    // A scanner's HEAD records nothing.
    let head = http.head(negative).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let page = http.get(negative).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("negative"));

    // The review is stored under the survey request the token names.
    let review = stored_review(&running, negative)
        .await
        .expect("review stored");
    assert_eq!(review.rating, Rating::Csat(CsatValue::Negative));

    // A tampered link is refused and changes nothing.
    let tampered = format!("{}x", negative);
    assert_eq!(http.get(&tampered).send().await.unwrap().status(), 400);
    running.shutdown().await;
}

#[tokio::test]
async fn a_redelivered_close_sends_nothing_twice_and_a_restart_loses_nothing() {
    let dir = temp_dir();
    // A runner that stops before relaying: the event waits in the durable outbox.
    let running = start_demo_relaying(&dir, false).await;
    let base = running.info.base_url.clone();
    let http = reqwest::Client::new();
    http.post(format!("{base}/sandbox/tickets/1002/close"))
        .send()
        .await
        .unwrap();
    running.shutdown().await;
    assert!(outbox(&dir).is_empty(), "nothing was relayed yet");
    let running = start_demo(&dir).await;
    running.drain().await.unwrap();
    assert_eq!(
        outbox(&dir)
            .iter()
            .filter(|m| m.contains("To: cindy@northwind.example"))
            .count(),
        1
    );
    // A second close of the same ticket does not send a second request.
    close_ticket(&running, "1002").await;
    running.drain().await.unwrap();
    assert_eq!(
        outbox(&dir)
            .iter()
            .filter(|m| m.contains("To: cindy@northwind.example"))
            .count(),
        1
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_taken_port_or_a_store_in_use_gives_a_clear_error() {
    let dir = temp_dir();
    let first = start_demo(&dir).await;
    // Same store, another port: the store is locked.
    let other = temp_dir();
    let mut same_store = RunnerConfig::new(&dir, "127.0.0.1:0".parse().unwrap());
    same_store.run_schedules = false;
    let err = runner::start(same_store)
        .await
        .err()
        .expect("locked store refused");
    assert!(matches!(err, RunnerError::Store(_)), "{err}");
    assert!(
        err.to_string().contains("store.journal.lock"),
        "the message names the lock: {err}"
    );
    // Same port, another store.
    let mut same_port = RunnerConfig::new(&other, first.addr);
    same_port.run_schedules = false;
    let err = runner::start(same_port)
        .await
        .err()
        .expect("taken port refused");
    assert!(matches!(err, RunnerError::Bind { .. }), "{err}");
    assert!(err.to_string().contains("--port"), "{err}");
    first.shutdown().await;
}

/// One run of `survey-scheduler` (send due requests, settle reviews), and everything it causes.
async fn scheduler_tick(running: &Running) {
    running
        .fire_schedule("SurveySchedulerFunction")
        .await
        .unwrap();
    running.drain().await.unwrap();
}

/// Calls the demo tenant's admin API; the status and the JSON answer (`null` if none).
async fn admin(
    running: &Running,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
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

fn review_alerts(dir: &Path) -> Vec<String> {
    outbox(dir)
        .into_iter()
        .filter(|m| m.contains("Subject: New review on ticket"))
        .collect()
}

async fn start_with_clock(dir: &Path, clock: Arc<ManualClock>) -> Running {
    runner::start(RunnerConfig {
        clock,
        ..demo_config(dir)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_rating_and_comment_settle_into_one_review_received_after_the_window() {
    let dir = temp_dir();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let running = start_with_clock(&dir, clock.clone()).await;
    let base = &running.info.base_url;
    // The admin asks for requests two hours after the close.
    let (_, mut settings) = admin(&running, Method::GET, "/settings", None).await;
    settings["survey_delay_hours"] = 2.into();
    let (status, _) = admin(&running, Method::PUT, "/settings", Some(settings)).await;
    assert_eq!(status, 200);
    customer()
        .post(format!("{base}/sandbox/tickets/1001/close"))
        .send()
        .await
        .unwrap();
    running.drain().await.unwrap();
    let rating_requests = || {
        outbox(&dir)
            .into_iter()
            .filter(|m| m.contains("To: bob@northwind.example"))
            .count()
    };
    assert_eq!(rating_requests(), 0, "not due yet");
    clock.advance(chrono::Duration::hours(2));
    scheduler_tick(&running).await;
    assert_eq!(rating_requests(), 1, "sent once due");
    let links = close_and_read_links(&running, &dir, "1001", "bob@northwind.example").await;
    let positive = links.iter().find(|l| link_value(l) == "positive").unwrap();
    let http = customer();
    assert_eq!(http.get(positive).send().await.unwrap().status(), 200);
    let posted = http
        .post(positive)
        .form(&[("rating", "positive"), ("comment", "Quick and friendly")])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);

    // Inside the 5-minute window: no review.received yet, so the demo rule has not fired.
    clock.advance(chrono::Duration::minutes(4));
    scheduler_tick(&running).await;
    assert!(review_alerts(&dir).is_empty());

    clock.advance(chrono::Duration::minutes(2));
    scheduler_tick(&running).await;
    scheduler_tick(&running).await;
    let alerts = review_alerts(&dir);
    assert_eq!(alerts.len(), 1, "review.received is published once");
    assert!(
        alerts[0].contains("Rating: positive") && alerts[0].contains("Quick and friendly"),
        "{}",
        alerts[0]
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_corrected_mis_click_triggers_one_review_received_with_the_final_rating() {
    let dir = temp_dir();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let running = start_with_clock(&dir, clock.clone()).await;
    let links = close_and_read_links(&running, &dir, "1002", "cindy@northwind.example").await;
    let negative = links.iter().find(|l| link_value(l) == "negative").unwrap();
    let http = customer();
    http.get(negative).send().await.unwrap();
    clock.advance(chrono::Duration::minutes(1));
    // The customer meant "good": she fixes it on the page.
    http.post(negative)
        .form(&[("rating", "positive"), ("comment", "")])
        .send()
        .await
        .unwrap();
    clock.advance(chrono::Duration::minutes(10));
    scheduler_tick(&running).await;
    let alerts = review_alerts(&dir);
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].contains("Rating: positive"), "{}", alerts[0]);
    running.shutdown().await;
}

#[tokio::test]
async fn a_scanner_opening_every_link_records_nothing() {
    let dir = temp_dir();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let running = start_with_clock(&dir, clock.clone()).await;
    let links = close_and_read_links(&running, &dir, "1001", "bob@northwind.example").await;
    // A gateway checks every link: HEAD first, then its own agent, then a browser disguise,
    // one link after another within a second.
    let gateway = reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (compatible; Barracuda Sentinel (EE))")
        .build()
        .unwrap();
    let disguised = customer();
    for link in &links {
        assert_eq!(gateway.head(link).send().await.unwrap().status(), 200);
    }
    for link in &links {
        let page = gateway
            .get(link)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("Please confirm your answer"), "{page}");
    }
    for link in &links {
        disguised.get(link).send().await.unwrap();
        clock.advance(chrono::Duration::milliseconds(300));
    }
    clock.advance(chrono::Duration::hours(1));
    scheduler_tick(&running).await;
    assert!(
        review_alerts(&dir).is_empty(),
        "no review.received, so no rule ran"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn an_agent_re_requests_a_rating_and_the_old_links_stop_working() {
    let dir = temp_dir();
    let running = start_demo(&dir).await;
    let http = customer();
    let first = close_and_read_links(&running, &dir, "1001", "bob@northwind.example").await;
    let old_negative = first.iter().find(|l| link_value(l) == "negative").unwrap();
    http.get(old_negative).send().await.unwrap();
    let (_, review) = admin(&running, Method::GET, "/tickets/1001/review", None).await;
    assert_eq!(review["rating"]["value"], "negative", "{review}");
    assert_eq!(review["status"], "counted", "{review}");
    // Staff can read the rating, but nothing lets them change it.
    let change = serde_json::json!({ "rating": "positive" });
    let (status, _) = admin(&running, Method::PUT, "/tickets/1001/review", Some(change)).await;
    assert_eq!(status, 405);

    // The agent fixed the printer for real, and asks again.
    let by = serde_json::json!({ "requested_by": "a-alice" });
    let (status, _) = admin(
        &running,
        Method::POST,
        "/tickets/1001/rating-requests",
        Some(by),
    )
    .await;
    assert_eq!(status, 202);
    running.drain().await.unwrap();
    let requests: Vec<_> = outbox(&dir)
        .into_iter()
        .filter(|m| m.contains("To: bob@northwind.example"))
        .collect();
    assert_eq!(requests.len(), 2, "a second rating request went out");
    let second = links(requests[1].split("text/html").next().unwrap());
    assert!(second.iter().all(|l| !first.contains(l)));
    let old = http.get(old_negative).send().await.unwrap();
    assert_eq!(old.status(), 404, "the old links are superseded");
    let new_positive = second.iter().find(|l| link_value(l) == "positive").unwrap();
    assert_eq!(http.get(new_positive).send().await.unwrap().status(), 200);
    let (_, review) = admin(&running, Method::GET, "/tickets/1001/review", None).await;
    assert_eq!(review["rating"]["value"], "positive", "{review}");

    let (status, _) = admin(
        &running,
        Method::POST,
        "/tickets/9999/rating-requests",
        None,
    )
    .await;
    assert_eq!(status, 404);
    running.shutdown().await;
}

#[tokio::test]
async fn an_agent_with_notifications_off_gets_no_email_and_the_audit_says_why() {
    let dir = temp_dir();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let running = start_with_clock(&dir, clock.clone()).await;
    // Alice asks for emails, Mark switched them off (see /admin/v1/agents).
    let (_, agents) = admin(&running, Method::GET, "/agents", None).await;
    assert_eq!(agents.as_array().unwrap().len(), 2, "{agents}");
    // Ticket 1001 is Alice's, 1003 is Mark's; both customers answer.
    for (ticket, contact) in [
        ("1001", "bob@northwind.example"),
        ("1003", "dan@contoso.example"),
    ] {
        let links = close_and_read_links(&running, &dir, ticket, contact).await;
        let positive = links.iter().find(|l| link_value(l) == "positive").unwrap();
        assert_eq!(customer().get(positive).send().await.unwrap().status(), 200);
    }
    clock.advance(chrono::Duration::minutes(10));
    scheduler_tick(&running).await;
    let alerts = review_alerts(&dir);
    assert_eq!(alerts.len(), 2, "one alert per review");
    let to_alice = alerts.iter().find(|m| m.contains("#1001")).unwrap();
    let to_lead_only = alerts.iter().find(|m| m.contains("#1003")).unwrap();
    assert!(to_alice.contains("alice@demo.example"), "{to_alice}");
    assert!(
        !to_lead_only.contains("mark@demo.example"),
        "{to_lead_only}"
    );
    assert!(to_lead_only.contains("team-lead@demo.example"));

    let (_, audit) = admin(&running, Method::GET, "/tickets/1003/audit", None).await;
    let suppressed: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["suppressed"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(suppressed.len(), 1, "{audit}");
    assert_eq!(suppressed[0]["agent_id"], "a-mark");

    // Mark switches notifications on: the next review reaches him.
    let mark = serde_json::json!({ "name": "Mark Chen", "email": "mark@demo.example",
        "email_notifications": true });
    let (status, _) = admin(&running, Method::PUT, "/agents/a-mark", Some(mark)).await;
    assert_eq!(status, 200);
    let links = close_and_read_links(&running, &dir, "1004", "erin@contoso.example").await;
    let negative = links.iter().find(|l| link_value(l) == "negative").unwrap();
    customer().get(negative).send().await.unwrap();
    clock.advance(chrono::Duration::minutes(10));
    scheduler_tick(&running).await;
    let alerts = review_alerts(&dir);
    let erin = alerts.iter().find(|m| m.contains("#1004")).unwrap();
    assert!(erin.contains("mark@demo.example"), "{erin}");
    running.shutdown().await;
}

/// A request reaches the function whose template path it matches, which answers for its
/// methods and parameters; a path no function serves gets the JSON 404. The sandbox's own
/// routes are there in demo mode.
#[tokio::test]
async fn requests_reach_the_function_whose_template_path_they_match() {
    let dir = temp_dir();
    let running = start_demo(&dir).await;
    let base = &running.info.base_url;
    let client = customer();
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    let health = get("/admin/v1/health").await.unwrap();
    assert_eq!(health.status(), 200);
    let unknown = get("/nowhere/at/all").await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("no route for GET /nowhere/at/all")
    );
    let bad_link = get("/r/not-a-token").await.unwrap();
    assert_eq!(bad_link.status(), 400, "the rating link read the token");
    assert!(
        bad_link
            .text()
            .await
            .unwrap()
            .contains("This link doesn&#39;t work")
    );
    let wrong_method = client
        .delete(format!("{base}/r/not-a-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405, "the function checks the method");
    let sandbox = client
        .post(format!("{base}/sandbox/tickets/nope/dance"))
        .send()
        .await
        .unwrap();
    assert!(
        !sandbox.text().await.unwrap().contains("no route for"),
        "the sandbox route is served"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_rating_request_send_cut_off_by_a_crash_is_sent_after_the_restart() {
    let dir = temp_dir();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let running = start_with_clock(&dir, clock.clone()).await;
    let (_, mut settings) = admin(&running, Method::GET, "/settings", None).await;
    settings["survey_delay_hours"] = 1.into();
    assert_eq!(
        admin(&running, Method::PUT, "/settings", Some(settings))
            .await
            .0,
        200
    );
    customer()
        .post(format!(
            "{}/sandbox/tickets/1001/close",
            running.info.base_url
        ))
        .send()
        .await
        .unwrap();
    running.drain().await.unwrap();
    let rating_requests = || {
        outbox(&dir)
            .into_iter()
            .filter(|m| m.contains("To: bob@northwind.example"))
            .count()
    };
    assert_eq!(rating_requests(), 0, "not due yet");

    // When it falls due, a run claims the send and dies before the email goes out: the claim
    // stays in progress, as a killed process leaves it.
    clock.advance(chrono::Duration::hours(1));
    let tenant = closedloop_core::ids::TenantId::parse(&running.info.tenant.tenant).unwrap();
    let request = running
        .store
        .items()
        .into_iter()
        .find(|item| {
            use closedloop_core::store::ItemExt;
            item.str_attr("SK") == Some("REQUEST")
        })
        .expect("the scheduled rating request");
    let request_id = {
        use closedloop_core::store::ItemExt;
        let pk = request.str_attr("PK").unwrap();
        pk.rsplit_once("#SURVEY#")
            .expect("a survey partition")
            .1
            .to_string()
    };
    let claim = format!("survey-send#{request_id}");
    let begun = closedloop_core::idempotency::begin(
        running.store(),
        &tenant,
        &claim,
        closedloop_core::ports::Clock::now(clock.as_ref()),
        Default::default(),
    )
    .await
    .unwrap();
    assert!(matches!(
        begun,
        closedloop_core::idempotency::Begin::Started
    ));
    running.shutdown().await;

    // Restarted a few seconds later, well inside the claim's in-progress timeout.
    clock.advance(chrono::Duration::seconds(5));
    let running = start_with_clock(&dir, clock.clone()).await;
    scheduler_tick(&running).await;
    assert_eq!(rating_requests(), 1, "the cut-off request is sent once");
    scheduler_tick(&running).await;
    assert_eq!(rating_requests(), 1, "and only once");
    running.shutdown().await;
}
