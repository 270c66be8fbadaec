//! Logging setup: a `tracing-subscriber` formatter, pretty or JSON, on stderr (colours only on a
//! terminal), filtered by `HOOKSTREAM_LOG` (else `RUST_LOG`, else `info`).
//!
//! Installed once by the binary; the library only emits `tracing` events. No secret is ever
//! a field of an event (tokens are masked types), so nothing here filters values.

use tracing_subscriber::EnvFilter;

use crate::config::{EnvMap, LogFormat};

/// The variable read first for the log filter.
pub const LOG_ENV: &str = "HOOKSTREAM_LOG";

/// The filter directives from `env`: `HOOKSTREAM_LOG`, else `RUST_LOG`, else `info`.
pub fn filter_directives(env: &EnvMap) -> String {
    env.get(LOG_ENV)
        .or_else(|| env.get("RUST_LOG"))
        .filter(|v| !v.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| "info".to_owned())
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    /// The filter does not parse.
    #[error("invalid {LOG_ENV}/RUST_LOG filter {directives:?}: {reason}")]
    Filter {
        /// The directives.
        directives: String,
        /// Why.
        reason: String,
    },
    /// A global subscriber was already installed.
    #[error("logging was already initialised")]
    AlreadySet,
}

/// Installs the global subscriber writing to stderr in `format`.
pub fn init(format: LogFormat, env: &EnvMap) -> Result<(), LoggingError> {
    let directives = filter_directives(env);
    let filter = EnvFilter::try_new(&directives).map_err(|e| LoggingError::Filter {
        directives: directives.clone(),
        reason: e.to_string(),
    })?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let result = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    result.map_err(|_| LoggingError::AlreadySet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hookstream_log_beats_rust_log_beats_info() {
        let env = |pairs: &[(&str, &str)]| -> EnvMap {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        assert_eq!(filter_directives(&env(&[])), "info");
        assert_eq!(filter_directives(&env(&[("RUST_LOG", "warn")])), "warn");
        assert_eq!(filter_directives(&env(&[("RUST_LOG", "warn"), (LOG_ENV, "debug")])), "debug");
    }
}
