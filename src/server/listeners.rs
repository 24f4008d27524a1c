//! The listening sockets: those a predecessor handed over (SIGUSR2), else those a service
//! manager passed, else one SO_REUSEPORT socket per worker bound here; the metrics listener,
//! kept off the public port; and the duplicates kept for a successor.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use super::StartError;
use super::config::Config;
use super::handover::{Handover, Inherited};
use crate::kernel::sys;

const LISTEN_BACKLOG: i32 = 4096;

/// Whether two listening addresses would share connections: the same port (not 0, which
/// picks a free one) on the same address, or where either is a wildcard.
pub(super) fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The `--metrics` listener, refused if it would share the public listener's port (both are
/// SO_REUSEPORT, so the kernel would accept the bind and split connections between them).
fn bind_metrics(addr: SocketAddr, public: SocketAddr) -> Result<(OwnedFd, SocketAddr), StartError> {
    if overlaps(addr, public) {
        return Err(StartError::MetricsOverlap { metrics: addr, public });
    }
    let socket = bind_listeners(addr, 1).map_err(|e| StartError::Metrics(Box::new(e)))?.remove(0);
    let bound = sys::local_addr(socket.as_raw_fd())
        .map_err(|e| StartError::Metrics(Box::new(StartError::Listen(addr, e))))?;
    if overlaps(bound, public) {
        return Err(StartError::MetricsOverlap { metrics: bound, public });
    }
    Ok((socket, bound))
}

/// Listening sockets passed by a service manager, spread over the workers: each worker gets
/// its own descriptor (a duplicate) of one of them, so every worker's ring accepts from a
/// passed socket, and there are at least as many workers as sockets.
fn share_passed(sockets: &[OwnedFd], workers: usize) -> io::Result<Vec<OwnedFd>> {
    (0..workers.max(sockets.len())).map(|i| sys::dup(sockets[i % sockets.len()].as_raw_fd())).collect()
}

/// A second descriptor for each socket (close-on-exec, as every descriptor of the process).
fn duplicates(sockets: &[OwnedFd]) -> io::Result<Vec<OwnedFd>> {
    sockets.iter().map(|s| sys::dup(s.as_raw_fd())).collect()
}

/// Binds one SO_REUSEPORT socket per worker; with port 0 the first picks the port for all.
fn bind_listeners(addr: SocketAddr, count: usize) -> Result<Vec<OwnedFd>, StartError> {
    let first = sys::reuseport_listener(addr, LISTEN_BACKLOG).map_err(|e| StartError::Listen(addr, e))?;
    let actual = sys::local_addr(first.as_raw_fd()).map_err(|e| StartError::Listen(addr, e))?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(
            sys::reuseport_listener(actual, LISTEN_BACKLOG).map_err(|e| StartError::Listen(actual, e))?,
        );
    }
    Ok(listeners)
}

/// The listening sockets the workers accept from, and what a successor will get.
pub(super) struct Sockets {
    /// One per worker (HTTPS ones with `--https-only`).
    pub listeners: Vec<OwnedFd>,
    /// One HTTPS listener per worker beside the plain ones; empty without HTTPS or with
    /// `--https-only`.
    pub tls_listeners: Vec<OwnedFd>,
    pub metrics_listener: Option<OwnedFd>,
    /// Another descriptor for each distinct socket, kept for a successor (SIGUSR2).
    pub handover: Handover,
    /// The sockets were passed in (by a service manager or a predecessor), not bound here.
    pub passed: bool,
}

/// Takes the sockets a predecessor handed over, else those a service manager passed, else
/// binds new ones; the `--metrics` socket likewise comes from a predecessor or is bound (never
/// on the public listener's port).
pub(super) fn open_sockets(
    cfg: &Config,
    mut inherited: Option<&mut Inherited>,
) -> Result<Sockets, StartError> {
    let passed = match inherited.as_deref_mut() {
        Some(from) => Some(std::mem::take(&mut from.listeners)),
        None => sys::listen_fds().map_err(StartError::Activation)?,
    };
    let duplicate = |sockets: &[OwnedFd]| duplicates(sockets).map_err(|e| StartError::Listen(cfg.addr, e));
    let (listeners, kept) = match &passed {
        Some(sockets) => (share_passed(sockets, cfg.workers).map_err(StartError::Activation)?, None),
        None => {
            let listeners = bind_listeners(cfg.public_addr(), cfg.workers)?;
            let kept = duplicate(&listeners)?;
            (listeners, Some(kept))
        }
    };
    let public = sys::local_addr(listeners[0].as_raw_fd()).map_err(|e| StartError::Listen(cfg.addr, e))?;
    let (tls_listeners, kept_tls) = match (&cfg.https, inherited.as_deref_mut()) {
        (Some(https), _) if https.only => (Vec::new(), Vec::new()),
        (Some(_), Some(from)) if !from.tls.is_empty() => {
            let kept = std::mem::take(&mut from.tls);
            (share_passed(&kept, cfg.workers).map_err(StartError::Inherited)?, kept)
        }
        (Some(https), _) => {
            if overlaps(https.addr, public) {
                return Err(StartError::TlsOverlap { tls: https.addr, public });
            }
            let listeners = bind_listeners(https.addr, cfg.workers)?;
            let kept = duplicate(&listeners)?;
            (listeners, kept)
        }
        (None, _) => (Vec::new(), Vec::new()),
    };
    let metrics_listener = match (cfg.metrics, inherited.and_then(|from| from.metrics.take())) {
        (Some(_), Some(socket)) => Some(socket),
        (Some(addr), None) => {
            if let Some(tls) = tls_listeners.first() {
                let tls = sys::local_addr(tls.as_raw_fd()).map_err(|e| StartError::Listen(addr, e))?;
                if overlaps(addr, tls) {
                    return Err(StartError::MetricsOverlap { metrics: addr, public: tls });
                }
            }
            Some(bind_metrics(addr, public)?.0)
        }
        (None, _) => None,
    };
    let kept_metrics = duplicate(metrics_listener.as_slice())?.pop();
    let is_passed = passed.is_some();
    let kept = kept.or(passed).unwrap_or_default();
    Ok(Sockets {
        listeners,
        tls_listeners,
        metrics_listener,
        handover: Handover::new(kept, kept_tls, kept_metrics),
        passed: is_passed,
    })
}
