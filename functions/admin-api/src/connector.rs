//! `/admin/v1/connector`: the tenant's helpdesk connector.
//!
//! - `GET` shows its kind and URL, and whether a secret is set; never the secret;
//! - `PUT {"kind": "generic_webhook", "url": "...", "secret": "..."}` sets it. Without a
//!   secret the current one is kept; a first configuration without one gets a generated
//!   secret, answered this once (`"secret"`), for the receiver to verify our signatures;
//! - `DELETE` disconnects the helpdesk (helpdesk actions then fail, visibly, until one is
//!   connected again).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use closedloop_core::helpdesk::{self, ConnectorConfigError, ConnectorKind, ConnectorView};
use closedloop_http::{ApiError, Json};
use serde::Deserialize;

use crate::{AdminState, Authenticated, store_error};

pub fn routes() -> Router<AdminState> {
    Router::new().route("/admin/v1/connector", get(show).put(set).delete(remove))
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
    url: String,
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
