//! The system event catalogue: every crewAI event type with its data fields, generated from
//! `catalog/system-events.json` by `cargo xtask codegen`, and the
//! validation of a system event's data against it.
//!
//! This module does not parse envelopes and accepts any data for
//! custom (non-catalogue) event types.

/// The catalogue's aliases: `(alias, target)`.
pub const ALIASES: &[(&str, &str)] = &[("tool_usage_completed", "tool_usage_finished")];

/// The type `name` is an alias of, if it is one (`tool_usage_completed` → `tool_usage_finished`).
pub fn alias_target(name: &str) -> Option<&'static str> {
    ALIASES.iter().find(|(alias, _)| *alias == name).map(|(_, target)| *target)
}
