//! The built-in strategies of SPEC §4 and their factories: `none`, `bearer`, `basic`,
//! `header`, `hmac` and `oauth2_client_credentials`.
//!
//! Each built-in is a factory (validates fields), a config (masked `Debug`, builds) and a
//! strategy (sets headers). Built-in headers holding a credential are marked sensitive
//! ([`http::HeaderValue::set_sensitive`]). This module does not own the registry or the
//! signing maths ([`signature`](crate::signature)).

mod hmac;
mod oauth2;
mod simple;

use std::sync::Arc;
use std::time::Duration;

use crate::Registry;

pub(crate) use simple::NoneConfig;

/// Options of the built-in strategies, for [`Registry::with_builtin_options`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BuiltinOptions {
    /// TLS client configuration of the OAuth2 token client. `None` (the default): rustls
    /// with the `ring` provider and the Mozilla roots of `webpki-roots`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Connect timeout of the OAuth2 token client (default 5 s).
    pub connect_timeout: Duration,
    /// Timeout of a whole token request, response body included (default 30 s).
    pub request_timeout: Duration,
}

impl Default for BuiltinOptions {
    fn default() -> Self {
        Self {
            tls: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl BuiltinOptions {
    /// Uses `tls` for the OAuth2 token client (e.g. with an extra CA).
    pub fn with_tls(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the token client's connect and whole-request timeouts.
    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }
}

/// Registers every built-in into an empty registry.
pub(crate) fn register_all(registry: &mut Registry, options: BuiltinOptions) {
    let results = [
        registry.register("none", simple::NoneFactory).map(drop),
        registry.register("bearer", simple::BearerFactory).map(drop),
        registry.register("basic", simple::BasicFactory).map(drop),
        registry.register("header", simple::HeaderFactory).map(drop),
        registry.register("hmac", hmac::HmacFactory).map(drop),
        registry
            .register("oauth2_client_credentials", oauth2::OAuth2Factory::new(options))
            .map(drop),
    ];
    // The names are valid and distinct, and the registry starts empty.
    debug_assert!(results.iter().all(Result::is_ok));
}
