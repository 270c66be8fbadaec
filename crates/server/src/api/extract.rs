//! The API's extractors and middleware: JSON bodies, path ids, query strings and bearer
//! tokens, each failing with an [`ApiError`] (never one of axum's own rejections).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body parsed into `T`: 415 without a JSON content type, 413 over the body limit,
/// 400 for unparsable JSON, 422 `invalid_request` naming the field for wrong types.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Like [`JsonBody`], but an empty body without a content type is `T::default()`.
#[derive(Debug)]
pub(crate) struct OptionalJsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let has_type = req.headers().contains_key(header::CONTENT_TYPE);
        if has_type && !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        if !has_type {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_json(&bytes).map(OptionalJsonBody)
    }
}

async fn read_body(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit: state.limits().body_limit }
        } else {
            ApiError::InvalidJson(rejection.body_text())
        }
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses JSON into `T` in one pass. Only on failure is the body looked at again: a body
/// that is not JSON at all (any syntax error, trailing bytes included) is 400 `invalid_json`;
/// valid JSON of the wrong shape is 422 `invalid_request` naming the field (found by a second,
/// path-tracking parse, so the success path pays nothing for it).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let error = match serde_json::from_slice(bytes) {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };
    if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(ApiError::InvalidJson(syntax.to_string()));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => {
            let path = e.path().to_string();
            Err(ApiError::InvalidRequest {
                field: (path != ".").then_some(path),
                message: e.into_inner().to_string(),
            })
        }
        // Unreachable in practice (the same input failed above); report the first error.
        Ok(_) => Err(ApiError::InvalidRequest { field: None, message: error.to_string() }),
    }
}

/// Deserializes an already parsed JSON value into `T`; errors name `prefix` + the path.
pub(crate) fn from_value<T: DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = join(prefix, &e.path().to_string());
        ApiError::InvalidRequest {
            field: (!path.is_empty()).then_some(path),
            message: e.into_inner().to_string(),
        }
    })
}

/// `prefix` and a serde path (`.` for the root) joined: `webhooks[0]` + `url`.
pub(crate) fn join(prefix: &str, path: &str) -> String {
    match (prefix, path) {
        (p, ".") | (p, "") => p.to_owned(),
        ("", p) => p.to_owned(),
        (p, q) if q.starts_with('[') => format!("{p}{q}"),
        (p, q) => format!("{p}.{q}"),
    }
}

/// A query string parsed into `T`; 422 `invalid_request` naming the parameter.
#[derive(Debug)]
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de).map(QueryParams).map_err(|e| {
            let path = e.path().to_string();
            ApiError::InvalidRequest {
                field: (path != ".").then_some(path),
                message: format!("invalid query string: {}", e.into_inner()),
            }
        })
    }
}

fn form_urlencoded_parse(query: &str) -> url::form_urlencoded::Parse<'_> {
    url::form_urlencoded::parse(query.as_bytes())
}

/// The `{id}` of an execution route; anything but a UUID is an unknown execution (404).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExecutionId(pub(crate) Uuid);

impl<S: Send + Sync> FromRequestParts<S> for ExecutionId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::RouteNotFound(parts.uri.path().to_owned()))?;
        Uuid::try_parse(&raw)
            .map(ExecutionId)
            .map_err(|_| ApiError::ExecutionNotFound(raw.chars().take(64).collect()))
    }
}

/// The execution of an ingest or complete route, once the request proved it may produce for
/// it (the API token or the execution's ingest token). Runs before the body is read, so an
/// unauthorized request is refused without parsing anything.
#[derive(Debug)]
pub(crate) struct Producer(pub(crate) crate::store::Execution);

impl FromRequestParts<AppState> for Producer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ExecutionId(id) = ExecutionId::from_request_parts(parts, state).await?;
        state.authorize_producer(id, bearer(&parts.headers)).await.map(Producer)
    }
}

/// The bearer token of the request, if it carries one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Middleware: 401 unless the request carries the API token.
pub(crate) async fn require_api_token(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match bearer(req.headers()) {
        Some(token) if state.api_token().verify(token) => Ok(next.run(req).await),
        _ => Err(ApiError::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Shape {
        a: Vec<Inner>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        b: u32,
    }

    #[test]
    fn syntax_is_400_and_types_are_422_with_the_path() {
        assert_eq!(parse_json::<Shape>(b"{").unwrap_err().code(), "invalid_json");
        assert_eq!(parse_json::<Shape>(b"{} x").unwrap_err().code(), "invalid_json");
        let e = parse_json::<Shape>(br#"{"a": [{"b": 1}, {"b": "x"}]}"#).unwrap_err();
        assert_eq!(e.code(), "invalid_request");
        assert_eq!(e.details()["field"], "a[1].b");
    }

    #[test]
    fn join_builds_field_paths() {
        assert_eq!(join("webhooks[0]", "url"), "webhooks[0].url");
        assert_eq!(join("webhooks", "[1]"), "webhooks[1]");
        assert_eq!(join("x", "."), "x");
    }

    #[test]
    fn bearer_reads_the_scheme_case_insensitively() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
