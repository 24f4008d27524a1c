//! A per-worker cache of what each path resolved to: an open file (descriptor, metadata,
//! validators and, for small files, the bytes), a directory, or an error status — so a hot file
//! costs no openat/statx/read, and a scanner's 404s cost no syscalls either.
//!
//! An entry is trusted for at most `MAX_AGE`; after that the next request reopens and re-stats
//! the path, so a file changed, replaced or deleted on disk is never served stale for longer.
//! Unchanged small files keep their bytes across revalidation. The cache must never hand out a
//! body whose length disagrees with its metadata.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::http::Status;
use crate::http::date::imf_fixdate;
use crate::http::encoding::Coding;
use crate::http::mime::content_type;

/// How long a cached entry is served without looking at the disk again.
pub const MAX_AGE: Duration = Duration::from_secs(1);
/// Files up to this size are kept in memory and sent with their head in one send.
pub const SMALL_FILE: u64 = 32 * 1024;
/// Entries nobody asked for in this long are dropped on the timer tick, so the descriptor of a
/// file deleted from disk (and its disk space) is released even if its path is never asked for
/// again.
pub const IDLE_AGE: Duration = Duration::from_secs(3);
const MAX_ENTRIES: usize = 1024;
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
    /// Precompressed siblings (`FILE.br`, `FILE.gz`), in `Coding::ALL` order.
    pub variants: [Option<Rc<FileInfo>>; 2],
}

impl FileInfo {
    pub fn new(file: OwnedFd, id: Identity, path: &[u8]) -> FileInfo {
        FileInfo {
            file,
            id,
            etag: format!("\"{:x}-{:x}-{:x}.{:x}\"", id.ino, id.size, id.mtime, id.mtime_nsec),
            last_modified: imf_fixdate(id.mtime),
            content_type: content_type(path),
            body: None,
            variants: [None, None],
        }
    }
}

/// What a path resolved to.
#[derive(Debug, Clone)]
pub enum Entry {
    File(Rc<FileInfo>),
    Directory,
    /// Not servable, with the status that says why (404, 403, ...).
    Absent(Status),
}

struct Slot {
    entry: Entry,
    checked_at: Instant,
}

#[derive(Default)]
pub struct FileCache {
    slots: HashMap<Vec<u8>, Slot>,
    body_bytes: usize,
}

fn body_len(entry: &Entry) -> usize {
    fn bytes(info: &FileInfo) -> usize {
        info.body.as_ref().map_or(0, |b| b.len())
            + info.variants.iter().flatten().map(|v| bytes(v)).sum::<usize>()
    }
    match entry {
        Entry::File(info) => bytes(info),
        _ => 0,
    }
}

impl FileCache {
    /// A cached entry still within its trust window.
    pub fn fresh(&self, path: &[u8], now: Instant) -> Option<Entry> {
        self.slots.get(path).filter(|s| now.duration_since(s.checked_at) < MAX_AGE).map(|s| s.entry.clone())
    }

    /// The bytes of a (possibly stale) entry or one of its precompressed siblings, if the file
    /// on disk is still the same one.
    pub fn body_if_unchanged(&self, path: &[u8], coding: Option<Coding>, id: &Identity) -> Option<Rc<[u8]>> {
        let Entry::File(main) = &self.slots.get(path)?.entry else { return None };
        let info = match coding {
            None => main,
            Some(c) => main.variants[c as usize].as_ref()?,
        };
        if info.id == *id { info.body.clone() } else { None }
    }

    /// Drops entries last checked more than `IDLE_AGE` ago (a hot entry is re-checked, and so
    /// refreshed, every `MAX_AGE`).
    pub fn drop_idle(&mut self, now: Instant) {
        let mut freed = 0;
        self.slots.retain(|_, slot| {
            let keep = now.duration_since(slot.checked_at) < IDLE_AGE;
            if !keep {
                freed += body_len(&slot.entry);
            }
            keep
        });
        self.body_bytes -= freed;
    }

    pub fn insert(&mut self, path: Vec<u8>, entry: Entry, now: Instant) {
        let added = body_len(&entry);
        if self.slots.len() >= MAX_ENTRIES || self.body_bytes + added > MAX_BODY_BYTES {
            // Crude but bounded: a full cache starts over; hot files come back within a request.
            self.slots.clear();
            self.body_bytes = 0;
        }
        self.body_bytes += added;
        if let Some(old) = self.slots.insert(path, Slot { entry, checked_at: now }) {
            self.body_bytes -= body_len(&old.entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_max_age() {
        let mut cache = FileCache::default();
        let t0 = Instant::now();
        cache.insert(b"a".to_vec(), Entry::Absent(Status::NotFound), t0);
        assert!(matches!(cache.fresh(b"a", t0), Some(Entry::Absent(Status::NotFound))));
        assert!(cache.fresh(b"a", t0 + MAX_AGE).is_none());
        assert!(cache.fresh(b"b", t0).is_none());
    }

    #[test]
    fn idle_entries_are_dropped() {
        let mut cache = FileCache::default();
        let t0 = Instant::now();
        cache.insert(b"old".to_vec(), Entry::Directory, t0);
        cache.insert(b"new".to_vec(), Entry::Directory, t0 + IDLE_AGE);
        cache.drop_idle(t0 + IDLE_AGE);
        assert!(!cache.slots.contains_key(b"old".as_slice()));
        assert!(cache.slots.contains_key(b"new".as_slice()));
    }

    #[test]
    fn stays_bounded() {
        let mut cache = FileCache::default();
        let t0 = Instant::now();
        for i in 0..MAX_ENTRIES * 3 {
            cache.insert(i.to_string().into_bytes(), Entry::Directory, t0);
            assert!(cache.slots.len() <= MAX_ENTRIES);
        }
    }
}
