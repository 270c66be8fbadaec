//! The in-process webhook receiver of the tests: hyper on `127.0.0.1:0` (plain or TLS, ALPN
//! as the test says), answering from a script (status, `Retry-After`, delay, connection
//! reset; 200 once the script is exhausted) and recording every request.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;

/// One scripted answer.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<String>,
    pub(crate) delay: Option<Duration>,
    pub(crate) reset: bool,
}

impl Reply {
    pub(crate) fn status(status: u16) -> Self {
        Self { status, retry_after: None, delay: None, reset: false }
    }

    pub(crate) fn retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }

    pub(crate) fn delayed(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// The connection is closed without an answer.
    pub(crate) fn reset() -> Self {
        Self { status: 0, retry_after: None, delay: None, reset: true }
    }
}

/// A request as received, with the answer it got (0: reset).
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) version: Version,
    pub(crate) at: Instant,
    pub(crate) status: u16,
}

impl Received {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }

    pub(crate) fn sequences(&self) -> Vec<u64> {
        self.json()["events"]
            .as_array()
            .expect("events array")
            .iter()
            .map(|e| e["sequence"].as_u64().expect("sequence"))
            .collect()
    }

    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub(crate) fn webhook_id(&self) -> &str {
        self.header("webhook-id")
    }

    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
    arrived: Notify,
}

/// A running receiver.
#[derive(Clone)]
pub(crate) struct Receiver {
    addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
}

impl Receiver {
    /// A plain HTTP receiver answering `script`, then 200.
    pub(crate) async fn start(script: impl IntoIterator<Item = Reply>) -> Self {
        Self::launch(script, None).await
    }

    /// An HTTPS receiver with `tls` (its ALPN list decides HTTP/1.1 or HTTP/2).
    pub(crate) async fn start_tls(
        script: impl IntoIterator<Item = Reply>,
        tls: tokio_rustls::rustls::ServerConfig,
    ) -> Self {
        Self::launch(script, Some(Arc::new(tls))).await
    }

    async fn launch(
        script: impl IntoIterator<Item = Reply>,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        state.script.lock().unwrap().extend(script);
        let receiver = Self { addr, tls: tls.is_some(), state: Arc::clone(&state) };
        tokio::spawn(async move {
            let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&state);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&state), req));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        receiver
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http(s)://127.0.0.1:<port>/hook`.
    pub(crate) fn url(&self) -> url::Url {
        let scheme = if self.tls { "https" } else { "http" };
        url::Url::parse(&format!("{scheme}://127.0.0.1:{}/hook", self.port())).unwrap()
    }

    /// The URL with another host (same port).
    pub(crate) fn url_with_host(&self, host: &str) -> url::Url {
        let scheme = if self.tls { "https" } else { "http" };
        url::Url::parse(&format!("{scheme}://{host}:{}/hook", self.port())).unwrap()
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Received> {
        loop {
            let arrived = self.state.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            arrived.await;
        }
    }

    /// Sequences of the requests answered 2xx, deduplicated by `webhook-id`, in arrival order.
    pub(crate) fn delivered_sequences(&self) -> Vec<u64> {
        let mut seen = std::collections::HashSet::new();
        self.received()
            .iter()
            .filter(|r| r.ok() && seen.insert(r.webhook_id().to_owned()))
            .flat_map(|r| r.sequences())
            .collect()
    }
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let reply = state.script.lock().unwrap().pop_front().unwrap_or(Reply::status(200));
    let index = {
        let mut received = state.received.lock().unwrap();
        received.push(Received {
            headers: parts.headers,
            body,
            version: parts.version,
            at: Instant::now(),
            // 0 until answered: a reset, or a delay the client gave up on, stays 0.
            status: 0,
        });
        received.len() - 1
    };
    state.arrived.notify_waiters();
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    if !reply.reset {
        state.received.lock().unwrap()[index].status = reply.status;
    }
    state.arrived.notify_waiters();
    if reply.reset {
        return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "scripted reset"));
    }
    let mut response = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
    *response.status_mut() = StatusCode::from_u16(reply.status).expect("status");
    if let Some(v) = reply.retry_after {
        response.headers_mut().insert(http::header::RETRY_AFTER, v.parse().expect("header"));
    }
    Ok(response)
}
