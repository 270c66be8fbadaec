//! The auth plugin of `crates/server/examples/custom_auth.rs`, registered by name in the
//! builder, used by a kickoff end to end: the receiver sees its headers and a signature it
//! can verify.

use std::time::SystemTime;

use hookstream_auth::signature::{verify_parts, SigningSecret};
use serde_json::json;

use crate::support::{self, Receiver};

#[allow(dead_code)]
#[path = "../../crates/server/examples/custom_auth.rs"]
mod example;

#[tokio::test]
async fn a_plugin_strategy_signs_the_deliveries_of_a_kickoff() {
    let receiver = Receiver::start().await;
    let app = support::TestApp::new(example::with_tenant_hmac(support::demo_builder()));
    let id = app
        .kickoff(json!({
            "inputs": {"topic": "plugins"},
            "webhooks": {"url": receiver.url("/tenant"), "events": ["crew_kickoff_started", "crew_execution_completed"],
                         "authentication": {"strategy": "tenant_hmac", "tenant": "acme", "secret": "tenant-key"}}
        }))
        .await;
    let requests = receiver.wait_for_terminal("/tenant").await;
    let secret = SigningSecret::parse("tenant-key").unwrap();
    for r in &requests {
        assert_eq!(r.header("x-tenant"), Some("acme"));
        let signature = r.header("x-tenant-signature").expect("signature header");
        let (id, ts) = (r.header("webhook-id").unwrap(), r.header("webhook-timestamp").unwrap());
        verify_parts(&secret, id, ts, &r.raw, signature, SystemTime::now())
            .expect("the tenant signature verifies");
        // A tampered body does not.
        let tampered = [r.raw.as_ref(), b" "].concat();
        assert!(verify_parts(&secret, id, ts, &tampered, signature, SystemTime::now()).is_err());
    }
    assert!(!requests.is_empty());
    let status = app.wait_final(&id).await;
    assert_eq!(status["state"], "SUCCESS");

    // The plugin's own validation errors come back as 422 naming its field.
    let missing = app
        .post("/kickoff", json!({"inputs": {"topic": "x"}, "webhooks": {"url": receiver.url("/t"), "authentication": {"strategy": "tenant_hmac", "tenant": "acme"}}}))
        .await;
    assert_eq!(missing.body["error"], "invalid_authentication");
    assert_eq!(missing.body["details"]["field"], "webhooks.authentication.secret");
    assert!(missing.body["details"]["known_strategies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "tenant_hmac"));
}
