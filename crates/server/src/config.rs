//! The configuration of `hookstream serve`: every setting parsed once, at the edge, into its
//! type, from four layers with the precedence flag > environment (`HOOKSTREAM_*`) > TOML file >
//! default (SPEC §6).
//!
//! [`resolve`] is the one layering function. It takes the command-line flags, an environment
//! map and the parsed file, and touches neither the process environment nor the disk, so it is
//! unit-tested with injected maps. [`load`] is the thin IO wrapper the binary calls: it picks
//! the config file (`--config` or `HOOKSTREAM_CONFIG`), reads it and resolves.
//!
//! Every error is one line that names the setting the way the user gave it (`--listen`,
//! `HOOKSTREAM_LISTEN` or `listen` in the file) and the offending value, except secrets,
//! whose values are never repeated. This module starts nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

use crate::cli::ServeArgs;
use crate::runner::command::CommandConfig;
use crate::runner::demo::DemoConfig;
use crate::token::ApiToken;

/// The environment variables the layering reads, by name (a snapshot of the process
/// environment in the binary, any map in tests).
pub type EnvMap = BTreeMap<String, String>;

/// The resolved, validated settings of `hookstream serve`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServeConfig {
    /// The address the HTTP API listens on (port 0: any free port).
    pub listen: SocketAddr,
    /// Where the embedded store and the generated API token live.
    pub data_dir: PathBuf,
    /// Which store keeps executions and events.
    pub store: StoreKind,
    /// The API token; `None`: use the one kept in the data dir, or generate it.
    pub api_token: Option<ApiToken>,
    /// Webhook target ranges allowed despite the SSRF guard (e.g. `127.0.0.0/8`).
    pub allow_target_cidrs: Vec<IpNet>,
    /// What a kickoff runs.
    pub runner: RunnerConfig,
    /// How logs are written.
    pub log_format: LogFormat,
    /// An extra PEM file of CA certificates trusted for HTTPS webhooks.
    pub extra_ca: Option<PathBuf>,
    /// The URL under which clients (and command runners) reach this server; `None`: derived
    /// from the bound address.
    pub public_url: Option<Url>,
    /// How long shutdown waits for in-flight work before it gives up.
    pub shutdown_grace: Duration,
    /// The key that seals webhook credentials at rest in the embedded store.
    #[cfg(feature = "embedded")]
    pub secret_key: Option<crate::store::embedded::SecretKey>,
    /// What an answer of the embedded store waits for (`durability`).
    #[cfg(feature = "embedded")]
    pub durability: crate::store::embedded::Durability,
    /// How long the embedded store keeps the events of ended executions (`retention`).
    #[cfg(feature = "embedded")]
    pub retention: Duration,
}

/// Which store the server uses (`--store`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreKind {
    /// The durable store in the data dir (default).
    Embedded,
    /// Nothing survives a restart.
    Memory,
    /// NATS JetStream.
    Nats,
}

impl StoreKind {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Memory => "memory",
            Self::Nats => "nats",
        }
    }
}

/// What a kickoff runs (`--runner`), with the runner's own settings.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RunnerConfig {
    /// The simulated crew.
    Demo(DemoConfig),
    /// A program spawned per kickoff.
    Command(CommandConfig),
    /// Events come through the ingest route.
    External,
}

impl RunnerConfig {
    /// The runner's name as on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Demo(_) => "demo",
            Self::Command(_) => "command",
            Self::External => "external",
        }
    }
}

/// How logs are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Defaults of the settings that have one.
pub mod defaults {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::num::NonZeroUsize;
    use std::time::Duration;

    /// `--listen`.
    pub const LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
    /// `--data-dir`.
    pub const DATA_DIR: &str = "./hookstream-data";
    /// `--command-timeout`.
    pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30 * 60);
    /// `--command-concurrency`.
    pub const COMMAND_CONCURRENCY: NonZeroUsize = match NonZeroUsize::new(4) {
        Some(n) => n,
        None => unreachable!(),
    };
    /// `--shutdown-grace`.
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
    /// `--retention` (7 days).
    pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
}

/// Why the configuration was refused. Each displays as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value does not parse or is out of range.
    #[error("invalid {origin}: {reason}")]
    Invalid {
        /// Where the value came from, with the value unless it is secret.
        origin: String,
        /// What was expected.
        reason: String,
    },
    /// The config file has a key this version does not know.
    #[error("unknown key {key:?} in {path}; known keys: {known}")]
    UnknownKey {
        /// The key.
        key: String,
        /// The file.
        path: String,
        /// The keys that are accepted.
        known: String,
    },
    /// A setting another one requires is absent.
    #[error("{0}")]
    Missing(String),
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, and where.
        message: String,
    },
    /// The setting is valid but this build cannot do it.
    #[error("{0}")]
    Unsupported(String),
}

/// The settings, their flag, environment variable and file key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Listen,
    DataDir,
    Store,
    ApiToken,
    AllowTargetCidrs,
    Runner,
    Command,
    CommandTimeout,
    CommandConcurrency,
    CommandInputs,
    DemoStepDelay,
    LogFormat,
    ExtraCa,
    PublicUrl,
    ShutdownGrace,
    StoreSecret,
    Durability,
    Retention,
}

impl Key {
    const ALL: [Key; 18] = [
        Key::Listen,
        Key::DataDir,
        Key::Store,
        Key::ApiToken,
        Key::AllowTargetCidrs,
        Key::Runner,
        Key::Command,
        Key::CommandTimeout,
        Key::CommandConcurrency,
        Key::CommandInputs,
        Key::DemoStepDelay,
        Key::LogFormat,
        Key::ExtraCa,
        Key::PublicUrl,
        Key::ShutdownGrace,
        Key::StoreSecret,
        Key::Durability,
        Key::Retention,
    ];

    /// The key in the TOML file.
    fn file_key(self) -> &'static str {
        match self {
            Key::Listen => "listen",
            Key::DataDir => "data_dir",
            Key::Store => "store",
            Key::ApiToken => "api_token",
            Key::AllowTargetCidrs => "allow_target_cidrs",
            Key::Runner => "runner",
            Key::Command => "command",
            Key::CommandTimeout => "command_timeout",
            Key::CommandConcurrency => "command_concurrency",
            Key::CommandInputs => "command_inputs",
            Key::DemoStepDelay => "demo_step_delay",
            Key::LogFormat => "log_format",
            Key::ExtraCa => "extra_ca",
            Key::PublicUrl => "public_url",
            Key::ShutdownGrace => "shutdown_grace",
            Key::StoreSecret => "secret_key",
            Key::Durability => "durability",
            Key::Retention => "retention",
        }
    }

    /// The command-line flag.
    fn flag(self) -> &'static str {
        match self {
            Key::Listen => "--listen",
            Key::DataDir => "--data-dir",
            Key::Store => "--store",
            Key::ApiToken => "--api-token",
            Key::AllowTargetCidrs => "--allow-target-cidr",
            Key::Runner => "--runner",
            Key::Command => "--command",
            Key::CommandTimeout => "--command-timeout",
            Key::CommandConcurrency => "--command-concurrency",
            Key::CommandInputs => "--command-inputs",
            Key::DemoStepDelay => "--demo-step-delay",
            Key::LogFormat => "--log-format",
            Key::ExtraCa => "--extra-ca",
            Key::PublicUrl => "--public-url",
            Key::ShutdownGrace => "--shutdown-grace",
            Key::StoreSecret => "--secret-key",
            Key::Durability => "--durability",
            Key::Retention => "--retention",
        }
    }

    /// The environment variable.
    fn env(self) -> &'static str {
        match self {
            Key::Listen => "HOOKSTREAM_LISTEN",
            Key::DataDir => "HOOKSTREAM_DATA_DIR",
            Key::Store => "HOOKSTREAM_STORE",
            Key::ApiToken => "HOOKSTREAM_API_TOKEN",
            Key::AllowTargetCidrs => "HOOKSTREAM_ALLOW_TARGET_CIDRS",
            Key::Runner => "HOOKSTREAM_RUNNER",
            Key::Command => "HOOKSTREAM_COMMAND",
            Key::CommandTimeout => "HOOKSTREAM_COMMAND_TIMEOUT",
            Key::CommandConcurrency => "HOOKSTREAM_COMMAND_CONCURRENCY",
            Key::CommandInputs => "HOOKSTREAM_COMMAND_INPUTS",
            Key::DemoStepDelay => "HOOKSTREAM_DEMO_STEP_DELAY",
            Key::LogFormat => "HOOKSTREAM_LOG_FORMAT",
            Key::ExtraCa => "HOOKSTREAM_EXTRA_CA",
            Key::PublicUrl => "HOOKSTREAM_PUBLIC_URL",
            Key::ShutdownGrace => "HOOKSTREAM_SHUTDOWN_GRACE",
            Key::StoreSecret => "HOOKSTREAM_SECRET_KEY",
            Key::Durability => "HOOKSTREAM_DURABILITY",
            Key::Retention => "HOOKSTREAM_RETENTION",
        }
    }

    fn is_secret(self) -> bool {
        matches!(self, Key::ApiToken | Key::StoreSecret)
    }

    fn from_file_key(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.file_key() == name)
    }
}

/// The environment variable that names the config file.
pub const CONFIG_ENV: &str = "HOOKSTREAM_CONFIG";

/// A raw value before parsing: text, or a list (a TOML array).
#[derive(Clone, Debug, PartialEq)]
enum RawValue {
    Text(String),
    List(Vec<String>),
}

impl fmt::Display for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawValue::Text(text) => write!(f, "{text:?}"),
            RawValue::List(items) => write!(f, "{items:?}"),
        }
    }
}

/// Where a raw value came from.
#[derive(Clone, Debug)]
enum Source<'a> {
    Flag,
    Env,
    File(&'a str),
}

/// One setting's raw value and its source.
struct Raw<'a> {
    key: Key,
    value: RawValue,
    source: Source<'a>,
}

impl Raw<'_> {
    /// The error naming this value, as the user gave it.
    fn invalid(&self, reason: impl Into<String>) -> ConfigError {
        self.invalid_item(&self.value.to_string(), reason)
    }

    /// The error naming one item of this value.
    fn invalid_item(&self, shown: &str, reason: impl Into<String>) -> ConfigError {
        let shown = if self.key.is_secret() { "(value hidden)" } else { shown };
        let origin = match self.source {
            Source::Flag => format!("{} {shown}", self.key.flag()),
            Source::Env => format!("{} {shown}", self.key.env()),
            Source::File(path) => format!("{} {shown} in {path}", self.key.file_key()),
        };
        ConfigError::Invalid { origin, reason: reason.into() }
    }

    fn name(&self) -> String {
        match self.source {
            Source::Flag => self.key.flag().to_owned(),
            Source::Env => self.key.env().to_owned(),
            Source::File(path) => format!("{} in {path}", self.key.file_key()),
        }
    }

    /// The value as one text (a list is refused).
    fn text(&self) -> Result<&str, ConfigError> {
        match &self.value {
            RawValue::Text(text) => Ok(text),
            RawValue::List(_) => Err(self.invalid("expected a single value, not a list")),
        }
    }

    /// The value as a list: a list, or a comma-separated text.
    fn items(&self) -> Vec<String> {
        match &self.value {
            RawValue::List(items) => items.clone(),
            RawValue::Text(text) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// A parsed config file: its known keys with their raw values.
#[derive(Clone, Debug, Default)]
pub struct ConfigFile {
    path: String,
    values: BTreeMap<Key, RawValue>,
}

impl ConfigFile {
    /// Parses the TOML text of the file at `path` (used in messages). Unknown keys and
    /// values that are neither text, numbers nor lists of them are errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
            let line =
                error.span().map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            let message = error.message().replace('\n', " ");
            ConfigError::Parse {
                path: shown.clone(),
                message: match line {
                    Some(line) => format!("line {line}: {message}"),
                    None => message,
                },
            }
        })?;
        let mut values = BTreeMap::new();
        for (name, value) in table {
            let Some(key) = Key::from_file_key(&name) else {
                let known: Vec<&str> = Key::ALL.iter().map(|k| k.file_key()).collect();
                return Err(ConfigError::UnknownKey {
                    key: name,
                    path: shown,
                    known: known.join(", "),
                });
            };
            let bad = |what: &str| ConfigError::Invalid {
                origin: if key.is_secret() {
                    format!("{name} in {shown}")
                } else {
                    format!("{name} = {value} in {shown}")
                },
                reason: format!("expected {what}"),
            };
            let raw = match &value {
                toml::Value::String(s) => RawValue::Text(s.clone()),
                toml::Value::Integer(i) => RawValue::Text(i.to_string()),
                toml::Value::Array(items) => RawValue::List(
                    items
                        .iter()
                        .map(|item| match item {
                            toml::Value::String(s) => Ok(s.clone()),
                            toml::Value::Integer(i) => Ok(i.to_string()),
                            _ => Err(bad("a list of strings")),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(bad("a string, a number or a list of strings")),
            };
            values.insert(key, raw);
        }
        Ok(Self { path: shown, values })
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text, path)
    }
}

/// Picks the config file (`--config`, else `HOOKSTREAM_CONFIG`, else none), reads it and
/// resolves the settings with [`resolve`].
pub fn load(flags: &ServeArgs, env: &EnvMap) -> Result<ServeConfig, ConfigError> {
    let path = flags
        .config
        .clone()
        .or_else(|| env.get(CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from));
    let file = path.as_deref().map(ConfigFile::load).transpose()?;
    resolve(flags, env, file.as_ref())
}

/// The layering function: each setting from the flag if given, else its `HOOKSTREAM_*`
/// variable if set and not empty, else the file's key, else its default; then parsed and
/// checked. Lists are not merged: the first layer that has one wins.
pub fn resolve(
    flags: &ServeArgs,
    env: &EnvMap,
    file: Option<&ConfigFile>,
) -> Result<ServeConfig, ConfigError> {
    let layers = Layers { flags, env, file };

    let listen = match layers.get(Key::Listen) {
        Some(raw) => parse_listen(&raw)?,
        None => defaults::LISTEN,
    };
    let data_dir = match layers.get(Key::DataDir) {
        Some(raw) => PathBuf::from(non_empty(&raw, "expected a directory path")?),
        None => PathBuf::from(defaults::DATA_DIR),
    };
    let store = match layers.get(Key::Store) {
        Some(raw) => match raw.text()? {
            "embedded" => StoreKind::Embedded,
            "memory" => StoreKind::Memory,
            "nats" => StoreKind::Nats,
            _ => return Err(raw.invalid("expected embedded, memory or nats")),
        },
        // Without the `embedded` feature the default is the only store there is.
        None if cfg!(feature = "embedded") => StoreKind::Embedded,
        None => StoreKind::Memory,
    };
    match store {
        StoreKind::Nats => {
            return Err(ConfigError::Unsupported(
                "--store nats is not yet supported in this build; use embedded or memory".into(),
            ))
        }
        StoreKind::Embedded if !cfg!(feature = "embedded") => {
            return Err(ConfigError::Unsupported(
                "--store embedded is not in this build (built without the `embedded` feature); use memory".into(),
            ))
        }
        _ => {}
    }
    let api_token = match layers.get(Key::ApiToken) {
        Some(raw) => {
            let token = raw.text()?;
            if token.trim().is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(raw.invalid("expected a non-empty token without spaces"));
            }
            Some(ApiToken::new(token))
        }
        None => None,
    };
    let allow_target_cidrs = match layers.get(Key::AllowTargetCidrs) {
        Some(raw) => raw
            .items()
            .iter()
            .map(|item| {
                item.parse::<IpNet>().map(|net| net.trunc()).map_err(|_| {
                    raw.invalid_item(
                        &format!("{item:?}"),
                        "expected a CIDR range such as 127.0.0.0/8",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let log_format = match layers.get(Key::LogFormat) {
        Some(raw) => match raw.text()? {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            _ => return Err(raw.invalid("expected pretty or json")),
        },
        None => LogFormat::Pretty,
    };
    let extra_ca = match layers.get(Key::ExtraCa) {
        Some(raw) => {
            let path = PathBuf::from(non_empty(&raw, "expected a PEM file path")?);
            if !path.is_file() {
                return Err(raw.invalid("no such file"));
            }
            Some(path)
        }
        None => None,
    };
    let public_url = match layers.get(Key::PublicUrl) {
        Some(raw) => {
            let url = Url::parse(raw.text()?)
                .map_err(|e| raw.invalid(format!("expected an http(s) URL ({e})")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(raw.invalid("expected an http(s) URL with a host"));
            }
            Some(url)
        }
        None => None,
    };
    let shutdown_grace = match layers.get(Key::ShutdownGrace) {
        Some(raw) => parse_duration(&raw)?,
        None => defaults::SHUTDOWN_GRACE,
    };

    #[cfg(feature = "embedded")]
    let secret_key = match layers.get(Key::StoreSecret) {
        Some(raw) => Some(
            crate::store::embedded::SecretKey::from_base64(raw.text()?)
                .map_err(|e| raw.invalid(e.to_string()))?,
        ),
        None => None,
    };
    #[cfg(not(feature = "embedded"))]
    if let Some(raw) = layers.get(Key::StoreSecret) {
        return Err(ConfigError::Unsupported(format!(
            "{} only applies to the embedded store, which is not in this build",
            raw.name()
        )));
    }
    // Parsed whatever the store, so that a bad value is refused the same way everywhere.
    let durability = layers.get(Key::Durability).map(|raw| parse_durability(&raw)).transpose()?;
    let retention = match layers.get(Key::Retention) {
        Some(raw) => match parse_duration(&raw)? {
            zero if zero.is_zero() => return Err(raw.invalid("expected a duration above zero")),
            retention => Some(retention),
        },
        None => None,
    };
    // Like a runner's flags: a flag for another store is a mistake worth stopping for; the same
    // setting in the environment or a shared file is ignored.
    if store != StoreKind::Embedded {
        for key in [Key::Durability, Key::Retention] {
            if let Some(raw) = layers.get(key).filter(|raw| matches!(raw.source, Source::Flag)) {
                return Err(ConfigError::Missing(format!(
                    "{} only applies to --store embedded (the store is {})",
                    raw.name(),
                    store.as_str()
                )));
            }
        }
    }
    #[cfg(feature = "embedded")]
    let (durability, retention) =
        (durability.unwrap_or_default(), retention.unwrap_or(defaults::RETENTION));
    #[cfg(not(feature = "embedded"))]
    let _ = (durability, retention);

    let command = layers.get(Key::Command);
    let runner_name = match layers.get(Key::Runner) {
        Some(raw) => match raw.text()? {
            name @ ("demo" | "command" | "external") => name.to_owned(),
            _ => return Err(raw.invalid("expected demo, command or external")),
        },
        // A configured command implies the command runner.
        None if command.is_some() => "command".to_owned(),
        None => "demo".to_owned(),
    };
    let runner = match runner_name.as_str() {
        "command" => {
            let Some(command) = command else {
                return Err(ConfigError::Missing(
                    "--runner command needs a program: set --command, HOOKSTREAM_COMMAND or command in the config file".into(),
                ));
            };
            let argv = match &command.value {
                RawValue::List(argv) => argv.clone(),
                RawValue::Text(line) => {
                    shlex::split(line).ok_or_else(|| command.invalid("unbalanced quotes"))?
                }
            };
            let Some((program, args)) = argv.split_first() else {
                return Err(command.invalid("expected a program and its arguments"));
            };
            if program.is_empty() {
                return Err(command.invalid("expected a program and its arguments"));
            }
            let mut config = CommandConfig::new(PathBuf::from(program), args.to_vec());
            config.timeout = match layers.get(Key::CommandTimeout) {
                Some(raw) => match parse_duration(&raw)? {
                    zero if zero.is_zero() => {
                        return Err(raw.invalid("expected a duration above zero"))
                    }
                    timeout => timeout,
                },
                None => defaults::COMMAND_TIMEOUT,
            };
            config.concurrency = match layers.get(Key::CommandConcurrency) {
                Some(raw) => raw
                    .text()?
                    .trim()
                    .parse::<NonZeroUsize>()
                    .map_err(|_| raw.invalid("expected a whole number of at least 1"))?,
                None => defaults::COMMAND_CONCURRENCY,
            };
            config.required_inputs = match layers.get(Key::CommandInputs) {
                Some(raw) => {
                    let items = raw.items();
                    if let Some(bad) = items.iter().find(|i| i.chars().any(char::is_whitespace)) {
                        return Err(raw.invalid_item(
                            &format!("{bad:?}"),
                            "expected input names without spaces",
                        ));
                    }
                    items
                }
                None => Vec::new(),
            };
            RunnerConfig::Command(config)
        }
        "external" => RunnerConfig::External,
        _ => RunnerConfig::Demo(DemoConfig {
            step_delay: match layers.get(Key::DemoStepDelay) {
                Some(raw) => parse_duration(&raw)?,
                None => DemoConfig::DEFAULT_STEP_DELAY,
            },
        }),
    };
    // A flag for another runner is a mistake worth stopping for; the same setting in the
    // environment or a shared file is ignored.
    let runner_flags: &[(Key, &str)] = &[
        (Key::CommandTimeout, "command"),
        (Key::CommandConcurrency, "command"),
        (Key::CommandInputs, "command"),
        (Key::DemoStepDelay, "demo"),
    ];
    for (key, owner) in runner_flags {
        if *owner == runner.name() {
            continue;
        }
        if let Some(raw) = layers.get(*key).filter(|raw| matches!(raw.source, Source::Flag)) {
            return Err(ConfigError::Missing(format!(
                "{} only applies to --runner {owner} (the runner is {})",
                raw.name(),
                runner.name()
            )));
        }
    }

    Ok(ServeConfig {
        listen,
        data_dir,
        store,
        api_token,
        allow_target_cidrs,
        runner,
        log_format,
        extra_ca,
        public_url,
        shutdown_grace,
        #[cfg(feature = "embedded")]
        secret_key,
        #[cfg(feature = "embedded")]
        durability,
        #[cfg(feature = "embedded")]
        retention,
    })
}

/// The three layers above the defaults.
struct Layers<'a> {
    flags: &'a ServeArgs,
    env: &'a EnvMap,
    file: Option<&'a ConfigFile>,
}

impl<'a> Layers<'a> {
    fn get(&self, key: Key) -> Option<Raw<'a>> {
        if let Some(value) = self.flag(key) {
            return Some(Raw { key, value, source: Source::Flag });
        }
        if let Some(value) = self.env.get(key.env()).filter(|v| !v.trim().is_empty()) {
            return Some(Raw { key, value: RawValue::Text(value.clone()), source: Source::Env });
        }
        let file = self.file?;
        file.values.get(&key).map(|value| Raw {
            key,
            value: value.clone(),
            source: Source::File(&file.path),
        })
    }

    fn flag(&self, key: Key) -> Option<RawValue> {
        let f = self.flags;
        let text = |v: &Option<String>| v.clone().map(RawValue::Text);
        match key {
            Key::Listen => text(&f.listen),
            Key::DataDir => f.data_dir.as_ref().map(|p| RawValue::Text(p.display().to_string())),
            Key::Store => text(&f.store),
            Key::ApiToken => text(&f.api_token),
            Key::AllowTargetCidrs => {
                if f.allow_target_cidr.is_empty() {
                    None
                } else {
                    Some(RawValue::List(
                        f.allow_target_cidr
                            .iter()
                            .flat_map(|v| v.split(','))
                            .map(|v| v.trim().to_owned())
                            .filter(|v| !v.is_empty())
                            .collect(),
                    ))
                }
            }
            Key::Runner => text(&f.runner),
            Key::Command => text(&f.command),
            Key::CommandTimeout => text(&f.command_timeout),
            Key::CommandConcurrency => text(&f.command_concurrency),
            Key::CommandInputs => text(&f.command_inputs),
            Key::DemoStepDelay => text(&f.demo_step_delay),
            Key::LogFormat => text(&f.log_format),
            Key::ExtraCa => f.extra_ca.as_ref().map(|p| RawValue::Text(p.display().to_string())),
            Key::PublicUrl => text(&f.public_url),
            Key::ShutdownGrace => text(&f.shutdown_grace),
            Key::StoreSecret => text(&f.secret_key),
            Key::Durability => text(&f.durability),
            Key::Retention => text(&f.retention),
        }
    }
}

fn non_empty<'r>(raw: &'r Raw<'_>, expected: &str) -> Result<&'r str, ConfigError> {
    let text = raw.text()?;
    if text.trim().is_empty() {
        return Err(raw.invalid(expected.to_owned()));
    }
    Ok(text)
}

fn parse_listen(raw: &Raw<'_>) -> Result<SocketAddr, ConfigError> {
    let text = raw.text()?.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
        }
    }
    Err(raw.invalid("expected host:port such as 127.0.0.1:8080 or [::1]:8080"))
}

/// What an embedded store's answer waits for, as the store takes it.
#[cfg(feature = "embedded")]
type DurabilitySetting = crate::store::embedded::Durability;
/// Without the embedded store the setting is only checked.
#[cfg(not(feature = "embedded"))]
type DurabilitySetting = ();

/// `default` or `fsync`.
fn parse_durability(raw: &Raw<'_>) -> Result<DurabilitySetting, ConfigError> {
    #[cfg(feature = "embedded")]
    use crate::store::embedded::Durability;
    match raw.text()?.trim() {
        #[cfg(feature = "embedded")]
        "default" => Ok(Durability::Default),
        #[cfg(feature = "embedded")]
        "fsync" => Ok(Durability::Fsync),
        #[cfg(not(feature = "embedded"))]
        "default" | "fsync" => Ok(()),
        _ => Err(raw.invalid("expected default or fsync")),
    }
}

/// A duration: `250ms`, `30s`, `5m`, `1h 30m` (humantime), or a bare number of seconds.
fn parse_duration(raw: &Raw<'_>) -> Result<Duration, ConfigError> {
    let text = raw.text()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text)
        .map_err(|_| raw.invalid("expected a duration such as 500ms, 30s, 5m or 1h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnvMap {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(text, Path::new("hookstream.toml")).expect("valid file")
    }

    fn err(flags: &ServeArgs, env: &EnvMap, file: Option<&ConfigFile>) -> String {
        match resolve(flags, env, file) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = resolve(&ServeArgs::default(), &EnvMap::new(), None).expect("valid");
        assert_eq!(config.listen, defaults::LISTEN);
        assert_eq!(config.data_dir, PathBuf::from("./hookstream-data"));
        assert_eq!(
            config.store,
            if cfg!(feature = "embedded") { StoreKind::Embedded } else { StoreKind::Memory }
        );
        assert!(config.api_token.is_none());
        assert!(config.allow_target_cidrs.is_empty());
        assert_eq!(config.runner, RunnerConfig::Demo(DemoConfig::default()));
        assert_eq!(config.log_format, LogFormat::Pretty);
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let file = file("listen = \"127.0.0.1:3\"\nstore = \"memory\"\nlog_format = \"json\"\ndata_dir = \"/from-file\"\n");
        let env = env(&[
            ("HOOKSTREAM_LISTEN", "127.0.0.1:2"),
            ("HOOKSTREAM_STORE", "memory"),
            ("HOOKSTREAM_DATA_DIR", "/from-env"),
        ]);
        let flags = ServeArgs { listen: Some("127.0.0.1:1".into()), ..ServeArgs::default() };

        let all = resolve(&flags, &env, Some(&file)).expect("valid");
        assert_eq!(all.listen.port(), 1, "flag wins");
        assert_eq!(all.data_dir, PathBuf::from("/from-env"), "env beats file");
        assert_eq!(all.log_format, LogFormat::Json, "file beats default");
        assert_eq!(all.shutdown_grace, defaults::SHUTDOWN_GRACE, "default last");

        let no_flag = resolve(&ServeArgs::default(), &env, Some(&file)).expect("valid");
        assert_eq!(no_flag.listen.port(), 2);
        let file_only = resolve(&ServeArgs::default(), &EnvMap::new(), Some(&file)).expect("valid");
        assert_eq!(file_only.listen.port(), 3);
        assert_eq!(file_only.data_dir, PathBuf::from("/from-file"));
    }

    #[test]
    fn empty_env_values_count_as_unset() {
        let config = resolve(&ServeArgs::default(), &env(&[("HOOKSTREAM_LISTEN", "")]), None)
            .expect("valid");
        assert_eq!(config.listen, defaults::LISTEN);
    }

    #[test]
    fn lists_come_from_repeated_flags_comma_separated_env_or_toml_arrays() {
        let flags = ServeArgs {
            allow_target_cidr: vec!["127.0.0.0/8".into(), "10.1.0.0/16".into()],
            ..ServeArgs::default()
        };
        let env = env(&[("HOOKSTREAM_ALLOW_TARGET_CIDRS", "192.168.0.0/16, ::1/128")]);
        let file = file("allow_target_cidrs = [\"172.16.0.0/12\"]");
        let from_flags = resolve(&flags, &env, Some(&file)).expect("valid");
        assert_eq!(from_flags.allow_target_cidrs.len(), 2);
        let from_env = resolve(&ServeArgs::default(), &env, Some(&file)).expect("valid");
        assert_eq!(
            from_env.allow_target_cidrs,
            vec!["192.168.0.0/16".parse::<IpNet>().unwrap(), "::1/128".parse().unwrap()]
        );
        let from_file = resolve(&ServeArgs::default(), &EnvMap::new(), Some(&file)).expect("valid");
        assert_eq!(from_file.allow_target_cidrs, vec!["172.16.0.0/12".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn a_bad_value_is_one_line_naming_where_it_came_from() {
        let flags = ServeArgs { listen: Some("foo".into()), ..ServeArgs::default() };
        let message = err(&flags, &EnvMap::new(), None);
        assert!(message.starts_with("invalid --listen \"foo\": expected host:port"), "{message}");
        assert!(!message.contains('\n'));

        let message = err(&ServeArgs::default(), &env(&[("HOOKSTREAM_STORE", "disk")]), None);
        assert!(
            message.starts_with(
                "invalid HOOKSTREAM_STORE \"disk\": expected embedded, memory or nats"
            ),
            "{message}"
        );

        let message = err(
            &ServeArgs::default(),
            &EnvMap::new(),
            Some(&file("command_timeout = \"soon\"\nrunner = \"command\"\ncommand = \"true\"")),
        );
        assert!(
            message.starts_with(
                "invalid command_timeout \"soon\" in hookstream.toml: expected a duration"
            ),
            "{message}"
        );

        let message = err(
            &ServeArgs::default(),
            &env(&[("HOOKSTREAM_ALLOW_TARGET_CIDRS", "127.0.0.0/8,nope")]),
            None,
        );
        assert!(
            message.starts_with("invalid HOOKSTREAM_ALLOW_TARGET_CIDRS \"nope\": expected a CIDR"),
            "{message}"
        );

        for (key, value) in [
            ("HOOKSTREAM_LOG_FORMAT", "xml"),
            ("HOOKSTREAM_RUNNER", "python"),
            ("HOOKSTREAM_PUBLIC_URL", "ftp://x"),
            ("HOOKSTREAM_SHUTDOWN_GRACE", "-1"),
            ("HOOKSTREAM_EXTRA_CA", "/no/such/file.pem"),
        ] {
            let message = err(&ServeArgs::default(), &env(&[(key, value)]), None);
            assert!(message.starts_with(&format!("invalid {key} ")), "{message}");
        }
    }

    #[test]
    fn secrets_are_never_repeated_in_errors() {
        let flags = ServeArgs { api_token: Some("two words".into()), ..ServeArgs::default() };
        let message = err(&flags, &EnvMap::new(), None);
        assert!(message.starts_with("invalid --api-token"), "{message}");
        assert!(!message.contains("two words"), "{message}");
    }

    #[test]
    fn unknown_and_malformed_file_keys_are_errors() {
        let error =
            ConfigFile::parse("listen = \"127.0.0.1:1\"\nlisten_port = 8\n", Path::new("h.toml"))
                .expect_err("unknown key");
        let message = error.to_string();
        assert!(message.starts_with("unknown key \"listen_port\" in h.toml"), "{message}");

        let message = ConfigFile::parse("listen = \n", Path::new("h.toml"))
            .expect_err("bad toml")
            .to_string();
        assert!(message.starts_with("invalid config file h.toml: line 1"), "{message}");
        assert!(!message.contains('\n'), "{message}");

        let message = ConfigFile::parse("store = true", Path::new("h.toml"))
            .expect_err("bad type")
            .to_string();
        assert!(message.starts_with("invalid store = true in h.toml"), "{message}");
    }

    #[cfg(feature = "embedded")]
    #[test]
    fn the_secret_key_is_checked_and_never_shown() {
        let bad = err(&ServeArgs::default(), &env(&[("HOOKSTREAM_SECRET_KEY", "short")]), None);
        assert!(
            bad.starts_with("invalid HOOKSTREAM_SECRET_KEY (value hidden): the secret key must be"),
            "{bad}"
        );
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let config = resolve(&ServeArgs::default(), &env(&[("HOOKSTREAM_SECRET_KEY", key)]), None)
            .expect("valid");
        assert!(config.secret_key.is_some());
        assert!(!format!("{config:?}").contains(key));
    }

    #[cfg(feature = "embedded")]
    #[test]
    fn durability_and_retention_layer_flag_env_file_default() {
        use crate::store::embedded::Durability;
        let defaults = resolve(&ServeArgs::default(), &EnvMap::new(), None).expect("valid");
        assert_eq!(defaults.durability, Durability::Default);
        assert_eq!(defaults.retention, Duration::from_secs(7 * 24 * 3600));

        let file = file("durability = \"fsync\"\nretention = \"3d\"\n");
        let from_file = resolve(&ServeArgs::default(), &EnvMap::new(), Some(&file)).expect("valid");
        assert_eq!(from_file.durability, Durability::Fsync);
        assert_eq!(from_file.retention, Duration::from_secs(3 * 24 * 3600));

        let env = env(&[("HOOKSTREAM_DURABILITY", "default"), ("HOOKSTREAM_RETENTION", "12h")]);
        let from_env = resolve(&ServeArgs::default(), &env, Some(&file)).expect("valid");
        assert_eq!(from_env.durability, Durability::Default, "env beats file");
        assert_eq!(from_env.retention, Duration::from_secs(12 * 3600));

        let flags = ServeArgs {
            durability: Some("fsync".into()),
            retention: Some("90m".into()),
            ..ServeArgs::default()
        };
        let from_flags = resolve(&flags, &env, Some(&file)).expect("valid");
        assert_eq!(from_flags.durability, Durability::Fsync, "flag beats env");
        assert_eq!(from_flags.retention, Duration::from_secs(90 * 60));
    }

    #[test]
    fn bad_durability_and_retention_are_one_line_naming_them() {
        let flags = ServeArgs { durability: Some("always".into()), ..ServeArgs::default() };
        let message = err(&flags, &EnvMap::new(), None);
        assert_eq!(message, "invalid --durability \"always\": expected default or fsync");
        let message = err(&ServeArgs::default(), &env(&[("HOOKSTREAM_RETENTION", "a week")]), None);
        assert!(
            message.starts_with("invalid HOOKSTREAM_RETENTION \"a week\": expected a duration"),
            "{message}"
        );
        let message = err(&ServeArgs::default(), &EnvMap::new(), Some(&file("retention = \"0s\"")));
        assert_eq!(
            message,
            "invalid retention \"0s\" in hookstream.toml: expected a duration above zero"
        );
        // A bad value is refused whatever the store.
        let env_memory = env(&[("HOOKSTREAM_STORE", "memory"), ("HOOKSTREAM_DURABILITY", "no")]);
        let message = err(&ServeArgs::default(), &env_memory, None);
        assert!(message.starts_with("invalid HOOKSTREAM_DURABILITY"), "{message}");
    }

    #[test]
    fn store_flags_for_another_store_are_refused_and_env_or_file_ignored() {
        for (flags, name) in [
            (
                ServeArgs { durability: Some("fsync".into()), ..ServeArgs::default() },
                "--durability",
            ),
            (ServeArgs { retention: Some("1d".into()), ..ServeArgs::default() }, "--retention"),
        ] {
            let flags = ServeArgs { store: Some("memory".into()), ..flags };
            let message = err(&flags, &EnvMap::new(), None);
            assert_eq!(
                message,
                format!("{name} only applies to --store embedded (the store is memory)")
            );
        }
        let shared = file("durability = \"fsync\"\nretention = \"1d\"\n");
        let env = env(&[("HOOKSTREAM_DURABILITY", "fsync"), ("HOOKSTREAM_RETENTION", "2d")]);
        let flags = ServeArgs { store: Some("memory".into()), ..ServeArgs::default() };
        let config = resolve(&flags, &env, Some(&shared)).expect("env and file are ignored");
        assert_eq!(config.store, StoreKind::Memory);
    }

    #[test]
    fn nats_is_refused_in_one_line() {
        let message = err(
            &ServeArgs { store: Some("nats".into()), ..ServeArgs::default() },
            &EnvMap::new(),
            None,
        );
        assert_eq!(
            message,
            "--store nats is not yet supported in this build; use embedded or memory"
        );
    }

    #[test]
    fn the_command_runner_takes_a_shell_like_line_or_a_toml_array() {
        let flags = ServeArgs {
            command: Some("python3 'my crew.py' --fast".into()),
            command_timeout: Some("90s".into()),
            command_concurrency: Some("2".into()),
            command_inputs: Some("topic, audience".into()),
            ..ServeArgs::default()
        };
        let config = resolve(&flags, &EnvMap::new(), None).expect("valid");
        let RunnerConfig::Command(command) = config.runner else {
            panic!("command runner implied")
        };
        assert_eq!(command.program, PathBuf::from("python3"));
        assert_eq!(command.args, vec!["my crew.py".to_owned(), "--fast".to_owned()]);
        assert_eq!(command.timeout, Duration::from_secs(90));
        assert_eq!(command.concurrency.get(), 2);
        assert_eq!(command.required_inputs, vec!["topic".to_owned(), "audience".to_owned()]);

        let file = file("runner = \"command\"\ncommand = [\"/bin/sh\", \"-c\", \"echo hi\"]\ncommand_timeout = 5\n");
        let config = resolve(&ServeArgs::default(), &EnvMap::new(), Some(&file)).expect("valid");
        let RunnerConfig::Command(command) = config.runner else { panic!("command runner") };
        assert_eq!(command.args, vec!["-c".to_owned(), "echo hi".to_owned()]);
        assert_eq!(command.timeout, Duration::from_secs(5));
    }

    #[test]
    fn the_command_runner_needs_a_command_and_command_flags_need_the_command_runner() {
        let message = err(
            &ServeArgs { runner: Some("command".into()), ..ServeArgs::default() },
            &EnvMap::new(),
            None,
        );
        assert!(message.starts_with("--runner command needs a program"), "{message}");
        let flags = ServeArgs {
            runner: Some("demo".into()),
            command_timeout: Some("5s".into()),
            ..ServeArgs::default()
        };
        let message = err(&flags, &EnvMap::new(), None);
        assert!(
            message.starts_with("--command-timeout only applies to --runner command"),
            "{message}"
        );
        let flags = ServeArgs {
            runner: Some("external".into()),
            demo_step_delay: Some("0s".into()),
            ..ServeArgs::default()
        };
        let message = err(&flags, &EnvMap::new(), None);
        assert!(
            message.starts_with("--demo-step-delay only applies to --runner demo"),
            "{message}"
        );
        let flags = ServeArgs {
            command: Some("true".into()),
            command_timeout: Some("0s".into()),
            ..ServeArgs::default()
        };
        let message = err(&flags, &EnvMap::new(), None);
        assert!(
            message.starts_with("invalid --command-timeout \"0s\": expected a duration above zero"),
            "{message}"
        );
        let flags = ServeArgs { command: Some("'unbalanced".into()), ..ServeArgs::default() };
        let message = err(&flags, &EnvMap::new(), None);
        assert!(message.starts_with("invalid --command"), "{message}");
    }

    #[test]
    fn listen_accepts_ipv6_and_localhost() {
        for (given, want) in [
            ("[::1]:9000", "[::1]:9000"),
            ("localhost:7", "127.0.0.1:7"),
            ("0.0.0.0:0", "0.0.0.0:0"),
        ] {
            let flags = ServeArgs { listen: Some(given.into()), ..ServeArgs::default() };
            let config = resolve(&flags, &EnvMap::new(), None).expect("valid");
            assert_eq!(config.listen.to_string(), want);
        }
    }
}
