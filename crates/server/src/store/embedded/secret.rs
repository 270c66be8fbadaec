//! Secrets at rest: the [`SecretKey`] given by the operator (`HOOKSTREAM_SECRET_KEY`, read by
//! the CLI) and the sealing of webhook configurations with XChaCha20-Poly1305.
//!
//! A sealed value is `hs1:` followed by a random 24-byte nonce and the ciphertext. Values
//! without the prefix are plain (written while no key was set) and read as they are. The
//! database records one sealed check value, so that starting with a missing or wrong key is
//! refused at open rather than failing on the first webhook read.

use std::fmt;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, KeyInit as _};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;

use super::EmbeddedError;

/// The prefix of a sealed value (format version 1).
const SEALED: &[u8] = b"hs1:";

/// The plaintext of the check value.
const CHECK: &[u8] = b"hookstream secret key check";

/// A 256-bit key that seals webhook secrets at rest. `Debug` does not print it.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Why a secret key was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretKeyError {
    /// Not base64 of exactly 32 bytes.
    #[error(
        "the secret key must be the base64 of 32 random bytes (e.g. `openssl rand -base64 32`)"
    )]
    Malformed,
}

impl SecretKey {
    /// The key from its base64 form (standard or URL-safe alphabet, padded or not), which
    /// must decode to exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, SecretKeyError> {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let text = text.trim();
        let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .ok_or(SecretKeyError::Malformed)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretKeyError::Malformed)?;
        Ok(Self(key))
    }

    /// The key with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// What the key check found at open.
pub(super) enum KeyCheck {
    /// The key (or its absence) fits the database.
    Matches,
    /// A key is given and the database has no check yet: record this value.
    Record(Vec<u8>),
    /// The database holds sealed values and no key is given.
    Missing,
    /// The key given does not open the database's check value.
    Wrong,
}

/// Seals and opens values with the optional key.
pub(super) struct Sealer {
    cipher: Option<XChaCha20Poly1305>,
}

impl Sealer {
    pub(super) fn new(key: Option<SecretKey>) -> Self {
        Self { cipher: key.map(|k| XChaCha20Poly1305::new(&k.0.into())) }
    }

    /// Compares the key with the database's recorded check value.
    pub(super) fn check(&self, recorded: Option<&[u8]>) -> KeyCheck {
        match (&self.cipher, recorded) {
            (None, None) => KeyCheck::Matches,
            (None, Some(_)) => KeyCheck::Missing,
            (Some(_), None) => match self.seal(CHECK) {
                Ok(value) => KeyCheck::Record(value),
                Err(_) => KeyCheck::Wrong,
            },
            (Some(_), Some(value)) => match self.open(value) {
                Ok(plain) if plain == CHECK => KeyCheck::Matches,
                _ => KeyCheck::Wrong,
            },
        }
    }

    /// `plain` sealed when a key is set, else as it is.
    pub(super) fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, EmbeddedError> {
        let Some(cipher) = &self.cipher else { return Ok(plain.to_vec()) };
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed =
            cipher.encrypt(XNonce::from_slice(&nonce), plain).map_err(|_| EmbeddedError::Secret)?;
        let mut out = Vec::with_capacity(SEALED.len() + nonce.len() + sealed.len());
        out.extend_from_slice(SEALED);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plain value of a stored one (sealed or plain).
    pub(super) fn open(&self, stored: &[u8]) -> Result<Vec<u8>, EmbeddedError> {
        let Some(rest) = stored.strip_prefix(SEALED) else { return Ok(stored.to_vec()) };
        let cipher = self.cipher.as_ref().ok_or(EmbeddedError::Secret)?;
        if rest.len() < 24 {
            return Err(EmbeddedError::Secret);
        }
        let (nonce, sealed) = rest.split_at(24);
        cipher.decrypt(XNonce::from_slice(nonce), sealed).map_err(|_| EmbeddedError::Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes([byte; 32])
    }

    #[test]
    fn seal_then_open_gives_the_plaintext_and_hides_it() {
        let sealer = Sealer::new(Some(key(7)));
        let sealed = sealer.seal(br#"{"token":"my-secret-token"}"#).unwrap();
        assert!(sealed.starts_with(SEALED));
        assert!(!sealed.windows(15).any(|w| w == b"my-secret-token"));
        assert_eq!(sealer.open(&sealed).unwrap(), br#"{"token":"my-secret-token"}"#);
    }

    #[test]
    fn another_key_or_no_key_cannot_open() {
        let sealed = Sealer::new(Some(key(1))).seal(b"x").unwrap();
        assert!(matches!(Sealer::new(Some(key(2))).open(&sealed), Err(EmbeddedError::Secret)));
        assert!(matches!(Sealer::new(None).open(&sealed), Err(EmbeddedError::Secret)));
    }

    #[test]
    fn plain_values_stay_readable_with_a_key() {
        assert_eq!(Sealer::new(Some(key(1))).open(b"{}").unwrap(), b"{}");
        assert_eq!(Sealer::new(None).seal(b"{}").unwrap(), b"{}");
    }

    #[test]
    fn key_check_tells_missing_wrong_and_matching_keys() {
        let Sealer { .. } = Sealer::new(None);
        let KeyCheck::Record(value) = Sealer::new(Some(key(3))).check(None) else {
            panic!("a new key is recorded")
        };
        assert!(matches!(Sealer::new(Some(key(3))).check(Some(&value)), KeyCheck::Matches));
        assert!(matches!(Sealer::new(Some(key(4))).check(Some(&value)), KeyCheck::Wrong));
        assert!(matches!(Sealer::new(None).check(Some(&value)), KeyCheck::Missing));
        assert!(matches!(Sealer::new(None).check(None), KeyCheck::Matches));
    }

    #[test]
    fn keys_parse_from_base64_of_32_bytes_only() {
        let text = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert!(SecretKey::from_base64(&text).is_ok());
        assert!(SecretKey::from_base64("c2hvcnQ=").is_err());
        assert!(SecretKey::from_base64("not base64 at all!").is_err());
        assert_eq!(format!("{:?}", key(5)), "SecretKey(..)");
    }
}
