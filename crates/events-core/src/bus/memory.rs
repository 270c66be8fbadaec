//! [`MemoryBus`]: the in-memory [`Bus`], always available (tests, benchmarks, `--store memory`).
//!
//! This module owns the in-process log of each execution and the state of its durable
//! subscriptions. It does not persist anything: a process restart loses every event.
//!
//! # Layout
//!
//! Executions live in a fixed number of shards (a hash map each behind its own mutex), so
//! publishers and subscribers of different executions rarely meet on a lock. Each execution
//! has its own mutex around its log (`Vec<Arc<Event>>`, where index `i` holds sequence `i + 1`),
//! the set of its event ids (idempotent publish) and its durable subscriptions' positions.
//! Subscribers are woken through a [`Notify`] per execution and copy events out of the log in
//! small runs, so a receive costs one reference-count increment per event and one lock per run.
//!
//! # Retention
//!
//! Every event is kept, for replay ([`Bus::read`]) and for re-opened durable subscriptions,
//! until [`MemoryBus::forget`] drops the execution; nothing is forgotten implicitly. A
//! long-running owner of a `MemoryBus` calls it once an execution has ended and its deliveries
//! are done, or memory grows with every run.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    Backpressure, Bus, BusError, Cursor, Delivered, PublishError, Published, RecvError,
    SubscribeOptions, Subscription, SubscriptionKind,
};
use crate::event::{Draft, Event};

/// One shard of the execution map.
type Shard = Mutex<HashMap<Uuid, Arc<Execution>>>;

/// Number of shards of the execution map (a power of two).
const SHARDS: usize = 64;

/// Events a subscriber copies out of the log per lock.
const RUN: usize = 64;

/// The in-memory bus. Cloning it gives another handle on the same executions.
///
/// ```
/// use hookstream_events_core::bus::{Backpressure, Bus, MemoryBus, SubscribeOptions, Subscription};
/// use hookstream_events_core::{Draft, EventType};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = MemoryBus::new();
/// let execution = uuid::Uuid::new_v4();
/// let mut sub = bus.subscribe(SubscribeOptions::durable(execution, "webhook-0")).await?;
/// let draft = Draft::new(EventType::new("task_started")?, Default::default());
/// let published = bus.publish(execution, vec![draft], Backpressure::Wait).await?;
/// assert_eq!(published.last_sequence, 1);
/// let got = sub.next().await.expect("open")?;
/// assert_eq!(got.event.sequence, 1);
/// sub.ack(1).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryBus {
    shards: Arc<[Shard]>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let executions: usize = self.shards.iter().map(|s| lock(s).len()).sum();
        f.debug_struct("MemoryBus").field("executions", &executions).finish()
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    /// Drops everything the bus holds for `execution_id` (events, durable positions); returns
    /// whether it held anything. Open subscriptions keep what they hold and see no new events;
    /// a later publish or subscribe starts the execution afresh.
    pub fn forget(&self, execution_id: Uuid) -> bool {
        lock(self.shard(execution_id)).remove(&execution_id).is_some()
    }

    fn shard(&self, execution_id: Uuid) -> &Shard {
        // UUIDs (v4 random, v7 random tail) are well spread in their low bits.
        &self.shards[(execution_id.as_u128() as usize) & (SHARDS - 1)]
    }

    fn execution(&self, execution_id: Uuid) -> Arc<Execution> {
        let mut shard = lock(self.shard(execution_id));
        Arc::clone(shard.entry(execution_id).or_insert_with(|| Arc::new(Execution::new())))
    }

    fn existing(&self, execution_id: Uuid) -> Option<Arc<Execution>> {
        lock(self.shard(execution_id)).get(&execution_id).cloned()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; if one ever did, the data is still whole.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Execution {
    state: Mutex<State>,
    /// Woken on every publish that stored something.
    published: Notify,
    /// Woken on acknowledgements while a publisher waits for room.
    room: Notify,
    /// Publishers waiting for room. With the acknowledged positions being atomics, an
    /// acknowledgement takes no lock: it stores its position, then wakes `room` when this is
    /// non-zero; a publisher counts itself here, then checks the positions again (both
    /// sequentially consistent, so one of the two sees the other).
    waiting: AtomicUsize,
}

impl Execution {
    fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            published: Notify::new(),
            room: Notify::new(),
            waiting: AtomicUsize::new(0),
        }
    }
}

#[derive(Default)]
struct State {
    /// `log[i].sequence == i + 1`.
    log: Vec<Arc<Event>>,
    ids: HashSet<Uuid>,
    ended: bool,
    durables: HashMap<String, Durable>,
}

struct Durable {
    /// The acknowledged position, shared with the open subscription.
    acked: Arc<AtomicU64>,
    /// Highest sequence ever handed out (across opens): what is redelivered.
    handed: u64,
    open: bool,
    capacity: u64,
}

/// What a publish would do, decided before anything changes.
enum Plan {
    Store { new: u64, duplicates: u64, terminal: bool },
    Duplicates(u64),
    Full,
    Ended,
    TerminalNotLast,
}

impl State {
    fn last(&self) -> u64 {
        self.log.len() as u64
    }

    fn plan(&self, drafts: &[Draft]) -> Plan {
        let mut new = 0u64;
        let mut terminal = false;
        // In-batch duplicates: a linear scan for the usual small batches, a set beyond.
        let mut seen = (drafts.len() > 16).then(|| HashSet::with_capacity(drafts.len()));
        for (i, draft) in drafts.iter().enumerate() {
            if draft.event_type.is_terminal() && i + 1 != drafts.len() {
                return Plan::TerminalNotLast;
            }
            let earlier = match seen.as_mut() {
                Some(set) => !set.insert(draft.id),
                None => drafts[..i].iter().any(|d| d.id == draft.id),
            };
            if !earlier && !self.ids.contains(&draft.id) {
                new += 1;
                terminal |= draft.event_type.is_terminal();
            }
        }
        let duplicates = drafts.len() as u64 - new;
        if new == 0 {
            return Plan::Duplicates(duplicates);
        }
        if self.ended {
            return Plan::Ended;
        }
        let last = self.last();
        let full = self.durables.values().any(|d| {
            let pending = last - d.acked.load(SeqCst).min(last);
            pending > 0 && pending + new > d.capacity
        });
        if full {
            return Plan::Full;
        }
        Plan::Store { new, duplicates, terminal }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(
        &self,
        execution_id: Uuid,
        drafts: Vec<Draft>,
        policy: Backpressure,
    ) -> Result<Published, PublishError> {
        let exec = self.execution(execution_id);
        loop {
            // Registered only when full: see `Execution::waiting`.
            let room = exec.room.notified();
            tokio::pin!(room);
            {
                let mut st = lock(&exec.state);
                let mut plan = st.plan(&drafts);
                if matches!(plan, Plan::Full) && policy == Backpressure::Wait {
                    exec.waiting.fetch_add(1, SeqCst);
                    room.as_mut().enable();
                    plan = st.plan(&drafts);
                    if !matches!(plan, Plan::Full) {
                        exec.waiting.fetch_sub(1, SeqCst);
                    }
                }
                match plan {
                    Plan::Duplicates(duplicates) => {
                        return Ok(Published::new(0, duplicates, st.last()));
                    }
                    Plan::Ended => return Err(PublishError::Ended { execution_id, drafts }),
                    Plan::TerminalNotLast => {
                        return Err(PublishError::TerminalNotLast { execution_id, drafts })
                    }
                    Plan::Full if policy == Backpressure::Fail => {
                        return Err(PublishError::Full { execution_id, drafts });
                    }
                    Plan::Full => {}
                    Plan::Store { new, duplicates, terminal } => {
                        st.log.reserve(new as usize);
                        st.ids.reserve(new as usize);
                        for draft in drafts {
                            if st.ids.insert(draft.id) {
                                let sequence = st.last() + 1;
                                st.log.push(Arc::new(draft.into_event(execution_id, sequence)));
                            }
                        }
                        st.ended |= terminal;
                        let last = st.last();
                        drop(st);
                        exec.published.notify_waiters();
                        return Ok(Published::new(new, duplicates, last));
                    }
                }
            }
            room.await;
            exec.waiting.fetch_sub(1, SeqCst);
        }
    }

    async fn subscribe(
        &self,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let exec = self.execution(options.execution_id);
        let capacity = options.capacity.get() as u64;
        let sub = {
            let mut st = lock(&exec.state);
            match options.kind {
                SubscriptionKind::Durable { name } => {
                    let durable = st.durables.entry(name.clone()).or_insert(Durable {
                        acked: Arc::new(AtomicU64::new(0)),
                        handed: 0,
                        open: false,
                        capacity,
                    });
                    if durable.open {
                        return Err(BusError::AlreadyOpen { name });
                    }
                    durable.open = true;
                    durable.capacity = capacity;
                    let acked = durable.acked.load(SeqCst);
                    MemorySubscription {
                        cursor: Cursor::durable(acked, durable.handed, capacity),
                        durable: Some(DurableSide { name, shared: Arc::clone(&durable.acked) }),
                        exec: Arc::clone(&exec),
                    }
                }
                SubscriptionKind::Live { after } => {
                    let start = after.unwrap_or(st.last());
                    MemorySubscription {
                        cursor: Cursor::live(start, capacity),
                        durable: None,
                        exec: Arc::clone(&exec),
                    }
                }
            }
        };
        Ok(Box::new(sub))
    }

    async fn read(
        &self,
        execution_id: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Event>>, BusError> {
        let Some(exec) = self.existing(execution_id) else { return Ok(Vec::new()) };
        let st = lock(&exec.state);
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(st.log.len());
        let end = start.saturating_add(limit).min(st.log.len());
        Ok(st.log[start..end].to_vec())
    }
}

struct DurableSide {
    name: String,
    shared: Arc<AtomicU64>,
}

/// A subscription of [`MemoryBus`].
struct MemorySubscription {
    exec: Arc<Execution>,
    cursor: Cursor,
    durable: Option<DurableSide>,
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Option<Result<Delivered, RecvError>> {
        loop {
            if let Some(delivered) = self.cursor.pop() {
                return Some(Ok(delivered));
            }
            if let Some(at) = self.cursor.take_delay() {
                tokio::time::sleep_until(at).await;
            }
            // Registered only when there is nothing to take, under the execution's lock: a
            // publish after the check wakes it.
            let published = self.exec.published.notified();
            tokio::pin!(published);
            {
                let st = lock(&self.exec.state);
                let last = st.last();
                if let Some(skipped) = self.cursor.lag(last) {
                    return Some(Err(RecvError::Lagged { skipped }));
                }
                if self.cursor.taken() < last {
                    let start = self.cursor.taken() as usize;
                    let end = (start + RUN).min(st.log.len());
                    self.cursor.extend(st.log[start..end].iter().cloned());
                    continue;
                }
                if st.ended {
                    return None;
                }
                published.as_mut().enable();
            }
            published.await;
        }
    }

    async fn ack(&mut self, sequence: u64) -> Result<(), BusError> {
        if !self.cursor.check_ack(sequence)? {
            return Ok(());
        }
        self.cursor.record_ack(sequence);
        if let Some(durable) = &self.durable {
            durable.shared.fetch_max(sequence, SeqCst);
        }
        if self.exec.waiting.load(SeqCst) > 0 {
            self.exec.room.notify_waiters();
        }
        Ok(())
    }

    async fn nack(&mut self, sequence: u64, delay: Duration) -> Result<(), BusError> {
        self.cursor.nack(sequence, delay)
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        if let Some(durable) = &self.durable {
            let mut st = lock(&self.exec.state);
            if let Some(shared) = st.durables.get_mut(&durable.name) {
                shared.open = false;
                shared.handed = shared.handed.max(self.cursor.handed());
            }
        }
    }
}
