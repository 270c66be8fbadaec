//! The server's [`Store`] over the embedded database: execution records and their webhooks
//! (sealed at rest when a secret key is set), the bus and the ledger.
//!
//! `finish_execution` publishes the terminal event and records the final state in one
//! savepoint of the writer thread: both are committed, or neither.

use std::sync::Arc;

use async_trait::async_trait;
use hookstream_delivery_http::{DeliveryStats, Ledger, PairKey};
use hookstream_events_core::bus::{Backpressure, Bus};
use hookstream_events_core::{Data, Timestamp};
use rusqlite::{Connection, OptionalExtension as _};
use serde_json::Value;
use uuid::Uuid;

use super::bus::PublishHook;
use super::ledger::{self, EmbeddedLedger};
use super::secret::Sealer;
use super::{EmbeddedError, EmbeddedStore};
use crate::store::{
    Completion, Execution, ExecutionState, Finished, StateCounts, Store, StoreError,
};
use crate::token::IngestTokenHash;
use crate::webhook::WebhookSpec;

fn backend(e: EmbeddedError) -> StoreError {
    StoreError::backend(e)
}

fn json_text(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(StoreError::backend)
}

fn ts_millis(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::unix_millis)
}

/// The columns of an execution row, in the order [`read_execution`] selects them.
const EXECUTION_COLUMNS: &str = "id, runner, external, inputs, meta, ingest_token_hash, state,
    result, error, execution_time, created_at, started_at, finished_at";

/// Reads the execution row at `row` and its webhooks.
fn execution_from_row(
    conn: &Connection,
    sealer: &Sealer,
    row: &rusqlite::Row<'_>,
) -> Result<Execution, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("execution {what}"));
    let id: Vec<u8> = row.get(0).map_err(StoreError::backend)?;
    let id = Uuid::from_slice(&id).map_err(|_| corrupt("id"))?;
    let text = |i: usize| row.get::<_, String>(i).map_err(StoreError::backend);
    let runner = text(1)?;
    let external: bool = row.get(2).map_err(StoreError::backend)?;
    let inputs: Data = serde_json::from_str(&text(3)?).map_err(|_| corrupt("inputs"))?;
    let meta: Value = serde_json::from_str(&text(4)?).map_err(|_| corrupt("meta"))?;
    let hash: Vec<u8> = row.get(5).map_err(StoreError::backend)?;
    let hash: [u8; 32] = hash.try_into().map_err(|_| corrupt("ingest token hash"))?;
    let state = ExecutionState::parse(&text(6)?).ok_or_else(|| corrupt("state"))?;
    let result: Value = serde_json::from_str(&text(7)?).map_err(|_| corrupt("result"))?;
    let error: Option<String> = row.get(8).map_err(StoreError::backend)?;
    let execution_time: Option<f64> = row.get(9).map_err(StoreError::backend)?;
    let time = |i: usize| -> Result<Option<Timestamp>, StoreError> {
        let ms: Option<i64> = row.get(i).map_err(StoreError::backend)?;
        ms.map(|ms| Timestamp::from_unix_millis(ms).ok_or_else(|| corrupt("time"))).transpose()
    };
    let created_at = time(10)?.ok_or_else(|| corrupt("created_at"))?;
    let mut execution =
        Execution::new(id, runner, external, IngestTokenHash::from_bytes(hash)).with_inputs(inputs);
    execution.meta = meta;
    execution.state = state;
    execution.result = result;
    execution.error = error;
    execution.execution_time = execution_time;
    execution.created_at = created_at;
    execution.started_at = time(11)?;
    execution.finished_at = time(12)?;
    execution.webhooks = webhooks(conn, sealer, id)?;
    Ok(execution)
}

fn webhooks(conn: &Connection, sealer: &Sealer, id: Uuid) -> Result<Vec<WebhookSpec>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT spec FROM webhooks WHERE execution_id = ?1 ORDER BY idx")
        .map_err(StoreError::backend)?;
    let mut rows = stmt.query([id.as_bytes().as_slice()]).map_err(StoreError::backend)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(StoreError::backend)? {
        let stored: Vec<u8> = row.get(0).map_err(StoreError::backend)?;
        let plain = sealer.open(&stored).map_err(backend)?;
        let json: Value = serde_json::from_slice(&plain)
            .map_err(|_| StoreError::Corrupt("a webhook spec".into()))?;
        let spec = WebhookSpec::from_json(&json)
            .map_err(|e| StoreError::Corrupt(format!("a webhook spec: {e}")))?;
        out.push(spec);
    }
    Ok(out)
}

fn read_execution(
    conn: &Connection,
    sealer: &Sealer,
    id: Uuid,
) -> Result<Option<Execution>, StoreError> {
    let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?1");
    let mut stmt = conn.prepare_cached(&sql).map_err(StoreError::backend)?;
    let mut rows = stmt.query([id.as_bytes().as_slice()]).map_err(StoreError::backend)?;
    match rows.next().map_err(StoreError::backend)? {
        Some(row) => execution_from_row(conn, sealer, row).map(Some),
        None => Ok(None),
    }
}

/// Records the final state in the step that publishes the terminal event.
struct Finish {
    /// The record as finished, for the cache.
    finished: Execution,
    inner: Arc<super::writer::Inner>,
    id: Uuid,
    state: &'static str,
    result: String,
    error: Option<String>,
    execution_time: f64,
    finished_at: i64,
}

impl PublishHook for Finish {
    fn check(&self, conn: &Connection) -> Result<bool, EmbeddedError> {
        let state: Option<String> = conn
            .prepare_cached("SELECT state FROM executions WHERE id = ?1")?
            .query_row([self.id.as_bytes().as_slice()], |r| r.get(0))
            .optional()?;
        Ok(state.is_some_and(|s| !ExecutionState::parse(&s).is_some_and(ExecutionState::is_final)))
    }

    fn stored(&self, conn: &Connection, _last_sequence: u64) -> Result<(), EmbeddedError> {
        conn.prepare_cached(
            "UPDATE executions SET state = ?2, result = ?3, error = ?4, execution_time = ?5,
                 finished_at = ?6
             WHERE id = ?1",
        )?
        .execute(rusqlite::params![
            self.id.as_bytes().as_slice(),
            self.state,
            self.result,
            self.error,
            self.execution_time,
            self.finished_at,
        ])?;
        Ok(())
    }

    fn committed(&self) {
        self.inner.cache.update(self.id, |e| *e = self.finished.clone());
    }
}

/// Executions recently read or written, so that the hot paths (every ingest request reads its
/// execution and marks it running) need neither the file nor the writer.
///
/// Coherent because it changes only in the writer thread: misses are read there (in order
/// with writes), and writes update it after their commit. Cleared whole when it grows past
/// [`CACHED`].
#[derive(Default)]
pub(super) struct Cache {
    executions: std::sync::Mutex<std::collections::HashMap<Uuid, Execution>>,
}

/// Executions cached at most.
const CACHED: usize = 4096;

impl Cache {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Uuid, Execution>> {
        self.executions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, id: Uuid) -> Option<Execution> {
        self.lock().get(&id).cloned()
    }

    /// Writer thread only.
    fn put(&self, execution: Execution) {
        let mut map = self.lock();
        if map.len() >= CACHED && !map.contains_key(&execution.id) {
            map.clear();
        }
        map.insert(execution.id, execution);
    }

    /// Writer thread only: changes a cached execution (nothing when it is not cached).
    fn update(&self, id: Uuid, change: impl FnOnce(&mut Execution)) {
        if let Some(execution) = self.lock().get_mut(&id) {
            change(execution);
        }
    }
}

/// The store's inner result: a domain refusal or a value.
type Answer<T> = Result<Result<T, StoreError>, EmbeddedError>;

impl EmbeddedStore {
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Answer<T> + Send + 'static,
    {
        self.inner.call(move |ctx| f(ctx.conn)).await.map_err(backend)?
    }

    async fn write_then<T, F, G>(&self, f: F, then: G) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Answer<T> + Send + 'static,
        G: FnOnce(&Result<T, StoreError>) + Send + 'static,
    {
        self.inner.call_then(move |ctx| f(ctx.conn), then).await.map_err(backend)?
    }

    async fn read_with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Sealer) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        self.inner.read(move |conn| Ok(f(conn, &inner.sealer))).await.map_err(backend)?
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    fn bus(&self) -> Arc<dyn Bus> {
        Arc::new(self.embedded_bus())
    }

    fn ledger(&self) -> Arc<dyn Ledger> {
        Arc::new(EmbeddedLedger::new(Arc::clone(&self.inner)))
    }

    async fn delivery_stats(&self, pair: PairKey) -> Result<Option<DeliveryStats>, StoreError> {
        ledger::stats(&self.inner, pair).await.map_err(backend)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        EmbeddedStore::ping(self).await.map_err(backend)
    }

    async fn create_execution(&self, execution: Execution) -> Result<(), StoreError> {
        let mut specs = Vec::with_capacity(execution.webhooks.len());
        for spec in &execution.webhooks {
            let json = serde_json::to_vec(&spec.to_json()).map_err(StoreError::backend)?;
            specs.push(self.inner.sealer.seal(&json).map_err(backend)?);
        }
        let inputs = json_text(&execution.inputs)?;
        let meta = json_text(&execution.meta)?;
        let result = json_text(&execution.result)?;
        let inner = Arc::clone(&self.inner);
        let record = execution.clone();
        self.write_then(
            move |conn| {
                let key = execution.id.as_bytes().as_slice();
                let taken =
                    conn.prepare_cached("SELECT 1 FROM executions WHERE id = ?1")?.exists([key])?;
                if taken {
                    return Ok(Err(StoreError::AlreadyExists(execution.id)));
                }
                conn.prepare_cached(
                    "INSERT INTO executions (id, runner, external, inputs, meta, ingest_token_hash,
                     state, result, error, execution_time, created_at, started_at, finished_at,
                     undelivered)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )?
                .execute(rusqlite::params![
                    key,
                    execution.runner,
                    execution.external,
                    inputs,
                    meta,
                    execution.ingest_token.as_bytes().as_slice(),
                    execution.state.as_str(),
                    result,
                    execution.error,
                    execution.execution_time,
                    execution.created_at.unix_millis(),
                    ts_millis(execution.started_at),
                    ts_millis(execution.finished_at),
                    specs.len() as i64,
                ])?;
                let mut insert = conn.prepare_cached(
                    "INSERT INTO webhooks (execution_id, idx, spec) VALUES (?1, ?2, ?3)",
                )?;
                for (i, spec) in specs.iter().enumerate() {
                    insert.execute(rusqlite::params![key, i as i64, spec])?;
                }
                Ok(Ok(()))
            },
            move |created| {
                if created.is_ok() {
                    inner.cache.put(record);
                }
            },
        )
        .await
    }

    async fn execution(&self, id: Uuid) -> Result<Execution, StoreError> {
        if let Some(execution) = self.inner.cache.get(id) {
            return Ok(execution);
        }
        // A miss is read in the writer thread, in order with the writes that update the cache.
        let inner = Arc::clone(&self.inner);
        self.write(move |conn| {
            let found = read_execution(conn, &inner.sealer, id);
            if let Ok(Some(execution)) = &found {
                inner.cache.put(execution.clone());
            }
            Ok(found.and_then(|e| e.ok_or(StoreError::NotFound(id))))
        })
        .await
    }

    async fn mark_running(&self, id: Uuid, at: Timestamp) -> Result<bool, StoreError> {
        if self.inner.cache.get(id).is_some_and(|e| e.state != ExecutionState::Pending) {
            return Ok(false);
        }
        let inner = Arc::clone(&self.inner);
        self.write_then(
            move |conn| {
                let key = id.as_bytes().as_slice();
                let moved = conn
                    .prepare_cached(
                        "UPDATE executions SET state = 'RUNNING', started_at = ?2
                     WHERE id = ?1 AND state = 'PENDING'",
                    )?
                    .execute(rusqlite::params![key, at.unix_millis()])?;
                if moved > 0 {
                    return Ok(Ok(true));
                }
                let exists =
                    conn.prepare_cached("SELECT 1 FROM executions WHERE id = ?1")?.exists([key])?;
                Ok(if exists { Ok(false) } else { Err(StoreError::NotFound(id)) })
            },
            move |moved| {
                if let Ok(true) = moved {
                    inner.cache.update(id, |e| {
                        e.state = ExecutionState::Running;
                        e.started_at = Some(at);
                    });
                }
            },
        )
        .await
    }

    async fn finish_execution(
        &self,
        id: Uuid,
        completion: Completion,
    ) -> Result<Finished, StoreError> {
        let record = Store::execution(self, id).await?;
        if record.state.is_final() {
            return Err(StoreError::Ended(id));
        }
        let draft = completion.terminal_draft(&record);
        let hook = Finish {
            finished: record.clone().completed(&completion),
            inner: Arc::clone(&self.inner),
            id,
            state: ExecutionState::from(completion.state).as_str(),
            result: json_text(&completion.result)?,
            error: completion.error.clone(),
            execution_time: completion.execution_time,
            finished_at: completion.finished_at.unix_millis(),
        };
        let published = self
            .embedded_bus()
            .publish_hooked(id, vec![draft], Backpressure::Wait, Some(Arc::new(hook)))
            .await
            .map_err(|e| StoreError::from_publish(id, e))?;
        if published.accepted == 0 {
            // The terminal draft is new by construction; a no-op means another finish won.
            return Err(StoreError::Ended(id));
        }
        Ok(Finished::new(record.completed(&completion), published.last_sequence))
    }

    async fn unfinished_executions(&self) -> Result<Vec<Execution>, StoreError> {
        self.read_with(|conn, sealer| {
            let sql = format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions
                 WHERE state IN ('PENDING', 'RUNNING') OR undelivered > 0 ORDER BY created_at"
            );
            let mut stmt = conn.prepare(&sql).map_err(StoreError::backend)?;
            let mut rows = stmt.query([]).map_err(StoreError::backend)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(StoreError::backend)? {
                out.push(execution_from_row(conn, sealer, row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn mark_delivery_finished(
        &self,
        id: Uuid,
        webhook_index: usize,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            let key = id.as_bytes().as_slice();
            let exists =
                conn.prepare_cached("SELECT 1 FROM executions WHERE id = ?1")?.exists([key])?;
            if !exists {
                return Ok(Err(StoreError::NotFound(id)));
            }
            let marked = conn
                .prepare_cached(
                    "UPDATE webhooks SET delivered = 1
                     WHERE execution_id = ?1 AND idx = ?2 AND delivered = 0",
                )?
                .execute(rusqlite::params![key, webhook_index as i64])?;
            if marked > 0 {
                conn.prepare_cached(
                    "UPDATE executions SET undelivered = max(undelivered - 1, 0) WHERE id = ?1",
                )?
                .execute([key])?;
            }
            Ok(Ok(()))
        })
        .await
    }

    async fn state_counts(&self) -> Result<StateCounts, StoreError> {
        self.read_with(|conn, _| {
            let mut counts = StateCounts::default();
            let mut stmt = conn
                .prepare_cached("SELECT state, count(*) FROM executions GROUP BY state")
                .map_err(StoreError::backend)?;
            let mut rows = stmt.query([]).map_err(StoreError::backend)?;
            while let Some(row) = rows.next().map_err(StoreError::backend)? {
                let state: String = row.get(0).map_err(StoreError::backend)?;
                let n: i64 = row.get(1).map_err(StoreError::backend)?;
                let n = u64::try_from(n).unwrap_or(0);
                match ExecutionState::parse(&state) {
                    Some(ExecutionState::Pending) => counts.pending = n,
                    Some(ExecutionState::Running) => counts.running = n,
                    Some(ExecutionState::Success) => counts.success = n,
                    Some(ExecutionState::Failed) => counts.failed = n,
                    None => {}
                }
            }
            Ok(counts)
        })
        .await
    }
}
