//! The listening sockets: one SO_REUSEPORT socket per worker bound here, or the sockets a
//! service manager passed, shared out; and the metrics listener, kept off the public port.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use super::StartError;
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
pub(super) fn bind_metrics(
    addr: SocketAddr,
    public: SocketAddr,
) -> Result<(OwnedFd, SocketAddr), StartError> {
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
pub(super) fn share_passed(sockets: Vec<OwnedFd>, workers: usize) -> io::Result<Vec<OwnedFd>> {
    (0..workers.max(sockets.len())).map(|i| sys::dup(sockets[i % sockets.len()].as_raw_fd())).collect()
}

/// Binds one SO_REUSEPORT socket per worker; with port 0 the first picks the port for all.
pub(super) fn bind_listeners(addr: SocketAddr, count: usize) -> Result<Vec<OwnedFd>, StartError> {
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
