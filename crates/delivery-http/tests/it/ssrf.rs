//! The SSRF guard: literal addresses in blocked ranges and names resolving to them are
//! refused (dead letters with the reason, no request, no retry loop); allow-listed ranges
//! are reached.

use hookstream_delivery_http::{validate_target, DeadLetterReason, Mode, SsrfPolicy, TargetError};
use url::Url;

use crate::receiver::Receiver;
use crate::support::{dispatcher_config, terminal, webhook, Setup};

async fn refused(
    url: Url,
    policy: SsrfPolicy,
) -> (Setup, Vec<hookstream_delivery_http::DeadLetter>) {
    let mut config = dispatcher_config();
    config.ssrf = policy;
    let s = Setup::with_config(config);
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(url, Mode::Realtime));
    s.publish(vec![terminal()]).await;
    let summary = handle.finished().await.expect("finished");
    assert_eq!(summary.dead_lettered_events, 1);
    let letters = s.ledger.dead_letters(&s.key);
    (s, letters)
}

fn assert_blocked(letters: &[hookstream_delivery_http::DeadLetter], what: &str) {
    assert_eq!(letters.len(), 1, "{what}");
    assert_eq!(letters[0].attempts, 1, "{what}: refused once, not retried");
    assert!(
        matches!(&letters[0].reason, DeadLetterReason::Blocked { message } if message.contains("blocked range")),
        "{what}: {:?}",
        letters[0].reason
    );
}

#[tokio::test(start_paused = true)]
async fn refuses_blocked_literal_addresses_without_connecting() {
    let rx = Receiver::start([]).await;
    let port = rx.port();
    for host in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "[::1]", "[::ffff:127.0.0.1]"] {
        let url = Url::parse(&format!("http://{host}:{port}/hook")).unwrap();
        let (_s, letters) = refused(url, SsrfPolicy::default()).await;
        assert_blocked(&letters, host);
    }
    assert!(rx.received().is_empty());
}

#[tokio::test(start_paused = true)]
async fn refuses_a_name_resolving_to_loopback() {
    let rx = Receiver::start([]).await;
    let (_s, letters) = refused(rx.url_with_host("localhost"), SsrfPolicy::default()).await;
    assert_blocked(&letters, "localhost");
    assert!(rx.received().is_empty());
}

#[tokio::test(start_paused = true)]
async fn reaches_allow_listed_ranges_by_address_and_by_name() {
    let rx = Receiver::start([]).await;
    for url in [rx.url(), rx.url_with_host("localhost")] {
        let s = Setup::new();
        let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(url.clone(), Mode::Realtime));
        s.publish(vec![terminal()]).await;
        let summary = handle.finished().await.expect("finished");
        assert_eq!(summary.delivered_events, 1, "{url}");
    }
    assert_eq!(rx.received().len(), 2);
}

#[test]
fn validate_target_refuses_at_kickoff() {
    let policy = SsrfPolicy::default();
    for url in ["http://127.0.0.1/", "http://10.0.0.1/", "http://169.254.169.254/", "http://[::1]/"]
    {
        let err = validate_target(&Url::parse(url).unwrap(), &policy).unwrap_err();
        assert!(matches!(err, TargetError::Blocked(_)), "{url}");
    }
    let err = validate_target(&Url::parse("gopher://example.com/").unwrap(), &policy).unwrap_err();
    assert!(matches!(err, TargetError::Shape(_)));
    assert!(validate_target(&Url::parse("https://hooks.example.com/x").unwrap(), &policy).is_ok());
    let allowed = SsrfPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
    assert!(validate_target(&Url::parse("http://127.0.0.1:9/").unwrap(), &allowed).is_ok());
}
