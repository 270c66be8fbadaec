//! `oauth2_client_credentials` against an in-process token endpoint on 127.0.0.1:0: the
//! request it sends, caching, refresh ahead of expiry, one fetch for 100 concurrent
//! callers, errors, and invalidation on a 401 from the receiver.
//!
//! Expiry is driven with tokio's paused clock, paused only while no IO is pending: with
//! real sockets a paused runtime would auto-advance into the request timeout while waiting
//! for the server. So each test fetches on the running clock, then `pause`s, `advance`s past
//! the point of interest and `resume`s before the next fetch; the advanced time is kept.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hookstream_auth::{AuthError, AuthStrategy, BuiltinOptions, Registry};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time;

use crate::support::headers_of;

const CLIENT_SECRET: &str = "s3cr3t/+= SEKRETzq9";

/// What the token endpoint saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    authorization: String,
    content_type: String,
    body: String,
}

#[derive(Default)]
struct State {
    hits: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    /// Replies to give in order; the last one repeats.
    replies: Mutex<VecDeque<(u16, String)>>,
    /// When set, each reply waits for a permit (returned afterwards).
    gate: Option<Arc<Semaphore>>,
    arrived: Option<mpsc::UnboundedSender<()>>,
}

struct TokenServer {
    url: String,
    state: Arc<State>,
}

impl TokenServer {
    async fn start(state: State) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/oauth/token", listener.local_addr().expect("addr"));
        let state = Arc::new(state);
        let server_state = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&server_state);
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(Arc::clone(&state), request));
                    let _ =
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { url, state }
    }

    fn replying(replies: &[(u16, serde_json::Value)]) -> State {
        let state = State::default();
        state.replies.lock().unwrap().extend(replies.iter().map(|(s, b)| (*s, b.to_string())));
        state
    }

    fn then_reply(&self, status: u16, body: serde_json::Value) {
        let mut replies = self.state.replies.lock().unwrap();
        replies.clear();
        replies.push_back((status, body.to_string()));
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    fn strategy(&self, scope: Option<&str>) -> Arc<dyn AuthStrategy> {
        let mut config = json!({
            "strategy": "oauth2_client_credentials",
            "token_url": self.url,
            "client_id": "hook stream",
            "client_secret": CLIENT_SECRET,
        });
        if let Some(scope) = scope {
            config["scope"] = json!(scope);
        }
        Registry::with_builtins().build(&config).expect("valid config")
    }
}

async fn answer(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    if let Some(arrived) = &state.arrived {
        let _ = arrived.send(());
    }
    let header = |name: &str| {
        request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    };
    let (method, authorization, content_type) =
        (request.method().to_string(), header("authorization"), header("content-type"));
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    state.seen.lock().unwrap().push(Seen {
        method,
        authorization,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if let Some(gate) = &state.gate {
        let _permit = gate.acquire().await;
    }
    let (status, body) = {
        let mut replies = state.replies.lock().unwrap();
        if replies.len() > 1 {
            replies.pop_front()
        } else {
            replies.front().cloned()
        }
    }
    .unwrap_or((500, "{}".to_owned()));
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).expect("status");
    response.headers_mut().insert("content-type", "application/json".parse().expect("valid"));
    Ok(response)
}

fn token(access_token: &str, expires_in: u64) -> serde_json::Value {
    json!({"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in})
}

async fn bearer(strategy: &dyn AuthStrategy) -> Result<String, AuthError> {
    let headers = headers_of(strategy).await?;
    Ok(headers["authorization"].to_str().expect("ascii").to_owned())
}

#[tokio::test]
async fn posts_a_client_credentials_form_with_basic_client_auth() {
    let server = TokenServer::start(TokenServer::replying(&[(200, token("tok-1", 3600))])).await;
    let strategy = server.strategy(Some("events:write read"));
    assert_eq!(bearer(strategy.as_ref()).await.expect("token"), "Bearer tok-1");

    let seen = server.state.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].content_type, "application/x-www-form-urlencoded");
    assert_eq!(seen[0].body, "grant_type=client_credentials&scope=events%3Awrite+read");
    // RFC 6749 §2.3.1: form-urlencode id and secret, then HTTP Basic.
    use base64::Engine as _;
    let expected =
        base64::engine::general_purpose::STANDARD.encode("hook+stream:s3cr3t%2F%2B%3D+SEKRETzq9");
    assert_eq!(seen[0].authorization, format!("Basic {expected}"));
}

#[tokio::test]
async fn caches_the_token_and_refreshes_it_ahead_of_expiry() {
    let server = TokenServer::start(TokenServer::replying(&[(200, token("tok-1", 600))])).await;
    let strategy = server.strategy(None);
    assert_eq!(bearer(strategy.as_ref()).await.expect("token"), "Bearer tok-1");
    assert_eq!(bearer(strategy.as_ref()).await.expect("token"), "Bearer tok-1");
    assert_eq!(server.hits(), 1, "the second call used the cache");

    // 600 s lifetime: refresh min(60 s, 10%) = 60 s before expiry, at 540 s.
    time::pause();
    time::advance(Duration::from_secs(535)).await;
    assert_eq!(bearer(strategy.as_ref()).await.expect("cached"), "Bearer tok-1");
    assert_eq!(server.hits(), 1, "still cached at 535 s");

    server.then_reply(200, token("tok-2", 600));
    time::advance(Duration::from_secs(10)).await;
    time::resume();
    assert_eq!(bearer(strategy.as_ref()).await.expect("refreshed"), "Bearer tok-2");
    assert_eq!(server.hits(), 2, "refreshed at 545 s, before the 600 s expiry");
}

#[tokio::test]
async fn short_lived_tokens_refresh_at_ninety_percent() {
    let server = TokenServer::start(TokenServer::replying(&[(200, token("tok-1", 100))])).await;
    let strategy = server.strategy(None);
    bearer(strategy.as_ref()).await.expect("token");

    time::pause();
    time::advance(Duration::from_secs(88)).await;
    bearer(strategy.as_ref()).await.expect("cached");
    assert_eq!(server.hits(), 1, "cached at 88 s");
    time::advance(Duration::from_secs(3)).await;
    time::resume();
    bearer(strategy.as_ref()).await.expect("refreshed");
    assert_eq!(server.hits(), 2, "refreshed at 91 s");
}

#[tokio::test]
async fn a_failed_refresh_keeps_using_the_unexpired_token_then_fails_transiently() {
    let server = TokenServer::start(TokenServer::replying(&[(200, token("tok-1", 600))])).await;
    let strategy = server.strategy(None);
    bearer(strategy.as_ref()).await.expect("token");
    server.then_reply(503, json!({}));

    time::pause();
    time::advance(Duration::from_secs(550)).await; // refresh due, not expired
    time::resume();
    assert_eq!(bearer(strategy.as_ref()).await.expect("cached"), "Bearer tok-1");
    assert_eq!(server.hits(), 2, "a refresh was tried");

    time::pause();
    time::advance(Duration::from_secs(60)).await; // expired
    time::resume();
    let error = bearer(strategy.as_ref()).await.expect_err("expired and no new token");
    assert!(error.is_retryable());
    assert!(error.to_string().contains("503 Service Unavailable"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fetch_serves_a_hundred_concurrent_callers() {
    let gate = Arc::new(Semaphore::new(0));
    let (arrived, mut arrivals) = mpsc::unbounded_channel();
    let mut state = TokenServer::replying(&[(200, token("tok-1", 3600))]);
    state.gate = Some(Arc::clone(&gate));
    state.arrived = Some(arrived);
    let server = TokenServer::start(state).await;
    let strategy = server.strategy(None);

    let mut callers = JoinSet::new();
    for _ in 0..100 {
        let strategy = Arc::clone(&strategy);
        callers.spawn(async move { bearer(strategy.as_ref()).await });
    }
    arrivals.recv().await.expect("the first fetch arrives");
    // Let every caller reach the strategy while the fetch is held.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(1);

    let mut tokens = Vec::new();
    while let Some(result) = callers.join_next().await {
        tokens.push(result.expect("caller finished").expect("token"));
    }
    assert_eq!(tokens.len(), 100);
    assert!(tokens.iter().all(|t| t == "Bearer tok-1"));
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn a_401_from_the_token_endpoint_is_a_retryable_error_naming_the_cause() {
    let reply = json!({"error": "invalid_client", "error_description": CLIENT_SECRET});
    let server = TokenServer::start(TokenServer::replying(&[(401, reply)])).await;
    let strategy = server.strategy(None);
    let error = bearer(strategy.as_ref()).await.expect_err("refused");
    assert!(error.is_retryable(), "SPEC §4: a failed fetch is a retryable delivery error");
    let message = error.to_string();
    assert_eq!(
        message,
        format!(
            "strategy oauth2_client_credentials: token endpoint {} answered 401 Unauthorized \
             (invalid_client); check client_id, client_secret and scope",
            server.url
        )
    );
    assert!(!message.contains("SEKRETzq9") && !format!("{error:?}").contains("SEKRETzq9"));
    // Nothing was cached: the next attempt asks again.
    let _ = bearer(strategy.as_ref()).await;
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn malformed_token_responses_are_transient_errors() {
    let cases = [
        (json!({"token_type": "Bearer"}), "response has no access_token"),
        (json!({"access_token": "t", "token_type": "mac"}), "token_type is not bearer"),
        (json!({"access_token": "bad\nvalue"}), "access_token is not a valid header value"),
    ];
    for (reply, expected) in cases {
        let server = TokenServer::start(TokenServer::replying(&[(200, reply)])).await;
        let error = bearer(server.strategy(None).as_ref()).await.expect_err("malformed");
        assert!(error.is_retryable());
        assert!(error.to_string().ends_with(expected), "{error}");
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transient_error() {
    // Bind then drop to get a port nobody listens on.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/token", listener.local_addr().expect("addr"));
    drop(listener);
    let strategy = Registry::with_builtins()
        .build(&json!({"strategy": "oauth2_client_credentials", "token_url": url,
                       "client_id": "c", "client_secret": CLIENT_SECRET}))
        .expect("valid");
    let error = bearer(strategy.as_ref()).await.expect_err("unreachable");
    assert!(error.is_retryable());
    assert!(error.to_string().contains("unreachable"), "{error}");
    assert!(!error.to_string().contains("SEKRETzq9"));
}

#[tokio::test]
async fn on_rejected_401_drops_the_cached_token() {
    let server = TokenServer::start(TokenServer::replying(&[
        (200, token("tok-1", 3600)),
        (200, token("tok-2", 3600)),
    ]))
    .await;
    let strategy = server.strategy(None);
    assert_eq!(bearer(strategy.as_ref()).await.expect("token"), "Bearer tok-1");

    strategy.on_rejected(403);
    assert_eq!(bearer(strategy.as_ref()).await.expect("cached"), "Bearer tok-1");
    assert_eq!(server.hits(), 1, "403 keeps the token");

    strategy.on_rejected(401);
    assert_eq!(bearer(strategy.as_ref()).await.expect("fetched"), "Bearer tok-2");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn the_address_policy_guards_resolved_and_literal_hosts() {
    let server = TokenServer::start(TokenServer::replying(&[(200, token("tok-1", 3600))])).await;
    let port = server.url.trim_start_matches("http://127.0.0.1:").split('/').next().expect("port");
    let registry = Registry::with_builtin_options(
        BuiltinOptions::default().with_address_policy(|ip| !ip.is_loopback()),
    );
    for url in [server.url.clone(), format!("http://localhost:{port}/oauth/token")] {
        let strategy = registry
            .build(&json!({"strategy": "oauth2_client_credentials", "token_url": url,
                           "client_id": "c", "client_secret": CLIENT_SECRET}))
            .expect("valid");
        let error = bearer(strategy.as_ref()).await.expect_err("refused");
        assert!(!error.is_retryable(), "{url}: a refused address is permanent");
        assert!(error.to_string().ends_with("address refused by the address policy"), "{error}");
    }
    assert_eq!(server.hits(), 0);

    // The same endpoint is reachable when the policy allows loopback.
    let registry =
        Registry::with_builtin_options(BuiltinOptions::default().with_address_policy(|_| true));
    let strategy = registry
        .build(&json!({"strategy": "oauth2_client_credentials", "token_url": server.url,
                       "client_id": "c", "client_secret": CLIENT_SECRET}))
        .expect("valid");
    assert_eq!(bearer(strategy.as_ref()).await.expect("allowed"), "Bearer tok-1");
}
