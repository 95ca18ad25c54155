//! The end-to-end flow on the stack deployed into ministack (scripts/deploy-ministack.sh):
//! through API Gateway, the real Lambda binaries, the table's stream, EventBridge rules, and SES.
#![cfg(feature = "emulators")]

use std::time::{Duration, Instant};

use closedloop_aws::store::DynamoStore;
use closedloop_core::domain::TenantSettings;
use closedloop_core::ids::TenantId;
use closedloop_core::ports::{Clock, SystemClock};
use closedloop_core::signature::sign_timestamped;
use closedloop_core::tenancy;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with scripts/test.sh, which deploys the stack into ministack")
    })
}

async fn ministack_sdk() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(env("CLOSEDLOOP_MINISTACK_URL"))
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

/// Every sent message the emulator reports, as JSON. ministack answers
/// `{"messages": {"<account>": [ ... ]}}`; any object with a subject-like field counts.
async fn sent_mail(http: &reqwest::Client) -> Vec<serde_json::Value> {
    fn collect(value: &serde_json::Value, found: &mut Vec<serde_json::Value>) {
        match value {
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, found)),
            serde_json::Value::Object(map) => {
                if map.keys().any(|k| k.eq_ignore_ascii_case("subject"))
                    || map.contains_key("Subject")
                {
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
    let body: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
    let mut found = Vec::new();
    collect(&body, &mut found);
    found
}

#[tokio::test]
async fn ticket_closed_webhook_through_the_deployed_stack_sends_a_rating_request() {
    let api = env("CLOSEDLOOP_STACK_API_URL");
    let sdk = ministack_sdk().await;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        env("CLOSEDLOOP_STACK_TABLE"),
    );
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let tenant = TenantId::parse(&format!("t{}", &run[..12])).unwrap();
    let provisioned = tenancy::provision_tenant(
        &store,
        tenant.clone(),
        "Deployed",
        TenantSettings::default(),
        SystemClock.now(),
    )
    .await
    .unwrap();

    let subject = format!("Deployed stack {run}");
    let body = serde_json::json!({
        "delivery_id": format!("d-{run}"), "type": "ticket.closed", "occurred_at": SystemClock.now(),
        "ticket": { "id": "T-1", "subject": subject, "status": "closed",
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
    let http = reqwest::Client::new();
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

    // A bad signature is refused by the deployed function too.
    let refused = http
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // The stream → event-relay → EventBridge → survey-scheduler → SES chain is asynchronous.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ours: Vec<_> = sent_mail(&http)
            .await
            .into_iter()
            .filter(|m| m.to_string().contains(&subject))
            .collect();
        if !ours.is_empty() {
            assert_eq!(ours.len(), 1, "exactly one rating request: {ours:?}");
            let text = ours[0].to_string();
            assert!(text.contains("bob@customer.example"), "{text}");
            assert!(
                text.contains("/r/"),
                "the email carries rating links: {text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rating request arrived within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
