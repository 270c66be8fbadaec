//! `cargo xtask bench server`: the server end to end. Events go in through HTTP ingest
//! (`POST /executions/{id}/events`, 100 events per request, over keep-alive connections),
//! through the store's bus and webhook delivery, to a local sink server; beside that, the
//! delivery-only figure of the same run: the same events published straight to the store's
//! bus, through the same delivery to the same sink.
//!
//! Figures: events/s end to end in batched mode (4 executions in parallel, each sending its
//! requests one after another; the clock stops when the sink holds every event), and realtime
//! latency p50/p99 from the ingest's 202 (or the publish's return) to the sink's receipt of
//! each event (one execution; each request's 100 events are awaited before the next).
//! Payloads: small synthetic `llm_stream_chunk` events, and the real crewAI mix of
//! `crates/events-core/tests/fixtures/crewai-run.jsonl` (its ids removed, so that every copy
//! is a new event). Stores: the in-memory store; [`StoreKind`] is the place to add others.
//! Prints only its markdown section to stdout; progress goes to stderr.

mod common;

use common::{sink_handler, Payload, Sink};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{header, Request, StatusCode};
use axum::routing::post;
use axum::Router;
use hookstream_events_core::bus::Backpressure;
use hookstream_events_core::ingest::IngestEvent;
use hookstream_events_core::Draft;
use hookstream_server::runner::external::ExternalRunner;
use hookstream_server::store::{MemoryStore, Store};
use hookstream_server::ServerBuilder;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use uuid::Uuid;

/// Events per throughput run, over [`EXECUTIONS`] executions.
const EVENTS: usize = 20_000;
/// Executions in parallel in the throughput runs.
const EXECUTIONS: usize = 4;
/// Events per ingest request (and per bus publish in the baseline).
const PER_REQUEST: usize = 100;
/// Events per latency run.
const LATENCY_EVENTS: usize = 2_000;
/// Measured runs per throughput figure (after a warm-up); the median is reported.
const RUNS: usize = 3;
const TOKEN: &str = "bench-token";
static REJECTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The stores the bench runs against.
#[derive(Clone, Copy, Debug)]
enum StoreKind {
    Memory,
}

impl StoreKind {
    const ALL: [Self; 1] = [Self::Memory];

    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
        }
    }

    fn open(self) -> Arc<dyn Store> {
        match self {
            Self::Memory => Arc::new(MemoryStore::new()),
        }
    }
}

struct Bench {
    addr: SocketAddr,
    sink_url: String,
    sink: Arc<Sink>,
    store: Arc<dyn Store>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Bench {
    async fn start(kind: StoreKind) -> Self {
        let sink = Arc::new(Sink::default());
        let sink_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink_url = format!("http://{}/sink", sink_listener.local_addr().unwrap());
        let app = Router::new().route("/sink", post(sink_handler)).with_state(Arc::clone(&sink));
        tokio::spawn(async move { axum::serve(sink_listener, app).await });

        let store = kind.open();
        let server = ServerBuilder::new()
            .store(Arc::clone(&store))
            .runner(Arc::new(ExternalRunner::new()))
            .api_token(TOKEN)
            .allow_target_cidrs(vec!["127.0.0.0/8".parse().unwrap()])
            .build()
            .expect("server");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(server.serve(listener, std::future::pending()));
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { addr, sink_url, sink, store, client }
    }

    async fn post(&self, path: &str, body: Bytes) -> (StatusCode, Bytes) {
        let request = Request::post(format!("http://{}{path}", self.addr))
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .unwrap();
        let response = self.client.request(request).await.expect("request");
        let status = response.status();
        (status, response.into_body().collect().await.expect("body").to_bytes())
    }

    async fn register(&self, realtime: bool) -> Uuid {
        let webhook = json!({"url": self.sink_url, "realtime": realtime, "batch": {"max_events": 100, "max_wait_ms": 20}});
        let (status, body) =
            self.post("/executions", json!({"webhooks": webhook}).to_string().into()).await;
        assert_eq!(status, StatusCode::CREATED);
        let body: Value = serde_json::from_slice(&body).unwrap();
        body["execution_id"].as_str().unwrap().parse().unwrap()
    }

    async fn complete(&self, id: Uuid) {
        let (status, _) =
            self.post(&format!("/executions/{id}/complete"), r#"{"state":"SUCCESS"}"#.into()).await;
        assert_eq!(status, StatusCode::OK);
    }

    /// Ingests one request's body; retries on 429. Returns when the 202 arrived.
    async fn ingest(&self, id: Uuid, body: &Bytes) -> Instant {
        loop {
            let (status, answer) =
                self.post(&format!("/executions/{id}/events"), body.clone()).await;
            match status {
                StatusCode::ACCEPTED => return Instant::now(),
                StatusCode::TOO_MANY_REQUESTS => {
                    REJECTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::task::yield_now().await
                }
                other => panic!("ingest answered {other}: {}", String::from_utf8_lossy(&answer)),
            }
        }
    }

    async fn publish(&self, id: Uuid, drafts: Vec<Draft>) -> Instant {
        self.store.bus().publish(id, drafts, Backpressure::Wait).await.expect("publish");
        Instant::now()
    }
}

fn bodies(events: &[Value]) -> Vec<Bytes> {
    events.chunks(PER_REQUEST).map(|c| Bytes::from(json!({"events": c}).to_string())).collect()
}

fn drafts(events: &[Value]) -> Vec<Vec<Draft>> {
    events
        .chunks(PER_REQUEST)
        .map(|c| {
            c.iter()
                .map(|v| {
                    serde_json::from_value::<IngestEvent>(v.clone()).unwrap().into_draft().unwrap()
                })
                .collect()
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Path {
    Http,
    Bus,
}

async fn throughput(bench: &Arc<Bench>, payload: Payload, path: Path) -> Duration {
    let per = EVENTS / EXECUTIONS;
    let events = payload.events(per);
    let mut ids = Vec::new();
    for _ in 0..EXECUTIONS {
        ids.push(bench.register(false).await);
    }
    let bodies = Arc::new(bodies(&events));
    let mut work: Vec<Vec<Vec<Draft>>> = (0..EXECUTIONS).map(|_| drafts(&events)).collect();
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for &id in &ids {
        let (bench, bodies) = (Arc::clone(bench), Arc::clone(&bodies));
        let batches = work.pop().unwrap_or_default();
        tasks.spawn(async move {
            match path {
                Path::Http => {
                    for body in bodies.iter() {
                        bench.ingest(id, body).await;
                    }
                }
                Path::Bus => {
                    for drafts in batches {
                        bench.publish(id, drafts).await;
                    }
                }
            }
            bench.sink.wait_count(id, per).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    for id in ids {
        bench.complete(id).await;
    }
    elapsed
}

/// Latencies (ms) of every event from its request's 202 (or publish) to the sink.
async fn latency(bench: &Bench, payload: Payload, path: Path) -> Vec<f64> {
    let events = payload.events(LATENCY_EVENTS);
    let id = bench.register(true).await;
    let mut out = Vec::with_capacity(LATENCY_EVENTS);
    let mut sent = 0u64;
    for (body, drafts) in bodies(&events).into_iter().zip(drafts(&events)) {
        let n = drafts.len();
        let acked = match path {
            Path::Http => bench.ingest(id, &body).await,
            Path::Bus => bench.publish(id, drafts).await,
        };
        bench.sink.wait_count(id, sent as usize + n).await;
        let received = bench.sink.received.lock().unwrap();
        for seq in sent + 1..=sent + n as u64 {
            let at = received[&(id, seq)];
            out.push(at.saturating_duration_since(acked).as_secs_f64() * 1000.0);
        }
        sent += n as u64;
    }
    bench.complete(id).await;
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn median_throughput(bench: &Arc<Bench>, payload: Payload, path: Path) -> String {
    let elapsed = common::median_of(RUNS, || throughput(bench, payload, path)).await;
    common::per_second(EVENTS, elapsed)
}

async fn latency_figure(bench: &Bench, payload: Payload, path: Path) -> String {
    latency(bench, payload, path).await; // warm-up
    let mut ms = latency(bench, payload, path).await;
    ms.sort_by(f64::total_cmp);
    format!("{:.2} / {:.2}", percentile(&ms, 0.5), percentile(&ms, 0.99))
}

#[tokio::main]
async fn main() {
    let mut rows = Vec::new();
    for kind in StoreKind::ALL {
        let bench = Arc::new(Bench::start(kind).await);
        for payload in [Payload::Small, Payload::CrewAi] {
            eprintln!(
                "server: {} store, {} payload, batched throughput",
                kind.name(),
                payload.name()
            );
            let http = median_throughput(&bench, payload, Path::Http).await;
            let bus = median_throughput(&bench, payload, Path::Bus).await;
            rows.push(format!(
                "| {} | {} | batched, events/s | {http} | {bus} |",
                kind.name(),
                payload.name()
            ));
            eprintln!(
                "server: {} store, {} payload, realtime latency",
                kind.name(),
                payload.name()
            );
            let http = latency_figure(&bench, payload, Path::Http).await;
            let bus = latency_figure(&bench, payload, Path::Bus).await;
            rows.push(format!(
                "| {} | {} | realtime, p50 / p99 ms | {http} | {bus} |",
                kind.name(),
                payload.name()
            ));
        }
    }
    eprintln!("429s: {}", REJECTED.load(std::sync::atomic::Ordering::Relaxed));
    println!("## Server end to end\n");
    let (events, latency_events) =
        (common::thousands(EVENTS as u64), common::thousands(LATENCY_EVENTS as u64));
    println!(
        "HTTP ingest (`POST /executions/{{id}}/events`, {PER_REQUEST} events per request, \
         keep-alive) → store → webhook delivery → a local sink server, against the same events \
         published straight to the store's bus (delivery only), in the same run. Batched: \
         {events} events over {EXECUTIONS} executions in parallel, `max_events` 100, \
         `max_wait_ms` 20, median of {RUNS} runs; the clock stops when the sink holds every \
         event. Realtime: {latency_events} events of one execution, each request's events \
         awaited at the sink before the next; latency from the ingest's 202 (or the publish's \
         return) to the sink's receipt of each event (one request in flight per webhook, so \
         the 100th event of a request waits for the 99 before it; delivery starts before the \
         202 is sent, so the HTTP figure can be the lower one).\n"
    );
    println!(
        "| store | payload | figure | HTTP ingest → sink | bus publish → sink (delivery only) |"
    );
    println!("|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
