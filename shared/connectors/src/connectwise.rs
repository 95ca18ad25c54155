//! ConnectWise PSA (Manage REST API 3.0).
//!
//! Followed:
//! - ConnectWise developer network, "ClientID" (developer.connectwise.com/ClientID-testing):
//!   the `clientId` header is required on every request.
//! - ConnectWise's developer documentation as republished at
//!   app.preshmarketingsolutions.com/help/connectwise-developer-documentation, and the API
//!   member setup (support.appxite.com "How to obtain ConnectWise credentials"): Basic
//!   authentication with `<companyId>+<publicKey>:<privateKey>`, the site URL
//!   (`https://na.myconnectwise.net`, ...) and `/v4_6_release/apis/3.0`.
//! - The `ServiceNote` model of the 3.0 API (`text`, `detailDescriptionFlag`,
//!   `internalAnalysisFlag`, `resolutionFlag`, `processNotifications`) for
//!   `POST /service/tickets/{id}/notes`; JSON-Patch (`[{"op","path","value"}]`) on
//!   `PATCH /service/tickets/{id}`; `GET/POST/PATCH/DELETE /company/companies/{id}/notes` for the
//!   company's notes; `/service/boards/{id}/types`; `/system/info`.
//!
//! The internal note is an internal-analysis note; a public reply is a discussion
//! (detail-description) note with notifications processed. Tickets have no tags.

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
use crate::common::{TicketParts, missing, parse_time, unsupported};
use crate::http::{Api, Shared, Vendor, fingerprint, id_text, join, numeric_id};

pub const VENDOR: Vendor = Vendor {
    name: "ConnectWise",
    on_401: "check the public/private key pair and the company id",
};

pub struct ConnectwiseConnector {
    api: Api,
    base: String,
    authorization: String,
    client_id: String,
    config: ConnectorConfig,
}

impl std::fmt::Debug for ConnectwiseConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectwiseConnector")
            .field("base", &self.base)
            .field("authorization", &"<redacted>")
            .field("config", &self.config)
            .finish()
    }
}

impl ConnectwiseConnector {
    pub(crate) fn new(
        client: reqwest::Client,
        shared: &Shared,
        tenant: &str,
        config: ConnectorConfig,
    ) -> Self {
        let site = config.url.trim_end_matches('/');
        // The site URL, or the API's own base if it was given whole.
        let base = if site.contains("/apis/") {
            site.to_string()
        } else {
            format!("{site}/v4_6_release/apis/3.0")
        };
        let s = &config.settings;
        let company = s.company.as_deref().unwrap_or_default();
        let public = s.public_key.as_deref().unwrap_or_default();
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{company}+{public}:{}", config.secret))
        );
        let who = fingerprint(&[&base, company, public]);
        ConnectwiseConnector {
            api: Api {
                client,
                vendor: VENDOR,
                limiter: shared.limiter(&format!("{tenant}:connectwise:{who}"), None),
            },
            client_id: s.client_id.clone().unwrap_or_default(),
            base,
            authorization,
            config,
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
            .header("clientId", &self.client_id)
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request.json(&body);
        }
        Ok(self.api.send(op, "all", request).await?.body)
    }

    async fn patch_ticket(
        &self,
        op: Op,
        ticket: &TicketId,
        patch: Value,
    ) -> Result<(), ConnectorError> {
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        self.call(
            Some(op),
            Method::PATCH,
            &format!("/service/tickets/{id}"),
            Some(patch),
        )
        .await
        .map(drop)
    }

    async fn note(
        &self,
        op: Op,
        ticket: &TicketId,
        text: &str,
        public: bool,
    ) -> Result<(), ConnectorError> {
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        let mut note = json!({
            "text": text,
            "detailDescriptionFlag": public,
            "internalAnalysisFlag": !public,
            "resolutionFlag": false,
        });
        if public {
            note["processNotifications"] = json!(true);
        }
        self.call(
            Some(op),
            Method::POST,
            &format!("/service/tickets/{id}/notes"),
            Some(note),
        )
        .await
        .map(drop)
    }

    /// A reference by name, or by id when the rule gives a number.
    fn reference(value: &str) -> Value {
        match value.trim().parse::<i64>() {
            Ok(id) => json!({"id": id}),
            Err(_) => json!({"name": value}),
        }
    }

    /// The company's note holding closedloop's block, if there is one: (note id, text).
    async fn block_note(
        &self,
        op: Op,
        company: i64,
    ) -> Result<Option<(i64, String)>, ConnectorError> {
        let notes = self
            .call(
                Some(op),
                Method::GET,
                &format!("/company/companies/{company}/notes?pageSize=1000"),
                None,
            )
            .await?;
        Ok(notes.as_array().into_iter().flatten().find_map(|n| {
            let text = n["text"].as_str()?;
            block::has_block(text).then(|| Some((n["id"].as_i64()?, text.to_string())))?
        }))
    }

    async fn set_note_text(
        &self,
        op: Op,
        company: i64,
        note: i64,
        text: String,
    ) -> Result<(), ConnectorError> {
        self.call(
            Some(op),
            Method::PATCH,
            &format!("/company/companies/{company}/notes/{note}"),
            Some(json!([{"op": "replace", "path": "text", "value": text}])),
        )
        .await
        .map(drop)
    }

    async fn ticket(&self, op: Op, ticket: &TicketId) -> Result<Value, ConnectorError> {
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        self.call(
            Some(op),
            Method::GET,
            &format!("/service/tickets/{id}"),
            None,
        )
        .await
    }
}

#[async_trait]
impl HelpdeskConnector for ConnectwiseConnector {
    fn vendor(&self) -> &str {
        VENDOR.name
    }

    fn supports(&self, operation: Op) -> bool {
        ConnectorKind::Connectwise.supports(operation)
    }

    async fn test_connection(&self) -> Result<String, ConnectorError> {
        let info = self.call(None, Method::GET, "/system/info", None).await?;
        Ok(format!(
            "connected to ConnectWise PSA {}",
            info["version"].as_str().unwrap_or("(version not given)")
        ))
    }

    async fn add_internal_note(
        &self,
        _key: &str,
        ticket: &TicketId,
        body: &str,
    ) -> Result<(), ConnectorError> {
        self.note(Op::AddInternalNote, ticket, body, false).await
    }

    async fn change_ticket_type(
        &self,
        _key: &str,
        ticket: &TicketId,
        ticket_type: &str,
    ) -> Result<(), ConnectorError> {
        self.patch_ticket(
            Op::ChangeTicketType,
            ticket,
            json!([{"op": "replace", "path": "type", "value": Self::reference(ticket_type)}]),
        )
        .await
    }

    async fn list_ticket_types(&self) -> Result<Vec<String>, ConnectorError> {
        let board =
            self.config.settings.id("board_id").ok_or_else(|| {
                missing(VENDOR.name, "ids.board_id", "list the board's ticket types")
            })?;
        let types = self
            .call(
                Some(Op::ListTicketTypes),
                Method::GET,
                &format!("/service/boards/{board}/types"),
                None,
            )
            .await?;
        Ok(types
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["inactiveFlag"].as_bool() != Some(true))
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect())
    }

    async fn create_ticket(
        &self,
        _key: &str,
        ticket: &NewTicket,
    ) -> Result<TicketId, ConnectorError> {
        let op = Op::CreateTicket;
        let board = self
            .config
            .settings
            .id("board_id")
            .ok_or_else(|| missing(VENDOR.name, "ids.board_id", "create tickets"))?;
        let company = match &ticket.related_ticket_id {
            Some(related) => self.ticket(op, related).await?["company"]["id"].as_i64(),
            None => None,
        }
        .or(self.config.settings.id("company_id"))
        .ok_or_else(|| {
            missing(
                VENDOR.name,
                "ids.company_id",
                "create a ticket not related to another",
            )
        })?;
        let created = self
            .call(
                Some(op),
                Method::POST,
                "/service/tickets",
                Some(json!({
                    "summary": ticket.subject.chars().take(100).collect::<String>(),
                    "initialDescription": ticket.body,
                    "board": {"id": board},
                    "company": {"id": company},
                })),
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
        let status = self
            .config
            .settings
            .reopen_status
            .clone()
            .unwrap_or_else(|| "Open".into());
        self.patch_ticket(
            Op::ReopenTicket,
            ticket,
            json!([{"op": "replace", "path": "status", "value": Self::reference(&status)}]),
        )
        .await?;
        Ok(Reopened::Reopened)
    }

    async fn set_ticket_status(
        &self,
        _key: &str,
        ticket: &TicketId,
        status: &str,
    ) -> Result<(), ConnectorError> {
        self.patch_ticket(
            Op::SetTicketStatus,
            ticket,
            json!([{"op": "replace", "path": "status", "value": Self::reference(status)}]),
        )
        .await
    }

    async fn assign_agent(
        &self,
        _key: &str,
        ticket: &TicketId,
        agent: &AgentId,
    ) -> Result<(), ConnectorError> {
        // A member by id, or by its identifier (login name).
        let owner = match agent.as_str().parse::<i64>() {
            Ok(id) => json!({"id": id}),
            Err(_) => json!({"identifier": agent.as_str()}),
        };
        self.patch_ticket(
            Op::AssignAgent,
            ticket,
            json!([{"op": "replace", "path": "owner", "value": owner}]),
        )
        .await
    }

    async fn add_tag(
        &self,
        _key: &str,
        _ticket: &TicketId,
        _tag: &str,
    ) -> Result<(), ConnectorError> {
        Err(unsupported(VENDOR.name, Op::AddTag))
    }

    async fn public_reply(
        &self,
        _key: &str,
        ticket: &TicketId,
        body: &str,
    ) -> Result<(), ConnectorError> {
        self.note(Op::PublicReply, ticket, body, true).await
    }

    async fn fetch_ticket(&self, ticket: &TicketId) -> Result<TicketSnapshot, ConnectorError> {
        let t = self.ticket(Op::FetchTicket, ticket).await?;
        let text = |v: &Value| v.as_str().map(str::to_string);
        TicketParts {
            id: ticket.as_str().to_string(),
            subject: text(&t["summary"]).unwrap_or_default(),
            status: text(&t["status"]["name"]).unwrap_or_default(),
            contact_id: id_text(&t["contact"]["id"]),
            contact_name: text(&t["contactName"]).or_else(|| text(&t["contact"]["name"])),
            contact_email: text(&t["contactEmailAddress"]),
            account: id_text(&t["company"]["id"])
                .map(|id| (id, text(&t["company"]["name"]).unwrap_or_default())),
            ticket_type: text(&t["type"]["name"]),
            tags: vec![],
            updated_at: parse_time(&t["_info"]["lastUpdated"]),
            created_at: parse_time(&t["_info"]["dateEntered"]),
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
        let company = numeric_id(VENDOR.name, "company", account.as_str())?;
        match self.block_note(op, company).await? {
            Some((note, text)) => {
                let new = block::upsert(&text, b);
                if new != text {
                    self.set_note_text(op, company, note, new).await?;
                }
            }
            None => {
                self.call(
                    Some(op),
                    Method::POST,
                    &format!("/company/companies/{company}/notes"),
                    Some(json!({"text": block::upsert("", b)})),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn remove_account_block(
        &self,
        _key: &str,
        account: &AccountId,
    ) -> Result<(), ConnectorError> {
        let op = Op::RemoveAccountBlock;
        let company = numeric_id(VENDOR.name, "company", account.as_str())?;
        let Some((note, text)) = self.block_note(op, company).await? else {
            return Ok(());
        };
        let rest = block::remove(&text);
        if rest.is_empty() {
            // The note was only ever ours.
            self.call(
                Some(op),
                Method::DELETE,
                &format!("/company/companies/{company}/notes/{note}"),
                None,
            )
            .await?;
        } else {
            self.set_note_text(op, company, note, rest).await?;
        }
        Ok(())
    }
}
