//! The writer thread with group commit, the read pool, and background pruning.
//!
//! Writes are [`Job`]s queued on a channel. The thread takes what is queued (at most
//! [`MAX_GROUP`] jobs), opens one transaction, runs each job inside its own savepoint (a job
//! that fails is rolled back alone), commits once, and then runs every job's `after` step with
//! the commit's outcome: that is where answers are sent and subscribers woken, so nobody hears
//! of a write before it is durable. When nothing is queued and pruning is due, the thread
//! deletes one chunk of expired events in its own short transaction.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension as _};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::bus::{Registry, Tail};
use super::secret::Sealer;
use super::{schema, Durability, EmbeddedError};

/// Jobs committed together at most.
const MAX_GROUP: usize = 512;

/// Pruning runs this long after start, then this often while nothing expires.
const PRUNE_FIRST: Duration = Duration::from_secs(5);
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Between two pruning chunks while more is left: the groups of ingest go in between.
const PRUNE_PAUSE: Duration = Duration::from_millis(10);

/// Events deleted per pruning transaction: short enough never to hold ingest back.
pub(super) const PRUNE_CHUNK: i64 = 1000;

/// The least time between two checkpoints.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Idle read connections kept.
const READERS: usize = 8;

/// Why a job's work was not committed.
#[derive(Clone, Debug)]
pub(super) enum Failure {
    /// The group's transaction failed to begin or commit.
    Commit(Arc<rusqlite::Error>),
    /// The writer thread is gone.
    Closed,
}

impl Failure {
    pub(super) fn to_error(&self) -> EmbeddedError {
        match self {
            Self::Commit(e) => EmbeddedError::Commit(Arc::clone(e)),
            Self::Closed => EmbeddedError::Closed,
        }
    }
}

/// What runs after the group's commit (in the writer thread), with its outcome.
pub(super) type After = Box<dyn FnOnce(Result<(), &Failure>) + Send>;

/// A job's result: whether to keep its savepoint, and its after-commit step.
pub(super) struct Done {
    pub(super) keep: bool,
    pub(super) after: After,
}

/// A write. Called with `None` when it cannot run (no transaction, writer gone): it must then
/// touch nothing and answer from its `after` step, which gets the failure.
pub(super) type Job = Box<dyn FnOnce(Option<&mut Ctx<'_>>) -> Done + Send>;

/// What a job sees: the transaction's connection and the bus's in-memory state.
pub(super) struct Ctx<'a> {
    pub(super) conn: &'a Connection,
    pub(super) registry: &'a Arc<Registry>,
    /// Each execution's tail as of this group's uncommitted publishes.
    pub(super) overlay: HashMap<Uuid, Tail>,
}

/// The shared heart of the store: the writer's queue, the read pool, the settings.
pub(super) struct Inner {
    pub(super) path: PathBuf,
    pub(super) retention: Duration,
    pub(super) durability: Durability,
    pub(super) sealer: Sealer,
    pub(super) registry: Arc<Registry>,
    pub(super) cache: super::store::Cache,
    readers: Arc<ReadPool>,
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Inner {
    /// Starts the writer thread over `conn` (configured and migrated).
    pub(super) fn start(
        conn: Connection,
        path: PathBuf,
        durability: Durability,
        retention: Duration,
        sealer: Sealer,
    ) -> std::io::Result<Self> {
        let registry = Arc::new(Registry::new());
        let (queue, jobs) = mpsc::channel();
        // Checkpoints (copying the WAL into the database, with an fsync) run on their own
        // connection and thread, so that they never hold a commit back.
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(std::io::Error::other)?;
        let checkpointer = schema::open_checkpointer(&path).map_err(std::io::Error::other)?;
        let (commits, committed) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("hookstream-store-checkpoint".into())
            .spawn(move || checkpoint(&checkpointer, &committed))?;
        let thread = {
            let registry = Arc::clone(&registry);
            std::thread::Builder::new()
                .name("hookstream-store-writer".into())
                .spawn(move || run(&conn, &jobs, &commits, &registry, retention))?
        };
        let readers = Arc::new(ReadPool { path: path.clone(), idle: Mutex::new(Vec::new()) });
        Ok(Self {
            path,
            retention,
            durability,
            sealer,
            registry,
            cache: super::store::Cache::default(),
            readers,
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queues `job`; when the writer is gone the job is failed here.
    pub(super) fn submit(&self, job: Job) {
        let Some(queue) = &self.queue else { return fail(job, &Failure::Closed) };
        if let Err(mpsc::SendError(job)) = queue.send(job) {
            fail(job, &Failure::Closed);
        }
    }

    /// Runs `f` in the writer's next group; answers once committed.
    pub(super) async fn call<T, F>(&self, f: F) -> Result<T, EmbeddedError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ctx<'_>) -> Result<T, EmbeddedError> + Send + 'static,
    {
        self.call_then(f, |_| {}).await
    }

    /// Like [`Self::call`], running `then` in the writer thread after a successful commit,
    /// before the answer (to publish in-memory effects of the write).
    pub(super) async fn call_then<T, F, G>(&self, f: F, then: G) -> Result<T, EmbeddedError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ctx<'_>) -> Result<T, EmbeddedError> + Send + 'static,
        G: FnOnce(&T) + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.submit(Box::new(move |ctx: Option<&mut Ctx<'_>>| {
            let result = match ctx {
                Some(ctx) => f(ctx),
                None => Err(EmbeddedError::Closed),
            };
            Done {
                keep: result.is_ok(),
                after: Box::new(move |commit| {
                    let answer = match (commit, result) {
                        (Err(failure), _) => Err(failure.to_error()),
                        (Ok(()), Ok(value)) => {
                            then(&value);
                            Ok(value)
                        }
                        (Ok(()), Err(e)) => Err(e),
                    };
                    // The caller may have gone away; the write stands.
                    let _ = tx.send(answer);
                }),
            }
        }));
        rx.await.map_err(|_| EmbeddedError::Closed)?
    }

    /// Runs `f` on a read connection on the blocking pool.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T, EmbeddedError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, EmbeddedError> + Send + 'static,
    {
        let pool = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || pool.with(f))
            .await
            .map_err(|_| EmbeddedError::Closed)?
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and stop.
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != std::thread::current().id() {
                // The writer only panics on a bug; its queue is answered either way.
                let _ = thread.join();
            }
        }
    }
}

fn fail(job: Job, failure: &Failure) {
    let done = job(None);
    (done.after)(Err(failure));
}

/// The checkpointer thread's loop: a passive checkpoint after commits, at most every
/// [`CHECKPOINT_EVERY`]; a last one when the writer stops.
fn checkpoint(conn: &Connection, committed: &mpsc::Receiver<()>) {
    let run = || {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "embedded store: checkpoint failed; retrying later");
        }
    };
    while committed.recv().is_ok() {
        run();
        // Lets commits pile up between checkpoints; a commit meanwhile leaves a signal.
        std::thread::park_timeout(CHECKPOINT_EVERY);
    }
    run();
}

/// The writer thread's loop.
fn run(
    conn: &Connection,
    jobs: &mpsc::Receiver<Job>,
    commits: &mpsc::SyncSender<()>,
    registry: &Arc<Registry>,
    retention: Duration,
) {
    let mut prune_due = Instant::now() + PRUNE_FIRST;
    loop {
        // Due pruning runs one chunk between groups, also under a steady stream of jobs.
        if Instant::now() >= prune_due {
            let more = prune_once(conn, registry, retention);
            prune_due = Instant::now() + if more { PRUNE_PAUSE } else { PRUNE_INTERVAL };
        }
        let wait = prune_due.saturating_duration_since(Instant::now());
        let first = match jobs.recv_timeout(wait) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        run_group(conn, registry, group);
        // Full means a signal is already waiting: the checkpointer will see this commit.
        let _ = commits.try_send(());
    }
}

/// One transaction for `group`, a savepoint per job, then every `after` step.
fn run_group(conn: &Connection, registry: &Arc<Registry>, group: Vec<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let failure = Failure::Commit(Arc::new(e));
        for job in group {
            fail(job, &failure);
        }
        return;
    }
    let mut ctx = Ctx { conn, registry, overlay: HashMap::new() };
    let mut afters = Vec::with_capacity(group.len());
    let mut broken: Option<rusqlite::Error> = None;
    for job in group {
        if broken.is_some() {
            afters.push(job(None).after);
            continue;
        }
        if let Err(e) = savepoint(conn, "SAVEPOINT job") {
            broken = Some(e);
            afters.push(job(None).after);
            continue;
        }
        let done = job(Some(&mut ctx));
        let end = if done.keep {
            savepoint(conn, "RELEASE job")
        } else {
            savepoint(conn, "ROLLBACK TO job").and_then(|()| savepoint(conn, "RELEASE job"))
        };
        if let Err(e) = end {
            broken = Some(e);
        }
        afters.push(done.after);
    }
    let outcome = match broken {
        Some(e) => Err(e),
        None => conn.execute_batch("COMMIT"),
    };
    let outcome = outcome.map_err(|e| {
        tracing::error!(error = %e, "embedded store: a group commit failed");
        // Nothing of the group may stay; a failed COMMIT may leave the transaction open.
        let _ = conn.execute_batch("ROLLBACK");
        Failure::Commit(Arc::new(e))
    });
    for after in afters {
        after(outcome.as_ref().map(|_| ()));
    }
}

fn savepoint(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// One pruning chunk in its own transaction; whether more may be left.
fn prune_once(conn: &Connection, registry: &Arc<Registry>, retention: Duration) -> bool {
    let chunk = || -> Result<u64, EmbeddedError> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut ctx = Ctx { conn, registry, overlay: HashMap::new() };
        let n = prune_chunk(&mut ctx, retention)?;
        conn.execute_batch("COMMIT")?;
        Ok(n)
    };
    match chunk() {
        Ok(n) => n > 0,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::warn!(error = %e, "embedded store: pruning failed; retrying later");
            false
        }
    }
}

/// Deletes at most [`PRUNE_CHUNK`] events of one execution that ended more than `retention`
/// ago; once an execution has none left it is marked pruned. Returns the events deleted plus
/// one per execution marked (0: nothing left to prune).
pub(super) fn prune_chunk(ctx: &mut Ctx<'_>, retention: Duration) -> Result<u64, EmbeddedError> {
    let now = now_millis();
    let cutoff = now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    let conn = ctx.conn;
    let stream: Option<Vec<u8>> = conn
        .prepare_cached(
            "SELECT execution_id FROM streams
             WHERE ended_at IS NOT NULL AND pruned = 0 AND ended_at <= ?1 LIMIT 1",
        )?
        .query_row([cutoff], |r| r.get(0))
        .optional()?;
    let Some(execution) = stream else { return Ok(0) };
    let deleted = conn
        .prepare_cached(
            "DELETE FROM events WHERE rowid IN
             (SELECT rowid FROM events WHERE execution_id = ?1 LIMIT ?2)",
        )?
        .execute(rusqlite::params![execution, PRUNE_CHUNK])?;
    if (deleted as i64) < PRUNE_CHUNK {
        conn.prepare_cached("UPDATE streams SET pruned = 1 WHERE execution_id = ?1")?
            .execute([&execution])?;
        // What only made sense with the events: positions and the attempt log.
        conn.prepare_cached("DELETE FROM subscriptions WHERE execution_id = ?1")?
            .execute([&execution])?;
        conn.prepare_cached("DELETE FROM attempts WHERE execution_id = ?1")?
            .execute([&execution])?;
        return Ok(deleted as u64 + 1);
    }
    Ok(deleted as u64)
}

/// Milliseconds since the Unix epoch, now.
pub(super) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Read-only connections, opened on demand, a few kept idle.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, EmbeddedError>,
    ) -> Result<T, EmbeddedError> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => schema::open_reader(&self.path)?,
        };
        let result = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < READERS {
            idle.push(conn);
        }
        result
    }
}
