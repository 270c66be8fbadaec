//! Batching: [`Batcher`] groups a pair's matching events by the rules of SPEC §4 (count, wait
//! since the first event, body bytes, end of execution) and tracks up to which sequence the
//! bus may be acknowledged once the batch is done (events the filter skipped in between).
//!
//! Pure logic, no IO, no clock of its own: callers pass `now` and ask for the deadline.

use tokio::time::Instant;

use crate::config::{BatchConfig, Mode};
use crate::encode::{body_len, Encoded};

/// A batch ready to send, and the sequence up to which the bus is acknowledged once it is
/// delivered or dead-lettered.
#[derive(Debug, PartialEq)]
pub(crate) struct Ready {
    pub(crate) events: Vec<Encoded>,
    pub(crate) ack_upto: u64,
}

/// A pair's open batch.
#[derive(Debug)]
pub(crate) struct Batcher {
    max_events: usize,
    max_wait: Option<std::time::Duration>,
    max_bytes: usize,
    events: Vec<Encoded>,
    json_bytes: usize,
    first_at: Option<Instant>,
    ack_upto: u64,
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
            events: Vec::new(),
            json_bytes: 0,
            first_at: None,
            ack_upto: 0,
        }
    }

    /// Adds a matching event; pushes to `out` what became ready: the open batch when this
    /// event would make its body pass `max_bytes`, and the batch holding this event when it
    /// reached `max_events`. A single event above `max_bytes` is a batch of its own.
    pub(crate) fn push(&mut self, event: Encoded, now: Instant, out: &mut Vec<Ready>) {
        if !self.events.is_empty()
            && body_len(self.events.len() + 1, self.json_bytes + event.json.len()) > self.max_bytes
        {
            out.extend(self.take());
        }
        if self.events.is_empty() {
            self.first_at = Some(now);
            self.events.reserve_exact(self.max_events.min(128));
        }
        self.ack_upto = self.ack_upto.max(event.sequence);
        self.json_bytes += event.json.len();
        self.events.push(event);
        if self.events.len() >= self.max_events {
            out.extend(self.take());
        }
    }

    /// Notes an event the filter skipped; returns the sequence to acknowledge at once when no
    /// batch is open (else the open batch's acknowledgement covers it).
    pub(crate) fn skip(&mut self, sequence: u64) -> Option<u64> {
        if self.events.is_empty() {
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
        if self.events.is_empty() {
            return None;
        }
        self.first_at = None;
        self.json_bytes = 0;
        Some(Ready { events: std::mem::take(&mut self.events), ack_upto: self.ack_upto })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::num::NonZeroUsize;
    use std::time::Duration;

    fn ev(sequence: u64, len: usize) -> Encoded {
        Encoded { sequence, json: Bytes::from(vec![b'x'; len]) }
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
        b.push(ev(1, 10), Instant::now(), &mut out);
        b.push(ev(2, 10), Instant::now(), &mut out);
        assert_eq!(out.iter().map(|r| r.events.len()).collect::<Vec<_>>(), [1, 1]);
        assert!(b.deadline().is_none());
    }

    #[test]
    fn skipped_events_are_acked_at_once_or_with_the_open_batch() {
        let mut b = batched(10, 1000);
        let mut out = Vec::new();
        assert_eq!(b.skip(1), Some(1));
        b.push(ev(2, 5), Instant::now(), &mut out);
        assert_eq!(b.skip(3), None);
        let ready = b.take().unwrap();
        assert_eq!((ready.events.len(), ready.ack_upto), (1, 3));
        assert!(b.take().is_none());
    }

    #[test]
    fn deadline_runs_from_the_first_event() {
        let mut b = batched(10, 1000);
        let t0 = Instant::now();
        let mut out = Vec::new();
        b.push(ev(1, 5), t0, &mut out);
        b.push(ev(2, 5), t0 + Duration::from_millis(700), &mut out);
        assert_eq!(b.deadline(), Some(t0 + Duration::from_secs(1)));
    }

    proptest! {
        /// Batches keep order, cover every event once, respect the count cap, and respect the
        /// byte cap unless a single event is larger on its own.
        #[test]
        fn batches_keep_order_and_caps(
            lens in proptest::collection::vec(1usize..300, 1..200),
            max_events in 1usize..20,
            max_bytes in 20usize..2000,
        ) {
            let mut b = batched(max_events, max_bytes);
            let mut out = Vec::new();
            for (i, len) in lens.iter().enumerate() {
                b.push(ev(i as u64 + 1, *len), Instant::now(), &mut out);
            }
            out.extend(b.take());
            let seqs: Vec<u64> = out.iter().flat_map(|r| r.events.iter().map(|e| e.sequence)).collect();
            prop_assert_eq!(seqs, (1..=lens.len() as u64).collect::<Vec<_>>());
            for r in &out {
                prop_assert!(r.events.len() <= max_events);
                let size = body_len(r.events.len(), r.events.iter().map(|e| e.json.len()).sum());
                prop_assert!(size <= max_bytes || r.events.len() == 1);
                prop_assert_eq!(r.ack_upto, r.events.last().unwrap().sequence);
            }
        }
    }
}
