//! Directory listings for `--autoindex`.
//!
//! io_uring has no `getdents`, and reading a large directory (or one on slow storage) would
//! stall every connection of a worker, so listings are built on a few threads of their own
//! (`threads_for`), shared by all workers through one bounded queue. A worker hands them a
//! `Job` and goes on; the finished page comes back on the worker's channel, and the worker's
//! wake-up eventfd (which its ring is always reading) says it is there.
//!
//! The queue holds at most `QUEUE_PER_THREAD` jobs per thread: a worker whose job does not
//! fit is told so at once (and answers 503). A worker queues a directory once: connections
//! asking for it while its job is pending wait for the same job. Each waiting connection holds
//! a `Ticket`; once every one of them stopped waiting (its client left, its deadline passed,
//! the server is stopping), the job is skipped, or its building stops within `CHECK_EVERY`
//! entries. A listing holds at most `MAX_ENTRIES` entries; a page never
//! grows past that.
//!
//! Each worker keeps the pages it received for `cache::MAX_AGE`, the file cache's staleness
//! rule (counted from when the listing was asked for), so a directory asked for again within
//! that time costs no job at all. This module never touches a ring and never blocks a worker.

use std::collections::{BinaryHeap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::files::cache::MAX_AGE;
use crate::http::Status;
use crate::http::date::imf_fixdate;
use crate::http::target;
use crate::kernel::sys;

/// Entries listed at most (the first ones in listing order); a directory with more says how
/// many were left out.
pub const MAX_ENTRIES: usize = 10_000;
/// Jobs that may wait per listing thread; beyond that a listing is refused (503) rather than
/// queued behind work that may take seconds.
const QUEUE_PER_THREAD: usize = 32;
/// Workers per listing thread (at least one thread). Listing threads are not pinned and
/// compete with the workers for their cores, so they are kept to about a quarter of them: a
/// few directories that are slow to read hold up only the listings behind them, and listings
/// never take more than a share of the CPU from the workers.
const WORKERS_PER_THREAD: usize = 4;
/// Directory entries read or described between two looks at whether the job is still wanted.
const CHECK_EVERY: usize = 256;
/// Finished pages a worker keeps, at most, and their bytes at most (a page of `MAX_ENTRIES`
/// entries is about 1 MB).
const CACHED_PAGES: usize = 64;
const CACHED_BYTES: usize = 16 * 1024 * 1024;

/// Listing threads for `workers` workers.
pub fn threads_for(workers: usize) -> usize {
    workers.div_ceil(WORKERS_PER_THREAD).max(1)
}

/// A listing to build.
pub struct Job {
    id: u64,
    /// The directory beneath the root, decoded, `""` for the root, else ending in `/`.
    dir: Vec<u8>,
    hide_dotfiles: bool,
    /// When the first connection asked for it (the page is reused until `MAX_AGE` after).
    asked_at: Instant,
    /// Connections waiting for it; none once every `Ticket` is dropped.
    waiting: Arc<AtomicUsize>,
    reply: Sender<Done>,
    wake: Arc<OwnedFd>,
}

impl Job {
    fn is_wanted(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }
}

/// A waiting connection's claim on a job. Once every connection waiting for the job dropped
/// its ticket (answered otherwise, or gone), the listing threads skip the job or stop
/// building it.
pub struct Ticket {
    id: u64,
    waiting: Arc<AtomicUsize>,
}

impl Ticket {
    /// Whether `listing` is the one this ticket waits for (not that of an earlier request on
    /// the same connection, answered otherwise before its listing came back).
    pub fn claims(&self, listing: &Listing) -> bool {
        listing.id == self.id
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a listing thread sends back for a job.
pub struct Done {
    id: u64,
    dir: Vec<u8>,
    asked_at: Instant,
    result: Result<Vec<u8>, Status>,
}

/// A finished listing (or why there is none), as the waiting connections receive it.
pub struct Listing {
    id: u64,
    pub result: Result<Rc<[u8]>, Status>,
}

/// Why a listing was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full: try again shortly (503).
    Busy,
    /// The listing threads are gone.
    Gone,
}

/// A job queued or being built, and the connections (slab key and generation) waiting for it.
struct Pending {
    id: u64,
    waiting: Arc<AtomicUsize>,
    conns: Vec<(usize, u32)>,
}

/// A worker's end: sends jobs to the listing threads, receives finished pages, and keeps them
/// for reuse. A directory already queued or being built for this worker is not queued again:
/// later requests wait for the same job.
pub struct Lister {
    jobs: SyncSender<Job>,
    reply: Sender<Done>,
    done: Receiver<Done>,
    wake: Arc<OwnedFd>,
    next_id: u64,
    pending: HashMap<Vec<u8>, Pending>,
    pages: PageCache,
}

impl Lister {
    pub fn new(jobs: SyncSender<Job>, wake: Arc<OwnedFd>) -> Lister {
        let (reply, done) = mpsc::channel();
        let (pending, pages) = (HashMap::new(), PageCache::default());
        Lister { jobs, reply, done, wake, next_id: 0, pending, pages }
    }

    /// The listing of `dir` for the connection `conn` (slab key, generation), which waits for
    /// it while it holds the returned ticket: the job already pending for `dir`, or a new one.
    pub fn request(
        &mut self,
        conn: (usize, u32),
        dir: Vec<u8>,
        hide_dotfiles: bool,
        now: Instant,
    ) -> Result<Ticket, Refused> {
        // A job nobody waits for any more may be skipped at any moment: never joined.
        if let Some(pending) = self.pending.get_mut(&dir).filter(|p| p.waiting.load(Ordering::Relaxed) > 0) {
            pending.waiting.fetch_add(1, Ordering::Relaxed);
            pending.conns.push(conn);
            return Ok(Ticket { id: pending.id, waiting: pending.waiting.clone() });
        }
        self.next_id += 1;
        let (id, waiting) = (self.next_id, Arc::new(AtomicUsize::new(1)));
        let (reply, wake) = (self.reply.clone(), self.wake.clone());
        let job =
            Job { id, dir: dir.clone(), hide_dotfiles, asked_at: now, waiting: waiting.clone(), reply, wake };
        match self.jobs.try_send(job) {
            Ok(()) => {
                self.pending.insert(dir, Pending { id, waiting: waiting.clone(), conns: vec![conn] });
                Ok(Ticket { id, waiting })
            }
            Err(TrySendError::Full(_)) => Err(Refused::Busy),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Gone),
        }
    }

    /// Listings finished since the last call, each with the connections that waited for it;
    /// the pages are kept for reuse.
    pub fn finished(&mut self) -> Vec<(Listing, Vec<(usize, u32)>)> {
        let finished: Vec<Done> = self.done.try_iter().collect();
        finished.into_iter().map(|done| self.take_in(done)).collect()
    }

    fn take_in(&mut self, done: Done) -> (Listing, Vec<(usize, u32)>) {
        let conns = match self.pending.get(&done.dir) {
            Some(pending) if pending.id == done.id => self.pending.remove(&done.dir).map(|p| p.conns),
            _ => None,
        };
        let result = done.result.map(Rc::<[u8]>::from);
        if let Ok(page) = &result {
            self.pages.insert(done.dir, page.clone(), done.asked_at);
        }
        (Listing { id: done.id, result }, conns.unwrap_or_default())
    }

    /// The page of `dir`, if one asked for less than `MAX_AGE` ago is kept.
    pub fn cached(&self, dir: &[u8], now: Instant) -> Option<Rc<[u8]>> {
        self.pages.fresh(dir, now)
    }

    /// Frees the pages that can no longer be reused, and forgets jobs nobody waits for.
    pub fn drop_stale(&mut self, now: Instant) {
        self.pages.drop_stale(now);
        self.pending.retain(|_, p| p.waiting.load(Ordering::Relaxed) > 0);
    }
}

/// Finished pages by directory, each with when it was asked for; bounded like the file cache
/// (a full cache starts over).
#[derive(Default)]
struct PageCache {
    pages: HashMap<Vec<u8>, (Rc<[u8]>, Instant)>,
    bytes: usize,
}

impl PageCache {
    fn fresh(&self, dir: &[u8], now: Instant) -> Option<Rc<[u8]>> {
        let (page, asked_at) = self.pages.get(dir)?;
        (now.saturating_duration_since(*asked_at) < MAX_AGE).then(|| page.clone())
    }

    fn insert(&mut self, dir: Vec<u8>, page: Rc<[u8]>, asked_at: Instant) {
        if page.len() > CACHED_BYTES {
            return;
        }
        if self.pages.len() >= CACHED_PAGES || self.bytes + page.len() > CACHED_BYTES {
            self.pages.clear();
            self.bytes = 0;
        }
        self.bytes += page.len();
        if let Some((old, _)) = self.pages.insert(dir, (page, asked_at)) {
            self.bytes -= old.len();
        }
    }

    fn drop_stale(&mut self, now: Instant) {
        let mut freed = 0;
        self.pages.retain(|_, (page, asked_at)| {
            let keep = now.saturating_duration_since(*asked_at) < MAX_AGE;
            if !keep {
                freed += page.len();
            }
            keep
        });
        self.bytes -= freed;
    }
}

/// Starts `threads` listing threads for the document root `root`; they end when every
/// worker's `Lister` (and so every job sender) is gone.
pub fn spawn(root: Arc<OwnedFd>, threads: usize) -> std::io::Result<SyncSender<Job>> {
    let (jobs, incoming) = mpsc::sync_channel::<Job>(QUEUE_PER_THREAD * threads);
    let incoming = Arc::new(Mutex::new(incoming));
    for i in 0..threads {
        let (root, incoming) = (root.clone(), incoming.clone());
        std::thread::Builder::new()
            .name(format!("ringhttpd-list{i}"))
            .spawn(move || serve(root.as_raw_fd(), &incoming))?;
    }
    Ok(jobs)
}

/// One listing thread: builds each job that is still wanted, and replies unless it stopped
/// being wanted meanwhile.
fn serve(root: RawFd, incoming: &Mutex<Receiver<Job>>) {
    while let Some(job) = next_job(incoming) {
        if !job.is_wanted() {
            continue;
        }
        if let Some(delay) = crate::testing::hooks::delay(crate::testing::hooks::Slow::Listing, &job.dir) {
            wait_while_wanted(&job, delay);
        }
        let Some(result) = build(root, &job) else { continue };
        let Job { id, dir, asked_at, reply, wake, .. } = job;
        let done = Done { id, dir, asked_at, result };
        if reply.send(done).is_ok() {
            sys::eventfd_signal(wake.as_raw_fd());
        }
    }
}

fn next_job(incoming: &Mutex<Receiver<Job>>) -> Option<Job> {
    incoming.lock().unwrap_or_else(PoisonError::into_inner).recv().ok()
}

/// Plays a slow directory (tests only): waits `delay`, or until the job is no longer wanted.
fn wait_while_wanted(job: &Job, delay: Duration) {
    let until = Instant::now() + delay;
    while job.is_wanted() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(10)));
    }
}

/// One directory entry as listed.
struct Entry {
    name: Vec<u8>,
    is_dir: bool,
    /// Size and modification time; `None` for what is not a regular file or directory.
    meta: Option<(u64, i64)>,
}

/// Where an entry sorts: directories first, then by name (bytewise).
type Rank = (bool, Vec<u8>);

/// The page for `job`, or why there is none; `None` once the job is no longer wanted.
fn build(root: RawFd, job: &Job) -> Option<Result<Vec<u8>, Status>> {
    let fd = match sys::open_dir_beneath(root, &job.dir) {
        Ok(fd) => fd,
        Err(e) => return Some(Err(status_for(&e))),
    };
    // Reading through the descriptor keeps to the directory `openat2` checked.
    let base = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let Ok(reader) = fs::read_dir(&base) else { return Some(Err(Status::InternalServerError)) };
    let (first, left_out) = first_entries(reader, job)?;
    let mut entries = Vec::with_capacity(first.len());
    for (i, (not_dir, name)) in first.into_iter().enumerate() {
        if i % CHECK_EVERY == 0 && !job.is_wanted() {
            return None;
        }
        entries.push(describe(&base, name, !not_dir));
    }
    Some(Ok(render(&job.dir, &entries, left_out)))
}

fn status_for(e: &std::io::Error) -> Status {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => Status::NotFound,
        Some(libc::EACCES | libc::EPERM | libc::ELOOP | libc::EXDEV) => Status::Forbidden,
        _ => Status::InternalServerError,
    }
}

/// The first `MAX_ENTRIES` names in listing order, sorted, and how many more there were
/// (`None` once the job is no longer wanted). Only the names kept are held (a bounded heap),
/// so a huge directory costs no more memory than a listing shows, and what is shown never
/// depends on the order `readdir` returns.
fn first_entries(reader: fs::ReadDir, job: &Job) -> Option<(Vec<Rank>, usize)> {
    let mut kept: BinaryHeap<Rank> = BinaryHeap::with_capacity(MAX_ENTRIES + 1);
    let mut left_out = 0usize;
    for (i, item) in reader.enumerate() {
        if i % CHECK_EVERY == 0 && !job.is_wanted() {
            return None;
        }
        let Ok(item) = item else { continue };
        let name = item.file_name().into_encoded_bytes();
        if job.hide_dotfiles && is_hidden(&job.dir, &name) {
            continue;
        }
        // The type `readdir` reports, not followed: a symlink's target may lie outside the root.
        let is_dir = item.file_type().is_ok_and(|t| t.is_dir());
        kept.push((!is_dir, name));
        if kept.len() > MAX_ENTRIES {
            kept.pop();
            left_out += 1;
        }
    }
    Some((kept.into_sorted_vec(), left_out))
}

/// Whether `name` in `dir` is a dotfile that requests cannot reach, by the same rule the
/// server applies to requests (so the root's `.well-known` is listed).
fn is_hidden(dir: &[u8], name: &[u8]) -> bool {
    let mut path = dir.to_vec();
    path.extend_from_slice(name);
    target::is_hidden(&path)
}

/// Size and modification time of one kept entry (not followed, as above).
fn describe(base: &Path, name: Vec<u8>, is_dir: bool) -> Entry {
    let meta = fs::symlink_metadata(base.join(OsStr::from_bytes(&name))).ok();
    let meta = meta.filter(|m| m.is_file() || m.is_dir()).map(|m| (m.len(), mtime(&m)));
    Entry { name, is_dir, meta }
}

fn mtime(meta: &fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime()
}

/// The HTML page: a `../` link below the root, then one line per entry.
fn render(dir: &[u8], entries: &[Entry], left_out: usize) -> Vec<u8> {
    let mut title = b"/".to_vec();
    title.extend_from_slice(dir);
    let title = html_escape(&title);
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n\
         <body><h1>Index of {title}</h1><hr><pre>\n"
    )
    .into_bytes();
    if !dir.is_empty() {
        out.extend_from_slice(b"<a href=\"../\">../</a>\n");
    }
    for entry in entries {
        let slash = if entry.is_dir { "/" } else { "" };
        let (size, modified) = match entry.meta {
            Some((_, mtime)) if entry.is_dir => ("-".to_owned(), imf_fixdate(mtime)),
            Some((size, mtime)) => (size.to_string(), imf_fixdate(mtime)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let line = format!(
            "<a href=\"{}{slash}\">{}{slash}</a> {modified} {size}\n",
            percent_encode(&entry.name),
            html_escape(&entry.name)
        );
        out.extend_from_slice(line.as_bytes());
    }
    if left_out > 0 {
        out.extend_from_slice(format!("({left_out} more entries not listed)\n").as_bytes());
    }
    out.extend_from_slice(b"</pre><hr></body></html>\n");
    out
}

/// A name as HTML text (invalid UTF-8 shown as U+FFFD). Control characters are shown as
/// visible symbols, so a name can neither break the page's lines nor reach a terminal that
/// displays the page as escape sequences; bidirectional overrides, which would make a name
/// read as another, are shown as U+FFFD. (The link itself is percent-encoded, byte for byte.)
fn html_escape(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for c in String::from_utf8_lossy(name).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(visible(c)),
        }
    }
    out
}

/// C0 controls and DEL as their Control Pictures (U+2400 to U+2421), other controls and
/// bidirectional formatting characters as U+FFFD, anything else as itself.
fn visible(c: char) -> char {
    match c {
        '\0'..='\u{1F}' => char::from_u32(0x2400 + c as u32).unwrap_or(char::REPLACEMENT_CHARACTER),
        '\u{7F}' => '\u{2421}',
        '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => {
            char::REPLACEMENT_CHARACTER
        }
        c if c.is_control() => char::REPLACEMENT_CHARACTER,
        c => c,
    }
}

/// A name as one path segment of a relative link: every byte but the unreserved ones escaped,
/// so `?`, `#`, `%`, `&`, spaces and non-ASCII bytes all arrive as the same name.
fn percent_encode(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_reused_within_max_age_and_stay_bounded() {
        let mut cache = PageCache::default();
        let t0 = Instant::now();
        cache.insert(b"a/".to_vec(), Rc::from(&b"page"[..]), t0);
        assert_eq!(cache.fresh(b"a/", t0).as_deref(), Some(&b"page"[..]));
        assert!(cache.fresh(b"a/", t0 + MAX_AGE).is_none());
        cache.drop_stale(t0 + MAX_AGE);
        assert!(cache.pages.is_empty() && cache.bytes == 0);
        for i in 0..CACHED_PAGES * 2 {
            cache.insert(i.to_string().into_bytes(), Rc::from(&b"p"[..]), t0);
            assert!(cache.pages.len() <= CACHED_PAGES && cache.bytes == cache.pages.len());
        }
    }

    #[test]
    fn names_are_escaped_for_html_and_links() {
        assert_eq!(html_escape(b"<script>.html"), "&lt;script&gt;.html");
        assert_eq!(html_escape(b"a\x1b[2J\nb\x7f\0"), "a\u{241B}[2J\u{240A}b\u{2421}\u{2400}");
        assert_eq!(html_escape("x\u{202E}txt.exe\u{85}".as_bytes()), "x\u{FFFD}txt.exe\u{FFFD}");
        assert_eq!(percent_encode(b"a\x1b\n"), "a%1B%0A");
        assert_eq!(percent_encode(b"a b&c#d?.txt"), "a%20b%26c%23d%3F.txt");
        assert_eq!(percent_encode("é%".as_bytes()), "%C3%A9%25");
    }

    #[test]
    fn pages_list_directories_first_with_a_parent_link_below_the_root() {
        let entries = [
            Entry { name: b"sub".to_vec(), is_dir: true, meta: Some((0, 0)) },
            Entry { name: b"a&b.txt".to_vec(), is_dir: false, meta: Some((12, 0)) },
        ];
        let page = String::from_utf8(render(b"docs/", &entries, 3)).unwrap();
        assert!(page.contains("<title>Index of /docs/</title>"));
        let parent = page.find("<a href=\"../\">").unwrap();
        let sub = page.find("<a href=\"sub/\">sub/</a>").unwrap();
        let file =
            page.find("<a href=\"a%26b.txt\">a&amp;b.txt</a> Thu, 01 Jan 1970 00:00:00 GMT 12").unwrap();
        assert!(parent < sub && sub < file, "{page}");
        assert!(page.contains("(3 more entries not listed)"));
        assert!(!String::from_utf8(render(b"", &entries, 0)).unwrap().contains("../"));
    }
}
