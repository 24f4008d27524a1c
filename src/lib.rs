//! ringhttpd: a static-file HTTP/1.1 server for Linux, driven by io_uring.
//!
//! `server` starts one `worker` per core; each worker's ring drives accept, receive, open,
//! statx, read, send and splice for the connections (`conn`) in its slab. `http` and `path` are
//! pure parsing and formatting; `ring` and `sys` hold the code that talks to the kernel.
//! `handover` passes the listening sockets to a successor process on SIGUSR2.
//!
//! Public are only what the binary uses (`config`, `server`, `log`) and what the property
//! tests and fuzz targets exercise directly (`http`, `path`); everything else is crate-private.

pub(crate) mod access_log;
pub(crate) mod cache;
pub mod config;
pub(crate) mod conn;
pub(crate) mod context;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod handover;
pub mod http;
pub(crate) mod listing;
pub mod log;
pub(crate) mod metrics;
pub mod path;
pub(crate) mod pipe_pool;
pub(crate) mod ring;
pub mod server;
pub(crate) mod sys;
pub(crate) mod test_hooks;
pub(crate) mod token;
pub(crate) mod worker;
