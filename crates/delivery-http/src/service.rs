//! The delivery service: takes one formed batch of one pair through its attempts until it is
//! delivered or dead-lettered, splitting it on 413 and marking the webhook gone on 410, and
//! records every step in the ledger. One batch at a time per pair (the caller awaits it).
//!
//! This module sequences attempts and waits; what an outcome means is decided in `retry`,
//! how a request looks in `request`, how it is sent in `client`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderValue;
use tokio::time::Instant;
use tracing::Instrument;

use crate::client::{AttemptError, HttpClient};
use crate::config::WebhookConfig;
use crate::encode::EncodedBatch;
use crate::ledger::{
    AttemptOutcome, AttemptRecord, BatchId, BatchRecord, DeadLetter, DeadLetterReason, Ledger,
    PairKey,
};
use crate::request;
use crate::retry::{classify, Decision, RetryPolicy};
use crate::telemetry;

/// Wall-clock time derived from tokio's clock: it advances with paused test time and never
/// jumps with the system clock during a process's life.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    base_instant: Instant,
    base_system: SystemTime,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self { base_instant: Instant::now(), base_system: SystemTime::now() }
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.base_system + self.base_instant.elapsed()
    }

    /// The tokio instant of wall-clock time `at` (now, if `at` has passed; at most a year
    /// ahead, whatever a store holds).
    pub(crate) fn instant_at(&self, at: SystemTime) -> Instant {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);
        let ahead = at.duration_since(self.now()).unwrap_or(Duration::ZERO).min(YEAR);
        Instant::now() + ahead
    }

    pub(crate) fn unix_seconds(&self) -> i64 {
        self.now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
    }
}

/// What every pair shares: the client, the ledger, the policies.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) client: HttpClient,
    pub(crate) ledger: Arc<dyn Ledger>,
    pub(crate) retry: RetryPolicy,
    pub(crate) user_agent: HeaderValue,
    pub(crate) clock: Clock,
}

/// A batch on its way, with its retry state.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) id: BatchId,
    pub(crate) encoded: EncodedBatch,
    pub(crate) attempts: u32,
    pub(crate) formed_at: SystemTime,
    pub(crate) next_attempt_at: Option<SystemTime>,
    /// Whether the ledger already holds it (a resumed batch).
    pub(crate) recorded: bool,
    /// Whether its id is derived from its one event (a realtime batch): the same event forms
    /// the same batch again after a crash, so its first attempt does not wait for
    /// `Ledger::batch_formed` (they run concurrently).
    pub(crate) derived_id: bool,
}

impl Batch {
    /// A batch under a fresh random id (batched mode, split halves, redrives).
    pub(crate) fn new(encoded: EncodedBatch, formed_at: SystemTime) -> Self {
        Self {
            id: BatchId::generate(),
            encoded,
            attempts: 0,
            formed_at,
            next_attempt_at: None,
            recorded: false,
            derived_id: false,
        }
    }

    /// A realtime batch (one event) of `pair`, under the id derived from its event.
    pub(crate) fn realtime(pair: &PairKey, encoded: EncodedBatch, formed_at: SystemTime) -> Self {
        Self {
            id: BatchId::for_event(pair, encoded.first_sequence()),
            derived_id: true,
            ..Self::new(encoded, formed_at)
        }
    }

    fn record(&self, pair: PairKey) -> BatchRecord {
        BatchRecord::new(
            pair,
            self.id.clone(),
            self.encoded.first_sequence(),
            self.encoded.last_sequence(),
            self.encoded.len(),
            self.formed_at,
            self.attempts,
            self.next_attempt_at,
        )
    }
}

/// Events delivered and dead-lettered by a run of the service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) delivered: u64,
    pub(crate) dead_lettered: u64,
}

/// One pair's view of the service.
#[derive(Debug)]
pub(crate) struct Delivery<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) key: PairKey,
    pub(crate) config: &'a WebhookConfig,
    /// Set once the receiver answered 410: everything after is dead-lettered unsent.
    pub(crate) gone: bool,
    pub(crate) tally: Tally,
}

impl<'a> Delivery<'a> {
    pub(crate) fn new(shared: &'a Shared, key: PairKey, config: &'a WebhookConfig) -> Self {
        Self { shared, key, config, gone: false, tally: Tally::default() }
    }

    /// Takes `batch` (and its halves, if split) to delivery or dead letter.
    pub(crate) async fn run(&mut self, batch: Batch) {
        let mut queue = VecDeque::from([batch]);
        while let Some(mut batch) = queue.pop_front() {
            if batch.encoded.is_empty() {
                continue;
            }
            if self.gone {
                self.dead_letter(&batch, DeadLetterReason::Gone).await;
                continue;
            }
            // Recorded before the first attempt; for a batch with a derived id, concurrently
            // with it (see `Ledger`'s docs on durability).
            let mut forming = None;
            if !batch.recorded {
                let record = batch.record(self.key);
                if batch.derived_id {
                    forming = Some(record);
                } else {
                    self.note("batch_formed", self.shared.ledger.batch_formed(&record).await);
                }
                batch.recorded = true;
            }
            let body = batch.encoded.body.clone();
            loop {
                if let Some(at) = batch.next_attempt_at {
                    tokio::time::sleep_until(self.shared.clock.instant_at(at)).await;
                }
                match self.attempt(&mut batch, &body, forming.take()).await {
                    Decision::Success => {
                        let now = self.shared.clock.now();
                        let ledger = &self.shared.ledger;
                        self.note(
                            "delivered",
                            ledger.batch_delivered(&self.key, &batch.id, now).await,
                        );
                        telemetry::events_delivered(batch.encoded.len());
                        self.tally.delivered += batch.encoded.len() as u64;
                    }
                    Decision::Retry { .. } => continue,
                    Decision::Split => match batch.encoded.split() {
                        Some((left, right)) => {
                            let ledger = &self.shared.ledger;
                            self.note("split", ledger.batch_split(&self.key, &batch.id).await);
                            queue.push_front(Batch::new(right, batch.formed_at));
                            queue.push_front(Batch::new(left, batch.formed_at));
                        }
                        None => self.dead_letter(&batch, DeadLetterReason::TooLarge).await,
                    },
                    Decision::Gone => {
                        self.gone = true;
                        self.note("gone", self.shared.ledger.webhook_gone(&self.key).await);
                        self.dead_letter(&batch, DeadLetterReason::Gone).await;
                    }
                    Decision::DeadLetter(reason) => self.dead_letter(&batch, reason).await,
                }
                break;
            }
        }
    }

    /// One attempt: build, authenticate, send, classify, record. On a retry decision the
    /// batch's next attempt time is set; past the maximum age the decision becomes a dead
    /// letter. With `forming`, the batch's `batch_formed` is written while the request is
    /// sent, and the attempt is recorded once both finished.
    async fn attempt(
        &mut self,
        batch: &mut Batch,
        body: &Bytes,
        forming: Option<BatchRecord>,
    ) -> Decision {
        let shared = self.shared;
        batch.attempts += 1;
        let started_at = shared.clock.now();
        let target = self.config.redacted_url();
        let span = telemetry::attempt_span(&self.key, &batch.id, batch.attempts, &target);
        let send = async {
            let started = Instant::now();
            let result = async {
                let request = request::build(
                    self.config,
                    &shared.user_agent,
                    &batch.id,
                    body,
                    shared.clock.unix_seconds(),
                )
                .await
                .map_err(AttemptError::Auth)?;
                shared.client.send(request).await
            }
            .await;
            (result, started.elapsed())
        }
        .instrument(span.clone());
        let (result, latency) = match &forming {
            Some(record) => {
                let (formed, sent) = tokio::join!(shared.ledger.batch_formed(record), send);
                self.note("batch_formed", formed);
                sent
            }
            None => send.await,
        };
        let now = shared.clock.now();
        let mut decision = classify(&shared.retry, &result, now);

        let (outcome, response_body) = match &result {
            Ok(r) => {
                let status = r.status.as_u16();
                span.record("http_version", tracing::field::debug(r.version));
                if matches!(status, 401 | 403) {
                    self.config.auth().on_rejected(status);
                }
                (AttemptOutcome::Status(status), r.body.clone())
            }
            Err(e) => {
                (AttemptOutcome::Error { kind: e.kind(), message: e.message() }, Bytes::new())
            }
        };
        batch.next_attempt_at = None;
        if let Decision::Retry { after } = decision {
            let delay = after.unwrap_or_else(|| shared.retry.backoff(batch.attempts));
            let next = now.checked_add(delay);
            let age = next.map(|n| n.duration_since(batch.formed_at).unwrap_or(Duration::ZERO));
            if age.is_none_or(|age| age > shared.retry.max_age) {
                let last = match &outcome {
                    AttemptOutcome::Status(s) => format!("status {s}"),
                    AttemptOutcome::Error { message, .. } => message.clone(),
                };
                decision = Decision::DeadLetter(DeadLetterReason::Expired {
                    attempts: batch.attempts,
                    last,
                });
            } else {
                batch.next_attempt_at = next;
            }
        }
        let (status, error) = match &outcome {
            AttemptOutcome::Status(s) => (Some(*s), None),
            AttemptOutcome::Error { message, .. } => (None, Some(message.as_str())),
        };
        telemetry::attempt_finished(&span, status, error, decision.label(), latency);
        let record = AttemptRecord {
            pair: self.key,
            batch_id: batch.id.clone(),
            attempt: batch.attempts,
            started_at,
            outcome,
            response_body,
            latency,
            next_attempt_at: batch.next_attempt_at,
        };
        self.note("attempt", shared.ledger.attempt_finished(&record).await);
        decision
    }

    /// Records `batch` as a dead letter; retried until the ledger takes it, since the caller
    /// acknowledges its events next.
    pub(crate) async fn dead_letter(&mut self, batch: &Batch, reason: DeadLetterReason) {
        let letter = DeadLetter::new(
            self.key,
            batch.id.clone(),
            batch.encoded.sequences(),
            reason,
            batch.attempts,
            self.shared.clock.now(),
        );
        tracing::warn!(
            execution_id = %self.key.execution_id,
            webhook = self.key.webhook_index,
            batch_id = %batch.id,
            events = batch.encoded.len(),
            reason = %letter.reason,
            "batch dead-lettered"
        );
        let mut wait = Duration::from_millis(500);
        while let Err(e) = self.shared.ledger.dead_lettered(&letter).await {
            telemetry::ledger_error("dead_letter", &e);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        telemetry::events_dead_lettered(batch.encoded.len());
        self.tally.dead_lettered += batch.encoded.len() as u64;
    }

    fn note(&self, operation: &'static str, result: Result<(), crate::ledger::LedgerError>) {
        if let Err(e) = result {
            telemetry::ledger_error(operation, &e);
        }
    }
}
