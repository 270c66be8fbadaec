//! delivery-http's [`Ledger`] over the embedded database: batches in flight (what a restart
//! resumes, with the same batch id, attempt count and next attempt time), a bounded log of
//! attempts, dead letters with their reason, and each pair's figures for the deliveries view.
//!
//! Every record is written through the writer thread and answered after its commit, so a
//! batch is durable as formed before its first attempt is sent.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hookstream_delivery_http::{
    AttemptOutcome, AttemptRecord, BatchId, BatchRecord, DeadLetter, DeadLetterReason,
    DeliveryStats, Ledger, LedgerError, PairKey, PairState,
};
use rusqlite::{Connection, OptionalExtension as _};
use serde_json::{json, Value};

use super::writer::Inner;
use super::EmbeddedError;

/// Attempts kept per pair; older ones are deleted as new ones come.
const ATTEMPTS_KEPT: i64 = 100;

/// Bytes of a response body kept with an attempt.
const BODY_KEPT: usize = 4096;

/// The ledger of an [`EmbeddedStore`](super::EmbeddedStore).
#[derive(Clone)]
pub(super) struct EmbeddedLedger {
    inner: Arc<Inner>,
}

impl fmt::Debug for EmbeddedLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedLedger").field("path", &self.inner.path).finish()
    }
}

impl EmbeddedLedger {
    pub(super) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    async fn write<F>(&self, f: F) -> Result<(), LedgerError>
    where
        F: FnOnce(&Connection) -> Result<(), EmbeddedError> + Send + 'static,
    {
        self.inner.call(move |ctx| f(ctx.conn)).await.map_err(|e| LedgerError::Backend(e.into()))
    }

    /// Like [`Self::write`], then acknowledges the pair's events up to the sequence `f`
    /// returns on its durable bus subscription, in the same commit.
    ///
    /// Delivery acknowledges a batch to the bus right after recording it delivered (or
    /// dead-lettered); were the two separate commits, a crash between them would hand the
    /// batch out again and delivery would send it under a new id. Done together, a restart
    /// finds the batch either in flight (resent with its id) or acknowledged.
    async fn write_and_ack<F>(&self, pair: PairKey, f: F) -> Result<(), LedgerError>
    where
        F: FnOnce(&Connection) -> Result<Option<u64>, EmbeddedError> + Send + 'static,
    {
        let name = pair.subscription_name();
        let registry = Arc::clone(&self.inner.registry);
        self.inner
            .call_then(
                move |ctx| {
                    let Some(sequence) = f(ctx.conn)? else { return Ok(None) };
                    ctx.conn
                        .prepare_cached(
                            "UPDATE subscriptions SET acked = max(acked, ?3),
                                 handed = max(handed, ?3)
                             WHERE execution_id = ?1 AND name = ?2",
                        )?
                        .execute(rusqlite::params![
                            pair.execution_id.as_bytes().as_slice(),
                            name,
                            sequence as i64
                        ])?;
                    Ok(Some((name, sequence)))
                },
                move |acked| {
                    if let Some((name, sequence)) = acked {
                        registry.acknowledged(pair.execution_id, name, *sequence);
                    }
                },
            )
            .await
            .map_err(|e| LedgerError::Backend(e.into()))
            .map(|_| ())
    }
}

/// Unix milliseconds of `t` (negative before the epoch).
pub(super) fn to_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The time `ms` Unix milliseconds name.
pub(super) fn from_millis(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH.checked_sub(d).unwrap_or(UNIX_EPOCH)
    }
}

fn pair_params(pair: &PairKey) -> (Vec<u8>, i64) {
    (pair.execution_id.as_bytes().to_vec(), i64::from(pair.webhook_index))
}

/// Makes sure the pair has a stats row.
fn ensure_stats(conn: &Connection, exec: &[u8], webhook: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO pair_stats (execution_id, webhook) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    )?
    .execute(rusqlite::params![exec, webhook])?;
    Ok(())
}

/// Removes the batch from those in flight; its event count and last sequence if it was there.
fn close_batch(
    conn: &Connection,
    exec: &[u8],
    webhook: i64,
    batch_id: &str,
) -> rusqlite::Result<Option<(i64, u64)>> {
    let closed: Option<(i64, i64)> = conn
        .prepare_cached(
            "DELETE FROM batches WHERE execution_id = ?1 AND webhook = ?2 AND batch_id = ?3
             RETURNING event_count, last_sequence",
        )?
        .query_row(rusqlite::params![exec, webhook, batch_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((n, _)) = closed {
        ensure_stats(conn, exec, webhook)?;
        conn.prepare_cached(
            "UPDATE pair_stats SET pending_events = max(pending_events - ?3, 0)
             WHERE execution_id = ?1 AND webhook = ?2",
        )?
        .execute(rusqlite::params![exec, webhook, n])?;
    }
    Ok(closed.map(|(n, last)| (n, last as u64)))
}

fn reason_to_json(reason: &DeadLetterReason) -> Value {
    match reason {
        DeadLetterReason::Status { status } => json!({"kind": "status", "status": status}),
        DeadLetterReason::Gone => json!({"kind": "gone"}),
        DeadLetterReason::TooLarge => json!({"kind": "too_large"}),
        DeadLetterReason::Expired { attempts, last } => {
            json!({"kind": "expired", "attempts": attempts, "last": last})
        }
        DeadLetterReason::Blocked { message } => json!({"kind": "blocked", "message": message}),
        DeadLetterReason::Auth { message } => json!({"kind": "auth", "message": message}),
        DeadLetterReason::Transport { message } => {
            json!({"kind": "transport", "message": message})
        }
        other => json!({"kind": "transport", "message": other.to_string()}),
    }
}

fn reason_from_json(value: &Value) -> DeadLetterReason {
    let text = |field: &str| value[field].as_str().unwrap_or_default().to_owned();
    match value["kind"].as_str() {
        Some("status") => DeadLetterReason::Status {
            status: value["status"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or(0),
        },
        Some("gone") => DeadLetterReason::Gone,
        Some("too_large") => DeadLetterReason::TooLarge,
        Some("expired") => DeadLetterReason::Expired {
            attempts: value["attempts"].as_u64().and_then(|a| u32::try_from(a).ok()).unwrap_or(0),
            last: text("last"),
        },
        Some("blocked") => DeadLetterReason::Blocked { message: text("message") },
        Some("auth") => DeadLetterReason::Auth { message: text("message") },
        _ => DeadLetterReason::Transport { message: text("message") },
    }
}

#[async_trait]
impl Ledger for EmbeddedLedger {
    async fn batch_formed(&self, batch: &BatchRecord) -> Result<(), LedgerError> {
        let (exec, webhook) = pair_params(&batch.pair);
        let batch = batch.clone();
        self.write(move |conn| {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO batches (execution_id, webhook, batch_id, first_sequence,
                         last_sequence, event_count, formed_at, attempts, next_attempt_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
                )?
                .execute(rusqlite::params![
                    exec,
                    webhook,
                    batch.batch_id.as_str(),
                    batch.first_sequence as i64,
                    batch.last_sequence as i64,
                    batch.event_count as i64,
                    to_millis(batch.formed_at),
                    i64::from(batch.attempts),
                    batch.next_attempt_at.map(to_millis),
                ])?;
            if inserted > 0 {
                ensure_stats(conn, &exec, webhook)?;
                conn.prepare_cached(
                    "UPDATE pair_stats SET pending_events = pending_events + ?3
                     WHERE execution_id = ?1 AND webhook = ?2",
                )?
                .execute(rusqlite::params![
                    exec,
                    webhook,
                    batch.event_count as i64
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn attempt_finished(&self, attempt: &AttemptRecord) -> Result<(), LedgerError> {
        let (exec, webhook) = pair_params(&attempt.pair);
        let batch_id = attempt.batch_id.as_str().to_owned();
        let number = i64::from(attempt.attempt);
        let started_at = to_millis(attempt.started_at);
        let next = attempt.next_attempt_at.map(to_millis);
        let latency = i64::try_from(attempt.latency.as_millis()).unwrap_or(i64::MAX);
        let (status, error) = match &attempt.outcome {
            AttemptOutcome::Status(s) => (Some(i64::from(*s)), None),
            AttemptOutcome::Error { kind, message } => {
                (None, Some(format!("{}: {message}", kind.as_str())))
            }
            other => (None, Some(format!("{other:?}"))),
        };
        let body = attempt.response_body.slice(..attempt.response_body.len().min(BODY_KEPT));
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO attempts (execution_id, webhook, batch_id, attempt, started_at,
                     status, error, latency_ms, next_attempt_at, response_body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(rusqlite::params![
                exec,
                webhook,
                batch_id,
                number,
                started_at,
                status,
                error,
                latency,
                next,
                body.as_ref()
            ])?;
            conn.prepare_cached(
                "DELETE FROM attempts WHERE execution_id = ?1 AND webhook = ?2 AND id <
                 (SELECT id FROM attempts WHERE execution_id = ?1 AND webhook = ?2
                  ORDER BY id DESC LIMIT 1 OFFSET ?3)",
            )?
            .execute(rusqlite::params![exec, webhook, ATTEMPTS_KEPT - 1])?;
            conn.prepare_cached(
                "UPDATE batches SET attempts = ?4, next_attempt_at = ?5
                 WHERE execution_id = ?1 AND webhook = ?2 AND batch_id = ?3",
            )?
            .execute(rusqlite::params![exec, webhook, batch_id, number, next])?;
            ensure_stats(conn, &exec, webhook)?;
            conn.prepare_cached(
                "UPDATE pair_stats SET attempts = attempts + 1,
                     last_status = coalesce(?3, last_status), last_error = coalesce(?4, last_error)
                 WHERE execution_id = ?1 AND webhook = ?2",
            )?
            .execute(rusqlite::params![exec, webhook, status, error])?;
            Ok(())
        })
        .await
    }

    async fn batch_delivered(
        &self,
        pair: &PairKey,
        batch_id: &BatchId,
        _at: SystemTime,
    ) -> Result<(), LedgerError> {
        let (exec, webhook) = pair_params(pair);
        let batch_id = batch_id.as_str().to_owned();
        self.write_and_ack(*pair, move |conn| {
            let Some((n, last)) = close_batch(conn, &exec, webhook, &batch_id)? else {
                return Ok(None);
            };
            conn.prepare_cached(
                "UPDATE pair_stats SET delivered_events = delivered_events + ?3
                 WHERE execution_id = ?1 AND webhook = ?2",
            )?
            .execute(rusqlite::params![exec, webhook, n])?;
            Ok(Some(last))
        })
        .await
    }

    async fn batch_split(&self, pair: &PairKey, batch_id: &BatchId) -> Result<(), LedgerError> {
        let (exec, webhook) = pair_params(pair);
        let batch_id = batch_id.as_str().to_owned();
        self.write(move |conn| {
            close_batch(conn, &exec, webhook, &batch_id)?;
            Ok(())
        })
        .await
    }

    async fn dead_lettered(&self, letter: &DeadLetter) -> Result<(), LedgerError> {
        let (exec, webhook) = pair_params(&letter.pair);
        let batch_id = letter.batch_id.as_str().to_owned();
        let sequences =
            serde_json::to_string(&letter.sequences).map_err(|e| LedgerError::Backend(e.into()))?;
        let count = letter.sequences.len() as i64;
        let reason = reason_to_json(&letter.reason).to_string();
        let reason_text = letter.reason.to_string();
        let attempts = i64::from(letter.attempts);
        let at = to_millis(letter.at);
        let last = letter.sequences.iter().copied().max();
        self.write_and_ack(letter.pair, move |conn| {
            close_batch(conn, &exec, webhook, &batch_id)?;
            conn.prepare_cached(
                "INSERT INTO dead_letters (execution_id, webhook, batch_id, sequences, reason,
                     attempts, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(rusqlite::params![exec, webhook, batch_id, sequences, reason, attempts, at])?;
            ensure_stats(conn, &exec, webhook)?;
            conn.prepare_cached(
                "UPDATE pair_stats SET dead_lettered_events = dead_lettered_events + ?3,
                     last_error = ?4
                 WHERE execution_id = ?1 AND webhook = ?2",
            )?
            .execute(rusqlite::params![exec, webhook, count, reason_text])?;
            Ok(last)
        })
        .await
    }

    async fn webhook_gone(&self, pair: &PairKey) -> Result<(), LedgerError> {
        let (exec, webhook) = pair_params(pair);
        self.write(move |conn| {
            ensure_stats(conn, &exec, webhook)?;
            conn.prepare_cached(
                "UPDATE pair_stats SET state = 'gone' WHERE execution_id = ?1 AND webhook = ?2",
            )?
            .execute(rusqlite::params![exec, webhook])?;
            Ok(())
        })
        .await
    }

    async fn pair_completed(&self, pair: &PairKey) -> Result<(), LedgerError> {
        let (exec, webhook) = pair_params(pair);
        self.write(move |conn| {
            ensure_stats(conn, &exec, webhook)?;
            conn.prepare_cached(
                "UPDATE pair_stats SET state = 'completed'
                 WHERE execution_id = ?1 AND webhook = ?2 AND state = 'active'",
            )?
            .execute(rusqlite::params![exec, webhook])?;
            Ok(())
        })
        .await
    }

    async fn redriven(
        &self,
        pair: &PairKey,
        dead: &BatchId,
        _redrive: &BatchId,
    ) -> Result<(), LedgerError> {
        let (exec, webhook) = pair_params(pair);
        let dead = dead.as_str().to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE dead_letters SET redriven = 1
                 WHERE execution_id = ?1 AND webhook = ?2 AND batch_id = ?3",
            )?
            .execute(rusqlite::params![exec, webhook, dead])?;
            Ok(())
        })
        .await
    }

    async fn in_flight(&self, pair: &PairKey) -> Result<Option<BatchRecord>, LedgerError> {
        let pair = *pair;
        let (exec, webhook) = pair_params(&pair);
        self.inner
            .read(move |conn| {
                let row = conn
                    .prepare_cached(
                        "SELECT batch_id, first_sequence, last_sequence, event_count, formed_at,
                             attempts, next_attempt_at
                         FROM batches WHERE execution_id = ?1 AND webhook = ?2
                         ORDER BY id LIMIT 1",
                    )?
                    .query_row(rusqlite::params![exec, webhook], |r| {
                        Ok(BatchRecord::new(
                            pair,
                            BatchId::from_stored(r.get::<_, String>(0)?),
                            r.get::<_, i64>(1)? as u64,
                            r.get::<_, i64>(2)? as u64,
                            r.get::<_, i64>(3)? as usize,
                            from_millis(r.get(4)?),
                            u32::try_from(r.get::<_, i64>(5)?).unwrap_or(u32::MAX),
                            r.get::<_, Option<i64>>(6)?.map(from_millis),
                        ))
                    })
                    .optional()?;
                Ok(row)
            })
            .await
            .map_err(|e| LedgerError::Backend(e.into()))
    }
}

/// The figures of `pair`, if anything was recorded for it.
pub(super) async fn stats(
    inner: &Inner,
    pair: PairKey,
) -> Result<Option<DeliveryStats>, EmbeddedError> {
    let (exec, webhook) = pair_params(&pair);
    inner
        .read(move |conn| {
            let row = conn
                .prepare_cached(
                    "SELECT state, delivered_events, pending_events, dead_lettered_events,
                         attempts, last_status, last_error
                     FROM pair_stats WHERE execution_id = ?1 AND webhook = ?2",
                )?
                .query_row(rusqlite::params![exec, webhook], |r| {
                    let mut stats = DeliveryStats::default();
                    stats.state = match r.get::<_, String>(0)?.as_str() {
                        "completed" => PairState::Completed,
                        "gone" => PairState::Gone,
                        _ => PairState::Active,
                    };
                    stats.delivered_events = r.get::<_, i64>(1)? as u64;
                    stats.pending_events = r.get::<_, i64>(2)? as u64;
                    stats.dead_lettered_events = r.get::<_, i64>(3)? as u64;
                    stats.attempts = r.get::<_, i64>(4)? as u64;
                    stats.last_status =
                        r.get::<_, Option<i64>>(5)?.and_then(|s| u16::try_from(s).ok());
                    stats.last_error = r.get(6)?;
                    Ok(stats)
                })
                .optional()?;
            let Some(mut stats) = row else { return Ok(None) };
            let mut stmt = conn.prepare_cached(
                "SELECT batch_id, sequences, reason, attempts, at FROM dead_letters
                 WHERE execution_id = ?1 AND webhook = ?2 AND redriven = 0 ORDER BY id",
            )?;
            let mut rows = stmt.query(rusqlite::params![exec, webhook])?;
            while let Some(r) = rows.next()? {
                let sequences: String = r.get(1)?;
                let sequences: Vec<u64> = serde_json::from_str(&sequences)
                    .map_err(|_| EmbeddedError::invalid("a dead letter's sequences"))?;
                let reason: String = r.get(2)?;
                let reason = serde_json::from_str(&reason)
                    .map_err(|_| EmbeddedError::invalid("a dead letter's reason"))?;
                stats.dead_letters.push(DeadLetter::new(
                    pair,
                    BatchId::from_stored(r.get::<_, String>(0)?),
                    sequences,
                    reason_from_json(&reason),
                    u32::try_from(r.get::<_, i64>(3)?).unwrap_or(u32::MAX),
                    from_millis(r.get(4)?),
                ));
            }
            Ok(Some(stats))
        })
        .await
}
