//! Integration tests of hookstream-delivery-http: real hyper client and server on loopback,
//! paused tokio time for every timing rule, MemoryBus and MemoryLedger.

mod batching;
mod props;
mod realtime;
mod receiver;
mod retries;
mod ssrf;
mod support;
mod tls;

/// The public handles can be shared across tasks and threads.
#[test]
fn public_handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<hookstream_delivery_http::Dispatcher>();
    assert_send_sync::<hookstream_delivery_http::DeliveryHandle>();
    assert_send_sync::<hookstream_delivery_http::WebhookConfig>();
    assert_send_sync::<hookstream_delivery_http::MemoryLedger>();
    assert_send_sync::<hookstream_delivery_http::SsrfPolicy>();
    assert_send_sync::<hookstream_delivery_http::DispatcherConfig>();
    assert_send_sync::<hookstream_delivery_http::DeliveryError>();
}
