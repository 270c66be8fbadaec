//! [`EmbeddedBus`]: the event bus over the embedded store, keeping events-core's [`Bus`]
//! contract with every event and durable position on disk.
//!
//! Publish runs in the writer thread: it computes each new event's sequence from the
//! execution's tail (loaded once from the `streams` table, then kept in memory), checks ids
//! against the unique index `events_id` (idempotence), inserts, and answers only after the
//! group commit. Subscribers are then woken in memory. A subscriber that keeps up copies new
//! events from a short in-memory tail; one that is behind (or re-opened after a restart) reads
//! pages from the `events` table after its position. Acknowledgements are written through the
//! writer too, so a restart resumes after the last acknowledged event; the highest sequence
//! handed out is written at every acknowledgement and when the subscription closes, so that
//! what comes back after a restart is marked `redelivered`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use hookstream_events_core::bus::{
    Backpressure, Bus, BusError, Cursor, Delivered, PublishError, Published, RecvError,
    SubscribeOptions, Subscription, SubscriptionKind,
};
use hookstream_events_core::{Data, Draft, Event, EventType, Timestamp};
use rusqlite::{Connection, OptionalExtension as _};
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

use super::writer::{now_millis, Ctx, Done, Failure, Inner};
use super::EmbeddedError;

/// Newest events kept in memory per execution while a subscription is open.
const RECENT: usize = 4096;

/// Events a subscription takes per read (from memory or from the file).
const PAGE: u64 = 256;

/// The bus over an [`EmbeddedStore`](super::EmbeddedStore). Cloning gives another handle.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

impl fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedBus").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl EmbeddedBus {
    pub(super) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; if one ever did, the data is still whole.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The executions the bus holds in memory. Only the writer thread loads and evicts.
pub(super) struct Registry {
    execs: Mutex<HashMap<Uuid, Arc<Exec>>>,
}

impl Registry {
    pub(super) fn new() -> Self {
        Self { execs: Mutex::new(HashMap::new()) }
    }

    /// The execution's in-memory state, loaded from the file when not held (writer only).
    fn load(&self, conn: &Connection, id: Uuid) -> rusqlite::Result<Arc<Exec>> {
        if let Some(exec) = lock(&self.execs).get(&id) {
            return Ok(Arc::clone(exec));
        }
        let key = id.as_bytes().as_slice();
        let (last, ended) = conn
            .prepare_cached(
                "SELECT last_sequence, ended_at IS NOT NULL FROM streams WHERE execution_id = ?1",
            )?
            .query_row([key], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?)))
            .optional()?
            .unwrap_or((0, false));
        let mut durables = HashMap::new();
        let mut stmt = conn.prepare_cached(
            "SELECT name, acked, handed, capacity FROM subscriptions WHERE execution_id = ?1",
        )?;
        let mut rows = stmt.query([key])?;
        while let Some(row) = rows.next()? {
            let durable = Durable {
                acked: row.get::<_, i64>(1)? as u64,
                handed: row.get::<_, i64>(2)? as u64,
                open: false,
                capacity: row.get::<_, i64>(3)? as u64,
            };
            durables.insert(row.get::<_, String>(0)?, durable);
        }
        let state = State {
            last: last as u64,
            ended,
            recent: VecDeque::new(),
            durables,
            open_subs: 0,
            waiting: 0,
        };
        let exec = Arc::new(Exec {
            id,
            state: Mutex::new(state),
            published: Notify::new(),
            room: Notify::new(),
        });
        lock(&self.execs).insert(id, Arc::clone(&exec));
        Ok(exec)
    }

    /// Records in memory that the durable subscription `name` of `execution_id` is
    /// acknowledged up to `sequence` (written by the ledger), and wakes waiting publishers.
    pub(super) fn acknowledged(&self, execution_id: Uuid, name: &str, sequence: u64) {
        let Some(exec) = lock(&self.execs).get(&execution_id).cloned() else { return };
        let wake = {
            let mut st = lock(&exec.state);
            if let Some(d) = st.durables.get_mut(name) {
                d.acked = d.acked.max(sequence);
                d.handed = d.handed.max(sequence);
            }
            st.waiting > 0
        };
        if wake {
            exec.room.notify_waiters();
        }
    }

    /// Drops an ended execution nobody uses from memory (the file keeps it).
    fn evict_if_idle(&self, exec: &Arc<Exec>) {
        let mut execs = lock(&self.execs);
        let idle = {
            let st = lock(&exec.state);
            st.ended && st.open_subs == 0 && st.waiting == 0
        };
        if idle && execs.get(&exec.id).is_some_and(|held| Arc::ptr_eq(held, exec)) {
            execs.remove(&exec.id);
        }
    }
}

/// An execution's tail: its last sequence and whether it ended.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tail {
    last: u64,
    ended: bool,
}

/// One execution in memory.
struct Exec {
    id: Uuid,
    state: Mutex<State>,
    /// Woken after every commit that stored events of the execution.
    published: Notify,
    /// Woken after acknowledgements, for publishers waiting for room.
    room: Notify,
}

struct State {
    /// As committed.
    last: u64,
    ended: bool,
    /// The newest committed events, contiguous up to `last`, kept while subscriptions are open.
    recent: VecDeque<Arc<Event>>,
    durables: HashMap<String, Durable>,
    open_subs: usize,
    waiting: usize,
}

struct Durable {
    acked: u64,
    /// The highest sequence ever handed out (across opens and restarts).
    handed: u64,
    open: bool,
    capacity: u64,
}

impl State {
    fn full(&self, last: u64, new: u64) -> bool {
        self.durables.values().any(|d| {
            let pending = last - d.acked.min(last);
            pending > 0 && pending + new > d.capacity
        })
    }
}

impl Exec {
    fn tail(&self) -> Tail {
        let st = lock(&self.state);
        Tail { last: st.last, ended: st.ended }
    }

    /// Makes a committed publish visible and wakes subscribers.
    fn committed(&self, tail: Tail, events: impl FnOnce() -> Vec<Arc<Event>>) {
        {
            let mut st = lock(&self.state);
            if st.open_subs > 0 {
                let events = events();
                let contiguous = match (st.recent.back(), events.first()) {
                    (Some(back), Some(first)) => back.sequence + 1 == first.sequence,
                    _ => true,
                };
                if !contiguous {
                    st.recent.clear();
                }
                st.recent.extend(events);
                let excess = st.recent.len().saturating_sub(RECENT);
                st.recent.drain(..excess);
            }
            st.last = st.last.max(tail.last);
            st.ended |= tail.ended;
        }
        self.published.notify_waiters();
    }
}

/// Extra work done in the same step as a publish, inside its savepoint (the store's
/// `finish_execution`: the terminal event and the final state commit together).
pub(super) trait PublishHook: Send + Sync + 'static {
    /// Runs first; `false` refuses the publish as [`PublishError::Ended`].
    fn check(&self, conn: &Connection) -> Result<bool, EmbeddedError>;
    /// Runs after the events were inserted, before the commit.
    fn stored(&self, conn: &Connection, last_sequence: u64) -> Result<(), EmbeddedError>;
    /// Runs after the commit (in the writer thread), before the publisher is answered.
    fn committed(&self) {}
}

/// What a publish did in the writer.
enum Planned {
    Stored { exec: Arc<Exec>, seqs: Vec<Option<u64>>, tail: Tail, published: Published },
    Duplicates(Published),
    Ended,
    TerminalNotLast,
    Full { exec: Arc<Exec>, new: u64 },
}

/// The answer to a publish job.
enum Reply {
    Done(Published),
    /// Full under [`Backpressure::Wait`]: the publisher is counted as waiting.
    Wait {
        drafts: Vec<Draft>,
        data: Vec<String>,
        exec: Arc<Exec>,
        new: u64,
    },
    Refused(PublishError),
}

/// Plans and, when it can, stores a publish (writer thread, inside the job's savepoint).
fn plan_publish(
    ctx: &mut Ctx<'_>,
    execution_id: Uuid,
    drafts: &[Draft],
    data: &[String],
    policy: Backpressure,
    hook: Option<&dyn PublishHook>,
) -> Result<Planned, EmbeddedError> {
    if drafts.iter().rev().skip(1).any(|d| d.event_type.is_terminal()) {
        return Ok(Planned::TerminalNotLast);
    }
    if let Some(hook) = hook {
        if !hook.check(ctx.conn)? {
            return Ok(Planned::Ended);
        }
    }
    let exec = ctx.registry.load(ctx.conn, execution_id)?;
    let tail = ctx.overlay.get(&execution_id).copied().unwrap_or_else(|| exec.tail());
    let key = execution_id.as_bytes().as_slice();
    // Inserted optimistically: the unique index `events_id` tells duplicates (within the batch
    // too) in the same lookup. A refusal below returns a plan the job does not keep, and its
    // savepoint takes the rows back.
    let mut insert = ctx.conn.prepare_cached(
        "INSERT INTO events (execution_id, sequence, id, type, timestamp, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (execution_id, id) DO NOTHING",
    )?;
    let mut seqs = vec![None; drafts.len()];
    let mut new = 0u64;
    let mut terminal = false;
    for ((draft, data), seq) in drafts.iter().zip(data).zip(seqs.iter_mut()) {
        let next = tail.last + new + 1;
        let inserted = insert.execute(rusqlite::params![
            key,
            next as i64,
            draft.id.as_bytes().as_slice(),
            draft.event_type.as_str(),
            draft.timestamp.unix_millis(),
            data,
        ])?;
        if inserted > 0 {
            new += 1;
            *seq = Some(next);
            terminal |= draft.event_type.is_terminal();
        }
    }
    let duplicates = drafts.len() as u64 - new;
    if new == 0 {
        return Ok(Planned::Duplicates(Published::new(0, duplicates, tail.last)));
    }
    if tail.ended {
        return Ok(Planned::Ended);
    }
    {
        let mut st = lock(&exec.state);
        if st.full(tail.last, new) {
            if policy == Backpressure::Wait {
                st.waiting += 1;
            }
            drop(st);
            return Ok(Planned::Full { exec, new });
        }
    }
    let last = tail.last + new;
    let ended_at = terminal.then(now_millis);
    ctx.conn
        .prepare_cached(
            "INSERT INTO streams (execution_id, last_sequence, ended_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (execution_id) DO UPDATE SET last_sequence = excluded.last_sequence,
                 ended_at = coalesce(streams.ended_at, excluded.ended_at)",
        )?
        .execute(rusqlite::params![key, last as i64, ended_at])?;
    if let Some(hook) = hook {
        hook.stored(ctx.conn, last)?;
    }
    let tail = Tail { last, ended: terminal };
    ctx.overlay.insert(execution_id, tail);
    Ok(Planned::Stored { exec, seqs, tail, published: Published::new(new, duplicates, last) })
}

impl EmbeddedBus {
    /// Publishes with `hook` run in the same step (see [`PublishHook`]).
    pub(super) async fn publish_hooked(
        &self,
        execution_id: Uuid,
        drafts: Vec<Draft>,
        policy: Backpressure,
        hook: Option<Arc<dyn PublishHook>>,
    ) -> Result<Published, PublishError> {
        // Serialized here, on the caller's task, to keep the writer thread lean.
        let data: Result<Vec<String>, _> =
            drafts.iter().map(|d| serde_json::to_string(&d.data)).collect();
        let mut data = match data {
            Ok(data) => data,
            Err(e) => return Err(PublishError::Backend { drafts, source: e.into() }),
        };
        let mut drafts = drafts;
        loop {
            let (tx, rx) = oneshot::channel();
            let registry = Arc::clone(&self.inner.registry);
            let hook = hook.clone();
            self.inner.submit(Box::new(move |ctx: Option<&mut Ctx<'_>>| {
                let planned = match ctx {
                    Some(ctx) => {
                        plan_publish(ctx, execution_id, &drafts, &data, policy, hook.as_deref())
                    }
                    None => Err(EmbeddedError::Closed),
                };
                let keep = matches!(planned, Ok(Planned::Stored { .. }));
                let after = move |commit: Result<(), &Failure>| {
                    let reply = match (commit, planned) {
                        (Err(failure), planned) => {
                            if let (Ok(Planned::Full { exec, .. }), Backpressure::Wait) =
                                (&planned, policy)
                            {
                                let mut st = lock(&exec.state);
                                st.waiting = st.waiting.saturating_sub(1);
                            }
                            Reply::Refused(PublishError::Backend {
                                drafts,
                                source: failure.to_error().into(),
                            })
                        }
                        (Ok(()), Err(e)) => {
                            Reply::Refused(PublishError::Backend { drafts, source: e.into() })
                        }
                        (Ok(()), Ok(Planned::Stored { exec, seqs, tail, published })) => {
                            if let Some(hook) = &hook {
                                hook.committed();
                            }
                            exec.committed(tail, || {
                                drafts
                                    .into_iter()
                                    .zip(seqs)
                                    .filter_map(|(d, s)| {
                                        s.map(|s| Arc::new(d.into_event(execution_id, s)))
                                    })
                                    .collect()
                            });
                            if tail.ended {
                                registry.evict_if_idle(&exec);
                            }
                            Reply::Done(published)
                        }
                        (Ok(()), Ok(Planned::Duplicates(published))) => Reply::Done(published),
                        (Ok(()), Ok(Planned::Ended)) => {
                            Reply::Refused(PublishError::Ended { execution_id, drafts })
                        }
                        (Ok(()), Ok(Planned::TerminalNotLast)) => {
                            Reply::Refused(PublishError::TerminalNotLast { execution_id, drafts })
                        }
                        (Ok(()), Ok(Planned::Full { exec, new })) => match policy {
                            Backpressure::Wait => Reply::Wait { drafts, data, exec, new },
                            _ => Reply::Refused(PublishError::Full { execution_id, drafts }),
                        },
                    };
                    let _ = tx.send(reply);
                };
                Done { keep, after: Box::new(after) }
            }));
            let Ok(reply) = rx.await else {
                // The writer dropped the job unanswered: it only does so when it is gone, and
                // the drafts went with it.
                return Err(PublishError::Backend {
                    drafts: Vec::new(),
                    source: EmbeddedError::Closed.into(),
                });
            };
            match reply {
                Reply::Done(published) => return Ok(published),
                Reply::Refused(e) => return Err(e),
                Reply::Wait { drafts: back, data: back_data, exec, new } => {
                    let room = exec.room.notified();
                    tokio::pin!(room);
                    room.as_mut().enable();
                    let full = {
                        let st = lock(&exec.state);
                        st.full(st.last, new)
                    };
                    if full {
                        room.await;
                    }
                    lock(&exec.state).waiting -= 1;
                    drafts = back;
                    data = back_data;
                }
            }
        }
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn publish(
        &self,
        execution_id: Uuid,
        drafts: Vec<Draft>,
        policy: Backpressure,
    ) -> Result<Published, PublishError> {
        self.publish_hooked(execution_id, drafts, policy, None).await
    }

    async fn subscribe(
        &self,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let capacity = options.capacity.get() as u64;
        let execution_id = options.execution_id;
        let kind = options.kind;
        let opened = self
            .inner
            .call(move |ctx| open_subscription(ctx, execution_id, kind, capacity))
            .await
            .map_err(|e| BusError::Backend(e.into()))?;
        let (exec, start) = opened?;
        Ok(Box::new(EmbeddedSubscription {
            inner: Arc::clone(&self.inner),
            exec,
            cursor: start.cursor,
            durable: start.durable,
        }))
    }

    async fn read(
        &self,
        execution_id: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Event>>, BusError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        read_events(&self.inner, execution_id, after, None, limit)
            .await
            .map_err(|e| BusError::Backend(e.into()))
    }
}

/// Where a new subscription starts.
struct Start {
    cursor: Cursor,
    durable: Option<DurableSide>,
}

/// Opens a subscription (writer thread): registers a durable one in the file.
#[allow(clippy::type_complexity)]
fn open_subscription(
    ctx: &mut Ctx<'_>,
    execution_id: Uuid,
    kind: SubscriptionKind,
    capacity: u64,
) -> Result<Result<(Arc<Exec>, Start), BusError>, EmbeddedError> {
    let exec = ctx.registry.load(ctx.conn, execution_id)?;
    let start = match kind {
        SubscriptionKind::Durable { name } => {
            if lock(&exec.state).durables.get(&name).is_some_and(|d| d.open) {
                return Ok(Err(BusError::AlreadyOpen { name }));
            }
            ctx.conn
                .prepare_cached(
                    "INSERT INTO subscriptions (execution_id, name, capacity) VALUES (?1, ?2, ?3)
                     ON CONFLICT (execution_id, name) DO UPDATE SET capacity = excluded.capacity",
                )?
                .execute(rusqlite::params![
                    execution_id.as_bytes().as_slice(),
                    name,
                    capacity as i64
                ])?;
            let mut st = lock(&exec.state);
            st.open_subs += 1;
            let durable = st.durables.entry(name.clone()).or_insert(Durable {
                acked: 0,
                handed: 0,
                open: false,
                capacity,
            });
            durable.open = true;
            durable.capacity = capacity;
            Start {
                cursor: Cursor::durable(durable.acked, durable.handed, capacity),
                durable: Some(DurableSide { name }),
            }
        }
        SubscriptionKind::Live { after } => {
            let last = ctx.overlay.get(&execution_id).copied().unwrap_or_else(|| exec.tail()).last;
            lock(&exec.state).open_subs += 1;
            Start { cursor: Cursor::live(after.unwrap_or(last), capacity), durable: None }
        }
        // A kind added to events-core later: refused plainly until this backend knows it.
        _ => return Ok(Err(BusError::Backend("an unsupported subscription kind".into()))),
    };
    Ok(Ok((exec, start)))
}

/// Events of `execution_id` with `after < sequence <= upto`, at most `limit`, from the file.
async fn read_events(
    inner: &Inner,
    execution_id: Uuid,
    after: u64,
    upto: Option<u64>,
    limit: usize,
) -> Result<Vec<Arc<Event>>, EmbeddedError> {
    let upto = upto.map_or(i64::MAX, |u| i64::try_from(u).unwrap_or(i64::MAX));
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    inner
        .read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT sequence, id, type, timestamp, data FROM events
                 WHERE execution_id = ?1 AND sequence > ?2 AND sequence <= ?3
                 ORDER BY sequence LIMIT ?4",
            )?;
            let mut rows = stmt.query(rusqlite::params![
                execution_id.as_bytes().as_slice(),
                after,
                upto,
                limit
            ])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(Arc::new(event_from_row(execution_id, row)?));
            }
            Ok(out)
        })
        .await
}

fn event_from_row(execution_id: Uuid, row: &rusqlite::Row<'_>) -> Result<Event, EmbeddedError> {
    let sequence: i64 = row.get(0)?;
    let id: Vec<u8> = row.get(1)?;
    let id = Uuid::from_slice(&id).map_err(|_| EmbeddedError::invalid("an event id"))?;
    let event_type: String = row.get(2)?;
    let event_type =
        EventType::new(event_type).map_err(|_| EmbeddedError::invalid("an event type"))?;
    let timestamp = Timestamp::from_unix_millis(row.get(3)?)
        .ok_or_else(|| EmbeddedError::invalid("an event timestamp"))?;
    let data: String = row.get(4)?;
    let data: Data =
        serde_json::from_str(&data).map_err(|_| EmbeddedError::invalid("an event's data"))?;
    let draft = Draft { id, timestamp, event_type, data };
    Ok(draft.into_event(execution_id, sequence as u64))
}

struct DurableSide {
    name: String,
}

/// A subscription of [`EmbeddedBus`].
struct EmbeddedSubscription {
    inner: Arc<Inner>,
    exec: Arc<Exec>,
    cursor: Cursor,
    durable: Option<DurableSide>,
}

/// What `next` does after looking at the execution's state.
enum Step {
    Took,
    FromFile { upto: u64 },
    Wait,
    End,
    Lagged(u64),
}

impl EmbeddedSubscription {
    fn step(&mut self) -> Step {
        let st = lock(&self.exec.state);
        let last = st.last;
        if let Some(skipped) = self.cursor.lag(last) {
            return Step::Lagged(skipped);
        }
        let taken = self.cursor.taken();
        if taken >= last {
            return if st.ended { Step::End } else { Step::Wait };
        }
        let upto = last.min(taken + PAGE);
        let first_recent = st.recent.front().map(|e| e.sequence);
        match first_recent {
            Some(first) if first <= taken + 1 => {
                let skip = (taken + 1 - first) as usize;
                let take = (upto - taken) as usize;
                self.cursor.extend(st.recent.iter().skip(skip).take(take).cloned());
                Step::Took
            }
            _ => Step::FromFile { upto },
        }
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next(&mut self) -> Option<Result<Delivered, RecvError>> {
        loop {
            if let Some(delivered) = self.cursor.pop() {
                return Some(Ok(delivered));
            }
            if let Some(at) = self.cursor.take_delay() {
                tokio::time::sleep_until(at).await;
            }
            let exec = Arc::clone(&self.exec);
            let published = exec.published.notified();
            tokio::pin!(published);
            published.as_mut().enable();
            match self.step() {
                Step::Took => {}
                Step::End => return None,
                Step::Lagged(skipped) => return Some(Err(RecvError::Lagged { skipped })),
                Step::Wait => published.await,
                Step::FromFile { upto } => {
                    let taken = self.cursor.taken();
                    let read = read_events(
                        &self.inner,
                        self.exec.id,
                        taken,
                        Some(upto),
                        (upto - taken) as usize,
                    )
                    .await;
                    match read {
                        Err(e) => return Some(Err(RecvError::Backend(e.into()))),
                        // Pruned (retention): nothing left to hand out below `upto`.
                        Ok(events) if events.is_empty() => self.cursor.skip_to(upto),
                        Ok(events) => self.cursor.extend(events),
                    }
                }
            }
        }
    }

    async fn ack(&mut self, sequence: u64) -> Result<(), BusError> {
        if !self.cursor.check_ack(sequence)? {
            return Ok(());
        }
        let Some(durable) = self.durable.as_ref() else { return Err(BusError::NotDurable) };
        // The ledger acknowledges a delivered batch in its own commit (see `ledger.rs`); the
        // acknowledgement that follows it from delivery has nothing left to write.
        let stored = lock(&self.exec.state).durables.get(&durable.name).map_or(0, |d| d.acked);
        if sequence <= stored {
            self.cursor.record_ack(sequence);
            return Ok(());
        }
        let name = durable.name.clone();
        let exec = Arc::clone(&self.exec);
        let handed = self.cursor.handed();
        let woken = Arc::clone(&self.exec);
        self.inner
            .call_then(
                move |ctx| {
                    ctx.conn
                        .prepare_cached(
                            "UPDATE subscriptions SET acked = max(acked, ?3), handed = max(handed, ?4)
                             WHERE execution_id = ?1 AND name = ?2",
                        )?
                        .execute(rusqlite::params![
                            exec.id.as_bytes().as_slice(),
                            name,
                            sequence as i64,
                            handed as i64
                        ])?;
                    let mut st = lock(&exec.state);
                    if let Some(d) = st.durables.get_mut(&name) {
                        d.acked = d.acked.max(sequence);
                        d.handed = d.handed.max(handed);
                    }
                    Ok(st.waiting > 0)
                },
                move |wake| {
                    if *wake {
                        woken.room.notify_waiters();
                    }
                },
            )
            .await
            .map_err(|e| BusError::Backend(e.into()))?;
        self.cursor.record_ack(sequence);
        Ok(())
    }

    async fn nack(&mut self, sequence: u64, delay: Duration) -> Result<(), BusError> {
        self.cursor.nack(sequence, delay)
    }
}

impl Drop for EmbeddedSubscription {
    fn drop(&mut self) {
        let exec = Arc::clone(&self.exec);
        let durable = self.durable.take().map(|d| (d.name, self.cursor.handed()));
        self.inner.submit(Box::new(move |ctx: Option<&mut Ctx<'_>>| {
            let mut stored = Ok(());
            if let (Some(ctx), Some((name, handed))) = (ctx.as_ref(), durable.as_ref()) {
                stored = ctx
                    .conn
                    .prepare_cached(
                        "UPDATE subscriptions SET handed = max(handed, ?3)
                         WHERE execution_id = ?1 AND name = ?2",
                    )
                    .and_then(|mut s| {
                        s.execute(rusqlite::params![
                            exec.id.as_bytes().as_slice(),
                            name,
                            *handed as i64
                        ])
                    })
                    .map(|_| ());
            }
            {
                let mut st = lock(&exec.state);
                st.open_subs = st.open_subs.saturating_sub(1);
                if st.open_subs == 0 {
                    st.recent.clear();
                }
                if let Some((name, handed)) = &durable {
                    if let Some(d) = st.durables.get_mut(name) {
                        d.open = false;
                        d.handed = d.handed.max(*handed);
                    }
                }
            }
            if let Some(ctx) = ctx {
                ctx.registry.evict_if_idle(&exec);
            }
            if let Err(e) = &stored {
                tracing::warn!(error = %e, "embedded store: could not record a closed subscription");
            }
            Done { keep: stored.is_ok(), after: Box::new(|_| {}) }
        }));
    }
}

#[cfg(test)]
mod conformance {
    //! The events-core conformance suite on the embedded bus, fresh and across restarts.

    use std::sync::Arc;

    use async_trait::async_trait;
    use hookstream_events_core::bus::{
        Backpressure, Bus, BusError, PublishError, Published, SubscribeOptions, Subscription,
    };
    use hookstream_events_core::{Draft, Event};
    use uuid::Uuid;

    use super::super::{EmbeddedConfig, EmbeddedStore};
    use super::EmbeddedBus;

    /// The bus with the temporary data dir it lives in (removed after the bus).
    pub(super) struct TempBus {
        bus: EmbeddedBus,
        _dir: Arc<tempfile::TempDir>,
    }

    pub(super) fn open(dir: Arc<tempfile::TempDir>) -> TempBus {
        let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).expect("open the store");
        TempBus { bus: store.embedded_bus(), _dir: dir }
    }

    pub(super) fn temp_dir() -> Arc<tempfile::TempDir> {
        Arc::new(tempfile::tempdir().expect("a temp dir"))
    }

    #[async_trait]
    impl Bus for TempBus {
        async fn publish(
            &self,
            execution_id: Uuid,
            drafts: Vec<Draft>,
            policy: Backpressure,
        ) -> Result<Published, PublishError> {
            self.bus.publish(execution_id, drafts, policy).await
        }

        async fn subscribe(
            &self,
            options: SubscribeOptions,
        ) -> Result<Box<dyn Subscription>, BusError> {
            self.bus.subscribe(options).await
        }

        async fn read(
            &self,
            execution_id: Uuid,
            after: u64,
            limit: usize,
        ) -> Result<Vec<Arc<Event>>, BusError> {
            self.bus.read(execution_id, after, limit).await
        }
    }

    hookstream_events_core::bus_conformance!(|| async { open(temp_dir()) });

    mod restart {
        use super::{open, temp_dir};

        hookstream_events_core::bus_conformance!(
            restart: || async { temp_dir() },
            |dir: std::sync::Arc<tempfile::TempDir>| async move { open(dir) }
        );
    }
}
