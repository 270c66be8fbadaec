//! hookstream's webhook delivery (SPEC §4): subscribes to the event bus per (execution,
//! webhook), filters, batches (or sends in real time), authenticates through
//! `hookstream-auth`, POSTs with hyper + hyper-rustls behind an SSRF guard, retries by the
//! rules of SPEC §4 and records everything, dead letters included, through the [`Ledger`]
//! trait.
//!
//! The pipeline, one module per stage (after vector's `sinks/http`):
//!
//! ```text
//! subscription ─▶ filter ─▶ batch ─▶ encode ─▶ request (+auth) ─▶ client (ssrf) ─▶ retry
//!      ▲                                                                  │
//!      └──────────── ack after 2xx or dead letter ◀── ledger ◀────────────┘
//! ```
//!
//! - `config`: [`WebhookConfig`], [`Mode`], [`BatchConfig`], [`DispatcherConfig`],
//!   [`validate_static_headers`].
//! - `ssrf`: [`SsrfPolicy`], [`validate_target`], the guarded connector.
//! - `batch` and `encode`: batch boundaries and the `{"events":[...]}` body.
//! - `request`, `client`, `service`: one attempt, the pooled client, a batch's attempts.
//! - `retry`: [`RetryPolicy`] and the one classification of outcomes.
//! - `ledger`: [`Ledger`], its records, [`MemoryLedger`].
//! - `pair` and `dispatcher`: the task per pair, [`Dispatcher`], [`DeliveryHandle`].
//! - `telemetry`: the span per attempt and the metric names.
//!
//! This crate does not parse configuration files or JSON, store anything durably, or install
//! a process-wide rustls crypto provider (it passes ring explicitly); the server does those.

mod batch;
mod client;
mod config;
mod dispatcher;
mod encode;
mod ledger;
mod pair;
mod request;
mod retry;
mod service;
mod ssrf;
mod telemetry;

/// The README's example, compiled as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use client::ClientError;
pub use config::{
    validate_static_headers, BatchConfig, ConfigError, DispatcherConfig, HeaderRefusal, Mode,
    WebhookConfig,
};
pub use dispatcher::{
    DeliveryError, DeliveryHandle, Dispatcher, DispatcherError, PairSummary, RedriveError,
    RedriveOutcome,
};
pub use ledger::{
    AttemptErrorKind, AttemptOutcome, AttemptRecord, BatchId, BatchRecord, DeadLetter,
    DeadLetterReason, DeliveryStats, Ledger, LedgerError, MemoryLedger, PairKey, PairState,
};
pub use retry::{Jitter, RetryPolicy};
pub use ssrf::{validate_target, BlockedAddress, BlockedRange, SsrfPolicy, TargetError};
