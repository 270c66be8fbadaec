//! The table of bad requests: each answers its status and error code with SPEC §3's JSON
//! body, none answers 500, and none stores anything.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::support::{self, TOKEN};

struct Case {
    name: &'static str,
    request: Request<Body>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

fn req(
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(body.into()).unwrap()
}

fn kickoff(body: Value) -> Request<Body> {
    req(Method::POST, "/kickoff", Some(TOKEN), Some("application/json"), body.to_string())
}

fn hook(extra: Value) -> Value {
    let mut w = json!({"url": "http://127.0.0.1:9/hook"});
    for (k, v) in extra.as_object().unwrap() {
        w[k] = v.clone();
    }
    json!({"inputs": {"topic": "AI"}, "webhooks": w})
}

fn case(
    name: &'static str,
    request: Request<Body>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case { name, request, status, code, field }
}

#[tokio::test]
async fn every_bad_request_gets_its_status_and_code() {
    let app = support::TestApp::new(support::builder().body_limit(64 * 1024));
    let unknown = uuid::Uuid::new_v4();
    let json = Some("application/json");
    let cases = vec![
        case(
            "unparsable JSON",
            req(Method::POST, "/kickoff", Some(TOKEN), json, "{nope"),
            400,
            "invalid_json",
            None,
        ),
        case(
            "trailing garbage",
            req(Method::POST, "/kickoff", Some(TOKEN), json, "{} x"),
            400,
            "invalid_json",
            None,
        ),
        case(
            "inputs of the wrong type",
            kickoff(json!({"inputs": "AI"})),
            422,
            "invalid_request",
            Some("inputs"),
        ),
        case(
            "realtime of the wrong type",
            kickoff(hook(json!({"realtime": "yes"}))),
            422,
            "invalid_request",
            Some("webhooks.realtime"),
        ),
        case(
            "webhooks of the wrong type",
            kickoff(json!({"inputs": {"topic": "x"}, "webhooks": 3})),
            422,
            "invalid_request",
            Some("webhooks"),
        ),
        case(
            "unknown webhook field",
            kickoff(hook(json!({"realtim": true}))),
            422,
            "invalid_request",
            Some("webhooks.realtim"),
        ),
        case("missing inputs", kickoff(json!({"inputs": {}})), 422, "missing_inputs", None),
        case(
            "null input",
            kickoff(json!({"inputs": {"topic": null}})),
            422,
            "missing_inputs",
            None,
        ),
        case(
            "URL without scheme",
            kickoff(hook(json!({"url": "not a url"}))),
            422,
            "invalid_request",
            Some("webhooks.url"),
        ),
        case(
            "URL not http(s)",
            kickoff(hook(json!({"url": "ftp://example.com/x"}))),
            422,
            "invalid_request",
            Some("webhooks.url"),
        ),
        case(
            "blocked literal IP (metadata)",
            kickoff(hook(json!({"url": "http://169.254.169.254/latest"}))),
            422,
            "blocked_target",
            Some("webhooks.url"),
        ),
        case(
            "blocked literal IP (private)",
            kickoff(hook(json!({"url": "http://10.0.0.1/x"}))),
            422,
            "blocked_target",
            Some("webhooks.url"),
        ),
        case(
            "unknown strategy",
            kickoff(hook(json!({"authentication": {"strategy": "kerberos"}}))),
            422,
            "invalid_authentication",
            Some("webhooks.authentication.strategy"),
        ),
        case(
            "missing token field",
            kickoff(hook(json!({"authentication": {"strategy": "bearer"}}))),
            422,
            "invalid_authentication",
            Some("webhooks.authentication.token"),
        ),
        case(
            "hop-by-hop header",
            kickoff(hook(json!({"headers": {"Connection": "close"}}))),
            422,
            "invalid_request",
            Some("webhooks.headers.connection"),
        ),
        case(
            "auth header as static header",
            kickoff(hook(json!({"headers": {"Authorization": "x"}}))),
            422,
            "invalid_request",
            Some("webhooks.headers.authorization"),
        ),
        case(
            "non-string header value",
            kickoff(hook(json!({"headers": {"X-A": 1}}))),
            422,
            "invalid_request",
            Some("webhooks.headers.X-A"),
        ),
        case(
            "bad filter name",
            kickoff(
                json!({"inputs": {"topic": "x"}, "webhooks": [{"url": "http://127.0.0.1:9/", "events": ["ok", "bad name!"]}]}),
            ),
            422,
            "invalid_request",
            Some("webhooks[0].events[1]"),
        ),
        case(
            "batch out of bounds",
            kickoff(hook(json!({"batch": {"max_events": 0}}))),
            422,
            "invalid_request",
            Some("webhooks.batch.max_events"),
        ),
        case(
            "oversize body",
            req(
                Method::POST,
                "/kickoff",
                Some(TOKEN),
                json,
                format!("{{\"inputs\": {{\"topic\": \"{}\"}}}}", "x".repeat(100 * 1024)),
            ),
            413,
            "payload_too_large",
            None,
        ),
        case(
            "not JSON content type",
            req(Method::POST, "/kickoff", Some(TOKEN), Some("text/plain"), "{}"),
            415,
            "unsupported_media_type",
            None,
        ),
        case(
            "no content type",
            req(Method::POST, "/kickoff", Some(TOKEN), None, "{}"),
            415,
            "unsupported_media_type",
            None,
        ),
        case(
            "unknown execution",
            req(Method::GET, &format!("/status/{unknown}"), Some(TOKEN), None, ""),
            404,
            "execution_not_found",
            None,
        ),
        case(
            "execution id not a UUID",
            req(Method::GET, "/status/abc", Some(TOKEN), None, ""),
            404,
            "execution_not_found",
            None,
        ),
        case(
            "ingest into an unknown execution",
            req(
                Method::POST,
                &format!("/executions/{unknown}/events"),
                Some(TOKEN),
                json,
                "{\"events\": []}",
            ),
            404,
            "execution_not_found",
            None,
        ),
        case(
            "replay limit 0",
            req(
                Method::GET,
                &format!("/executions/{unknown}/events?limit=0"),
                Some(TOKEN),
                None,
                "",
            ),
            404,
            "execution_not_found",
            None,
        ),
        case(
            "bad query type",
            req(
                Method::GET,
                &format!("/executions/{unknown}/events?after=abc"),
                Some(TOKEN),
                None,
                "",
            ),
            422,
            "invalid_request",
            Some("after"),
        ),
        case(
            "complete of an unknown execution (checked before the body)",
            req(
                Method::POST,
                &format!("/executions/{unknown}/complete"),
                Some(TOKEN),
                json,
                "{\"state\": \"DONE\"}",
            ),
            404,
            "execution_not_found",
            None,
        ),
        case(
            "missing API token",
            req(Method::GET, "/inputs", None, None, ""),
            401,
            "unauthorized",
            None,
        ),
        case(
            "bad API token",
            req(Method::GET, "/inputs", Some("wrong"), None, ""),
            401,
            "unauthorized",
            None,
        ),
        case(
            "kickoff without a token",
            req(Method::POST, "/kickoff", None, json, "{}"),
            401,
            "unauthorized",
            None,
        ),
        case(
            "basic instead of bearer",
            Request::builder()
                .uri("/metrics")
                .header(header::AUTHORIZATION, "Basic dGVzdA==")
                .body(Body::empty())
                .unwrap(),
            401,
            "unauthorized",
            None,
        ),
        case(
            "unknown route",
            req(Method::GET, "/nope", Some(TOKEN), None, ""),
            404,
            "not_found",
            None,
        ),
        case(
            "wrong method",
            req(Method::DELETE, "/kickoff", Some(TOKEN), None, ""),
            405,
            "method_not_allowed",
            None,
        ),
    ];
    let mut failures = Vec::new();
    for case in cases {
        let answer = app.send(case.request).await;
        assert_ne!(answer.status.as_u16(), 500, "{}: 500 for bad input", case.name);
        let ok = answer.status.as_u16() == case.status
            && answer.body["error"] == case.code
            && answer.body["message"].as_str().is_some_and(|m| !m.is_empty())
            && answer.body["details"].is_object()
            && case.field.is_none_or(|f| answer.body["details"]["field"] == f);
        if !ok {
            failures.push(format!(
                "{}: expected {} {} {:?}, got {} {}",
                case.name, case.status, case.code, case.field, answer.status, answer.body
            ));
        }
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));

    // Nothing of any refused kickoff was stored.
    let counts = app.server.state().store().state_counts().await.unwrap();
    assert_eq!(counts, Default::default());
}

#[tokio::test]
async fn error_details_name_strategies_and_missing_inputs() {
    let app = support::demo_server();
    let missing = app.post("/kickoff", json!({})).await;
    assert_eq!(missing.body["details"]["missing_inputs"], json!(["topic"]));
    let unknown = app
        .post(
            "/kickoff",
            hook(json!({"authentication": {"strategy": "kerberos", "token": "s3cr3t"}})),
        )
        .await;
    let known = unknown.body["details"]["known_strategies"].as_array().unwrap();
    assert!(known.iter().any(|s| s == "bearer") && known.iter().any(|s| s == "hmac"));
    assert_eq!(unknown.body["details"]["strategy"], "kerberos");
    assert!(!unknown.body.to_string().contains("s3cr3t"));
    let unauthorized = app.send(req(Method::GET, "/inputs", None, None, "")).await;
    assert_eq!(unauthorized.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
}

/// A memory store whose readiness check hangs or fails, as told.
struct SickStore {
    inner: hookstream_server::store::MemoryStore,
    hang: bool,
}

#[async_trait::async_trait]
impl hookstream_server::store::Store for SickStore {
    fn bus(&self) -> std::sync::Arc<dyn hookstream_events_core::Bus> {
        self.inner.bus()
    }
    fn ledger(&self) -> std::sync::Arc<dyn hookstream_delivery_http::Ledger> {
        self.inner.ledger()
    }
    async fn delivery_stats(
        &self,
        pair: hookstream_delivery_http::PairKey,
    ) -> Result<Option<hookstream_delivery_http::DeliveryStats>, StoreError> {
        self.inner.delivery_stats(pair).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        Err(StoreError::backend("disk on fire"))
    }
    async fn create_execution(&self, e: Execution) -> Result<(), StoreError> {
        self.inner.create_execution(e).await
    }
    async fn execution(&self, id: uuid::Uuid) -> Result<Execution, StoreError> {
        self.inner.execution(id).await
    }
    async fn mark_running(
        &self,
        id: uuid::Uuid,
        at: hookstream_events_core::Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.mark_running(id, at).await
    }
    async fn finish_execution(
        &self,
        id: uuid::Uuid,
        completion: hookstream_server::store::Completion,
    ) -> Result<hookstream_server::store::Finished, StoreError> {
        self.inner.finish_execution(id, completion).await
    }
    async fn unfinished_executions(&self) -> Result<Vec<Execution>, StoreError> {
        self.inner.unfinished_executions().await
    }
    async fn state_counts(&self) -> Result<hookstream_server::store::StateCounts, StoreError> {
        self.inner.state_counts().await
    }
}

use hookstream_server::store::{Execution, StoreError};

/// The hanging store never answers, so the 100 ms timeout always fires (no timing race).
#[tokio::test]
async fn a_hanging_store_times_out_and_a_failing_one_is_not_ready() {
    let hanging = SickStore { inner: Default::default(), hang: true };
    let app = support::TestApp::new(
        support::builder()
            .store(std::sync::Arc::new(hanging))
            .request_timeout(std::time::Duration::from_millis(100)),
    );
    let answer = app.get("/readyz").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.body["error"], "request_timeout");

    let failing = SickStore { inner: Default::default(), hang: false };
    let app = support::TestApp::new(support::builder().store(std::sync::Arc::new(failing)));
    let answer = app.get("/readyz").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.body["error"], "unavailable");
    assert!(!answer.body.to_string().contains("fire"), "a backend error leaked: {}", answer.body);
}
