//! The demo's sandbox helpdesk: a few tickets that `curl` can close. Closing one sends a real,
//! signed generic webhook to the `webhooks` function, exactly as a helpdesk would.
//!
//! It is also the demo tenant's connected helpdesk: `POST /sandbox/helpdesk` receives the
//! generic connector's signed calls (`docs/webhooks.md`, "Outgoing"), applies them to its
//! tickets, and, like a real helpdesk, reports a change it made back as a webhook (a reopen
//! comes back as `ticket.reopened` or `ticket.status_changed`). `GET /sandbox/helpdesk/calls`
//! lists what it received, and `GET /sandbox/tickets/{id}` shows a ticket as it is now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use closedloop_core::domain::{Agent, Contact, CustomerAccount, Email, TicketSnapshot};
use closedloop_core::helpdesk::{self, ConnectorKind};
use closedloop_core::ids::{AccountId, ContactId, TenantId, TicketId};
use closedloop_core::ingest::SIGNATURE_HEADER;
use closedloop_core::signature::{sign_timestamped, verify_timestamped};
use closedloop_core::store::ItemStore;
use closedloop_http::ApiError;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::functions::{Functions, WEBHOOKS};
use crate::setup::{TenantCredentials, demo_agent};

pub struct DemoTicket {
    pub id: &'static str,
    pub subject: &'static str,
    pub contact: (&'static str, &'static str, &'static str),
    pub account: (&'static str, &'static str),
    pub agent: &'static str,
}

pub const DEMO_TICKETS: [DemoTicket; 4] = [
    DemoTicket {
        id: "1001",
        subject: "Printer on floor 2 jams on every job",
        contact: ("c-bob", "Bob Stone", "bob@northwind.example"),
        account: ("acc-northwind", "Northwind Traders"),
        agent: "a-alice",
    },
    DemoTicket {
        id: "1002",
        subject: "VPN drops every 10 minutes",
        contact: ("c-cindy", "Cindy Park", "cindy@northwind.example"),
        account: ("acc-northwind", "Northwind Traders"),
        agent: "a-alice",
    },
    DemoTicket {
        id: "1003",
        subject: "New laptop for the sales team",
        contact: ("c-dan", "Dan Ortiz", "dan@contoso.example"),
        account: ("acc-contoso", "Contoso Ltd"),
        agent: "a-mark",
    },
    DemoTicket {
        id: "1004",
        subject: "Password reset for the ERP",
        contact: ("c-erin", "Erin Wu", "erin@contoso.example"),
        account: ("acc-contoso", "Contoso Ltd"),
        agent: "a-mark",
    },
];

/// The ticket types the sandbox offers (`list_ticket_types`).
pub const TICKET_TYPES: [&str; 4] = ["question", "incident", "problem", "task"];

pub fn demo_agents() -> Vec<Agent> {
    vec![
        demo_agent("a-alice", "Alice Meyer", "alice@demo.example", true),
        demo_agent("a-mark", "Mark Chen", "mark@demo.example", false),
    ]
}

/// Where the demo tenant's generic connector points.
pub const HELPDESK_PATH: &str = "/sandbox/helpdesk";

/// Points the demo tenant's connector at this run's sandbox (keeping its secret).
pub async fn connect_demo_tenant(
    store: &dyn ItemStore,
    tenant: &TenantCredentials,
    base_url: &str,
    now: DateTime<Utc>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let id = TenantId::parse(&tenant.tenant)?;
    let url = format!("{base_url}{HELPDESK_PATH}");
    if helpdesk::get_config(store, &id)
        .await?
        .is_some_and(|c| c.url == url)
    {
        return Ok(());
    }
    helpdesk::put_config(
        store,
        &id,
        ConnectorKind::GenericWebhook,
        &url,
        Default::default(),
        None,
        now,
    )
    .await?;
    Ok(())
}

/// A sandbox ticket as it is now.
#[derive(Debug, Clone)]
struct SandboxTicket {
    id: String,
    subject: String,
    contact: Contact,
    agent: Option<String>,
    status: String,
    tags: Vec<String>,
    ticket_type: String,
    notes: Vec<Value>,
}

impl SandboxTicket {
    fn from_demo(t: &DemoTicket) -> Self {
        SandboxTicket {
            id: t.id.into(),
            subject: t.subject.into(),
            contact: Contact {
                id: ContactId::parse(t.contact.0).expect("demo ids are valid"),
                name: t.contact.1.into(),
                email: Email::parse(t.contact.2).expect("demo emails are valid"),
                account: Some(CustomerAccount {
                    id: AccountId::parse(t.account.0).expect("demo ids are valid"),
                    name: t.account.1.into(),
                }),
            },
            agent: Some(t.agent.into()),
            status: "open".into(),
            tags: vec![],
            ticket_type: "question".into(),
            notes: vec![],
        }
    }

    fn snapshot(&self) -> TicketSnapshot {
        TicketSnapshot {
            id: TicketId::parse(&self.id).expect("sandbox ids are valid"),
            subject: self.subject.clone(),
            status: self.status.clone(),
            agent: self
                .agent
                .as_ref()
                .and_then(|id| demo_agents().into_iter().find(|a| a.id.as_str() == id)),
            contact: self.contact.clone(),
            channel: Some("email".into()),
            url: Some(format!("https://helpdesk.demo.example/tickets/{}", self.id)),
            tags: self.tags.clone(),
            ticket_type: Some(self.ticket_type.clone()),
            inbox: Some("Support".into()),
            inbox_group: None,
            integration: Some("sandbox".into()),
            created_at: None,
            last_customer_message_at: None,
            answered: Some(true),
            updated_at: Utc::now(),
        }
    }
}

fn is_closed(status: &str) -> bool {
    matches!(
        status.to_ascii_lowercase().as_str(),
        "closed" | "solved" | "resolved"
    )
}

/// The sandbox helpdesk's state: its tickets, and every connector call it accepted.
pub struct SandboxHelpdesk {
    tickets: Mutex<HashMap<String, SandboxTicket>>,
    calls: Mutex<Vec<Value>>,
    /// Idempotency key → the answer given: a retried call is answered again, not re-applied.
    answered: Mutex<HashMap<String, Value>>,
    next_ticket: Mutex<u32>,
    /// Customer account records: what staff wrote, and closedloop's block beside it.
    accounts: Mutex<HashMap<String, SandboxAccount>>,
}

#[derive(Clone, serde::Serialize)]
struct SandboxAccount {
    name: String,
    /// Staff's own text on the record; closedloop's block operations never touch it.
    notes: String,
    closedloop_block: Option<Value>,
}

impl Default for SandboxHelpdesk {
    fn default() -> Self {
        SandboxHelpdesk {
            tickets: Mutex::new(
                DEMO_TICKETS
                    .iter()
                    .map(|t| (t.id.to_string(), SandboxTicket::from_demo(t)))
                    .collect(),
            ),
            calls: Mutex::new(Vec::new()),
            answered: Mutex::new(HashMap::new()),
            next_ticket: Mutex::new(2001),
            accounts: Mutex::new(
                DEMO_TICKETS
                    .iter()
                    .map(|t| {
                        let account = SandboxAccount {
                            name: t.account.1.into(),
                            notes: format!(
                                "{}: key account. Invoices to the finance team.",
                                t.account.1
                            ),
                            closedloop_block: None,
                        };
                        (t.account.0.to_string(), account)
                    })
                    .collect(),
            ),
        }
    }
}

#[derive(Clone)]
struct SandboxState {
    functions: Arc<Functions>,
    tenant: TenantCredentials,
    helpdesk: Arc<SandboxHelpdesk>,
}

pub fn router(functions: Arc<Functions>, tenant: TenantCredentials) -> Router {
    Router::new()
        .route("/sandbox/tickets/{id}", get(show_ticket))
        .route("/sandbox/tickets/{id}/{action}", post(change))
        .route(HELPDESK_PATH, post(connector_call))
        .route("/sandbox/helpdesk/calls", get(calls))
        .route("/sandbox/accounts/{id}", get(show_account))
        .with_state(SandboxState {
            functions,
            tenant,
            helpdesk: Arc::new(SandboxHelpdesk::default()),
        })
}

/// `GET /sandbox/accounts/{id}`: the account record as the helpdesk shows it.
async fn show_account(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let accounts = state.helpdesk.accounts.lock().expect("sandbox lock");
    let account = accounts.get(&id).ok_or_else(|| {
        ApiError::not_found("the sandbox has accounts acc-northwind and acc-contoso")
    })?;
    Ok(Json(json!(account)))
}

fn unknown_ticket() -> ApiError {
    let ids: Vec<_> = DEMO_TICKETS.iter().map(|t| t.id).collect();
    ApiError::not_found(format!("the sandbox has tickets {}", ids.join(", ")))
}

async fn show_ticket(
    State(state): State<SandboxState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tickets = state.helpdesk.tickets.lock().expect("sandbox lock");
    let ticket = tickets.get(&id).ok_or_else(unknown_ticket)?;
    Ok(Json(
        json!({"ticket": ticket.snapshot(), "notes": ticket.notes}),
    ))
}

/// `POST /sandbox/tickets/{id}/close` (or `/reopen`, `/pending`), or `/customer-message`
/// (the customer writes on the ticket): the helpdesk tells closedloop.
async fn change(
    State(state): State<SandboxState>,
    Path((id, action)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (event_type, status) = match action.as_str() {
        "close" => ("ticket.closed", Some("closed")),
        "reopen" => ("ticket.reopened", Some("open")),
        "pending" => ("ticket.status_changed", Some("pending")),
        "customer-message" => ("ticket.customer_message", None),
        _ => {
            return Err(ApiError::not_found(
                "sandbox actions are close, reopen, pending and customer-message",
            ));
        }
    };
    let snapshot = {
        let mut tickets = state.helpdesk.tickets.lock().expect("sandbox lock");
        let ticket = tickets.get_mut(&id).ok_or_else(unknown_ticket)?;
        if let Some(status) = status {
            ticket.status = status.into();
        }
        ticket.snapshot()
    };
    let (status, answer) = if event_type == "ticket.customer_message" {
        let message = json!({"body": "Thanks, but it jams again. Please call me.",
            "from": snapshot.contact.email});
        send_webhook_with(&state, event_type, &snapshot, Some(message)).await?
    } else {
        send_webhook(&state, event_type, &snapshot).await?
    };
    Ok((
        status,
        Json(json!({ "sent_webhook": event_type, "ticket": id, "webhooks_answered": answer })),
    ))
}

/// Sends a signed generic webhook to the `webhooks` function, as a helpdesk does.
async fn send_webhook(
    state: &SandboxState,
    event_type: &str,
    ticket: &TicketSnapshot,
) -> Result<(StatusCode, Value), ApiError> {
    send_webhook_with(state, event_type, ticket, None).await
}

/// A webhook with the customer's `message`, when there is one.
async fn send_webhook_with(
    state: &SandboxState,
    event_type: &str,
    ticket: &TicketSnapshot,
    message: Option<Value>,
) -> Result<(StatusCode, Value), ApiError> {
    let now = state.functions.clock.now();
    let mut delivery = json!({
        "delivery_id": ulid::Ulid::new().to_string(),
        "type": event_type,
        "occurred_at": now,
        "ticket": ticket,
    });
    if let Some(message) = message {
        delivery["message"] = message;
    }
    let body = serde_json::to_vec(&delivery).expect("demo deliveries serialise");
    let signature = sign_timestamped(
        state.tenant.webhook_secret.as_bytes(),
        now.timestamp(),
        &body,
    );
    let request = Request::post(format!("/webhooks/{}/generic", state.tenant.tenant))
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(Body::from(body))
        .expect("valid request");
    let webhooks = state
        .functions
        .http_router(WEBHOOKS)
        .expect("webhooks is an HTTP function");
    let response = webhooks
        .oneshot(request)
        .await
        .map_err(ApiError::internal)?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map_err(ApiError::internal)?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Every connector call the sandbox accepted, oldest first.
async fn calls(State(state): State<SandboxState>) -> Json<Value> {
    Json(Value::Array(
        state.helpdesk.calls.lock().expect("sandbox lock").clone(),
    ))
}

fn refused(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::new(status, "refused", message)
}

/// `POST /sandbox/helpdesk`: one call of closedloop's generic connector.
async fn connector_call(
    State(state): State<SandboxState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let store = state.functions.store.as_ref();
    let tenant = TenantId::parse(&state.tenant.tenant).map_err(ApiError::internal)?;
    let secret = helpdesk::get_config(store, &tenant)
        .await
        .map_err(ApiError::internal)?
        .map(|c| c.secret.into_bytes())
        .ok_or_else(|| refused(StatusCode::UNAUTHORIZED, "no connector secret is set"))?;
    verify_timestamped(
        headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()),
        SIGNATURE_HEADER,
        &[secret],
        &body,
        // The connector signs with the real time (only closedloop's clock is set by tests).
        Utc::now(),
    )
    .map_err(|e| refused(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let call: Value = serde_json::from_slice(&body)
        .map_err(|e| refused(StatusCode::BAD_REQUEST, format!("not JSON: {e}")))?;
    if call["tenant_id"] != json!(state.tenant.tenant) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "this is another tenant's helpdesk",
        ));
    }
    let key = call["idempotency_key"].as_str().map(str::to_string);
    if let Some(key) = &key
        && let Some(answer) = state
            .helpdesk
            .answered
            .lock()
            .expect("sandbox lock")
            .get(key)
    {
        return Ok(Json(answer.clone()));
    }
    let (answer, webhook) = apply(&state.helpdesk, &call)?;
    state
        .helpdesk
        .calls
        .lock()
        .expect("sandbox lock")
        .push(call.clone());
    if let Some(key) = key {
        state
            .helpdesk
            .answered
            .lock()
            .expect("sandbox lock")
            .insert(key, answer.clone());
    }
    // Like a real helpdesk, report the change back (before answering the call).
    if let Some((event_type, snapshot)) = webhook {
        send_webhook(&state, event_type, &snapshot).await?;
    }
    Ok(Json(answer))
}

type Webhook = Option<(&'static str, TicketSnapshot)>;

/// Applies one call to the tickets: the answer, and the webhook the change causes.
fn apply(helpdesk: &SandboxHelpdesk, call: &Value) -> Result<(Value, Webhook), ApiError> {
    let text = |field: &str| -> Result<String, ApiError> {
        call[field].as_str().map(str::to_string).ok_or_else(|| {
            refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("missing `{field}`"),
            )
        })
    };
    let operation = text("operation")?;
    match operation.as_str() {
        "list_ticket_types" => return Ok((json!({ "ticket_types": TICKET_TYPES }), None)),
        "upsert_account_block" | "remove_account_block" => {
            let id = text("account_id")?;
            let mut accounts = helpdesk.accounts.lock().expect("sandbox lock");
            let account = accounts
                .entry(id.clone())
                .or_insert_with(|| SandboxAccount {
                    name: id,
                    notes: String::new(),
                    closedloop_block: None,
                });
            // Only closedloop's block changes; the notes stay as staff wrote them.
            account.closedloop_block =
                (operation == "upsert_account_block").then(|| call["block"].clone());
            return Ok((json!({"ok": true}), None));
        }
        "create_ticket" => {
            let mut next = helpdesk.next_ticket.lock().expect("sandbox lock");
            let id = next.to_string();
            *next += 1;
            let requester = &call["requester"];
            let email = requester["email"]
                .as_str()
                .unwrap_or("bob@northwind.example");
            let ticket = SandboxTicket {
                id: id.clone(),
                subject: text("subject")?,
                contact: Contact {
                    id: ContactId::parse(&format!(
                        "c-{}",
                        email.split('@').next().unwrap_or("customer")
                    ))
                    .map_err(ApiError::internal)?,
                    name: requester["name"].as_str().unwrap_or("Customer").into(),
                    email: Email::parse(email)
                        .map_err(|e| refused(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?,
                    account: None,
                },
                agent: None,
                status: "open".into(),
                tags: vec![],
                ticket_type: "task".into(),
                notes: vec![json!({"public": true, "body": text("body")?})],
            };
            let snapshot = ticket.snapshot();
            helpdesk
                .tickets
                .lock()
                .expect("sandbox lock")
                .insert(id.clone(), ticket);
            return Ok((
                json!({ "ticket_id": id }),
                Some(("ticket.created", snapshot)),
            ));
        }
        _ => {}
    }
    let id = text("ticket_id")?;
    let mut tickets = helpdesk.tickets.lock().expect("sandbox lock");
    let ticket = tickets.get_mut(&id).ok_or_else(|| {
        refused(
            StatusCode::NOT_FOUND,
            format!("the sandbox has no ticket {id}"),
        )
    })?;
    let was_closed = is_closed(&ticket.status);
    let status_event = |new: &str| {
        if is_closed(new) {
            "ticket.closed"
        } else if was_closed {
            "ticket.reopened"
        } else {
            "ticket.status_changed"
        }
    };
    let event = match operation.as_str() {
        "fetch_ticket" => return Ok((json!({ "ticket": ticket.snapshot() }), None)),
        "add_internal_note" | "public_reply" => {
            ticket
                .notes
                .push(json!({"public": operation == "public_reply", "body": text("body")?}));
            None
        }
        "reopen_ticket" => {
            ticket.status = "open".into();
            Some(status_event("open"))
        }
        "set_ticket_status" => {
            let status = text("status")?;
            let event = status_event(&status);
            ticket.status = status;
            Some(event)
        }
        "add_tag" => {
            let tag = text("tag")?;
            if !ticket.tags.contains(&tag) {
                ticket.tags.push(tag);
            }
            Some("ticket.tag_added")
        }
        "change_ticket_type" => {
            let ticket_type = text("ticket_type")?;
            if !TICKET_TYPES.contains(&ticket_type.as_str()) {
                return Err(refused(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "unknown ticket type '{ticket_type}'; the sandbox has {TICKET_TYPES:?}"
                    ),
                ));
            }
            ticket.ticket_type = ticket_type;
            Some("ticket.status_changed")
        }
        "assign_agent" => {
            let agent = text("agent_id")?;
            if !demo_agents().iter().any(|a| a.id.as_str() == agent) {
                return Err(refused(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("the sandbox has no agent '{agent}'"),
                ));
            }
            ticket.agent = Some(agent);
            Some("ticket.status_changed")
        }
        other => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                format!("unknown operation '{other}'"),
            ));
        }
    };
    let snapshot = ticket.snapshot();
    Ok((json!({"ok": true}), event.map(|e| (e, snapshot))))
}
