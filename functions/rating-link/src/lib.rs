//! `rating-link`: `GET /r/{token}` records the rating its signed token names, in one conditional
//! write, and shows the comment page; `POST /r/{token}` saves the comment and may change the
//! rating. Mail scanners record nothing: HEAD requests, scanner user agents, and bursts of
//! several choices are shown a page that asks a person to confirm (`docs/rating-links.md`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use closedloop_core::domain::{CsatValue, Rating, SurveyKind, TenantSettings};
use closedloop_core::ports::Clock;
use closedloop_core::ratings::{self, Outcome, RatingError, Recorded, Via};
use closedloop_core::scanners;
use closedloop_core::store::ItemStore;
use closedloop_core::tokens::{TokenError, TokenKeyring};
use closedloop_core::unsubscribe::{self, Unsubscribing};
use serde::Deserialize;

#[derive(Clone)]
pub struct RatingLinkState {
    pub store: Arc<dyn ItemStore>,
    pub clock: Arc<dyn Clock>,
    pub keyring: Arc<TokenKeyring>,
}

pub fn router(state: RatingLinkState) -> Router {
    Router::new()
        .route("/r/{token}", get(click).head(scanned).post(submit))
        .route(
            "/u/{token}",
            get(unsubscribe_page).head(scanned).post(unsubscribe),
        )
        .layer(DefaultBodyLimit::max(32 * 1024))
        .fallback(closedloop_http::unknown_route)
        .with_state(state)
}

/// Mail scanners send HEAD; answering without recording keeps them from rating.
async fn scanned() -> StatusCode {
    StatusCode::OK
}

async fn click(
    State(state): State<RatingLinkState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (store, now) = (state.store.as_ref(), state.clock.now());
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let result = match scanners::machine_user_agent(user_agent) {
        Some(reason) => {
            tracing::info!(reason, "link opened by a machine; asking for confirmation");
            ratings::preview(store, &state.keyring, now, &token).await
        }
        None => ratings::record_click(store, &state.keyring, now, &token).await,
    };
    match result {
        Ok(recorded) => comment_page(&token, &recorded, None),
        Err(e) => error_page(e),
    }
}

#[derive(Deserialize)]
struct CommentForm {
    rating: Option<String>,
    #[serde(default)]
    comment: String,
}

async fn submit(
    State(state): State<RatingLinkState>,
    Path(token): Path<String>,
    axum::Form(form): axum::Form<CommentForm>,
) -> Response {
    let now = state.clock.now();
    match ratings::submit(
        state.store.as_ref(),
        &state.keyring,
        now,
        &token,
        Via::Form,
        form.rating.as_deref(),
        Some(&form.comment),
    )
    .await
    {
        Ok(recorded) => {
            let note = if recorded.change_refused {
                "Your comment was saved. Your rating was already recorded and can no longer be changed."
            } else {
                "Thank you! Your answer and comment were saved."
            };
            comment_page(&token, &recorded, Some(note))
        }
        Err(e) => error_page(e),
    }
}

/// Opening the link only asks: scanners open links, and must not unsubscribe anyone.
async fn unsubscribe_page(
    State(state): State<RatingLinkState>,
    Path(token): Path<String>,
) -> Response {
    match unsubscribe::preview(
        state.store.as_ref(),
        &state.keyring,
        state.clock.now(),
        &token,
    )
    .await
    {
        Ok(found) if found.already => unsubscribed_page(&found),
        Ok(found) => {
            let body = format!(
                r#"<p>Do you want to stop receiving requests to rate {brand}'s support at <strong>{email}</strong>?</p>
<form method="post" action="/u/{token}"><button type="submit">Unsubscribe</button></form>"#,
                brand = escape(&found.settings.brand_name),
                email = escape(found.request.ticket.contact.email.as_str()),
                token = escape(&token),
            );
            page(
                StatusCode::OK,
                "Unsubscribe from rating requests?",
                Some(&found.settings),
                &body,
            )
        }
        Err(e) => error_page(e),
    }
}

/// The page's button and mail clients' one-click unsubscribe (RFC 8058) both POST here; the
/// body (`List-Unsubscribe=One-Click` or empty) does not matter.
async fn unsubscribe(State(state): State<RatingLinkState>, Path(token): Path<String>) -> Response {
    match unsubscribe::unsubscribe(
        state.store.as_ref(),
        &state.keyring,
        state.clock.now(),
        &token,
    )
    .await
    {
        Ok(done) => unsubscribed_page(&done),
        Err(e) => error_page(e),
    }
}

fn unsubscribed_page(done: &Unsubscribing) -> Response {
    let body = format!(
        "<p>{} will not ask <strong>{}</strong> to rate its support again.</p>",
        escape(&done.settings.brand_name),
        escape(done.request.ticket.contact.email.as_str()),
    );
    page(
        StatusCode::OK,
        "You are unsubscribed",
        Some(&done.settings),
        &body,
    )
}

fn error_page(error: RatingError) -> Response {
    let (status, title, text) = match &error {
        RatingError::Token(TokenError::Expired) => (
            StatusCode::GONE,
            "This link has expired",
            "Rating links stay valid for 30 days. Thank you for wanting to tell us!",
        ),
        RatingError::Token(_) | RatingError::BadValue(_) => (
            StatusCode::BAD_REQUEST,
            "This link doesn't work",
            "It may have been cut off by your email program. Please use the buttons in the email again.",
        ),
        RatingError::BadComment(_) => (
            StatusCode::BAD_REQUEST,
            "Your comment is too long",
            "Please shorten it to 5,000 characters and send it again. Your rating is saved.",
        ),
        RatingError::UnknownRequest | RatingError::Withdrawn => (
            StatusCode::NOT_FOUND,
            "This survey is closed",
            "Nothing was recorded. Thank you all the same!",
        ),
        RatingError::Store(_) | RatingError::Tenancy(_) => {
            tracing::error!(error = %error, "recording a rating failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "We couldn't record your answer just now. Please click the link again in a minute.",
            )
        }
    };
    page(status, title, None, &format!("<p>{}</p>", escape(text)))
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn choices(kind: SurveyKind) -> Vec<(String, String)> {
    match kind {
        SurveyKind::Csat => CsatValue::ALL
            .iter()
            .map(|v| {
                let label = match v {
                    CsatValue::Positive => "Good",
                    CsatValue::Neutral => "Okay",
                    CsatValue::Negative => "Bad",
                };
                (v.as_str().to_string(), label.to_string())
            })
            .collect(),
        SurveyKind::Nps => (0..=10).map(|n| (n.to_string(), n.to_string())).collect(),
    }
}

/// Thanks, the choice preselected, a comment box and a submit button. When the answer still
/// needs a person's confirmation, the same form asks for it.
fn comment_page(token: &str, recorded: &Recorded, note: Option<&str>) -> Response {
    let review = &recorded.review;
    let current = review.rating.value_string();
    let confirming = !matches!(recorded.outcome, Outcome::Saved { .. });
    let locked = recorded.settings.forbid_rating_change && !confirming;
    let legend = match review.rating {
        Rating::Csat(_) => "How did we do?",
        Rating::Nps(_) => {
            "How likely are you to recommend us to a friend or colleague? (0 = not at all, 10 = extremely)"
        }
    };
    let mut radios = String::new();
    for (value, label) in choices(recorded.request.kind) {
        let checked = if value == current { " checked" } else { "" };
        let disabled = if locked && value != current {
            " disabled"
        } else {
            ""
        };
        radios.push_str(&format!(
            r#"<label class="choice"><input type="radio" name="rating" value="{v}"{checked}{disabled}><span>{l}</span></label>"#,
            v = escape(&value),
            l = escape(&label)
        ));
    }
    let comment = review
        .comment
        .as_ref()
        .map(|c| escape(c.as_str()))
        .unwrap_or_default();
    let (title, note, button) = match recorded.outcome {
        Outcome::Saved { .. } => (
            "Thank you for your feedback",
            note.unwrap_or("Thank you! We recorded your answer."),
            "Send",
        ),
        Outcome::ConfirmChange => (
            "Change your answer?",
            "You already answered this survey. Press Confirm to change your answer to the one selected below.",
            "Confirm",
        ),
        Outcome::AwaitingConfirmation | Outcome::NotRecorded => (
            "Please confirm your answer",
            "Press Confirm to record the answer selected below.",
            "Confirm",
        ),
    };
    let status_line = format!(r#"<p class="note" role="status">{}</p>"#, escape(note));
    let locked_line = if locked {
        "<p class=\"hint\">Your rating is recorded and can't be changed here, but you can add a comment.</p>"
    } else {
        ""
    };
    let body = format!(
        r#"{status_line}
<form method="post" action="/r/{token}">
<fieldset><legend>{legend}</legend><div class="choices">{radios}</div></fieldset>
{locked_line}
<label for="comment" class="field">Anything you'd like to add? (optional)</label>
<textarea id="comment" name="comment" rows="5" maxlength="5000">{comment}</textarea>
<button type="submit">{button}</button>
</form>
<p class="hint">About ticket: {subject}</p>"#,
        token = escape(token),
        legend = escape(legend),
        subject = escape(&recorded.request.ticket.subject),
    );
    page(StatusCode::OK, title, Some(&recorded.settings), &body)
}

/// A small, mobile-first, accessible page in the tenant's name and colour. `body_html` is
/// markup built here, with every customer- or tenant-entered value escaped.
fn page(
    status: StatusCode,
    title: &str,
    settings: Option<&TenantSettings>,
    body_html: &str,
) -> Response {
    // brand_color is validated as #rrggbb, so it is safe inside CSS.
    let (brand, color) = settings
        .map(|s| (escape(&s.brand_name), s.brand_color.clone()))
        .unwrap_or_else(|| (String::new(), "#2563eb".into()));
    let html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title>
<style>
body{{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1f2937}}
header{{background:{color};color:#fff;padding:.9rem 1.25rem;font-weight:600}}
main{{max-width:34rem;margin:0 auto;padding:1.25rem}}
h1{{font-size:1.4rem;margin:.5rem 0 1rem}}
fieldset{{border:0;padding:0;margin:0 0 1rem}}legend{{font-weight:600;margin-bottom:.5rem}}
.choices{{display:flex;flex-wrap:wrap;gap:.5rem}}
.choice{{flex:1 0 auto;min-width:3rem}}
.choice input{{position:absolute;opacity:0}}
.choice span{{display:block;text-align:center;padding:.75rem .5rem;border:2px solid #d1d5db;border-radius:.5rem;background:#fff;cursor:pointer}}
.choice input:checked+span{{border-color:{color};background:{color};color:#fff}}
.choice input:focus-visible+span{{outline:3px solid #111827;outline-offset:2px}}
.choice input:disabled+span{{opacity:.45;cursor:not-allowed}}
.field{{display:block;font-weight:600;margin:.5rem 0}}
textarea{{width:100%;box-sizing:border-box;font:inherit;padding:.6rem;border:2px solid #d1d5db;border-radius:.5rem}}
button{{margin-top:1rem;width:100%;padding:.85rem;font:inherit;font-weight:600;border:0;border-radius:.5rem;background:{color};color:#fff;cursor:pointer}}
button:focus-visible,textarea:focus-visible{{outline:3px solid #111827;outline-offset:2px}}
.note{{background:#ecfdf5;border-left:4px solid #16a34a;padding:.6rem .8rem}}
.hint{{color:#4b5563;font-size:.9rem}}
</style></head>
<body><header>{brand}</header><main><h1>{title}</h1>{body_html}</main></body></html>"#,
        title = escape(title),
    );
    (status, Html(html)).into_response()
}
