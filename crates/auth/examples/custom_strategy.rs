//! A custom authentication strategy, registered by name and used through the registry.
//!
//! `tenant_signature` signs each request with a per-tenant key and says which tenant it is:
//! `x-tenant: <tenant>` and `x-tenant-signature: v1,<base64 HMAC>` (the Standard Webhooks
//! signing of this crate, reused). Run with
//! `cargo run -p hookstream-auth --example custom_strategy`.

use std::sync::Arc;

use async_trait::async_trait;
use hookstream_auth::signature::{sign, SigningSecret};
use hookstream_auth::{
    AuthConfigError, AuthError, AuthStrategy, ConfigFields, OutgoingRequest, Registry,
    StrategyConfig, StrategyFactory,
};
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde_json::json;

/// The factory: validates `{"strategy": "tenant_signature", "tenant": ..., "key": ...}`.
struct TenantSignatureFactory;

impl StrategyFactory for TenantSignatureFactory {
    fn validate(
        &self,
        fields: &mut ConfigFields<'_>,
    ) -> Result<Box<dyn StrategyConfig>, AuthConfigError> {
        let tenant = fields.required_str("tenant")?;
        let tenant = HeaderValue::from_str(tenant)
            .map_err(|_| fields.invalid("tenant", "must be a valid header value"))?;
        // `required_secret` masks the field in `AuthConfig::to_redacted_json`.
        let key = fields.required_secret("key")?;
        let key = SigningSecret::parse(key.expose())
            .map_err(|_| fields.invalid("key", "must be whsec_<base64> or a non-empty string"))?;
        Ok(Box::new(TenantSignatureConfig { tenant, key }))
    }
}

/// The validated config; `SigningSecret`'s `Debug` is masked, so deriving is safe.
#[derive(Debug)]
struct TenantSignatureConfig {
    tenant: HeaderValue,
    key: SigningSecret,
}

impl StrategyConfig for TenantSignatureConfig {
    fn build(&self) -> Result<Arc<dyn AuthStrategy>, AuthConfigError> {
        Ok(Arc::new(TenantSignature { tenant: self.tenant.clone(), key: self.key.clone() }))
    }
}

/// The runtime strategy.
#[derive(Debug)]
struct TenantSignature {
    tenant: HeaderValue,
    key: SigningSecret,
}

#[async_trait]
impl AuthStrategy for TenantSignature {
    fn name(&self) -> &str {
        "tenant_signature"
    }

    async fn authenticate(&self, request: &mut OutgoingRequest<'_>) -> Result<(), AuthError> {
        let signature = sign(&self.key, request.webhook_id, request.timestamp, request.body);
        let signature = HeaderValue::from_str(&signature).map_err(|_| AuthError::Permanent {
            strategy: self.name().to_owned(),
            message: "signature is not a header value".to_owned(),
        })?;
        request.headers.insert("x-tenant", self.tenant.clone());
        request.headers.insert("x-tenant-signature", signature);
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::with_builtins();
    registry.register("tenant_signature", TenantSignatureFactory)?;
    println!("known strategies: {}", registry.strategies().join(", "));

    // What a kickoff would carry in `webhooks[].authentication`.
    let json = json!({"strategy": "tenant_signature", "tenant": "acme", "key": "acme-signing-key"});
    let config = registry.validate(&json)?;
    println!("config: {config:?}");
    println!("redacted: {}", config.to_redacted_json());

    let strategy = config.build()?;
    let (method, uri) = (Method::POST, Uri::from_static("https://receiver.example/hooks"));
    let mut headers = HeaderMap::new();
    let body = br#"{"events":[]}"#;
    let mut request =
        OutgoingRequest::new(&method, &uri, &mut headers, body, "msg_2Vx1example", 1_700_000_000);
    strategy.authenticate(&mut request).await?;
    for (name, value) in &headers {
        println!("{name}: {}", value.to_str()?);
    }

    // A bad config names the strategy and field, never the value.
    let error = registry.validate(&json!({"strategy": "tenant_signature", "tenant": "acme"}));
    if let Err(error) = error {
        println!("error: {error}");
    }
    Ok(())
}
