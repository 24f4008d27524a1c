//! One client connection: a state machine driven by ring completions.
//!
//! `Phase` says what the connection is doing and owns exactly the memory its one in-flight
//! operation points at (path, statx buffer, read buffer, send buffer). A multishot receive runs
//! beside it into the ring's provided buffers. Each completion handler is a transition: it
//! consumes a result, updates the phase and submits the next operation.
//!
//! Memory rule: a phase that has an operation in flight (`op_in_flight`) is never replaced or
//! dropped until that operation's completion arrives, and a connection is only freed once it has
//! nothing in flight at all (`is_finished`). This module must never block and never send a
//! response whose framing it cannot keep: if a file shrinks mid-body, the connection is closed.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::types::OpenHow;

use crate::cache::{FileInfo, Identity, SMALL_FILE};
use crate::http::Status;
use crate::http::range::{self, Selection};
use crate::http::request::{self, Method, Parse, Request};
use crate::http::response;
use crate::path;
use crate::ring::Completion;
use crate::sys::{self, Pipe};
use crate::token::{Op, Token};
use crate::worker::Ctx;

/// How long a closing connection waits for the client's FIN after ours, so that a client still
/// sending does not turn our close into a reset that destroys the response it has not read.
const LINGER: Duration = Duration::from_secs(2);
/// Bytes of pipelined requests buffered while a response is in progress.
const MAX_PIPELINED: usize = 64 * 1024;

pub struct Conn {
    pub socket: OwnedFd,
    key: usize,
    generation: u32,
    phase: Phase,
    /// A multishot receive is armed (its final completion has not arrived).
    recv_armed: bool,
    /// The phase's single operation is in flight.
    op_in_flight: bool,
    /// Received bytes not yet consumed as requests.
    inbuf: Vec<u8>,
    /// The client sent FIN: nothing more will arrive.
    peer_closed: bool,
    /// The connection is being torn down; it is freed once nothing is in flight.
    closing: bool,
    /// Idle between requests: the keep-alive timeout runs, not the header timeout.
    between_requests: bool,
    pub deadline: Instant,
    peer: Option<std::net::IpAddr>,
}

enum Phase {
    /// Waiting for a request head (any partial bytes are in `inbuf`).
    Idle,
    /// `openat2` of the requested path in flight.
    Opening(Box<Opening>),
    /// `statx` of the opened file in flight.
    Stating(Box<Stating>),
    /// Reading a small file into memory.
    Loading(Box<Loading>),
    /// Sending a response head (and a small body, or an error page).
    Sending(Box<Sending>),
    /// Moving a large body file → pipe → socket.
    Splicing(Box<Splicing>),
    /// Our FIN is sent; draining input until the client closes too.
    Lingering,
}

/// The request being answered, kept until the access log line is written.
struct Exchange {
    req: Option<Box<Request>>,
    status: Status,
    keep_alive: bool,
    body_bytes: u64,
}

struct Lookup {
    req: Box<Request>,
    path: Vec<u8>,
    is_index: bool,
}

struct Opening {
    lookup: Lookup,
    // Both are read by the kernel until the open completes.
    c_path: CString,
    how: OpenHow,
}

struct Stating {
    lookup: Lookup,
    file: Option<OwnedFd>,
    // Written by the kernel until the statx completes.
    statx: libc::statx,
}

struct Loading {
    lookup: Lookup,
    info: Option<FileInfo>,
    // Written by the kernel until each read completes; never resized while a read is in flight.
    buf: Vec<u8>,
    filled: usize,
}

struct Sending {
    // Read by the kernel until the send completes; never resized while a send is in flight.
    buf: Vec<u8>,
    sent: usize,
    then: Option<BodyFile>,
    ex: Exchange,
}

/// A body range still to be spliced from a file.
struct BodyFile {
    info: Rc<FileInfo>,
    offset: u64,
    remaining: u64,
}

struct Splicing {
    body: BodyFile,
    pipe: Option<Pipe>,
    in_pipe: usize,
    ex: Exchange,
}

impl Conn {
    pub fn new(socket: OwnedFd, key: usize, generation: u32, ctx: &mut Ctx) -> Conn {
        let peer = if ctx.log.is_some() {
            sys::peer_ip(socket.as_raw_fd())
        } else {
            None
        };
        Conn {
            socket,
            key,
            generation,
            phase: Phase::Idle,
            recv_armed: false,
            op_in_flight: false,
            inbuf: Vec::new(),
            peer_closed: false,
            closing: false,
            between_requests: false,
            deadline: ctx.now + ctx.cfg.header_timeout,
            peer,
        }
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    fn token(&self, op: Op) -> Token {
        Token::conn(self.key, self.generation, op)
    }

    fn fd(&self) -> i32 {
        self.socket.as_raw_fd()
    }

    /// Nothing is in flight and the connection is done: the worker may free it.
    pub fn is_finished(&self) -> bool {
        self.closing && !self.recv_armed && !self.op_in_flight
    }

    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Idle) && self.inbuf.is_empty()
    }

    /// Starts receiving; called once after accept and whenever a multishot receive ends.
    pub fn arm_recv(&mut self, ctx: &mut Ctx) {
        if !self.recv_armed && !self.closing && !self.peer_closed {
            self.recv_armed = true;
            ctx.ring.recv_multi(self.fd(), self.token(Op::Recv));
        }
    }

    /// Routes a completion to the transition for its operation.
    pub fn on_completion(&mut self, op: Op, c: &Completion, ctx: &mut Ctx) {
        match op {
            Op::Recv => self.on_recv(c, ctx),
            Op::Open => self.on_open(c.result, ctx),
            Op::Statx => self.on_statx(c.result, ctx),
            Op::Read => self.on_read(c.result, ctx),
            Op::Send => self.on_send(c.result, ctx),
            Op::SpliceIn => self.on_splice_in(c.result, ctx),
            Op::SpliceOut => self.on_splice_out(c.result, ctx),
            Op::PollOut => self.on_writable(c.result, ctx),
            _ => {}
        }
    }

    // ---- receiving and parsing ----

    fn on_recv(&mut self, c: &Completion, ctx: &mut Ctx) {
        if !c.more() {
            self.recv_armed = false;
        }
        if let Some(bid) = c.buffer_id() {
            if c.result > 0 {
                let bytes = ctx.ring.buffer(bid, c.result as usize);
                if !self.closing && !matches!(self.phase, Phase::Lingering) {
                    self.inbuf.extend_from_slice(bytes);
                }
            }
            ctx.ring.recycle(bid);
        }
        match c.result {
            n if n > 0 => self.on_input(ctx),
            0 => self.on_peer_closed(ctx),
            e if -e == libc::ENOBUFS => {
                if !self.recv_armed {
                    ctx.rearm_recv.push(self.key);
                }
            }
            _ => self.abort(ctx),
        }
        if !self.recv_armed && c.result > 0 {
            self.arm_recv(ctx);
        }
    }

    fn on_peer_closed(&mut self, ctx: &mut Ctx) {
        self.peer_closed = true;
        match self.phase {
            // Nothing (complete) to answer, or our side is already done.
            Phase::Idle | Phase::Lingering => self.abort(ctx),
            // A half-closed client still reads: finish the response, then close.
            _ => {}
        }
    }

    fn on_input(&mut self, ctx: &mut Ctx) {
        if matches!(self.phase, Phase::Idle) {
            if self.between_requests {
                self.between_requests = false;
                self.deadline = ctx.now + ctx.cfg.header_timeout;
            }
            self.process_input(ctx);
        } else if self.inbuf.len() > MAX_PIPELINED + ctx.cfg.max_header_size {
            // A client pipelining this much without reading is not a client we can serve.
            self.abort(ctx);
        }
    }

    /// Parses and starts answering the next request in `inbuf`, if a whole head is there.
    fn process_input(&mut self, ctx: &mut Ctx) {
        if !matches!(self.phase, Phase::Idle) || self.closing || self.inbuf.is_empty() {
            return;
        }
        match request::parse(&self.inbuf, ctx.cfg.max_header_size) {
            Parse::Partial => {
                if self.peer_closed {
                    self.abort(ctx);
                }
            }
            Parse::Invalid(status) => {
                self.inbuf = Vec::new();
                self.respond_error(ctx, None, status, false);
            }
            Parse::Complete(req, len) => {
                self.inbuf.drain(..len);
                self.start_request(ctx, req);
            }
        }
    }

    fn start_request(&mut self, ctx: &mut Ctx, req: Box<Request>) {
        crate::server::panic_if_test_target(&req.target);
        let keep_alive = req.keep_alive && !req.has_body && !ctx.stopping;
        if req.method() == Method::Other {
            return self.respond_error(ctx, Some(req), Status::MethodNotAllowed, keep_alive);
        }
        let target = match path::resolve(&req.target) {
            Ok(t) => t,
            Err(_) => return self.respond_error(ctx, Some(req), Status::BadRequest, false),
        };
        let lookup = Lookup {
            path: target.file,
            is_index: target.is_index,
            req,
        };
        if let Some(info) = ctx.cache.fresh(&lookup.path, ctx.now) {
            return self.respond_file(ctx, lookup.req, info);
        }
        self.open(ctx, lookup);
    }

    // ---- finding the file ----

    fn open(&mut self, ctx: &mut Ctx, lookup: Lookup) {
        let Ok(c_path) = CString::new(lookup.path.clone()) else {
            return self.respond_error(ctx, Some(lookup.req), Status::BadRequest, false);
        };
        let how = OpenHow::new()
            .flags((libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY) as u64)
            .resolve(libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS);
        let opening = Box::new(Opening {
            lookup,
            c_path,
            how,
        });
        let token = self.token(Op::Open);
        // SAFETY: `c_path` and `how` live in the boxed Opening, stored in `self.phase` below and
        // not replaced until the Open completion arrives (`op_in_flight` guards the phase).
        unsafe {
            ctx.ring
                .open_beneath(ctx.root, &opening.c_path, &opening.how, token)
        };
        self.phase = Phase::Opening(opening);
        self.op_in_flight = true;
    }

    fn on_open(&mut self, result: i32, ctx: &mut Ctx) {
        self.op_in_flight = false;
        let Phase::Opening(opening) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        let lookup = opening.lookup;
        if result < 0 {
            ctx.cache.remove(&lookup.path);
            return self.respond_error(ctx, Some(lookup.req), status_for_errno(-result), true);
        }
        // SAFETY: a non-negative Open result is a new descriptor that nothing else owns.
        let file = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(result) };
        if self.closing {
            return;
        }
        let mut stating = Box::new(Stating {
            lookup,
            file: Some(file),
            statx: unsafe_zeroed_statx(),
        });
        let fd = stating.file.as_ref().map_or(-1, |f| f.as_raw_fd());
        let token = self.token(Op::Statx);
        // SAFETY: the statx buffer lives in the boxed Stating, stored in `self.phase` below and
        // not replaced until the Statx completion arrives.
        unsafe { ctx.ring.statx_fd(fd, &mut stating.statx, token) };
        self.phase = Phase::Stating(stating);
        self.op_in_flight = true;
    }

    fn on_statx(&mut self, result: i32, ctx: &mut Ctx) {
        self.op_in_flight = false;
        let Phase::Stating(mut st) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        if self.closing {
            return;
        }
        let keep_alive = true;
        if result < 0 {
            return self.respond_error(
                ctx,
                Some(st.lookup.req),
                status_for_errno(-result),
                keep_alive,
            );
        }
        let mode = u32::from(st.statx.stx_mode);
        match mode & libc::S_IFMT {
            libc::S_IFREG if mode & 0o444 != 0 => {}
            libc::S_IFDIR if !st.lookup.is_index => {
                return self.redirect_to_dir(ctx, st.lookup.req);
            }
            libc::S_IFDIR => {
                return self.respond_error(ctx, Some(st.lookup.req), Status::NotFound, keep_alive);
            }
            // FIFOs, devices, sockets, and files nobody may read are not served.
            _ => {
                return self.respond_error(ctx, Some(st.lookup.req), Status::Forbidden, keep_alive);
            }
        }
        let id = Identity {
            ino: st.statx.stx_ino,
            size: st.statx.stx_size,
            mtime: st.statx.stx_mtime.tv_sec,
            mtime_nsec: st.statx.stx_mtime.tv_nsec,
        };
        let Some(file) = st.file.take() else { return };
        let mut info = FileInfo::new(file, id, &st.lookup.path, ctx.now);
        if id.size > SMALL_FILE {
            return self.file_ready(ctx, st.lookup, info);
        }
        if let Some(body) = ctx.cache.body_if_unchanged(&st.lookup.path, &id) {
            info.body = Some(body);
            return self.file_ready(ctx, st.lookup, info);
        }
        let loading = Box::new(Loading {
            lookup: st.lookup,
            info: Some(info),
            buf: vec![0; id.size as usize],
            filled: 0,
        });
        self.phase = Phase::Loading(loading);
        self.read_more(ctx);
    }

    /// Reads the rest of a small file into its buffer.
    fn read_more(&mut self, ctx: &mut Ctx) {
        let token = self.token(Op::Read);
        let Phase::Loading(ld) = &mut self.phase else {
            return;
        };
        let Some(info) = &ld.info else { return };
        if ld.filled == ld.buf.len() {
            return self.finish_loading(ctx);
        }
        let fd = info.file.as_raw_fd();
        let offset = ld.filled as u64;
        // SAFETY: the buffer lives in the boxed Loading held by `self.phase`, which is neither
        // replaced nor resized until the Read completion arrives.
        unsafe {
            ctx.ring
                .read_at(fd, &mut ld.buf[ld.filled..], offset, token)
        };
        self.op_in_flight = true;
    }

    fn on_read(&mut self, result: i32, ctx: &mut Ctx) {
        self.op_in_flight = false;
        if self.closing {
            self.phase = Phase::Idle;
            return;
        }
        let Phase::Loading(ld) = &mut self.phase else {
            return;
        };
        if result < 0 {
            let Phase::Loading(ld) = std::mem::replace(&mut self.phase, Phase::Idle) else {
                return;
            };
            return self.respond_error(
                ctx,
                Some(ld.lookup.req),
                Status::InternalServerError,
                false,
            );
        }
        if result == 0 {
            // The file shrank since statx: serve what it now holds, with a matching length.
            ld.buf.truncate(ld.filled);
        }
        ld.filled += result as usize;
        self.read_more(ctx);
    }

    fn finish_loading(&mut self, ctx: &mut Ctx) {
        let Phase::Loading(mut ld) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        let Some(mut info) = ld.info.take() else {
            return;
        };
        info.id.size = ld.buf.len() as u64;
        info.body = Some(Rc::from(std::mem::take(&mut ld.buf)));
        self.file_ready(ctx, ld.lookup, info);
    }

    fn file_ready(&mut self, ctx: &mut Ctx, lookup: Lookup, info: FileInfo) {
        let info = Rc::new(info);
        ctx.cache.insert(lookup.path, info.clone());
        self.respond_file(ctx, lookup.req, info);
    }

    // ---- answering ----

    fn respond_file(&mut self, ctx: &mut Ctx, req: Box<Request>, info: Rc<FileInfo>) {
        let keep_alive = req.keep_alive && !req.has_body && !ctx.stopping;
        let head_only = req.method() == Method::Head;
        let size = info.id.size;
        let mut buf = Vec::with_capacity(
            320 + if head_only {
                0
            } else {
                info.body.as_ref().map_or(0, |b| b.len())
            },
        );
        if not_modified(&req, &info) {
            file_head(&mut buf, ctx, Status::NotModified, &info, size);
            response::finish(&mut buf, keep_alive);
            let ex = Exchange {
                req: Some(req),
                status: Status::NotModified,
                keep_alive,
                body_bytes: 0,
            };
            return self.send(ctx, buf, None, ex);
        }
        let selection = match &req.range {
            Some(r) if req.method() == Method::Get && if_range_allows(&req, &info) => {
                range::select(r, size)
            }
            _ => Selection::Whole,
        };
        let (status, start, len) = match selection {
            Selection::Whole => (Status::Ok, 0, size),
            Selection::Partial { start, end } => (Status::PartialContent, start, end - start + 1),
            Selection::Unsatisfiable => {
                return self.respond_unsatisfiable(ctx, req, size, keep_alive);
            }
        };
        file_head(&mut buf, ctx, status, &info, len);
        if status == Status::PartialContent {
            response::content_range(&mut buf, start, start + len - 1, size);
        }
        response::finish(&mut buf, keep_alive);
        let body_bytes = if head_only { 0 } else { len };
        let ex = Exchange {
            req: Some(req),
            status,
            keep_alive,
            body_bytes,
        };
        if head_only || len == 0 {
            return self.send(ctx, buf, None, ex);
        }
        match &info.body {
            Some(body) => {
                buf.extend_from_slice(&body[start as usize..(start + len) as usize]);
                self.send(ctx, buf, None, ex);
            }
            None => self.send(
                ctx,
                buf,
                Some(BodyFile {
                    info,
                    offset: start,
                    remaining: len,
                }),
                ex,
            ),
        }
    }

    fn respond_unsatisfiable(
        &mut self,
        ctx: &mut Ctx,
        req: Box<Request>,
        size: u64,
        keep_alive: bool,
    ) {
        let mut buf = Vec::with_capacity(320);
        let body = b"<html><head><title>416 Range Not Satisfiable</title></head><body><h1>416 Range Not Satisfiable</h1></body></html>\n";
        response::start(&mut buf, Status::RangeNotSatisfiable, &ctx.date_line);
        response::header(&mut buf, "Content-Type", b"text/html");
        response::content_length(&mut buf, body.len() as u64);
        buf.extend_from_slice(b"Content-Range: bytes */");
        response::push_u64(&mut buf, size);
        buf.extend_from_slice(b"\r\n");
        response::finish(&mut buf, keep_alive);
        buf.extend_from_slice(body);
        let ex = Exchange {
            req: Some(req),
            status: Status::RangeNotSatisfiable,
            keep_alive,
            body_bytes: body.len() as u64,
        };
        self.send(ctx, buf, None, ex);
    }

    /// `GET /dir` → 301 to `/dir/`, keeping the query string.
    fn redirect_to_dir(&mut self, ctx: &mut Ctx, req: Box<Request>) {
        let keep_alive = req.keep_alive && !req.has_body && !ctx.stopping;
        let location = match path::resolve(&req.target) {
            Ok(t) => match t.query {
                Some(q) => format!("{}/?{}", t.raw_path, q),
                None => format!("{}/", t.raw_path),
            },
            Err(_) => return self.respond_error(ctx, Some(req), Status::BadRequest, false),
        };
        let status = Status::MovedPermanently;
        let body = format!(
            "<html><head><title>301 Moved Permanently</title></head><body><h1>301 Moved Permanently</h1><a href=\"{location}\">{location}</a></body></html>\n"
        );
        let mut buf = Vec::with_capacity(320 + body.len());
        response::start(&mut buf, status, &ctx.date_line);
        response::header(&mut buf, "Location", location.as_bytes());
        response::header(&mut buf, "Content-Type", b"text/html");
        response::content_length(&mut buf, body.len() as u64);
        response::finish(&mut buf, keep_alive);
        let head_only = req.method() == Method::Head;
        if !head_only {
            buf.extend_from_slice(body.as_bytes());
        }
        let body_bytes = if head_only { 0 } else { body.len() as u64 };
        self.send(
            ctx,
            buf,
            None,
            Exchange {
                req: Some(req),
                status,
                keep_alive,
                body_bytes,
            },
        );
    }

    /// An error page. `may_keep_alive` is false when the request itself broke the framing.
    fn respond_error(
        &mut self,
        ctx: &mut Ctx,
        req: Option<Box<Request>>,
        status: Status,
        may_keep_alive: bool,
    ) {
        let head_only = req.as_ref().is_some_and(|r| r.method() == Method::Head);
        let keep_alive = may_keep_alive
            && !status.closes_connection()
            && !ctx.stopping
            && req.as_ref().is_some_and(|r| r.keep_alive && !r.has_body);
        let mut buf = Vec::with_capacity(320);
        response::error(&mut buf, status, &ctx.date_line, keep_alive, head_only);
        let body_bytes = if head_only {
            0
        } else {
            (buf.len() - head_len(&buf)) as u64
        };
        self.send(
            ctx,
            buf,
            None,
            Exchange {
                req,
                status,
                keep_alive,
                body_bytes,
            },
        );
    }

    // ---- sending ----

    fn send(&mut self, ctx: &mut Ctx, buf: Vec<u8>, then: Option<BodyFile>, ex: Exchange) {
        self.phase = Phase::Sending(Box::new(Sending {
            buf,
            sent: 0,
            then,
            ex,
        }));
        self.deadline = ctx.now + ctx.cfg.send_timeout;
        self.send_more(ctx);
    }

    fn send_more(&mut self, ctx: &mut Ctx) {
        let token = self.token(Op::Send);
        let fd = self.fd();
        let Phase::Sending(s) = &self.phase else {
            return;
        };
        let more = s.then.is_some();
        // SAFETY: the buffer lives in the boxed Sending held by `self.phase`, which is neither
        // replaced nor resized until the Send completion arrives.
        unsafe { ctx.ring.send(fd, &s.buf[s.sent..], more, token) };
        self.op_in_flight = true;
    }

    fn on_send(&mut self, result: i32, ctx: &mut Ctx) {
        self.op_in_flight = false;
        if self.closing {
            self.phase = Phase::Idle;
            return;
        }
        if result < 0 {
            return self.abort(ctx);
        }
        let Phase::Sending(s) = &mut self.phase else {
            return;
        };
        s.sent += result as usize;
        self.deadline = ctx.now + ctx.cfg.send_timeout;
        if s.sent < s.buf.len() {
            return self.send_more(ctx);
        }
        let Phase::Sending(s) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        let Sending { then, ex, .. } = *s;
        match then {
            None => self.response_done(ctx, ex),
            Some(body) => self.start_splice(ctx, body, ex),
        }
    }

    fn start_splice(&mut self, ctx: &mut Ctx, body: BodyFile, ex: Exchange) {
        let Some(pipe) = ctx.pipes.take() else {
            crate::log_warn!("cannot create a pipe for a file body; closing the connection");
            return self.abort_with(ctx, ex);
        };
        self.phase = Phase::Splicing(Box::new(Splicing {
            body,
            pipe: Some(pipe),
            in_pipe: 0,
            ex,
        }));
        self.splice_step(ctx);
    }

    /// Next splice: drain the pipe into the socket first, then refill it from the file.
    fn splice_step(&mut self, ctx: &mut Ctx) {
        let socket = self.fd();
        let (tok_in, tok_out) = (self.token(Op::SpliceIn), self.token(Op::SpliceOut));
        let Phase::Splicing(sp) = &mut self.phase else {
            return;
        };
        let Some(pipe) = &sp.pipe else { return };
        if sp.in_pipe > 0 {
            ctx.ring.splice(
                pipe.read.as_raw_fd(),
                -1,
                socket,
                sp.in_pipe as u32,
                tok_out,
            );
        } else if sp.body.remaining > 0 {
            let len = sp.body.remaining.min(pipe.capacity as u64) as u32;
            ctx.ring.splice(
                sp.body.info.file.as_raw_fd(),
                sp.body.offset as i64,
                pipe.write.as_raw_fd(),
                len,
                tok_in,
            );
        } else {
            let Phase::Splicing(mut sp) = std::mem::replace(&mut self.phase, Phase::Idle) else {
                return;
            };
            if let Some(pipe) = sp.pipe.take() {
                ctx.pipes.give_back(pipe);
            }
            return self.response_done(ctx, sp.ex);
        }
        self.op_in_flight = true;
    }

    fn on_splice_in(&mut self, result: i32, ctx: &mut Ctx) {
        self.op_in_flight = false;
        if self.closing {
            self.phase = Phase::Idle;
            return;
        }
        let Phase::Splicing(sp) = &mut self.phase else {
            return;
        };
        if result <= 0 {
            // The file shrank (0) or failed: the promised length cannot be kept, so close.
            if result == 0 {
                crate::log_warn!("file shrank while being sent; closing the connection");
            }
            return self.abort(ctx);
        }
        sp.body.offset += result as u64;
        sp.body.remaining -= (result as u64).min(sp.body.remaining);
        sp.in_pipe += result as usize;
        self.splice_step(ctx);
    }

    fn on_splice_out(&mut self, result: i32, ctx: &mut Ctx) {
        self.op_in_flight = false;
        if self.closing {
            self.phase = Phase::Idle;
            return;
        }
        if result == -libc::EAGAIN {
            // The socket is full: wait for room instead of parking a kernel thread on it.
            ctx.ring.poll_writable(self.fd(), self.token(Op::PollOut));
            self.op_in_flight = true;
            return;
        }
        let Phase::Splicing(sp) = &mut self.phase else {
            return;
        };
        if result <= 0 {
            return self.abort(ctx);
        }
        sp.in_pipe -= (result as usize).min(sp.in_pipe);
        self.deadline = ctx.now + ctx.cfg.send_timeout;
        self.splice_step(ctx);
    }

    fn on_writable(&mut self, result: i32, ctx: &mut Ctx) {
        self.op_in_flight = false;
        if self.closing || result < 0 {
            self.phase = Phase::Idle;
            return self.abort(ctx);
        }
        self.splice_step(ctx);
    }

    /// A response is fully handed to the kernel: log it, then read the next request or close.
    fn response_done(&mut self, ctx: &mut Ctx, ex: Exchange) {
        self.log_exchange(ctx, &ex);
        if !ex.keep_alive || self.peer_closed || ctx.stopping {
            return self.close_gracefully(ctx);
        }
        self.phase = Phase::Idle;
        if self.inbuf.is_empty() {
            self.inbuf = Vec::new();
            self.between_requests = true;
            self.deadline = ctx.now + ctx.cfg.keepalive_timeout;
        } else {
            self.deadline = ctx.now + ctx.cfg.header_timeout;
        }
        self.process_input(ctx);
    }

    fn log_exchange(&self, ctx: &mut Ctx, ex: &Exchange) {
        if let Some(log) = &mut ctx.log {
            log.record(
                self.peer,
                ex.req.as_deref(),
                ex.status.code(),
                ex.body_bytes,
                ctx.unix_now,
            );
        }
    }

    // ---- closing ----

    /// Sends FIN after the last response and waits (briefly) for the client's, so unread
    /// request bytes do not make our close a reset that destroys the response.
    fn close_gracefully(&mut self, ctx: &mut Ctx) {
        if self.peer_closed {
            return self.abort(ctx);
        }
        sys::shutdown(self.fd(), libc::SHUT_WR);
        self.phase = Phase::Lingering;
        self.inbuf = Vec::new();
        self.deadline = ctx.now + LINGER;
        self.arm_recv(ctx);
    }

    /// Tears the connection down now: every operation on the socket completes promptly, and the
    /// worker frees the connection once the last completion has arrived.
    pub fn abort(&mut self, ctx: &mut Ctx) {
        if self.closing {
            return;
        }
        self.closing = true;
        if let Phase::Sending(_) | Phase::Splicing(_) = self.phase {
            if let Some(ex) = self.take_exchange() {
                self.log_exchange(ctx, &ex);
            }
        }
        self.inbuf = Vec::new();
        sys::shutdown(self.fd(), libc::SHUT_RDWR);
        if self.recv_armed || self.op_in_flight {
            ctx.ring.cancel_fd(
                self.fd(),
                Token::conn(self.key, self.generation, Op::Cancel),
            );
        }
    }

    fn abort_with(&mut self, ctx: &mut Ctx, ex: Exchange) {
        self.log_exchange(ctx, &ex);
        self.abort(ctx);
    }

    /// The exchange of an unfinished response (for the log); a pipe that may hold bytes is dropped.
    fn take_exchange(&mut self) -> Option<Exchange> {
        match &mut self.phase {
            Phase::Sending(s) => Some(std::mem::replace(&mut s.ex, Exchange::placeholder())),
            Phase::Splicing(sp) => Some(std::mem::replace(&mut sp.ex, Exchange::placeholder())),
            _ => None,
        }
    }

    /// The deadline passed: 408 for a half-sent head, otherwise just close.
    pub fn on_timeout(&mut self, ctx: &mut Ctx) {
        if matches!(self.phase, Phase::Idle) && !self.inbuf.is_empty() && !self.op_in_flight {
            self.inbuf = Vec::new();
            self.respond_error(ctx, None, Status::RequestTimeout, false);
            // The client had its chance; if it does not read the 408 either, drop it.
            self.deadline = ctx.now + LINGER;
            return;
        }
        self.abort(ctx);
    }

    /// Graceful stop: idle connections close now; busy ones close after their response.
    pub fn on_stop(&mut self, ctx: &mut Ctx) {
        if matches!(self.phase, Phase::Idle) {
            self.abort(ctx);
        }
    }
}

impl Exchange {
    fn placeholder() -> Exchange {
        Exchange {
            req: None,
            status: Status::Ok,
            keep_alive: false,
            body_bytes: 0,
        }
    }
}

fn unsafe_zeroed_statx() -> libc::statx {
    // SAFETY: statx is plain old data for which all-zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

fn head_len(buf: &[u8]) -> usize {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |p| p + 4)
}

/// The errno → status table (as nginx: missing 404, permission 403, exhaustion 503).
fn status_for_errno(errno: i32) -> Status {
    match errno {
        libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG | libc::ENXIO | libc::ENODEV => {
            Status::NotFound
        }
        libc::EACCES | libc::EPERM | libc::ELOOP | libc::EXDEV => Status::Forbidden,
        libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EAGAIN => Status::ServiceUnavailable,
        _ => Status::InternalServerError,
    }
}

/// Headers every 200/206/304 for a file carries.
fn file_head(buf: &mut Vec<u8>, ctx: &Ctx, status: Status, info: &FileInfo, len: u64) {
    response::start(buf, status, &ctx.date_line);
    response::header(buf, "Content-Type", info.content_type.as_bytes());
    response::content_length(buf, len);
    response::header(buf, "Last-Modified", info.last_modified.as_bytes());
    response::header(buf, "ETag", info.etag.as_bytes());
    response::header(buf, "Accept-Ranges", b"bytes");
    if let Some(cc) = &ctx.cfg.cache_control {
        response::header(buf, "Cache-Control", cc.as_bytes());
    }
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// RFC 9110 §13.1.1–13.1.3: If-None-Match (weak comparison) wins over If-Modified-Since.
fn not_modified(req: &Request, info: &FileInfo) -> bool {
    if let Some(inm) = &req.if_none_match {
        return inm
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || opaque(t) == opaque(&info.etag));
    }
    req.if_modified_since
        .is_some_and(|since| info.id.mtime <= since)
}

/// RFC 9110 §13.1.5: a Range applies only if If-Range (strong ETag or exact date) still holds.
fn if_range_allows(req: &Request, info: &FileInfo) -> bool {
    match &req.if_range {
        None => true,
        Some(v) if v.starts_with('"') => *v == info.etag,
        Some(v) if v.starts_with("W/") => false,
        Some(v) => crate::http::date::parse_imf_fixdate(v) == Some(info.id.mtime),
    }
}
