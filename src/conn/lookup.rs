//! Finding what a request names: `openat2` beneath the root, `statx` of the descriptor, and
//! for small files a read into memory; then the same for the file's precompressed siblings
//! (`.br`, `.gz`), so the cached entry knows every representation it can offer.
//!
//! Each step is one ring operation whose memory (path, open_how, statx buffer, read buffer)
//! lives in the boxed phase until its completion arrives. Results go into the worker's cache;
//! this module never decides what to answer (see `respond`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;

use io_uring::types::{OpenHow, Timespec};

use super::{Conn, Phase};
use crate::cache::{Entry, FileInfo, Identity, SMALL_FILE};
use crate::http::Status;
use crate::http::encoding::Coding;
use crate::http::request::Request;
use crate::token::{Op, Token};
use crate::worker::Ctx;

/// Why a path is being looked up, which decides what its answer becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// The file the request names.
    Request,
    /// `--fallback`, because the requested path names nothing.
    Fallback,
    /// `--error-page` for `status`, whose body this file becomes.
    ErrorPage { status: Status, keep_alive: bool },
}

/// A request whose file is being resolved.
pub(super) struct Lookup {
    req: Box<Request>,
    purpose: Purpose,
    /// The path beneath the root, as the request named it.
    path: Vec<u8>,
    is_index: bool,
    /// The file itself, once found; it is cached only after its siblings were probed.
    main: Option<FileInfo>,
    /// Precompressed siblings probed so far, in `Coding::ALL` order.
    variants: Vec<Option<Rc<FileInfo>>>,
    /// A sibling's probe failed for a passing reason: what is known is not worth caching.
    incomplete: bool,
}

pub(super) struct Opening {
    lookup: Lookup,
    // Both are read by the kernel until the open completes.
    c_path: CString,
    how: OpenHow,
    // Read by the kernel until the open completes, when a test holds the open back.
    delay: Option<Timespec>,
}

pub(super) struct Stating {
    lookup: Lookup,
    file: Option<OwnedFd>,
    // Written by the kernel until the statx completes.
    statx: libc::statx,
}

pub(super) struct Loading {
    lookup: Lookup,
    info: Option<FileInfo>,
    // Written by the kernel until each read completes; never resized while a read is in flight.
    buf: Vec<u8>,
    filled: usize,
}

impl Lookup {
    pub(super) fn new(req: Box<Request>, path: Vec<u8>, is_index: bool, purpose: Purpose) -> Lookup {
        Lookup { req, purpose, path, is_index, main: None, variants: Vec::new(), incomplete: false }
    }

    /// The coding being probed, or `None` while the file itself is being resolved.
    fn probing(&self) -> Option<Coding> {
        self.main.as_ref().map(|_| Coding::ALL[self.variants.len()])
    }

    /// The name to open next.
    fn name(&self) -> Vec<u8> {
        let mut name = self.path.clone();
        if let Some(coding) = self.probing() {
            name.extend_from_slice(coding.suffix());
        }
        name
    }
}

/// The errno → status table (as nginx: missing 404, permission 403, exhaustion 503).
fn status_for_errno(errno: i32) -> Status {
    match errno {
        libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG | libc::ENXIO | libc::ENODEV => Status::NotFound,
        libc::EACCES | libc::EPERM | libc::ELOOP | libc::EXDEV => Status::Forbidden,
        libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EAGAIN => Status::ServiceUnavailable,
        _ => Status::InternalServerError,
    }
}

/// Closes what an open produced for a connection that no longer wants it.
pub(super) fn release_opened(result: i32) {
    if result >= 0 {
        // SAFETY: a non-negative Open result is a new descriptor that nothing else owns.
        drop(unsafe { OwnedFd::from_raw_fd(result) });
    }
}

fn zeroed_statx() -> libc::statx {
    // SAFETY: statx is plain old data for which all-zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

impl Conn {
    pub(super) fn open(&mut self, ctx: &mut Ctx, lookup: Lookup) {
        let Ok(c_path) = CString::new(lookup.name()) else {
            return self.lookup_failed(ctx, lookup, Status::BadRequest);
        };
        let how = OpenHow::new()
            .flags((libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY) as u64)
            .resolve(libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS);
        let delay = crate::server::test_open_delay(c_path.as_bytes())
            .map(|d| Timespec::new().sec(d.as_secs()).nsec(d.subsec_nanos()));
        let opening = Box::new(Opening { lookup, c_path, how, delay });
        let token = self.token(Op::Open);
        let (path, how) = (&opening.c_path, &opening.how);
        match &opening.delay {
            // SAFETY: `c_path` and `how` live in the boxed Opening, stored in `self.phase` below
            // and not replaced until the Open completion arrives (`ops_in_flight` guards it).
            None => unsafe { ctx.ring.open_beneath(ctx.root, path, how, token) },
            // SAFETY: as above; `delay` lives in the same box.
            Some(delay) => unsafe {
                ctx.ring.open_beneath_after(delay, ctx.root, path, how, token, Token::worker(Op::Delay))
            },
        }
        self.phase = Phase::Opening(opening);
        self.ops_in_flight += 1;
    }

    pub(super) fn on_open(&mut self, result: i32, ctx: &mut Ctx) {
        let Phase::Opening(opening) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let lookup = opening.lookup;
        if result < 0 {
            return self.not_servable(ctx, lookup, status_for_errno(-result));
        }
        // SAFETY: a non-negative Open result is a new descriptor that nothing else owns.
        let file = unsafe { OwnedFd::from_raw_fd(result) };
        let mut stating = Box::new(Stating { lookup, file: Some(file), statx: zeroed_statx() });
        let fd = stating.file.as_ref().map_or(-1, |f| f.as_raw_fd());
        let token = self.token(Op::Statx);
        // SAFETY: the statx buffer lives in the boxed Stating, stored in `self.phase` below and
        // not replaced until the Statx completion arrives.
        unsafe { ctx.ring.statx_fd(fd, &mut stating.statx, token) };
        self.phase = Phase::Stating(stating);
        self.ops_in_flight += 1;
    }

    pub(super) fn on_statx(&mut self, result: i32, ctx: &mut Ctx) {
        let Phase::Stating(mut st) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        if result < 0 {
            return self.not_servable(ctx, st.lookup, status_for_errno(-result));
        }
        let mode = u32::from(st.statx.stx_mode);
        match mode & libc::S_IFMT {
            libc::S_IFREG if mode & 0o444 != 0 => {}
            libc::S_IFDIR if st.lookup.main.is_none() => return self.found_directory(ctx, st.lookup),
            libc::S_IFDIR => return self.not_servable(ctx, st.lookup, Status::NotFound),
            // FIFOs, devices, sockets, and files nobody may read are not served.
            _ => return self.not_servable(ctx, st.lookup, Status::Forbidden),
        }
        let id = Identity {
            ino: st.statx.stx_ino,
            size: st.statx.stx_size,
            mtime: st.statx.stx_mtime.tv_sec,
            mtime_nsec: st.statx.stx_mtime.tv_nsec,
        };
        let Some(file) = st.file.take() else { return };
        // Siblings keep the original's name for their Content-Type.
        let mut info = FileInfo::new(file, id, &st.lookup.path);
        if id.size > SMALL_FILE {
            return self.found_file(ctx, st.lookup, info);
        }
        if let Some(body) = ctx.cache.body_if_unchanged(&st.lookup.path, st.lookup.probing(), &id) {
            info.body = Some(body);
            return self.found_file(ctx, st.lookup, info);
        }
        let buf = vec![0; id.size as usize];
        self.phase =
            Phase::Loading(Box::new(Loading { lookup: st.lookup, info: Some(info), buf, filled: 0 }));
        self.read_more(ctx);
    }

    /// Reads the rest of a small file into its buffer.
    fn read_more(&mut self, ctx: &mut Ctx) {
        let token = self.token(Op::Read);
        let Phase::Loading(ld) = &mut self.phase else { return };
        let Some(info) = &ld.info else { return };
        if ld.filled == ld.buf.len() {
            return self.finish_loading(ctx);
        }
        let fd = info.file.as_raw_fd();
        let offset = ld.filled as u64;
        // SAFETY: the buffer lives in the boxed Loading held by `self.phase`, which is neither
        // replaced nor resized until the Read completion arrives.
        unsafe { ctx.ring.read_at(fd, &mut ld.buf[ld.filled..], offset, token) };
        self.ops_in_flight += 1;
    }

    pub(super) fn on_read(&mut self, result: i32, ctx: &mut Ctx) {
        let Phase::Loading(ld) = &mut self.phase else { return };
        if result < 0 {
            let Phase::Loading(ld) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
            return self.lookup_failed(ctx, ld.lookup, Status::InternalServerError);
        }
        if result == 0 {
            // The file shrank since statx: serve what it now holds, with a matching length.
            ld.buf.truncate(ld.filled);
        }
        ld.filled += result as usize;
        self.read_more(ctx);
    }

    fn finish_loading(&mut self, ctx: &mut Ctx) {
        let Phase::Loading(mut ld) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let Some(mut info) = ld.info.take() else { return };
        info.id.size = ld.buf.len() as u64;
        info.body = Some(Rc::from(std::mem::take(&mut ld.buf)));
        self.found_file(ctx, ld.lookup, info);
    }

    // ---- results ----

    /// The lookup itself broke. An error page that cannot be read gives way to the built-in
    /// page for its own status (never to another page lookup, which could loop).
    fn lookup_failed(&mut self, ctx: &mut Ctx, lookup: Lookup, status: Status) {
        match lookup.purpose {
            Purpose::ErrorPage { status, keep_alive } => {
                self.builtin_error(ctx, Some(lookup.req), status, keep_alive)
            }
            _ => self.respond_error(ctx, Some(lookup.req), status, false),
        }
    }

    fn found_file(&mut self, ctx: &mut Ctx, mut lookup: Lookup, info: FileInfo) {
        match lookup.main {
            None => lookup.main = Some(info),
            Some(_) => lookup.variants.push(Some(Rc::new(info))),
        }
        self.next_sibling(ctx, lookup);
    }

    /// Only what describes the file (missing, forbidden) is cached; a failure of the moment
    /// (descriptors or memory exhausted, an I/O error) is answered but not remembered.
    fn not_servable(&mut self, ctx: &mut Ctx, mut lookup: Lookup, status: Status) {
        let describes_file = matches!(status, Status::NotFound | Status::Forbidden);
        if lookup.main.is_some() {
            lookup.variants.push(None);
            lookup.incomplete |= !describes_file;
            return self.next_sibling(ctx, lookup);
        }
        if describes_file {
            ctx.cache.insert(lookup.path, Entry::Absent(status), ctx.now);
        }
        self.respond_entry(ctx, lookup.req, lookup.is_index, Entry::Absent(status), lookup.purpose);
    }

    fn found_directory(&mut self, ctx: &mut Ctx, lookup: Lookup) {
        ctx.cache.insert(lookup.path, Entry::Directory, ctx.now);
        self.respond_entry(ctx, lookup.req, lookup.is_index, Entry::Directory, lookup.purpose);
    }

    /// Probes the next precompressed sibling, or caches and answers once all are known.
    fn next_sibling(&mut self, ctx: &mut Ctx, mut lookup: Lookup) {
        if lookup.variants.len() < Coding::ALL.len() {
            return self.open(ctx, lookup);
        }
        let Some(mut main) = lookup.main.take() else { return };
        for (slot, variant) in main.variants.iter_mut().zip(lookup.variants.drain(..)) {
            *slot = variant;
        }
        let entry = Entry::File(Rc::new(main));
        if !lookup.incomplete {
            ctx.cache.insert(lookup.path, entry.clone(), ctx.now);
        }
        self.respond_entry(ctx, lookup.req, lookup.is_index, entry, lookup.purpose);
    }
}
