//! Integration tests of hookstream-auth: the registry and its errors, the exact headers of
//! every built-in, Standard Webhooks signing and verification, secret masking, and the OAuth2
//! strategy against an in-process token endpoint.

mod builtins;
mod config_errors;
mod oauth2;
mod registry;
mod secrets;
mod signature;
mod support;
