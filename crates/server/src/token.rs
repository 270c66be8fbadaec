//! Tokens: the API token that guards the HTTP API and the per-execution ingest tokens that
//! external producers present, with constant-time comparison and hashing for storage.
//!
//! Neither token type prints its value through `Debug`; stores keep only an
//! [`IngestTokenHash`], never an ingest token itself.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The bearer token of the HTTP API (`Authorization: Bearer <token>`). `Debug` masks it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(Box<str>);

impl ApiToken {
    /// A token with this value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().into_boxed_str())
    }

    /// A fresh random token (`hs_` and 43 URL-safe characters, 256 bits).
    pub fn generate() -> Self {
        Self(format!("hs_{}", random_256()).into_boxed_str())
    }

    /// The token's value, to print it once or write it to the data dir.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token. Both are hashed first and the digests compared in
    /// constant time, so neither the content nor the length of the token leaks through timing.
    pub fn verify(&self, presented: &str) -> bool {
        IngestTokenHash::of(&self.0).verify(presented)
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

impl From<String> for ApiToken {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for ApiToken {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

/// An execution's ingest token, as handed out once by `POST /executions` and to runners.
/// `Debug` masks it.
#[derive(Clone, PartialEq, Eq)]
pub struct IngestToken(Box<str>);

impl IngestToken {
    /// A fresh random token (`hsi_` and 43 URL-safe characters, 256 bits).
    pub fn generate() -> Self {
        Self(format!("hsi_{}", random_256()).into_boxed_str())
    }

    /// The token's value, for the response or the runner's environment.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash a store keeps instead of the token.
    pub fn hash(&self) -> IngestTokenHash {
        IngestTokenHash::of(&self.0)
    }
}

impl fmt::Debug for IngestToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IngestToken(***)")
    }
}

/// The SHA-256 of an ingest token: what stores keep. Tokens carry 256 random bits, so a plain
/// hash (no salt, no stretching) is enough to make a leaked store useless for ingesting.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IngestTokenHash([u8; 32]);

impl IngestTokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// A hash read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The hash's bytes, for storage.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `presented` hashes to this hash, compared in constant time.
    pub fn verify(&self, presented: &str) -> bool {
        bool::from(Self::of(presented).0.ct_eq(&self.0))
    }
}

impl fmt::Debug for IngestTokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IngestTokenHash(..)")
    }
}

fn random_256() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_token_verifies_only_itself_and_hides_in_debug() {
        let token = ApiToken::generate();
        assert!(token.verify(token.expose()));
        assert!(!token.verify("hs_wrong"));
        assert!(!token.verify(""));
        assert!(!format!("{token:?}").contains(token.expose()));
    }

    #[test]
    fn ingest_token_hash_verifies_the_token() {
        let token = IngestToken::generate();
        let hash = token.hash();
        assert!(hash.verify(token.expose()));
        assert!(!hash.verify("hsi_other"));
        assert_eq!(IngestTokenHash::from_bytes(*hash.as_bytes()), hash);
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
