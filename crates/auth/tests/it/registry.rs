//! The registry as a plugin seam: registering a third-party strategy, name rules, storage
//! round trips, and the thread-safety of public handles.

use std::sync::Arc;

use async_trait::async_trait;
use hookstream_auth::{
    AuthConfig, AuthConfigError, AuthError, AuthStrategy, ConfigFields, OutgoingRequest,
    RegisterError, Registry, Secret, StrategyConfig, StrategyFactory,
};
use serde_json::json;

use crate::support::{headers_of, pairs};

/// A third-party strategy: `x-tenant` and `x-tenant-key` headers.
#[derive(Debug)]
struct Tenant {
    tenant: String,
    key: Secret,
}

#[async_trait]
impl AuthStrategy for Tenant {
    fn name(&self) -> &str {
        "tenant"
    }

    async fn authenticate(&self, request: &mut OutgoingRequest<'_>) -> Result<(), AuthError> {
        let invalid = || AuthError::Permanent {
            strategy: "tenant".to_owned(),
            message: "invalid header value".to_owned(),
        };
        request.headers.insert("x-tenant", self.tenant.parse().map_err(|_| invalid())?);
        request.headers.insert("x-tenant-key", self.key.expose().parse().map_err(|_| invalid())?);
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct TenantConfig {
    tenant: String,
    key: Secret,
}

impl StrategyConfig for TenantConfig {
    fn build(&self) -> Result<Arc<dyn AuthStrategy>, AuthConfigError> {
        Ok(Arc::new(Tenant { tenant: self.tenant.clone(), key: self.key.clone() }))
    }
}

fn tenant_factory(
    fields: &mut ConfigFields<'_>,
) -> Result<Box<dyn StrategyConfig>, AuthConfigError> {
    let tenant = fields.required_str("tenant")?.to_owned();
    let key = fields.required_secret("key")?;
    Ok(Box::new(TenantConfig { tenant, key }))
}

fn registry_with_tenant() -> Registry {
    let mut registry = Registry::with_builtins();
    registry.register("tenant", tenant_factory).expect("new name");
    registry
}

#[tokio::test]
async fn a_registered_strategy_works_like_a_builtin() {
    let registry = registry_with_tenant();
    assert!(registry.contains("tenant"));
    let strategy = registry
        .build(&json!({"strategy": "tenant", "tenant": "acme", "key": "k1"}))
        .expect("valid");
    assert_eq!(strategy.name(), "tenant");
    let headers = headers_of(strategy.as_ref()).await.expect("authenticates");
    assert_eq!(
        pairs(&headers),
        vec![
            ("x-tenant".to_owned(), "acme".to_owned()),
            ("x-tenant-key".to_owned(), "k1".to_owned())
        ]
    );
}

#[test]
fn registered_strategies_are_listed_and_checked_like_builtins() {
    let registry = registry_with_tenant();
    let error = registry.validate(&json!({"strategy": "tenant", "tenant": "acme"})).unwrap_err();
    assert_eq!(error.to_string(), "strategy \"tenant\": missing field \"key\"");
    assert!(error.known_strategies().iter().any(|s| s == "tenant"));
    let error = registry.validate(&json!({"strategy": "nope"})).unwrap_err();
    assert!(error.to_string().ends_with(
        "known strategies: basic, bearer, header, hmac, none, oauth2_client_credentials, tenant"
    ));
}

#[test]
fn a_clone_made_before_register_does_not_see_it() {
    let before = Registry::with_builtins();
    let mut after = before.clone();
    after.register("tenant", tenant_factory).expect("new name");
    assert!(!before.contains("tenant"));
    assert!(after.contains("tenant"));
}

#[test]
fn names_must_be_new_and_well_formed() {
    let mut registry = Registry::with_builtins();
    assert!(matches!(
        registry.register("bearer", tenant_factory),
        Err(RegisterError::AlreadyRegistered(name)) if name == "bearer"
    ));
    for bad in ["", "Tenant", "1tenant", "ten-ant", &"x".repeat(65)] {
        assert!(
            matches!(registry.register(bad, tenant_factory), Err(RegisterError::InvalidName(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn an_empty_registry_knows_nothing_but_still_accepts_null() {
    let registry = Registry::empty();
    assert!(registry.strategies().is_empty());
    assert!(registry.validate(&serde_json::Value::Null).expect("null is none").is_none());
    let error = registry.validate(&json!({"strategy": "none"})).unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown authentication strategy \"none\"; known strategies: (none registered)"
    );
}

#[test]
fn validate_optional_treats_absent_as_none() {
    let registry = Registry::with_builtins();
    let config = registry.validate_optional(None).expect("absent is none");
    assert!(config.is_none());
    assert_eq!(config.to_json_with_secrets(), serde_json::Value::Null);
}

#[test]
fn stored_json_validates_again_to_the_same_strategy() {
    let registry = Registry::with_builtins();
    let original = json!({"strategy": "basic", "username": "u", "password": "p"});
    let config = registry.validate(&original).expect("valid");
    assert_eq!(config.strategy(), "basic");
    let stored = config.to_json_with_secrets();
    assert_eq!(stored, original);
    assert_eq!(registry.validate(&stored).expect("still valid").strategy(), "basic");
}

#[test]
fn redacted_json_masks_exactly_the_secret_fields() {
    let registry = registry_with_tenant();
    let cases = [
        (
            json!({"strategy": "basic", "username": "u", "password": "p"}),
            json!({"strategy": "basic", "username": "u", "password": "***"}),
        ),
        (
            json!({"strategy": "header", "name": "x-key", "value": "v"}),
            json!({"strategy": "header", "name": "x-key", "value": "***"}),
        ),
        (
            json!({"strategy": "oauth2_client_credentials", "token_url": "https://a.example/t",
                   "client_id": "c", "client_secret": "s", "scope": "read"}),
            json!({"strategy": "oauth2_client_credentials", "token_url": "https://a.example/t",
                   "client_id": "c", "client_secret": "***", "scope": "read"}),
        ),
        (
            json!({"strategy": "tenant", "tenant": "acme", "key": "k"}),
            json!({"strategy": "tenant", "tenant": "acme", "key": "***"}),
        ),
    ];
    for (given, redacted) in cases {
        assert_eq!(registry.validate(&given).expect("valid").to_redacted_json(), redacted);
    }
}

#[test]
fn public_handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Registry>();
    send_sync::<AuthConfig>();
    send_sync::<AuthConfigError>();
    send_sync::<AuthError>();
    send_sync::<RegisterError>();
    send_sync::<Secret>();
    send_sync::<Arc<dyn AuthStrategy>>();
    send_sync::<Box<dyn StrategyFactory>>();
    send_sync::<hookstream_auth::signature::SigningSecret>();
    send_sync::<hookstream_auth::signature::VerifyError>();
    send_sync::<hookstream_auth::BuiltinOptions>();
}
