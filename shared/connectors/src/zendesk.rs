//! Zendesk Support (API v2).
//!
//! Followed:
//! - "Ticket comments" (developer.zendesk.com/rest_api/docs/support/ticket_comments): comments
//!   are made with the Tickets API, a `comment` object (`body`, `public`) in the ticket of
//!   `PUT /api/v2/tickets/{id}.json`; the same update carries `status` and `type`; basic auth as
//!   `{email_address}/token:{api_token}` (or an OAuth access token as a bearer).
//! - Tickets API: `POST /api/v2/tickets.json` (`subject`, `comment`, `requester`,
//!   `via_followup_source_id` for a follow-up of a closed ticket), `GET
//!   /api/v2/tickets/{id}.json?include=users`, `PUT /api/v2/tickets/{id}/tags.json` (adds
//!   tags); a closed ticket cannot be updated, only followed up.
//! - Organizations API: `GET`/`PUT /api/v2/organizations/{id}.json`, `organization.notes` (read,
//!   changed in our block only, written back); the Update Organization endpoint's own limit of
//!   5 calls a minute (support.zendesk.com/hc/en-us/articles/4422518967706).
//! - Rate limits: 429 with `Retry-After`, and `X-Rate-Limit-Remaining` / `ratelimit-reset` on
//!   every answer.
//!
//! Ticket types are Zendesk's fixed four (`problem`, `incident`, `question`, `task`).

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
use crate::common::{TicketParts, follow_up_subject, parse_time};
use crate::http::{Api, Shared, Vendor, fingerprint, id_text, join, numeric_id};

pub const VENDOR: Vendor = Vendor {
    name: "Zendesk",
    on_401: "check the agent's email address and API token (or the OAuth token)",
};
pub const TICKET_TYPES: [&str; 4] = ["problem", "incident", "question", "task"];

pub struct ZendeskConnector {
    api: Api,
    base: String,
    authorization: String,
}

impl std::fmt::Debug for ZendeskConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZendeskConnector")
            .field("base", &self.base)
            .field("authorization", &"<redacted>")
            .finish()
    }
}

impl ZendeskConnector {
    pub(crate) fn new(
        client: reqwest::Client,
        shared: &Shared,
        tenant: &str,
        config: ConnectorConfig,
    ) -> Self {
        let base = format!("{}/api/v2", config.url.trim_end_matches('/'));
        let authorization = match &config.settings.email {
            Some(email) => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{email}/token:{}", config.secret))
            ),
            None => format!("Bearer {}", config.secret),
        };
        let who = fingerprint(&[&base]);
        ZendeskConnector {
            api: Api {
                client,
                vendor: VENDOR,
                limiter: shared.limiter(&format!("{tenant}:zendesk:{who}"), None),
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
            &format!("/tickets/{id}.json"),
            Some(json!({"ticket": fields})),
        )
        .await
        .map(drop)
    }

    async fn organization_notes(
        &self,
        op: Op,
        account: &AccountId,
    ) -> Result<(i64, String), ConnectorError> {
        let id = numeric_id(VENDOR.name, "organization", account.as_str())?;
        let org = self
            .call(
                Some(op),
                Method::GET,
                &format!("/organizations/{id}.json"),
                None,
            )
            .await?;
        Ok((
            id,
            org["organization"]["notes"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ))
    }

    async fn set_notes(&self, op: Op, id: i64, notes: String) -> Result<(), ConnectorError> {
        self.call(
            Some(op),
            Method::PUT,
            &format!("/organizations/{id}.json"),
            Some(json!({"organization": {"notes": notes}})),
        )
        .await
        .map(drop)
    }

    fn created_id(&self, created: &Value) -> Result<TicketId, ConnectorError> {
        let id =
            id_text(&created["ticket"]["id"]).ok_or_else(|| self.api.malformed("ticket.id"))?;
        TicketId::parse(&id).map_err(|_| self.api.malformed("usable ticket id"))
    }
}

#[async_trait]
impl HelpdeskConnector for ZendeskConnector {
    fn vendor(&self) -> &str {
        VENDOR.name
    }

    fn supports(&self, operation: Op) -> bool {
        ConnectorKind::Zendesk.supports(operation)
    }

    async fn test_connection(&self) -> Result<String, ConnectorError> {
        let me = self.call(None, Method::GET, "/users/me.json", None).await?;
        // Without valid credentials Zendesk may answer as an anonymous user (no id).
        if me["user"]["id"].is_null() {
            return Err(ConnectorError::Unauthorized(format!(
                "Zendesk answered as an anonymous user: {}",
                VENDOR.on_401
            )));
        }
        Ok(format!(
            "connected to Zendesk as {} ({})",
            me["user"]["name"].as_str().unwrap_or("?"),
            me["user"]["role"].as_str().unwrap_or("?")
        ))
    }

    async fn add_internal_note(
        &self,
        _key: &str,
        ticket: &TicketId,
        body: &str,
    ) -> Result<(), ConnectorError> {
        self.update(
            Op::AddInternalNote,
            ticket,
            json!({"comment": {"body": body, "public": false}}),
        )
        .await
    }

    async fn change_ticket_type(
        &self,
        _key: &str,
        ticket: &TicketId,
        ticket_type: &str,
    ) -> Result<(), ConnectorError> {
        let t = ticket_type.trim().to_ascii_lowercase();
        if !TICKET_TYPES.contains(&t.as_str()) {
            return Err(ConnectorError::Rejected {
                status: 400,
                message: format!(
                    "Zendesk has no ticket type '{ticket_type}'; it has {}",
                    TICKET_TYPES.join(", ")
                ),
            });
        }
        self.update(Op::ChangeTicketType, ticket, json!({"type": t}))
            .await
    }

    async fn list_ticket_types(&self) -> Result<Vec<String>, ConnectorError> {
        Ok(TICKET_TYPES.iter().map(|t| t.to_string()).collect())
    }

    async fn create_ticket(
        &self,
        _key: &str,
        ticket: &NewTicket,
    ) -> Result<TicketId, ConnectorError> {
        let mut new = json!({"subject": ticket.subject, "comment": {"body": ticket.body}});
        if let Some(r) = &ticket.requester {
            new["requester"] = json!({"name": r.name, "email": r.email});
        }
        let created = self
            .call(
                Some(Op::CreateTicket),
                Method::POST,
                "/tickets.json",
                Some(json!({"ticket": new})),
            )
            .await?;
        self.created_id(&created)
    }

    /// A closed Zendesk ticket cannot be reopened: a follow-up ticket is created instead.
    async fn reopen_ticket(
        &self,
        _key: &str,
        ticket: &TicketId,
    ) -> Result<Reopened, ConnectorError> {
        let op = Op::ReopenTicket;
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        let current = self
            .call(Some(op), Method::GET, &format!("/tickets/{id}.json"), None)
            .await?;
        let t = &current["ticket"];
        if t["status"].as_str() != Some("closed") {
            self.update(op, ticket, json!({"status": "open"})).await?;
            return Ok(Reopened::Reopened);
        }
        let follow_up = json!({"ticket": {
            "via_followup_source_id": id,
            "subject": follow_up_subject(t["subject"].as_str().unwrap_or_default()),
            "comment": {"body": format!("Reopened by closedloop: ticket #{id} is closed, so this follow-up continues it."), "public": false},
            "requester_id": t["requester_id"],
        }});
        let created = self
            .call(Some(op), Method::POST, "/tickets.json", Some(follow_up))
            .await?;
        Ok(Reopened::FollowUpCreated {
            ticket_id: self.created_id(&created)?,
        })
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
            json!({"status": status.trim().to_ascii_lowercase()}),
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
        self.update(Op::AssignAgent, ticket, json!({"assignee_id": id}))
            .await
    }

    async fn add_tag(
        &self,
        _key: &str,
        ticket: &TicketId,
        tag: &str,
    ) -> Result<(), ConnectorError> {
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        self.call(
            Some(Op::AddTag),
            Method::PUT,
            &format!("/tickets/{id}/tags.json"),
            Some(json!({"tags": [tag]})),
        )
        .await
        .map(drop)
    }

    async fn public_reply(
        &self,
        _key: &str,
        ticket: &TicketId,
        body: &str,
    ) -> Result<(), ConnectorError> {
        self.update(
            Op::PublicReply,
            ticket,
            json!({"comment": {"body": body, "public": true}}),
        )
        .await
    }

    async fn fetch_ticket(&self, ticket: &TicketId) -> Result<TicketSnapshot, ConnectorError> {
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        let answer = self
            .call(
                Some(Op::FetchTicket),
                Method::GET,
                &format!("/tickets/{id}.json?include=users"),
                None,
            )
            .await?;
        let t = &answer["ticket"];
        let requester = answer["users"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|u| u["id"] == t["requester_id"])
            .cloned()
            .unwrap_or(Value::Null);
        TicketParts {
            id: ticket.as_str().to_string(),
            subject: t["subject"].as_str().unwrap_or_default().to_string(),
            status: t["status"].as_str().unwrap_or_default().to_string(),
            contact_id: id_text(&t["requester_id"]),
            contact_name: requester["name"].as_str().map(str::to_string),
            contact_email: requester["email"].as_str().map(str::to_string),
            account: id_text(&t["organization_id"]).map(|id| (id, String::new())),
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
        let (id, notes) = self.organization_notes(op, account).await?;
        if let Some(new) = block::upserted(&notes, b) {
            self.set_notes(op, id, new).await?;
        }
        Ok(())
    }

    async fn remove_account_block(
        &self,
        _key: &str,
        account: &AccountId,
    ) -> Result<(), ConnectorError> {
        let op = Op::RemoveAccountBlock;
        let (id, notes) = self.organization_notes(op, account).await?;
        if let Some(new) = block::removed(&notes) {
            self.set_notes(op, id, new).await?;
        }
        Ok(())
    }
}
