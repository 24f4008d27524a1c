//! ringhttpd: a static-file HTTP/1.1 server for Linux, driven by io_uring.
//!
//! The layers, from the kernel up:
//!
//! - `kernel`: the io_uring ring and the memory it owns, the provided-buffer ring, `user_data`
//!   tokens, pipes, and the few plain syscalls; the only home of `unsafe`.
//! - `server`: flags and configuration, start-up, listening sockets, worker placement, and the
//!   workers, each driving its own ring and slab of connections.
//! - `conn`: one connection's state machine, from a receive to the last send or close.
//! - `http`: request parsing, request targets, response heads, dates, ranges, encodings, MIME;
//!   pure functions, no I/O.
//! - `files`: the per-worker file cache and directory listings.
//! - `tls`: HTTPS: certificates, the rustls configuration, one connection's TLS session; no I/O.
//! - `ops`: what operators see: metrics, the access log, the error log.
//! - `testing`: fault hooks for the integration tests and the connection fuzzer's driver.
//!
//! Public are only what the binary uses (`server`, `ops::log`) and what the property tests and
//! fuzz targets exercise directly (`http`, `testing::fuzzing`); everything else is crate-private.

pub(crate) mod conn;
pub(crate) mod files;
pub mod http;
pub(crate) mod kernel;
pub mod ops;
pub mod server;
pub mod testing;
pub(crate) mod tls;
