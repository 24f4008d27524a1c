//! A per-worker cache of open files: descriptor, metadata, validators and (for small files) the
//! bytes themselves, so a hot file costs no openat/statx/read at all.
//!
//! An entry is trusted for at most `MAX_AGE`; after that the next request reopens and re-stats
//! the path, so a file changed, replaced or deleted on disk is never served stale for longer.
//! Unchanged small files keep their bytes across revalidation. The cache must never hand out a
//! body whose length disagrees with its metadata.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::http::date::imf_fixdate;
use crate::http::mime::content_type;

/// How long a cached entry is served without looking at the disk again.
pub const MAX_AGE: Duration = Duration::from_secs(1);
/// Files up to this size are kept in memory and sent with their head in one send.
pub const SMALL_FILE: u64 = 32 * 1024;
const MAX_ENTRIES: usize = 512;
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// What a file looked like when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
}

/// An open regular file ready to be served.
#[derive(Debug)]
pub struct FileInfo {
    pub file: OwnedFd,
    pub id: Identity,
    pub etag: String,
    pub last_modified: String,
    pub content_type: &'static str,
    /// The whole file, for files up to `SMALL_FILE` bytes; its length equals `id.size`.
    pub body: Option<Rc<[u8]>>,
    pub checked_at: Instant,
}

impl FileInfo {
    pub fn new(file: OwnedFd, id: Identity, path: &[u8], now: Instant) -> FileInfo {
        FileInfo {
            file,
            id,
            etag: format!(
                "\"{:x}-{:x}-{:x}.{:x}\"",
                id.ino, id.size, id.mtime, id.mtime_nsec
            ),
            last_modified: imf_fixdate(id.mtime),
            content_type: content_type(path),
            body: None,
            checked_at: now,
        }
    }
}

#[derive(Default)]
pub struct FileCache {
    entries: HashMap<Vec<u8>, Rc<FileInfo>>,
    body_bytes: usize,
}

impl FileCache {
    /// A cached entry still within its trust window.
    pub fn fresh(&self, path: &[u8], now: Instant) -> Option<Rc<FileInfo>> {
        self.entries
            .get(path)
            .filter(|e| now.duration_since(e.checked_at) < MAX_AGE)
            .cloned()
    }

    /// The bytes of a (possibly stale) entry, if the file on disk is still the same one.
    pub fn body_if_unchanged(&self, path: &[u8], id: &Identity) -> Option<Rc<[u8]>> {
        let e = self.entries.get(path)?;
        if e.id == *id { e.body.clone() } else { None }
    }

    pub fn insert(&mut self, path: Vec<u8>, info: Rc<FileInfo>) {
        let body_len = info.body.as_ref().map_or(0, |b| b.len());
        if self.entries.len() >= MAX_ENTRIES || self.body_bytes + body_len > MAX_BODY_BYTES {
            // Crude but bounded: a full cache starts over; hot files come back within a request.
            self.entries.clear();
            self.body_bytes = 0;
        }
        self.body_bytes += body_len;
        if let Some(old) = self.entries.insert(path, info) {
            self.body_bytes -= old.body.as_ref().map_or(0, |b| b.len());
        }
    }

    pub fn remove(&mut self, path: &[u8]) {
        if let Some(old) = self.entries.remove(path) {
            self.body_bytes -= old.body.as_ref().map_or(0, |b| b.len());
        }
    }
}
