//! Crash test of the embedded store: the real `hookstream` binary (`serve --store embedded`),
//! killed with SIGKILL at random points (several rounds) while events of several external
//! executions are ingested over HTTP and the receiver is down, then up. Every acknowledged
//! (202) event must reach the receiver, in sequence order after dedupe by `webhook-id`, and
//! a batch may come twice only with the same `webhook-id` (it was in flight at a crash).
//!
//! Also the harness the store's other end-to-end tests use: [`Hookstream`] (the binary, its
//! address read from its `listening on http://<addr>` line), [`Target`] (a receiver that is
//! up or down) and [`post`].

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post as route_post;
use axum::Router;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use uuid::Uuid;

/// The API token the test servers run with.
pub(crate) const TOKEN: &str = "crash-test-api-token-0123456789";

/// The `hookstream` binary of this build, built on demand (the tests crate depends on the
/// server's library only, so cargo does not build the binary for it).
pub(crate) fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/it-<hash> → target/<profile>
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps");
    let mut build = std::process::Command::new(env!("CARGO"));
    build.args(["build", "--quiet", "-p", "hookstream-server", "--bin", "hookstream"]);
    if let Some(target_dir) = profile_dir.parent() {
        build.arg("--target-dir").arg(target_dir);
    }
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build for the hookstream binary");
    assert!(status.success(), "building the hookstream binary failed");
    let bin = profile_dir.join(format!("hookstream{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "no binary at {}", bin.display());
    bin
}

/// A running `hookstream serve --store embedded` process. Dropping it kills it.
pub(crate) struct Hookstream {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
}

impl Hookstream {
    /// Starts the binary on `data_dir` with the external runner, 127.0.0.0/8 allowed, and
    /// waits (at most 30 s) for its `listening on` line. Its log goes to `log`.
    pub(crate) async fn start(bin: &Path, data_dir: &Path, log: &Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the server log");
        let mut child = Command::new(bin)
            .args(["serve", "--store", "embedded", "--listen", "127.0.0.1:0"])
            .args(["--runner", "external", "--allow-target-cidr", "127.0.0.0/8"])
            .args(["--api-token", TOKEN, "--data-dir"])
            .arg(data_dir)
            .env_remove("HOOKSTREAM_SECRET_KEY")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn hookstream");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let find = async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return addr.trim().to_owned();
                }
            }
            panic!("hookstream exited before listening (see its log)");
        };
        let base = tokio::time::timeout(Duration::from_secs(30), find)
            .await
            .expect("hookstream did not listen within 30 s");
        // Keep draining stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, base }
    }

    /// SIGKILL (no graceful shutdown), and waits for the process to be gone.
    pub(crate) async fn kill(&mut self) {
        self.child.kill().await.expect("kill hookstream");
    }
}

/// A POST with the API token; `Err` when no answer came (the server died).
pub(crate) async fn post(base: &str, path: &str, body: &Value) -> Result<(u16, Value), String> {
    request(http::Method::POST, base, path, Some(body)).await
}

/// A GET with the API token.
pub(crate) async fn get(base: &str, path: &str) -> Result<(u16, Value), String> {
    request(http::Method::GET, base, path, None).await
}

async fn request(
    method: http::Method,
    base: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let request = http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(bytes))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// One request a [`Target`] got.
#[derive(Clone, Debug)]
pub(crate) struct Got {
    pub(crate) path: String,
    pub(crate) webhook_id: String,
    /// What the target answered.
    pub(crate) status: u16,
    pub(crate) events: Vec<Value>,
    pub(crate) at: SystemTime,
}

#[derive(Default)]
struct TargetState {
    up: AtomicBool,
    /// How long each answer takes, in milliseconds (a slow receiver keeps batches in flight).
    latency_ms: std::sync::atomic::AtomicU64,
    got: Mutex<Vec<Got>>,
}

/// A webhook receiver on 127.0.0.1:0 that answers 503 while down and 200 while up.
#[derive(Clone)]
pub(crate) struct Target {
    addr: SocketAddr,
    state: Arc<TargetState>,
    count: watch::Receiver<usize>,
}

impl Target {
    /// Starts a receiver, up or down.
    pub(crate) async fn start(up: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        let addr = listener.local_addr().expect("target address");
        let state = Arc::new(TargetState::default());
        state.up.store(up, Ordering::SeqCst);
        let (tx, count) = watch::channel(0);
        let app = Router::new()
            .route("/{*path}", route_post(receive))
            .with_state((Arc::clone(&state), Arc::new(tx)));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, count }
    }

    /// The URL of `path` here.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers 200 from now on (`true`) or 503 (`false`).
    pub(crate) fn set_up(&self, up: bool) {
        self.state.up.store(up, Ordering::SeqCst);
    }

    /// Makes every answer take `latency` (a slow receiver: batches stay in flight longer).
    pub(crate) fn set_latency(&self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.state.latency_ms.store(ms, Ordering::SeqCst);
    }

    /// Every request so far.
    pub(crate) fn got(&self) -> Vec<Got> {
        self.state.got.lock().expect("target lock").clone()
    }

    /// Waits (at most `timeout`) until `done` holds; panics with a summary otherwise.
    pub(crate) async fn wait_until(&self, timeout: Duration, done: impl Fn(&[Got]) -> bool) {
        let mut count = self.count.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if done(&self.got()) {
                return;
            }
            if tokio::time::timeout_at(deadline, count.changed()).await.is_err() {
                let got = self.got();
                let summary: Vec<_> =
                    got.iter().map(|g| (&g.path, g.status, g.events.len())).collect();
                panic!("target: condition not met in {timeout:?}; got {}: {summary:?}", got.len());
            }
        }
    }
}

type TargetShared = (Arc<TargetState>, Arc<watch::Sender<usize>>);

async fn receive(
    State((state, tx)): State<TargetShared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let up = state.up.load(Ordering::SeqCst);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let got = Got {
        path: uri.path().to_owned(),
        webhook_id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        status: if up { 200 } else { 503 },
        events: body["events"].as_array().cloned().unwrap_or_default(),
        at: SystemTime::now(),
    };
    let n = {
        let mut all = state.got.lock().expect("target lock");
        all.push(got);
        all.len()
    };
    tx.send_replace(n);
    // Recorded on arrival, answered late: a kill meanwhile leaves a batch the receiver has
    // and the server does not know was delivered.
    let latency = state.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// A small deterministic generator (xorshift), seeded per run and printed for replay.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const EXECUTIONS: usize = 4;
const EVENTS_PER_EXECUTION: usize = 60;
const EVENTS_PER_POST: usize = 3;
const KILLS: usize = 3;

/// One ingest request of one execution.
#[derive(Clone)]
struct Post {
    execution: usize,
    ids: Vec<Uuid>,
    body: Value,
}

/// Sends the posts of one execution in order until one gets no answer; returns the posts
/// acknowledged and those left (the failed one first: it may or may not have been stored).
async fn ingest(
    base: String,
    path: String,
    posts: Vec<Post>,
    acked: watch::Sender<usize>,
) -> (Vec<Post>, Vec<Post>) {
    let mut done = Vec::new();
    let mut left = posts.into_iter();
    while let Some(post_) = left.next() {
        match post(&base, &path, &post_.body).await {
            Ok((202, _)) => {
                done.push(post_);
                acked.send_modify(|n| *n += 1);
            }
            Ok((status, body)) => panic!("ingest answered {status}: {body}"),
            Err(_) => {
                let mut rest = vec![post_];
                rest.extend(left);
                return (done, rest);
            }
        }
    }
    (done, Vec::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_kill_9_and_arrives_in_order() {
    let bin = binary();
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let log = dir.path().join("hookstream.log");
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("crash test seed: {seed}");
    let mut rng = Rng(seed);

    let target = Target::start(false).await;
    // Slow answers keep batches in flight, so that kills land on some.
    target.set_latency(Duration::from_millis(25));
    let mut server = Hookstream::start(&bin, &data, &log).await;

    // Register the executions (before any kill).
    let mut executions = Vec::new();
    for i in 0..EXECUTIONS {
        let body = json!({"webhooks": {
            "url": target.url(&format!("/hook/{i}")),
            "batch": {"max_events": 8, "max_wait_ms": 20}
        }});
        let (status, created) = post(&server.base, "/executions", &body).await.expect("register");
        assert_eq!(status, 201, "{created}");
        executions.push(created["execution_id"].as_str().expect("execution_id").to_owned());
    }
    let mut queues: Vec<Vec<Post>> = (0..EXECUTIONS)
        .map(|execution| {
            (0..EVENTS_PER_EXECUTION / EVENTS_PER_POST)
                .map(|p| {
                    let ids: Vec<Uuid> = (0..EVENTS_PER_POST).map(|_| Uuid::new_v4()).collect();
                    let events: Vec<Value> = ids
                        .iter()
                        .enumerate()
                        .map(|(k, id)| {
                            json!({"type": "crash.test", "id": id,
                                   "data": {"post": p, "k": k, "execution": execution}})
                        })
                        .collect();
                    Post { execution, ids, body: json!({"events": events}) }
                })
                .collect()
        })
        .collect();

    let mut acknowledged: Vec<HashSet<Uuid>> = vec![HashSet::new(); EXECUTIONS];
    for round in 0..=KILLS {
        let total_left: usize = queues.iter().map(Vec::len).sum();
        let (acked_tx, mut acked_rx) = watch::channel(0usize);
        let mut tasks = Vec::new();
        for (i, queue) in queues.iter_mut().enumerate() {
            let path = format!("/executions/{}/events", executions[i]);
            let posts = std::mem::take(queue);
            tasks.push(tokio::spawn(ingest(server.base.clone(), path, posts, acked_tx.clone())));
        }
        drop(acked_tx);
        if round < KILLS {
            // Kill at a random point: once a random share of what is left was acknowledged.
            let threshold = 1 + rng.below((total_left / 3).max(1) as u64) as usize;
            let reached = acked_rx.wait_for(|n| *n >= threshold);
            let _ = tokio::time::timeout(Duration::from_secs(30), reached).await;
            server.kill().await;
        }
        for task in tasks {
            let (done, left) = task.await.expect("ingest task");
            for post_ in done {
                acknowledged[post_.execution].extend(post_.ids.iter().copied());
            }
            if let Some(execution) = left.first().map(|p| p.execution) {
                queues[execution] = left;
            }
        }
        if round < KILLS {
            server = Hookstream::start(&bin, &data, &log).await;
        }
        if round == 1 {
            // Down until it has refused something (pending batches are retried), then up.
            target
                .wait_until(Duration::from_secs(30), |got| got.iter().any(|g| g.status != 200))
                .await;
            target.set_up(true);
        }
        eprintln!("crash test: round {round} done at {:?}", started.elapsed());
    }
    assert!(queues.iter().all(Vec::is_empty), "every post was acknowledged in the end");
    target.set_up(true);
    target.set_latency(Duration::ZERO);
    for id in &executions {
        let (status, body) =
            post(&server.base, &format!("/executions/{id}/complete"), &json!({"state": "SUCCESS"}))
                .await
                .expect("complete");
        assert_eq!(status, 200, "{body}");
    }

    let paths: Vec<String> = (0..EXECUTIONS).map(|i| format!("/hook/{i}")).collect();
    let delivered_terminal = |got: &[Got], path: &str| {
        got.iter().any(|g| {
            g.path == path
                && g.status == 200
                && g.events.iter().any(|e| e["type"] == "crew_execution_completed")
        })
    };
    target
        .wait_until(Duration::from_secs(60), |got| paths.iter().all(|p| delivered_terminal(got, p)))
        .await;
    drop(server);
    eprintln!("crash test: {:?} after the build", started.elapsed());

    let got = target.got();
    let mut duplicate_batches = 0;
    for (i, path) in paths.iter().enumerate() {
        // Dedupe by webhook-id among the answered-200 requests, as a receiver does.
        let mut seen: HashMap<&str, &Vec<Value>> = HashMap::new();
        let mut events = Vec::new();
        for g in got.iter().filter(|g| &g.path == path && g.status == 200) {
            assert!(!g.webhook_id.is_empty(), "a request without webhook-id");
            if let Some(first) = seen.get(g.webhook_id.as_str()) {
                assert_eq!(
                    *first, &g.events,
                    "webhook-id {} resent with other events",
                    g.webhook_id
                );
                duplicate_batches += 1;
                continue;
            }
            seen.insert(&g.webhook_id, &g.events);
            events.extend(g.events.iter().cloned());
        }
        let sequences: Vec<u64> = events.iter().filter_map(|e| e["sequence"].as_u64()).collect();
        let expected: Vec<u64> = (1..=sequences.len() as u64).collect();
        assert_eq!(sequences, expected, "execution {i}: gaps, repeats or disorder after dedupe");
        let ids: HashSet<Uuid> =
            events.iter().filter_map(|e| e["id"].as_str()?.parse().ok()).collect();
        let missing: Vec<_> = acknowledged[i].difference(&ids).collect();
        assert!(missing.is_empty(), "execution {i}: acknowledged events lost: {missing:?}");
        assert_eq!(
            events.len(),
            acknowledged[i].len() + 1,
            "execution {i}: every event acknowledged plus the terminal one"
        );
        assert_eq!(
            events.last().map(|e| e["type"].clone()),
            Some(json!("crew_execution_completed"))
        );
    }
    let refused = got.iter().filter(|g| g.status != 200).count();
    eprintln!(
        "crash test: {} requests, {refused} answered 503, {duplicate_batches} batches resent",
        got.len()
    );
    assert!(refused > 0, "the receiver was never down when asked");
    // A batch comes twice only when it was in flight at a kill: one per pair per kill.
    assert!(duplicate_batches <= KILLS * EXECUTIONS, "{duplicate_batches} duplicate batches");
}
