//! Authentication strategy plugins for outgoing webhooks (SPEC §4): the [`AuthStrategy`]
//! trait, a registry that builds strategies from their JSON configuration by name, the
//! built-ins, and Standard Webhooks signature verification for receivers.
//!
//! This crate decides what headers a request carries; it does not send webhooks.

pub mod strategy;

pub use strategy::{AuthError, AuthStrategy, OutgoingRequest};
