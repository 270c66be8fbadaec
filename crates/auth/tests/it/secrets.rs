//! No secret value appears in the `Debug` output of a config or strategy, in the redacted
//! JSON, in authenticated headers' `Debug`, or in any error message.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hookstream_auth::{Registry, Secret};
use serde_json::{json, Value};

use crate::support::headers_of;

const MARK: &str = "SEKRETzq9";

/// Every form in which `secret` could leak: itself and its base64 (as in Basic auth).
fn leaks(text: &str, secrets: &[&str]) -> Vec<String> {
    secrets
        .iter()
        .flat_map(|s| [s.to_string(), STANDARD.encode(s)])
        .chain([MARK.to_owned()])
        .filter(|s| text.contains(s.as_str()))
        .collect()
}

fn valid_configs() -> Vec<Value> {
    vec![
        json!({"strategy": "bearer", "token": "SEKRETzq9-bearer"}),
        json!({"strategy": "basic", "username": "user", "password": "SEKRETzq9-basic"}),
        json!({"strategy": "header", "name": "x-api-key", "value": "SEKRETzq9-header"}),
        json!({"strategy": "hmac", "secret": "SEKRETzq9-hmac-raw"}),
        json!({"strategy": "hmac", "secret": format!("whsec_{}", STANDARD.encode("SEKRETzq9-hmac"))}),
        json!({"strategy": "oauth2_client_credentials", "token_url": "https://auth.example/token",
               "client_id": "client", "client_secret": "SEKRETzq9-oauth", "scope": "read"}),
    ]
}

#[test]
fn secret_prints_a_mask() {
    let secret = Secret::new(MARK);
    assert_eq!(format!("{secret:?}|{secret}|{secret:#?}"), "***|***|***");
}

#[tokio::test]
async fn configs_strategies_and_headers_do_not_print_secrets() {
    let registry = Registry::with_builtins();
    for json in valid_configs() {
        let config = registry.validate(&json).expect("valid");
        let strategy = config.build().expect("builds");
        let mut printed = format!("{config:?} {config:#?} {strategy:?} {strategy:#?}");
        printed.push_str(&config.to_redacted_json().to_string());
        if strategy.name() != "oauth2_client_credentials" {
            let headers = headers_of(strategy.as_ref()).await.expect("authenticates");
            printed.push_str(&format!("{headers:?}"));
        }
        let secret = ["token", "password", "value", "client_secret", "secret"]
            .iter()
            .find_map(|f| json.get(f).and_then(Value::as_str))
            .unwrap_or(MARK);
        assert_eq!(leaks(&printed, &[secret]), Vec::<String>::new(), "{printed}");
        assert!(printed.contains("***"), "{printed}");
        // ...while the stored form keeps them.
        assert!(config.to_json_with_secrets().to_string().contains(secret));
    }
}

#[test]
fn config_errors_do_not_print_given_values() {
    let registry = Registry::with_builtins();
    let bad = [
        json!({"strategy": "bearer", "token": "SEKRETzq9\nx"}),
        json!({"strategy": "bearer", "token": "ok", "extra": "SEKRETzq9"}),
        json!({"strategy": "basic", "username": "SEKRETzq9:x", "password": "SEKRETzq9"}),
        json!({"strategy": "basic", "username": "u", "password": "SEKRETzq9\u{7}"}),
        json!({"strategy": "header", "name": "SEKRETzq9 bad", "value": "v"}),
        json!({"strategy": "header", "name": "x-key", "value": "SEKRETzq9\r\n"}),
        json!({"strategy": "hmac", "secret": "whsec_SEKRETzq9!!"}),
        json!({"strategy": "hmac", "secret": 12345}),
        json!({"strategy": "oauth2_client_credentials", "token_url": "http://SEKRETzq9.example/t",
               "client_id": "c", "client_secret": "SEKRETzq9"}),
        json!({"strategy": "oauth2_client_credentials", "token_url": "https://u:SEKRETzq9@a.example/t",
               "client_id": "c", "client_secret": "SEKRETzq9"}),
        json!({"strategy": "oauth2_client_credentials", "token_url": "SEKRETzq9",
               "client_id": "c", "client_secret": "SEKRETzq9"}),
        json!("SEKRETzq9"),
    ];
    for json in bad {
        let error = registry.validate(&json).expect_err("invalid");
        let printed = format!("{error} {error:?}");
        assert_eq!(leaks(&printed, &[]), Vec::<String>::new(), "{printed}");
    }
}
