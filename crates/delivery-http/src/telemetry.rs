//! Telemetry: the span of each delivery attempt and the metrics of delivery, named by the
//! rule `hookstream_<noun>_<unit>[_total]` through the `metrics` facade.
//!
//! Fields and labels never hold a URL's credentials or query, a header value or any secret;
//! the target is logged as scheme, host, port and path at most.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `hookstream_delivery_attempts_total` | counter | `outcome`: success, retry, split, gone, dead_letter |
//! | `hookstream_delivery_attempt_duration_seconds` | histogram | |
//! | `hookstream_events_delivered_total` | counter | |
//! | `hookstream_events_dead_lettered_total` | counter | |
//! | `hookstream_delivery_ledger_errors_total` | counter | |

use std::time::Duration;

use tracing::Span;

use crate::ledger::{BatchId, PairKey};

/// Attempts, by outcome.
pub(crate) const ATTEMPTS: &str = "hookstream_delivery_attempts_total";
/// Attempt latency.
pub(crate) const ATTEMPT_DURATION: &str = "hookstream_delivery_attempt_duration_seconds";
/// Events in batches that got a 2xx.
pub(crate) const EVENTS_DELIVERED: &str = "hookstream_events_delivered_total";
/// Events dead-lettered.
pub(crate) const EVENTS_DEAD_LETTERED: &str = "hookstream_events_dead_lettered_total";
/// Ledger writes that failed.
pub(crate) const LEDGER_ERRORS: &str = "hookstream_delivery_ledger_errors_total";

/// The span of one attempt; `status`, `error` and `latency_ms` are recorded when it ends.
pub(crate) fn attempt_span(key: &PairKey, batch: &BatchId, attempt: u32, target: &str) -> Span {
    tracing::info_span!(
        "delivery_attempt",
        execution_id = %key.execution_id,
        webhook = key.webhook_index,
        batch_id = %batch,
        attempt,
        target,
        status = tracing::field::Empty,
        http_version = tracing::field::Empty,
        error = tracing::field::Empty,
        outcome = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}

/// Records an attempt's end in its span and the metrics.
pub(crate) fn attempt_finished(
    span: &Span,
    status: Option<u16>,
    error: Option<&str>,
    outcome: &'static str,
    latency: Duration,
) {
    if let Some(s) = status {
        span.record("status", s);
    }
    if let Some(e) = error {
        span.record("error", e);
    }
    span.record("outcome", outcome);
    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
    metrics::counter!(ATTEMPTS, "outcome" => outcome).increment(1);
    metrics::histogram!(ATTEMPT_DURATION).record(latency.as_secs_f64());
}

pub(crate) fn events_delivered(n: usize) {
    metrics::counter!(EVENTS_DELIVERED).increment(n as u64);
}

pub(crate) fn events_dead_lettered(n: usize) {
    metrics::counter!(EVENTS_DEAD_LETTERED).increment(n as u64);
}

pub(crate) fn ledger_error(operation: &'static str, error: &dyn std::error::Error) {
    metrics::counter!(LEDGER_ERRORS).increment(1);
    tracing::warn!(operation, error = %error, "delivery ledger write failed");
}
