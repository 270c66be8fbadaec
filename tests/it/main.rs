//! hookstream's end-to-end tests: one integration binary, one module per area. The server
//! runs in process (its router through tower's `oneshot`, or served on 127.0.0.1:0) against
//! the recording receiver of `support`.

mod support;

mod api_custom_auth;
mod api_deliveries;
mod api_errors;
mod api_external;
mod api_kickoff;
mod api_lifecycle;
mod api_openapi;
mod api_stream;
mod cli;
mod crash;
mod runners;
mod store;
