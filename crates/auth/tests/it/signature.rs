//! Standard Webhooks signing and verification: the published vector, tolerance, key
//! rotation, unknown versions, and verify(sign(x)) as a property.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hookstream_auth::signature::{
    sign, verify, verify_parts, SigningSecret, VerifyError, TIMESTAMP_TOLERANCE,
};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
const TIMESTAMP: i64 = 1649367553;
const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

fn secret() -> SigningSecret {
    SigningSecret::parse(SECRET).expect("valid secret")
}

fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).expect("positive"))
}

fn headers(id: &str, timestamp: &str, signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in
        [("webhook-id", id), ("webhook-timestamp", timestamp), ("webhook-signature", signature)]
    {
        headers.insert(name, HeaderValue::from_str(value).expect("valid header"));
    }
    headers
}

#[test]
fn published_test_vector_signs() {
    assert_eq!(sign(&secret(), ID, TIMESTAMP, BODY), SIGNATURE);
}

#[test]
fn published_test_vector_verifies_from_headers() {
    let headers = headers(ID, "1649367553", SIGNATURE);
    assert_eq!(verify(&secret(), &headers, BODY, at(TIMESTAMP)), Ok(()));
}

#[test]
fn timestamp_tolerance_is_five_minutes_both_ways() {
    assert_eq!(TIMESTAMP_TOLERANCE, Duration::from_secs(300));
    let check = |now| verify_parts(&secret(), ID, "1649367553", BODY, SIGNATURE, at(now));
    assert_eq!(check(TIMESTAMP + 300), Ok(()));
    assert_eq!(check(TIMESTAMP - 300), Ok(()));
    assert_eq!(check(TIMESTAMP + 301), Err(VerifyError::TimestampTooOld));
    assert_eq!(check(TIMESTAMP - 301), Err(VerifyError::TimestampTooNew));
    assert!(check(TIMESTAMP + 301).unwrap_err().is_timestamp());
}

#[test]
fn any_of_several_signatures_may_match() {
    let old_key = SigningSecret::parse("whsec_b2xkLWtleS1vbGQta2V5").expect("valid");
    let old = sign(&old_key, ID, TIMESTAMP, BODY);
    for header in [format!("{old} {SIGNATURE}"), format!("{SIGNATURE} {old}")] {
        assert_eq!(verify_parts(&secret(), ID, "1649367553", BODY, &header, at(TIMESTAMP)), Ok(()));
    }
    assert_eq!(
        verify_parts(&secret(), ID, "1649367553", BODY, &old, at(TIMESTAMP)),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn unknown_versions_and_garbage_are_skipped() {
    let mac = SIGNATURE.trim_start_matches("v1,");
    let header = format!("v1a,{mac} v2,{mac} junk v1,!!notbase64!! {SIGNATURE}");
    assert_eq!(verify_parts(&secret(), ID, "1649367553", BODY, &header, at(TIMESTAMP)), Ok(()));
    let only_unknown = format!("v1a,{mac} v2,{mac}");
    assert_eq!(
        verify_parts(&secret(), ID, "1649367553", BODY, &only_unknown, at(TIMESTAMP)),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn missing_and_malformed_headers() {
    let mut missing = headers(ID, "1649367553", SIGNATURE);
    missing.remove("webhook-signature");
    assert_eq!(
        verify(&secret(), &missing, BODY, at(TIMESTAMP)),
        Err(VerifyError::MissingHeader("webhook-signature"))
    );
    let bad_time = headers(ID, "yesterday", SIGNATURE);
    assert_eq!(
        verify(&secret(), &bad_time, BODY, at(TIMESTAMP)),
        Err(VerifyError::InvalidTimestamp)
    );
}

proptest! {
    #[test]
    fn verify_accepts_what_sign_produced_and_nothing_else(
        key in proptest::collection::vec(any::<u8>(), 1..64),
        id in "[a-zA-Z0-9_]{1,40}",
        timestamp in 0i64..4_000_000_000,
        body in proptest::collection::vec(any::<u8>(), 0..512),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let secret = SigningSecret::from_bytes(key).expect("non-empty");
        let signature = sign(&secret, &id, timestamp, &body);
        let ts = timestamp.to_string();
        prop_assert_eq!(verify_parts(&secret, &id, &ts, &body, &signature, at(timestamp)), Ok(()));

        // One changed bit of the body fails.
        if !body.is_empty() {
            let mut changed = body.clone();
            let at_byte = flip.index(body.len());
            changed[at_byte] ^= 1 << bit;
            prop_assert_eq!(
                verify_parts(&secret, &id, &ts, &changed, &signature, at(timestamp)),
                Err(VerifyError::NoMatchingSignature)
            );
        }
        // One changed bit of the MAC fails.
        let mut mac = STANDARD.decode(&signature[3..]).expect("base64");
        let at_byte = flip.index(mac.len());
        mac[at_byte] ^= 1 << bit;
        let forged = format!("v1,{}", STANDARD.encode(&mac));
        prop_assert_eq!(
            verify_parts(&secret, &id, &ts, &body, &forged, at(timestamp)),
            Err(VerifyError::NoMatchingSignature)
        );
        // Another id or timestamp fails.
        let other_id = format!("{id}x");
        prop_assert_eq!(
            verify_parts(&secret, &other_id, &ts, &body, &signature, at(timestamp)),
            Err(VerifyError::NoMatchingSignature)
        );
        let other_ts = (timestamp + 1).to_string();
        prop_assert_eq!(
            verify_parts(&secret, &id, &other_ts, &body, &signature, at(timestamp)),
            Err(VerifyError::NoMatchingSignature)
        );
    }
}
