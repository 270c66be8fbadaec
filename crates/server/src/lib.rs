//! The hookstream service as a library: the HTTP API, runners, storage and configuration
//! that the `hookstream` binary wires together, and a builder to embed or extend it.
//!
//! Module declarations are one per line (several engineers add theirs).

pub mod runner;
pub mod store;
pub mod token;
pub mod webhook;
