//! The event envelope of SPEC §2: the one wire type every event takes, stored, replayed or
//! delivered, and the draft a producer hands to the bus before it has a sequence.
//!
//! This module owns the JSON shape (`id`, `execution_id`, `timestamp`, `type`, `sequence`,
//! `data`) and the timestamp format (RFC 3339, UTC, milliseconds, `Z`). It does not validate
//! `data` against the catalogue; that is [`crate::catalog`]'s job.
//!
//! An [`Event`] also carries its own JSON encoding, computed the first time
//! [`Event::to_json_bytes`] is asked for it (or taken from [`Event::from_json_bytes`]'s input
//! when that is already the exact encoding), so an event shared by several webhooks or retried
//! is serialized once.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

/// The JSON object every event's `data` is.
pub type Data = serde_json::Map<String, serde_json::Value>;

/// An event as stored, replayed and delivered (SPEC §2).
///
/// Besides its public fields, an event holds a lazily filled cache of its JSON encoding
/// ([`Event::to_json_bytes`]), which equality, [`Debug`] and serde ignore. The cache is not
/// carried by [`Clone`]. Fields are public, so the cache cannot see them change: do not change
/// a field of an event whose encoding was already asked for (events are shared as
/// `Arc<Event>` and never changed in place once built); build a new one with [`Event::new`].
#[derive(Serialize, Deserialize)]
pub struct Event {
    /// Unique id: the producer's own when it gave one, else generated at acceptance.
    pub id: Uuid,
    /// The kickoff id of the run the event belongs to.
    pub execution_id: Uuid,
    /// The producer's time when given, else the time the event was accepted.
    pub timestamp: Timestamp,
    /// A system event type of the catalogue or a custom one.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Per-execution position, starting at 1, gap-free, in acceptance order.
    pub sequence: u64,
    /// The event's fields; `{}` when it has none.
    pub data: Data,
    /// The exact `serde_json::to_vec(&self)`, once asked for.
    #[serde(skip)]
    json: OnceLock<Box<[u8]>>,
}

impl Event {
    /// The event of these fields (SPEC §2), its JSON encoding not computed yet.
    pub fn new(
        id: Uuid,
        execution_id: Uuid,
        timestamp: Timestamp,
        event_type: EventType,
        sequence: u64,
        data: Data,
    ) -> Self {
        Self { id, execution_id, timestamp, event_type, sequence, data, json: OnceLock::new() }
    }

    /// The event's JSON envelope, byte for byte `serde_json::to_vec(self)`: computed on the
    /// first call, then returned from the cache.
    pub fn to_json_bytes(&self) -> &[u8] {
        self.json.get_or_init(|| {
            // Every field serializes infallibly to JSON: string keys, no non-finite floats
            // (`serde_json::Value` cannot hold them).
            serde_json::to_vec(self).unwrap_or_default().into_boxed_slice()
        })
    }

    /// Appends the event's JSON envelope (the bytes of [`Event::to_json_bytes`]) to `out`.
    ///
    /// On first use the event is serialized straight into `out` and the cache copied from
    /// there, which spares the growing buffer of a separate serialization.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        if let Some(json) = self.json.get() {
            out.extend_from_slice(json);
            return;
        }
        let start = out.len();
        if serde_json::to_writer(&mut *out, self).is_ok() {
            // Another thread may have filled the cell meanwhile, with the same bytes.
            let _ = self.json.set(out[start..].into());
        } else {
            out.truncate(start);
            out.extend_from_slice(self.to_json_bytes());
        }
    }

    /// The event `bytes` encode; when `bytes` are exactly its canonical encoding (what
    /// [`Event::to_json_bytes`] would compute, as for an envelope this crate wrote), they are
    /// kept as the cache, so the event is never serialized again.
    ///
    /// Checking costs one serialization pass into a comparing writer, without allocation; any
    /// other valid encoding (spacing, escapes, key order, number forms) is accepted and the
    /// cache is left to be filled on first use.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let event: Self = serde_json::from_slice(bytes)?;
        let mut check = Compare { expected: bytes, at: 0 };
        if serde_json::to_writer(&mut check, &event).is_ok() && check.at == bytes.len() {
            // The cell is new and empty, so this cannot fail.
            let _ = event.json.set(bytes.into());
        }
        Ok(event)
    }
}

/// A writer failing on the first byte that differs from `expected`.
struct Compare<'a> {
    expected: &'a [u8],
    at: usize,
}

impl io::Write for Compare<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.at + buf.len();
        if self.expected.get(self.at..end) == Some(buf) {
            self.at = end;
            Ok(buf.len())
        } else {
            Err(io::Error::other("not the canonical encoding"))
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Clone for Event {
    /// A copy of the fields; the copy computes its own encoding when asked, since a clone is
    /// usually made to be changed.
    fn clone(&self) -> Self {
        Self::new(
            self.id,
            self.execution_id,
            self.timestamp,
            self.event_type.clone(),
            self.sequence,
            self.data.clone(),
        )
    }
}

impl PartialEq for Event {
    /// Equal fields; the encoding cache is ignored.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.execution_id == other.execution_id
            && self.timestamp == other.timestamp
            && self.event_type == other.event_type
            && self.sequence == other.sequence
            && self.data == other.data
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id)
            .field("execution_id", &self.execution_id)
            .field("timestamp", &self.timestamp)
            .field("event_type", &self.event_type)
            .field("sequence", &self.sequence)
            .field("data", &self.data)
            .finish()
    }
}

/// An event before the bus placed it: everything but `execution_id` and `sequence`.
///
/// The id and timestamp are fixed here, so that publishing the same draft twice is
/// recognisably the same event (idempotent publish by id).
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    /// The event's id; the key of idempotent publish.
    pub id: Uuid,
    /// The producer's time, or the time of acceptance.
    pub timestamp: Timestamp,
    /// The event's type.
    pub event_type: EventType,
    /// The event's fields.
    pub data: Data,
}

impl Draft {
    /// A draft with a fresh time-ordered id, stamped now.
    pub fn new(event_type: EventType, data: Data) -> Self {
        Self { id: Uuid::now_v7(), timestamp: Timestamp::now(), event_type, data }
    }

    /// The event this draft becomes at `sequence` of `execution_id`.
    pub fn into_event(self, execution_id: Uuid, sequence: u64) -> Event {
        Event::new(self.id, execution_id, self.timestamp, self.event_type, sequence, self.data)
    }
}

/// A point in time, UTC, at millisecond precision; printed as `2025-02-16T10:58:44.965Z`.
///
/// Parsing accepts any RFC 3339 time (any offset, any sub-second precision) and truncates it
/// to the millisecond in UTC, so producers with microsecond clocks (crewAI) are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The current time, truncated to the millisecond.
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// `at` in UTC, truncated to the millisecond.
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        let at = at.to_offset(UtcOffset::UTC);
        let millis = at.millisecond();
        // A millisecond value is always a valid nanosecond value.
        Self(at.replace_nanosecond(u32::from(millis) * 1_000_000).unwrap_or(at))
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// The time `millis` milliseconds after the Unix epoch, if representable.
    pub fn from_unix_millis(millis: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok().map(Self)
    }

    /// The underlying date-time (UTC).
    pub fn as_datetime(self) -> OffsetDateTime {
        self.0
    }
}

impl Timestamp {
    /// The printed form written into `buf` without `fmt` machinery, for years 0 to 9999 (four
    /// digits, as every time of the RFC 3339 range has); `None` outside that range.
    fn format_into(self, buf: &mut [u8; 24]) -> Option<&str> {
        let t = self.0;
        let year = u16::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        fn put(buf: &mut [u8], value: u16) {
            let mut v = value;
            for b in buf.iter_mut().rev() {
                *b = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        *buf = *b"0000-00-00T00:00:00.000Z";
        put(&mut buf[0..4], year);
        put(&mut buf[5..7], u16::from(u8::from(t.month())));
        put(&mut buf[8..10], u16::from(t.day()));
        put(&mut buf[11..13], u16::from(t.hour()));
        put(&mut buf[14..16], u16::from(t.minute()));
        put(&mut buf[17..19], u16::from(t.second()));
        put(&mut buf[20..23], t.millisecond());
        // Only ASCII digits were written over an ASCII template.
        std::str::from_utf8(buf).ok()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0; 24];
        if let Some(text) = self.format_into(&mut buf) {
            return f.write_str(text);
        }
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

/// Why a timestamp was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid timestamp {input:?}: expected RFC 3339 such as 2025-02-16T10:58:44.965Z")]
pub struct TimestampError {
    input: String,
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OffsetDateTime::parse(s, &Rfc3339)
            .map(Self::from_datetime)
            .map_err(|_| TimestampError { input: s.chars().take(64).collect() })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0; 24];
        match self.format_into(&mut buf) {
            Some(text) => s.serialize_str(text),
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An event type name: a system type of the catalogue or a custom one matching
/// `^[A-Za-z][A-Za-z0-9_.:-]{0,127}$`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventType(String);

/// Why an event type name was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid event type {name:?}: must start with a letter and hold at most 128 of A-Z a-z 0-9 _ . : -"
)]
pub struct EventTypeError {
    name: String,
}

impl EventType {
    /// The type `name`, if it matches the pattern of SPEC §2.
    pub fn new(name: impl Into<String>) -> Result<Self, EventTypeError> {
        let name = name.into();
        let mut chars = name.chars();
        let valid = name.len() <= 128
            && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
        if valid {
            Ok(Self(name))
        } else {
            Err(EventTypeError { name: name.chars().take(140).collect() })
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `crew_execution_completed`, the last event of every execution.
    pub fn is_terminal(&self) -> bool {
        self.0 == TERMINAL_EVENT_TYPE
    }
}

/// The type of the event the server emits exactly once per execution, always last.
pub const TERMINAL_EVENT_TYPE: &str = "crew_execution_completed";

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EventType {
    type Err = EventTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for EventType {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::IngestEvent;
    use proptest::prelude::*;

    /// Every event of the crewAI fixture, placed at its line number.
    fn fixture_events() -> Vec<Event> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/crewai-run.jsonl");
        let execution = Uuid::new_v4();
        std::fs::read_to_string(path)
            .expect("fixture")
            .lines()
            .enumerate()
            .map(|(i, line)| {
                let ingest: IngestEvent = serde_json::from_str(line).expect("ingest shape");
                ingest.into_draft().expect("draft").into_event(execution, i as u64 + 1)
            })
            .collect()
    }

    fn awkward_event() -> Event {
        let data = serde_json::json!({
            "text": "quote \" backslash \\ newline \n tab \t nul \u{0} é 漢 😀 \u{7f}",
            "float": 0.1, "big": 1e300, "neg": -0.0, "int": u64::MAX, "i": i64::MIN,
            "nested": {"z": [1, 2.5, null, true], "a": {}},
        });
        let serde_json::Value::Object(data) = data else { unreachable!() };
        let mut draft = Draft::new(EventType::new("custom.type:x-1").unwrap(), data);
        draft.timestamp = "2025-02-16T10:58:44Z".parse().unwrap();
        draft.into_event(Uuid::nil(), 7)
    }

    #[test]
    fn cached_encoding_is_serde_jsons_byte_for_byte() {
        let mut events = fixture_events();
        assert_eq!(events.len(), 87);
        events.push(awkward_event());
        for event in &events {
            let expected = serde_json::to_vec(event).unwrap();
            assert_eq!(event.to_json_bytes(), &expected[..]);
            // The second call returns the cache, still the same bytes.
            assert_eq!(event.to_json_bytes(), &expected[..]);
            assert!(event.json.get().is_some());
        }
    }

    #[test]
    fn canonical_input_is_kept_as_the_cache_and_other_encodings_are_not() {
        for event in fixture_events().into_iter().chain([awkward_event()]) {
            let canonical = serde_json::to_vec(&event).unwrap();
            let parsed = Event::from_json_bytes(&canonical).unwrap();
            assert_eq!(parsed, event);
            assert_eq!(parsed.json.get().map(|b| &b[..]), Some(&canonical[..]));

            let pretty = serde_json::to_vec_pretty(&event).unwrap();
            let parsed = Event::from_json_bytes(&pretty).unwrap();
            assert_eq!(parsed, event);
            assert!(parsed.json.get().is_none());
            assert_eq!(parsed.to_json_bytes(), &canonical[..]);
        }
        // Same value, other spellings: escapes, number forms, key order, a longer timestamp.
        let event = awkward_event();
        let canonical = serde_json::to_vec(&event).unwrap();
        for other in [
            String::from_utf8(canonical.clone()).unwrap().replace('é', "\\u00e9"),
            String::from_utf8(canonical.clone()).unwrap().replace("0.1", "1e-1"),
            String::from_utf8(canonical.clone()).unwrap().replace(".000Z", ".000999Z"),
            String::from_utf8(canonical.clone())
                .unwrap()
                .replacen("{\"id\"", "{\"sequence\":7,\"id\"", 1)
                .replacen(",\"sequence\":7,", ",", 1),
        ] {
            assert_ne!(other.as_bytes(), &canonical[..]);
            let parsed = Event::from_json_bytes(other.as_bytes()).unwrap();
            assert_eq!(parsed, event, "{other}");
            assert!(parsed.json.get().is_none(), "{other}");
            assert_eq!(parsed.to_json_bytes(), &canonical[..]);
        }
        // A canonical prefix followed by more is not canonical (and not JSON).
        let mut longer = canonical.clone();
        longer.push(b' ');
        assert!(Event::from_json_bytes(&longer).unwrap().json.get().is_none());
        assert!(Event::from_json_bytes(b"{\"id\":1}").is_err());
    }

    #[test]
    fn write_json_appends_the_encoding_and_fills_the_cache_once() {
        let event = awkward_event();
        let canonical = serde_json::to_vec(&event).unwrap();
        let mut out = b"prefix".to_vec();
        event.write_json(&mut out);
        assert_eq!(&out[6..], &canonical[..]);
        assert_eq!(event.json.get().map(|b| &b[..]), Some(&canonical[..]));
        let cached = event.to_json_bytes().as_ptr();
        event.write_json(&mut out);
        assert_eq!(&out[6 + canonical.len()..], &canonical[..]);
        assert_eq!(event.to_json_bytes().as_ptr(), cached);
    }

    #[test]
    fn cache_is_invisible_to_equality_debug_and_clone() {
        let event = awkward_event();
        let debug_before = format!("{event:?}");
        let bytes = event.to_json_bytes().to_vec();
        assert_eq!(format!("{event:?}"), debug_before);
        assert!(!debug_before.contains("json"));
        let copy = event.clone();
        assert!(copy.json.get().is_none());
        assert_eq!(copy, event);
        assert_eq!(copy.to_json_bytes(), &bytes[..]);
        assert_eq!(serde_json::to_vec(&event).unwrap(), bytes);
    }

    /// The `write!` form the fast path replaces.
    fn slow(t: Timestamp) -> String {
        let t = t.as_datetime();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }

    #[test]
    fn timestamp_edges_print_as_before() {
        for text in
            ["0000-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z", "1970-01-01T00:00:00.000Z"]
        {
            let t: Timestamp = text.parse().unwrap();
            assert_eq!(t.to_string(), text);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{text}\""));
        }
        // Outside four-digit years the fallback keeps the old form.
        let t = Timestamp::from_unix_millis(-62_167_219_200_001).unwrap();
        assert_eq!(t.to_string(), slow(t));
        assert!(t.to_string().starts_with("-001"));
    }

    proptest! {
        #[test]
        fn timestamp_prints_as_the_write_form(millis in -62_135_596_800_000i64..253_402_300_800_000) {
            let t = Timestamp::from_unix_millis(millis).unwrap();
            let text = t.to_string();
            prop_assert_eq!(&text, &slow(t));
            prop_assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{text}\""));
            prop_assert_eq!(text.parse::<Timestamp>().unwrap(), t);
        }
    }
}
