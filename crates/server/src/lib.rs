//! The hookstream service as a library: the HTTP API, runners, storage and configuration
//! that the `hookstream` binary wires together, and a builder to embed or extend it.
//!
//! Module declarations are one per line, in alphabetical order (rustfmt keeps them so), since
//! several engineers add theirs.

pub mod api;
mod builder;
pub mod cli;
pub mod config;
mod deliveries;
pub mod demo;
pub mod error;
mod lifecycle;
pub mod listen;
pub mod metrics;
pub mod runner;
pub mod state;
pub mod store;
pub mod token;
pub mod webhook;

pub use builder::{BuildError, ServeError, Server, ServerBuilder};
pub use lifecycle::{Recovery, RUNNER_DIED, SHUT_DOWN};
