//! `cargo xtask bench store`: the embedded store (SQLite, WAL, group commit) against the
//! memory store, end to end in the same run: HTTP ingest (`POST /executions/{id}/events`)
//! → store → batched webhook delivery → a local sink server.
//!
//! Figures per store (memory, embedded with the default durability, embedded with
//! `Durability::Fsync`) and payload (small synthetic events, the real crewAI mix of
//! `crates/events-core/tests/fixtures/crewai-run.jsonl`): events/s from the first request to
//! the sink holding every event, its ratio to the memory store, and the ingest latency (request
//! sent → 202, i.e. the commit) p50/p99 under that load; then realtime delivery latency: one
//! event per request, paced at [`RT_RATE`] events/s over [`RT_EXECUTIONS`] executions with
//! `realtime: true` webhooks, from the request sent to the sink's receipt of that event (and
//! to its 202). The embedded stores live in a temporary dir on the disk of
//! `std::env::temp_dir()`. Prints only its markdown section to stdout; progress goes to stderr.

mod common;

use common::{sink_handler, Payload, Sink};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{header, Request, StatusCode};
use axum::routing::post;
use axum::Router;
use hookstream_server::runner::external::ExternalRunner;
use hookstream_server::store::embedded::{Durability, EmbeddedConfig, EmbeddedStore};
use hookstream_server::store::{MemoryStore, Store};
use hookstream_server::ServerBuilder;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use uuid::Uuid;

/// Events per throughput run, over [`EXECUTIONS`] executions.
const EVENTS: usize = 16_000;
/// Executions ingesting in parallel.
const EXECUTIONS: usize = 8;
/// Events per ingest request.
const PER_REQUEST: usize = 50;
/// Measured runs per figure (after a warm-up); the median is reported.
const RUNS: usize = 3;
/// Realtime runs: events per second, one event per request, round-robin over the executions.
const RT_RATE: u64 = 1_000;
/// Executions of a realtime run, each with a `realtime: true` webhook.
const RT_EXECUTIONS: usize = 10;
/// Events of a realtime run before the measured ones (unmeasured warm-up).
const RT_WARMUP: usize = 500;
/// Measured events of a realtime run.
const RT_EVENTS: usize = 3_000;
/// The realtime target: p99 from ingest request sent to the sink's receipt, in ms.
const RT_TARGET_MS: f64 = 2.0;
const TOKEN: &str = "bench-token";

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Memory,
    Embedded(Durability),
}

impl Kind {
    const ALL: [Self; 3] =
        [Self::Memory, Self::Embedded(Durability::Default), Self::Embedded(Durability::Fsync)];

    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Embedded(Durability::Fsync) => "embedded, fsync",
            Self::Embedded(_) => "embedded (default)",
        }
    }
}

struct Bench {
    addr: SocketAddr,
    sink_url: String,
    sink: Arc<Sink>,
    client: Client<HttpConnector, Full<Bytes>>,
    _dir: Option<tempfile::TempDir>,
}

impl Bench {
    async fn start(kind: Kind) -> Self {
        let sink = Arc::new(Sink::default());
        let sink_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let sink_url = format!("http://{}/sink", sink_listener.local_addr().expect("addr"));
        let app = Router::new().route("/sink", post(sink_handler)).with_state(Arc::clone(&sink));
        tokio::spawn(async move { axum::serve(sink_listener, app).await });

        let (store, dir): (Arc<dyn Store>, _) = match kind {
            Kind::Memory => (Arc::new(MemoryStore::new()), None),
            Kind::Embedded(durability) => {
                let dir = tempfile::tempdir().expect("a temp dir");
                let config = EmbeddedConfig { durability, ..EmbeddedConfig::new(dir.path()) };
                (Arc::new(EmbeddedStore::open(config).expect("open the store")), Some(dir))
            }
        };
        let server = ServerBuilder::new()
            .store(store)
            .runner(Arc::new(ExternalRunner::new()))
            .api_token(TOKEN)
            .allow_target_cidrs(vec!["127.0.0.0/8".parse().expect("cidr")])
            .build()
            .expect("server");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(server.serve(listener, std::future::pending()));
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { addr, sink_url, sink, client, _dir: dir }
    }

    async fn post(&self, path: &str, body: Bytes) -> (StatusCode, Bytes) {
        let request = Request::post(format!("http://{}{path}", self.addr))
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .expect("request");
        let response = self.client.request(request).await.expect("an answer");
        let status = response.status();
        (status, response.into_body().collect().await.expect("body").to_bytes())
    }

    async fn register(&self, realtime: bool) -> Uuid {
        let webhook = json!({
            "url": self.sink_url,
            "realtime": realtime,
            "batch": {"max_events": 100, "max_wait_ms": 20},
        });
        let (status, body) =
            self.post("/executions", json!({"webhooks": webhook}).to_string().into()).await;
        assert_eq!(status, StatusCode::CREATED);
        let body: Value = serde_json::from_slice(&body).expect("json");
        body["execution_id"].as_str().expect("id").parse().expect("uuid")
    }

    async fn complete(&self, id: Uuid) {
        let body = r#"{"state":"SUCCESS"}"#.into();
        let (status, _) = self.post(&format!("/executions/{id}/complete"), body).await;
        assert_eq!(status, StatusCode::OK);
    }

    /// Ingests one body (retrying on 429); returns the time to its 202.
    async fn ingest(&self, id: Uuid, body: &Bytes) -> Duration {
        let path = format!("/executions/{id}/events");
        loop {
            let sent = Instant::now();
            let (status, answer) = self.post(&path, body.clone()).await;
            match status {
                StatusCode::ACCEPTED => return sent.elapsed(),
                StatusCode::TOO_MANY_REQUESTS => tokio::task::yield_now().await,
                other => panic!("ingest answered {other}: {}", String::from_utf8_lossy(&answer)),
            }
        }
    }
}

/// One run: the time until the sink holds every event, and every request's ingest latency.
async fn run(bench: &Arc<Bench>, bodies: &Arc<Vec<Bytes>>) -> (Duration, Vec<Duration>) {
    let per = EVENTS / EXECUTIONS;
    let mut ids = Vec::new();
    for _ in 0..EXECUTIONS {
        ids.push(bench.register(false).await);
    }
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for &id in &ids {
        let (bench, bodies) = (Arc::clone(bench), Arc::clone(bodies));
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(bodies.len());
            for body in bodies.iter() {
                latencies.push(bench.ingest(id, body).await);
            }
            bench.sink.wait_count(id, per).await;
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.expect("an ingest task"));
    }
    let elapsed = start.elapsed();
    for id in ids {
        bench.complete(id).await;
    }
    (elapsed, latencies)
}

/// Latencies of one realtime run, over its measured events: request sent → the sink's receipt
/// of the event, and request sent → 202.
struct Realtime {
    delivery: Vec<Duration>,
    accepted: Vec<Duration>,
}

/// One realtime run: [`RT_WARMUP`] + [`RT_EVENTS`] events, one per request, one every
/// 1/[`RT_RATE`] s (`MissedTickBehavior::Delay`), round-robin over [`RT_EXECUTIONS`]
/// executions. Each execution sends its requests one after another (a tick that finds its
/// execution's previous request still in flight waits for it), so its events' sequences are
/// the order of its requests and the sink's receipts are matched by (execution, sequence).
async fn realtime(bench: &Arc<Bench>, payload: Payload) -> Realtime {
    let total = RT_WARMUP + RT_EVENTS;
    let events = payload.events(total);
    bench.sink.received.lock().expect("sink lock").clear();
    let mut ids = Vec::new();
    let mut senders = Vec::new();
    let mut tasks = JoinSet::new();
    for _ in 0..RT_EXECUTIONS {
        let id = bench.register(true).await;
        ids.push(id);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Bytes)>();
        senders.push(tx);
        let bench = Arc::clone(bench);
        tasks.spawn(async move {
            // (event index, sequence, sent, 202 after)
            let mut sent = Vec::new();
            let mut sequence = 0u64;
            while let Some((i, body)) = rx.recv().await {
                sequence += 1;
                let at = Instant::now();
                let accepted = bench.ingest(id, &body).await;
                sent.push((i, id, sequence, at, accepted));
            }
            sent
        });
    }
    let mut interval = tokio::time::interval(Duration::from_nanos(1_000_000_000 / RT_RATE));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for (i, event) in events.iter().enumerate() {
        interval.tick().await;
        let body = Bytes::from(json!({ "events": [event] }).to_string());
        senders[i % RT_EXECUTIONS].send((i, body)).expect("an execution's sender");
    }
    drop(senders);
    let mut sent = Vec::with_capacity(total);
    while let Some(done) = tasks.join_next().await {
        sent.extend(done.expect("a realtime execution task"));
    }
    for &id in &ids {
        bench.sink.wait_count(id, total / RT_EXECUTIONS).await;
    }
    let mut out = Realtime {
        delivery: Vec::with_capacity(RT_EVENTS),
        accepted: Vec::with_capacity(RT_EVENTS),
    };
    {
        let received = bench.sink.received.lock().expect("sink lock");
        for &(_, id, sequence, at, accepted) in sent.iter().filter(|s| s.0 >= RT_WARMUP) {
            let receipt = received[&(id, sequence)];
            out.delivery.push(receipt.saturating_duration_since(at));
            out.accepted.push(accepted);
        }
    }
    for id in ids {
        bench.complete(id).await;
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let mut rows = Vec::new();
    let mut rt_rows = Vec::new();
    for payload in [Payload::Small, Payload::CrewAi] {
        let events = payload.events(EVENTS / EXECUTIONS);
        let bodies: Arc<Vec<Bytes>> = Arc::new(
            events
                .chunks(PER_REQUEST)
                .map(|c| Bytes::from(json!({"events": c}).to_string()))
                .collect(),
        );
        // The stores take turns, run by run, so that a change in the machine's load touches
        // them alike.
        let mut benches = Vec::new();
        for kind in Kind::ALL {
            benches.push((kind, Arc::new(Bench::start(kind).await)));
        }
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); benches.len()];
        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); benches.len()];
        for round in 0..=RUNS {
            for (i, (kind, bench)) in benches.iter().enumerate() {
                eprintln!("store: {} payload, {} store, run {round}", payload.name(), kind.name());
                let (elapsed, l) = run(bench, &bodies).await;
                if round > 0 {
                    // Round 0 warms up.
                    times[i].push(elapsed);
                    latencies[i].extend(l);
                }
            }
        }
        let mut memory_rate = None;
        for (i, (kind, _)) in benches.iter().enumerate() {
            times[i].sort();
            latencies[i].sort();
            let median = times[i][times[i].len() / 2];
            let rate = EVENTS as f64 / median.as_secs_f64();
            let memory = *memory_rate.get_or_insert(rate);
            rows.push(format!(
                "| {} | {} | {} | {:.2} | {} / {} |",
                payload.name(),
                kind.name(),
                common::thousands(rate as u64),
                rate / memory,
                ms(percentile(&latencies[i], 0.5)),
                ms(percentile(&latencies[i], 0.99)),
            ));
        }
        for (kind, bench) in &benches {
            eprintln!("store: {} payload, {} store, realtime", payload.name(), kind.name());
            let Realtime { mut delivery, mut accepted } = realtime(bench, payload).await;
            delivery.sort();
            accepted.sort();
            let p99 = percentile(&delivery, 0.99);
            let met = p99.as_secs_f64() * 1000.0 <= RT_TARGET_MS;
            rt_rows.push(format!(
                "| {} | {} | {} / {} / {} | {} / {} | {} |",
                payload.name(),
                kind.name(),
                ms(percentile(&delivery, 0.5)),
                ms(p99),
                ms(*delivery.last().expect("measured events")),
                ms(percentile(&accepted, 0.5)),
                ms(percentile(&accepted, 0.99)),
                if met { "met" } else { "missed" },
            ));
        }
    }
    println!("## Embedded store\n");
    println!(
        "HTTP ingest ({PER_REQUEST} events per request, {EXECUTIONS} executions in parallel, \
         each sending its requests one after another over keep-alive) → store → batched \
         webhook delivery (`max_events` 100, `max_wait_ms` 20) → a local sink server, {EVENTS} \
         events per run, median of {RUNS} runs (the stores take turns run by run); the clock stops when the sink holds every \
         event. The embedded store against the memory store in the same run, with the default \
         durability (`synchronous=NORMAL`: every answer after the commit reached the OS, \
         survives `kill -9`) and with `Durability::Fsync` (`synchronous=FULL`: every answer \
         after fsync). Ingest latency: request sent → 202 (the events committed), over every \
         request of the measured runs. Target: the embedded store at ≥ 0.5 of the memory \
         store's events/s.\n"
    );
    println!("| payload | store | events/s end to end | ratio to memory | ingest p50 / p99 ms |");
    println!("|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!(
        "\nRealtime delivery: one event per ingest request, paced at {rt_rate} events/s \
         (`tokio::time::interval`, `MissedTickBehavior::Delay`) round-robin over \
         {RT_EXECUTIONS} executions whose webhooks are `realtime: true` (one event per \
         delivery, no batching), each execution's requests one after another over \
         keep-alive; {rt_warmup} events of warm-up, then {rt_events} measured, per store and \
         payload, in the same run as the table above. Delivery: request sent → the sink's \
         receipt of that event (matched by execution and sequence); 202: request sent → its \
         202. Target: delivery p99 ≤ {RT_TARGET_MS} ms.\n",
        rt_rate = common::thousands(RT_RATE),
        rt_warmup = common::thousands(RT_WARMUP as u64),
        rt_events = common::thousands(RT_EVENTS as u64),
    );
    println!("| payload | store | delivery p50 / p99 / max ms | 202 p50 / p99 ms | p99 ≤ 2 ms |");
    println!("|---|---|---|---|---|");
    for row in rt_rows {
        println!("{row}");
    }
}
