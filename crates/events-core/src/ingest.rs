//! The ingest shape: an event as a producer sends it (`POST /executions/{id}/events`, a
//! command runner's stdout line, the crewAI bridge), and its checked conversion into a
//! [`Draft`].
//!
//! This module owns the rules of that conversion: `type` must match SPEC §2's pattern and, for
//! a system event, `data` must fit the catalogue ([`crate::catalog::validate`]); `id`, when
//! given, is a UUID string (else a fresh one is made); `timestamp`, when given, is RFC 3339
//! (truncated to milliseconds, else the time of acceptance). `data` missing or null is `{}`;
//! any other non-object is refused. Other top-level fields (`execution_id`, `sequence`, ...)
//! are ignored: the bus assigns those. It does not know the HTTP body around the events;
//! errors name the field inside one event (`data.model`), and the caller prefixes the
//! event's place (`events[3].`).

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::catalog::{self, ValidationError};
use crate::event::{Data, Draft, EventType, EventTypeError, Timestamp, TimestampError};

/// One event as a producer sends it: `{"type", "data"?, "id"?, "timestamp"?}`.
///
/// The fields are kept as raw JSON so that every problem is reported by
/// [`IngestEvent::into_draft`] with the field it concerns, rather than as a parse error.
///
/// ```
/// use hookstream_events_core::ingest::IngestEvent;
///
/// let line = r#"{"type": "llm_call_started", "data": {"model": "gpt-4"},
///                "id": "4ad5cac6-b933-4cd7-abf5-acc83eaf6f76",
///                "timestamp": "2026-12-04T15:29:54.959434Z"}"#;
/// let event: IngestEvent = serde_json::from_str(line)?;
/// let draft = event.into_draft()?;
/// assert_eq!(draft.timestamp.to_string(), "2026-12-04T15:29:54.959Z");
///
/// let bad: IngestEvent = serde_json::from_str(r#"{"type": "llm_call_started", "data": {"model": 4}}"#)?;
/// assert_eq!(bad.into_draft().unwrap_err().field(), "data.model");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct IngestEvent {
    /// The event type (required).
    #[serde(rename = "type", default)]
    pub event_type: Value,
    /// The event's fields: an object; missing or null is `{}`.
    #[serde(default)]
    pub data: Value,
    /// The producer's event id (crewAI's `event_id`): a UUID string, or missing/null.
    #[serde(default)]
    pub id: Value,
    /// The producer's time: an RFC 3339 string, or missing/null.
    #[serde(default)]
    pub timestamp: Value,
}

/// Why an ingested event was refused; [`EventError::field`] names the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// `type` is missing or null.
    #[error("the event has no type")]
    MissingType,
    /// `type` is not a string.
    #[error("the event type must be a string")]
    TypeNotString,
    /// `type` does not match the pattern.
    #[error(transparent)]
    InvalidType(#[from] EventTypeError),
    /// `id` is not a UUID string.
    #[error("the event id must be a UUID string")]
    InvalidId,
    /// `timestamp` is not a string.
    #[error("the event timestamp must be an RFC 3339 string")]
    TimestampNotString,
    /// `timestamp` is not RFC 3339.
    #[error(transparent)]
    InvalidTimestamp(#[from] TimestampError),
    /// `data` is neither an object nor null.
    #[error("the event data must be an object")]
    DataNotObject,
    /// A known field of a system event has the wrong type.
    #[error(transparent)]
    Data(#[from] ValidationError),
}

impl EventError {
    /// The field of the event the error is about: `type`, `id`, `timestamp`, `data` or
    /// `data.<field>`.
    pub fn field(&self) -> String {
        match self {
            Self::MissingType | Self::TypeNotString | Self::InvalidType(_) => "type".into(),
            Self::InvalidId => "id".into(),
            Self::TimestampNotString | Self::InvalidTimestamp(_) => "timestamp".into(),
            Self::DataNotObject => "data".into(),
            Self::Data(e) => format!("data.{}", e.field),
        }
    }
}

impl IngestEvent {
    /// An ingest event of `event_type` with `data`, no id and no timestamp.
    pub fn new(event_type: impl Into<String>, data: Data) -> Self {
        Self {
            event_type: Value::String(event_type.into()),
            data: Value::Object(data),
            id: Value::Null,
            timestamp: Value::Null,
        }
    }

    /// Checks the event and makes it a draft (see the module docs for the rules).
    pub fn into_draft(self) -> Result<Draft, EventError> {
        let event_type = match self.event_type {
            Value::Null => return Err(EventError::MissingType),
            Value::String(s) => EventType::new(s)?,
            _ => return Err(EventError::TypeNotString),
        };
        let data = match self.data {
            Value::Null => Data::new(),
            Value::Object(map) => map,
            _ => return Err(EventError::DataNotObject),
        };
        catalog::validate(event_type.as_str(), &data)?;
        let id = match &self.id {
            Value::Null => None,
            Value::String(s) => Some(Uuid::try_parse(s).map_err(|_| EventError::InvalidId)?),
            _ => return Err(EventError::InvalidId),
        };
        let timestamp = match &self.timestamp {
            Value::Null => None,
            Value::String(s) => Some(s.parse::<Timestamp>()?),
            _ => return Err(EventError::TimestampNotString),
        };
        let mut draft = Draft::new(event_type, data);
        if let Some(id) = id {
            draft.id = id;
        }
        if let Some(timestamp) = timestamp {
            draft.timestamp = timestamp;
        }
        Ok(draft)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Draft, EventError> {
        serde_json::from_value::<IngestEvent>(v).expect("an object").into_draft()
    }

    #[test]
    fn defaults() {
        let d = parse(json!({"type": "my.custom:event-1"})).unwrap();
        assert!(d.data.is_empty());
        assert_eq!(d.event_type.as_str(), "my.custom:event-1");
        assert!(parse(json!({"type": "x", "data": null})).unwrap().data.is_empty());
        assert!(parse(json!({"type": "x", "id": null, "timestamp": null})).is_ok());
    }

    #[test]
    fn errors_name_their_field() {
        let cases = [
            (json!({}), "type"),
            (json!({"type": 3}), "type"),
            (json!({"type": "9lives"}), "type"),
            (json!({"type": "x", "data": [1]}), "data"),
            (json!({"type": "x", "data": "s"}), "data"),
            (json!({"type": "x", "id": "nope"}), "id"),
            (json!({"type": "x", "id": 7}), "id"),
            (json!({"type": "x", "timestamp": "yesterday"}), "timestamp"),
            (json!({"type": "x", "timestamp": 1700000000}), "timestamp"),
            (
                json!({"type": "tool_usage_started", "data": {"run_attempts": "1"}}),
                "data.run_attempts",
            ),
        ];
        for (input, field) in cases {
            let err = parse(input.clone()).expect_err(&input.to_string());
            assert_eq!(err.field(), field, "{input}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn id_and_timestamp_are_kept() {
        let d = parse(json!({"type": "x", "id": "24759d72-f6ae-4842-aed7-3d4e8cc7e3d8",
                             "timestamp": "2026-12-04T16:29:54.970405+01:00"}))
        .unwrap();
        assert_eq!(d.id.to_string(), "24759d72-f6ae-4842-aed7-3d4e8cc7e3d8");
        assert_eq!(d.timestamp.to_string(), "2026-12-04T15:29:54.970Z");
    }
}
