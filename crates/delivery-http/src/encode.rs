//! Encoding: each event's SPEC §2 envelope, as [`Event::to_json_bytes`] caches it (serialized
//! by serde_json once per event, whichever webhook or attempt asks first), is copied into the
//! body of its batch, `{"events":[...]}`; the byte range of each event is kept, so that the
//! size is known while the batch fills and a 413 split copies halves of the body instead of
//! encoding again.
//!
//! This module owns the wire body of SPEC §4; it does not decide batch boundaries.

use bytes::Bytes;
use hookstream_events_core::Event;

const OPEN: &[u8] = br#"{"events":["#;
const CLOSE: &[u8] = b"]}";

/// Where one event's JSON lies in a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) sequence: u64,
    start: usize,
    end: usize,
}

/// A body being written: `{"events":[` and the events so far, comma-separated.
#[derive(Debug, Default)]
pub(crate) struct BodyWriter {
    buf: Vec<u8>,
    parts: Vec<Part>,
}

impl BodyWriter {
    /// A writer whose buffer starts with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self { buf: Vec::with_capacity(capacity.max(OPEN.len() + CLOSE.len())), parts: Vec::new() }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Events written.
    pub(crate) fn len(&self) -> usize {
        self.parts.len()
    }

    /// The body's size if it were finished now.
    pub(crate) fn closed_len(&self) -> usize {
        self.buf.len().max(OPEN.len()) + CLOSE.len()
    }

    /// Appends `event`'s envelope ([`Event::write_json`]: its cached encoding, or serialized
    /// straight into the body and cached on first use).
    ///
    /// An envelope always encodes, so this does not fail today; the `Result` keeps the
    /// callers' dead-letter path for an event that could not be encoded.
    pub(crate) fn push(&mut self, event: &Event) -> Result<(), serde_json::Error> {
        self.open_or_comma();
        let start = self.buf.len();
        event.write_json(&mut self.buf);
        self.parts.push(Part { sequence: event.sequence, start, end: self.buf.len() });
        Ok(())
    }

    /// Appends an event's JSON as [`BodyWriter::pop`] returned it.
    pub(crate) fn push_json(&mut self, sequence: u64, json: &[u8]) {
        self.open_or_comma();
        let start = self.buf.len();
        self.buf.extend_from_slice(json);
        self.parts.push(Part { sequence, start, end: self.buf.len() });
    }

    /// Removes the last event, returning its sequence and JSON.
    pub(crate) fn pop(&mut self) -> Option<(u64, Vec<u8>)> {
        let last = self.parts.pop()?;
        let json = self.buf.split_off(last.start);
        let keep = if self.parts.is_empty() { OPEN.len() } else { last.start - 1 };
        self.buf.truncate(keep);
        Some((last.sequence, json))
    }

    /// The finished body.
    pub(crate) fn finish(mut self) -> EncodedBatch {
        if self.buf.is_empty() {
            self.buf.extend_from_slice(OPEN);
        }
        self.buf.extend_from_slice(CLOSE);
        EncodedBatch { body: Bytes::from(self.buf), parts: self.parts }
    }

    fn open_or_comma(&mut self) {
        if self.buf.is_empty() {
            self.buf.extend_from_slice(OPEN);
        } else if !self.parts.is_empty() {
            self.buf.push(b',');
        }
    }
}

/// A finished body and where its events lie in it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct EncodedBatch {
    pub(crate) body: Bytes,
    pub(crate) parts: Vec<Part>,
}

impl EncodedBatch {
    /// A batch standing for events that could not be encoded (no body: never sent).
    pub(crate) fn unsent(sequence: u64) -> Self {
        Self { body: Bytes::new(), parts: vec![Part { sequence, start: 0, end: 0 }] }
    }

    /// Events in the batch.
    pub(crate) fn len(&self) -> usize {
        self.parts.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    pub(crate) fn sequences(&self) -> Vec<u64> {
        self.parts.iter().map(|p| p.sequence).collect()
    }

    pub(crate) fn first_sequence(&self) -> u64 {
        self.parts.first().map_or(0, |p| p.sequence)
    }

    pub(crate) fn last_sequence(&self) -> u64 {
        self.parts.last().map_or(0, |p| p.sequence)
    }

    /// The two halves (the first one the smaller when odd), when there are at least two events.
    pub(crate) fn split(&self) -> Option<(Self, Self)> {
        if self.parts.len() < 2 {
            return None;
        }
        let (left, right) = self.parts.split_at(self.parts.len() / 2);
        Some((self.slice(left), self.slice(right)))
    }

    fn slice(&self, parts: &[Part]) -> Self {
        let (start, end) = match (parts.first(), parts.last()) {
            (Some(first), Some(last)) => (first.start, last.end),
            _ => return Self { body: Bytes::from_static(b"{\"events\":[]}"), parts: Vec::new() },
        };
        let mut buf = Vec::with_capacity(OPEN.len() + (end - start) + CLOSE.len());
        buf.extend_from_slice(OPEN);
        // The commas between these events come along with the slice.
        buf.extend_from_slice(&self.body[start..end]);
        buf.extend_from_slice(CLOSE);
        let shift = |at: usize| at - start + OPEN.len();
        let parts = parts
            .iter()
            .map(|p| Part { sequence: p.sequence, start: shift(p.start), end: shift(p.end) })
            .collect();
        Self { body: Bytes::from(buf), parts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookstream_events_core::{Draft, EventType};

    fn event(seq: u64) -> Event {
        let mut data = hookstream_events_core::Data::new();
        data.insert("n".into(), serde_json::json!(seq));
        Draft::new(EventType::new("task_started").unwrap(), data)
            .into_event(uuid::Uuid::new_v4(), seq)
    }

    fn write(events: &[Event]) -> EncodedBatch {
        let mut w = BodyWriter::with_capacity(0);
        for e in events {
            w.push(e).unwrap();
        }
        w.finish()
    }

    #[test]
    fn body_is_the_envelopes_in_an_events_array_and_its_size_is_predicted() {
        let events: Vec<Event> = (1..=3).map(event).collect();
        let mut w = BodyWriter::with_capacity(0);
        for e in &events {
            w.push(e).unwrap();
        }
        let predicted = w.closed_len();
        let batch = w.finish();
        assert_eq!(batch.body.len(), predicted);
        let parsed: serde_json::Value = serde_json::from_slice(&batch.body).unwrap();
        assert_eq!(parsed, serde_json::json!({ "events": events }));
        let first = &parsed["events"][0];
        for key in ["id", "execution_id", "timestamp", "type", "sequence", "data"] {
            assert!(first.get(key).is_some(), "{key}");
        }
        assert_eq!(batch.sequences(), [1, 2, 3]);
    }

    #[test]
    fn body_holds_each_events_serde_json_encoding_and_reuses_it() {
        let events: Vec<Event> = (1..=3).map(event).collect();
        let first = write(&events);
        let mut expected = b"{\"events\":[".to_vec();
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                expected.push(b',');
            }
            expected.extend_from_slice(&serde_json::to_vec(e).unwrap());
        }
        expected.extend_from_slice(b"]}");
        assert_eq!(&first.body[..], &expected[..]);
        // A second webhook's (or attempt's) body is the same bytes, from the events' caches.
        assert_eq!(write(&events), first);
        let cached = events[0].to_json_bytes().as_ptr();
        assert_eq!(events[0].to_json_bytes(), &serde_json::to_vec(&events[0]).unwrap()[..]);
        assert_eq!(events[0].to_json_bytes().as_ptr(), cached);
    }

    #[test]
    fn halves_are_valid_bodies_of_their_events() {
        let events: Vec<Event> = (1..=5).map(event).collect();
        let (left, right) = write(&events).split().unwrap();
        assert_eq!(left, write(&events[..2]));
        assert_eq!(right, write(&events[2..]));
        let (a, b) = right.split().unwrap();
        assert_eq!((a.sequences(), b.sequences()), (vec![3], vec![4, 5]));
        assert_eq!(b, write(&events[3..]));
        assert!(a.split().is_none());
    }

    #[test]
    fn pop_and_push_json_move_an_event_between_bodies() {
        let events: Vec<Event> = (1..=3).map(event).collect();
        let mut w = BodyWriter::with_capacity(0);
        for e in &events {
            w.push(e).unwrap();
        }
        let (sequence, json) = w.pop().unwrap();
        assert_eq!(sequence, 3);
        assert_eq!(w.finish(), write(&events[..2]));
        let mut other = BodyWriter::with_capacity(0);
        other.push_json(sequence, &json);
        assert_eq!(other.finish(), write(&events[2..]));
        let mut single = BodyWriter::with_capacity(0);
        single.push(&events[0]).unwrap();
        single.pop().unwrap();
        assert!(single.is_empty());
        assert_eq!(&single.finish().body[..], b"{\"events\":[]}");
    }
}
