//! ringhttpd: a static-file HTTP/1.1 server for Linux, driven by io_uring.
//!
//! `server` starts one `worker` per core; each worker's ring drives accept, receive, open,
//! statx, read, send and splice for the connections (`conn`) in its slab. `http` and `path` are
//! pure parsing and formatting; `ring` and `sys` hold the code that talks to the kernel.

pub mod access_log;
pub mod cache;
pub mod config;
pub mod conn;
pub mod context;
pub mod http;
pub mod listing;
pub mod log;
pub mod metrics;
pub mod path;
pub mod pipe_pool;
pub mod ring;
pub mod server;
pub mod sys;
pub mod test_hooks;
pub mod token;
pub mod worker;
