//! `/admin/v1/webhook-sources/{source}/secrets`: a tenant's webhook secrets per source.
//!
//! - `POST` creates one (optionally `{"secret": "..."}` when the vendor chooses it, as Zendesk
//!   and Delighted do) and answers it once, with its id;
//! - `GET` lists the ids of the active secrets, never their values;
//! - `DELETE .../{id}` revokes one.
//!
//! At most two are active per source, so a sender can be switched to a new secret before the
//! old one is revoked.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use closedloop_core::ingest::Source;
use closedloop_core::sources::{self, CreatedSecret, SecretInfo, SecretsError};
use closedloop_http::{ApiError, Json};
use serde::Deserialize;

use crate::{AdminState, Authenticated};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route(
            "/admin/v1/webhook-sources/{source}/secrets",
            get(list).post(create),
        )
        .route(
            "/admin/v1/webhook-sources/{source}/secrets/{id}",
            delete(revoke),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSecret {
    secret: Option<String>,
}

fn source(name: &str) -> Result<Source, ApiError> {
    Source::parse(name).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown webhook source '{}'; known sources: {}",
            name.chars().take(40).collect::<String>(),
            Source::KNOWN
        ))
    })
}

fn secrets_error(e: SecretsError) -> ApiError {
    match e {
        SecretsError::TooMany(_) | SecretsError::Conflict => {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
        }
        SecretsError::NotFound { .. } => ApiError::not_found(e.to_string()),
        SecretsError::BadSecret => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            e.to_string(),
        ),
        SecretsError::Store(s) if s.is_transient() => ApiError::unavailable(s),
        SecretsError::Store(s) => ApiError::internal(s),
    }
}

async fn create(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(name): Path<String>,
    closedloop_http::RawBody(body): closedloop_http::RawBody,
) -> Result<(StatusCode, Json<CreatedSecret>), ApiError> {
    let source = source(&name)?;
    // The body is optional: empty means "generate one for me".
    let given = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<CreateSecret>(&body)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    format!("the body is not valid: {e}"),
                )
            })?
            .secret
    };
    let created = sources::create_secret(
        state.store.as_ref(),
        &tenant,
        source.as_str(),
        given.as_deref(),
        chrono::Utc::now(),
    )
    .await
    .map_err(secrets_error)?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn list(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let source = source(&name)?;
    let secrets: Vec<SecretInfo> =
        sources::list_secrets(state.store.as_ref(), &tenant, source.as_str())
            .await
            .map_err(|e| secrets_error(e.into()))?;
    Ok(Json(
        serde_json::json!({ "source": source.as_str(), "secrets": secrets }),
    ))
}

async fn revoke(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let source = source(&name)?;
    sources::revoke_secret(state.store.as_ref(), &tenant, source.as_str(), &id)
        .await
        .map_err(secrets_error)?;
    Ok(StatusCode::NO_CONTENT)
}
