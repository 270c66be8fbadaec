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

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::Registry;

pub(crate) use simple::NoneConfig;

/// Decides whether the OAuth2 token client may connect to an address: `true` allows.
pub type AddressPolicy = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// Options of the built-in strategies, for [`Registry::with_builtin_options`].
#[derive(Clone)]
#[non_exhaustive]
pub struct BuiltinOptions {
    /// TLS client configuration of the OAuth2 token client. `None` (the default): rustls
    /// with the `ring` provider and the Mozilla roots of `webpki-roots`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Connect timeout of the OAuth2 token client (default 5 s).
    pub connect_timeout: Duration,
    /// Timeout of a whole token request, response body included (default 30 s).
    pub request_timeout: Duration,
    /// SSRF guard of the OAuth2 token client, checked on every address it would connect to
    /// (after DNS resolution, and for IP-literal hosts). `None` (the default) allows all; a
    /// service taking `token_url` from API callers should pass the same policy as its webhook
    /// delivery. A refused address is an [`AuthError::Permanent`](crate::AuthError).
    pub address_policy: Option<AddressPolicy>,
}

impl fmt::Debug for BuiltinOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuiltinOptions")
            .field("tls", &self.tls.as_ref().map(|_| "custom"))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("address_policy", &self.address_policy.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl Default for BuiltinOptions {
    fn default() -> Self {
        Self {
            tls: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            address_policy: None,
        }
    }
}

impl BuiltinOptions {
    /// Uses `tls` for the OAuth2 token client (e.g. with an extra CA).
    pub fn with_tls(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Guards the token client's connections with `policy` (see
    /// [`BuiltinOptions::address_policy`]).
    pub fn with_address_policy(
        mut self,
        policy: impl Fn(IpAddr) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.address_policy = Some(Arc::new(policy));
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
