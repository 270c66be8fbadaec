//! `cargo xtask bench delivery`: webhook delivery (`hookstream-delivery-http`) against a local
//! hyper sink on loopback, beside a bare hyper client posting the same pre-serialized bodies
//! with the same concurrency, in the same run.
//!
//! Scenarios: batched (100 events per batch) and realtime (1 event per request), 64
//! concurrent executions, with small synthetic events and with the real CrewAI event mix (the
//! events-core fixture); realtime latency publish → sink receipt at 1,000 events/s; memory per
//! idle subscription with 10,000 of them. Events are published before the clock starts (the
//! subscriptions read them from the bus log), so the timed part is delivery alone: filter,
//! batch, encode, request, HTTP, ledger, acknowledge. Prints only its markdown section to
//! stdout; progress goes to stderr.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookstream_auth::Registry;
use hookstream_delivery_http::{
    BatchConfig, Dispatcher, DispatcherConfig, MemoryLedger, Mode, PairKey, SsrfPolicy,
    WebhookConfig,
};
use hookstream_events_core::bus::{Backpressure, Bus};
use hookstream_events_core::{Data, Draft, Event, EventType, MemoryBus};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use uuid::Uuid;

/// The CrewAI run of the events-core fixture: one `{"type", "data", ...}` object per line.
const FIXTURE: &str = include_str!("../../crates/events-core/tests/fixtures/crewai-run.jsonl");
/// Concurrent executions (one webhook each) in the throughput scenarios.
const EXECUTIONS: usize = 64;
/// Events per batch in the batched scenarios.
const BATCH: usize = 100;
/// Measured runs per figure (after a warm-up); the median is reported.
const RUNS: usize = 3;
/// Idle subscriptions in the memory scenario.
const IDLE: usize = 10_000;

#[derive(Clone, Copy, PartialEq)]
enum Mix {
    Small,
    Crewai,
}

impl Mix {
    fn label(self) -> &'static str {
        match self {
            Self::Small => "small events",
            Self::Crewai => "CrewAI event mix",
        }
    }
}

/// `n` drafts of `mix`, the last one `crew_execution_completed`.
fn drafts(mix: Mix, n: usize) -> Vec<Draft> {
    let fixture: Vec<(EventType, Data)> = FIXTURE
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|v| {
            let t = EventType::new(v["type"].as_str()?).ok()?;
            let data = v["data"].as_object()?.clone();
            (!t.is_terminal()).then_some((t, data))
        })
        .collect();
    let chunk = EventType::new("llm_stream_chunk").expect("valid type");
    let mut out: Vec<Draft> = (0..n - 1)
        .map(|i| match mix {
            Mix::Small => {
                let mut data = Data::new();
                data.insert("chunk".into(), "token".into());
                data.insert("n".into(), i.into());
                Draft::new(chunk.clone(), data)
            }
            Mix::Crewai => {
                let (t, data) = &fixture[i % fixture.len()];
                Draft::new(t.clone(), data.clone())
            }
        })
        .collect();
    let mut end = Data::new();
    end.insert("state".into(), "SUCCESS".into());
    out.push(Draft::new(EventType::new("crew_execution_completed").expect("valid"), end));
    out
}

/// The bodies delivery sends for `drafts` in batches of `per` (what the bare client posts).
fn bodies(drafts: &[Draft], per: usize) -> Vec<Bytes> {
    let id = Uuid::now_v7();
    let events: Vec<Event> =
        drafts.iter().enumerate().map(|(i, d)| d.clone().into_event(id, i as u64 + 1)).collect();
    events
        .chunks(per)
        .map(|c| {
            Bytes::from(serde_json::to_vec(&serde_json::json!({ "events": c })).expect("json"))
        })
        .collect()
}

/// The sink: answers 200 to every POST after reading its body; with a latency log, reads
/// each event's `data.t` (ns since `base` at publish) and logs the delay to receipt.
struct Sink {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
}

struct LatencyLog {
    base: Instant,
    delays_ns: Mutex<Vec<u64>>,
}

async fn start_sink(latency: Option<Arc<LatencyLog>>) -> Sink {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let counter = Arc::clone(&counter);
            let latency = latency.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let counter = Arc::clone(&counter);
                    let latency = latency.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        if let (Some(log), Ok(body)) = (latency, body) {
                            let now = log.base.elapsed().as_nanos() as u64;
                            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                                let mut delays = log.delays_ns.lock().expect("lock");
                                for e in v["events"].as_array().into_iter().flatten() {
                                    if let Some(t) = e["data"]["t"].as_u64() {
                                        delays.push(now.saturating_sub(t));
                                    }
                                }
                            }
                        }
                        counter.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Sink { addr, requests }
}

fn dispatcher() -> Dispatcher {
    let mut config = DispatcherConfig::default();
    config.ssrf = SsrfPolicy::new(vec!["127.0.0.0/8".parse().expect("cidr")]);
    Dispatcher::new(config, Arc::new(MemoryLedger::new())).expect("dispatcher")
}

fn webhook(sink: &Sink, mode: Mode) -> WebhookConfig {
    let auth = Registry::with_builtins()
        .build(&serde_json::json!({"strategy": "none"}))
        .expect("none strategy");
    let url = format!("http://{}/hook", sink.addr).parse().expect("url");
    WebhookConfig::new(url, auth).expect("webhook").with_mode(mode)
}

fn batched() -> Mode {
    let mut batch = BatchConfig::default();
    batch.max_events = std::num::NonZeroUsize::new(BATCH).expect("non-zero");
    Mode::Batched(batch)
}

/// Publishes every execution's drafts, then times their delivery to the end.
async fn delivery_run(
    dispatcher: &Dispatcher,
    config: &WebhookConfig,
    work: &[Vec<Draft>],
) -> Duration {
    let bus = Arc::new(MemoryBus::new());
    let mut keys = Vec::with_capacity(work.len());
    for drafts in work {
        let id = Uuid::now_v7();
        bus.publish(id, drafts.clone(), Backpressure::Wait).await.expect("publish");
        keys.push(PairKey::new(id, 0));
    }
    let start = Instant::now();
    let handles: Vec<_> = keys
        .into_iter()
        .map(|key| dispatcher.spawn(bus.clone() as Arc<dyn Bus>, key, config.clone()))
        .collect();
    for handle in handles {
        let summary = handle.finished().await.expect("delivered");
        assert_eq!(summary.dead_lettered_events, 0, "nothing dead-lettered");
    }
    start.elapsed()
}

/// A bare hyper client, one task per execution posting its bodies one after the other.
async fn bare_run(addr: SocketAddr, work: &[Vec<Bytes>]) -> Duration {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(256)
        .build({
            let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
            http.set_nodelay(true);
            http
        });
    let uri: hyper::Uri = format!("http://{addr}/hook").parse().expect("uri");
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for bodies in work {
        let (client, uri, bodies) = (client.clone(), uri.clone(), bodies.clone());
        tasks.spawn(async move {
            for body in bodies {
                let request = hyper::Request::post(uri.clone())
                    .header("content-type", "application/json")
                    .body(Full::new(body))
                    .expect("request");
                let response = client.request(request).await.expect("response");
                assert!(response.status().is_success());
                response.into_body().collect().await.expect("body");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    start.elapsed()
}

struct Throughput {
    label: String,
    unit: &'static str,
    count: usize,
    ours: Duration,
    bare: Duration,
    target: f64,
}

async fn throughput(mix: Mix, realtime: bool) -> Throughput {
    let per_execution = match (realtime, mix) {
        (false, Mix::Small) => 2_000,
        (false, Mix::Crewai) => 1_000,
        (true, _) => 300,
    };
    let per_request = if realtime { 1 } else { BATCH };
    eprintln!(
        "delivery: {} {}, {EXECUTIONS} executions x {per_execution} events",
        if realtime { "realtime" } else { "batched" },
        mix.label()
    );
    let work: Vec<Vec<Draft>> = (0..EXECUTIONS).map(|_| drafts(mix, per_execution)).collect();
    let bare_work: Vec<Vec<Bytes>> = work.iter().map(|d| bodies(d, per_request)).collect();
    let sink = start_sink(None).await;
    let dispatcher = dispatcher();
    let config = webhook(&sink, if realtime { Mode::Realtime } else { batched() });
    let ours = common::median_of(RUNS, || delivery_run(&dispatcher, &config, &work)).await;
    let bare = common::median_of(RUNS, || bare_run(sink.addr, &bare_work)).await;
    let requests: usize = bare_work.iter().map(Vec::len).sum();
    let events = EXECUTIONS * per_execution;
    let expected = (2 * (RUNS + 1) * requests) as u64;
    assert_eq!(sink.requests.load(Ordering::Relaxed), expected, "every request reached the sink");
    Throughput {
        label: format!(
            "{}, {} event{}/request, {EXECUTIONS} executions, {}",
            if realtime { "realtime" } else { "batched" },
            per_request,
            if per_request == 1 { "" } else { "s" },
            mix.label()
        ),
        unit: if realtime { "requests/s" } else { "events/s" },
        count: if realtime { requests } else { events },
        ours,
        bare,
        target: if realtime { 0.7 } else { 0.5 },
    }
}

/// Realtime delivery of events published at `rate`/s over 10 executions; p50 and p99 from
/// publish to the sink's receipt.
async fn latency(mix: Mix, rate: u64, events: usize) -> (Duration, Duration) {
    const PAIRS: usize = 10;
    eprintln!("delivery: realtime latency at {rate} events/s, {}", mix.label());
    let log = Arc::new(LatencyLog { base: Instant::now(), delays_ns: Mutex::new(Vec::new()) });
    let sink = start_sink(Some(Arc::clone(&log))).await;
    let dispatcher = dispatcher();
    let config = webhook(&sink, Mode::Realtime);
    let bus = Arc::new(MemoryBus::new());
    let ids: Vec<Uuid> = (0..PAIRS).map(|_| Uuid::now_v7()).collect();
    let handles: Vec<_> = ids
        .iter()
        .map(|id| {
            dispatcher.spawn(bus.clone() as Arc<dyn Bus>, PairKey::new(*id, 0), config.clone())
        })
        .collect();
    let mut source = drafts(mix, events + 1);
    source.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    for (i, mut draft) in source.into_iter().enumerate() {
        tick.tick().await;
        draft.data.insert("t".into(), (log.base.elapsed().as_nanos() as u64).into());
        bus.publish(ids[i % PAIRS], vec![draft], Backpressure::Wait).await.expect("publish");
    }
    for id in &ids {
        let end = drafts(Mix::Small, 1);
        bus.publish(*id, end, Backpressure::Wait).await.expect("publish");
    }
    for handle in handles {
        handle.finished().await.expect("delivered");
    }
    let mut delays = log.delays_ns.lock().expect("lock").clone();
    assert_eq!(delays.len(), events, "every event's latency measured");
    delays.sort_unstable();
    let pick = |q: f64| Duration::from_nanos(delays[((delays.len() - 1) as f64 * q) as usize]);
    (pick(0.50), pick(0.99))
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// RSS growth per idle pair: 10,000 executions with one webhook each, subscribed and waiting.
async fn idle_memory() -> u64 {
    eprintln!("delivery: {IDLE} idle subscriptions");
    let sink = start_sink(None).await;
    let dispatcher = dispatcher();
    let config = webhook(&sink, batched());
    let bus = Arc::new(MemoryBus::new());
    let ids: Vec<Uuid> = (0..IDLE).map(|_| Uuid::now_v7()).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = resident_bytes();
    let handles: Vec<_> = ids
        .iter()
        .map(|id| {
            dispatcher.spawn(bus.clone() as Arc<dyn Bus>, PairKey::new(*id, 0), config.clone())
        })
        .collect();
    // Let every task open its subscription and park on it.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = resident_bytes();
    assert!(handles.iter().all(|h| !h.is_finished()), "every pair is idle, none ended");
    for handle in &handles {
        handle.abort();
    }
    after.saturating_sub(before) / IDLE as u64
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let total = Instant::now();
    // First, while the heap is fresh, so freed memory of other scenarios does not hide growth.
    let per_idle = runtime.block_on(idle_memory());
    let mut rows = Vec::new();
    for (mix, realtime) in
        [(Mix::Small, false), (Mix::Crewai, false), (Mix::Small, true), (Mix::Crewai, true)]
    {
        rows.push(runtime.block_on(throughput(mix, realtime)));
    }
    let latencies: Vec<(Mix, (Duration, Duration))> = [Mix::Small, Mix::Crewai]
        .into_iter()
        .map(|mix| (mix, runtime.block_on(latency(mix, 1_000, 3_000))))
        .collect();
    eprintln!("delivery: done in {:.1} s", total.elapsed().as_secs_f64());

    println!("## Delivery (HTTP)\n");
    println!(
        "`hookstream-delivery-http` (`Dispatcher`, `MemoryBus`, `MemoryLedger`, auth `none`, \
         SSRF allow-list 127.0.0.0/8) against a local hyper HTTP/1.1 sink on loopback, beside a \
         bare hyper-util client posting the same pre-serialized bodies with the same \
         concurrency (one task per execution, one request in flight each) in the same run \
         (tokio multi-thread runtime, 2 workers, sink in the same process). Events are on the \
         bus before the clock starts. Median of {RUNS} runs after a warm-up; *ratio* is \
         hookstream's rate / the bare client's (target in the last column). The CrewAI mix \
         cycles through the {} events of the events-core fixture (about 2.8 KB each on average).\n",
        FIXTURE.lines().count()
    );
    println!("| scenario | hookstream | bare hyper client | ratio | target |");
    println!("|---|---:|---:|---:|---:|");
    for t in &rows {
        let ratio = t.bare.as_secs_f64() / t.ours.as_secs_f64();
        println!(
            "| {} | {} {} | {} {} | {:.2} | ≥ {:.1} |",
            t.label,
            common::per_second(t.count, t.ours),
            t.unit,
            common::per_second(t.count, t.bare),
            t.unit,
            ratio,
            t.target,
        );
    }
    println!();
    println!("| realtime latency, publish → sink receipt, 1,000 events/s over 10 executions | p50 | p99 | target |");
    println!("|---|---:|---:|---:|");
    for (mix, (p50, p99)) in &latencies {
        println!("| {} (3,000 events) | {} | {} | p99 ≤ 2 ms |", mix.label(), ms(*p50), ms(*p99));
    }
    println!();
    println!("| memory | per idle subscription | target |");
    println!("|---|---:|---:|");
    println!(
        "| {} executions × 1 webhook, subscribed, no events (RSS delta / count, `/proc/self/statm`) | {} bytes | ≤ 4,096 bytes |",
        common::thousands(IDLE as u64),
        common::thousands(per_idle)
    );
}
