//! The event envelope of SPEC §2: the one wire type every event takes, stored, replayed or
//! delivered, and the draft a producer hands to the bus before it has a sequence.
//!
//! This module owns the JSON shape (`id`, `execution_id`, `timestamp`, `type`, `sequence`,
//! `data`) and the timestamp format (RFC 3339, UTC, milliseconds, `Z`). It does not validate
//! `data` against the catalogue; that is [`crate::catalog`]'s job.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

/// The JSON object every event's `data` is.
pub type Data = serde_json::Map<String, serde_json::Value>;

/// An event as stored, replayed and delivered (SPEC §2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
        Event {
            id: self.id,
            execution_id,
            timestamp: self.timestamp,
            event_type: self.event_type,
            sequence,
            data: self.data,
        }
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

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
        s.collect_str(self)
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
