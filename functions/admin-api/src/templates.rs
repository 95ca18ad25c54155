//! `/admin/v1/templates/rating-request`: the tenant's own rating-request email. Saved only
//! after it renders (sandboxed, fuel-limited) for CSAT and NPS with the choices and the
//! unsubscribe link in both bodies; `preview` shows it with sample values.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use closedloop_core::templates::{self, RatingRequestTemplates, RenderedEmail};
use closedloop_core::tenancy;
use closedloop_http::{ApiError, Json};
use serde::Serialize;

use crate::{AdminState, Authenticated, store_error, tenancy_error};

const PATH: &str = "/admin/v1/templates/rating-request";

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route(PATH, get(show).put(save).delete(reset))
        .route(&format!("{PATH}/preview"), post(preview))
}

fn unprocessable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_template",
        e.to_string(),
    )
}

async fn show(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
) -> Result<Json<RatingRequestTemplates>, ApiError> {
    templates::rating_request_templates(state.store.as_ref(), &tenant)
        .await
        .map(Json)
        .map_err(store_error)
}

async fn save(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Json(body): Json<RatingRequestTemplates>,
) -> Result<Json<RatingRequestTemplates>, ApiError> {
    body.check().map_err(unprocessable)?;
    templates::save_rating_request_templates(state.store.as_ref(), &tenant, Some(&body))
        .await
        .map_err(store_error)?;
    Ok(Json(body))
}

async fn reset(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
) -> Result<Json<RatingRequestTemplates>, ApiError> {
    templates::save_rating_request_templates(state.store.as_ref(), &tenant, None)
        .await
        .map_err(store_error)?;
    Ok(Json(RatingRequestTemplates::default()))
}

#[derive(Serialize)]
struct Preview {
    subject: String,
    text: String,
    html: String,
}

/// Renders the posted templates with sample values for the tenant's survey kind, without
/// saving them.
async fn preview(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Json(body): Json<RatingRequestTemplates>,
) -> Result<Json<Preview>, ApiError> {
    body.check().map_err(unprocessable)?;
    let settings = tenancy::get_settings(state.store.as_ref(), &tenant)
        .await
        .map_err(tenancy_error)?;
    let RenderedEmail {
        subject,
        text,
        html,
    } = templates::render_email(
        &body.subject,
        &body.text,
        &body.html,
        &templates::sample_context(settings.survey_kind),
    )
    .map_err(unprocessable)?;
    Ok(Json(Preview {
        subject,
        text,
        html,
    }))
}
