//! The hookstream service as a library: the HTTP API, runners, storage and configuration
//! that the `hookstream` binary wires together, and a builder to embed or extend it.
//!
//! Module declarations are one per line (several engineers add theirs).

pub mod api;
mod builder;
mod deliveries;
pub mod error;
mod lifecycle;
pub mod metrics;
pub mod runner;
pub mod state;
pub mod store;
pub mod token;
pub mod webhook;
pub mod cli;
pub mod config;

pub use builder::{BuildError, ServeError, Server, ServerBuilder};
pub use lifecycle::{Recovery, RUNNER_DIED, SHUT_DOWN};
pub mod demo;
pub mod listen;
