//! `/admin/v1/connector`: the tenant's helpdesk connector.
//!
//! - `GET` shows its kind and URL, and whether a secret is set; never the secret;
//! - `PUT {"kind": "...", "url": "...", "settings": {...}, "secret": "..."}` sets it. Without a
//!   secret the current one is kept (for the same kind); a first generic configuration without
//!   one gets a generated secret, answered this once (`"secret"`), for the receiver to verify
//!   our signatures; a vendor's credential must be given;
//! - `POST /connector/test` makes one cheap authenticated call with the stored configuration
//!   and says what it reached, or precisely why not;
//! - `DELETE` disconnects the helpdesk (helpdesk actions then fail, visibly, until one is
//!   connected again).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use closedloop_core::helpdesk::{
    self, ConnectorConfigError, ConnectorError, ConnectorKind, ConnectorSettings, ConnectorView,
};
use closedloop_http::{ApiError, Json};
use serde::Deserialize;

use crate::{AdminState, Authenticated, store_error};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/v1/connector", get(show).put(set).delete(remove))
        .route("/admin/v1/connector/test", post(test))
}

async fn show(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
) -> Result<Json<ConnectorView>, ApiError> {
    helpdesk::get_config(state.store.as_ref(), &tenant)
        .await
        .map_err(store_error)?
        .map(|c| Json(c.view()))
        .ok_or_else(|| {
            ApiError::not_found("no helpdesk is connected; PUT /admin/v1/connector connects one")
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectorBody {
    kind: ConnectorKind,
    #[serde(default)]
    url: String,
    #[serde(default)]
    settings: ConnectorSettings,
    secret: Option<String>,
}

async fn set(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Json(body): Json<ConnectorBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let saved = helpdesk::put_config(
        state.store.as_ref(),
        &tenant,
        body.kind,
        body.url.trim(),
        body.settings,
        body.secret.as_deref(),
        state.clock.now(),
    )
    .await
    .map_err(|e| match e {
        ConnectorConfigError::Invalid { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            e.to_string(),
        ),
        ConnectorConfigError::Store(s) => store_error(s),
    })?;
    let mut answer = serde_json::to_value(saved.config.view()).map_err(ApiError::internal)?;
    if let Some(secret) = saved.generated_secret {
        answer["secret"] = secret.into();
    }
    let status = if saved.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(answer)))
}

async fn remove(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
) -> Result<StatusCode, ApiError> {
    match helpdesk::delete_config(state.store.as_ref(), &tenant).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::not_found("no helpdesk is connected")),
        Err(e) => Err(store_error(e)),
    }
}

/// One cheap authenticated call with the stored configuration: `200 {"ok": true, "detail"}`,
/// or `502` with why the helpdesk refused or could not be reached.
async fn test(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
) -> Result<Json<serde_json::Value>, ApiError> {
    let connector = state
        .connectors
        .connector(&tenant)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::not_found("no helpdesk is connected; PUT /admin/v1/connector connects one")
        })?;
    match connector.test_connection().await {
        Ok(detail) => Ok(Json(
            serde_json::json!({"ok": true, "vendor": connector.vendor(), "detail": detail}),
        )),
        Err(e) => {
            let code = match &e {
                ConnectorError::Unauthorized(_) => "connector_unauthorized",
                ConnectorError::RateLimited { .. } | ConnectorError::Transient(_) => {
                    "connector_unreachable"
                }
                ConnectorError::Misconfigured(_) => "connector_misconfigured",
                ConnectorError::Rejected { .. } | ConnectorError::Unsupported { .. } => {
                    "connector_refused"
                }
            };
            let message = match &e {
                ConnectorError::Unauthorized(m) | ConnectorError::Misconfigured(m) => m.clone(),
                other => other.to_string(),
            };
            Err(ApiError::new(StatusCode::BAD_GATEWAY, code, message))
        }
    }
}
