//! `/admin/v1/tickets/{ticket}/...`: read a ticket's rating (never change it), and ask the
//! customer again.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use closedloop_core::automation;
use closedloop_core::ids::TicketId;
use closedloop_core::ratings::{self, StoredReview};
use closedloop_core::surveys::{self, ReRequested, SurveyError};
use closedloop_http::{ApiError, Json};
use serde::Deserialize;

use crate::{AdminState, Authenticated, store_error};

pub fn routes() -> Router<AdminState> {
    Router::new()
        // Staff read ratings; there is deliberately no PUT, PATCH or DELETE.
        .route("/admin/v1/tickets/{ticket}/review", get(review))
        .route("/admin/v1/tickets/{ticket}/audit", get(audit))
        .route(
            "/admin/v1/tickets/{ticket}/rating-requests",
            post(re_request),
        )
}

fn ticket_id(raw: &str) -> Result<TicketId, ApiError> {
    TicketId::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn review(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(ticket): Path<String>,
) -> Result<Json<StoredReview>, ApiError> {
    let ticket = ticket_id(&ticket)?;
    ratings::review_for_ticket(state.store.as_ref(), &tenant, &ticket)
        .await
        .map_err(store_error)?
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!("ticket '{}' has no rating yet", ticket.as_str()))
        })
}

/// Every decision taken on the ticket, oldest first: rules matched or not, actions executed,
/// recipients suppressed.
async fn audit(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(ticket): Path<String>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let ticket = ticket_id(&ticket)?;
    automation::audit_trail(state.store.as_ref(), &tenant, &ticket)
        .await
        .map(Json)
        .map_err(store_error)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReRequestBody {
    /// Who asked (an agent id or name), kept on the `survey.re_requested` event.
    requested_by: Option<String>,
}

async fn re_request(
    State(state): State<AdminState>,
    Authenticated(tenant): Authenticated,
    Path(ticket): Path<String>,
    closedloop_http::RawBody(body): closedloop_http::RawBody,
) -> Result<(StatusCode, Json<ReRequested>), ApiError> {
    let ticket = ticket_id(&ticket)?;
    // The body is optional: an empty POST is a plain re-request.
    let body: ReRequestBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReRequestBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?
    };
    if body.requested_by.as_ref().is_some_and(|r| r.len() > 200) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "requested_by must be at most 200 characters",
        ));
    }
    let now = state.clock.now();
    match surveys::re_request(
        state.store.as_ref(),
        &tenant,
        &ticket,
        body.requested_by.as_deref(),
        now,
    )
    .await
    {
        Ok(done) => Ok((StatusCode::ACCEPTED, Json(done))),
        Err(e @ SurveyError::UnknownTicket(_)) => Err(ApiError::not_found(e.to_string())),
        Err(e @ (SurveyError::ContactUnsubscribed(_) | SurveyError::Conflict(_))) => Err(
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
        ),
        Err(SurveyError::Store(e)) => Err(store_error(e)),
        Err(e) => Err(ApiError::internal(e)),
    }
}
