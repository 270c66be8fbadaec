//! `hmac`: Standard Webhooks v1 signing, `webhook-signature: v1,<base64>` over
//! `"{webhook_id}.{timestamp}.{body}"`, computed per attempt by [`crate::signature::sign`].
//!
//! `secret` is `whsec_<base64>` (decoded to the key) or any other string, used as raw bytes.
//! Does not set `webhook-id` or `webhook-timestamp`: the delivery does.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use http::HeaderValue;

use crate::signature::{sign, SecretFormatError, SigningSecret, WEBHOOK_SIGNATURE};
use crate::{
    AuthConfigError, AuthError, AuthStrategy, ConfigFields, OutgoingRequest, StrategyConfig,
    StrategyFactory,
};

#[derive(Debug)]
pub(crate) struct HmacFactory;

#[derive(Clone)]
struct HmacConfig {
    secret: SigningSecret,
}

impl fmt::Debug for HmacConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacConfig").field("secret", &self.secret).finish()
    }
}

#[derive(Debug)]
struct HmacStrategy {
    secret: SigningSecret,
}

impl StrategyFactory for HmacFactory {
    fn validate(
        &self,
        fields: &mut ConfigFields<'_>,
    ) -> Result<Box<dyn StrategyConfig>, AuthConfigError> {
        let secret = fields.required_secret("secret")?;
        let secret = SigningSecret::parse(secret.expose()).map_err(|e| match e {
            SecretFormatError::InvalidBase64 => {
                fields.invalid("secret", "the part after \"whsec_\" is not valid base64")
            }
            _ => fields.invalid("secret", "the key is empty"),
        })?;
        Ok(Box::new(HmacConfig { secret }))
    }
}

impl StrategyConfig for HmacConfig {
    fn build(&self) -> Result<Arc<dyn AuthStrategy>, AuthConfigError> {
        Ok(Arc::new(HmacStrategy { secret: self.secret.clone() }))
    }
}

#[async_trait]
impl AuthStrategy for HmacStrategy {
    fn name(&self) -> &str {
        "hmac"
    }

    async fn authenticate(&self, request: &mut OutgoingRequest<'_>) -> Result<(), AuthError> {
        let signature = sign(&self.secret, request.webhook_id, request.timestamp, request.body);
        let value = HeaderValue::from_str(&signature).map_err(|_| AuthError::Permanent {
            strategy: "hmac".to_owned(),
            message: "signature is not a valid header value".to_owned(),
        })?;
        request.headers.insert(WEBHOOK_SIGNATURE, value);
        Ok(())
    }
}
