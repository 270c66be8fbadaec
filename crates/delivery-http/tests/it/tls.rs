//! HTTPS through hyper-rustls with an extra CA (an rcgen test CA): HTTP/2 when the receiver
//! offers h2 by ALPN, HTTP/1.1 when it offers only http/1.1; refused without the CA.

use std::sync::Arc;
use std::time::Duration;

use hookstream_delivery_http::Mode;
use http::Version;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;

use crate::receiver::Receiver;
use crate::support::{dispatcher_config, drafts, terminal, webhook, Setup};

struct TestPki {
    ca_pem: String,
    leaf: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> TestPki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "hookstream test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        leaf: leaf.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

fn server_config(pki: &TestPki, alpn: &[&[u8]]) -> ServerConfig {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf.clone()], pki.key.clone_key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

async fn deliver_over_tls(alpn: &[&[u8]]) -> Vec<crate::receiver::Received> {
    let pki = pki();
    let rx = Receiver::start_tls([], server_config(&pki, alpn)).await;
    let mut config = dispatcher_config();
    config.extra_ca_pem = Some(pki.ca_pem.into_bytes());
    let s = Setup::with_config(config);
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), Mode::Realtime));
    let mut all = drafts(2);
    all.push(terminal());
    s.publish(all).await;
    let summary = handle.finished().await.expect("finished");
    assert_eq!(summary.delivered_events, 3, "{:?}", s.ledger.stats(&s.key));
    assert_eq!(summary.dead_lettered_events, 0);
    assert_eq!(rx.delivered_sequences(), [1, 2, 3]);
    rx.received()
}

// These two assert protocol versions, no timing, and run on real time: with paused time the
// runtime auto-advances while a TLS exchange is between two socket events, which fires the
// 30 s attempt timeout spuriously.
#[tokio::test]
async fn https_with_a_test_ca_over_http2_by_alpn() {
    let got = deliver_over_tls(&[b"h2", b"http/1.1"]).await;
    assert!(got.iter().all(|r| r.version == Version::HTTP_2), "{:?}", got[0].version);
}

#[tokio::test]
async fn https_with_a_test_ca_over_http1() {
    let got = deliver_over_tls(&[b"http/1.1"]).await;
    assert!(got.iter().all(|r| r.version == Version::HTTP_11), "{:?}", got[0].version);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_ca_is_a_connect_error_retried_until_the_maximum_age() {
    let pki = pki();
    let rx = Receiver::start_tls([], server_config(&pki, &[b"http/1.1"])).await;
    let mut config = dispatcher_config();
    config.retry.max_age = Duration::from_secs(2);
    let s = Setup::with_config(config);
    let handle = s.dispatcher.spawn(s.bus(), s.key, webhook(rx.url(), Mode::Realtime));
    s.publish(vec![terminal()]).await;
    let summary = handle.finished().await.expect("finished");
    assert_eq!(summary.dead_lettered_events, 1);
    assert!(rx.received().is_empty(), "no request passes an untrusted handshake");
    let stats = s.ledger.stats(&s.key).unwrap();
    assert!(stats.attempts >= 2, "connect errors are retried");
}

#[test]
fn a_bad_extra_ca_is_refused_when_building() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut config = dispatcher_config();
        config.extra_ca_pem = Some(b"not a certificate".to_vec());
        let ledger = Arc::new(hookstream_delivery_http::MemoryLedger::new());
        let err = hookstream_delivery_http::Dispatcher::new(config, ledger).unwrap_err();
        assert!(err.to_string().contains("client"), "{err}");
    });
}
