//! The per-worker access log in Combined Log Format, buffered in memory and written by the ring.
//!
//! Lines are appended whole to a buffer; the buffer goes out in one ring `Write` (O_APPEND) when
//! it grows large or on the worker's one-second tick, so the ring never blocks on the disk and
//! lines from different workers never interleave. Reopening (SIGHUP/SIGUSR1, for logrotate)
//! waits for the write in flight. This module must never drop a line it has accepted.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::http::date::clf_date;
use crate::http::request::{Field, Request};
use crate::kernel::ring::Ring;
use crate::kernel::sys;
use crate::kernel::token::{Op, Token};

/// Buffered bytes that trigger a write before the next tick.
const FLUSH_AT: usize = 64 * 1024;

pub struct AccessLog {
    path: PathBuf,
    fd: Arc<OwnedFd>,
    pending: Vec<u8>,
    /// A write is in flight (the ring holds its buffer until the completion hands it back).
    writing: bool,
    /// A reopened log to switch to once no write is in flight.
    next_fd: Option<Arc<OwnedFd>>,
    /// (second, formatted CLF date) so the timestamp is formatted once a second.
    stamp: (i64, String),
}

/// Opens the log destination: a path, or `-` for standard output.
pub fn open(path: &Path) -> io::Result<OwnedFd> {
    if path == Path::new("-") { sys::dup(libc::STDOUT_FILENO) } else { sys::open_append(path) }
}

impl AccessLog {
    pub fn new(path: PathBuf) -> io::Result<AccessLog> {
        let fd = open(&path)?;
        Ok(AccessLog {
            path,
            fd: Arc::new(fd),
            pending: Vec::new(),
            writing: false,
            next_fd: None,
            stamp: (i64::MIN, String::new()),
        })
    }

    /// Appends one Combined Log Format line.
    pub fn record(
        &mut self,
        peer: Option<IpAddr>,
        req: Option<&Request>,
        status: u16,
        bytes: u64,
        unix: i64,
    ) {
        use std::io::Write;
        if self.stamp.0 != unix {
            self.stamp = (unix, clf_date(unix));
        }
        let peer = peer.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
        let line = req.map_or_else(
            || "-".to_owned(),
            |r| format!("{} {} HTTP/1.{}", r.method_name(), r.target(), r.minor_version),
        );
        let quote = |v: Option<&str>| v.map_or_else(|| "-".to_owned(), escape);
        let (referer, agent) = (
            quote(req.and_then(|r| r.field(Field::Referer))),
            quote(req.and_then(|r| r.field(Field::UserAgent))),
        );
        let _ = writeln!(
            self.pending,
            "{peer} - - [{}] \"{}\" {status} {bytes} \"{referer}\" \"{agent}\"",
            self.stamp.1,
            escape(&line)
        );
    }

    /// Whether enough is buffered to write before the next tick.
    pub fn wants_flush(&self) -> bool {
        self.pending.len() >= FLUSH_AT && !self.writing
    }

    /// Hands buffered lines to the ring (one write at a time, so order is kept).
    pub fn flush(&mut self, ring: &mut Ring) {
        if self.writing {
            return;
        }
        if let Some(fd) = self.next_fd.take() {
            self.fd = fd;
        }
        if self.pending.is_empty() {
            return;
        }
        let buf = std::mem::take(&mut self.pending);
        ring.write(self.fd.as_raw_fd(), buf, Token::worker(Op::LogWrite));
        self.writing = true;
    }

    /// The write completed: continue a short write, or start on what accumulated meanwhile.
    pub fn on_written(&mut self, result: i32, mut buf: Vec<u8>, ring: &mut Ring) {
        self.writing = false;
        if result < 0 {
            crate::log_error!(
                "access log write to {} failed: {}",
                self.path.display(),
                io::Error::from_raw_os_error(-result)
            );
        }
        // What was not written (all of it after an error: a reopen or a recovered disk lets it
        // through) goes back in front of what accumulated meanwhile.
        let written = usize::try_from(result).unwrap_or(0).min(buf.len());
        if written < buf.len() {
            buf.drain(..written);
            buf.append(&mut self.pending);
            self.pending = buf;
        }
        if result >= 0 {
            self.flush(ring);
        }
    }

    /// Writes go to `fd` (the log the main thread reopened) from the next write on; the
    /// write in flight, if any, finishes on the old one.
    pub fn switch_to(&mut self, fd: Arc<OwnedFd>) {
        self.next_fd = Some(fd);
    }

    /// No write is in flight: the worker may exit once this holds.
    pub fn is_quiet(&self) -> bool {
        !self.writing
    }

    /// Writes what is still buffered, blocking: only used when the worker exits (after
    /// `is_quiet`), when no ring is left to do it.
    pub fn flush_blocking(&mut self) {
        if let Err(e) = sys::write_all(self.fd.as_raw_fd(), &self.pending) {
            crate::log_error!("access log write to {} failed: {e}", self.path.display());
        }
        self.pending.clear();
    }
}

/// Quotes and backslashes are escaped, and control bytes shown as \xHH, so one request is
/// always one line however hostile its headers are.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
