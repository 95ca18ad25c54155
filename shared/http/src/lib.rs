//! What every HTTP function shares: one JSON error shape, JSON extraction that explains what is
//! wrong, a JSON 404 for unknown routes, and running a Router on Lambda.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// An error a person can act on: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Where in the request body the problem is (`conditions.all[1].op`), when known.
    pub path: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            path: None,
        }
    }
    /// Names the offending place in the body; the message then starts with it too.
    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// Our failure: logged in full, reported vaguely.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; please retry",
        )
    }
    pub fn unavailable(error: impl std::fmt::Display) -> Self {
        tracing::warn!(%error, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "temporarily unavailable; please retry",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body =
            serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        if let Some(path) = self.path {
            body["error"]["path"] = serde_json::Value::String(path);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

/// The largest JSON body [`Json`] reads; a Router that takes JSON bodies sets it as its
/// `DefaultBodyLimit` (the largest legitimate one, three 64 KB templates, fits many times).
pub const MAX_JSON_BODY_BYTES: usize = 1024 * 1024;

/// `axum::Json`, with rejections turned into our error shape and a message naming the problem.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with 'Content-Type: application/json'",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            e.body_text().replace(
                "Failed to deserialize the JSON body into the target type: ",
                "",
            ),
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            too_large()
        }
        other => ApiError::bad_request(other.body_text()),
    }
}

/// The raw body, for handlers that parse it themselves, with the same too-large answer as
/// [`Json`].
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "the body is larger than this endpoint accepts (at most {} MB)",
            MAX_JSON_BODY_BYTES >> 20
        ),
    )
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The fallback for unknown routes.
pub async fn unknown_route(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

/// Runs an axum Router as a Lambda function behind API Gateway.
#[cfg(feature = "lambda")]
pub async fn run_on_lambda(router: axum::Router) -> Result<(), lambda_http::Error> {
    lambda_http::run(router).await
}
