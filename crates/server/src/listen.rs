//! `hookstream listen`: a local webhook receiver for developing against hookstream. It accepts
//! `POST` on any path of `127.0.0.1:<port>`, checks the bearer token or the Standard Webhooks
//! signature when told to, and reports each batch readably: webhook-id, event count, types,
//! sequence range, and whether the sequence continues without a gap.
//!
//! The receiving half ([`router`]) hands every request to a channel as a [`Received`]; the
//! printing half ([`run`]) prints them. `hookstream demo` reuses the receiving half with its
//! own display. The receiver never answers 5xx; it answers 401 when authentication fails and
//! 400 for a body that is not a hookstream batch, so a sender dead-letters those at once.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hookstream_auth::signature::{verify, SigningSecret, WEBHOOK_ID};
use hookstream_auth::Secret;
use hookstream_events_core::Event;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::cli::ListenArgs;

/// Request bodies accepted at most (hookstream's batches stay under 1 MiB).
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// What the receiver checks on every request.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ListenAuth {
    /// Nothing: every request is accepted.
    None,
    /// `Authorization: Bearer <token>`, compared in constant time.
    Bearer(Secret),
    /// A valid Standard Webhooks `webhook-signature` within the timestamp tolerance.
    Signature(SigningSecret),
}

/// The settings of the receiver.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ListenConfig {
    /// Where to listen (`127.0.0.1:<port>`; port 0 picks a free one).
    pub addr: SocketAddr,
    /// What to check.
    pub auth: ListenAuth,
    /// Print every event on its own line too.
    pub show_events: bool,
}

/// Why the receiver's flags were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenConfigError {
    /// `--secret` is not a usable signing secret.
    #[error("invalid --secret: {0}; expected whsec_<base64>")]
    Secret(#[source] hookstream_auth::signature::SecretFormatError),
    /// `--token` is empty.
    #[error("invalid --token: expected a non-empty token")]
    EmptyToken,
}

impl ListenConfig {
    /// A receiver on `127.0.0.1:port` checking `auth`.
    pub fn new(port: u16, auth: ListenAuth) -> Self {
        Self { addr: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port), auth, show_events: false }
    }

    /// The settings of `hookstream listen`'s flags.
    pub fn from_args(args: &ListenArgs) -> Result<Self, ListenConfigError> {
        let auth = match (&args.token, &args.secret) {
            (Some(token), _) if token.trim().is_empty() => {
                return Err(ListenConfigError::EmptyToken)
            }
            (Some(token), _) => ListenAuth::Bearer(Secret::new(token.trim())),
            (None, Some(secret)) => ListenAuth::Signature(
                SigningSecret::parse(secret.trim()).map_err(ListenConfigError::Secret)?,
            ),
            (None, None) => ListenAuth::None,
        };
        let mut config = Self::new(args.port, auth);
        config.show_events = args.events;
        Ok(config)
    }
}

/// The outcome of the authentication check of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthVerdict {
    /// No check was configured.
    Unchecked,
    /// The bearer token matched.
    TokenOk,
    /// The signature verified.
    SignatureOk,
    /// The check failed, for this reason (answered 401).
    Rejected(String),
}

impl AuthVerdict {
    /// Whether the request was refused.
    pub fn is_rejected(&self) -> bool {
        matches!(self, Self::Rejected(_))
    }
}

impl fmt::Display for AuthVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unchecked => f.write_str("auth not checked"),
            Self::TokenOk => f.write_str("bearer token ok"),
            Self::SignatureOk => f.write_str("signature ok"),
            Self::Rejected(reason) => write!(f, "REJECTED with 401: {reason}"),
        }
    }
}

/// One request the receiver got.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Received {
    /// The `webhook-id` header (the batch id), if any.
    pub webhook_id: Option<String>,
    /// The authentication check.
    pub auth: AuthVerdict,
    /// The batch's events, or why the body is not a hookstream batch.
    pub events: Result<Vec<Event>, String>,
    /// Body bytes.
    pub bytes: usize,
}

#[derive(Deserialize)]
struct Batch {
    events: Vec<Event>,
}

#[derive(Clone)]
struct Receiver {
    auth: ListenAuth,
    tx: mpsc::UnboundedSender<Received>,
}

/// The receiving half: a router that answers `POST` on any path and sends each request to
/// `tx`, checking `auth` first.
pub fn router(auth: ListenAuth, tx: mpsc::UnboundedSender<Received>) -> Router {
    Router::new()
        .fallback(receive)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(Receiver { auth, tx })
}

async fn receive(
    State(receiver): State<Receiver>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != axum::http::Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "hookstream listen accepts POST only\n")
            .into_response();
    }
    let auth = check(&receiver.auth, &headers, &body);
    let webhook_id = headers.get(WEBHOOK_ID).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let events = if auth.is_rejected() {
        Ok(Vec::new())
    } else {
        serde_json::from_slice::<Batch>(&body)
            .map(|batch| batch.events)
            .map_err(|e| format!("not a hookstream batch: {e}"))
    };
    let status = match (&auth, &events) {
        (AuthVerdict::Rejected(_), _) => StatusCode::UNAUTHORIZED,
        (_, Err(_)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let answer = match (&auth, &events) {
        (AuthVerdict::Rejected(reason), _) => {
            serde_json::json!({"error": "unauthorized", "message": reason})
        }
        (_, Err(reason)) => serde_json::json!({"error": "bad_request", "message": reason}),
        (_, Ok(events)) => serde_json::json!({"received": events.len()}),
    };
    let _ = receiver.tx.send(Received { webhook_id, auth, events, bytes: body.len() });
    (status, axum::Json(answer)).into_response()
}

fn check(auth: &ListenAuth, headers: &HeaderMap, body: &[u8]) -> AuthVerdict {
    match auth {
        ListenAuth::None => AuthVerdict::Unchecked,
        ListenAuth::Bearer(token) => {
            let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
                return AuthVerdict::Rejected("no Authorization header".into());
            };
            let Some(presented) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer "))
            else {
                return AuthVerdict::Rejected("Authorization is not a bearer token".into());
            };
            if bool::from(presented.trim().as_bytes().ct_eq(token.expose().as_bytes())) {
                AuthVerdict::TokenOk
            } else {
                AuthVerdict::Rejected("wrong bearer token".into())
            }
        }
        ListenAuth::Signature(secret) => match verify(secret, headers, body, SystemTime::now()) {
            Ok(()) => AuthVerdict::SignatureOk,
            Err(error) => AuthVerdict::Rejected(format!("bad signature: {error}")),
        },
    }
}

/// A one-line description of a batch's events: count, sequence range and types in order of
/// first appearance with their counts (`llm_stream_chunk x12`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchSummary {
    /// Events in the batch.
    pub count: usize,
    /// The lowest and highest sequence.
    pub sequences: Option<(u64, u64)>,
    /// Types in order of first appearance, with counts.
    pub types: Vec<(String, usize)>,
}

impl BatchSummary {
    /// The summary of `events`.
    pub fn of(events: &[Event]) -> Self {
        let mut types: Vec<(String, usize)> = Vec::new();
        for event in events {
            match types.iter_mut().find(|(name, _)| name == event.event_type.as_str()) {
                Some((_, n)) => *n += 1,
                None => types.push((event.event_type.as_str().to_owned(), 1)),
            }
        }
        let min = events.iter().map(|e| e.sequence).min();
        let max = events.iter().map(|e| e.sequence).max();
        Self { count: events.len(), sequences: min.zip(max), types }
    }

    /// The sequence range as text (`seq 1-20`, `seq 7`, `no events`).
    pub fn range(&self) -> String {
        match self.sequences {
            Some((a, b)) if a == b => format!("seq {a}"),
            Some((a, b)) => format!("seq {a}-{b}"),
            None => "no events".to_owned(),
        }
    }

    /// The types as text (`task_started, llm_stream_chunk x12`).
    pub fn type_list(&self) -> String {
        self.types
            .iter()
            .map(|(name, n)| if *n == 1 { name.clone() } else { format!("{name} x{n}") })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Tracks, per execution, the sequences seen so far, to say whether each batch continues
/// without a gap and whether a batch is a redelivery.
#[derive(Debug, Default)]
pub struct SequenceTracker {
    next: HashMap<Uuid, u64>,
    seen: HashMap<Uuid, HashSet<u64>>,
    batch_ids: HashSet<String>,
}

impl SequenceTracker {
    /// Records a batch; returns remarks (a gap, a redelivered batch), empty when in order.
    pub fn record(&mut self, webhook_id: Option<&str>, events: &[Event]) -> Vec<String> {
        let mut remarks = Vec::new();
        if let Some(id) = webhook_id {
            if !self.batch_ids.insert(id.to_owned()) {
                remarks.push("redelivery of a batch already received".to_owned());
            }
        }
        for event in events {
            let next = self.next.entry(event.execution_id).or_insert(1);
            let seen = self.seen.entry(event.execution_id).or_default();
            if !seen.insert(event.sequence) {
                continue;
            }
            if event.sequence > *next && !remarks.iter().any(|r| r.starts_with("gap")) {
                remarks.push(format!("gap: expected seq {next}, got {}", event.sequence));
            } else if event.sequence < *next {
                remarks.push(format!("seq {} arrived late", event.sequence));
            }
            *next = (*next).max(event.sequence + 1);
        }
        remarks
    }

    /// Whether every execution's sequences so far are exactly 1..=n.
    pub fn gap_free(&self) -> bool {
        self.seen.values().all(|seen| seen.len() as u64 == seen.iter().copied().max().unwrap_or(0))
    }

    /// Distinct events seen.
    pub fn distinct_events(&self) -> usize {
        self.seen.values().map(HashSet::len).sum()
    }
}

/// Serves the receiver on `listener` until `shutdown` resolves, printing each request to
/// stdout: `listening on http://<addr>` first, then per batch a summary line and a types line.
pub async fn run(
    config: ListenConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    match &config.auth {
        ListenAuth::None => println!("accepting every request (no --token or --secret given)"),
        ListenAuth::Bearer(_) => println!("requiring Authorization: Bearer <token>"),
        ListenAuth::Signature(_) => println!("requiring a valid Standard Webhooks signature"),
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        let mut tracker = SequenceTracker::default();
        let mut number = 0u64;
        while let Some(received) = rx.recv().await {
            number += 1;
            for line in describe(number, &received, &mut tracker, config.show_events) {
                println!("{line}");
            }
        }
    });
    let app = router(config.auth.clone(), tx);
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    let _ = printer.await;
    served
}

/// The lines printed for one request.
pub fn describe(
    number: u64,
    received: &Received,
    tracker: &mut SequenceTracker,
    show_events: bool,
) -> Vec<String> {
    let id = received.webhook_id.as_deref().unwrap_or("(no webhook-id)");
    let events = match (&received.auth, &received.events) {
        (AuthVerdict::Rejected(_), _) => {
            return vec![format!("#{number} webhook-id {id}: {}", received.auth)];
        }
        (_, Err(reason)) => {
            return vec![format!("#{number} webhook-id {id}: answered 400, {reason}")];
        }
        (_, Ok(events)) => events,
    };
    let summary = BatchSummary::of(events);
    let remarks = tracker.record(received.webhook_id.as_deref(), events);
    let mut head = format!(
        "#{number} webhook-id {id}: {} event{}, {}, {}",
        summary.count,
        if summary.count == 1 { "" } else { "s" },
        summary.range(),
        received.auth
    );
    for remark in remarks {
        head.push_str(&format!(" [{remark}]"));
    }
    let mut lines = vec![head, format!("    {}", summary.type_list())];
    if show_events {
        for event in events {
            let mut data = serde_json::Value::Object(event.data.clone()).to_string();
            if data.len() > 100 {
                let cut = (0..=100).rev().find(|i| data.is_char_boundary(*i)).unwrap_or(0);
                data.truncate(cut);
                data.push_str("...");
            }
            lines.push(format!("    {:>5} {} {}", event.sequence, event.event_type, data));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookstream_events_core::{Draft, EventType};

    fn events(execution: Uuid, sequences: &[u64]) -> Vec<Event> {
        sequences
            .iter()
            .map(|s| {
                let kind = if *s % 2 == 0 { "llm_stream_chunk" } else { "task_started" };
                Draft::new(EventType::new(kind).expect("valid"), Default::default())
                    .into_event(execution, *s)
            })
            .collect()
    }

    #[test]
    fn a_summary_counts_types_in_order_and_gives_the_range() {
        let summary = BatchSummary::of(&events(Uuid::new_v4(), &[3, 4, 5, 6]));
        assert_eq!(summary.range(), "seq 3-6");
        assert_eq!(summary.type_list(), "task_started x2, llm_stream_chunk x2");
        assert_eq!(BatchSummary::of(&[]).range(), "no events");
    }

    #[test]
    fn the_tracker_reports_gaps_and_redeliveries() {
        let execution = Uuid::new_v4();
        let mut tracker = SequenceTracker::default();
        assert!(tracker.record(Some("a"), &events(execution, &[1, 2])).is_empty());
        let remarks = tracker.record(Some("b"), &events(execution, &[4]));
        assert_eq!(remarks, vec!["gap: expected seq 3, got 4".to_owned()]);
        assert!(!tracker.gap_free());
        let remarks = tracker.record(Some("c"), &events(execution, &[3]));
        assert_eq!(remarks, vec!["seq 3 arrived late".to_owned()]);
        assert!(tracker.gap_free());
        let remarks = tracker.record(Some("a"), &events(execution, &[1, 2]));
        assert_eq!(remarks, vec!["redelivery of a batch already received".to_owned()]);
        assert_eq!(tracker.distinct_events(), 4);
    }

    #[test]
    fn bearer_and_signature_checks() {
        let mut headers = HeaderMap::new();
        let bearer = ListenAuth::Bearer(Secret::new("t0k"));
        assert!(check(&bearer, &headers, b"{}").is_rejected());
        headers.insert("authorization", "Bearer nope".parse().expect("header"));
        assert_eq!(
            check(&bearer, &headers, b"{}"),
            AuthVerdict::Rejected("wrong bearer token".into())
        );
        headers.insert("authorization", "Bearer t0k".parse().expect("header"));
        assert_eq!(check(&bearer, &headers, b"{}"), AuthVerdict::TokenOk);

        let secret =
            SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let signature = hookstream_auth::signature::sign(&secret, "msg_1", now, b"{}");
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", "msg_1".parse().expect("header"));
        headers.insert("webhook-timestamp", now.to_string().parse().expect("header"));
        headers.insert("webhook-signature", signature.parse().expect("header"));
        let signed = ListenAuth::Signature(secret);
        assert_eq!(check(&signed, &headers, b"{}"), AuthVerdict::SignatureOk);
        assert!(check(&signed, &headers, b"{ }").is_rejected());
    }
}
