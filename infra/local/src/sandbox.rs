//! The demo's sandbox helpdesk: a few tickets that `curl` can close. Closing one sends a real,
//! signed generic webhook to the `webhooks` function, exactly as a helpdesk would.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use closedloop_core::domain::{Agent, Contact, CustomerAccount, Email, TicketSnapshot};
use closedloop_core::ids::{AccountId, ContactId, TicketId};
use closedloop_core::ingest::SIGNATURE_HEADER;
use closedloop_core::signature::sign_timestamped;
use closedloop_http::ApiError;
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

pub fn demo_agents() -> Vec<Agent> {
    vec![
        demo_agent("a-alice", "Alice Meyer", "alice@demo.example", true),
        demo_agent("a-mark", "Mark Chen", "mark@demo.example", false),
    ]
}

fn snapshot(ticket: &DemoTicket, status: &str) -> TicketSnapshot {
    TicketSnapshot {
        id: TicketId::parse(ticket.id).expect("demo ids are valid"),
        subject: ticket.subject.into(),
        status: status.into(),
        agent: demo_agents()
            .into_iter()
            .find(|a| a.id.as_str() == ticket.agent),
        contact: Contact {
            id: ContactId::parse(ticket.contact.0).expect("demo ids are valid"),
            name: ticket.contact.1.into(),
            email: Email::parse(ticket.contact.2).expect("demo emails are valid"),
            account: Some(CustomerAccount {
                id: AccountId::parse(ticket.account.0).expect("demo ids are valid"),
                name: ticket.account.1.into(),
            }),
        },
        channel: Some("email".into()),
        url: Some(format!(
            "https://helpdesk.demo.example/tickets/{}",
            ticket.id
        )),
        tags: vec![],
        ticket_type: Some("question".into()),
        inbox: Some("Support".into()),
        inbox_group: None,
        integration: Some("sandbox".into()),
        created_at: None,
        last_customer_message_at: None,
        answered: Some(true),
        updated_at: chrono::Utc::now(),
    }
}

#[derive(Clone)]
struct SandboxState {
    functions: Arc<Functions>,
    tenant: TenantCredentials,
}

pub fn router(functions: Arc<Functions>, tenant: TenantCredentials) -> Router {
    Router::new()
        .route("/sandbox/tickets/{id}/{action}", post(change))
        .with_state(SandboxState { functions, tenant })
}

/// `POST /sandbox/tickets/{id}/close` (or `/reopen`): the helpdesk tells closedloop.
async fn change(
    State(state): State<SandboxState>,
    Path((id, action)): Path<(String, String)>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let ticket = DEMO_TICKETS.iter().find(|t| t.id == id).ok_or_else(|| {
        let ids: Vec<_> = DEMO_TICKETS.iter().map(|t| t.id).collect();
        ApiError::not_found(format!("the sandbox has tickets {}", ids.join(", ")))
    })?;
    let (event_type, status) = match action.as_str() {
        "close" => ("ticket.closed", "closed"),
        "reopen" => ("ticket.reopened", "open"),
        _ => return Err(ApiError::not_found("sandbox actions are close and reopen")),
    };
    let now = state.functions.clock.now();
    let body = serde_json::to_vec(&serde_json::json!({
        "delivery_id": ulid::Ulid::new().to_string(),
        "type": event_type,
        "occurred_at": now,
        "ticket": snapshot(ticket, status),
    }))
    .expect("demo deliveries serialise");
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
    let answer: serde_json::Value =
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok((
        status,
        Json(
            serde_json::json!({ "sent_webhook": event_type, "ticket": ticket.id, "webhooks_answered": answer }),
        ),
    ))
}
