//! Helpers shared by the benchmark binaries of `tests/benches`: repeated timing, the median,
//! and number formatting for the markdown tables they print.
//!
//! Each benchmark prints only its markdown section to stdout and its progress to stderr; it
//! owns its scenarios, this module owns none.

#![allow(dead_code)] // Each bench binary uses a part of it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use tokio::sync::Notify;
use uuid::Uuid;

/// Runs `measure` `runs` times (after one unmeasured warm-up) and returns the median.
pub(crate) async fn median_of<F, Fut>(runs: usize, mut measure: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Duration>,
{
    measure().await;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        times.push(measure().await);
    }
    times.sort();
    times[times.len() / 2]
}

/// `count` per second over `elapsed`, with thousands separators (`1,234,567`).
pub(crate) fn per_second(count: usize, elapsed: Duration) -> String {
    thousands((count as f64 / elapsed.as_secs_f64()) as u64)
}

/// Nanoseconds per item.
pub(crate) fn ns_per(count: usize, elapsed: Duration) -> String {
    format!("{:.0}", elapsed.as_nanos() as f64 / count as f64)
}

/// `n` with `,` between groups of three digits.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut groups: Vec<&str> = Vec::new();
    let mut end = digits.len();
    while end > 3 {
        groups.push(&digits[end - 3..end]);
        end -= 3;
    }
    groups.push(&digits[..end]);
    groups.reverse();
    groups.join(",")
}

/// The event mix a benchmark ingests: small synthetic events or the real crewAI run.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Payload {
    /// `llm_stream_chunk` events with two small data fields.
    Small,
    /// The 87 events of the crewAI fixture (about 2.8 KB each on average), cycled.
    CrewAi,
}

impl Payload {
    /// The name printed in the tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Small => "small synthetic",
            Self::CrewAi => "crewAI run mix",
        }
    }

    /// `n` events as ingest JSON objects (no ids: every copy is a new event; never the
    /// terminal event, which only the server emits).
    pub(crate) fn events(self, n: usize) -> Vec<serde_json::Value> {
        match self {
            Self::Small => (0..n)
                .map(|i| {
                    serde_json::json!({"type": "llm_stream_chunk", "data": {"chunk": "token", "n": i}})
                })
                .collect(),
            Self::CrewAi => {
                let text = include_str!("../../../crates/events-core/tests/fixtures/crewai-run.jsonl");
                let run: Vec<serde_json::Value> = text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .filter_map(|l| {
                        let mut v: serde_json::Value =
                            serde_json::from_str(l).expect("a fixture line");
                        let object = v.as_object_mut().expect("an object");
                        object.remove("id");
                        (object["type"] != "crew_execution_completed").then_some(v)
                    })
                    .collect();
                run.iter().cycle().take(n).cloned().collect()
            }
        }
    }
}

/// A webhook receiver for the benches: events the sink received, per execution, and when each (execution, sequence) came.
#[derive(Default)]
pub(crate) struct Sink {
    pub(crate) counts: Mutex<HashMap<Uuid, usize>>,
    pub(crate) received: Mutex<HashMap<(Uuid, u64), Instant>>,
    pub(crate) changed: Notify,
}

#[derive(serde::Deserialize)]
struct SinkBody {
    events: Vec<SinkEvent>,
}

#[derive(serde::Deserialize)]
struct SinkEvent {
    execution_id: Uuid,
    sequence: u64,
    #[serde(rename = "type")]
    event_type: String,
}

/// The sink's POST handler: counts every event but the terminal one and stamps its arrival.
pub(crate) async fn sink_handler(State(sink): State<Arc<Sink>>, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let Ok(body) = serde_json::from_slice::<SinkBody>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    {
        let mut counts = sink.counts.lock().expect("sink lock");
        let mut received = sink.received.lock().expect("sink lock");
        for e in body.events.iter().filter(|e| e.event_type != "crew_execution_completed") {
            *counts.entry(e.execution_id).or_default() += 1;
            received.insert((e.execution_id, e.sequence), at);
        }
    }
    sink.changed.notify_waiters();
    StatusCode::OK
}

impl Sink {
    /// Waits until the sink holds `n` events of execution `id`.
    pub(crate) async fn wait_count(&self, id: Uuid, n: usize) {
        loop {
            let notified = self.changed.notified();
            if self.counts.lock().expect("sink lock").get(&id).copied().unwrap_or(0) >= n {
                return;
            }
            tokio::time::timeout(Duration::from_secs(120), notified).await.expect("sink stalled");
        }
    }
}
