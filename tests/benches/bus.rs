//! `cargo xtask bench bus`: the in-memory bus, publish → receive → ack, against a bare
//! `tokio::sync::mpsc` channel moving the same `Arc<Event>`s in the same run.
//!
//! Scenarios: 1 and 8 durable subscribers per execution, 1 and 1,000 concurrent executions.
//! One publisher task per execution publishes one event per call (`Backpressure::Wait`); each
//! subscriber task receives and acknowledges every event. The baseline has one bounded mpsc
//! channel per subscriber (same capacity as the subscription), the producer turning the same
//! drafts into `Arc<Event>`s and sending a clone to each. Drafts are made before the clock
//! starts. Prints only its markdown section to stdout; progress goes to stderr.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookstream_events_core::bus::{Backpressure, Bus, SubscribeOptions};
use hookstream_events_core::{Data, Draft, Event, EventType, MemoryBus};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use uuid::Uuid;

/// Events published per scenario, spread over its executions.
const EVENTS: usize = 200_000;
/// Measured runs per figure (after a warm-up); the median is reported.
const RUNS: usize = 3;
/// Subscription and channel capacity.
const CAPACITY: usize = 1024;

struct Scenario {
    executions: usize,
    subscribers: usize,
}

fn drafts(executions: usize, per: usize) -> Vec<(Uuid, Vec<Draft>)> {
    let event_type = EventType::new("llm_stream_chunk").expect("valid type");
    (0..executions)
        .map(|_| {
            let drafts = (0..per)
                .map(|i| {
                    let mut data = Data::new();
                    data.insert("chunk".into(), "token".into());
                    data.insert("n".into(), i.into());
                    Draft::new(event_type.clone(), data)
                })
                .collect();
            (Uuid::new_v4(), drafts)
        })
        .collect()
}

async fn bus_run(s: &Scenario) -> Duration {
    let per = EVENTS / s.executions;
    let work = drafts(s.executions, per);
    let bus = MemoryBus::new();
    let capacity = std::num::NonZeroUsize::new(CAPACITY).expect("non-zero");
    let mut subs = Vec::new();
    for (id, _) in &work {
        for n in 0..s.subscribers {
            let options = SubscribeOptions::durable(*id, format!("s{n}")).with_capacity(capacity);
            subs.push(bus.subscribe(options).await.expect("subscribe"));
        }
    }
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for mut sub in subs {
        tasks.spawn(async move {
            for _ in 0..per {
                let got = sub.next().await.expect("open").expect("no error");
                sub.ack(got.event.sequence).await.expect("ack");
            }
        });
    }
    for (id, drafts) in work {
        let bus = bus.clone();
        tasks.spawn(async move {
            for draft in drafts {
                bus.publish(id, vec![draft], Backpressure::Wait).await.expect("publish");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    start.elapsed()
}

async fn mpsc_run(s: &Scenario) -> Duration {
    let per = EVENTS / s.executions;
    let work = drafts(s.executions, per);
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in &work {
        let mut txs = Vec::new();
        for _ in 0..s.subscribers {
            let (tx, rx) = mpsc::channel::<Arc<Event>>(CAPACITY);
            txs.push(tx);
            receivers.push(rx);
        }
        senders.push(txs);
    }
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for mut rx in receivers {
        tasks.spawn(async move {
            for _ in 0..per {
                let event = rx.recv().await.expect("open");
                std::hint::black_box(event.sequence);
            }
        });
    }
    for ((id, drafts), txs) in work.into_iter().zip(senders) {
        tasks.spawn(async move {
            for (i, draft) in drafts.into_iter().enumerate() {
                let event = Arc::new(draft.into_event(id, i as u64 + 1));
                for tx in &txs {
                    tx.send(Arc::clone(&event)).await.expect("open");
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    start.elapsed()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let scenarios = [
        Scenario { executions: 1, subscribers: 1 },
        Scenario { executions: 1, subscribers: 8 },
        Scenario { executions: 1000, subscribers: 1 },
        Scenario { executions: 1000, subscribers: 8 },
    ];
    let mut rows = Vec::new();
    let total = Instant::now();
    for s in &scenarios {
        eprintln!("bus: {} execution(s) x {} subscriber(s)", s.executions, s.subscribers);
        let (bus, base) = runtime.block_on(async {
            let bus = common::median_of(RUNS, || bus_run(s)).await;
            let base = common::median_of(RUNS, || mpsc_run(s)).await;
            (bus, base)
        });
        let events = (EVENTS / s.executions) * s.executions;
        rows.push(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2}× |",
            common::thousands(s.executions as u64),
            s.subscribers,
            common::per_second(events, bus),
            common::ns_per(events, bus),
            common::per_second(events, base),
            common::ns_per(events, base),
            common::ns_per(events * s.subscribers, bus),
            bus.as_secs_f64() / base.as_secs_f64(),
        ));
    }
    eprintln!("bus: done in {:.1} s", total.elapsed().as_secs_f64());
    println!("## Bus (in-memory)\n");
    println!(
        "`MemoryBus` publish → receive → ack against a bare bounded `tokio::sync::mpsc` channel \
         per subscriber moving the same `Arc<Event>`s, in the same run (tokio multi-thread \
         runtime, 2 workers). {} small events (`llm_stream_chunk`, 2 data fields) per scenario, \
         spread over the executions; one publisher task per execution publishing one event per \
         call; every durable subscriber (capacity {CAPACITY}) acknowledges every event. Median \
         of {RUNS} runs after a warm-up. *events/s* counts published events; *ns/delivery* \
         divides the bus's time by events × subscribers; *ratio* is bus time / mpsc time (target: \
         at most 3×).\n",
        common::thousands(EVENTS as u64)
    );
    println!(
        "| executions | subscribers | bus events/s | bus ns/event | mpsc events/s | mpsc ns/event \
         | bus ns/delivery | ratio |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
}
