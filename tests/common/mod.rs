//! Harness shared by the black-box tests: a generated document root ([`fixture`]), the server
//! process guard ([`server`]), a strict raw-bytes HTTP client ([`http`]), common assertions
//! ([`check`]), the metrics scraper ([`metrics`]), and the certificates and clients of the
//! HTTPS tests ([`tls`]). Each test starts its own server on `127.0.0.1:0`, so tests run in
//! parallel and a failing one cannot disturb another.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod check;
pub mod fixture;
pub mod http;
pub mod metrics;
pub mod server;
pub mod tls;
