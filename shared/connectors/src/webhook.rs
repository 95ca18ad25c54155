//! A rule's `post_webhook`: the event, POSTed as JSON and signed with the action's own secret
//! the way closedloop's generic webhooks are (`X-Closedloop-Signature`).

use async_trait::async_trait;
use closedloop_core::helpdesk::{ConnectorError, OutgoingWebhook, WebhookSender};
use closedloop_core::signature::sign_timestamped;

use crate::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, classify, transport_error};

#[derive(Clone)]
pub struct HttpWebhookSender {
    client: reqwest::Client,
}

impl HttpWebhookSender {
    pub fn new(client: reqwest::Client) -> Self {
        HttpWebhookSender { client }
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn post_webhook(&self, webhook: &OutgoingWebhook) -> Result<u16, ConnectorError> {
        let body = serde_json::to_vec(&webhook.body).expect("JSON serialises");
        let signature = sign_timestamped(
            webhook.secret.as_bytes(),
            chrono::Utc::now().timestamp(),
            &body,
        );
        let response = self
            .client
            .post(&webhook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(IDEMPOTENCY_HEADER, &webhook.idempotency_key)
            .body(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(status);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Only the start of the answer: enough for the receiver's message.
        let answer = response.bytes().await.unwrap_or_default();
        let answer = &answer[..answer.len().min(4096)];
        Err(classify(
            "the webhook receiver",
            None,
            status,
            retry_after.as_deref(),
            answer,
        ))
    }
}
