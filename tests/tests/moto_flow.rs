//! The end-to-end flow on the AWS adapters against moto on loopback: a `ticket.closed` webhook
//! in (DynamoDB), relayed to EventBridge, routed by the template's pattern (to an SQS queue
//! standing in for the Lambda target), handled by `survey-scheduler`, email out through SES v2.
#![cfg(feature = "emulators")]

mod common;

use std::sync::Arc;

use aws_sdk_eventbridge::types::Target;
use axum::body::Body;
use axum::http::Request;
use closedloop_aws::events::EventBridgePublisher;
use closedloop_aws::mail::SesMailer;
use closedloop_aws::store::{DynamoStore, create_table};
use closedloop_core::domain::TenantSettings;
use closedloop_core::ids::TenantId;
use closedloop_core::outbox::StreamEvent;
use closedloop_core::ports::{Clock, SystemClock};
use closedloop_core::signature::sign_timestamped;
use closedloop_core::store::{ItemStore, Query};
use closedloop_core::surveys::LinkSigner;
use closedloop_core::tokens::TokenKeyring;
use closedloop_core::{keys, tenancy};
use closedloop_eventpattern::template::Routes;
use tower::ServiceExt;

use common::moto_url;

async fn sdk() -> aws_config::SdkConfig {
    common::emulator_sdk(&moto_url()).await
}

/// Every object in moto's state dump that looks like a sent SES message.
fn sent_messages(dump: &serde_json::Value, found: &mut Vec<serde_json::Value>) {
    match dump {
        serde_json::Value::Object(map) => {
            if map.contains_key("subject") && map.contains_key("destinations") {
                found.push(dump.clone());
            }
            map.values().for_each(|v| sent_messages(v, found));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| sent_messages(v, found)),
        _ => {}
    }
}

#[tokio::test]
async fn ticket_closed_webhook_to_rating_request_email_on_moto() {
    let sdk = sdk().await;
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let table = format!("closedloop-{run}");
    let bus = format!("closedloop-{run}");
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ses = aws_sdk_sesv2::Client::new(&sdk);
    create_table(&dynamo, &table).await.unwrap();
    events.create_event_bus().name(&bus).send().await.unwrap();
    ses.create_email_identity()
        .email_identity("feedback@example.com")
        .send()
        .await
        .unwrap();

    // One queue per target function, fed by the template's own EventBridge patterns.
    let routes = Routes::from_template_yaml(include_str!("../../template.yaml")).unwrap();
    let mut queue_of = std::collections::HashMap::new();
    for function in routes.functions.iter().filter(|f| !f.events.is_empty()) {
        let queue = sqs
            .create_queue()
            .queue_name(format!("{run}-{}", function.logical_id))
            .send()
            .await
            .unwrap();
        let url = queue.queue_url().unwrap().to_string();
        let arn = format!(
            "arn:aws:sqs:us-east-1:123456789012:{run}-{}",
            function.logical_id
        );
        for (i, route) in function.events.iter().enumerate() {
            let rule = format!("{run}-{}-{i}", function.logical_id);
            events
                .put_rule()
                .name(&rule)
                .event_bus_name(&bus)
                .event_pattern(route.pattern.as_json().to_string())
                .send()
                .await
                .unwrap();
            events
                .put_targets()
                .rule(&rule)
                .event_bus_name(&bus)
                .targets(Target::builder().id("q").arn(&arn).build().unwrap())
                .send()
                .await
                .unwrap();
        }
        queue_of.insert(function.logical_id.clone(), url);
    }

    let store: Arc<dyn ItemStore> = Arc::new(DynamoStore::new(dynamo.clone(), table.clone()));
    let tenant = TenantId::parse("acme").unwrap();
    let provisioned = tenancy::provision_tenant(
        store.as_ref(),
        tenant.clone(),
        "Acme",
        TenantSettings::default(),
        SystemClock.now(),
    )
    .await
    .unwrap();

    // 1. The helpdesk's webhook, through the `webhooks` Router, into DynamoDB.
    let body = serde_json::json!({
        "delivery_id": format!("d-{run}"), "type": "ticket.closed", "occurred_at": SystemClock.now(),
        "ticket": { "id": "T-77", "subject": format!("Scanner offline {run}"), "status": "closed",
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
    let app = webhooks::router(webhooks::WebhooksState {
        store: store.clone(),
        clock: Arc::new(SystemClock),
    });
    let response = app
        .oneshot(
            Request::post("/webhooks/acme/generic")
                .header("content-type", "application/json")
                .header("X-Closedloop-Signature", signature)
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    // 2. The outbox item, as the table's stream would carry it, through `event-relay` to EventBridge.
    let outbox = store
        .query(Query::partition(keys::outbox_partition(&tenant)))
        .await
        .unwrap();
    assert_eq!(outbox.items.len(), 1);
    let records: Vec<_> = outbox
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| serde_json::json!({"eventName": "INSERT", "dynamodb": {"SequenceNumber": i.to_string(), "NewImage": item}}))
        .collect();
    let stream: StreamEvent =
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap();
    let publisher = EventBridgePublisher::new(events.clone(), bus.clone());
    let relayed = event_relay::handle(&publisher, stream).await;
    assert!(relayed.batch_item_failures.is_empty());

    // 3. EventBridge routed it by the template's pattern to the survey scheduler's queue...
    let queue = &queue_of["SurveySchedulerFunction"];
    let mut delivered = Vec::new();
    for _ in 0..10 {
        let received = sqs
            .receive_message()
            .queue_url(queue)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        delivered.extend(
            received
                .messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_string)),
        );
        if !delivered.is_empty() {
            break;
        }
    }
    assert_eq!(
        delivered.len(),
        1,
        "exactly one ticket.closed reached the survey scheduler"
    );
    // ...and not to the actions function, whose pattern is action.requested only.
    let actions = sqs
        .receive_message()
        .queue_url(&queue_of["ActionsFunction"])
        .send()
        .await
        .unwrap();
    assert!(actions.messages().is_empty());

    // 4. The survey scheduler handles it and mails through SES.
    let event: serde_json::Value = serde_json::from_str(&delivered[0]).unwrap();
    let keyring = TokenKeyring::parse(&TokenKeyring::generate_spec("k1")).unwrap();
    let links = LinkSigner {
        keyring: &keyring,
        public_base_url: "https://feedback.acme.example",
    };
    let mailer = SesMailer::new(ses.clone(), "feedback@example.com");
    let handled = survey_scheduler::handle(store.as_ref(), &mailer, &SystemClock, &links, &event)
        .await
        .unwrap();
    assert!(
        matches!(
            handled,
            survey_scheduler::Handled::TicketEvent(
                closedloop_core::surveys::ScheduleOutcome::Scheduled { sent_now: true, .. }
            )
        ),
        "{handled:?}"
    );
    // A redelivery of the same event sends nothing more.
    survey_scheduler::handle(store.as_ref(), &mailer, &SystemClock, &links, &event)
        .await
        .unwrap();

    // 5. Read the mail back from the emulator.
    let dump: serde_json::Value = reqwest::get(format!("{}/moto-api/data.json", moto_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut messages = Vec::new();
    sent_messages(&dump, &mut messages);
    let ours: Vec<_> = messages
        .iter()
        .filter(|m| {
            m["subject"]
                .as_str()
                .is_some_and(|s| s.contains(&format!("Scanner offline {run}")))
                && m.to_string().contains("bob@customer.example")
        })
        .collect();
    assert_eq!(ours.len(), 1, "one rating request to Bob: {messages:?}");
    // moto keeps the HTML part, where minijinja escapes '/' inside attribute values.
    let html = ours[0]["body"].as_str().unwrap().replace("&#x2f;", "/");
    assert_eq!(
        html.matches("https://feedback.acme.example/r/").count(),
        3,
        "three CSAT links"
    );
}

#[tokio::test]
async fn the_publisher_batches_by_ten_and_every_event_arrives_once() {
    let sdk = sdk().await;
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let bus = format!("batch-{run}");
    events.create_event_bus().name(&bus).send().await.unwrap();
    let queue = sqs
        .create_queue()
        .queue_name(format!("batch-{run}"))
        .send()
        .await
        .unwrap();
    let url = queue.queue_url().unwrap().to_string();
    events
        .put_rule()
        .name(format!("all-{run}"))
        .event_bus_name(&bus)
        .event_pattern(r#"{"source": ["closedloop"]}"#)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule(format!("all-{run}"))
        .event_bus_name(&bus)
        .targets(
            Target::builder()
                .id("q")
                .arn(format!("arn:aws:sqs:us-east-1:123456789012:batch-{run}"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    let sent: Vec<_> = (0..23)
        .map(|i| {
            closedloop_core::event::EventEnvelope::new_root(
                tenant.clone(),
                closedloop_core::event::EventType::TicketCreated,
                SystemClock.now(),
                serde_json::json!({ "n": i }),
            )
        })
        .collect();
    let publisher = EventBridgePublisher::new(events.clone(), bus.clone());
    closedloop_core::ports::EventPublisher::publish(&publisher, &sent)
        .await
        .unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let received = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in received.messages() {
            let event: serde_json::Value = serde_json::from_str(message.body().unwrap()).unwrap();
            assert!(
                ids.insert(event["detail"]["event_id"].as_str().unwrap().to_string()),
                "delivered twice"
            );
            sqs.delete_message()
                .queue_url(&url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        if ids.len() == sent.len() {
            break;
        }
    }
    let expected: std::collections::BTreeSet<_> =
        sent.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(ids, expected);
}
