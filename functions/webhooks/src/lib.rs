//! `webhooks`: `POST /webhooks/{tenant}/{source}`. Verifies the sender's signature, drops
//! redeliveries, and records the normalised domain event in the outbox.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use closedloop_core::ids::TenantId;
use closedloop_core::ingest::{self, Headers, IngestError, IngestOutcome, MAX_BODY_BYTES};
use closedloop_core::ports::Clock;
use closedloop_core::store::ItemStore;
use closedloop_http::ApiError;

#[derive(Clone)]
pub struct WebhooksState {
    pub store: Arc<dyn ItemStore>,
    pub clock: Arc<dyn Clock>,
}

pub fn router(state: WebhooksState) -> Router {
    Router::new()
        .route("/webhooks/{tenant}/{source}", post(receive))
        // One byte over the limit reaches the handler, which names the limit in its answer.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES + 1))
        .fallback(closedloop_http::unknown_route)
        .with_state(state)
}

async fn receive(
    State(state): State<WebhooksState>,
    Path((tenant, source)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    // A body longer than the limit stops being read at the limit; it is refused as too large
    // in our error shape, like one just over it.
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => to_api_error(IngestError::TooLarge(MAX_BODY_BYTES + 1)),
        _ => ApiError::bad_request(rejection.body_text()),
    })?;
    // An unknown tenant gets the same answer as a bad signature: no tenant discovery.
    let tenant = TenantId::parse(&tenant).map_err(|_| {
        ApiError::unauthorized("the request is not signed for this tenant and source")
    })?;
    match ingest::ingest_webhook(
        state.store.as_ref(),
        state.clock.now(),
        &tenant,
        &source,
        &RequestHeaders(&headers),
        &body,
    )
    .await
    {
        Ok(IngestOutcome::Accepted {
            event_id,
            event_type,
        }) => Ok((
            StatusCode::ACCEPTED,
            Json(
                serde_json::json!({ "status": "accepted", "event_id": event_id.to_string(), "type": event_type }),
            ),
        )),
        Ok(IngestOutcome::Duplicate) => Ok((
            StatusCode::OK,
            Json(serde_json::json!({ "status": "duplicate" })),
        )),
        Ok(IngestOutcome::Outdated) => Ok((
            StatusCode::OK,
            Json(serde_json::json!({ "status": "outdated" })),
        )),
        Ok(IngestOutcome::Ignored(what)) => Ok((
            StatusCode::OK,
            Json(
                serde_json::json!({ "status": "ignored", "reason": format!("{what} is not acted on") }),
            ),
        )),
        Err(e) => Err(to_api_error(e)),
    }
}

/// The request's headers as the core reads them.
struct RequestHeaders<'a>(&'a HeaderMap);

impl Headers for RequestHeaders<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
}

fn to_api_error(e: IngestError) -> ApiError {
    match e {
        IngestError::UnknownSource(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_source", e.to_string())
        }
        IngestError::NotConfigured | IngestError::Signature(_) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string())
        }
        IngestError::TooLarge(_) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
        }
        IngestError::BadBody(_) | IngestError::UnsupportedType(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string())
        }
        IngestError::Store(e) if e.is_transient() => ApiError::unavailable(e),
        IngestError::Store(e) => ApiError::internal(e),
    }
}
