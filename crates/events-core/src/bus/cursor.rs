//! [`Cursor`]: the subscriber-side bookkeeping every bus backend shares — where a subscription
//! stands in its execution's log, which events it hands out again (`redelivered`), what it may
//! acknowledge, how a negative acknowledgement rewinds it, and how a live one reports lag.
//!
//! It holds no storage and does no IO: a backend fills it from its log (memory, a file, a
//! stream) with [`Cursor::extend`] and asks it what to do next. Keeping these rules in one
//! place is what makes every backend behave alike under the conformance suite.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{BusError, Delivered};
use crate::event::Event;

/// A subscription's position and redelivery state (see the module docs).
#[derive(Debug)]
pub struct Cursor {
    /// The last sequence taken from the log into `buf`.
    taken: u64,
    buf: VecDeque<Arc<Event>>,
    /// Sequences up to here were handed out before: `redelivered` is set on them.
    redeliver_upto: u64,
    /// The highest sequence handed out (or the start position).
    handed: u64,
    /// The acknowledged position; `None` for a live subscription.
    acked: Option<u64>,
    /// Set by a nack with a delay: nothing is handed out before it.
    not_before: Option<Instant>,
    capacity: u64,
}

impl Cursor {
    /// A durable subscription's cursor, re-opened at its acknowledged position `acked`; events
    /// up to `previously_handed` were handed out before and are marked redelivered.
    pub fn durable(acked: u64, previously_handed: u64, capacity: u64) -> Self {
        Self {
            taken: acked,
            buf: VecDeque::new(),
            redeliver_upto: previously_handed,
            handed: acked,
            acked: Some(acked),
            not_before: None,
            capacity,
        }
    }

    /// A live subscription's cursor starting after `start`, at most `capacity` behind.
    pub fn live(start: u64, capacity: u64) -> Self {
        Self {
            taken: start,
            buf: VecDeque::new(),
            redeliver_upto: 0,
            handed: start,
            acked: None,
            not_before: None,
            capacity,
        }
    }

    /// The last sequence taken from the log: the next read starts after it.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// The highest sequence handed out (or the start position).
    pub fn handed(&self) -> u64 {
        self.handed
    }

    /// The acknowledged position (`None` for a live subscription).
    pub fn acked(&self) -> Option<u64> {
        self.acked
    }

    /// Hands out the next event already taken from the log, if any.
    pub fn pop(&mut self) -> Option<Delivered> {
        let event = self.buf.pop_front()?;
        let sequence = event.sequence;
        self.handed = self.handed.max(sequence);
        Some(Delivered::new(event, sequence <= self.redeliver_upto))
    }

    /// The instant a delayed nack asked to wait for, once.
    pub fn take_delay(&mut self) -> Option<Instant> {
        self.not_before.take()
    }

    /// For a live subscription more than its capacity behind `last`: skips to `capacity`
    /// behind and returns how many events it skipped.
    pub fn lag(&mut self, last: u64) -> Option<u64> {
        if self.acked.is_some() || last.saturating_sub(self.taken) <= self.capacity {
            return None;
        }
        let skipped = last - self.capacity - self.taken;
        self.taken += skipped;
        self.handed = self.taken;
        Some(skipped)
    }

    /// Takes `events` (consecutive, in order, after [`Cursor::taken`]) from the log.
    pub fn extend(&mut self, events: impl IntoIterator<Item = Arc<Event>>) {
        self.buf.extend(events);
        self.taken = self.buf.back().map_or(self.taken, |e| e.sequence);
    }

    /// Moves past sequences that are gone from the log (pruned), up to `sequence`.
    pub fn skip_to(&mut self, sequence: u64) {
        self.taken = self.taken.max(sequence);
    }

    /// Checks an acknowledgement up to `sequence`: `Ok(true)` when it moves the position,
    /// `Ok(false)` when it was acknowledged already. Record it with [`Cursor::record_ack`].
    pub fn check_ack(&self, sequence: u64) -> Result<bool, BusError> {
        let acked = self.acked.ok_or(BusError::NotDurable)?;
        if sequence > self.handed {
            return Err(BusError::NotDelivered { sequence });
        }
        Ok(sequence > acked)
    }

    /// Records an acknowledgement up to `sequence` (the backend has stored it).
    pub fn record_ack(&mut self, sequence: u64) {
        if let Some(acked) = self.acked.as_mut() {
            *acked = (*acked).max(sequence);
        }
    }

    /// Negative acknowledgement: hands out again from `sequence` (never before the
    /// acknowledged position), no sooner than `delay` from now.
    pub fn nack(&mut self, sequence: u64, delay: Duration) -> Result<(), BusError> {
        let acked = self.acked.ok_or(BusError::NotDurable)?;
        if sequence == 0 || sequence > self.handed {
            return Err(BusError::NotDelivered { sequence });
        }
        let from = sequence.max(acked + 1);
        self.redeliver_upto = self.redeliver_upto.max(self.handed);
        self.taken = from - 1;
        self.buf.clear();
        self.not_before = (!delay.is_zero()).then(|| Instant::now() + delay);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Draft, EventType};

    fn events(range: std::ops::RangeInclusive<u64>) -> Vec<Arc<Event>> {
        let execution = uuid::Uuid::nil();
        range
            .map(|seq| {
                let draft = Draft::new(EventType::new("task_started").unwrap(), Default::default());
                Arc::new(draft.into_event(execution, seq))
            })
            .collect()
    }

    #[test]
    fn a_nack_rewinds_to_after_the_acknowledged_position_and_marks_redeliveries() {
        let mut cursor = Cursor::durable(0, 0, 16);
        cursor.extend(events(1..=4));
        let first: Vec<_> = std::iter::from_fn(|| cursor.pop()).collect();
        assert!(first.iter().all(|d| !d.redelivered));
        assert_eq!(cursor.handed(), 4);
        assert!(cursor.check_ack(2).unwrap());
        cursor.record_ack(2);
        assert!(!cursor.check_ack(1).unwrap(), "already acknowledged");
        assert!(matches!(cursor.check_ack(5), Err(BusError::NotDelivered { sequence: 5 })));

        cursor.nack(1, Duration::ZERO).unwrap();
        assert_eq!(cursor.taken(), 2, "never before the acknowledged position");
        assert!(cursor.take_delay().is_none());
        cursor.extend(events(3..=5));
        let again: Vec<_> = std::iter::from_fn(|| cursor.pop()).collect();
        let flags: Vec<_> = again.iter().map(|d| (d.event.sequence, d.redelivered)).collect();
        assert_eq!(flags, [(3, true), (4, true), (5, false)]);
    }

    #[test]
    fn a_live_cursor_reports_lag_past_its_capacity_and_takes_no_acks() {
        let mut cursor = Cursor::live(0, 4);
        assert_eq!(cursor.lag(4), None);
        assert_eq!(cursor.lag(10), Some(6));
        assert_eq!(cursor.taken(), 6);
        assert!(matches!(cursor.check_ack(1), Err(BusError::NotDurable)));
        assert!(matches!(cursor.nack(1, Duration::ZERO), Err(BusError::NotDurable)));
    }
}
