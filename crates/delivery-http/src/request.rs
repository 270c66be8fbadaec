//! Request building: one attempt's `POST` with the headers of SPEC §4 (`Content-Type`,
//! `User-Agent`, `webhook-id`, `webhook-timestamp`), the static extra headers, then the
//! authentication strategy, called on every attempt so a signature covers its timestamp.
//!
//! This module does not send anything and does not decide when to attempt.

use bytes::Bytes;
use hookstream_auth::{AuthError, OutgoingRequest};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request};
use http_body_util::Full;

use crate::config::WebhookConfig;
use crate::ledger::BatchId;

const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");

/// Builds the request of one attempt of `batch_id` carrying `body`, stamped `timestamp`
/// (unix seconds).
pub(crate) async fn build(
    config: &WebhookConfig,
    user_agent: &HeaderValue,
    batch_id: &BatchId,
    body: &Bytes,
    timestamp: i64,
) -> Result<Request<Full<Bytes>>, AuthError> {
    let mut headers = HeaderMap::with_capacity(6 + config.headers().len());
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(USER_AGENT, user_agent.clone());
    // A batch id is `msg_` and hex: always a valid header value.
    if let Ok(id) = HeaderValue::from_str(batch_id.as_str()) {
        headers.insert(WEBHOOK_ID, id);
    }
    headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
    for (name, value) in config.headers() {
        headers.append(name, value.clone());
    }
    let method = Method::POST;
    let uri = config.uri();
    config
        .auth()
        .authenticate(&mut OutgoingRequest::new(
            &method,
            uri,
            &mut headers,
            body,
            batch_id.as_str(),
            timestamp,
        ))
        .await?;
    let mut request = Request::new(Full::new(body.clone()));
    *request.method_mut() = method;
    *request.uri_mut() = uri.clone();
    *request.headers_mut() = headers;
    Ok(request)
}
