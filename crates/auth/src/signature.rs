//! Standard Webhooks v1 signatures: [`sign`] for senders (the `hmac` strategy uses it) and
//! [`verify`] for receivers (`hookstream listen`, or any Rust service receiving hookstream
//! webhooks).
//!
//! The signed content is `"{webhook-id}.{webhook-timestamp}.{body}"`; the signature is
//! `v1,<base64(HMAC-SHA256(key, content))>`. A `webhook-signature` header may carry several
//! space-separated signatures (key rotation); verification succeeds if any `v1` one matches,
//! and skips other versions. This module owns the signing maths only; it does not read or
//! send requests.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use hookstream_auth::signature::{sign, verify_parts, SigningSecret};
//!
//! let secret = SigningSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")?;
//! let body = br#"{"email":"test@example.com","username":"test_user"}"#;
//! let signature = sign(&secret, "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body);
//! assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
//!
//! let now = UNIX_EPOCH + Duration::from_secs(1649367553 + 10);
//! let header = format!("v1,b2xkLWtleQ== {signature}"); // an old key's signature, then ours
//! verify_parts(&secret, "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", "1649367553", body, &header, now)
//!     .expect("valid");
//! # Ok::<(), hookstream_auth::signature::SecretFormatError>(())
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The `webhook-id` header.
pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
/// The `webhook-timestamp` header (unix seconds).
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// The `webhook-signature` header.
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// How far a `webhook-timestamp` may be from the receiver's clock, either way.
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The prefix of Standard Webhooks secrets, followed by the base64 key.
pub const SECRET_PREFIX: &str = "whsec_";

const VERSION: &str = "v1";

/// An HMAC signing key. `Debug` prints `***`.
#[derive(Clone)]
pub struct SigningSecret {
    key: Box<[u8]>,
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

/// Why a string is not a usable signing secret. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretFormatError {
    /// The secret (or the key after `whsec_`) is empty.
    #[error("the secret is empty")]
    Empty,
    /// The part after `whsec_` is not standard base64.
    #[error("the part after \"whsec_\" is not valid base64")]
    InvalidBase64,
}

impl SigningSecret {
    /// Parses a secret: `whsec_<base64>` (Standard Webhooks) decodes to the key; any other
    /// string is used as raw bytes (its UTF-8 encoding is the key), for receivers that were
    /// given a plain shared secret.
    pub fn parse(secret: &str) -> Result<Self, SecretFormatError> {
        match secret.strip_prefix(SECRET_PREFIX) {
            Some(encoded) => {
                let key = STANDARD.decode(encoded).map_err(|_| SecretFormatError::InvalidBase64)?;
                Self::from_bytes(key)
            }
            None => Self::from_bytes(secret.as_bytes().to_vec()),
        }
    }

    /// A key given as bytes.
    pub fn from_bytes(key: Vec<u8>) -> Result<Self, SecretFormatError> {
        if key.is_empty() {
            return Err(SecretFormatError::Empty);
        }
        Ok(Self { key: key.into_boxed_slice() })
    }

    fn mac(&self, webhook_id: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
        // HMAC is defined for keys of every length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC-SHA256 accepts keys of any length");
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

/// Signs one attempt: returns the `webhook-signature` value `v1,<base64>`.
pub fn sign(secret: &SigningSecret, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = secret.mac(webhook_id, &timestamp.to_string(), body);
    format!("{VERSION},{}", STANDARD.encode(mac))
}

/// Why a webhook's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header is not visible ASCII.
    #[error("header {0} is not valid text")]
    InvalidHeader(&'static str),
    /// `webhook-timestamp` is not an integer.
    #[error("webhook-timestamp is not a unix timestamp")]
    InvalidTimestamp,
    /// The timestamp is more than the tolerance before now (a replay, or a slow clock).
    #[error("webhook-timestamp is too old")]
    TimestampTooOld,
    /// The timestamp is more than the tolerance after now.
    #[error("webhook-timestamp is too far in the future")]
    TimestampTooNew,
    /// No `v1` signature in the header matches.
    #[error("no matching signature")]
    NoMatchingSignature,
}

impl VerifyError {
    /// Whether the failure is about the timestamp (clock skew or replay) rather than the
    /// signature itself.
    pub fn is_timestamp(&self) -> bool {
        matches!(self, Self::InvalidTimestamp | Self::TimestampTooOld | Self::TimestampTooNew)
    }
}

/// Verifies a received webhook from its headers (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature`) and exact body bytes, against the receiver's clock `now`.
pub fn verify(
    secret: &SigningSecret,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), VerifyError> {
    let header = |name: &'static str| -> Result<&str, VerifyError> {
        let value = headers.get(name).ok_or(VerifyError::MissingHeader(name))?;
        value.to_str().map_err(|_| VerifyError::InvalidHeader(name))
    };
    verify_parts(
        secret,
        header("webhook-id")?,
        header("webhook-timestamp")?,
        body,
        header("webhook-signature")?,
        now,
    )
}

/// Verifies from the three header values and the body: `timestamp` as received (unix
/// seconds), `signatures` the whole `webhook-signature` value. Comparisons are constant-time.
pub fn verify_parts(
    secret: &SigningSecret,
    webhook_id: &str,
    timestamp: &str,
    body: &[u8],
    signatures: &str,
    now: SystemTime,
) -> Result<(), VerifyError> {
    let sent: i64 = timestamp.trim().parse().map_err(|_| VerifyError::InvalidTimestamp)?;
    let now = unix_seconds(now);
    let tolerance = TIMESTAMP_TOLERANCE.as_secs() as i64;
    if now.saturating_sub(sent) > tolerance {
        return Err(VerifyError::TimestampTooOld);
    }
    if sent.saturating_sub(now) > tolerance {
        return Err(VerifyError::TimestampTooNew);
    }
    let expected = secret.mac(webhook_id, timestamp.trim(), body);
    let matched = signatures
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == VERSION)
        .filter_map(|(_, encoded)| STANDARD.decode(encoded).ok())
        .any(|candidate| bool::from(candidate.ct_eq(&expected)));
    if matched {
        Ok(())
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_secret_is_its_bytes() {
        let raw = SigningSecret::parse("plain-secret").expect("valid");
        let bytes = SigningSecret::from_bytes(b"plain-secret".to_vec()).expect("valid");
        assert_eq!(sign(&raw, "id", 1, b"x"), sign(&bytes, "id", 1, b"x"));
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert_eq!(SigningSecret::parse("").unwrap_err(), SecretFormatError::Empty);
        assert_eq!(SigningSecret::parse("whsec_").unwrap_err(), SecretFormatError::Empty);
        assert_eq!(SigningSecret::parse("whsec_!!").unwrap_err(), SecretFormatError::InvalidBase64);
    }

    #[test]
    fn unix_seconds_handles_times_before_the_epoch() {
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), -5);
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(5)), 5);
    }
}
