//! [`ApiError`], the one error type of the HTTP API: every failure a route can answer, each
//! with its status, its stable snake_case code and the JSON body of SPEC §3:
//! `{"error": "<code>", "message": "<sentence>", "details": {...}}`.
//!
//! axum's own rejections never reach a client as such: the API's extractors map them here
//! (unparsable JSON 400, wrong types 422 with `details.field`, too large 413, wrong content
//! type 415). Nothing caused by a request's content answers 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::store::StoreError;

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400 `invalid_json`: the body is not JSON.
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// 422 `invalid_request`: valid JSON with an invalid part; `field` names it when known.
    #[error("{message}")]
    InvalidRequest {
        /// The path of the field (`webhooks[0].url`), when known.
        field: Option<String>,
        /// What is wrong, for a human.
        message: String,
    },
    /// 422 `missing_inputs`: the runner requires inputs the kickoff lacks.
    #[error("the kickoff lacks required inputs: {}", .0.join(", "))]
    MissingInputs(Vec<String>),
    /// 422 `blocked_target`: a webhook URL is a literal IP address in a blocked range.
    #[error("{message}")]
    BlockedTarget {
        /// The path of the URL field.
        field: String,
        /// What is blocked and how to allow it.
        message: String,
    },
    /// 422 `invalid_authentication`: a webhook's `authentication` is not valid.
    #[error("{message}")]
    InvalidAuthentication {
        /// The path of the field (`webhooks[0].authentication.token`).
        field: String,
        /// The strategy named, when one was.
        strategy: Option<String>,
        /// The registered strategies.
        known_strategies: Vec<String>,
        /// What is wrong, for a human.
        message: String,
    },
    /// 422 `invalid_event`: an ingested event is invalid; nothing of the request was stored.
    #[error("{message}")]
    InvalidEvent {
        /// The path of the field (`events[3].data.tokens`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// 401 `unauthorized`: no or a wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 404 `not_found`: no such route.
    #[error("no route for {0}")]
    RouteNotFound(String),
    /// 404 `execution_not_found`.
    #[error("no execution {0}")]
    ExecutionNotFound(String),
    /// 405 `method_not_allowed`.
    #[error("method {0} is not allowed on this route")]
    MethodNotAllowed(String),
    /// 409 `execution_ended`: the execution has ended and takes no more events or ends.
    #[error("execution {0} has ended")]
    ExecutionEnded(String),
    /// 409 `not_external`: the execution is run by the server's own runner, which ends it.
    #[error("execution {0} is run by the server's runner and ends with it")]
    NotExternal(String),
    /// 429 `backpressure`: a webhook of the execution is too far behind; retry shortly.
    #[error("a webhook of execution {0} is too far behind; retry in a moment")]
    Backpressure(String),
    /// 413 `payload_too_large`.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 415 `unsupported_media_type`.
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// 503 `request_timeout`: the server did not answer in time.
    #[error("the request took longer than {0} ms")]
    Timeout(u128),
    /// 503 `unavailable`: the store or another dependency cannot serve now.
    #[error("{0}")]
    Unavailable(String),
    /// 500 `internal`: a fault of the server itself, never of the request.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// 422 `invalid_request` about `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest { field: Some(field.into()), message: message.into() }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_) => StatusCode::BAD_REQUEST,
            Self::InvalidRequest { .. }
            | Self::MissingInputs(_)
            | Self::BlockedTarget { .. }
            | Self::InvalidAuthentication { .. }
            | Self::InvalidEvent { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::RouteNotFound(_) | Self::ExecutionNotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::ExecutionEnded(_) | Self::NotExternal(_) => StatusCode::CONFLICT,
            Self::Backpressure(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Timeout(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable snake_case code of the body's `error`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::MissingInputs(_) => "missing_inputs",
            Self::BlockedTarget { .. } => "blocked_target",
            Self::InvalidAuthentication { .. } => "invalid_authentication",
            Self::InvalidEvent { .. } => "invalid_event",
            Self::Unauthorized => "unauthorized",
            Self::RouteNotFound(_) => "not_found",
            Self::ExecutionNotFound(_) => "execution_not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::ExecutionEnded(_) => "execution_ended",
            Self::NotExternal(_) => "not_external",
            Self::Backpressure(_) => "backpressure",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Timeout(_) => "request_timeout",
            Self::Unavailable(_) => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// The body's `details` object.
    pub fn details(&self) -> Value {
        match self {
            Self::InvalidRequest { field: Some(field), .. }
            | Self::BlockedTarget { field, .. }
            | Self::InvalidEvent { field, .. } => json!({ "field": field }),
            Self::MissingInputs(missing) => json!({ "missing_inputs": missing }),
            Self::InvalidAuthentication { field, strategy, known_strategies, .. } => json!({
                "field": field,
                "strategy": strategy,
                "known_strategies": known_strategies,
            }),
            Self::PayloadTooLarge { limit } => json!({ "limit_bytes": limit }),
            _ => json!({}),
        }
    }

    /// The JSON body of SPEC §3.
    pub fn body(&self) -> Value {
        json!({ "error": self.code(), "message": self.to_string(), "details": self.details() })
    }

    /// The error for a failed store operation on execution `id`.
    pub fn from_store(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(id) => Self::ExecutionNotFound(id.to_string()),
            StoreError::Ended(id) | StoreError::AlreadyExists(id) => {
                Self::ExecutionEnded(id.to_string())
            }
            other => {
                tracing::error!(error = %other, source = ?std::error::Error::source(&other), "store failed");
                Self::Unavailable("the store cannot serve this request now; retry later".into())
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::from_store(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, axum::Json(self.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_code_message_and_details() {
        let e = ApiError::MissingInputs(vec!["topic".into()]);
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = e.body();
        assert_eq!(body["error"], "missing_inputs");
        assert_eq!(body["details"]["missing_inputs"][0], "topic");
        assert!(body["message"].as_str().unwrap().contains("topic"));
        assert_eq!(ApiError::invalid("inputs", "x").body()["details"]["field"], "inputs");
    }
}
