//! The exact headers each built-in strategy produces.

use hookstream_auth::signature::{sign, SigningSecret};
use hookstream_auth::Registry;
use serde_json::{json, Value};

use crate::support::{headers_of, pairs, BODY, TIMESTAMP, WEBHOOK_ID};

async fn produced(config: Value) -> Vec<(String, String)> {
    let strategy = Registry::with_builtins().build(&config).expect("valid config");
    pairs(&headers_of(strategy.as_ref()).await.expect("authenticates"))
}

fn one(name: &str, value: &str) -> Vec<(String, String)> {
    vec![(name.to_owned(), value.to_owned())]
}

#[tokio::test]
async fn none_and_null_add_nothing() {
    assert_eq!(produced(json!({"strategy": "none"})).await, vec![]);
    assert_eq!(produced(Value::Null).await, vec![]);
    let strategy = Registry::with_builtins().build(&Value::Null).expect("valid");
    assert_eq!(strategy.name(), "none");
}

#[tokio::test]
async fn bearer_sets_authorization() {
    let headers = produced(json!({"strategy": "bearer", "token": "my-secret-token"})).await;
    assert_eq!(headers, one("authorization", "Bearer my-secret-token"));
}

#[tokio::test]
async fn basic_sets_rfc7617_credentials() {
    // base64("aladdin:open sesame")
    let headers =
        produced(json!({"strategy": "basic", "username": "aladdin", "password": "open sesame"}))
            .await;
    assert_eq!(headers, one("authorization", "Basic YWxhZGRpbjpvcGVuIHNlc2FtZQ=="));
}

#[tokio::test]
async fn header_sets_one_custom_header_with_a_lowercase_name() {
    let headers =
        produced(json!({"strategy": "header", "name": "X-Api-Key", "value": "k-123"})).await;
    assert_eq!(headers, one("x-api-key", "k-123"));
}

#[tokio::test]
async fn header_may_set_authorization_with_a_custom_scheme() {
    let headers =
        produced(json!({"strategy": "header", "name": "Authorization", "value": "Token abc"}))
            .await;
    assert_eq!(headers, one("authorization", "Token abc"));
}

#[tokio::test]
async fn hmac_signs_id_timestamp_and_body() {
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let headers = produced(json!({"strategy": "hmac", "secret": secret})).await;
    let key = SigningSecret::parse(secret).expect("valid");
    let expected = sign(&key, WEBHOOK_ID, TIMESTAMP, BODY);
    assert!(expected.starts_with("v1,"));
    assert_eq!(headers, one("webhook-signature", &expected));
}

#[tokio::test]
async fn hmac_with_a_raw_secret_uses_its_bytes_as_the_key() {
    let headers = produced(json!({"strategy": "hmac", "secret": "plain shared secret"})).await;
    let key = SigningSecret::from_bytes(b"plain shared secret".to_vec()).expect("valid");
    assert_eq!(headers, one("webhook-signature", &sign(&key, WEBHOOK_ID, TIMESTAMP, BODY)));
}

#[tokio::test]
async fn strategies_replace_a_header_already_present() {
    let strategy =
        Registry::with_builtins().build(&json!({"strategy": "bearer", "token": "new"})).unwrap();
    let (method, uri) = (http::Method::POST, http::Uri::from_static("https://r.example/"));
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", http::HeaderValue::from_static("Bearer old"));
    let mut request =
        hookstream_auth::OutgoingRequest::new(&method, &uri, &mut headers, BODY, "id", 1);
    strategy.authenticate(&mut request).await.expect("authenticates");
    assert_eq!(pairs(&headers), one("authorization", "Bearer new"));
}

#[tokio::test]
async fn hmac_signs_each_attempt_with_its_own_timestamp() {
    let strategy =
        Registry::with_builtins().build(&json!({"strategy": "hmac", "secret": "k"})).unwrap();
    let (method, uri) = (http::Method::POST, http::Uri::from_static("https://r.example/"));
    let mut signatures = Vec::new();
    for timestamp in [100, 101] {
        let mut headers = http::HeaderMap::new();
        let mut request = hookstream_auth::OutgoingRequest::new(
            &method,
            &uri,
            &mut headers,
            BODY,
            "id",
            timestamp,
        );
        strategy.authenticate(&mut request).await.expect("authenticates");
        signatures.push(headers["webhook-signature"].clone());
    }
    assert_ne!(signatures[0], signatures[1]);
}
