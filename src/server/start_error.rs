//! Why the server could not start, worded for the one line an operator reads: each cause
//! named with the fix where there is one (a sysctl, a limit, a seccomp profile).

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// Why the server could not start; printed as one line.
#[derive(Debug)]
pub enum StartError {
    DocumentRoot(std::path::PathBuf, io::Error),
    AccessLog(std::path::PathBuf, io::Error),
    Listen(SocketAddr, io::Error),
    IoUring(io::Error),
    Worker(io::Error),
    Signals(io::Error),
    Activation(io::Error),
    /// `--metrics` failed to bind, or would share the public listener's port.
    Metrics(Box<StartError>),
    /// The metrics address and the public one are the same port on overlapping addresses, so
    /// the kernel would split connections between the two.
    MetricsOverlap {
        metrics: SocketAddr,
        public: SocketAddr,
    },
    /// The HTTPS listener would share the plain listener's port.
    TlsOverlap {
        tls: SocketAddr,
        public: SocketAddr,
    },
    /// A certificate or key cannot be used (the file is named).
    Tls(crate::tls::certs::LoadError),
    /// The sockets a predecessor handed over (SIGUSR2) are unusable.
    Inherited(io::Error),
    /// The kernel predates what the server needs (its version).
    OldKernel((u32, u32)),
}

/// The oldest kernel the server runs on: io_uring's openat2 and statx arrived in 5.6 and
/// splice in 5.7; 5.10 is the oldest long-term kernel it is tested on. Below 6.0 the ring
/// runs in compat mode (single-shot accepts and receives).
pub const MIN_KERNEL: (u32, u32) = (5, 10);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::DocumentRoot(p, e) => {
                write!(f, "document root {}: {}", p.display(), describe(e))
            }
            StartError::AccessLog(p, e) => write!(f, "access log {}: {}", p.display(), describe(e)),
            StartError::Listen(a, e) => match e.raw_os_error() {
                Some(libc::EADDRINUSE) => write!(f, "cannot listen on {a}: address already in use"),
                Some(libc::EADDRNOTAVAIL) => {
                    write!(f, "cannot listen on {a}: no such address on this machine")
                }
                Some(libc::EACCES) => write!(
                    f,
                    "cannot listen on {a}: permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"
                ),
                _ => write!(f, "cannot listen on {a}: {}", describe(e)),
            },
            StartError::IoUring(e) => f.write_str(&io_uring_refusal(e)),
            StartError::Worker(e) => write!(f, "cannot start a worker: {}", describe(e)),
            StartError::Signals(e) => write!(f, "cannot set up signal handling: {}", describe(e)),
            StartError::Activation(e) => write!(f, "socket activation: {}", describe(e)),
            StartError::Metrics(e) => write!(f, "--metrics: {e}"),
            StartError::TlsOverlap { tls, public } => {
                write!(f, "--tls-port: {tls} is the plain listener's {public}; give HTTPS a port of its own")
            }
            StartError::Tls(e) => write!(f, "TLS: {e}"),
            StartError::Inherited(e) => write!(f, "sockets handed over: {}", describe(e)),
            StartError::OldKernel((major, minor)) => write!(
                f,
                "Linux {major}.{minor} is too old: ringhttpd needs Linux {}.{} or later (io_uring with openat2, statx and splice)",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
            StartError::MetricsOverlap { metrics, public } => write!(
                f,
                "--metrics {metrics} overlaps the public listener {public}: give the metrics a port of their own"
            ),
        }
    }
}

/// `io::Error`'s Display without the "(os error N)" noise.
pub(crate) fn describe(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Names the likely cause when the kernel refuses io_uring.
fn io_uring_refusal(e: &io::Error) -> String {
    let sysctl =
        std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok().map(|s| s.trim().to_owned());
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES | libc::ENOSYS) if sysctl.as_deref().is_some_and(|v| v != "0") => {
            format!(
                "io_uring is disabled on this host (sysctl kernel.io_uring_disabled={}); enable it with: sysctl -w kernel.io_uring_disabled=0",
                sysctl.unwrap_or_default()
            )
        }
        Some(libc::EPERM | libc::ENOSYS) => format!(
            "io_uring is blocked ({}): a seccomp profile forbids io_uring_setup; Docker's default profile does — run the container with --security-opt seccomp=deploy/seccomp-io_uring.json",
            describe(e)
        ),
        Some(libc::ENOMEM) => format!(
            "cannot set up io_uring: out of locked memory ({}); raise it: ulimit -l, systemd LimitMEMLOCK=, docker --ulimit memlock=-1",
            memlock_limit()
        ),
        _ => format!(
            "cannot set up io_uring: {} (Linux {}.{} or later with io_uring enabled is required)",
            describe(e),
            MIN_KERNEL.0,
            MIN_KERNEL.1
        ),
    }
}

fn memlock_limit() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max locked memory"))
                .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_owned())
        })
        .map_or_else(|| "unknown".to_owned(), |soft| format!("RLIMIT_MEMLOCK soft limit {soft} bytes"))
}
