//! Autotask PSA (REST API v1.0).
//!
//! Followed:
//! - Autotask developer help, "REST API security and authentication" and "API tracking
//!   identifier" (ww1.autotask.net/help/Content/4_Admin/1CompanySettings_Users/ResourcesUsersHR/
//!   Resources/API_Tracking_Identifier.htm): the `ApiIntegrationCode`, `UserName` and `Secret`
//!   headers on every call; the zone is looked up first
//!   (`GET https://webservices.autotask.net/atservicesrest/v1.0/zoneInformation?user=<user>`,
//!   answering the zone's `url`), and every other call goes to that zone.
//! - "TicketNotes" entity (ww1.autotask.net/help/developerhelp/Content/APIs/REST/Entities/
//!   TicketNotesEntity.htm): created as a child of the ticket, `POST Tickets/{id}/Notes` with
//!   `title`, `description`, `noteType`, `publish`.
//! - REST entity conventions: `PATCH Tickets` with the ticket's `id` and the changed fields;
//!   picklists (`status`, `ticketType`) from `Tickets/entityInformation/fields`; `POST
//!   <Entity>/query` with a `filter`; `CompanyAlerts` (`companyID`, `alertTypeID`, `alertText`)
//!   for the account's flag, created with `POST CompanyAlerts` and changed with `PATCH`.
//! - The limit of 10,000 calls per hour per database.
//!
//! Tickets have no tags, and a ticket note emails no one, so `add_tag` and `public_reply` are
//! unsupported.

use std::time::Duration;

use async_trait::async_trait;
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
use crate::http::{Api, Cap, Shared, Vendor, fingerprint, id_text, join, numeric_id};

pub const VENDOR: Vendor = Vendor {
    name: "Autotask",
    on_401: "check the API user's user name, secret and integration code",
};
pub const ZONE_LOOKUP: &str = "https://webservices.autotask.net/atservicesrest";
/// Documented: 10,000 calls per hour per database.
pub const HOURLY_CAP: u32 = 10_000;
/// `CompanyAlerts.alertTypeID` 1: the alert shown on the company's detail page.
const COMPANY_DETAIL_ALERT: i64 = 1;

pub struct AutotaskConnector {
    api: Api,
    lookup_base: String,
    zone_key: String,
    shared_zones: std::sync::Arc<Shared>,
    config: ConnectorConfig,
}

impl std::fmt::Debug for AutotaskConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutotaskConnector")
            .field("lookup_base", &self.lookup_base)
            .field("config", &self.config)
            .finish()
    }
}

impl AutotaskConnector {
    pub(crate) fn new(
        client: reqwest::Client,
        shared: std::sync::Arc<Shared>,
        tenant: &str,
        config: ConnectorConfig,
    ) -> Self {
        let lookup_base = if config.url.is_empty() {
            ZONE_LOOKUP.to_string()
        } else {
            config.url.trim_end_matches('/').to_string()
        };
        let s = &config.settings;
        let who = fingerprint(&[
            &lookup_base,
            s.username.as_deref().unwrap_or_default(),
            s.integration_code.as_deref().unwrap_or_default(),
        ]);
        let cap = Cap {
            calls: s.hourly_cap.unwrap_or(HOURLY_CAP).min(HOURLY_CAP),
            per: Duration::from_secs(3600),
        };
        AutotaskConnector {
            api: Api {
                client,
                vendor: VENDOR,
                limiter: shared.limiter(&format!("{tenant}:autotask:{who}"), Some(cap)),
            },
            zone_key: format!("{tenant}:autotask:{who}"),
            shared_zones: shared,
            lookup_base,
            config,
        }
    }

    /// The zone's API base (`https://webservicesN.autotask.net/atservicesrest`), looked up
    /// once per process and credentials.
    async fn zone(&self) -> Result<String, ConnectorError> {
        if let Some(url) = self
            .shared_zones
            .zones
            .lock()
            .expect("zone map lock")
            .get(&self.zone_key)
        {
            return Ok(url.clone());
        }
        let user = self.config.settings.username.as_deref().unwrap_or_default();
        let request = self
            .api
            .client
            .get(join(&self.lookup_base, "/v1.0/zoneInformation"))
            .query(&[("user", user)])
            .header("Accept", "application/json");
        let answer = self.api.send(None, "all", request).await?;
        let url = answer.body["url"]
            .as_str()
            .ok_or_else(|| {
                ConnectorError::Unauthorized(format!(
                    "Autotask knows no zone for the user '{user}': check settings.username"
                ))
            })?
            .trim_end_matches('/')
            .to_string();
        closedloop_core::helpdesk::validate_url(&url)
            .map_err(|e| ConnectorError::Misconfigured(format!("Autotask's zone {e}")))?;
        self.shared_zones
            .zones
            .lock()
            .expect("zone map lock")
            .insert(self.zone_key.clone(), url.clone());
        Ok(url)
    }

    async fn call(
        &self,
        op: Option<Op>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ConnectorError> {
        let s = &self.config.settings;
        let zone = self.zone().await?;
        let mut request = self
            .api
            .client
            .request(method, join(&zone, path))
            .header(
                "ApiIntegrationCode",
                s.integration_code.as_deref().unwrap_or_default(),
            )
            .header("UserName", s.username.as_deref().unwrap_or_default())
            .header("Secret", &self.config.secret)
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request.json(&body);
        }
        Ok(self.api.send(op, "all", request).await?.body)
    }

    /// The labels and values of one of the ticket's picklists (`status`, `ticketType`).
    async fn picklist(&self, op: Op, name: &str) -> Result<Vec<(i64, String)>, ConnectorError> {
        let info = self
            .call(
                Some(op),
                Method::GET,
                "/v1.0/Tickets/entityInformation/fields",
                None,
            )
            .await?;
        Ok(info["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| {
                f["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .flat_map(|f| f["picklistValues"].as_array().cloned().unwrap_or_default())
            .filter(|v| v["isActive"].as_bool() != Some(false))
            .filter_map(|v| {
                let value = v["value"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .or(v["value"].as_i64())?;
                Some((value, v["label"].as_str()?.to_string()))
            })
            .collect())
    }

    async fn pick(&self, op: Op, picklist: &str, wanted: &str) -> Result<i64, ConnectorError> {
        if let Ok(id) = wanted.trim().parse() {
            return Ok(id);
        }
        let choices = self.picklist(op, picklist).await?;
        pick_id(VENDOR.name, picklist, wanted, &choices)
    }

    async fn patch_ticket(
        &self,
        op: Op,
        ticket: &TicketId,
        mut fields: Value,
    ) -> Result<(), ConnectorError> {
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        fields["id"] = json!(id);
        self.call(Some(op), Method::PATCH, "/v1.0/Tickets", Some(fields))
            .await
            .map(drop)
    }

    async fn ticket(&self, op: Op, ticket: &TicketId) -> Result<Value, ConnectorError> {
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        let answer = self
            .call(Some(op), Method::GET, &format!("/v1.0/Tickets/{id}"), None)
            .await?;
        let item = answer["item"].clone();
        if item.is_null() {
            return Err(ConnectorError::Rejected {
                status: 404,
                message: format!("Autotask has no ticket {id}"),
            });
        }
        Ok(item)
    }

    /// The company's detail alert: (alert id, text).
    async fn alert(&self, op: Op, company: i64) -> Result<Option<(i64, String)>, ConnectorError> {
        let alert_type = self
            .config
            .settings
            .id("alert_type_id")
            .unwrap_or(COMPANY_DETAIL_ALERT);
        let found = self
            .call(
                Some(op),
                Method::POST,
                "/v1.0/CompanyAlerts/query",
                Some(json!({"filter": [
                    {"op": "eq", "field": "companyID", "value": company},
                    {"op": "eq", "field": "alertTypeID", "value": alert_type},
                ]})),
            )
            .await?;
        Ok(found["items"].as_array().and_then(|items| {
            let a = items.first()?;
            Some((
                a["id"].as_i64()?,
                a["alertText"].as_str().unwrap_or_default().to_string(),
            ))
        }))
    }

    async fn set_alert(&self, op: Op, alert: i64, text: String) -> Result<(), ConnectorError> {
        self.call(
            Some(op),
            Method::PATCH,
            "/v1.0/CompanyAlerts",
            Some(json!({"id": alert, "alertText": text})),
        )
        .await
        .map(drop)
    }
}

#[async_trait]
impl HelpdeskConnector for AutotaskConnector {
    fn vendor(&self) -> &str {
        VENDOR.name
    }

    fn supports(&self, operation: Op) -> bool {
        ConnectorKind::Autotask.supports(operation)
    }

    async fn test_connection(&self) -> Result<String, ConnectorError> {
        let zone = self.zone().await?;
        let statuses = self.picklist(Op::ListTicketTypes, "status").await?;
        Ok(format!(
            "connected to Autotask zone {zone}; {} ticket statuses",
            statuses.len()
        ))
    }

    async fn add_internal_note(
        &self,
        _key: &str,
        ticket: &TicketId,
        body: &str,
    ) -> Result<(), ConnectorError> {
        let id = numeric_id(VENDOR.name, "ticket", ticket.as_str())?;
        let s = &self.config.settings;
        self.call(
            Some(Op::AddInternalNote),
            Method::POST,
            &format!("/v1.0/Tickets/{id}/Notes"),
            Some(json!({
                "ticketID": id,
                "title": "closedloop",
                "description": body,
                "noteType": s.id("note_type").unwrap_or(1),
                "publish": s.id("note_publish").unwrap_or(2),
            })),
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
        let op = Op::ChangeTicketType;
        let value = self.pick(op, "ticketType", ticket_type).await?;
        self.patch_ticket(op, ticket, json!({"ticketType": value}))
            .await
    }

    async fn list_ticket_types(&self) -> Result<Vec<String>, ConnectorError> {
        Ok(self
            .picklist(Op::ListTicketTypes, "ticketType")
            .await?
            .into_iter()
            .map(|(_, label)| label)
            .collect())
    }

    async fn create_ticket(
        &self,
        _key: &str,
        ticket: &NewTicket,
    ) -> Result<TicketId, ConnectorError> {
        let op = Op::CreateTicket;
        let s = &self.config.settings;
        let company = match &ticket.related_ticket_id {
            Some(related) => self.ticket(op, related).await?["companyID"].as_i64(),
            None => None,
        }
        .or(s.id("company_id"))
        .ok_or_else(|| {
            missing(
                VENDOR.name,
                "ids.company_id",
                "create a ticket not related to another",
            )
        })?;
        let mut body = json!({
            "companyID": company,
            "title": ticket.subject.chars().take(255).collect::<String>(),
            "description": ticket.body,
            "status": s.id("status").unwrap_or(1),
            "priority": s.id("priority").ok_or_else(|| missing(VENDOR.name, "ids.priority", "create tickets"))?,
        });
        if let Some(queue) = s.id("queue_id") {
            body["queueID"] = json!(queue);
        }
        let created = self
            .call(Some(op), Method::POST, "/v1.0/Tickets", Some(body))
            .await?;
        let id = id_text(&created["itemId"]).ok_or_else(|| self.api.malformed("itemId"))?;
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
            .unwrap_or_else(|| "1".into());
        let status = self.pick(op, "status", &wanted).await?;
        self.patch_ticket(op, ticket, json!({"status": status}))
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
        let value = self.pick(op, "status", status).await?;
        self.patch_ticket(op, ticket, json!({"status": value}))
            .await
    }

    async fn assign_agent(
        &self,
        _key: &str,
        ticket: &TicketId,
        agent: &AgentId,
    ) -> Result<(), ConnectorError> {
        let resource = numeric_id(VENDOR.name, "resource", agent.as_str())?;
        // Autotask assigns a resource in a role, and wants both.
        let role = self.config.settings.id("role_id").ok_or_else(|| {
            missing(
                VENDOR.name,
                "ids.role_id",
                "assign a resource (Autotask assigns a resource in a role)",
            )
        })?;
        self.patch_ticket(
            Op::AssignAgent,
            ticket,
            json!({"assignedResourceID": resource, "assignedResourceRoleID": role}),
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
        _ticket: &TicketId,
        _body: &str,
    ) -> Result<(), ConnectorError> {
        Err(unsupported(VENDOR.name, Op::PublicReply))
    }

    async fn fetch_ticket(&self, ticket: &TicketId) -> Result<TicketSnapshot, ConnectorError> {
        let op = Op::FetchTicket;
        let t = self.ticket(op, ticket).await?;
        // The ticket names its contact by id only.
        let contact = match t["contactID"].as_i64() {
            Some(id) => self
                .call(Some(op), Method::GET, &format!("/v1.0/Contacts/{id}"), None)
                .await?["item"]
                .clone(),
            None => Value::Null,
        };
        let name = [contact["firstName"].as_str(), contact["lastName"].as_str()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        TicketParts {
            id: ticket.as_str().to_string(),
            subject: t["title"].as_str().unwrap_or_default().to_string(),
            status: id_text(&t["status"]).unwrap_or_default(),
            contact_id: id_text(&t["contactID"]),
            contact_name: Some(name),
            contact_email: contact["emailAddress"].as_str().map(str::to_string),
            account: id_text(&t["companyID"]).map(|id| (id, String::new())),
            ticket_type: id_text(&t["ticketType"]),
            tags: vec![],
            updated_at: parse_time(&t["lastActivityDate"]),
            created_at: parse_time(&t["createDate"]),
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
        match self.alert(op, company).await? {
            Some((id, text)) => {
                let new = block::upsert(&text, b);
                if new != text {
                    self.set_alert(op, id, new).await?;
                }
            }
            None => {
                let alert_type = self
                    .config
                    .settings
                    .id("alert_type_id")
                    .unwrap_or(COMPANY_DETAIL_ALERT);
                self.call(
                    Some(op),
                    Method::POST,
                    "/v1.0/CompanyAlerts",
                    Some(json!({"companyID": company, "alertTypeID": alert_type,
                        "alertText": block::upsert("", b)})),
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
        if let Some((id, text)) = self.alert(op, company).await?
            && block::has_block(&text)
        {
            self.set_alert(op, id, block::remove(&text)).await?;
        }
        Ok(())
    }
}
