//! What a connection needs from the worker it runs on, gathered in one place below both: the
//! ring, the configuration, the file cache, the pipe pool, the access log, the clock, the
//! listing threads' handle and the counters. The worker owns a `Ctx` and lends it to each
//! transition; a connection reads and uses it but never reaches back into the worker itself
//! (what the worker must do next is returned as a `conn::Followup`).

use std::sync::Arc;
use std::time::Instant;

use crate::files::cache::FileCache;
use crate::files::listing::Lister;
use crate::http::request::Request;
use crate::kernel::pipe_pool::PipePool;
use crate::kernel::ring::Ring;
use crate::ops::access_log::AccessLog;
use crate::ops::metrics::{Metrics, WorkerMetrics};
use crate::server::config::Config;

/// What connections need from their worker while handling a completion.
pub struct Ctx {
    pub ring: Ring,
    pub cfg: Arc<Config>,
    pub root: i32,
    pub cache: FileCache,
    pub pipes: PipePool,
    pub log: Option<AccessLog>,
    /// Monotonic time of this loop iteration.
    pub now: Instant,
    /// Wall-clock seconds of this loop iteration.
    pub unix_now: i64,
    /// `Date: ...\r\n`, reformatted when the second changes.
    pub date_line: Vec<u8>,
    pub stopping: bool,
    /// Response-head buffers whose sends completed, for reuse.
    pub(crate) head_buffers: Vec<Vec<u8>>,
    /// Requests whose responses are done, for the next heads to be parsed into. Boxed as the
    /// exchanges hold them, so one moves in and out as a pointer.
    #[allow(clippy::vec_box)]
    pub(crate) requests: Vec<Box<Request>>,
    /// The file a request target names, resolved into this buffer (taken and given back, so
    /// a lookup from the cache costs no allocation).
    pub(crate) file_path: Vec<u8>,
    /// Directory listings built off the ring, with `--autoindex`.
    pub lister: Option<Lister>,
    /// This worker's counters (it alone writes them).
    pub metrics: Arc<WorkerMetrics>,
    /// Every worker's counters, for a scrape.
    pub registry: Arc<Metrics>,
    /// With HTTPS: what its connections share.
    pub tls: Option<TlsCtx>,
}

/// What HTTPS connections share on a worker.
pub struct TlsCtx {
    pub config: Arc<rustls::ServerConfig>,
    /// Try kernel TLS after each handshake: `--ktls auto`, until the kernel shows it has no
    /// `tls` module (then every later connection goes straight to rustls).
    pub kernel: bool,
    /// The `Strict-Transport-Security` line, with `--hsts`.
    pub hsts: Option<Vec<u8>>,
    /// The HTTPS listener's port, for `--redirect-https`.
    pub port: u16,
}

/// Capacity of a response-head buffer: a head, plus a small body copied behind it.
const HEAD_BUFFER: usize = 384 + 2048;
/// Head buffers kept for reuse per worker.
const MAX_HEAD_BUFFERS: usize = 256;
/// Requests kept for reuse per worker.
const MAX_REQUESTS: usize = 256;

impl Ctx {
    /// An empty buffer for a response head (reused, so a request costs no allocation here).
    pub fn head_buffer(&mut self) -> Vec<u8> {
        self.head_buffers.pop().unwrap_or_else(|| Vec::with_capacity(HEAD_BUFFER))
    }

    /// Takes back a head buffer whose send has completed.
    pub fn recycle_head_buffer(&mut self, mut buf: Vec<u8>) {
        if self.head_buffers.len() < MAX_HEAD_BUFFERS && buf.capacity() <= HEAD_BUFFER * 2 {
            buf.clear();
            self.head_buffers.push(buf);
        }
    }

    /// Takes back a request whose response is done.
    pub fn recycle_request(&mut self, req: Box<Request>) {
        if self.requests.len() < MAX_REQUESTS && req.worth_recycling() {
            self.requests.push(req);
        }
    }
}
