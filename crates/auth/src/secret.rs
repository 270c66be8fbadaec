//! [`Secret`], the one type that holds a credential (token, password, signing secret).
//!
//! It owns masking: `Debug` and `Display` print `***`, and it implements no `Serialize`, so a
//! secret only leaves through an explicit [`Secret::expose`]. It does not zeroize memory.

use std::fmt;

/// A credential whose `Debug` and `Display` print `***`.
///
/// ```
/// use hookstream_auth::Secret;
///
/// let token = Secret::new("s3cr3t");
/// assert_eq!(format!("{token:?} {token}"), "*** ***");
/// assert_eq!(token.expose(), "s3cr3t");
/// ```
#[derive(Clone)]
pub struct Secret(Box<str>);

impl Secret {
    /// The mask printed instead of a secret value.
    pub const MASK: &'static str = "***";

    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().into_boxed_str())
    }

    /// The credential itself. Every call is a place where the secret leaves its mask: use it
    /// only to put the value on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the credential is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MASK)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}
