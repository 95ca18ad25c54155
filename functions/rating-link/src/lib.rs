//! `rating-link`: `GET /r/{token}` records the rating its signed token names, in one conditional
//! write, and shows the comment page; `POST /r/{token}` saves the comment and may change the
//! rating. Mail scanners record nothing: HEAD requests, scanner user agents, and bursts of
//! several choices are shown a page that asks a person to confirm (`docs/rating-links.md`).

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use closedloop_core::domain::{CsatValue, Rating, SurveyKind, TenantSettings};
use closedloop_core::ports::Clock;
use closedloop_core::ratings::{self, Links, Outcome, RatingError, Recorded, Via};
use closedloop_core::scanners;
use closedloop_core::store::ItemStore;
use closedloop_core::tenancy::SettingsCache;
use closedloop_core::tokens::{TokenError, TokenKeyring};
use closedloop_core::unsubscribe::{self, Unsubscribing};
use serde::Deserialize;

#[derive(Clone)]
pub struct RatingLinkState {
    pub store: Arc<dyn ItemStore>,
    pub clock: Arc<dyn Clock>,
    pub keyring: Arc<TokenKeyring>,
    /// Tenants' settings, read on every click; share it with whatever saves them (the admin
    /// API) so that an edit is seen at once, else it is seen within `SETTINGS_TTL`.
    pub settings: Arc<SettingsCache>,
}

impl RatingLinkState {
    fn links(&self) -> Links<'_> {
        Links {
            keyring: &self.keyring,
            settings: &self.settings,
        }
    }
}

pub fn router(state: RatingLinkState) -> Router {
    Router::new()
        .route("/r/{token}", get(click).head(scanned).post(submit))
        .route(
            "/u/{token}",
            get(unsubscribe_page).head(scanned).post(unsubscribe),
        )
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
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
            ratings::preview(store, state.links(), now, &token).await
        }
        None => ratings::record_click(store, state.links(), now, &token).await,
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

/// The form's largest body: the longest comment (5,000 characters) fits even when every
/// character takes four bytes, percent-encoded to twelve.
const MAX_FORM_BYTES: usize = 64 * 1024;

async fn submit(
    State(state): State<RatingLinkState>,
    Path(token): Path<String>,
    form: Result<axum::Form<CommentForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    // A customer sees a page, never axum's plain-text rejection.
    let form = match form {
        Ok(axum::Form(form)) => form,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return message_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Your comment is too long",
                "Please shorten it to 5,000 characters and send it again.",
            );
        }
        Err(_) => {
            return message_page(
                StatusCode::BAD_REQUEST,
                "This form doesn't work",
                "Please use the buttons in the email again.",
            );
        }
    };
    let now = state.clock.now();
    match ratings::submit(
        state.store.as_ref(),
        state.links(),
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
<form method="post" action="./{token}"><button type="submit">Unsubscribe</button></form>"#,
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
    message_page(status, title, text)
}

fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    page(status, title, None, &format!("<p>{}</p>", escape(text)))
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

/// Appends `s` HTML-escaped, copying the runs between special characters whole.
fn escape_into(out: &mut String, s: &str) {
    let mut rest = s;
    // The five are ASCII, so a byte match never splits a character.
    while let Some(i) = rest
        .bytes()
        .position(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\''))
    {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// A survey's choices: (value, label).
fn choices(kind: SurveyKind) -> &'static [(&'static str, &'static str)] {
    const CSAT: [(&str, &str); 3] = [
        (CsatValue::Positive.as_str(), "Good"),
        (CsatValue::Neutral.as_str(), "Okay"),
        (CsatValue::Negative.as_str(), "Bad"),
    ];
    const NPS: [(&str, &str); 11] = [
        ("0", "0"),
        ("1", "1"),
        ("2", "2"),
        ("3", "3"),
        ("4", "4"),
        ("5", "5"),
        ("6", "6"),
        ("7", "7"),
        ("8", "8"),
        ("9", "9"),
        ("10", "10"),
    ];
    match kind {
        SurveyKind::Csat => &CSAT,
        SurveyKind::Nps => &NPS,
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
    // Written straight into the page: this runs on every click.
    page_with(StatusCode::OK, title, Some(&recorded.settings), |out| {
        out.push_str(r#"<p class="note" role="status">"#);
        escape_into(out, note);
        // Relative, so the form posts back to the page's own URL also behind a path prefix
        // (a custom domain mapped at a base path, an emulator's invoke URL).
        out.push_str("</p>\n<form method=\"post\" action=\"./");
        escape_into(out, token);
        out.push_str("\">\n<fieldset><legend>");
        escape_into(out, legend);
        out.push_str(r#"</legend><div class="choices">"#);
        for &(value, label) in choices(recorded.request.kind) {
            out.push_str(r#"<label class="choice"><input type="radio" name="rating" value=""#);
            escape_into(out, value);
            out.push('"');
            if value == current {
                out.push_str(" checked");
            }
            if locked && value != current {
                out.push_str(" disabled");
            }
            out.push_str("><span>");
            escape_into(out, label);
            out.push_str("</span></label>");
        }
        out.push_str("</div></fieldset>\n");
        if locked {
            out.push_str("<p class=\"hint\">Your rating is recorded and can't be changed here, but you can add a comment.</p>");
        }
        out.push_str(
            "\n<label for=\"comment\" class=\"field\">Anything you'd like to add? (optional)</label>\n\
             <textarea id=\"comment\" name=\"comment\" rows=\"5\" maxlength=\"5000\">",
        );
        if let Some(comment) = &review.comment {
            escape_into(out, comment.as_str());
        }
        out.push_str("</textarea>\n<button type=\"submit\">");
        out.push_str(button);
        out.push_str("</button>\n</form>\n<p class=\"hint\">About ticket: ");
        escape_into(out, &recorded.request.ticket.subject);
        out.push_str("</p>");
    })
}

/// The page around a body: `@name@` marks where a value goes. Only the brand colour varies in
/// the style sheet.
const PAGE: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>@title@</title>
<style>
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1f2937}
header{background:@color@;color:#fff;padding:.9rem 1.25rem;font-weight:600}
main{max-width:34rem;margin:0 auto;padding:1.25rem}
h1{font-size:1.4rem;margin:.5rem 0 1rem}
fieldset{border:0;padding:0;margin:0 0 1rem}legend{font-weight:600;margin-bottom:.5rem}
.choices{display:flex;flex-wrap:wrap;gap:.5rem}
.choice{flex:1 0 auto;min-width:3rem}
.choice input{position:absolute;opacity:0}
.choice span{display:block;text-align:center;padding:.75rem .5rem;border:2px solid #d1d5db;border-radius:.5rem;background:#fff;cursor:pointer}
.choice input:checked+span{border-color:@color@;background:@color@;color:#fff}
.choice input:focus-visible+span{outline:3px solid #111827;outline-offset:2px}
.choice input:disabled+span{opacity:.45;cursor:not-allowed}
.field{display:block;font-weight:600;margin:.5rem 0}
textarea{width:100%;box-sizing:border-box;font:inherit;padding:.6rem;border:2px solid #d1d5db;border-radius:.5rem}
button{margin-top:1rem;width:100%;padding:.85rem;font:inherit;font-weight:600;border:0;border-radius:.5rem;background:@color@;color:#fff;cursor:pointer}
button:focus-visible,textarea:focus-visible{outline:3px solid #111827;outline-offset:2px}
.note{background:#ecfdf5;border-left:4px solid #16a34a;padding:.6rem .8rem}
.hint{color:#4b5563;font-size:.9rem}
</style></head>
<body><header>@brand@</header><main><h1>@title@</h1>@body@</main></body></html>"#;

/// A small, mobile-first, accessible page in the tenant's name and colour. `body_html` is
/// markup built here, with every customer- or tenant-entered value escaped.
fn page(
    status: StatusCode,
    title: &str,
    settings: Option<&TenantSettings>,
    body_html: &str,
) -> Response {
    page_with(status, title, settings, |out| out.push_str(body_html))
}

/// [`page`], with the body written by `body` into the page's own buffer.
fn page_with(
    status: StatusCode,
    title: &str,
    settings: Option<&TenantSettings>,
    body: impl FnOnce(&mut String),
) -> Response {
    /// PAGE split once: literal markup, then what follows it.
    static PIECES: LazyLock<Vec<(&str, Option<&str>)>> = LazyLock::new(|| {
        let mut pieces = PAGE.split('@');
        std::iter::from_fn(|| Some((pieces.next()?, pieces.next()))).collect()
    });
    let mut html = String::with_capacity(PAGE.len() + 2048);
    let mut body = Some(body);
    for &(markup, slot) in PIECES.iter() {
        html.push_str(markup);
        match slot {
            None => {}
            Some("title") => escape_into(&mut html, title),
            // brand_color is validated as #rrggbb, so it is safe inside CSS.
            Some("color") => html.push_str(settings.map_or("#2563eb", |s| s.brand_color.as_str())),
            Some("brand") => {
                if let Some(s) = settings {
                    escape_into(&mut html, &s.brand_name);
                }
            }
            Some("body") => {
                if let Some(body) = body.take() {
                    body(&mut html);
                }
            }
            Some(other) => unreachable!("PAGE has no marker {other}"),
        }
    }
    (status, Html(html)).into_response()
}
