//! Batching: [`Batcher`] groups a pair's matching events by the rules of SPEC §4 (count, wait
//! since the first event, body bytes, end of execution), writing each into the open batch's
//! body as it comes, and tracks up to which sequence the bus may be acknowledged once the
//! batch is done (events the filter skipped in between).
//!
//! Pure logic, no IO, no clock of its own: callers pass `now` and ask for the deadline. An idle
//! pair's batcher holds no buffer.

use hookstream_events_core::Event;
use tokio::time::Instant;

use crate::config::{BatchConfig, Mode};
use crate::encode::{BodyWriter, EncodedBatch};

/// A batch ready to send, and the sequence up to which the bus is acknowledged once it is
/// delivered or dead-lettered.
#[derive(Debug, PartialEq)]
pub(crate) struct Ready {
    pub(crate) batch: EncodedBatch,
    pub(crate) ack_upto: u64,
}

/// A pair's open batch.
#[derive(Debug)]
pub(crate) struct Batcher {
    max_events: usize,
    max_wait: Option<std::time::Duration>,
    max_bytes: usize,
    open: BodyWriter,
    first_at: Option<Instant>,
    ack_upto: u64,
    /// The last batch's body size: the next buffer's first capacity.
    last_size: usize,
}

impl Batcher {
    pub(crate) fn new(mode: &Mode) -> Self {
        let (max_events, max_wait, max_bytes) = match mode {
            Mode::Realtime => (1, None, usize::MAX),
            Mode::Batched(BatchConfig { max_events, max_wait, max_bytes }) => {
                (max_events.get(), Some(*max_wait), max_bytes.get())
            }
        };
        Self {
            max_events,
            max_wait,
            max_bytes,
            open: BodyWriter::default(),
            first_at: None,
            ack_upto: 0,
            last_size: 512,
        }
    }

    /// Adds a matching event; pushes to `out` what became ready: the open batch when this
    /// event would make its body pass `max_bytes`, and the batch holding this event when it
    /// reached `max_events`. A single event above `max_bytes` is a batch of its own. On an
    /// encoding error nothing changes.
    /// `now` is asked only when a batch opens.
    pub(crate) fn push(
        &mut self,
        event: &Event,
        now: impl Fn() -> Instant,
        out: &mut Vec<Ready>,
    ) -> Result<(), serde_json::Error> {
        if self.open.is_empty() {
            self.start(now());
        }
        if let Err(e) = self.open.push(event) {
            if self.open.is_empty() {
                self.first_at = None;
            }
            return Err(e);
        }
        if self.open.len() > 1 && self.open.closed_len() > self.max_bytes {
            if let Some((sequence, json)) = self.open.pop() {
                out.extend(self.take());
                self.start(now());
                self.open.push_json(sequence, &json);
            }
        }
        self.ack_upto = self.ack_upto.max(event.sequence);
        if self.open.len() >= self.max_events {
            out.extend(self.take());
        }
        Ok(())
    }

    /// Notes an event the filter skipped; returns the sequence to acknowledge at once when no
    /// batch is open (else the open batch's acknowledgement covers it).
    pub(crate) fn skip(&mut self, sequence: u64) -> Option<u64> {
        if self.open.is_empty() {
            Some(sequence)
        } else {
            self.ack_upto = self.ack_upto.max(sequence);
            None
        }
    }

    /// When the open batch must be sent (its first event's time plus `max_wait`).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        Some(self.first_at? + self.max_wait?)
    }

    /// The open batch, if any, leaving none open.
    pub(crate) fn take(&mut self) -> Option<Ready> {
        if self.open.is_empty() {
            return None;
        }
        self.first_at = None;
        let batch = std::mem::take(&mut self.open).finish();
        self.last_size = batch.body.len();
        Some(Ready { batch, ack_upto: self.ack_upto })
    }

    fn start(&mut self, now: Instant) {
        self.first_at = Some(now);
        let room = self.last_size + self.last_size / 8;
        self.open = BodyWriter::with_capacity(room.min(self.max_bytes.saturating_add(64)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookstream_events_core::{Data, Draft, EventType};
    use proptest::prelude::*;
    use std::num::NonZeroUsize;
    use std::time::Duration;

    fn ev(sequence: u64, len: usize) -> Event {
        let mut data = Data::new();
        data.insert("pad".into(), serde_json::json!("x".repeat(len)));
        Draft::new(EventType::new("task_started").unwrap(), data)
            .into_event(uuid::Uuid::nil(), sequence)
    }

    fn batched(events: usize, bytes: usize) -> Batcher {
        Batcher::new(&Mode::Batched(BatchConfig::new(
            NonZeroUsize::new(events).unwrap(),
            Duration::from_secs(1),
            NonZeroUsize::new(bytes).unwrap(),
        )))
    }

    #[test]
    fn realtime_sends_each_event_alone() {
        let mut b = Batcher::new(&Mode::Realtime);
        let mut out = Vec::new();
        b.push(&ev(1, 10), Instant::now, &mut out).unwrap();
        b.push(&ev(2, 10), Instant::now, &mut out).unwrap();
        assert_eq!(out.iter().map(|r| r.batch.len()).collect::<Vec<_>>(), [1, 1]);
        assert!(b.deadline().is_none());
    }

    #[test]
    fn skipped_events_are_acked_at_once_or_with_the_open_batch() {
        let mut b = batched(10, 10_000);
        let mut out = Vec::new();
        assert_eq!(b.skip(1), Some(1));
        b.push(&ev(2, 5), Instant::now, &mut out).unwrap();
        assert_eq!(b.skip(3), None);
        let ready = b.take().unwrap();
        assert_eq!((ready.batch.len(), ready.ack_upto), (1, 3));
        assert!(b.take().is_none());
    }

    #[test]
    fn deadline_runs_from_the_first_event() {
        let mut b = batched(10, 10_000);
        let t0 = Instant::now();
        let mut out = Vec::new();
        b.push(&ev(1, 5), || t0, &mut out).unwrap();
        b.push(&ev(2, 5), || t0 + Duration::from_millis(700), &mut out).unwrap();
        assert_eq!(b.deadline(), Some(t0 + Duration::from_secs(1)));
        b.take();
        assert_eq!(b.deadline(), None);
    }

    proptest! {
        /// Batches keep order, cover every event once, respect the count cap, respect the
        /// byte cap unless a single event is larger on its own, and their bodies are exactly
        /// the events' envelopes.
        #[test]
        fn batches_keep_order_and_caps(
            lens in proptest::collection::vec(1usize..300, 1..120),
            max_events in 1usize..20,
            max_bytes in 100usize..3000,
        ) {
            let mut b = batched(max_events, max_bytes);
            let mut out = Vec::new();
            let events: Vec<Event> =
                lens.iter().enumerate().map(|(i, len)| ev(i as u64 + 1, *len)).collect();
            for e in &events {
                b.push(e, Instant::now, &mut out).unwrap();
            }
            out.extend(b.take());
            let seqs: Vec<u64> = out.iter().flat_map(|r| r.batch.sequences()).collect();
            prop_assert_eq!(seqs, (1..=lens.len() as u64).collect::<Vec<_>>());
            for r in &out {
                prop_assert!(r.batch.len() <= max_events);
                prop_assert!(r.batch.body.len() <= max_bytes || r.batch.len() == 1);
                prop_assert_eq!(r.ack_upto, r.batch.last_sequence());
                let parsed: serde_json::Value = serde_json::from_slice(&r.batch.body).unwrap();
                let first = (r.batch.first_sequence() - 1) as usize;
                let expected = &events[first..first + r.batch.len()];
                prop_assert_eq!(parsed, serde_json::json!({ "events": expected }));
            }
        }
    }
}
