//! An in-process webhook receiver on 127.0.0.1:0: records every request's headers and JSON
//! body and answers the statuses the test queues (200 by default). Tests wait on it with a
//! bounded timeout instead of sleeping.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio::sync::watch;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Recorded {
    /// Its headers.
    pub(crate) headers: HeaderMap,
    /// Its body as JSON (`null` when it was not JSON).
    pub(crate) body: Value,
    /// Its exact body bytes (for signature checks).
    pub(crate) raw: Bytes,
    /// Its path.
    pub(crate) path: String,
    /// When it arrived.
    pub(crate) at: Instant,
}

impl Recorded {
    /// The events of the body (`{"events": [...]}`).
    pub(crate) fn events(&self) -> Vec<Value> {
        self.body["events"].as_array().cloned().unwrap_or_default()
    }

    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    statuses: Mutex<VecDeque<u16>>,
}

/// The receiver. Dropping it stops nothing (the runtime's end does).
#[derive(Clone)]
pub(crate) struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    count: watch::Receiver<usize>,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 and a free port; every path is accepted.
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        let shared = Arc::new(Shared::default());
        let (tx, count) = watch::channel(0usize);
        let app = Router::new()
            .route("/{*path}", post(record))
            .route("/", post(record))
            .with_state((Arc::clone(&shared), Arc::new(tx)));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, count }
    }

    /// The URL of `path` on this receiver (`/hook`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Answers the next requests with these statuses, in order, then 200 again.
    pub(crate) fn respond_with(&self, statuses: impl IntoIterator<Item = u16>) {
        self.shared.statuses.lock().unwrap().extend(statuses);
    }

    /// Every request so far.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The requests to `path` so far.
    pub(crate) fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// Waits (at most `timeout`) until `done` holds for the requests; panics with what was
    /// received otherwise.
    pub(crate) async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[Recorded]) -> bool,
    ) -> Vec<Recorded> {
        let mut count = self.count.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            if tokio::time::timeout_at(deadline, count.changed()).await.is_err() {
                panic!(
                    "receiver: condition not met within {timeout:?}; got {} requests: {:#?}",
                    requests.len(),
                    requests.iter().map(|r| (&r.path, r.events().len())).collect::<Vec<_>>()
                );
            }
        }
    }

    /// Waits until `path` received `crew_execution_completed` and returns its requests.
    pub(crate) async fn wait_for_terminal(&self, path: &str) -> Vec<Recorded> {
        let wanted = path.to_owned();
        self.wait_until(Duration::from_secs(20), move |reqs| {
            reqs.iter()
                .filter(|r| r.path == wanted)
                .flat_map(Recorded::events)
                .any(|e| e["type"] == "crew_execution_completed")
        })
        .await
        .into_iter()
        .filter(|r| r.path == path)
        .collect()
    }
}

type ReceiverState = (Arc<Shared>, Arc<watch::Sender<usize>>);

async fn record(
    State((shared, tx)): State<ReceiverState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let raw = body;
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let status = shared.statuses.lock().unwrap().pop_front().unwrap_or(200);
    let n = {
        let mut requests = shared.requests.lock().unwrap();
        requests.push(Recorded {
            headers,
            body,
            raw,
            path: uri.path().to_owned(),
            at: Instant::now(),
        });
        requests.len()
    };
    tx.send_replace(n);
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}
