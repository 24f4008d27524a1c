//! Finding what a request names: `openat2` beneath the root, `statx` of the descriptor, and
//! for small files a read into memory; then the same for the file's precompressed siblings
//! (`.br`, `.gz`), so the cached entry knows every representation it can offer.
//!
//! Each step is one ring operation whose memory (path, open_how, statx buffer, read buffer)
//! lives in the boxed phase until its completion arrives. Results go into the worker's cache;
//! this module never decides what to answer (see `respond`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

use super::{Conn, Phase};
use crate::files::cache::{Entry, FileInfo, Identity, SMALL_FILE};
use crate::http::Status;
use crate::http::encoding::Coding;
use crate::http::request::Request;
use crate::kernel::token::Op;
use crate::server::context::Ctx;
use crate::testing::hooks::Slow;

/// Why a path is being looked up, which decides what its answer becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// The file the request names.
    Request,
    /// `--fallback`, because the requested path names nothing.
    Fallback,
    /// `--error-page` for `status`, whose body this file becomes.
    ErrorPage { status: Status, keep_alive: bool },
    /// `--autoindex`: the directory a request ending in `/` names has no `index.html`; it is
    /// listed only once it is known to be a directory.
    ListedDirectory,
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

/// An `openat2` in flight (the ring owns the path it reads).
pub(super) struct Opening {
    lookup: Lookup,
}

/// A `statx` of the opened file in flight (the ring owns the buffer it writes). The file is
/// kept here so its descriptor stays open until the operation completes.
pub(super) struct Stating {
    lookup: Lookup,
    file: OwnedFd,
}

/// A small file being read into memory; the buffer is with the ring while a read is in flight.
pub(super) struct Loading {
    lookup: Lookup,
    info: FileInfo,
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

impl Conn {
    pub(super) fn open(&mut self, ctx: &mut Ctx, lookup: Lookup) {
        let Ok(c_path) = CString::new(lookup.name()) else {
            return self.lookup_failed(ctx, lookup, Status::BadRequest);
        };
        let flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY) as u64;
        let delay =
            crate::testing::hooks::delay(Slow::Open, c_path.as_bytes()).map(|d| (d, self.token(Op::Delay)));
        let token = self.token(Op::Open);
        self.in_flight.submit(1, || ctx.ring.open_beneath(ctx.root, c_path, flags, delay, token));
        self.phase = Phase::Opening(Box::new(Opening { lookup }));
    }

    pub(super) fn on_open(&mut self, result: i32, file: Option<OwnedFd>, ctx: &mut Ctx) {
        let Phase::Opening(opening) = self.take_phase() else {
            unreachable!("an open completed outside the opening phase");
        };
        let lookup = opening.lookup;
        let Some(file) = file else {
            return self.not_servable(ctx, lookup, status_for_errno(-result));
        };
        let token = self.token(Op::Statx);
        self.in_flight.submit(1, || ctx.ring.statx_fd(file.as_raw_fd(), token));
        self.phase = Phase::Stating(Box::new(Stating { lookup, file }));
    }

    pub(super) fn on_statx(&mut self, result: i32, statx: Option<libc::statx>, ctx: &mut Ctx) {
        let Phase::Stating(st) = self.take_phase() else {
            unreachable!("a statx completed outside the stating phase");
        };
        let Stating { lookup, file } = *st;
        let Some(statx) = statx.filter(|_| result >= 0) else {
            return self.not_servable(ctx, lookup, status_for_errno(-result));
        };
        let mode = u32::from(statx.stx_mode);
        match mode & libc::S_IFMT {
            libc::S_IFREG if mode & 0o444 != 0 => {}
            libc::S_IFDIR if lookup.main.is_none() => return self.found_directory(ctx, lookup),
            libc::S_IFDIR => return self.not_servable(ctx, lookup, Status::NotFound),
            // FIFOs, devices, sockets, and files nobody may read are not served.
            _ => return self.not_servable(ctx, lookup, Status::Forbidden),
        }
        let id = Identity {
            ino: statx.stx_ino,
            size: statx.stx_size,
            mtime: statx.stx_mtime.tv_sec,
            mtime_nsec: statx.stx_mtime.tv_nsec,
        };
        // Siblings keep the original's name for their Content-Type.
        let mut info = FileInfo::new(file, id, &lookup.path);
        if id.size > SMALL_FILE {
            return self.found_file(ctx, lookup, info);
        }
        if let Some(body) = ctx.cache.body_if_unchanged(&lookup.path, lookup.probing(), &id) {
            info.body = Some(body);
            return self.found_file(ctx, lookup, info);
        }
        let buf = vec![0; id.size as usize];
        self.phase = Phase::Loading(Box::new(Loading { lookup, info, filled: 0 }));
        self.read_more(ctx, buf);
    }

    /// Reads the rest of a small file into `buf`, or finishes once it is full.
    fn read_more(&mut self, ctx: &mut Ctx, buf: Vec<u8>) {
        let token = self.token(Op::Read);
        let Phase::Loading(ld) = &mut self.phase else { unreachable!("reading outside the loading phase") };
        if ld.filled == buf.len() {
            return self.finish_loading(ctx, buf);
        }
        let (file, filled) = (ld.info.file.as_raw_fd(), ld.filled);
        self.in_flight.submit(1, || ctx.ring.read_at(file, buf, filled, filled as u64, token));
    }

    pub(super) fn on_read(&mut self, result: i32, buf: Option<Vec<u8>>, ctx: &mut Ctx) {
        let Some(mut buf) = buf else { unreachable!("a read completion without its buffer") };
        let Phase::Loading(ld) = &mut self.phase else {
            unreachable!("a read completed outside the loading phase")
        };
        if result < 0 {
            let Phase::Loading(ld) = self.take_phase() else { unreachable!() };
            return self.lookup_failed(ctx, ld.lookup, Status::InternalServerError);
        }
        if result == 0 {
            // The file shrank since statx: serve what it now holds, with a matching length.
            buf.truncate(ld.filled);
        }
        ld.filled += result as usize;
        self.read_more(ctx, buf);
    }

    fn finish_loading(&mut self, ctx: &mut Ctx, buf: Vec<u8>) {
        let Phase::Loading(ld) = self.take_phase() else { unreachable!() };
        let Loading { lookup, mut info, .. } = *ld;
        info.id.size = buf.len() as u64;
        info.body = Some(Rc::from(buf));
        self.found_file(ctx, lookup, info);
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
        let Lookup { req, path, is_index, purpose, .. } = lookup;
        self.respond_entry(ctx, req, &path, is_index, Entry::Absent(status), purpose);
        if describes_file {
            ctx.cache.insert(path, Entry::Absent(status), ctx.now);
        }
    }

    fn found_directory(&mut self, ctx: &mut Ctx, lookup: Lookup) {
        let Lookup { req, path, is_index, purpose, .. } = lookup;
        self.respond_entry(ctx, req, &path, is_index, Entry::Directory, purpose);
        ctx.cache.insert(path, Entry::Directory, ctx.now);
    }

    /// Probes the next precompressed sibling, or caches and answers once all are known.
    fn next_sibling(&mut self, ctx: &mut Ctx, mut lookup: Lookup) {
        if lookup.variants.len() < Coding::ALL.len() {
            return self.open(ctx, lookup);
        }
        let Some(mut main) = lookup.main.take() else {
            unreachable!("siblings probed without the file they belong to");
        };
        for (slot, variant) in main.variants.iter_mut().zip(lookup.variants.drain(..)) {
            *slot = variant;
        }
        let entry = Entry::File(Rc::new(main));
        let Lookup { req, path, is_index, purpose, incomplete, .. } = lookup;
        self.respond_entry(ctx, req, &path, is_index, entry.clone(), purpose);
        if !incomplete {
            ctx.cache.insert(path, entry, ctx.now);
        }
    }
}
