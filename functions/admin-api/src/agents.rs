//! `/admin/v1/agents`: the agent directory, mainly each agent's email-notification switch.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use closedloop_core::domain::{Agent, Email};
use closedloop_core::ids::AgentId;
use closedloop_core::keys;
use closedloop_core::records::record_item;
use closedloop_core::tenancy;
use closedloop_http::{ApiError, Json};
use serde::Deserialize;

use crate::{AdminState, Authenticated, store_error};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/v1/agents", get(list))
        .route("/admin/v1/agents/{agent}", put(upsert))
}

async fn list(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
) -> Result<Json<Vec<Agent>>, ApiError> {
    tenancy::list_agents(state.store.as_ref(), &tenant)
        .await
        .map(Json)
        .map_err(store_error)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentBody {
    name: String,
    email: String,
    email_notifications: bool,
    /// The agent's working hours, as a business-hours calendar (docs/sla.md).
    #[serde(default)]
    working_hours: Option<closedloop_core::calendar::BusinessCalendar>,
}

fn invalid(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
}

async fn upsert(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(agent): Path<String>,
    Json(body): Json<AgentBody>,
) -> Result<Json<Agent>, ApiError> {
    let id = AgentId::parse(&agent).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(invalid("name must be 1-200 characters".into()));
    }
    let email = Email::parse(&body.email).map_err(|e| invalid(e.to_string()))?;
    let agent = Agent {
        id,
        name: name.to_string(),
        email,
        email_notifications: body.email_notifications,
        working_hours: body.working_hours,
    };
    state
        .store
        .put(
            record_item(&keys::agent(&tenant, agent.id.as_str()), "agent", &agent),
            None,
        )
        .await
        .map_err(store_error)?;
    Ok(Json(agent))
}
