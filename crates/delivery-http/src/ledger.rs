//! The delivery ledger: the [`Ledger`] trait through which delivery records what it does
//! (batches formed, attempts, deliveries, dead letters, webhooks gone) so that the server can
//! store it, answer `GET /executions/{id}/deliveries`, redrive dead letters, and resume an
//! in-flight batch after a restart; plus [`MemoryLedger`], the in-memory implementation.
//!
//! This module owns the record types; it does not decide anything about delivery. A ledger
//! is written from each pair's task in that pair's order; different pairs write concurrently.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use uuid::Uuid;

/// One (execution, webhook) pair: the unit of ordering and isolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairKey {
    /// The execution whose events are delivered.
    pub execution_id: Uuid,
    /// The webhook's position in the kickoff's `webhooks` list.
    pub webhook_index: u32,
}

impl PairKey {
    /// The pair of `execution_id` and its webhook at `webhook_index`.
    pub fn new(execution_id: Uuid, webhook_index: u32) -> Self {
        Self { execution_id, webhook_index }
    }

    /// The name of the pair's durable bus subscription: `webhook-<index>`.
    pub fn subscription_name(&self) -> String {
        format!("webhook-{}", self.webhook_index)
    }
}

/// A batch's id, sent as `webhook-id` on every attempt of the batch.
///
/// Two forms, both printable ASCII without spaces (valid Standard Webhooks ids):
/// - `msg_<uuid v7, simple>` ([`BatchId::generate`]): batched mode, split halves, redrives,
///   unsent dead letters;
/// - `msg_<execution id, simple>_<webhook index>_<sequence>` ([`BatchId::for_event`]): a
///   realtime batch, derived from its one event, so the same event to the same webhook always
///   forms the same batch under the same id (also after a crash before the ledger held it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(String);

impl BatchId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(format!("msg_{}", Uuid::now_v7().simple()))
    }

    /// The id of the realtime batch holding only the event `sequence` of `pair`:
    /// `msg_<execution id, simple>_<webhook index>_<sequence>`. Deterministic.
    pub fn for_event(pair: &PairKey, sequence: u64) -> Self {
        Self(format!("msg_{}_{}_{}", pair.execution_id.simple(), pair.webhook_index, sequence))
    }

    /// An id read back from a store.
    pub fn from_stored(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A batch as formed, with its retry state: what a restarted process needs to resume it.
///
/// A batch holds every event of its pair that matches the filter with a sequence in
/// `first_sequence..=last_sequence` (batches are contiguous runs of the matching events).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchRecord {
    /// Its pair.
    pub pair: PairKey,
    /// Its id.
    pub batch_id: BatchId,
    /// Sequence of its first event.
    pub first_sequence: u64,
    /// Sequence of its last event.
    pub last_sequence: u64,
    /// Events it holds.
    pub event_count: usize,
    /// When it was formed (its first attempt follows at once).
    pub formed_at: SystemTime,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, while retrying.
    pub next_attempt_at: Option<SystemTime>,
}

impl BatchRecord {
    /// A batch record (for stores reading one back).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pair: PairKey,
        batch_id: BatchId,
        first_sequence: u64,
        last_sequence: u64,
        event_count: usize,
        formed_at: SystemTime,
        attempts: u32,
        next_attempt_at: Option<SystemTime>,
    ) -> Self {
        Self {
            pair,
            batch_id,
            first_sequence,
            last_sequence,
            event_count,
            formed_at,
            attempts,
            next_attempt_at,
        }
    }
}

/// What an attempt got back.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// The receiver answered with this status.
    Status(u16),
    /// No answer.
    Error {
        /// What kind of failure.
        kind: AttemptErrorKind,
        /// What failed, for humans; never a secret.
        message: String,
    },
}

/// The kinds of attempts that got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptErrorKind {
    /// DNS, TCP, TLS or connect timeout.
    Connect,
    /// The whole-attempt timeout.
    Timeout,
    /// The connection failed during the exchange.
    Transport,
    /// The SSRF policy refused the address.
    Blocked,
    /// The authentication strategy failed.
    Auth,
}

impl AttemptErrorKind {
    /// A stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Transport => "transport",
            Self::Blocked => "blocked",
            Self::Auth => "auth",
        }
    }
}

/// One attempt of one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptRecord {
    /// Its pair.
    pub pair: PairKey,
    /// Its batch.
    pub batch_id: BatchId,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When it started.
    pub started_at: SystemTime,
    /// Status or error.
    pub outcome: AttemptOutcome,
    /// The response body, truncated to the configured limit (64 KiB by default).
    pub response_body: Bytes,
    /// How long it took.
    pub latency: Duration,
    /// When the next attempt is due, if the batch is retried.
    pub next_attempt_at: Option<SystemTime>,
}

/// Why a batch was dead-lettered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// A status that is never retried (3xx, 4xx other than 408, 410, 413, 425, 429).
    Status {
        /// The status.
        status: u16,
    },
    /// The receiver answered 410, or answered it earlier: the webhook is gone.
    Gone,
    /// 413 for a single event.
    TooLarge,
    /// Still failing at the end of the retry window.
    Expired {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's status or error.
        last: String,
    },
    /// The SSRF policy refused the target.
    Blocked {
        /// Which address and range.
        message: String,
    },
    /// The authentication strategy failed permanently.
    Auth {
        /// Its message (never a secret).
        message: String,
    },
    /// A failure that is not retried, other than the above.
    Transport {
        /// What failed.
        message: String,
    },
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { status } if (300..400).contains(status) => {
                write!(f, "receiver answered {status} (redirects are not followed)")
            }
            Self::Status { status } => write!(f, "receiver answered {status}"),
            Self::Gone => f.write_str("webhook is gone (receiver answered 410)"),
            Self::TooLarge => f.write_str("a single event is too large for the receiver (413)"),
            Self::Expired { attempts, last } => {
                write!(f, "retry window exhausted after {attempts} attempts; last: {last}")
            }
            Self::Blocked { message } => write!(f, "target refused: {message}"),
            Self::Auth { message } => write!(f, "authentication failed: {message}"),
            Self::Transport { message } => write!(f, "delivery failed: {message}"),
        }
    }
}

/// A batch given up on. Its events are acknowledged to the bus; a redrive reads them back.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its pair.
    pub pair: PairKey,
    /// The batch's id.
    pub batch_id: BatchId,
    /// The sequences of its events, ascending.
    pub sequences: Vec<u64>,
    /// Why.
    pub reason: DeadLetterReason,
    /// Attempts made (0 when the webhook was already gone).
    pub attempts: u32,
    /// When.
    pub at: SystemTime,
}

impl DeadLetter {
    /// A dead letter (for stores reading one back).
    pub fn new(
        pair: PairKey,
        batch_id: BatchId,
        sequences: Vec<u64>,
        reason: DeadLetterReason,
        attempts: u32,
        at: SystemTime,
    ) -> Self {
        Self { pair, batch_id, sequences, reason, attempts, at }
    }
}

/// A failure of the store behind a ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The backend failed.
    #[error("the delivery ledger backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// Where delivery records what it does. The server's stores implement it; delivery calls it
/// from each pair's task, in order.
///
/// Failures of every method but [`Ledger::dead_lettered`] are logged and delivery goes on; a
/// dead letter is retried until recorded, since its events are acknowledged right after.
///
/// # Order of calls for one batch
///
/// `batch_formed` → (`attempt_finished`)+ → one of `batch_delivered`, `batch_split` (its
/// halves are then formed in turn), `dead_lettered`; then delivery acknowledges the bus up to
/// the batch's last sequence (or further, over events the filter skipped). A store may
/// acknowledge in the same transaction as `batch_delivered`/`dead_lettered`; the later
/// acknowledgement by delivery is then a no-op.
///
/// # Durability of `batch_formed`
///
/// A batch is durable (its `batch_formed` answered) before its first attempt, so that after a
/// crash it is resumed and resent with the same `webhook-id` — except a realtime batch, whose
/// id is derived from its one event ([`BatchId::for_event`]): its `batch_formed` runs
/// concurrently with its first attempt, since after a crash before it is durable the same
/// event forms the same batch under the same id again. Either way `attempt_finished` is
/// called only after `batch_formed` returned, so the order of calls above holds.
///
/// # Figures for `GET /executions/{id}/deliveries`
///
/// [`MemoryLedger::stats`] shows what a store computes from these calls: delivered events
/// (sum of `event_count` of delivered batches), pending (of formed, still open batches),
/// dead-lettered (sum of dead letters' `sequences`), attempts (count of `attempt_finished`),
/// the last status and error, the state (`webhook_gone` → gone, `pair_completed` →
/// completed) and the dead letters not redriven.
#[async_trait]
pub trait Ledger: Send + Sync + fmt::Debug + 'static {
    /// A batch was formed (also each half of a split batch, when its turn comes). Awaited
    /// before the first attempt, except for a realtime batch (see the trait's docs).
    async fn batch_formed(&self, batch: &BatchRecord) -> Result<(), LedgerError>;

    /// An attempt finished; `attempt.next_attempt_at` is set when the batch will be retried.
    async fn attempt_finished(&self, attempt: &AttemptRecord) -> Result<(), LedgerError>;

    /// The batch got a 2xx.
    async fn batch_delivered(
        &self,
        pair: &PairKey,
        batch_id: &BatchId,
        at: SystemTime,
    ) -> Result<(), LedgerError>;

    /// The batch got a 413 and was split; its halves are formed as new batches in turn.
    async fn batch_split(&self, pair: &PairKey, batch_id: &BatchId) -> Result<(), LedgerError>;

    /// The batch was dead-lettered (it may be one the ledger never saw formed: events that
    /// arrived after the webhook was gone).
    async fn dead_lettered(&self, letter: &DeadLetter) -> Result<(), LedgerError>;

    /// The receiver answered 410: the webhook is gone.
    async fn webhook_gone(&self, pair: &PairKey) -> Result<(), LedgerError>;

    /// The pair's delivery finished: its terminal event was acknowledged.
    async fn pair_completed(&self, _pair: &PairKey) -> Result<(), LedgerError> {
        Ok(())
    }

    /// The dead letter `dead` was redriven as the new batch `redrive`.
    async fn redriven(
        &self,
        _pair: &PairKey,
        _dead: &BatchId,
        _redrive: &BatchId,
    ) -> Result<(), LedgerError> {
        Ok(())
    }

    /// The pair's batch formed and neither delivered, split nor dead-lettered, if any, with
    /// its attempts and next attempt time: a restarted process resumes it with the same id.
    async fn in_flight(&self, pair: &PairKey) -> Result<Option<BatchRecord>, LedgerError>;
}

/// A pair's delivery state, as `GET /executions/{id}/deliveries` shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PairState {
    /// Delivering.
    #[default]
    Active,
    /// The terminal event was delivered (or dead-lettered) and acknowledged.
    Completed,
    /// The receiver answered 410.
    Gone,
}

impl PairState {
    /// `active`, `completed` or `gone`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Gone => "gone",
        }
    }
}

/// A pair's delivery figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryStats {
    /// Active, completed or gone.
    pub state: PairState,
    /// Events in batches that got a 2xx.
    pub delivered_events: u64,
    /// Events in batches formed and not yet delivered or dead-lettered (events not yet
    /// batched are not counted: the bus knows those).
    pub pending_events: u64,
    /// Events dead-lettered (including ones redriven since).
    pub dead_lettered_events: u64,
    /// Attempts made.
    pub attempts: u64,
    /// The last status a receiver answered.
    pub last_status: Option<u16>,
    /// The last error (an attempt without answer, or a dead letter's reason).
    pub last_error: Option<String>,
    /// Dead letters not redriven, oldest first.
    pub dead_letters: Vec<DeadLetter>,
}

#[derive(Debug, Default)]
struct PairEntry {
    stats: DeliveryStats,
    /// Formed batches still open, oldest first.
    open: Vec<BatchRecord>,
}

/// The in-memory [`Ledger`]: keeps every pair's figures and dead letters until dropped.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    pairs: Mutex<HashMap<PairKey, PairEntry>>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// The figures of `pair`, if anything was recorded for it.
    pub fn stats(&self, pair: &PairKey) -> Option<DeliveryStats> {
        self.lock().get(pair).map(|e| e.stats.clone())
    }

    /// The dead letters of `pair` not redriven.
    pub fn dead_letters(&self, pair: &PairKey) -> Vec<DeadLetter> {
        self.lock().get(pair).map(|e| e.stats.dead_letters.clone()).unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PairKey, PairEntry>> {
        // No code panics while holding this lock; the data stays whole if one ever did.
        self.pairs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(entry: &mut PairEntry, batch_id: &BatchId) -> Option<BatchRecord> {
        let at = entry.open.iter().position(|b| &b.batch_id == batch_id)?;
        let batch = entry.open.remove(at);
        entry.stats.pending_events =
            entry.stats.pending_events.saturating_sub(batch.event_count as u64);
        Some(batch)
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn batch_formed(&self, batch: &BatchRecord) -> Result<(), LedgerError> {
        let mut pairs = self.lock();
        let entry = pairs.entry(batch.pair).or_default();
        if !entry.open.iter().any(|b| b.batch_id == batch.batch_id) {
            entry.stats.pending_events += batch.event_count as u64;
            entry.open.push(batch.clone());
        }
        Ok(())
    }

    async fn attempt_finished(&self, attempt: &AttemptRecord) -> Result<(), LedgerError> {
        let mut pairs = self.lock();
        let entry = pairs.entry(attempt.pair).or_default();
        entry.stats.attempts += 1;
        match &attempt.outcome {
            AttemptOutcome::Status(s) => entry.stats.last_status = Some(*s),
            AttemptOutcome::Error { kind, message } => {
                entry.stats.last_error = Some(format!("{}: {message}", kind.as_str()));
            }
        }
        if let Some(open) = entry.open.iter_mut().find(|b| b.batch_id == attempt.batch_id) {
            open.attempts = attempt.attempt;
            open.next_attempt_at = attempt.next_attempt_at;
        }
        Ok(())
    }

    async fn batch_delivered(
        &self,
        pair: &PairKey,
        batch_id: &BatchId,
        _at: SystemTime,
    ) -> Result<(), LedgerError> {
        let mut pairs = self.lock();
        let entry = pairs.entry(*pair).or_default();
        if let Some(batch) = Self::close(entry, batch_id) {
            entry.stats.delivered_events += batch.event_count as u64;
        }
        Ok(())
    }

    async fn batch_split(&self, pair: &PairKey, batch_id: &BatchId) -> Result<(), LedgerError> {
        let mut pairs = self.lock();
        let entry = pairs.entry(*pair).or_default();
        Self::close(entry, batch_id);
        Ok(())
    }

    async fn dead_lettered(&self, letter: &DeadLetter) -> Result<(), LedgerError> {
        let mut pairs = self.lock();
        let entry = pairs.entry(letter.pair).or_default();
        Self::close(entry, &letter.batch_id);
        entry.stats.dead_lettered_events += letter.sequences.len() as u64;
        entry.stats.last_error = Some(letter.reason.to_string());
        entry.stats.dead_letters.push(letter.clone());
        Ok(())
    }

    async fn webhook_gone(&self, pair: &PairKey) -> Result<(), LedgerError> {
        self.lock().entry(*pair).or_default().stats.state = PairState::Gone;
        Ok(())
    }

    async fn pair_completed(&self, pair: &PairKey) -> Result<(), LedgerError> {
        let mut pairs = self.lock();
        let entry = pairs.entry(*pair).or_default();
        if entry.stats.state == PairState::Active {
            entry.stats.state = PairState::Completed;
        }
        Ok(())
    }

    async fn redriven(
        &self,
        pair: &PairKey,
        dead: &BatchId,
        _redrive: &BatchId,
    ) -> Result<(), LedgerError> {
        let mut pairs = self.lock();
        if let Some(entry) = pairs.get_mut(pair) {
            entry.stats.dead_letters.retain(|d| &d.batch_id != dead);
        }
        Ok(())
    }

    async fn in_flight(&self, pair: &PairKey) -> Result<Option<BatchRecord>, LedgerError> {
        Ok(self.lock().get(pair).and_then(|e| e.open.first().cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pair: PairKey, first: u64, last: u64) -> BatchRecord {
        BatchRecord::new(
            pair,
            BatchId::generate(),
            first,
            last,
            (last - first + 1) as usize,
            SystemTime::UNIX_EPOCH,
            0,
            None,
        )
    }

    #[tokio::test]
    async fn memory_ledger_counts_and_resumes() {
        let ledger = MemoryLedger::new();
        let pair = PairKey::new(Uuid::new_v4(), 0);
        let a = record(pair, 1, 3);
        ledger.batch_formed(&a).await.unwrap();
        assert_eq!(ledger.stats(&pair).unwrap().pending_events, 3);
        let next = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        ledger
            .attempt_finished(&AttemptRecord {
                pair,
                batch_id: a.batch_id.clone(),
                attempt: 1,
                started_at: SystemTime::UNIX_EPOCH,
                outcome: AttemptOutcome::Status(503),
                response_body: Bytes::new(),
                latency: Duration::from_millis(3),
                next_attempt_at: Some(next),
            })
            .await
            .unwrap();
        let resumed = ledger.in_flight(&pair).await.unwrap().unwrap();
        assert_eq!((resumed.batch_id.clone(), resumed.attempts), (a.batch_id.clone(), 1));
        assert_eq!(resumed.next_attempt_at, Some(next));
        ledger.batch_delivered(&pair, &a.batch_id, next).await.unwrap();
        let stats = ledger.stats(&pair).unwrap();
        assert_eq!((stats.delivered_events, stats.pending_events), (3, 0));
        assert_eq!((stats.attempts, stats.last_status), (1, Some(503)));
        assert!(ledger.in_flight(&pair).await.unwrap().is_none());

        let b = record(pair, 4, 4);
        ledger.batch_formed(&b).await.unwrap();
        let letter = DeadLetter::new(
            pair,
            b.batch_id.clone(),
            vec![4],
            DeadLetterReason::Status { status: 404 },
            1,
            SystemTime::UNIX_EPOCH,
        );
        ledger.dead_lettered(&letter).await.unwrap();
        ledger.pair_completed(&pair).await.unwrap();
        let stats = ledger.stats(&pair).unwrap();
        assert_eq!(stats.dead_lettered_events, 1);
        assert_eq!(stats.dead_letters, vec![letter]);
        assert_eq!(stats.state, PairState::Completed);
        assert_eq!(stats.last_error.as_deref(), Some("receiver answered 404"));
    }

    #[test]
    fn batch_ids_are_msg_prefixed_and_distinct() {
        let (a, b) = (BatchId::generate(), BatchId::generate());
        assert!(a.as_str().starts_with("msg_") && a.as_str().len() == 36);
        assert_ne!(a, b);
    }
}
