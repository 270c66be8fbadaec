//! [`AuthConfigError`], why an `authentication` object cannot be validated or built, and
//! [`RegisterError`], why a strategy cannot be registered.
//!
//! Messages name the strategy and the field and list the known strategies; they never echo a
//! given value (only names, truncated), so they are safe to return in a 422 body and to log.

use std::sync::Arc;

/// Longest strategy or field name echoed back in an error; longer ones are cut.
const MAX_ECHOED_NAME: usize = 64;

/// The known strategy names, comma-separated, for messages.
fn list(known: &[String]) -> String {
    if known.is_empty() {
        return "(none registered)".to_owned();
    }
    known.join(", ")
}

/// A name taken from user input, cut to [`MAX_ECHOED_NAME`] characters.
pub(crate) fn echo_name(name: &str) -> String {
    if name.chars().count() <= MAX_ECHOED_NAME {
        return name.to_owned();
    }
    let mut cut: String = name.chars().take(MAX_ECHOED_NAME).collect();
    cut.push('…');
    cut
}

/// Why an `authentication` JSON object is not a valid strategy configuration, or why a valid
/// one could not be built.
///
/// The server answers these with 422. Neither `Display` nor `Debug` contains a value from the
/// configuration: only the strategy name, the field name and a reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// The object is neither `null` nor a JSON object.
    #[error(
        "authentication must be null or an object with a \"strategy\" field; \
         known strategies: {}",
        list(known)
    )]
    #[non_exhaustive]
    NotAnObject {
        /// The registered strategies.
        known: Arc<[String]>,
    },
    /// The object has no `strategy` field, or it is not a string.
    #[error(
        "authentication: field \"strategy\" must be a string; known strategies: {}",
        list(known)
    )]
    #[non_exhaustive]
    MissingStrategy {
        /// The registered strategies.
        known: Arc<[String]>,
    },
    /// No strategy of that name is registered.
    #[error("unknown authentication strategy \"{strategy}\"; known strategies: {}", list(known))]
    #[non_exhaustive]
    UnknownStrategy {
        /// The name given (cut to 64 characters).
        strategy: String,
        /// The registered strategies.
        known: Arc<[String]>,
    },
    /// A required field is absent (or `null`).
    #[error("strategy \"{strategy}\": missing field \"{field}\"")]
    #[non_exhaustive]
    MissingField {
        /// The strategy.
        strategy: String,
        /// The field.
        field: String,
        /// The registered strategies.
        known: Arc<[String]>,
    },
    /// A field is present but its value is not acceptable.
    #[error("strategy \"{strategy}\": invalid field \"{field}\": {reason}")]
    #[non_exhaustive]
    InvalidField {
        /// The strategy.
        strategy: String,
        /// The field.
        field: String,
        /// Why, without the value.
        reason: String,
        /// The registered strategies.
        known: Arc<[String]>,
    },
    /// A field the strategy does not know (a typo, usually).
    #[error("strategy \"{strategy}\": unknown field \"{field}\"")]
    #[non_exhaustive]
    UnknownField {
        /// The strategy.
        strategy: String,
        /// The field given (cut to 64 characters).
        field: String,
        /// The registered strategies.
        known: Arc<[String]>,
    },
    /// A validated configuration could not build its runtime strategy.
    #[error("strategy \"{strategy}\": cannot build: {reason}")]
    #[non_exhaustive]
    Build {
        /// The strategy.
        strategy: String,
        /// Why, without any secret.
        reason: String,
    },
}

impl AuthConfigError {
    /// A build failure of `strategy`, for [`StrategyConfig::build`](crate::StrategyConfig::build)
    /// implementations. `reason` must not contain a secret.
    pub fn build_failed(strategy: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Build { strategy: strategy.into(), reason: reason.into() }
    }

    /// The strategy the error is about, when one was named.
    pub fn strategy(&self) -> Option<&str> {
        match self {
            Self::NotAnObject { .. } | Self::MissingStrategy { .. } => None,
            Self::UnknownStrategy { strategy, .. }
            | Self::MissingField { strategy, .. }
            | Self::InvalidField { strategy, .. }
            | Self::UnknownField { strategy, .. }
            | Self::Build { strategy, .. } => Some(strategy),
        }
    }

    /// The field the error is about (`"strategy"` when the strategy name itself is wrong).
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::NotAnObject { .. } | Self::Build { .. } => None,
            Self::MissingStrategy { .. } | Self::UnknownStrategy { .. } => Some("strategy"),
            Self::MissingField { field, .. }
            | Self::InvalidField { field, .. }
            | Self::UnknownField { field, .. } => Some(field),
        }
    }

    /// The strategies registered in the registry that produced the error, sorted (empty for a
    /// [`Build`](Self::Build) error).
    pub fn known_strategies(&self) -> &[String] {
        match self {
            Self::NotAnObject { known }
            | Self::MissingStrategy { known }
            | Self::UnknownStrategy { known, .. }
            | Self::MissingField { known, .. }
            | Self::InvalidField { known, .. }
            | Self::UnknownField { known, .. } => known,
            Self::Build { .. } => &[],
        }
    }

    /// Whether the error is about the request's configuration (a 422) rather than a failure
    /// to build a valid one.
    pub fn is_invalid_config(&self) -> bool {
        !matches!(self, Self::Build { .. })
    }
}

/// Why [`Registry::register`](crate::Registry::register) refused a strategy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// Names are 1 to 64 characters of `a-z`, `0-9` and `_`, starting with a letter.
    #[error("invalid strategy name \"{0}\": use 1-64 of a-z, 0-9, _ starting with a letter")]
    InvalidName(String),
    /// A strategy of that name is registered already.
    #[error("strategy \"{0}\" is registered already")]
    AlreadyRegistered(String),
}
