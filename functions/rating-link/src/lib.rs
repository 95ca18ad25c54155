//! `rating-link`: `GET /r/{token}` records the rating its signed token names, in one write, and
//! shows the thank-you page. HEAD requests (link scanners) record nothing.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use closedloop_core::ports::Clock;
use closedloop_core::ratings::{self, RatingError};
use closedloop_core::store::ItemStore;
use closedloop_core::tokens::{TokenError, TokenKeyring};

#[derive(Clone)]
pub struct RatingLinkState {
    pub store: Arc<dyn ItemStore>,
    pub clock: Arc<dyn Clock>,
    pub keyring: Arc<TokenKeyring>,
}

pub fn router(state: RatingLinkState) -> Router {
    Router::new()
        .route("/r/{token}", get(click).head(scanned))
        .fallback(closedloop_http::unknown_route)
        .with_state(state)
}

/// Mail scanners send HEAD; answering without recording keeps them from rating.
async fn scanned() -> StatusCode {
    StatusCode::OK
}

async fn click(State(state): State<RatingLinkState>, Path(token): Path<String>) -> Response {
    match ratings::record_click(
        state.store.as_ref(),
        &state.keyring,
        state.clock.now(),
        &token,
    )
    .await
    {
        Ok(recorded) => page(
            StatusCode::OK,
            "Thank you!",
            &format!(
                "We recorded your answer: <strong>{}</strong>.",
                escape(&recorded.review.rating.value_string())
            ),
        ),
        Err(RatingError::Token(TokenError::Expired)) => page(
            StatusCode::GONE,
            "This link has expired",
            "Rating links stay valid for 30 days. Thank you for wanting to tell us!",
        ),
        Err(RatingError::Token(_)) => page(
            StatusCode::BAD_REQUEST,
            "This link doesn't work",
            "It may have been cut off by your email program. Please use the buttons in the email again.",
        ),
        Err(RatingError::UnknownRequest | RatingError::Withdrawn) => page(
            StatusCode::NOT_FOUND,
            "This survey is closed",
            "Nothing was recorded. Thank you all the same!",
        ),
        Err(RatingError::BadValue(_)) => page(
            StatusCode::BAD_REQUEST,
            "This link doesn't work",
            "Please use the buttons in the email again.",
        ),
        Err(RatingError::Store(e)) => {
            tracing::error!(error = %e, "recording a rating failed");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "We couldn't record your answer just now. Please click the link again in a minute.",
            )
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A small mobile-first page; `body_html` is trusted markup built here with escaped values.
fn page(status: StatusCode, title: &str, body_html: &str) -> Response {
    let html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{title}</title>
<style>body{{margin:0;font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f4f5f7;color:#1f2937}}main{{max-width:32rem;margin:0 auto;padding:2rem 1.25rem}}h1{{font-size:1.5rem}}</style></head>
<body><main><h1>{title}</h1><p>{body_html}</p></main></body></html>"#,
        title = escape(title)
    );
    (status, Html(html)).into_response()
}
