//! The generic webhook connector: every helpdesk operation is a signed JSON POST to the
//! tenant's URL, `{"operation": "...", "tenant_id": ..., "idempotency_key": ..., ...}`, signed
//! like closedloop's generic webhooks (`X-Closedloop-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>">`). Any helpdesk can be connected by a small receiver of these calls; the demo
//! sandbox helpdesk is one. `docs/webhooks.md` documents every operation's body and answer.

use async_trait::async_trait;
use closedloop_core::domain::TicketSnapshot;
use closedloop_core::helpdesk::{
    AccountBlock, ConnectorError, HelpdeskConnector, HelpdeskOperation, NewTicket, Reopened,
};
use closedloop_core::ids::{AccountId, AgentId, TenantId, TicketId};
use closedloop_core::signature::sign_timestamped;
use serde_json::{Value, json};

use crate::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, classify, transport_error};

pub const VENDOR: &str = "generic_webhook";
/// Answers larger than this are not read (a ticket snapshot is a few KB).
const MAX_ANSWER_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct GenericWebhookConnector {
    client: reqwest::Client,
    tenant: TenantId,
    url: String,
    secret: String,
}

impl std::fmt::Debug for GenericWebhookConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericWebhookConnector")
            .field("tenant", &self.tenant)
            .field(
                "url",
                &closedloop_core::helpdesk::without_userinfo(&self.url),
            )
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl GenericWebhookConnector {
    pub fn new(client: reqwest::Client, tenant: TenantId, url: String, secret: String) -> Self {
        GenericWebhookConnector {
            client,
            tenant,
            url,
            secret,
        }
    }

    /// One signed call. `fields` are the operation's own; `key` is set for changes.
    async fn call(
        &self,
        operation: HelpdeskOperation,
        key: Option<&str>,
        fields: Value,
    ) -> Result<Value, ConnectorError> {
        let mut body = json!({ "operation": operation, "tenant_id": self.tenant });
        if let Some(key) = key {
            body["idempotency_key"] = json!(key);
        }
        if let (Value::Object(body), Value::Object(fields)) = (&mut body, fields) {
            body.extend(fields);
        }
        let bytes = serde_json::to_vec(&body).expect("JSON serialises");
        let signature = sign_timestamped(
            self.secret.as_bytes(),
            chrono::Utc::now().timestamp(),
            &bytes,
        );
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(bytes);
        if let Some(key) = key {
            request = request.header(IDEMPOTENCY_HEADER, key);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let answer = read_limited(response).await?;
        if !(200..300).contains(&status) {
            tracing::warn!(vendor = VENDOR, %operation, status, "helpdesk call refused");
            return Err(classify(
                VENDOR,
                Some(operation),
                status,
                retry_after.as_deref(),
                &answer,
            ));
        }
        if answer.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&answer).map_err(|e| ConnectorError::Rejected {
            status,
            message: format!("the answer to {operation} is not JSON: {e}"),
        })
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, ConnectorError> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if out.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ConnectorError::Rejected {
                status: response.status().as_u16(),
                message: format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn answer_field<T: serde::de::DeserializeOwned>(
    answer: &Value,
    field: &str,
    operation: HelpdeskOperation,
) -> Result<T, ConnectorError> {
    serde_json::from_value(answer[field].clone()).map_err(|e| ConnectorError::Rejected {
        status: 200,
        message: format!("the answer to {operation} must carry `{field}`: {e}"),
    })
}

#[async_trait]
impl HelpdeskConnector for GenericWebhookConnector {
    fn vendor(&self) -> &str {
        VENDOR
    }

    async fn add_internal_note(
        &self,
        key: &str,
        ticket: &TicketId,
        body: &str,
    ) -> Result<(), ConnectorError> {
        self.call(
            HelpdeskOperation::AddInternalNote,
            Some(key),
            json!({"ticket_id": ticket, "body": body}),
        )
        .await
        .map(drop)
    }

    async fn change_ticket_type(
        &self,
        key: &str,
        ticket: &TicketId,
        ticket_type: &str,
    ) -> Result<(), ConnectorError> {
        self.call(
            HelpdeskOperation::ChangeTicketType,
            Some(key),
            json!({"ticket_id": ticket, "ticket_type": ticket_type}),
        )
        .await
        .map(drop)
    }

    async fn list_ticket_types(&self) -> Result<Vec<String>, ConnectorError> {
        let op = HelpdeskOperation::ListTicketTypes;
        let answer = self.call(op, None, json!({})).await?;
        answer_field(&answer, "ticket_types", op)
    }

    async fn create_ticket(
        &self,
        key: &str,
        ticket: &NewTicket,
    ) -> Result<TicketId, ConnectorError> {
        let op = HelpdeskOperation::CreateTicket;
        let fields = serde_json::to_value(ticket).expect("new tickets serialise");
        let answer = self.call(op, Some(key), fields).await?;
        answer_field(&answer, "ticket_id", op)
    }

    async fn reopen_ticket(
        &self,
        key: &str,
        ticket: &TicketId,
    ) -> Result<Reopened, ConnectorError> {
        self.call(
            HelpdeskOperation::ReopenTicket,
            Some(key),
            json!({"ticket_id": ticket}),
        )
        .await
        .map(|_| Reopened::Reopened)
    }

    async fn set_ticket_status(
        &self,
        key: &str,
        ticket: &TicketId,
        status: &str,
    ) -> Result<(), ConnectorError> {
        self.call(
            HelpdeskOperation::SetTicketStatus,
            Some(key),
            json!({"ticket_id": ticket, "status": status}),
        )
        .await
        .map(drop)
    }

    async fn assign_agent(
        &self,
        key: &str,
        ticket: &TicketId,
        agent: &AgentId,
    ) -> Result<(), ConnectorError> {
        self.call(
            HelpdeskOperation::AssignAgent,
            Some(key),
            json!({"ticket_id": ticket, "agent_id": agent}),
        )
        .await
        .map(drop)
    }

    async fn add_tag(&self, key: &str, ticket: &TicketId, tag: &str) -> Result<(), ConnectorError> {
        self.call(
            HelpdeskOperation::AddTag,
            Some(key),
            json!({"ticket_id": ticket, "tag": tag}),
        )
        .await
        .map(drop)
    }

    async fn public_reply(
        &self,
        key: &str,
        ticket: &TicketId,
        body: &str,
    ) -> Result<(), ConnectorError> {
        self.call(
            HelpdeskOperation::PublicReply,
            Some(key),
            json!({"ticket_id": ticket, "body": body}),
        )
        .await
        .map(drop)
    }

    async fn fetch_ticket(&self, ticket: &TicketId) -> Result<TicketSnapshot, ConnectorError> {
        let op = HelpdeskOperation::FetchTicket;
        let answer = self.call(op, None, json!({"ticket_id": ticket})).await?;
        answer_field(&answer, "ticket", op)
    }

    async fn upsert_account_block(
        &self,
        key: &str,
        account: &AccountId,
        block: &AccountBlock,
    ) -> Result<(), ConnectorError> {
        self.call(
            HelpdeskOperation::UpsertAccountBlock,
            Some(key),
            json!({"account_id": account, "block": block}),
        )
        .await
        .map(drop)
    }

    async fn remove_account_block(
        &self,
        key: &str,
        account: &AccountId,
    ) -> Result<(), ConnectorError> {
        self.call(
            HelpdeskOperation::RemoveAccountBlock,
            Some(key),
            json!({"account_id": account}),
        )
        .await
        .map(drop)
    }
}
