//! `GET /executions/{id}/stream`: Server-Sent Events. Replays the store's events after the
//! resume point (`Last-Event-ID`, else `?after=`, else 0), then follows the live bus, without
//! a gap or a duplicate: every event is sent once, in sequence order, and the stream ends
//! after `crew_execution_completed` (or when the server shuts down).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use hookstream_events_core::bus::{RecvError, SubscribeOptions};
use hookstream_events_core::{Bus, Event};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use super::extract::{ExecutionId, QueryParams};
use super::wire::ReplayQuery;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Store;

/// Events per store read while replaying.
const PAGE: usize = 500;
/// Events buffered between the pump and the client connection.
const BUFFER: usize = 256;

/// `GET /executions/{id}/stream`.
pub(super) async fn stream(
    State(state): State<AppState>,
    ExecutionId(id): ExecutionId,
    headers: HeaderMap,
    QueryParams(query): QueryParams<ReplayQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    state.store().execution(id).await?;
    let after = match headers.get("last-event-id") {
        Some(value) => {
            value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or_else(|| {
                ApiError::invalid("Last-Event-ID", "Last-Event-ID must be a sequence number")
            })?
        }
        None => query.after.unwrap_or(0),
    };
    let (tx, rx) = mpsc::channel(BUFFER);
    let bus = Arc::clone(state.bus());
    let store = Arc::clone(state.store());
    let shutdown = state.inner().shutdown.clone();
    tokio::spawn(async move {
        let mut pump = Pump { bus, store, id, last: after, tx };
        tokio::select! {
            () = pump.run() => {}
            () = shutdown.cancelled() => {}
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()))
}

struct Pump {
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    id: Uuid,
    /// The last sequence sent.
    last: u64,
    tx: mpsc::Sender<Result<SseEvent, Infallible>>,
}

/// Whether the stream goes on after an event.
enum Flow {
    More,
    Done,
}

impl Pump {
    async fn run(&mut self) {
        if let Flow::Done = self.catch_up(None).await {
            return;
        }
        // Resumed at or past the end of an ended execution: nothing will come.
        let ended = self.store.execution(self.id).await.is_ok_and(|e| e.state.is_final());
        if ended {
            // The terminal event may have been stored between the replay and this check.
            self.catch_up(None).await;
            return;
        }
        let options = SubscribeOptions::live(self.id, Some(self.last));
        let Ok(mut live) = self.bus.subscribe(options).await else { return };
        loop {
            let next = tokio::select! {
                next = live.next() => next,
                () = self.tx.closed() => return,
            };
            let flow = match next {
                None => return,
                Some(Ok(delivered)) => {
                    let event = delivered.event;
                    if event.sequence <= self.last {
                        continue;
                    }
                    if event.sequence > self.last + 1 {
                        // A gap between what was sent and the live position: fill it from
                        // the store first.
                        if let Flow::Done = self.catch_up(Some(event.sequence - 1)).await {
                            return;
                        }
                    }
                    self.send(&event).await
                }
                Some(Err(RecvError::Lagged { .. })) => self.catch_up(None).await,
                Some(Err(error)) => {
                    tracing::warn!(execution_id = %self.id, %error, "stream ended: bus failed");
                    return;
                }
            };
            if let Flow::Done = flow {
                return;
            }
        }
    }

    /// Sends the stored events after `last` up to `until` (everything stored when `None`).
    async fn catch_up(&mut self, until: Option<u64>) -> Flow {
        loop {
            let page = match self.bus.read(self.id, self.last, PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(execution_id = %self.id, %error, "stream ended: replay failed");
                    return Flow::Done;
                }
            };
            let full = page.len() == PAGE;
            for event in page {
                if until.is_some_and(|u| event.sequence > u) {
                    return Flow::More;
                }
                if let Flow::Done = self.send(&event).await {
                    return Flow::Done;
                }
            }
            if !full {
                return Flow::More;
            }
        }
    }

    async fn send(&mut self, event: &Event) -> Flow {
        if event.sequence <= self.last {
            return Flow::More;
        }
        let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
        let sse = SseEvent::default()
            .id(event.sequence.to_string())
            .event(event.event_type.as_str())
            .data(data);
        if self.tx.send(Ok(sse)).await.is_err() {
            return Flow::Done;
        }
        self.last = event.sequence;
        if event.event_type.is_terminal() {
            Flow::Done
        } else {
            Flow::More
        }
    }
}
