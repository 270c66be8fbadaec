//! Subscription filters: which event types a subscriber (a webhook, a stream) wants.
//!
//! This module owns the filter language of SPEC §3 (`webhooks.events`): exact names, `"*"` for
//! everything, trailing-`*` prefixes (`"llm_*"`) and the catalogue's aliases
//! (`tool_usage_completed` also matches `tool_usage_finished`). It does not decide which
//! events exist; unknown names are allowed, since custom events have any valid name.
//!
//! # Cost
//!
//! A [`Filter`] is compiled once. Exact names go into one hash set; prefixes go into a second
//! hash set, together with the sorted list of the distinct prefix lengths. Matching a type
//! name is one lookup in the exact set plus one lookup per distinct prefix length (at most
//! 128, since names are at most 128 bytes), so the cost does not grow with the number of
//! names in the filter.

use std::collections::HashSet;

use crate::catalog;

/// A compiled set of event type patterns.
///
/// ```
/// use hookstream_events_core::filter::Filter;
///
/// let filter = Filter::new(["crew_kickoff_started", "llm_*", "tool_usage_completed"])?;
/// assert!(filter.matches("crew_kickoff_started"));
/// assert!(filter.matches("llm_stream_chunk"));
/// assert!(filter.matches("tool_usage_finished")); // through the alias
/// assert!(!filter.matches("task_started"));
///
/// // An empty list, like an omitted one, means every event.
/// assert!(Filter::new(Vec::<String>::new())?.matches("task_started"));
/// # Ok::<(), hookstream_events_core::filter::FilterError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Filter {
    all: bool,
    exact: HashSet<Box<str>>,
    prefixes: HashSet<Box<str>>,
    /// Distinct lengths of `prefixes`, ascending.
    prefix_lengths: Vec<usize>,
}

/// Why a filter entry was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// The entry at `index` is neither `"*"`, a valid event type name, nor such a name's
    /// prefix followed by `*`.
    #[error(
        "invalid event filter {name:?} at index {index}: expected \"*\", an event type name \
         (a letter, then at most 127 of A-Z a-z 0-9 _ . : -), or such a prefix ending in \"*\""
    )]
    InvalidName {
        /// The position of the entry in the list given.
        index: usize,
        /// The entry (cut to 140 characters).
        name: String,
    },
}

impl FilterError {
    /// The position in the list of the refused entry.
    pub fn index(&self) -> usize {
        match self {
            Self::InvalidName { index, .. } => *index,
        }
    }
}

impl Filter {
    /// The filter that matches every event type.
    pub fn all() -> Self {
        Self { all: true, ..Self::default() }
    }

    /// Compiles `names`: exact type names, `"*"` (everything), or a prefix followed by `*`
    /// (`"llm_*"`). An empty list means every event, as an omitted one does. A name that is an
    /// alias of the catalogue (`tool_usage_completed`) also matches its target.
    pub fn new<I, S>(names: I) -> Result<Self, FilterError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut filter = Self::default();
        let mut empty = true;
        for (index, name) in names.into_iter().enumerate() {
            empty = false;
            let name = name.as_ref();
            let invalid =
                || FilterError::InvalidName { index, name: name.chars().take(140).collect() };
            if name == "*" {
                filter.all = true;
            } else if let Some(prefix) = name.strip_suffix('*') {
                if !valid_name(prefix) {
                    return Err(invalid());
                }
                filter.prefixes.insert(prefix.into());
            } else {
                if !valid_name(name) {
                    return Err(invalid());
                }
                if let Some(target) = catalog::alias_target(name) {
                    filter.exact.insert(target.into());
                }
                filter.exact.insert(name.into());
            }
        }
        if empty {
            filter.all = true;
        }
        let mut lengths: Vec<usize> = filter.prefixes.iter().map(|p| p.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        filter.prefix_lengths = lengths;
        Ok(filter)
    }

    /// Whether an event of type `event_type` passes.
    pub fn matches(&self, event_type: &str) -> bool {
        if self.all || self.exact.contains(event_type) {
            return true;
        }
        for &len in &self.prefix_lengths {
            if len > event_type.len() {
                break;
            }
            match event_type.get(..len) {
                Some(head) if self.prefixes.contains(head) => return true,
                _ => {}
            }
        }
        false
    }

    /// Whether this filter lets every event through.
    pub fn is_all(&self) -> bool {
        self.all
    }
}

/// Whether `name` matches SPEC §2's `^[A-Za-z][A-Za-z0-9_.:-]{0,127}$`.
fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() <= 128
        && bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && bytes
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefix_star_and_alias() {
        let f = Filter::new(["task_started", "llm_*", "tool_usage_completed"]).unwrap();
        assert!(f.matches("task_started"));
        assert!(!f.matches("task_started2"));
        assert!(f.matches("llm_call_started"));
        assert!(f.matches("llm_"));
        assert!(!f.matches("llm"));
        assert!(f.matches("tool_usage_completed"));
        assert!(f.matches("tool_usage_finished"));
        assert!(!f.matches("tool_usage_started"));
        assert!(!f.is_all());
        assert!(Filter::new(["x", "*"]).unwrap().matches("anything"));
        assert!(Filter::all().matches("y"));
    }

    #[test]
    fn empty_means_all() {
        let f = Filter::new(Vec::<&str>::new()).unwrap();
        assert!(f.is_all() && f.matches("crew_kickoff_started"));
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in ["", "1abc", "a*b", "**", "llm *", "*x", "é"] {
            let err = Filter::new(["ok", bad]).unwrap_err();
            assert_eq!(err.index(), 1, "{bad:?}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        let long = "a".repeat(129);
        assert!(Filter::new([long.as_str()]).is_err());
        assert!(Filter::new([&long[..128]]).is_ok());
    }

    #[test]
    fn many_prefixes_of_few_lengths() {
        let names: Vec<String> = (0..1000).map(|i| format!("p{i:04}_*")).collect();
        let f = Filter::new(&names).unwrap();
        assert_eq!(f.prefix_lengths, vec![6]);
        assert!(f.matches("p0999_x"));
        assert!(!f.matches("p1000_x"));
    }

    #[test]
    fn handles_are_shareable() {
        fn check<T: Clone + Send + Sync + std::fmt::Debug>() {}
        check::<Filter>();
    }
}
