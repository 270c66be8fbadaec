//! Metrics: one Prometheus recorder per server instance, what the server counts, and the
//! rendering of `GET /metrics`.
//!
//! Names follow `hookstream_<noun>_<unit>[_total]`; labels hold small fixed vocabularies
//! (outcome, state, source), never a URL, an id or a secret.
//!
//! | metric | kind | labels | from |
//! |---|---|---|---|
//! | `hookstream_events_ingested_total` | counter | `source`: ingest, runner | events accepted (not duplicates) |
//! | `hookstream_executions_finished_total` | counter | `state`: SUCCESS, FAILED | ends |
//! | `hookstream_executions` | gauge | `state` | the store, at scrape |
//! | `hookstream_delivery_attempts_total` | counter | `outcome`: success, retry, split, gone, dead_letter | the ledger |
//! | `hookstream_delivery_attempt_duration_seconds` | histogram | | the ledger |
//! | `hookstream_events_delivered_total` | counter | | the ledger |
//! | `hookstream_events_dead_lettered_total` | counter | | the ledger |
//! | `hookstream_events_pending` | gauge | | batched, undelivered events of unfinished executions, at scrape |
//! | `hookstream_dead_letters` | gauge | | dead letters not redriven of unfinished executions, at scrape |
//!
//! # No global recorder
//!
//! The server records into its own [`PrometheusRecorder`] through the `metrics::Recorder`
//! trait, never through the `metrics` macros and the process-wide recorder, so that several
//! servers in one process (tests) keep separate figures. Delivery figures come from the
//! store's ledger, which the server wraps ([`MeteredLedger`]), rather than from
//! delivery-http's macros: do not also install a global recorder with the same names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;
use hookstream_delivery_http::{
    AttemptOutcome, AttemptRecord, BatchId, BatchRecord, DeadLetter, Ledger, LedgerError, PairKey,
};
use metrics::{Key, Label, Level, Metadata, Recorder as _};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::store::{ExecutionState, FinalState, StateCounts};

const META: Metadata<'static> = Metadata::new("hookstream_server", Level::INFO, None);

/// Events accepted, by source.
pub const EVENTS_INGESTED: &str = "hookstream_events_ingested_total";
/// Executions ended, by state.
pub const EXECUTIONS_FINISHED: &str = "hookstream_executions_finished_total";
/// Executions per state now.
pub const EXECUTIONS: &str = "hookstream_executions";
/// Delivery attempts, by outcome.
pub const DELIVERY_ATTEMPTS: &str = "hookstream_delivery_attempts_total";
/// Attempt latency.
pub const ATTEMPT_DURATION: &str = "hookstream_delivery_attempt_duration_seconds";
/// Events delivered (2xx).
pub const EVENTS_DELIVERED: &str = "hookstream_events_delivered_total";
/// Events dead-lettered.
pub const EVENTS_DEAD_LETTERED: &str = "hookstream_events_dead_lettered_total";
/// Batched events not yet delivered.
pub const EVENTS_PENDING: &str = "hookstream_events_pending";
/// Dead letters not redriven.
pub const DEAD_LETTERS: &str = "hookstream_dead_letters";

/// Latency buckets, seconds.
const BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Where an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// `POST /executions/{id}/events`.
    Ingest,
    /// An in-process runner's `RunContext::emit`.
    Runner,
}

/// A server instance's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh recorder with the latency histogram buckets.
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // The bucket list is fixed and non-empty, so this cannot fail; fall back to summaries.
        let builder =
            match builder.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS) {
                Ok(b) => b,
                Err(_) => PrometheusBuilder::new(),
            };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        Self { recorder: Arc::new(recorder), handle }
    }

    /// The Prometheus text of everything recorded so far.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Counts `n` accepted events from `source`.
    pub fn events_ingested(&self, source: Source, n: u64) {
        let source = match source {
            Source::Ingest => "ingest",
            Source::Runner => "runner",
        };
        self.counter(EVENTS_INGESTED, vec![Label::new("source", source)]).increment(n);
    }

    /// Counts an execution's end.
    pub fn execution_finished(&self, state: FinalState) {
        let state = ExecutionState::from(state).as_str();
        self.counter(EXECUTIONS_FINISHED, vec![Label::new("state", state)]).increment(1);
    }

    /// Sets the scrape-time gauges.
    pub fn set_gauges(&self, counts: StateCounts, pending_events: u64, dead_letters: u64) {
        for state in ExecutionState::ALL {
            let key = Key::from_parts(EXECUTIONS, vec![Label::new("state", state.as_str())]);
            self.recorder.register_gauge(&key, &META).set(counts.get(state) as f64);
        }
        self.recorder
            .register_gauge(&Key::from_name(EVENTS_PENDING), &META)
            .set(pending_events as f64);
        self.recorder.register_gauge(&Key::from_name(DEAD_LETTERS), &META).set(dead_letters as f64);
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> metrics::Counter {
        self.recorder.register_counter(&Key::from_parts(name, labels), &META)
    }

    fn attempt(&self, record: &AttemptRecord) {
        let outcome = match &record.outcome {
            AttemptOutcome::Status(s) if (200..300).contains(s) => "success",
            _ if record.next_attempt_at.is_some() => "retry",
            AttemptOutcome::Status(413) => "split",
            AttemptOutcome::Status(410) => "gone",
            _ => "dead_letter",
        };
        self.counter(DELIVERY_ATTEMPTS, vec![Label::new("outcome", outcome)]).increment(1);
        self.recorder
            .register_histogram(&Key::from_name(ATTEMPT_DURATION), &META)
            .record(record.latency.as_secs_f64());
    }
}

/// A [`Ledger`] that records delivery metrics into a server's [`Metrics`] and forwards every
/// call to the store's ledger.
#[derive(Debug)]
pub struct MeteredLedger {
    inner: Arc<dyn Ledger>,
    metrics: Metrics,
    /// Event counts of formed batches, until delivered, split or dead-lettered.
    open: Mutex<HashMap<(PairKey, BatchId), usize>>,
}

impl MeteredLedger {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Ledger>, metrics: Metrics) -> Self {
        Self { inner, metrics, open: Mutex::new(HashMap::new()) }
    }

    fn take(&self, pair: &PairKey, batch: &BatchId) -> Option<usize> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&(*pair, batch.clone()))
    }
}

#[async_trait]
impl Ledger for MeteredLedger {
    async fn batch_formed(&self, batch: &BatchRecord) -> Result<(), LedgerError> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((batch.pair, batch.batch_id.clone()), batch.event_count);
        self.inner.batch_formed(batch).await
    }

    async fn attempt_finished(&self, attempt: &AttemptRecord) -> Result<(), LedgerError> {
        self.metrics.attempt(attempt);
        self.inner.attempt_finished(attempt).await
    }

    async fn batch_delivered(
        &self,
        pair: &PairKey,
        batch_id: &BatchId,
        at: SystemTime,
    ) -> Result<(), LedgerError> {
        if let Some(n) = self.take(pair, batch_id) {
            self.metrics.counter(EVENTS_DELIVERED, Vec::new()).increment(n as u64);
        }
        self.inner.batch_delivered(pair, batch_id, at).await
    }

    async fn batch_split(&self, pair: &PairKey, batch_id: &BatchId) -> Result<(), LedgerError> {
        self.take(pair, batch_id);
        self.inner.batch_split(pair, batch_id).await
    }

    async fn dead_lettered(&self, letter: &DeadLetter) -> Result<(), LedgerError> {
        self.take(&letter.pair, &letter.batch_id);
        self.metrics
            .counter(EVENTS_DEAD_LETTERED, Vec::new())
            .increment(letter.sequences.len() as u64);
        self.inner.dead_lettered(letter).await
    }

    async fn webhook_gone(&self, pair: &PairKey) -> Result<(), LedgerError> {
        self.inner.webhook_gone(pair).await
    }

    async fn pair_completed(&self, pair: &PairKey) -> Result<(), LedgerError> {
        self.inner.pair_completed(pair).await
    }

    async fn redriven(
        &self,
        pair: &PairKey,
        dead: &BatchId,
        redrive: &BatchId,
    ) -> Result<(), LedgerError> {
        self.inner.redriven(pair, dead, redrive).await
    }

    async fn in_flight(&self, pair: &PairKey) -> Result<Option<BatchRecord>, LedgerError> {
        self.inner.in_flight(pair).await
    }
}
