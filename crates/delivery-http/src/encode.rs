//! Encoding: each event is serialized to its SPEC §2 JSON exactly once, when it enters a
//! batch, and a batch's body `{"events":[...]}` is the concatenation of those bytes, so the
//! body size is known before sending and a 413 split needs no re-serialization.
//!
//! This module owns the wire body of SPEC §4; it does not decide batch boundaries.

use bytes::{BufMut, Bytes, BytesMut};
use hookstream_events_core::Event;

const OPEN: &[u8] = br#"{"events":["#;
const CLOSE: &[u8] = b"]}";

/// One event's JSON, with its sequence.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Encoded {
    pub(crate) sequence: u64,
    pub(crate) json: Bytes,
}

/// Serializes `event` (its envelope, exactly as SPEC §2).
pub(crate) fn encode(event: &Event) -> Result<Encoded, serde_json::Error> {
    let json = serde_json::to_vec(event)?;
    Ok(Encoded { sequence: event.sequence, json: Bytes::from(json) })
}

/// The body size of `count` events whose JSON is `json_bytes` long in total.
pub(crate) fn body_len(count: usize, json_bytes: usize) -> usize {
    // `{"events":[` + the events + a comma between each two + `]}`.
    OPEN.len() + json_bytes + count.saturating_sub(1) + CLOSE.len()
}

/// The body `{"events":[...]}` of `events`.
pub(crate) fn body(events: &[Encoded]) -> Bytes {
    let size = body_len(events.len(), events.iter().map(|e| e.json.len()).sum());
    let mut out = BytesMut::with_capacity(size);
    out.put_slice(OPEN);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(&e.json);
    }
    out.put_slice(CLOSE);
    out.freeze()
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

    #[test]
    fn body_is_the_envelopes_in_an_events_array_and_its_size_is_predicted() {
        let events: Vec<Event> = (1..=3).map(event).collect();
        let encoded: Vec<Encoded> = events.iter().map(|e| encode(e).unwrap()).collect();
        let body = body(&encoded);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let expected = serde_json::json!({ "events": events });
        assert_eq!(parsed, expected);
        assert_eq!(body.len(), body_len(3, encoded.iter().map(|e| e.json.len()).sum()));
        assert_eq!(super::body(&encoded[..1]).len(), body_len(1, encoded[0].json.len()));
        let first = &parsed["events"][0];
        for key in ["id", "execution_id", "timestamp", "type", "sequence", "data"] {
            assert!(first.get(key).is_some(), "{key}");
        }
    }
}
