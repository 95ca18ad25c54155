//! `/admin/v1/connector/account-block-limits`: how much text the tenant's helpdesk takes in an
//! account record (the detractor flag). `PUT {"subject_chars": 32, "message_chars": 1024}`;
//! `DELETE` goes back to the connector's own limits. The digest's recipients are a setting
//! (`digest_recipients` in `/admin/v1/settings`).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use closedloop_core::helpdesk::{self, AccountBlockLimits, ConnectorConfigError};
use closedloop_http::{ApiError, Json};

use crate::{AdminState, Authenticated, store_error};

pub fn routes() -> Router<AdminState> {
    Router::new().route(
        "/admin/v1/connector/account-block-limits",
        get(show).put(set).delete(reset),
    )
}

fn no_connector() -> ApiError {
    ApiError::not_found("no helpdesk is connected; PUT /admin/v1/connector connects one")
}

fn config_error(e: ConnectorConfigError) -> ApiError {
    match e {
        ConnectorConfigError::Invalid { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            e.to_string(),
        ),
        ConnectorConfigError::Store(s) => store_error(s),
    }
}

async fn show(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
) -> Result<Json<serde_json::Value>, ApiError> {
    let config = helpdesk::get_config(state.store.as_ref(), &tenant)
        .await
        .map_err(store_error)?
        .ok_or_else(no_connector)?;
    Ok(Json(match config.account_block_limits {
        Some(l) => serde_json::json!({"limits": l, "source": "configured"}),
        None => {
            serde_json::json!({"limits": AccountBlockLimits::default(), "source": "connector default"})
        }
    }))
}

async fn set(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Json(limits): Json<AccountBlockLimits>,
) -> Result<Json<serde_json::Value>, ApiError> {
    helpdesk::set_account_block_limits(
        state.store.as_ref(),
        &tenant,
        Some(limits),
        state.clock.now(),
    )
    .await
    .map_err(config_error)?
    .ok_or_else(no_connector)?;
    Ok(Json(
        serde_json::json!({"limits": limits, "source": "configured"}),
    ))
}

async fn reset(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
) -> Result<StatusCode, ApiError> {
    helpdesk::set_account_block_limits(state.store.as_ref(), &tenant, None, state.clock.now())
        .await
        .map_err(config_error)?
        .ok_or_else(no_connector)?;
    Ok(StatusCode::NO_CONTENT)
}
