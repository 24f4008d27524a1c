//! Counters for `--metrics`, and their Prometheus text exposition (format 0.0.4).
//!
//! Each worker owns one `WorkerMetrics`, on cache lines of its own, and is the only thread that
//! ever writes it: an increment is a relaxed load and store (a plain add on the hot path, no
//! lock, no atomic read-modify-write, no line shared with another worker). A scrape, served by
//! whichever worker accepted it, reads every worker's counters and sums them; a sum may mix
//! values from slightly different instants, as any scrape of live counters does. This module
//! never touches a socket or a ring.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::http::Status;
use crate::tls::session::Failure as TlsFailure;

/// Why a connection ended, as `ringhttpd_connections_closed_total{reason=...}` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed, reset, or asked for the close (`Connection: close`, HTTP/1.0).
    Client,
    KeepaliveTimeout,
    HeaderTimeout,
    SendTimeout,
    /// The server could not go on (a failed read, a file that shrank, no pipe).
    Error,
    /// A graceful stop closed it.
    Shutdown,
}

impl CloseReason {
    const ALL: [CloseReason; 6] = [
        CloseReason::Client,
        CloseReason::KeepaliveTimeout,
        CloseReason::HeaderTimeout,
        CloseReason::SendTimeout,
        CloseReason::Error,
        CloseReason::Shutdown,
    ];

    fn label(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::KeepaliveTimeout => "keepalive_timeout",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::SendTimeout => "send_timeout",
            CloseReason::Error => "error",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Why accepting paused, as `ringhttpd_accept_paused_total{reason=...}` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    MaxConnections,
    /// Out of descriptors (EMFILE, ENFILE) or memory.
    Emfile,
}

/// Upper bounds of the request duration histogram's buckets, in microseconds (100 µs – 10 s).
const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// A counter written by one thread only (see the module doc).
#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One worker's counters. Aligned so no other worker's counters share its cache lines.
#[derive(Default)]
#[repr(align(128))]
pub struct WorkerMetrics {
    requests: [Counter; Status::ALL.len()],
    body_bytes: Counter,
    accepted: Counter,
    closed: [Counter; CloseReason::ALL.len()],
    accept_paused: [Counter; 2],
    /// Per bucket (not cumulative), plus one past the last bound.
    duration_buckets: [Counter; BUCKETS_US.len() + 1],
    duration_sum_us: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    /// File body bytes by how they went out: `[sendfile, splice, sealed]`.
    file_body_bytes: [Counter; 3],
    tls_failures: [Counter; TlsFailure::ALL.len()],
    /// TLS connections by who seals their records: `[kernel, user]`.
    tls_modes: [Counter; 2],
}

/// Who seals a TLS connection's records, as `ringhttpd_tls_connections_total{mode=...}`
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Kernel,
    User,
}

/// How file body bytes went to the socket, as `ringhttpd_file_body_bytes_total{via=...}`
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRoute {
    /// `sendfile` from the worker: the pages were in the page cache.
    Sendfile,
    /// File → pipe → socket splices through the ring (and its kernel workers).
    Splice,
    /// Read into memory and sealed by rustls (TLS connections the kernel could not take).
    Sealed,
}

impl WorkerMetrics {
    /// A response was fully handed to the kernel.
    pub fn response(&self, status: Status, body_bytes: u64, took: Duration) {
        self.requests[status.index()].add(1);
        self.body_bytes.add(body_bytes);
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        let bucket = BUCKETS_US.iter().position(|&bound| us <= bound).unwrap_or(BUCKETS_US.len());
        self.duration_buckets[bucket].add(1);
        self.duration_sum_us.add(us);
    }

    pub fn accepted(&self) {
        self.accepted.add(1);
    }

    pub fn closed(&self, reason: CloseReason) {
        self.closed[reason as usize].add(1);
    }

    pub fn accept_paused(&self, reason: PauseReason) {
        self.accept_paused[reason as usize].add(1);
    }

    pub fn file_body_sent(&self, via: BodyRoute, bytes: u64) {
        self.file_body_bytes[via as usize].add(bytes);
    }

    pub fn tls_handshake(&self, result: Result<TlsMode, TlsFailure>) {
        match result {
            Ok(mode) => {
                self.tls_modes[mode as usize].add(1);
            }
            Err(failure) => self.tls_failures[failure as usize].add(1),
        }
    }

    pub fn cache_lookup(&self, hit: bool) {
        if hit { self.cache_hits.add(1) } else { self.cache_misses.add(1) }
    }
}

/// Every worker's counters, and what is fixed for the process.
pub struct Metrics {
    workers: Vec<Arc<WorkerMetrics>>,
    /// Unix seconds at start-up.
    start_time: i64,
}

impl Metrics {
    pub fn new(workers: usize, start_time: i64) -> Metrics {
        Metrics { workers: (0..workers).map(|_| Arc::default()).collect(), start_time }
    }

    /// The counters worker `index` owns (and alone writes).
    pub fn worker(&self, index: usize) -> Arc<WorkerMetrics> {
        self.workers[index].clone()
    }

    fn sum(&self, read: impl Fn(&WorkerMetrics) -> u64) -> u64 {
        self.workers.iter().map(|w| read(w)).fold(0, u64::wrapping_add)
    }

    /// The text exposition of every metric, summed over the workers.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.render_requests(&mut out);
        self.render_connections(&mut out);
        self.render_duration(&mut out);
        self.render_tls(&mut out);
        let hits = self.sum(|w| w.cache_hits.get());
        let misses = self.sum(|w| w.cache_misses.get());
        family(
            &mut out,
            "ringhttpd_file_cache_hits_total",
            "counter",
            "Lookups answered from the file cache.",
        );
        let _ = writeln!(out, "ringhttpd_file_cache_hits_total {hits}");
        family(
            &mut out,
            "ringhttpd_file_cache_misses_total",
            "counter",
            "Lookups that went to the filesystem.",
        );
        let _ = writeln!(out, "ringhttpd_file_cache_misses_total {misses}");
        family(&mut out, "ringhttpd_workers", "gauge", "Worker threads, one io_uring each.");
        let _ = writeln!(out, "ringhttpd_workers {}", self.workers.len());
        family(&mut out, "ringhttpd_build_info", "gauge", "Always 1; the version is a label.");
        let _ = writeln!(out, "ringhttpd_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        family(
            &mut out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch.",
        );
        let _ = writeln!(out, "process_start_time_seconds {}", self.start_time);
        out
    }

    fn render_requests(&self, out: &mut String) {
        family(
            out,
            "ringhttpd_requests_total",
            "counter",
            "Responses fully handed to the kernel, by status code.",
        );
        for status in Status::ALL {
            let n = self.sum(|w| w.requests[status.index()].get());
            let _ = writeln!(out, "ringhttpd_requests_total{{code=\"{}\"}} {n}", status.code());
        }
        let bytes = self.sum(|w| w.body_bytes.get());
        family(
            out,
            "ringhttpd_response_body_bytes_total",
            "counter",
            "Response body bytes handed to the kernel.",
        );
        let _ = writeln!(out, "ringhttpd_response_body_bytes_total {bytes}");
        family(
            out,
            "ringhttpd_file_body_bytes_total",
            "counter",
            "File body bytes handed to sockets, by how: sendfile from the page cache, or splice.",
        );
        for (i, via) in ["sendfile", "splice", "sealed"].iter().enumerate() {
            let n = self.sum(|w| w.file_body_bytes[i].get());
            let _ = writeln!(out, "ringhttpd_file_body_bytes_total{{via=\"{via}\"}} {n}");
        }
    }

    fn render_tls(&self, out: &mut String) {
        family(out, "ringhttpd_tls_handshakes_total", "counter", "TLS handshakes completed.");
        // Every completed handshake counts under one mode: the total is their sum.
        let done = self.sum(|w| w.tls_modes.iter().map(Counter::get).fold(0, u64::wrapping_add));
        let _ = writeln!(out, "ringhttpd_tls_handshakes_total {done}");
        family(
            out,
            "ringhttpd_tls_handshake_failures_total",
            "counter",
            "TLS connections that ended before their handshake completed, by reason.",
        );
        for failure in TlsFailure::ALL {
            let n = self.sum(|w| w.tls_failures[failure as usize].get());
            let _ =
                writeln!(out, "ringhttpd_tls_handshake_failures_total{{reason=\"{}\"}} {n}", failure.label());
        }
        family(
            out,
            "ringhttpd_tls_connections_total",
            "counter",
            "TLS connections after their handshake, by who seals their records: the kernel (kTLS) or rustls.",
        );
        for (i, mode) in ["kernel", "user"].iter().enumerate() {
            let n = self.sum(|w| w.tls_modes[i].get());
            let _ = writeln!(out, "ringhttpd_tls_connections_total{{mode=\"{mode}\"}} {n}");
        }
    }

    fn render_connections(&self, out: &mut String) {
        let accepted = self.sum(|w| w.accepted.get());
        let closed: Vec<u64> =
            CloseReason::ALL.iter().map(|&r| self.sum(|w| w.closed[r as usize].get())).collect();
        let open = accepted.saturating_sub(closed.iter().sum());
        family(out, "ringhttpd_connections_open", "gauge", "Connections open now.");
        let _ = writeln!(out, "ringhttpd_connections_open {open}");
        family(out, "ringhttpd_connections_accepted_total", "counter", "Connections accepted.");
        let _ = writeln!(out, "ringhttpd_connections_accepted_total {accepted}");
        family(out, "ringhttpd_connections_closed_total", "counter", "Connections closed, by reason.");
        for (reason, n) in CloseReason::ALL.iter().zip(&closed) {
            let _ = writeln!(out, "ringhttpd_connections_closed_total{{reason=\"{}\"}} {n}", reason.label());
        }
        family(out, "ringhttpd_accept_paused_total", "counter", "Times accepting paused, by reason.");
        for (i, label) in ["max_connections", "emfile"].iter().enumerate() {
            let n = self.sum(|w| w.accept_paused[i].get());
            let _ = writeln!(out, "ringhttpd_accept_paused_total{{reason=\"{label}\"}} {n}");
        }
    }

    fn render_duration(&self, out: &mut String) {
        let name = "ringhttpd_request_duration_seconds";
        family(
            out,
            name,
            "histogram",
            "From a complete request head to the response's last byte handed to the kernel.",
        );
        let mut cumulative = 0u64;
        for (i, bound) in BUCKETS_US.iter().enumerate() {
            cumulative += self.sum(|w| w.duration_buckets[i].get());
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", *bound as f64 / 1e6);
        }
        cumulative += self.sum(|w| w.duration_buckets[BUCKETS_US.len()].get());
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum_us = self.sum(|w| w.duration_sum_us.get());
        let _ = writeln!(out, "{name}_sum {}", sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_workers_and_keeps_histograms_cumulative() {
        let m = Metrics::new(2, 1_700_000_000);
        m.worker(0).response(Status::Ok, 10, Duration::from_micros(50));
        m.worker(1).response(Status::Ok, 5, Duration::from_millis(3));
        m.worker(1).response(Status::NotFound, 0, Duration::from_secs(60));
        m.worker(0).accepted();
        m.worker(1).accepted();
        m.worker(1).closed(CloseReason::KeepaliveTimeout);
        let text = m.render();
        for line in [
            "ringhttpd_requests_total{code=\"200\"} 2",
            "ringhttpd_requests_total{code=\"404\"} 1",
            "ringhttpd_response_body_bytes_total 15",
            "ringhttpd_connections_open 1",
            "ringhttpd_connections_closed_total{reason=\"keepalive_timeout\"} 1",
            "ringhttpd_request_duration_seconds_bucket{le=\"0.0001\"} 1",
            "ringhttpd_request_duration_seconds_bucket{le=\"0.005\"} 2",
            "ringhttpd_request_duration_seconds_bucket{le=\"10\"} 2",
            "ringhttpd_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "ringhttpd_request_duration_seconds_count 3",
            "ringhttpd_workers 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn worker_counters_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<WorkerMetrics>(), 128);
    }
}
