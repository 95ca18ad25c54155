//! `/admin/v1/failed-actions`: rule actions that failed for good or ran out of retries.
//!
//! - `GET ?limit=&before=` lists them newest first (secrets in the request redacted);
//! - `POST .../{id}/retry` requests the action again: the dead letter goes and a new
//!   `action.requested` is queued in one write, so it runs exactly once more.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use closedloop_core::actions::{self, RetryError};
use closedloop_http::{ApiError, Json};
use serde::Deserialize;

use crate::{AdminState, Authenticated, store_error};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/v1/failed-actions", get(list))
        .route("/admin/v1/failed-actions/{id}/retry", post(retry))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    limit: Option<usize>,
    before: Option<String>,
}

async fn list(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(page) = page.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = page.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("limit must be 1 to 100"));
    }
    let before = page
        .before
        .as_deref()
        .map(ulid::Ulid::from_string)
        .transpose()
        .map_err(|_| ApiError::bad_request("before must be a failed action's id"))?;
    let failed = actions::list_failed(state.store.as_ref(), &tenant, limit, before)
        .await
        .map_err(store_error)?;
    let next = (failed.len() == limit)
        .then(|| failed.last().map(|f| f.id.to_string()))
        .flatten();
    Ok(Json(serde_json::json!({
        "failed_actions": failed.iter().map(|f| f.redacted()).collect::<Vec<_>>(),
        "next_before": next,
    })))
}

async fn retry(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    match actions::retry_failed(state.store.as_ref(), &tenant, &id, state.clock.now()).await {
        Ok(event_id) => Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "status": "requested", "event_id": event_id })),
        )),
        Err(e @ RetryError::NotFound(_)) => Err(ApiError::not_found(e.to_string())),
        Err(RetryError::Store(e)) => Err(store_error(e)),
    }
}
