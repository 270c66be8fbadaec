//! Authentication strategy plugins for outgoing webhooks (SPEC §4): the [`AuthStrategy`]
//! trait, a [`Registry`] that validates an `authentication` JSON object into an
//! [`AuthConfig`] and builds its strategy by name, the [`builtin`] strategies, the
//! [`Secret`] type, and Standard Webhooks [`signature`]s (signing, and verification for
//! receivers).
//!
//! This crate decides what headers a request carries; it does not send webhooks.
//!
//! ```
//! use http::{HeaderMap, Method, Uri};
//! use hookstream_auth::{OutgoingRequest, Registry};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::with_builtins();
//! let strategy = registry.build(&json!({"strategy": "bearer", "token": "abc"}))?;
//!
//! let (method, uri) = (Method::POST, Uri::from_static("https://example.com/hook"));
//! let mut headers = HeaderMap::new();
//! let mut request = OutgoingRequest::new(&method, &uri, &mut headers, b"{}", "msg_1", 1_700_000_000);
//! strategy.authenticate(&mut request).await?;
//! assert_eq!(headers["authorization"], "Bearer abc");
//! # Ok(())
//! # }
//! ```

pub mod builtin;
mod error;
mod registry;
mod secret;
pub mod signature;
pub mod strategy;

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use builtin::{AddressPolicy, BuiltinOptions};
pub use error::{AuthConfigError, RegisterError};
pub use registry::{AuthConfig, ConfigFields, Registry, StrategyConfig, StrategyFactory};
pub use secret::Secret;
pub use strategy::{AuthError, AuthStrategy, OutgoingRequest};
