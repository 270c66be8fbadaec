//! Integration tests of hookstream-delivery-http: real hyper client and server on loopback,
//! paused tokio time for every timing rule, MemoryBus and MemoryLedger.

mod batching;
mod props;
mod receiver;
mod retries;
mod ssrf;
mod support;
mod tls;
