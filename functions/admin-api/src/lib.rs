//! `admin-api`: `/admin/v1/...`, authenticated per tenant with `Authorization: Bearer <api key>`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::get;
use closedloop_core::domain::TenantSettings;
use closedloop_core::helpdesk::ConnectorDirectory;
use closedloop_core::ids::TenantId;
use closedloop_core::ports::Clock;
use closedloop_core::store::{ItemStore, StoreError};
use closedloop_core::tenancy::{self, AuthError, SettingsCache, TenancyError};
use closedloop_http::{ApiError, Json};

mod webhook_sources;

#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn ItemStore>,
    pub clock: Arc<dyn Clock>,
    /// Forgets a tenant's settings when they are saved, for the rating links that share it
    /// (in one process, as in the local runner; Lambda instances have their own).
    pub settings: Arc<SettingsCache>,
    /// The tenants' helpdesk connectors (to test one, `POST /admin/v1/connector/test`).
    pub connectors: Arc<dyn ConnectorDirectory>,
}

mod agents;
mod cases;
mod connector;
mod detractors;
mod failed_actions;
mod reports;
mod rules;
mod templates;
mod tickets;

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/v1/health", get(health))
        .route("/admin/v1/settings", get(get_settings).put(put_settings))
        .merge(tickets::routes())
        .merge(agents::routes())
        .merge(rules::routes())
        .merge(templates::routes())
        .merge(webhook_sources::routes())
        .merge(connector::routes())
        .merge(failed_actions::routes())
        .merge(cases::routes())
        .merge(reports::routes())
        .merge(detractors::routes())
        .layer(axum::extract::DefaultBodyLimit::max(
            closedloop_http::MAX_JSON_BODY_BYTES,
        ))
        .fallback(closedloop_http::unknown_route)
        .with_state(state)
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The tenant whose API key came with the request.
pub struct Authenticated(pub TenantId);

impl FromRequestParts<AdminState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized(AuthError::Missing.to_string()))?;
        let key = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthorized(AuthError::Missing.to_string()))?;
        match tenancy::authenticate(state.store.as_ref(), key).await {
            Ok(tenant) => Ok(Authenticated(tenant)),
            Err(AuthError::Unavailable) => Err(ApiError::unavailable("api key lookup failed")),
            Err(e) => Err(ApiError::unauthorized(e.to_string())),
        }
    }
}

fn store_error(e: StoreError) -> ApiError {
    // A transaction cancelled by a conflicting write wrote nothing: the request may be sent again.
    if e.is_transient() || e.is_conflict() {
        ApiError::unavailable(e)
    } else {
        ApiError::internal(e)
    }
}

fn tenancy_error(e: TenancyError) -> ApiError {
    match e {
        TenancyError::NotFound(_) => ApiError::not_found(e.to_string()),
        TenancyError::Store(s) if s.is_transient() => ApiError::unavailable(s),
        other => ApiError::internal(other),
    }
}

async fn get_settings(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
) -> Result<Json<TenantSettings>, ApiError> {
    tenancy::get_settings(state.store.as_ref(), &tenant)
        .await
        .map(Json)
        .map_err(tenancy_error)
}

async fn put_settings(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Json(settings): Json<TenantSettings>,
) -> Result<Json<TenantSettings>, ApiError> {
    settings.validate().map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            e.to_string(),
        )
    })?;
    tenancy::put_settings(state.store.as_ref(), &tenant, &settings)
        .await
        .map_err(tenancy_error)?;
    state.settings.invalidate(&tenant);
    Ok(Json(settings))
}
