//! A hookstream server with its own authentication strategy, `tenant_hmac`, registered by
//! name in the builder: a kickoff's `{"strategy": "tenant_hmac", "tenant": ..., "secret": ...}`
//! then works like a built-in. Each webhook request carries `x-tenant: <tenant>` and
//! `x-tenant-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
//!
//! Run with `cargo run -p hookstream-server --example custom_auth`, then kick off with the
//! token it prints. The workspace tests drive this very strategy end to end.

use std::sync::Arc;

use async_trait::async_trait;
use hookstream_auth::signature::{sign, SigningSecret};
use hookstream_auth::{
    AuthConfigError, AuthError, AuthStrategy, ConfigFields, OutgoingRequest, StrategyConfig,
    StrategyFactory,
};
use hookstream_server::ServerBuilder;
use http::HeaderValue;

/// The strategy's registered name.
pub(crate) const NAME: &str = "tenant_hmac";

/// Adds `tenant_hmac` to `builder`.
pub(crate) fn with_tenant_hmac(builder: ServerBuilder) -> ServerBuilder {
    builder.auth_strategy(NAME, TenantHmacFactory)
}

/// Validates `{"strategy": "tenant_hmac", "tenant": "<name>", "secret": "<key>"}`.
struct TenantHmacFactory;

impl StrategyFactory for TenantHmacFactory {
    fn validate(
        &self,
        fields: &mut ConfigFields<'_>,
    ) -> Result<Box<dyn StrategyConfig>, AuthConfigError> {
        let tenant = fields.required_str("tenant")?;
        let tenant = HeaderValue::from_str(tenant)
            .map_err(|_| fields.invalid("tenant", "must be a valid header value"))?;
        let secret = fields.required_secret("secret")?;
        let secret = SigningSecret::parse(secret.expose()).map_err(|_| {
            fields.invalid("secret", "must be whsec_<base64> or a non-empty string")
        })?;
        Ok(Box::new(TenantHmacConfig { tenant, secret }))
    }
}

/// The validated configuration (`SigningSecret`'s `Debug` is masked).
#[derive(Debug)]
struct TenantHmacConfig {
    tenant: HeaderValue,
    secret: SigningSecret,
}

impl StrategyConfig for TenantHmacConfig {
    fn build(&self) -> Result<Arc<dyn AuthStrategy>, AuthConfigError> {
        Ok(Arc::new(TenantHmac { tenant: self.tenant.clone(), secret: self.secret.clone() }))
    }
}

/// The runtime strategy: signs every attempt.
#[derive(Debug)]
struct TenantHmac {
    tenant: HeaderValue,
    secret: SigningSecret,
}

#[async_trait]
impl AuthStrategy for TenantHmac {
    fn name(&self) -> &str {
        NAME
    }

    async fn authenticate(&self, request: &mut OutgoingRequest<'_>) -> Result<(), AuthError> {
        let signature = sign(&self.secret, request.webhook_id, request.timestamp, request.body);
        let signature = HeaderValue::from_str(&signature).map_err(|_| AuthError::Permanent {
            strategy: NAME.to_owned(),
            message: "the signature is not a header value".to_owned(),
        })?;
        request.headers.insert("x-tenant", self.tenant.clone());
        request.headers.insert("x-tenant-signature", signature);
        Ok(())
    }
}

#[allow(dead_code)] // the tests include this file for `with_tenant_hmac` only
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let token = hookstream_server::token::ApiToken::generate();
    let server = with_tenant_hmac(ServerBuilder::new())
        .api_token(token.clone())
        .allow_target_cidrs(vec!["127.0.0.0/8".parse()?])
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    println!("hookstream with tenant_hmac on http://127.0.0.1:8080, API token {}", token.expose());
    println!(
        "curl -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \
         -d '{{\"inputs\": {{\"topic\": \"AI\"}}, \"webhooks\": {{\"url\": \"http://127.0.0.1:9000/hook\", \
         \"authentication\": {{\"strategy\": \"tenant_hmac\", \"tenant\": \"acme\", \"secret\": \"s3cret\"}}}}}}' \
         http://127.0.0.1:8080/kickoff",
        token.expose()
    );
    server
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
