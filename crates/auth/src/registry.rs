//! The registry: parses an `authentication` JSON object into a validated [`AuthConfig`] and
//! builds its runtime [`AuthStrategy`] by the `strategy` name.
//!
//! It owns the config/runtime split and the plugin seam for third-party strategies
//! ([`StrategyFactory`] → [`StrategyConfig`] → [`AuthStrategy`]). It does not own any
//! strategy's behaviour (see [`builtin`](crate::builtin)) and does no IO: validation is pure,
//! and building a built-in opens no connection.
//!
//! ```
//! use hookstream_auth::Registry;
//! use serde_json::json;
//!
//! let registry = Registry::with_builtins();
//! let config = registry.validate(&json!({"strategy": "bearer", "token": "t0ken"}))?;
//! assert_eq!(config.strategy(), "bearer");
//! assert!(!format!("{config:?}").contains("t0ken"));
//! let strategy = config.build()?;
//! assert_eq!(strategy.name(), "bearer");
//!
//! let err = registry.validate(&json!({"strategy": "foo"})).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "unknown authentication strategy \"foo\"; known strategies: \
//!      basic, bearer, header, hmac, none, oauth2_client_credentials",
//! );
//! # Ok::<(), hookstream_auth::AuthConfigError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::builtin::{self, BuiltinOptions};
use crate::error::echo_name;
use crate::{AuthConfigError, AuthStrategy, RegisterError, Secret};

/// The plugin entry point: validates the fields of one strategy's configuration.
///
/// Implement it (or pass a closure `|fields: &mut ConfigFields<'_>| ...`) and
/// [`Registry::register`] it under a name; `{"strategy": "<name>", ...}` then works like a
/// built-in. `validate` must do no IO; put IO in [`StrategyConfig::build`] or in the strategy.
pub trait StrategyFactory: Send + Sync {
    /// Reads the fields through `fields` (which records what was read, so unknown fields are
    /// refused and secret fields are masked) and returns the validated configuration.
    fn validate(
        &self,
        fields: &mut ConfigFields<'_>,
    ) -> Result<Box<dyn StrategyConfig>, AuthConfigError>;
}

impl<F> StrategyFactory for F
where
    F: Fn(&mut ConfigFields<'_>) -> Result<Box<dyn StrategyConfig>, AuthConfigError> + Send + Sync,
{
    fn validate(
        &self,
        fields: &mut ConfigFields<'_>,
    ) -> Result<Box<dyn StrategyConfig>, AuthConfigError> {
        self(fields)
    }
}

/// A validated strategy configuration: builds the runtime strategy.
///
/// Its `Debug` must not print a secret (hold secrets as [`Secret`]).
pub trait StrategyConfig: fmt::Debug + Send + Sync {
    /// Builds the runtime strategy. Called once per webhook (the strategy may cache, like an
    /// OAuth2 token); it should not do network IO.
    fn build(&self) -> Result<Arc<dyn AuthStrategy>, AuthConfigError>;
}

/// The fields of one `authentication` object, as a [`StrategyFactory`] reads them.
///
/// Every accessor marks its field as known; after `validate` returns, any field nobody read
/// is refused as unknown. Fields read with the `*_secret` accessors are masked by
/// [`AuthConfig::to_redacted_json`]. Errors made here name the strategy and field and never
/// contain the value.
pub struct ConfigFields<'a> {
    strategy: &'a str,
    map: &'a Map<String, Value>,
    known: &'a Arc<[String]>,
    read: BTreeSet<&'a str>,
    secrets: Vec<String>,
}

impl fmt::Debug for ConfigFields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigFields")
            .field("strategy", &self.strategy)
            .field("fields", &self.map.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<'a> ConfigFields<'a> {
    /// The strategy name being validated.
    pub fn strategy(&self) -> &str {
        self.strategy
    }

    /// The raw value of `field` (`None` when absent or `null`), marked as read.
    pub fn value(&mut self, field: &str) -> Option<&'a Value> {
        let (key, value) = self.map.get_key_value(field)?;
        self.read.insert(key.as_str());
        (!value.is_null()).then_some(value)
    }

    /// A required, non-empty string.
    pub fn required_str(&mut self, field: &str) -> Result<&'a str, AuthConfigError> {
        self.optional_str(field)?.ok_or_else(|| self.missing(field))
    }

    /// An optional string: `None` when absent or `null`; an empty string is refused.
    pub fn optional_str(&mut self, field: &str) -> Result<Option<&'a str>, AuthConfigError> {
        match self.value(field) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Err(self.invalid(field, "must not be empty")),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.invalid(field, "must be a string")),
        }
    }

    /// A required, non-empty secret string; masked in the redacted JSON.
    pub fn required_secret(&mut self, field: &str) -> Result<Secret, AuthConfigError> {
        self.optional_secret(field)?.ok_or_else(|| self.missing(field))
    }

    /// An optional secret string; masked in the redacted JSON.
    pub fn optional_secret(&mut self, field: &str) -> Result<Option<Secret>, AuthConfigError> {
        if self.map.contains_key(field) {
            self.secrets.push(field.to_owned());
        }
        Ok(self.optional_str(field)?.map(Secret::new))
    }

    /// A "missing field" error for `field`.
    pub fn missing(&self, field: &str) -> AuthConfigError {
        AuthConfigError::MissingField {
            strategy: self.strategy.to_owned(),
            field: field.to_owned(),
            known: self.known.clone(),
        }
    }

    /// An "invalid field" error for `field`. `reason` must not contain the value.
    pub fn invalid(&self, field: &str, reason: impl Into<String>) -> AuthConfigError {
        AuthConfigError::InvalidField {
            strategy: self.strategy.to_owned(),
            field: field.to_owned(),
            reason: reason.into(),
            known: self.known.clone(),
        }
    }

    fn unread(&self) -> Option<&'a str> {
        self.map
            .keys()
            .map(String::as_str)
            .find(|key| *key != "strategy" && !self.read.contains(key))
    }
}

/// Builds authentication strategies by name. Cheap to clone and share (`Arc` inside).
///
/// [`Registry::with_builtins`] knows the strategies of SPEC §4; [`Registry::register`] adds
/// more. Registration happens at start-up (`&mut self`); validation and building take `&self`.
#[derive(Clone)]
pub struct Registry {
    factories: Arc<BTreeMap<String, Arc<dyn StrategyFactory>>>,
    names: Arc<[String]>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("strategies", &self.names).finish()
    }
}

impl Default for Registry {
    /// The same as [`Registry::with_builtins`].
    fn default() -> Self {
        Self::with_builtins()
    }
}

impl Registry {
    /// A registry without any strategy. A `null` or absent `authentication` still validates
    /// (as no authentication); `{"strategy": "none"}` needs `none` registered.
    pub fn empty() -> Self {
        Self { factories: Arc::new(BTreeMap::new()), names: Arc::from(Vec::new()) }
    }

    /// A registry with the built-ins: `basic`, `bearer`, `header`, `hmac`, `none`,
    /// `oauth2_client_credentials`, with default [`BuiltinOptions`].
    pub fn with_builtins() -> Self {
        Self::with_builtin_options(BuiltinOptions::default())
    }

    /// A registry with the built-ins, configured by `options` (e.g. the TLS configuration of
    /// the OAuth2 token client).
    pub fn with_builtin_options(options: BuiltinOptions) -> Self {
        let mut registry = Self::empty();
        builtin::register_all(&mut registry, options);
        registry
    }

    /// Registers `factory` under `name`. Names are 1 to 64 characters of `a-z`, `0-9` and
    /// `_`, starting with a letter; a name registered already is refused.
    pub fn register(
        &mut self,
        name: &str,
        factory: impl StrategyFactory + 'static,
    ) -> Result<&mut Self, RegisterError> {
        let valid = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(RegisterError::InvalidName(echo_name(name)));
        }
        if self.factories.contains_key(name) {
            return Err(RegisterError::AlreadyRegistered(name.to_owned()));
        }
        Arc::make_mut(&mut self.factories).insert(name.to_owned(), Arc::new(factory));
        self.names = self.factories.keys().cloned().collect();
        Ok(self)
    }

    /// The registered strategy names, sorted.
    pub fn strategies(&self) -> &[String] {
        &self.names
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// Validates an `authentication` value (`null` means none) without any IO.
    pub fn validate(&self, json: &Value) -> Result<AuthConfig, AuthConfigError> {
        let map = match json {
            Value::Null => return Ok(AuthConfig::none()),
            Value::Object(map) => map,
            _ => return Err(AuthConfigError::NotAnObject { known: self.names.clone() }),
        };
        let Some(Value::String(strategy)) = map.get("strategy") else {
            return Err(AuthConfigError::MissingStrategy { known: self.names.clone() });
        };
        let Some(factory) = self.factories.get(strategy.as_str()) else {
            return Err(AuthConfigError::UnknownStrategy {
                strategy: echo_name(strategy),
                known: self.names.clone(),
            });
        };
        let mut fields = ConfigFields {
            strategy,
            map,
            known: &self.names,
            read: BTreeSet::new(),
            secrets: Vec::new(),
        };
        let config = factory.validate(&mut fields)?;
        if let Some(field) = fields.unread() {
            return Err(AuthConfigError::UnknownField {
                strategy: strategy.clone(),
                field: echo_name(field),
                known: self.names.clone(),
            });
        }
        Ok(AuthConfig {
            strategy: strategy.clone(),
            json: json.clone(),
            secret_fields: fields.secrets,
            config: Arc::from(config),
        })
    }

    /// Validates an optional `authentication` value: absent means none.
    pub fn validate_optional(&self, json: Option<&Value>) -> Result<AuthConfig, AuthConfigError> {
        json.map_or_else(|| Ok(AuthConfig::none()), |json| self.validate(json))
    }

    /// Validates and builds in one step.
    pub fn build(&self, json: &Value) -> Result<Arc<dyn AuthStrategy>, AuthConfigError> {
        self.validate(json)?.build()
    }
}

/// A validated `authentication` configuration: builds the runtime strategy and keeps the
/// original JSON for storage. Cheap to clone.
///
/// `Debug` masks secrets. The original JSON, secrets included, is only reachable through
/// [`AuthConfig::to_json_with_secrets`].
#[derive(Clone)]
pub struct AuthConfig {
    strategy: String,
    json: Value,
    secret_fields: Vec<String>,
    config: Arc<dyn StrategyConfig>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("strategy", &self.strategy)
            .field("config", &self.config)
            .finish()
    }
}

impl AuthConfig {
    /// No authentication (what `null` or an absent `authentication` means).
    pub fn none() -> Self {
        Self {
            strategy: "none".to_owned(),
            json: Value::Null,
            secret_fields: Vec::new(),
            config: Arc::new(builtin::NoneConfig),
        }
    }

    /// The strategy name.
    pub fn strategy(&self) -> &str {
        &self.strategy
    }

    /// Whether this is no authentication at all.
    pub fn is_none(&self) -> bool {
        self.strategy == "none"
    }

    /// Builds the runtime strategy (no network IO). Build one per webhook: strategies may
    /// hold per-webhook state such as a cached OAuth2 token.
    pub fn build(&self) -> Result<Arc<dyn AuthStrategy>, AuthConfigError> {
        self.config.build()
    }

    /// The original JSON as given, **secrets included**: for encrypted storage only, never
    /// for logs or API responses (use [`AuthConfig::to_redacted_json`] there). Validating it
    /// again gives an equal configuration.
    pub fn to_json_with_secrets(&self) -> Value {
        self.json.clone()
    }

    /// The original JSON with every secret field's value replaced by `"***"`: safe for API
    /// responses and logs.
    pub fn to_redacted_json(&self) -> Value {
        let mut json = self.json.clone();
        if let Value::Object(map) = &mut json {
            for field in &self.secret_fields {
                if let Some(value) = map.get_mut(field) {
                    *value = Value::String(Secret::MASK.to_owned());
                }
            }
        }
        json
    }
}
