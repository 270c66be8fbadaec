//! Helpers every test module reuses: a server built for tests (memory store, a known API
//! token, 127.0.0.0/8 allowed as a webhook target), requests through the router without a
//! socket, and the recording [`Receiver`].

#![allow(dead_code)]

pub(crate) mod receiver;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use hookstream_server::runner::demo::{DemoConfig, DemoRunner};
use hookstream_server::runner::Runner;
use hookstream_server::{Server, ServerBuilder};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub(crate) use receiver::{Receiver, Recorded};

/// The API token of test servers.
pub(crate) const TOKEN: &str = "test-api-token-0123456789";

/// A builder with the test token and 127.0.0.0/8 allowed.
pub(crate) fn builder() -> ServerBuilder {
    ServerBuilder::new()
        .api_token(TOKEN)
        .allow_target_cidrs(vec!["127.0.0.0/8".parse().expect("cidr")])
}

/// [`builder`] with the demo crew without pauses.
pub(crate) fn demo_builder() -> ServerBuilder {
    builder().runner(Arc::new(DemoRunner::new(DemoConfig::instant())))
}

/// A test server running the demo crew without pauses.
pub(crate) fn demo_server() -> TestApp {
    TestApp::new(builder().runner(Arc::new(DemoRunner::new(DemoConfig::instant()))))
}

/// A test server with `runner`.
pub(crate) fn server_with(runner: Arc<dyn Runner>) -> TestApp {
    TestApp::new(builder().runner(runner))
}

/// A built server and its router.
pub(crate) struct TestApp {
    pub(crate) server: Server,
    pub(crate) app: Router,
}

/// An answer: status, headers and body (JSON when it parses, else a string).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) body: Value,
}

impl TestApp {
    /// Builds `builder`.
    pub(crate) fn new(builder: ServerBuilder) -> Self {
        let server = builder.build().expect("build server");
        let app = server.app();
        Self { server, app }
    }

    /// Sends `request` through the router.
    pub(crate) async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.expect("router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer { status, headers, body }
    }

    /// `method path` with the API token and `body` as JSON.
    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.send(request(method, path, Some(TOKEN), body)).await
    }

    /// `GET path` with the API token.
    pub(crate) async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with the API token and a JSON body.
    pub(crate) async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Kicks off and returns the kickoff id (asserting 200).
    pub(crate) async fn kickoff(&self, body: Value) -> String {
        let answer = self.post("/kickoff", body).await;
        assert_eq!(answer.status, StatusCode::OK, "kickoff: {:?}", answer.body);
        answer.body["kickoff_id"].as_str().expect("kickoff_id").to_owned()
    }

    /// Waits (at most 20 s) until the execution's state is final; returns the status body.
    pub(crate) async fn wait_final(&self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.get(&format!("/status/{id}")).await.body;
            if status["state"] == "SUCCESS" || status["state"] == "FAILED" {
                return status;
            }
            assert!(tokio::time::Instant::now() < deadline, "execution {id} never ended: {status}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (at most 20 s) until `done` holds for the execution's deliveries view; returns
    /// the view.
    pub(crate) async fn deliveries_until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let view = self.get(&format!("/executions/{id}/deliveries")).await;
            assert_eq!(view.status, StatusCode::OK);
            if done(&view.body) {
                return view.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "deliveries view never got there: {}",
                view.body
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A request with an optional bearer token and an optional JSON body.
pub(crate) fn request(
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request"),
        None => builder.body(Body::empty()).expect("request"),
    }
}

/// Asserts the SPEC §2 timestamp format: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn assert_timestamp_format(ts: &str) {
    let b = ts.as_bytes();
    let ok = b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(ok, "timestamp {ts:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ");
}
