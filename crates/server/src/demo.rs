//! `hookstream demo`: one command that shows hookstream end to end with nothing else running.
//! It starts, in process, a server (memory store, demo runner, loopback allowed as a webhook
//! target) and a receiver (the [`crate::listen`] receiver checking HMAC signatures), kicks off
//! the demo crew over HTTP with a batched, signed webhook to the receiver, prints the batches
//! as they arrive, and ends with a summary: events, batches, time, whether every execution's
//! sequences are gap-free, and the run's final state.
//!
//! It writes to the writer it is given (stdout in the binary) and stops both servers before
//! it returns. It persists nothing.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::RngCore as _;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::cli::DemoArgs;
use crate::listen::{self, ListenAuth, SequenceTracker};
use crate::runner::demo::{DemoConfig, DemoRunner};
use crate::store::MemoryStore;
use crate::token::ApiToken;
use crate::ServerBuilder;

/// The settings of a demo run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DemoOptions {
    /// The crew's `topic` input.
    pub topic: String,
    /// Pause between two events of the crew.
    pub step_delay: Duration,
    /// Events per batch at most.
    pub max_events: NonZeroUsize,
    /// Longest wait before a batch is sent.
    pub max_wait: Duration,
    /// The whole demo fails after this long.
    pub timeout: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            topic: "AI agents".to_owned(),
            step_delay: DemoConfig::DEFAULT_STEP_DELAY,
            max_events: NonZeroUsize::new(20).unwrap_or(NonZeroUsize::MIN),
            max_wait: Duration::from_millis(250),
            timeout: Duration::from_secs(120),
        }
    }
}

impl DemoOptions {
    /// The options of `hookstream demo`'s flags.
    pub fn from_args(args: &DemoArgs) -> Result<Self, DemoError> {
        if args.topic.trim().is_empty() {
            return Err(DemoError::Options("invalid --topic: expected some text".into()));
        }
        Ok(Self {
            topic: args.topic.trim().to_owned(),
            step_delay: args.step_delay,
            max_events: args.max_events,
            max_wait: Duration::from_millis(args.max_wait_ms),
            ..Self::default()
        })
    }
}

/// What a demo run saw.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DemoSummary {
    /// Distinct events received.
    pub events: usize,
    /// Requests received.
    pub batches: usize,
    /// From kickoff to the last batch.
    pub elapsed: Duration,
    /// Whether the sequences were exactly 1..=n.
    pub gap_free: bool,
    /// The execution's final state (`SUCCESS`, `FAILED`).
    pub state: String,
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// A flag is invalid.
    #[error("{0}")]
    Options(String),
    /// A local socket could not be opened.
    #[error("cannot listen on 127.0.0.1")]
    Bind(#[source] std::io::Error),
    /// The in-process server could not be built.
    #[error("cannot build the server")]
    Build(#[source] crate::BuildError),
    /// Talking to the in-process server failed.
    #[error("{0}")]
    Api(String),
    /// Writing the output failed.
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
    /// The run did not end in time.
    #[error("the run did not finish within {0:?}")]
    Timeout(Duration),
    /// The run ended, but not as it should have.
    #[error("{0}")]
    Unexpected(String),
}

/// Runs the demo, writing its display to `out`.
pub async fn run<W: Write>(options: DemoOptions, out: &mut W) -> Result<DemoSummary, DemoError> {
    let localhost = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0);
    let mut key = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut key);
    let secret = format!("whsec_{}", STANDARD.encode(key));
    let signing = hookstream_auth::signature::SigningSecret::parse(&secret)
        .map_err(|e| DemoError::Unexpected(format!("generated secret refused: {e}")))?;

    // The receiver.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let receiver_listener = TcpListener::bind(localhost).await.map_err(DemoError::Bind)?;
    let receiver_addr = receiver_listener.local_addr().map_err(DemoError::Bind)?;
    let (stop_receiver, receiver_stopped) = oneshot::channel::<()>();
    let receiver = tokio::spawn(async move {
        let app = listen::router(ListenAuth::Signature(signing), tx);
        let _ = axum::serve(receiver_listener, app)
            .with_graceful_shutdown(async move {
                let _ = receiver_stopped.await;
            })
            .await;
    });

    // The server, allowed to deliver to the loopback receiver.
    let loopback = ipnet::Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 8)
        .map(ipnet::IpNet::V4)
        .map_err(|e| DemoError::Unexpected(e.to_string()))?;
    let token = ApiToken::generate();
    let server = ServerBuilder::new()
        .store(Arc::new(MemoryStore::new()))
        .runner(Arc::new(DemoRunner::new(DemoConfig { step_delay: options.step_delay })))
        .api_token(token.clone())
        .allow_target_cidrs(vec![loopback])
        .shutdown_grace(Duration::from_secs(5))
        .build()
        .map_err(DemoError::Build)?;
    let server_listener = TcpListener::bind(localhost).await.map_err(DemoError::Bind)?;
    let server_addr = server_listener.local_addr().map_err(DemoError::Bind)?;
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(server.serve(server_listener, async move {
        let _ = server_stopped.await;
    }));

    let outcome = drive(&options, out, server_addr, receiver_addr, &token, &secret, &mut rx).await;

    let _ = stop_server.send(());
    let _ = stop_receiver.send(());
    let _ = server.await;
    let _ = receiver.await;
    outcome
}

async fn drive<W: Write>(
    options: &DemoOptions,
    out: &mut W,
    server: SocketAddr,
    receiver: SocketAddr,
    token: &ApiToken,
    secret: &str,
    rx: &mut mpsc::UnboundedReceiver<listen::Received>,
) -> Result<DemoSummary, DemoError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let api = Api { client, base: format!("http://{server}"), token: token.expose().to_owned() };
    let max_wait_ms = options.max_wait.as_millis().min(u128::from(u64::MAX)) as u64;
    let kickoff = json!({
        "inputs": {"topic": options.topic},
        "meta": {"requested_by": "hookstream demo"},
        "webhooks": {
            "url": format!("http://{receiver}/webhook"),
            "events": ["*"],
            "realtime": false,
            "authentication": {"strategy": "hmac", "secret": secret},
            "batch": {"max_events": options.max_events.get(), "max_wait_ms": max_wait_ms},
        }
    });
    let w = |out: &mut W, line: String| writeln!(out, "{line}").map_err(DemoError::Output);

    w(out, "hookstream demo: a simulated crew streams its events to a local webhook".into())?;
    w(out, format!("  server    http://{server}  (memory store, demo runner)"))?;
    w(
        out,
        format!(
            "  receiver  http://{receiver}/webhook  (checks the HMAC signature of every batch)"
        ),
    )?;
    let started = Instant::now();
    let (status, body) = api.call("POST", "/kickoff", Some(kickoff)).await?;
    let Some(kickoff_id) = body.get("kickoff_id").and_then(Value::as_str).map(str::to_owned) else {
        return Err(DemoError::Api(format!("kickoff answered {status}: {body}")));
    };
    w(
        out,
        format!(
            "  kickoff   {kickoff_id}  topic {:?}, batches of up to {} events or {} ms",
            options.topic, options.max_events, max_wait_ms
        ),
    )?;
    w(out, String::new())?;

    let mut tracker = SequenceTracker::default();
    let mut batches = 0u64;
    let mut rejected = 0usize;
    let deadline = tokio::time::Instant::now() + options.timeout;
    loop {
        let received = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(received)) => received,
            Ok(None) => return Err(DemoError::Unexpected("the receiver stopped early".into())),
            Err(_) => return Err(DemoError::Timeout(options.timeout)),
        };
        batches += 1;
        if received.auth.is_rejected() {
            rejected += 1;
        }
        let elapsed = started.elapsed();
        for (i, line) in
            listen::describe(batches, &received, &mut tracker, false).into_iter().enumerate()
        {
            if i == 0 {
                w(out, format!("{:>6.2}s  {line}", elapsed.as_secs_f64()))?;
            } else {
                w(out, format!("         {line}"))?;
            }
        }
        let ended = received
            .events
            .as_ref()
            .is_ok_and(|events| events.iter().any(|e| e.event_type.is_terminal()));
        if ended {
            break;
        }
    }
    let elapsed = started.elapsed();

    let (_, status) = api.call("GET", &format!("/status/{kickoff_id}"), None).await?;
    let state = status.get("state").and_then(Value::as_str).unwrap_or("UNKNOWN").to_owned();
    let summary = DemoSummary {
        events: tracker.distinct_events(),
        batches: batches as usize,
        elapsed,
        gap_free: tracker.gap_free(),
        state,
    };
    w(out, String::new())?;
    w(
        out,
        format!(
            "summary: {} events in {} batches in {:.2}s; sequences 1-{} {}; {}; state {}",
            summary.events,
            summary.batches,
            summary.elapsed.as_secs_f64(),
            summary.events,
            if summary.gap_free { "gap-free" } else { "WITH GAPS" },
            if rejected == 0 {
                "every signature verified".to_owned()
            } else {
                format!("{rejected} batches REJECTED")
            },
            summary.state
        ),
    )?;
    if let Some(raw) = status.pointer("/result/raw").and_then(Value::as_str) {
        let first = raw.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
        w(out, format!("result:  {first}"))?;
    }
    w(
        out,
        "next: hookstream serve, then POST /kickoff with your own webhook (docs/guide.md)".into(),
    )?;
    if !summary.gap_free || rejected > 0 || summary.state != "SUCCESS" {
        return Err(DemoError::Unexpected(
            "the demo run did not go as expected (see above)".into(),
        ));
    }
    Ok(summary)
}

struct Api {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    base: String,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), DemoError> {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
            .map_err(|e| DemoError::Api(format!("{method} {path}: {e}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| DemoError::Api(format!("{method} {path}: {e}")))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| DemoError::Api(format!("{method} {path}: {e}")))?
            .to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }
}
