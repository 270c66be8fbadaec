//! Retry classification and timing, in one place (SPEC §4): [`RetryPolicy`] (backoff, jitter,
//! `Retry-After` cap, maximum age) and `classify`, the single function that turns an
//! attempt's result into a decision: success, retry, split, gone or dead letter.
//!
//! This module does no IO and never inspects error text: decisions come from status codes,
//! error kinds and `AuthError::is_retryable()`.

use std::time::{Duration, SystemTime};

use http::{HeaderValue, StatusCode};
use rand::Rng;

use crate::client::{AttemptError, Response};
use crate::ledger::DeadLetterReason;

/// When and how long failed batches are retried.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Delay before the first retry (default 500 ms); doubles with each attempt.
    pub initial_backoff: Duration,
    /// Backoff cap (default 5 min).
    pub max_backoff: Duration,
    /// Time from a batch's first attempt after which it is dead-lettered (default 24 h).
    pub max_age: Duration,
    /// Cap on a receiver's `Retry-After` (default 1 h).
    pub max_retry_after: Duration,
    /// Random shortening of each backoff, to spread retries of many pairs.
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5 * 60),
            max_age: Duration::from_secs(24 * 60 * 60),
            max_retry_after: Duration::from_secs(60 * 60),
            jitter: Jitter::default(),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, after `attempt` (≥ 1) failed attempts:
    /// `initial_backoff · 2^(attempt-1)` capped at `max_backoff`, then shortened by up to the
    /// jitter fraction.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let base = self.initial_backoff.saturating_mul(1u32 << exp.min(31)).min(self.max_backoff);
        self.jitter.apply(base, rand::thread_rng().gen::<f64>())
    }

    /// The receiver's `Retry-After` (delay-seconds or HTTP date, relative to `now`), capped at
    /// `max_retry_after`; `None` when absent or unreadable.
    pub fn retry_after(&self, value: Option<&HeaderValue>, now: SystemTime) -> Option<Duration> {
        let text = value?.to_str().ok()?.trim();
        let delay = match text.parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => {
                let at = httpdate::parse_http_date(text).ok()?;
                at.duration_since(now).unwrap_or(Duration::ZERO)
            }
        };
        Some(delay.min(self.max_retry_after))
    }
}

/// The fraction (0 to 1) by which a backoff may be randomly shortened (default 0.2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Jitter(f64);

impl Jitter {
    /// No jitter: backoffs are exact (useful in tests).
    pub const NONE: Self = Self(0.0);

    /// Jitter of `fraction`, if it lies in `0..=1`.
    pub fn new(fraction: f64) -> Option<Self> {
        (0.0..=1.0).contains(&fraction).then_some(Self(fraction))
    }

    /// The fraction.
    pub fn fraction(self) -> f64 {
        self.0
    }

    /// `base` shortened by `unit · fraction` of itself (`unit` in `0..1`).
    fn apply(self, base: Duration, unit: f64) -> Duration {
        base.mul_f64(1.0 - self.0 * unit.clamp(0.0, 1.0))
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Self(0.2)
    }
}

/// What to do after an attempt.
#[derive(Debug, PartialEq)]
pub(crate) enum Decision {
    /// Delivered.
    Success,
    /// Try again after the receiver's `Retry-After`, else after the backoff.
    Retry {
        /// The receiver's `Retry-After`, capped.
        after: Option<Duration>,
    },
    /// 413: split the batch in two (a single event: dead letter).
    Split,
    /// 410: the webhook is gone.
    Gone,
    /// Give up on this batch.
    DeadLetter(DeadLetterReason),
}

impl Decision {
    /// The `outcome` label of `hookstream_delivery_attempts_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Retry { .. } => "retry",
            Self::Split => "split",
            Self::Gone => "gone",
            Self::DeadLetter(_) => "dead_letter",
        }
    }
}

/// The one classification of SPEC §4.
pub(crate) fn classify(
    policy: &RetryPolicy,
    result: &Result<Response, AttemptError>,
    now: SystemTime,
) -> Decision {
    let response = match result {
        Ok(response) => response,
        Err(error) if error.is_retryable() => return Decision::Retry { after: None },
        Err(error) => return Decision::DeadLetter(error.dead_letter_reason()),
    };
    let status = response.status;
    match status {
        s if s.is_success() => Decision::Success,
        StatusCode::PAYLOAD_TOO_LARGE => Decision::Split,
        StatusCode::GONE => Decision::Gone,
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_EARLY | StatusCode::TOO_MANY_REQUESTS => {
            Decision::Retry { after: policy.retry_after(response.retry_after.as_ref(), now) }
        }
        s if s.is_server_error() => {
            Decision::Retry { after: policy.retry_after(response.retry_after.as_ref(), now) }
        }
        s => Decision::DeadLetter(DeadLetterReason::Status { status: s.as_u16() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn response(status: u16, retry_after: Option<&'static str>) -> Result<Response, AttemptError> {
        Ok(Response {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: retry_after.map(HeaderValue::from_static),
            body: Bytes::new(),
            version: http::Version::HTTP_11,
        })
    }

    #[test]
    fn classifies_each_status_class() {
        let p = RetryPolicy::default();
        let now = SystemTime::now();
        let c = |s| classify(&p, &response(s, None), now);
        for s in [200, 201, 204, 299] {
            assert_eq!(c(s), Decision::Success, "{s}");
        }
        for s in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert_eq!(c(s), Decision::Retry { after: None }, "{s}");
        }
        assert_eq!(c(413), Decision::Split);
        assert_eq!(c(410), Decision::Gone);
        for s in [300, 301, 302, 307, 308, 400, 401, 403, 404, 422] {
            assert_eq!(c(s), Decision::DeadLetter(DeadLetterReason::Status { status: s }), "{s}");
        }
    }

    #[test]
    fn retry_after_seconds_date_and_cap() {
        let p = RetryPolicy::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let r = |v: &'static str| p.retry_after(Some(&HeaderValue::from_static(v)), now);
        assert_eq!(r("7"), Some(Duration::from_secs(7)));
        assert_eq!(r("86400"), Some(Duration::from_secs(3600)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        let v = HeaderValue::from_str(&date).unwrap();
        assert_eq!(p.retry_after(Some(&v), now), Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        let v = HeaderValue::from_str(&past).unwrap();
        assert_eq!(p.retry_after(Some(&v), now), Some(Duration::ZERO));
        assert_eq!(r("soon"), None);
        assert_eq!(
            classify(&p, &response(429, Some("3")), now),
            Decision::Retry { after: Some(Duration::from_secs(3)) }
        );
    }

    #[test]
    fn backoff_doubles_from_half_a_second_to_five_minutes() {
        let p = RetryPolicy { jitter: Jitter::NONE, ..RetryPolicy::default() };
        assert_eq!(p.backoff(1), Duration::from_millis(500));
        assert_eq!(p.backoff(2), Duration::from_secs(1));
        assert_eq!(p.backoff(3), Duration::from_secs(2));
        assert_eq!(p.backoff(10), Duration::from_secs(256));
        assert_eq!(p.backoff(11), Duration::from_secs(300));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(300));
    }

    proptest! {
        #[test]
        fn backoff_stays_within_bounds(attempt in 1u32..200, fraction in 0.0f64..=1.0) {
            let p = RetryPolicy { jitter: Jitter::new(fraction).unwrap(), ..RetryPolicy::default() };
            let exact = RetryPolicy { jitter: Jitter::NONE, ..RetryPolicy::default() }.backoff(attempt);
            let d = p.backoff(attempt);
            prop_assert!(d <= exact);
            prop_assert!(d <= p.max_backoff);
            prop_assert!(d >= exact.mul_f64(1.0 - fraction) - Duration::from_micros(1));
        }
    }
}
