//! Storage: what the server keeps (executions, webhooks, events, delivery state) behind one
//! trait, with the in-memory store and, behind the `embedded` feature, the durable SQLite
//! store of the data dir.

#[cfg(feature = "embedded")]
pub mod embedded;
