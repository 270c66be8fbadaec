//! The system event catalogue: every event type on crewAI's event bus plus the platform
//! events, with their data fields, and the validation of a system event's data against it.
//!
//! The table is generated from `catalog/system-events.json` (kept in this crate) by
//! `cargo xtask codegen` into `generated.rs`, checked in; `cargo xtask codegen --check` fails
//! when it is stale. Field types follow the catalogue's Python annotations: `str` (and
//! datetimes, paths, string literals) → string, `int` → integer, `float` → number, `bool`,
//! `dict[..]` → object, `list[str]` → array of strings, other lists → array; `X | None` is
//! nullable; anything else (`Any`, models, unions of different kinds) accepts any JSON value.
//!
//! Validation is lenient where crewAI may grow and strict where it has spoken: fields need not
//! be present, unknown extra fields are kept as they are, custom (non-catalogue) event types
//! accept any object; a known field holding the wrong JSON type is an error naming the event
//! type and the field. This module does not parse envelopes (see [`crate::ingest`]).

use std::fmt;

use serde_json::Value;

use crate::event::Data;

mod generated;

/// The JSON kind a catalogue field takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldKind {
    /// A string (Python `str`, `datetime`, `Path`, string `Literal`s).
    String,
    /// An integral number (Python `int`).
    Integer,
    /// Any number (Python `float`, `int | float`).
    Number,
    /// `true` or `false`.
    Boolean,
    /// An object (Python `dict`).
    Object,
    /// An array of any values.
    Array,
    /// An array of strings (Python `list[str]`).
    StringArray,
    /// Any JSON value (Python `Any`, models, mixed unions).
    Any,
}

impl FieldKind {
    /// Whether `value` (not null) is of this kind.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            Self::String => value.is_string(),
            Self::Integer => value.is_i64() || value.is_u64(),
            Self::Number => value.is_number(),
            Self::Boolean => value.is_boolean(),
            Self::Object => value.is_object(),
            Self::Array => value.is_array(),
            Self::StringArray => value.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            Self::Any => true,
        }
    }

    /// The kind in words, as in "must be *a string*".
    pub fn describe(self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Integer => "an integer",
            Self::Number => "a number",
            Self::Boolean => "a boolean",
            Self::Object => "an object",
            Self::Array => "an array",
            Self::StringArray => "an array of strings",
            Self::Any => "any JSON value",
        }
    }
}

/// One known field of a system event's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldSpec {
    /// The field's name in `data`.
    pub name: &'static str,
    /// Its JSON kind.
    pub kind: FieldKind,
    /// Whether it may be null.
    pub nullable: bool,
}

impl FieldSpec {
    /// Whether `value` is acceptable for this field.
    pub fn accepts(&self, value: &Value) -> bool {
        if value.is_null() {
            self.nullable
        } else {
            self.kind.accepts(value)
        }
    }
}

/// One system event type of the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventSpec {
    /// The type name (`llm_call_started`).
    pub name: &'static str,
    /// Its family in the catalogue (`crew`, `llm`, `tool`, `platform`, ...).
    pub family: &'static str,
    /// Its own data fields (the [`BASE_FIELDS`] apply too, unless it redefines one).
    pub fields: &'static [FieldSpec],
}

/// Every system event type, sorted by name.
pub const EVENTS: &[EventSpec] = generated::EVENTS;

/// The fields crewAI puts in every event's data (`task_id`, `agent_role`, ...).
pub const BASE_FIELDS: &[FieldSpec] = generated::BASE_FIELDS;

/// The catalogue's filter aliases, `(alias, target)`: `tool_usage_completed` (named by
/// CrewAI's docs, never emitted) stands for `tool_usage_finished`.
pub const ALIASES: &[(&str, &str)] = generated::ALIASES;

/// The catalogue entry of `name`, if it is a system event type.
pub fn event(name: &str) -> Option<&'static EventSpec> {
    EVENTS.binary_search_by(|e| e.name.cmp(name)).ok().map(|i| &EVENTS[i])
}

/// Whether `name` is a system event type of the catalogue.
pub fn is_system(name: &str) -> bool {
    event(name).is_some()
}

/// The type `name` is an alias of, if it is one (`tool_usage_completed` → `tool_usage_finished`).
pub fn alias_target(name: &str) -> Option<&'static str> {
    ALIASES.iter().find(|(alias, _)| *alias == name).map(|(_, target)| *target)
}

/// Checks `data` of an event of type `event_type` against the catalogue: every known field
/// that is present must hold its JSON kind (null only where nullable). Custom types, absent
/// fields and unknown extra fields always pass.
///
/// ```
/// use hookstream_events_core::catalog;
/// use serde_json::json;
///
/// let ok = json!({"model": "gpt-4", "call_id": "c1", "something_new": [1, 2]});
/// assert!(catalog::validate("llm_call_started", ok.as_object().unwrap()).is_ok());
///
/// let bad = json!({"chunk": 4});
/// let err = catalog::validate("llm_stream_chunk", bad.as_object().unwrap()).unwrap_err();
/// assert_eq!(err.to_string(), r#"event llm_stream_chunk: field "chunk" must be a string"#);
///
/// assert!(catalog::validate("my_custom_event", bad.as_object().unwrap()).is_ok());
/// ```
pub fn validate(event_type: &str, data: &Data) -> Result<(), ValidationError> {
    let Some(spec) = event(event_type) else { return Ok(()) };
    let own = spec.fields.iter();
    let base = BASE_FIELDS.iter().filter(|b| !spec.fields.iter().any(|f| f.name == b.name));
    for field in own.chain(base) {
        match data.get(field.name) {
            Some(value) if !field.accepts(value) => {
                return Err(ValidationError {
                    event_type: spec.name,
                    field: field.name,
                    expected: field.kind,
                    nullable: field.nullable,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// A known field of a system event held the wrong JSON type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct ValidationError {
    /// The event type.
    pub event_type: &'static str,
    /// The field of `data`.
    pub field: &'static str,
    /// What the field must hold.
    pub expected: FieldKind,
    /// Whether null would have been accepted.
    pub nullable: bool,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event {}: field {:?} must be {}{}",
            self.event_type,
            self.field,
            self.expected.describe(),
            if self.nullable { " or null" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Data {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn table_is_sorted_and_complete() {
        assert!(EVENTS.windows(2).all(|w| w[0].name < w[1].name));
        assert!(EVENTS.len() >= 150);
        for name in ["crew_kickoff_started", "llm_stream_chunk", "crew_execution_completed"] {
            assert!(is_system(name), "{name}");
        }
        assert!(!is_system("tool_usage_completed"));
        assert_eq!(alias_target("tool_usage_completed"), Some("tool_usage_finished"));
        assert!(ALIASES.iter().all(|(_, t)| is_system(t)));
    }

    #[test]
    fn kinds_nulls_and_extras() {
        let ok = data(json!({"total_tokens": 12, "crew_name": null, "extra": {"x": 1}}));
        assert!(validate("crew_kickoff_completed", &ok).is_ok());
        let err = validate("crew_kickoff_completed", &data(json!({"total_tokens": 1.5})));
        let err = err.unwrap_err();
        assert_eq!((err.event_type, err.field), ("crew_kickoff_completed", "total_tokens"));
        assert_eq!(
            err.to_string(),
            r#"event crew_kickoff_completed: field "total_tokens" must be an integer"#
        );
        // Non-nullable: null refused. Nullable: the message says so.
        assert!(validate("crew_kickoff_completed", &data(json!({"total_tokens": null}))).is_err());
        let err = validate("crew_kickoff_started", &data(json!({"crew_name": 1}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"event crew_kickoff_started: field "crew_name" must be a string or null"#
        );
        // Base fields apply to every system event.
        assert!(validate("task_started", &data(json!({"task_id": 5}))).is_err());
        // Floats take integers; integers do not take floats.
        assert!(validate("crew_execution_completed", &data(json!({"execution_time": 3}))).is_ok());
    }
}
