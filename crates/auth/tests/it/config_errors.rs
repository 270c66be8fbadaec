//! Every bad `authentication` object gives an error naming the strategy and the field, with
//! the known strategies attached.

use hookstream_auth::{AuthConfigError, Registry};
use serde_json::{json, Value};

const KNOWN: [&str; 6] = ["basic", "bearer", "header", "hmac", "none", "oauth2_client_credentials"];

fn error_of(config: Value) -> AuthConfigError {
    match Registry::with_builtins().validate(&config) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(error) => error,
    }
}

/// Asserts the message, the strategy and field accessors, and the known strategies.
fn check(config: Value, message: &str, strategy: Option<&str>, field: Option<&str>) {
    let error = error_of(config);
    assert_eq!(error.to_string(), message);
    assert_eq!(error.strategy(), strategy, "{message}");
    assert_eq!(error.field(), field, "{message}");
    assert_eq!(error.known_strategies(), KNOWN, "{message}");
    assert!(error.is_invalid_config());
}

#[test]
fn unknown_strategy_lists_the_known_ones() {
    check(
        json!({"strategy": "foo"}),
        "unknown authentication strategy \"foo\"; known strategies: \
         basic, bearer, header, hmac, none, oauth2_client_credentials",
        Some("foo"),
        Some("strategy"),
    );
}

#[test]
fn missing_or_non_string_strategy() {
    let message = "authentication: field \"strategy\" must be a string; known strategies: \
                   basic, bearer, header, hmac, none, oauth2_client_credentials";
    check(json!({"token": "x"}), message, None, Some("strategy"));
    check(json!({"strategy": 7}), message, None, Some("strategy"));
}

#[test]
fn not_an_object() {
    check(
        json!("bearer"),
        "authentication must be null or an object with a \"strategy\" field; known strategies: \
         basic, bearer, header, hmac, none, oauth2_client_credentials",
        None,
        None,
    );
}

#[test]
fn missing_fields() {
    let cases = [
        (json!({"strategy": "bearer"}), "bearer", "token"),
        (json!({"strategy": "bearer", "token": null}), "bearer", "token"),
        (json!({"strategy": "basic", "password": "p"}), "basic", "username"),
        (json!({"strategy": "basic", "username": "u"}), "basic", "password"),
        (json!({"strategy": "header", "value": "v"}), "header", "name"),
        (json!({"strategy": "header", "name": "x-key"}), "header", "value"),
        (json!({"strategy": "hmac"}), "hmac", "secret"),
        (
            json!({"strategy": "oauth2_client_credentials", "client_id": "c", "client_secret": "s"}),
            "oauth2_client_credentials",
            "token_url",
        ),
        (
            json!({"strategy": "oauth2_client_credentials", "token_url": "https://a.example/t", "client_secret": "s"}),
            "oauth2_client_credentials",
            "client_id",
        ),
        (
            json!({"strategy": "oauth2_client_credentials", "token_url": "https://a.example/t", "client_id": "c"}),
            "oauth2_client_credentials",
            "client_secret",
        ),
    ];
    for (config, strategy, field) in cases {
        check(
            config,
            &format!("strategy \"{strategy}\": missing field \"{field}\""),
            Some(strategy),
            Some(field),
        );
    }
}

#[test]
fn invalid_fields() {
    let cases = [
        (json!({"strategy": "bearer", "token": ""}), "bearer", "token", "must not be empty"),
        (json!({"strategy": "bearer", "token": 42}), "bearer", "token", "must be a string"),
        (
            json!({"strategy": "bearer", "token": "a\nb"}),
            "bearer",
            "token",
            "must be visible ASCII without line breaks",
        ),
        (
            json!({"strategy": "basic", "username": "a:b", "password": "p"}),
            "basic",
            "username",
            "must not contain ':' (RFC 7617)",
        ),
        (
            json!({"strategy": "header", "name": "bad name", "value": "v"}),
            "header",
            "name",
            "is not a valid header name",
        ),
        (
            json!({"strategy": "header", "name": "x-key", "value": "v\r\nx: y"}),
            "header",
            "value",
            "must be visible ASCII without line breaks",
        ),
        (
            json!({"strategy": "hmac", "secret": "whsec_not base64!"}),
            "hmac",
            "secret",
            "the part after \"whsec_\" is not valid base64",
        ),
        (json!({"strategy": "hmac", "secret": "whsec_"}), "hmac", "secret", "the key is empty"),
        (
            json!({"strategy": "oauth2_client_credentials", "token_url": "not a url", "client_id": "c", "client_secret": "s"}),
            "oauth2_client_credentials",
            "token_url",
            "is not a URL",
        ),
        (
            json!({"strategy": "oauth2_client_credentials", "token_url": "http://auth.example/token", "client_id": "c", "client_secret": "s"}),
            "oauth2_client_credentials",
            "token_url",
            "must be https (http only for loopback)",
        ),
        (
            json!({"strategy": "oauth2_client_credentials", "token_url": "ftp://auth.example/token", "client_id": "c", "client_secret": "s"}),
            "oauth2_client_credentials",
            "token_url",
            "must be an https URL",
        ),
        (
            json!({"strategy": "oauth2_client_credentials", "token_url": "https://u:p@auth.example/token", "client_id": "c", "client_secret": "s"}),
            "oauth2_client_credentials",
            "token_url",
            "must not contain credentials",
        ),
        (
            json!({"strategy": "oauth2_client_credentials", "token_url": "https://auth.example/token", "client_id": "c", "client_secret": "s", "scope": ["a"]}),
            "oauth2_client_credentials",
            "scope",
            "must be a string",
        ),
    ];
    for (config, strategy, field, reason) in cases {
        check(
            config,
            &format!("strategy \"{strategy}\": invalid field \"{field}\": {reason}"),
            Some(strategy),
            Some(field),
        );
    }
}

#[test]
fn reserved_header_names_are_refused() {
    for name in [
        "Host",
        "Content-Length",
        "content-type",
        "Transfer-Encoding",
        "Connection",
        "webhook-id",
        "Webhook-Signature",
    ] {
        check(
            json!({"strategy": "header", "name": name, "value": "v"}),
            "strategy \"header\": invalid field \"name\": \
             is a reserved header (hop-by-hop, set by the delivery, or webhook-*)",
            Some("header"),
            Some("name"),
        );
    }
}

#[test]
fn unknown_fields_are_refused() {
    check(
        json!({"strategy": "bearer", "tokne": "x", "token": "y"}),
        "strategy \"bearer\": unknown field \"tokne\"",
        Some("bearer"),
        Some("tokne"),
    );
    check(
        json!({"strategy": "none", "token": "x"}),
        "strategy \"none\": unknown field \"token\"",
        Some("none"),
        Some("token"),
    );
}

#[test]
fn long_names_are_cut_in_messages() {
    let long = "x".repeat(500);
    let error = error_of(json!({"strategy": long}));
    assert!(error.to_string().len() < 250, "{error}");
}

#[test]
fn loopback_http_token_urls_are_accepted() {
    for url in ["http://127.0.0.1:9/token", "http://localhost/token", "http://[::1]:8080/t"] {
        let config = json!({"strategy": "oauth2_client_credentials", "token_url": url, "client_id": "c", "client_secret": "s"});
        assert!(Registry::with_builtins().validate(&config).is_ok(), "{url}");
    }
}
