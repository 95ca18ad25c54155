//! Freshdesk (API v2).
//!
//! Followed:
//! - Freshdesk API reference (developers.freshdesk.com/api): authentication with the API key
//!   as the basic-auth user and `X` as its password; "Add note to a ticket" (`POST
//!   /api/v2/tickets/{id}/notes`, `body`, `private`); "Reply to a ticket" (`POST
//!   /api/v2/tickets/{id}/reply`); "Update a ticket" (`PUT /api/v2/tickets/{id}`: `status`
//!   2 open, 3 pending, 4 resolved, 5 closed; `type`; `responder_id`; `tags`, which replaces the
//!   ticket's tags); "Create a ticket" (`subject`, `description`, `email`, `name`, `status`,
//!   `priority`); "View a ticket" (`?include=requester`); "Update a company" (`PUT
//!   /api/v2/companies/{id}`, its `note`); "List all ticket fields"
//!   (`?type=default_ticket_type`, its `choices`); "View the logged in agent" (`GET
//!   /api/v2/agents/me`).
//! - Note, reply and ticket description bodies are HTML ("Content of the note in HTML
//!   format"), so closedloop's plain text (a customer's comment among it) is escaped and its
//!   line breaks become `<br>`.
//! - Rate limits: per account and plan; 429 with `Retry-After`, and `X-RateLimit-Total` /
//!   `X-RateLimit-Remaining` on every answer (apis.io "Freshdesk Rate Limits").

use async_trait::async_trait;
use base64::Engine;
use closedloop_core::domain::TicketSnapshot;
use closedloop_core::helpdesk::{
    AccountBlock, ConnectorConfig, ConnectorError, ConnectorKind, HelpdeskConnector,
    HelpdeskOperation as Op, NewTicket, Reopened,
};
use closedloop_core::ids::{AccountId, AgentId, TicketId};
use reqwest::Method;
use serde_json::{Value, json};

use crate::block;

/// Plain text as the HTML Freshdesk shows: markup in it stays text.
fn html_body(text: &str) -> String {
    closedloop_core::html::escape(text).replace('\n', "<br>")
}
use crate::common::{TicketParts, parse_time};
use crate::http::{Api, Shared, Vendor, fingerprint, id_text, join, numeric_id};

pub const VENDOR: Vendor = Vendor {
    name: "Freshdesk",
    on_401: "check the API key (Profile settings > Your API Key)",
};
/// Freshdesk's documented status numbers.
pub const STATUSES: [(&str, i64); 4] =
    [("open", 2), ("pending", 3), ("resolved", 4), ("closed", 5)];

pub struct FreshdeskConnector {
    api: Api,
    base: String,
    authorization: String,
}

impl std::fmt::Debug for FreshdeskConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreshdeskConnector")
            .field("base", &self.base)
            .field("authorization", &"<redacted>")
            .finish()
    }
}

fn status_number(status: &str) -> Result<i64, ConnectorError> {
    let s = status.trim();
    if let Ok(n) = s.parse() {
        return Ok(n);
    }
    STATUSES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|(_, n)| *n)
        .ok_or_else(|| ConnectorError::Rejected {
            status: 400,
            message: format!("Freshdesk has no status '{status}'; it has open, pending, resolved, closed (or a custom status's number)"),
        })
}

fn status_name(n: i64) -> String {
    STATUSES
        .iter()
        .find(|(_, v)| *v == n)
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| n.to_string())
}

impl FreshdeskConnector {
    pub(crate) fn new(
        client: reqwest::Client,
        shared: &Shared,
        tenant: &str,
        config: ConnectorConfig,
    ) -> Self {
        let base = format!("{}/api/v2", config.url.trim_end_matches('/'));
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:X", config.secret))
        );
        let who = fingerprint(&[&base]);
        FreshdeskConnector {
            api: Api {
                client,
                vendor: VENDOR,
                limiter: shared.limiter(&format!("{tenant}:freshdesk:{who}"), None),
            },
            base,
            authorization,
        }
    }

    async fn call(
        &self,
        op: Option<Op>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ConnectorError> {
        let mut request = self
            .api
            .client
            .request(method, join(&self.base, path))
            .header("Authorization", &self.authorization)
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request.json(&body);
        }
        Ok(self.api.send(op, "all", request).await?.body)
    }

    async fn update(&self, op: Op, ticket: &TicketId, fields: Value) -> Result<(), ConnectorError> {
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        self.call(
            Some(op),
            Method::PUT,
            &format!("/tickets/{id}"),
            Some(fields),
        )
        .await
        .map(drop)
    }

    async fn company_note(
        &self,
        op: Op,
        account: &AccountId,
    ) -> Result<(i64, String), ConnectorError> {
        let id = numeric_id(VENDOR.name, "company", account.as_str())?;
        let company = self
            .call(Some(op), Method::GET, &format!("/companies/{id}"), None)
            .await?;
        Ok((id, company["note"].as_str().unwrap_or_default().to_string()))
    }

    async fn set_note(&self, op: Op, id: i64, note: String) -> Result<(), ConnectorError> {
        self.call(
            Some(op),
            Method::PUT,
            &format!("/companies/{id}"),
            Some(json!({"note": note})),
        )
        .await
        .map(drop)
    }
}

#[async_trait]
impl HelpdeskConnector for FreshdeskConnector {
    fn vendor(&self) -> &str {
        VENDOR.name
    }

    fn supports(&self, operation: Op) -> bool {
        ConnectorKind::Freshdesk.supports(operation)
    }

    async fn test_connection(&self) -> Result<String, ConnectorError> {
        let me = self.call(None, Method::GET, "/agents/me", None).await?;
        Ok(format!(
            "connected to Freshdesk as {}",
            me["contact"]["email"]
                .as_str()
                .unwrap_or("the API key's agent")
        ))
    }

    async fn add_internal_note(
        &self,
        _key: &str,
        ticket: &TicketId,
        body: &str,
    ) -> Result<(), ConnectorError> {
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        self.call(
            Some(Op::AddInternalNote),
            Method::POST,
            &format!("/tickets/{id}/notes"),
            Some(json!({"body": html_body(body), "private": true})),
        )
        .await
        .map(drop)
    }

    async fn change_ticket_type(
        &self,
        _key: &str,
        ticket: &TicketId,
        ticket_type: &str,
    ) -> Result<(), ConnectorError> {
        self.update(Op::ChangeTicketType, ticket, json!({"type": ticket_type}))
            .await
    }

    async fn list_ticket_types(&self) -> Result<Vec<String>, ConnectorError> {
        let fields = self
            .call(
                Some(Op::ListTicketTypes),
                Method::GET,
                "/ticket_fields?type=default_ticket_type",
                None,
            )
            .await?;
        Ok(fields
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|f| f["choices"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect())
    }

    async fn create_ticket(
        &self,
        _key: &str,
        ticket: &NewTicket,
    ) -> Result<TicketId, ConnectorError> {
        let requester = ticket
            .requester
            .as_ref()
            .ok_or_else(|| ConnectorError::Rejected {
                status: 400,
                message:
                    "Freshdesk needs a requester to create a ticket, and the cause has no customer"
                        .into(),
            })?;
        let created = self
            .call(
                Some(Op::CreateTicket),
                Method::POST,
                "/tickets",
                Some(
                    json!({"subject": ticket.subject, "description": html_body(&ticket.body),
                    "email": requester.email, "name": requester.name, "status": 2, "priority": 1}),
                ),
            )
            .await?;
        let id = id_text(&created["id"]).ok_or_else(|| self.api.malformed("id"))?;
        TicketId::parse(&id).map_err(|_| self.api.malformed("usable ticket id"))
    }

    async fn reopen_ticket(
        &self,
        _key: &str,
        ticket: &TicketId,
    ) -> Result<Reopened, ConnectorError> {
        self.update(Op::ReopenTicket, ticket, json!({"status": 2}))
            .await?;
        Ok(Reopened::Reopened)
    }

    async fn set_ticket_status(
        &self,
        _key: &str,
        ticket: &TicketId,
        status: &str,
    ) -> Result<(), ConnectorError> {
        self.update(
            Op::SetTicketStatus,
            ticket,
            json!({"status": status_number(status)?}),
        )
        .await
    }

    async fn assign_agent(
        &self,
        _key: &str,
        ticket: &TicketId,
        agent: &AgentId,
    ) -> Result<(), ConnectorError> {
        let id = numeric_id(VENDOR.name, "agent", agent.as_str())?;
        self.update(Op::AssignAgent, ticket, json!({"responder_id": id}))
            .await
    }

    /// `tags` on an update replaces them all: the ticket's tags are read and the new one added.
    async fn add_tag(
        &self,
        _key: &str,
        ticket: &TicketId,
        tag: &str,
    ) -> Result<(), ConnectorError> {
        let op = Op::AddTag;
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        let current = self
            .call(Some(op), Method::GET, &format!("/tickets/{id}"), None)
            .await?;
        let mut tags: Vec<String> = current["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        if tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
            return Ok(());
        }
        tags.push(tag.to_string());
        self.update(op, ticket, json!({"tags": tags})).await
    }

    async fn public_reply(
        &self,
        _key: &str,
        ticket: &TicketId,
        body: &str,
    ) -> Result<(), ConnectorError> {
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        self.call(
            Some(Op::PublicReply),
            Method::POST,
            &format!("/tickets/{id}/reply"),
            Some(json!({"body": html_body(body)})),
        )
        .await
        .map(drop)
    }

    async fn fetch_ticket(&self, ticket: &TicketId) -> Result<TicketSnapshot, ConnectorError> {
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        let t = self
            .call(
                Some(Op::FetchTicket),
                Method::GET,
                &format!("/tickets/{id}?include=requester"),
                None,
            )
            .await?;
        TicketParts {
            id: ticket.as_str().to_string(),
            subject: t["subject"].as_str().unwrap_or_default().to_string(),
            status: t["status"].as_i64().map(status_name).unwrap_or_default(),
            contact_id: id_text(&t["requester_id"]),
            contact_name: t["requester"]["name"].as_str().map(str::to_string),
            contact_email: t["requester"]["email"].as_str().map(str::to_string),
            account: id_text(&t["company_id"]).map(|id| (id, String::new())),
            ticket_type: t["type"].as_str().map(str::to_string),
            tags: t["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            updated_at: parse_time(&t["updated_at"]),
            created_at: parse_time(&t["created_at"]),
        }
        .into_snapshot(VENDOR.name)
    }

    async fn upsert_account_block(
        &self,
        _key: &str,
        account: &AccountId,
        b: &AccountBlock,
    ) -> Result<(), ConnectorError> {
        let op = Op::UpsertAccountBlock;
        let (id, note) = self.company_note(op, account).await?;
        if let Some(new) = block::upserted(&note, b) {
            self.set_note(op, id, new).await?;
        }
        Ok(())
    }

    async fn remove_account_block(
        &self,
        _key: &str,
        account: &AccountId,
    ) -> Result<(), ConnectorError> {
        let op = Op::RemoveAccountBlock;
        let (id, note) = self.company_note(op, account).await?;
        if let Some(new) = block::removed(&note) {
            self.set_note(op, id, new).await?;
        }
        Ok(())
    }
}
