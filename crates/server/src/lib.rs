//! The hookstream service as a library: the HTTP API, runners, storage and configuration
//! that the `hookstream` binary wires together, and a builder to embed or extend it.

pub mod runner;
pub mod store;
