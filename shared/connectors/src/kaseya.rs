//! Kaseya BMS (REST API v2).
//!
//! Followed:
//! - "V2 BMS Rest APIs", help.bms.kaseya.com/help/Content/BMS%20API/bms-api-v2-bms-rest-apis.html:
//!   one host per region (api.bms / api.bmsemea / api.bmsapac .kaseya.com, api.vorexlogin.com),
//!   a token from `/v2/security/authenticate`, "The V2 API call limit is 1500 per hour per
//!   endpoint".
//! - The BMS OpenAPI document (`/swagger/v2/swagger.json`, as mirrored in
//!   github.com/api-evangelist/kaseya `openapi/kaseya-bms-openapi-original.json`):
//!   `Authenticate` takes form fields `GrantType`, `UserName`, `Password`, `Tenant` and answers
//!   `{Success, Error, Result: {AccessToken, AccessTokenExpireOn, ...}}`; `PostTicketNote`
//!   (`POST /v2/servicedesk/tickets/{ticketId}/notes`, `TicketNotePostInputDto`: `Details`,
//!   `IsInternal`, `TypeId`, `NoteDate` required); `PatchTicket` (`PATCH
//!   /v2/servicedesk/tickets/{ticketId}`, an array of JSON-Patch `Operation`s);
//!   `POST /v2/servicedesk/tickets` (`TicketInputDto`); `GET /v2/crm/accounts/summary/{id}` and
//!   `PatchAccount` (`PATCH /v2/crm/accounts/{id}`) for the account's `Description`;
//!   `/v2/system/statuses/lookup` and `/v2/system/lookup/{tableName}` (`{Id, Name}`).
//!   Every operation documents only a 200: failures come back as `Success: false` with
//!   `Error.Message` inside it, and are failures here.
//!
//! Tickets have no tags: `add_tag` is unsupported.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use closedloop_core::domain::TicketSnapshot;
use closedloop_core::helpdesk::{
    AccountBlock, ConnectorConfig, ConnectorError, ConnectorKind, HelpdeskConnector,
    HelpdeskOperation as Op, NewTicket, Reopened,
};
use closedloop_core::ids::{AccountId, AgentId, TicketId};
use reqwest::Method;
use serde_json::{Value, json};

use crate::block;
use crate::common::{TicketParts, missing, parse_time, pick_id, unsupported};
use crate::http::{
    Api, Cap, Shared, TokenSlot, Vendor, field, fingerprint, id_text, join, numeric_id,
};

pub const VENDOR: Vendor = Vendor {
    name: "Kaseya BMS",
    on_401: "check the API user's name, password and company (tenant) name",
};
/// Documented: 1,500 calls per hour per endpoint.
pub const HOURLY_CAP: u32 = 1500;
/// When the token's expiry is not said, it is renewed this often.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(30 * 60);

pub fn region_host(region: &str) -> Option<&'static str> {
    Some(match region {
        "us" => "https://api.bms.kaseya.com",
        "emea" => "https://api.bmsemea.kaseya.com",
        "apac" => "https://api.bmsapac.kaseya.com",
        "vorex" => "https://api.vorexlogin.com",
        _ => return None,
    })
}

pub struct KaseyaBmsConnector {
    api: Api,
    base: String,
    config: ConnectorConfig,
    token: Arc<TokenSlot>,
}

impl std::fmt::Debug for KaseyaBmsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KaseyaBmsConnector")
            .field("base", &self.base)
            .field("config", &self.config)
            .finish()
    }
}

impl KaseyaBmsConnector {
    pub(crate) fn new(
        client: reqwest::Client,
        shared: &Shared,
        tenant: &str,
        config: ConnectorConfig,
    ) -> Self {
        let base = if config.url.is_empty() {
            config
                .settings
                .region
                .as_deref()
                .and_then(region_host)
                .unwrap_or("https://api.bms.kaseya.com")
                .to_string()
        } else {
            config.url.trim_end_matches('/').to_string()
        };
        let s = &config.settings;
        let who = fingerprint(&[
            &base,
            s.username.as_deref().unwrap_or_default(),
            s.company.as_deref().unwrap_or_default(),
            &config.secret,
        ]);
        let cap = Cap {
            calls: s.hourly_cap.unwrap_or(HOURLY_CAP).min(HOURLY_CAP),
            per: Duration::from_secs(3600),
        };
        KaseyaBmsConnector {
            api: Api {
                client,
                vendor: VENDOR,
                limiter: shared.limiter(&format!("{tenant}:kaseya_bms:{who}"), Some(cap)),
            },
            token: shared.token_slot(&format!("{tenant}:kaseya_bms:{who}")),
            base,
            config,
        }
    }

    async fn login(&self) -> Result<(String, Duration), ConnectorError> {
        let s = &self.config.settings;
        let form = [
            ("GrantType", "password"),
            ("UserName", s.username.as_deref().unwrap_or_default()),
            ("Password", self.config.secret.as_str()),
            ("Tenant", s.company.as_deref().unwrap_or_default()),
        ];
        let request = self
            .api
            .client
            .post(join(&self.base, "/v2/security/authenticate"))
            .header("Accept", "application/json")
            .form(&form);
        let answer = self
            .api
            .send(None, "POST /v2/security/authenticate", request)
            .await?;
        let result = self.result(answer.body).map_err(|e| match e {
            // A refused login is a credentials problem, whatever the status.
            ConnectorError::Rejected { message, .. } => ConnectorError::Unauthorized(format!(
                "Kaseya BMS refused the login: {} ({message})",
                VENDOR.on_401
            )),
            other => other,
        })?;
        let token = field(&result, "AccessToken")
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.api.malformed("AccessToken"))?
            .to_string();
        let ttl = parse_time(field(&result, "AccessTokenExpireOn"))
            .and_then(|at| (at - Utc::now()).to_std().ok())
            .unwrap_or(DEFAULT_TOKEN_TTL);
        Ok((token, ttl))
    }

    /// `Result` of a `{Success, Error, Result}` answer; `Success: false` is a failure.
    fn result(&self, body: Value) -> Result<Value, ConnectorError> {
        if field(&body, "Success").as_bool() == Some(false) {
            let error = field(&body, "Error");
            let message = field(error, "Message")
                .as_str()
                .or_else(|| field(error, "Details").as_str())
                .unwrap_or("no reason given")
                .to_string();
            return Err(self.api.refused_in_body(message));
        }
        let result = field(&body, "Result");
        Ok(if result.is_null() {
            body
        } else {
            result.clone()
        })
    }

    /// One API call with the token, renewed once if BMS refuses it before its time.
    async fn call(
        &self,
        op: Option<Op>,
        method: Method,
        path: &str,
        bucket: &str,
        body: Option<Value>,
    ) -> Result<Value, ConnectorError> {
        let mut renewed = false;
        loop {
            let token = self.token.get(|| self.login()).await?;
            let mut request = self
                .api
                .client
                .request(method.clone(), join(&self.base, path))
                .bearer_auth(&token)
                .header("Accept", "application/json");
            if let Some(body) = &body {
                request = request.json(body);
            }
            match self.api.send(op, bucket, request).await {
                Err(ConnectorError::Unauthorized(_)) if !renewed => {
                    self.token.forget(&token).await;
                    renewed = true;
                }
                Err(e) => return Err(e),
                Ok(answer) => return self.result(answer.body),
            }
        }
    }

    async fn patch_ticket(
        &self,
        op: Op,
        ticket: &TicketId,
        path: &str,
        value: Value,
    ) -> Result<(), ConnectorError> {
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        self.call(
            Some(op),
            Method::PATCH,
            &format!("/v2/servicedesk/tickets/{id}"),
            "PATCH /v2/servicedesk/tickets/{id}",
            Some(json!([{"op": "replace", "path": path, "value": value}])),
        )
        .await
        .map(drop)
    }

    async fn lookup(&self, op: Op, path: &str) -> Result<Vec<(i64, String)>, ConnectorError> {
        let result = self
            .call(Some(op), Method::GET, path, &format!("GET {path}"), None)
            .await?;
        Ok(result
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| field(v, "IsActive").as_bool() != Some(false))
            .filter_map(|v| {
                Some((
                    field(v, "Id").as_i64()?,
                    field(v, "Name").as_str()?.to_string(),
                ))
            })
            .collect())
    }

    async fn status_id(&self, op: Op, status: &str) -> Result<i64, ConnectorError> {
        if let Ok(id) = status.trim().parse() {
            return Ok(id);
        }
        let statuses = self.lookup(op, "/v2/system/statuses/lookup").await?;
        pick_id(VENDOR.name, "status", status, &statuses)
    }

    async fn note(
        &self,
        op: Op,
        ticket: &TicketId,
        body: &str,
        internal: bool,
    ) -> Result<(), ConnectorError> {
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        let note = json!({
            "Details": body,
            "IsInternal": internal,
            "TypeId": self.config.settings.id("note_type_id").unwrap_or(0),
            "NoteDate": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        self.call(
            Some(op),
            Method::POST,
            &format!("/v2/servicedesk/tickets/{id}/notes"),
            "POST /v2/servicedesk/tickets/{id}/notes",
            Some(note),
        )
        .await
        .map(drop)
    }

    async fn account_description(
        &self,
        op: Op,
        account: &AccountId,
    ) -> Result<(i64, String), ConnectorError> {
        let id = numeric_id(VENDOR.name, "account", account.as_str())?;
        let summary = self
            .call(
                Some(op),
                Method::GET,
                &format!("/v2/crm/accounts/summary/{id}"),
                "GET /v2/crm/accounts/summary/{id}",
                None,
            )
            .await?;
        let text = field(&summary, "Description")
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok((id, text))
    }

    async fn set_description(&self, op: Op, id: i64, text: String) -> Result<(), ConnectorError> {
        self.call(
            Some(op),
            Method::PATCH,
            &format!("/v2/crm/accounts/{id}"),
            "PATCH /v2/crm/accounts/{id}",
            Some(json!([{"op": "replace", "path": "/Description", "value": text}])),
        )
        .await
        .map(drop)
    }

    async fn ticket(&self, op: Op, ticket: &TicketId) -> Result<Value, ConnectorError> {
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        self.call(
            Some(op),
            Method::GET,
            &format!("/v2/servicedesk/tickets/{id}"),
            "GET /v2/servicedesk/tickets/{id}",
            None,
        )
        .await
    }
}

#[async_trait]
impl HelpdeskConnector for KaseyaBmsConnector {
    fn vendor(&self) -> &str {
        VENDOR.name
    }

    fn supports(&self, operation: Op) -> bool {
        ConnectorKind::KaseyaBms.supports(operation)
    }

    async fn test_connection(&self) -> Result<String, ConnectorError> {
        let statuses = self
            .lookup(Op::ListTicketTypes, "/v2/system/statuses/lookup")
            .await?;
        Ok(format!(
            "logged in to Kaseya BMS at {}; {} ticket statuses",
            self.base,
            statuses.len()
        ))
    }

    async fn add_internal_note(
        &self,
        _key: &str,
        ticket: &TicketId,
        body: &str,
    ) -> Result<(), ConnectorError> {
        self.note(Op::AddInternalNote, ticket, body, true).await
    }

    async fn change_ticket_type(
        &self,
        _key: &str,
        ticket: &TicketId,
        ticket_type: &str,
    ) -> Result<(), ConnectorError> {
        let op = Op::ChangeTicketType;
        let types = if ticket_type.trim().parse::<i64>().is_ok() {
            vec![]
        } else {
            self.lookup(op, "/v2/system/lookup/TicketType").await?
        };
        let id = pick_id(VENDOR.name, "ticket type", ticket_type, &types)?;
        self.patch_ticket(op, ticket, "/TypeId", json!(id)).await
    }

    async fn list_ticket_types(&self) -> Result<Vec<String>, ConnectorError> {
        Ok(self
            .lookup(Op::ListTicketTypes, "/v2/system/lookup/TicketType")
            .await?
            .into_iter()
            .map(|(_, name)| name)
            .collect())
    }

    async fn create_ticket(
        &self,
        _key: &str,
        ticket: &NewTicket,
    ) -> Result<TicketId, ConnectorError> {
        let op = Op::CreateTicket;
        let s = &self.config.settings;
        let need = |name: &str| {
            s.id(name)
                .ok_or_else(|| missing(VENDOR.name, &format!("ids.{name}"), "create tickets"))
        };
        // The follow-up is for the same account, location and contact as its cause.
        let (account, location, contact) = match &ticket.related_ticket_id {
            Some(related) => {
                let t = self.ticket(op, related).await?;
                (
                    field(&t, "AccountId").as_i64(),
                    field(&t, "LocationId").as_i64(),
                    field(&t, "ContactId").as_i64(),
                )
            }
            None => (s.id("account_id"), s.id("location_id"), None),
        };
        let body = json!({
            "Title": ticket.subject,
            "Details": ticket.body,
            "AccountId": account.map_or_else(|| need("account_id"), Ok)?,
            "LocationId": location.map_or_else(|| need("location_id"), Ok)?,
            "ContactId": contact,
            "StatusId": need("status_id")?,
            "PriorityId": need("priority_id")?,
            "TypeId": need("type_id")?,
            "SourceId": need("source_id")?,
            "OpenDate": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        let created = self
            .call(
                Some(op),
                Method::POST,
                "/v2/servicedesk/tickets",
                "POST /v2/servicedesk/tickets",
                Some(body),
            )
            .await?;
        let id = id_text(field(&created, "Id")).ok_or_else(|| self.api.malformed("Result.Id"))?;
        TicketId::parse(&id).map_err(|_| self.api.malformed("usable ticket id"))
    }

    async fn reopen_ticket(
        &self,
        _key: &str,
        ticket: &TicketId,
    ) -> Result<Reopened, ConnectorError> {
        let op = Op::ReopenTicket;
        let wanted = self
            .config
            .settings
            .reopen_status
            .clone()
            .unwrap_or_else(|| "Open".into());
        let id = self.status_id(op, &wanted).await?;
        self.patch_ticket(op, ticket, "/StatusId", json!(id))
            .await?;
        Ok(Reopened::Reopened)
    }

    async fn set_ticket_status(
        &self,
        _key: &str,
        ticket: &TicketId,
        status: &str,
    ) -> Result<(), ConnectorError> {
        let op = Op::SetTicketStatus;
        let id = self.status_id(op, status).await?;
        self.patch_ticket(op, ticket, "/StatusId", json!(id)).await
    }

    async fn assign_agent(
        &self,
        _key: &str,
        ticket: &TicketId,
        agent: &AgentId,
    ) -> Result<(), ConnectorError> {
        let id = numeric_id(VENDOR.name, "employee", agent.as_str())?;
        self.patch_ticket(Op::AssignAgent, ticket, "/AssigneeId", json!(id))
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
        self.note(Op::PublicReply, ticket, body, false).await
    }

    async fn fetch_ticket(&self, ticket: &TicketId) -> Result<TicketSnapshot, ConnectorError> {
        let t = self.ticket(Op::FetchTicket, ticket).await?;
        let text = |name: &str| field(&t, name).as_str().map(str::to_string);
        TicketParts {
            id: ticket.as_str().to_string(),
            subject: text("Title").unwrap_or_default(),
            status: text("StatusName").unwrap_or_default(),
            contact_id: id_text(field(&t, "ContactId")),
            contact_name: text("ContactName"),
            contact_email: text("ContactEmail"),
            account: id_text(field(&t, "AccountId"))
                .map(|id| (id, text("AccountName").unwrap_or_default())),
            ticket_type: text("TypeName"),
            tags: vec![],
            updated_at: parse_time(field(&t, "ModifiedOn")),
            created_at: parse_time(field(&t, "CreatedOn")),
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
        let (id, text) = self.account_description(op, account).await?;
        if let Some(new) = block::upserted(&text, b) {
            self.set_description(op, id, new).await?;
        }
        Ok(())
    }

    async fn remove_account_block(
        &self,
        _key: &str,
        account: &AccountId,
    ) -> Result<(), ConnectorError> {
        let op = Op::RemoveAccountBlock;
        let (id, text) = self.account_description(op, account).await?;
        if let Some(new) = block::removed(&text) {
            self.set_description(op, id, new).await?;
        }
        Ok(())
    }
}
