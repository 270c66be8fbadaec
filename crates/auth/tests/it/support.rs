//! Test helpers: running a strategy on a request and reading back its headers.

use hookstream_auth::{AuthError, AuthStrategy, OutgoingRequest};
use http::{HeaderMap, Method, Uri};

/// The body every test request carries.
pub(crate) const BODY: &[u8] = br#"{"events":[]}"#;
/// The `webhook-id` every test request carries.
pub(crate) const WEBHOOK_ID: &str = "msg_test";
/// The timestamp every test request carries.
pub(crate) const TIMESTAMP: i64 = 1_700_000_000;

/// Authenticates a POST of [`BODY`] and returns the headers the strategy set.
pub(crate) async fn headers_of(strategy: &dyn AuthStrategy) -> Result<HeaderMap, AuthError> {
    let method = Method::POST;
    let uri = Uri::from_static("https://receiver.example/hook");
    let mut headers = HeaderMap::new();
    let mut request =
        OutgoingRequest::new(&method, &uri, &mut headers, BODY, WEBHOOK_ID, TIMESTAMP);
    strategy.authenticate(&mut request).await?;
    Ok(headers)
}

/// The headers as sorted `(name, value)` pairs, for exact comparisons.
pub(crate) fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut pairs: Vec<_> = headers
        .iter()
        .map(|(name, value)| {
            (name.as_str().to_owned(), value.to_str().unwrap_or("<binary>").to_owned())
        })
        .collect();
    pairs.sort();
    pairs
}
