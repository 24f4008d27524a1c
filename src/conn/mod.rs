//! One client connection: a state machine driven by ring completions.
//!
//! `Phase` says what the connection is doing and owns exactly the memory its one in-flight
//! operation points at (path, statx buffer, read buffer, send buffer). A multishot receive runs
//! beside it into the ring's provided buffers. Each completion handler is a transition: it
//! consumes a result, updates the phase and submits the next operation.
//!
//! Memory rule: a phase that has an operation in flight (`ops_in_flight`) is never replaced or
//! dropped until that operation's completion arrives, and a connection is only freed once it has
//! nothing in flight at all (`is_finished`). This module must never block and never send a
//! response whose framing it cannot keep: if a file shrinks mid-body, the connection is closed.

mod lookup;
mod respond;

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::cache::FileInfo;
use crate::http::Status;
use crate::http::request::{self, Method, Parse, Request};
use crate::metrics::CloseReason;
use crate::path;

use crate::context::Ctx;
use crate::ring::{Completion, Outgoing, SharedBytes, SpliceLeg};
use crate::sys::{self, Pipe};
use crate::token::{Op, Token};
use lookup::{Loading, Lookup, Opening, Purpose, Stating};

/// How long a closing connection waits for the client's FIN after ours, so that a client still
/// sending does not turn our close into a reset that destroys the response it has not read.
const LINGER: Duration = Duration::from_secs(2);
/// Buffered request bytes above which receiving pauses until requests are answered (the rest
/// waits in the socket, and TCP flow control slows the client down).
const RECV_HIGH_WATER: usize = 64 * 1024;
/// Bytes that may still land after a pause is requested; beyond this a client is abusive.
const RECV_HARD_LIMIT: usize = 1024 * 1024;

/// Receive-buffer capacity an idle keep-alive connection may keep for its next request.
const KEEP_INBUF: usize = 512;

/// A head up to the configured limit must always fit before receiving pauses.
fn high_water(ctx: &Ctx) -> usize {
    RECV_HIGH_WATER.max(ctx.cfg.max_header_size + 1)
}

/// What the worker must do for a connection after one of its completions.
#[derive(Debug, PartialEq, Eq)]
pub enum Followup {
    None,
    /// The receive ended for lack of provided buffers: re-arm it once this batch of
    /// completions has returned buffers to the ring.
    RearmRecvLater,
}

pub struct Conn {
    socket: OwnedFd,
    key: usize,
    generation: u32,
    phase: Phase,
    /// A multishot receive is armed (its final completion has not arrived).
    recv_armed: bool,
    /// The armed receive is being cancelled because `inbuf` is full.
    recv_pausing: bool,
    /// A complete request has arrived; receives are multishot from then on.
    seen_request: bool,
    /// Operations of the phase in flight: one, or two for a linked file → pipe → socket splice.
    ops_in_flight: u8,
    /// Received bytes not yet consumed as requests.
    inbuf: Vec<u8>,
    /// The client sent FIN: nothing more will arrive.
    peer_closed: bool,
    /// The connection is being torn down; it is freed once nothing is in flight.
    closing: bool,
    /// Idle between requests: the keep-alive timeout runs, not the header timeout.
    between_requests: bool,
    pub deadline: Instant,
    /// When the current request's head was complete (for the duration histogram).
    request_started: Instant,
    peer: Option<std::net::IpAddr>,
    /// Accepted on the `--metrics` listener: only `/metrics` is served here.
    serves_metrics: bool,
    close_reason: CloseReason,
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
    /// Waiting for the listing thread to build a directory listing (`--autoindex`); no ring
    /// operation is in flight.
    Listing(Box<Request>),
    /// Our FIN is sent; draining input until the client closes too.
    Lingering,
}

/// The request being answered, kept until the access log line is written.
struct Exchange {
    req: Option<Box<Request>>,
    status: Status,
    keep_alive: bool,
    body_bytes: u64,
    /// Further pieces of the response after the current one (multipart ranges: each part's
    /// head and body, then the closing delimiter); empty, and unallocated, otherwise.
    rest: VecDeque<(Vec<u8>, Body)>,
}

/// A head (and a body from the cache) going out; the bytes themselves are with the ring while
/// a send is in flight (`ring::Outgoing`).
struct Sending {
    /// A file body to splice once the head is sent.
    then: Option<BodyFile>,
    ex: Exchange,
}

/// A slice of a cached file's bytes.
type CachedBody = SharedBytes;

/// What follows a response head.
enum Body {
    None,
    Cached(CachedBody),
    File(BodyFile),
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
    /// The socket was full: a writability poll is in flight and the send timeout runs.
    stall: Option<Stall>,
}

/// Waiting for the client to make room in the socket.
struct Stall {
    /// Bytes the client had not acknowledged when the socket was found full (to tell a slow
    /// reader, which keeps acknowledging, from a stalled one).
    unacked: Option<u32>,
}

impl Conn {
    pub fn new(socket: OwnedFd, key: usize, generation: u32, serves_metrics: bool, ctx: &mut Ctx) -> Conn {
        let peer = if ctx.log.is_some() { sys::peer_ip(socket.as_raw_fd()) } else { None };
        Conn {
            socket,
            key,
            generation,
            phase: Phase::Idle,
            recv_armed: false,
            recv_pausing: false,
            seen_request: false,
            ops_in_flight: 0,
            inbuf: Vec::new(),
            peer_closed: false,
            closing: false,
            between_requests: false,
            deadline: ctx.now + ctx.cfg.header_timeout,
            request_started: ctx.now,
            peer,
            serves_metrics,
            close_reason: CloseReason::Client,
        }
    }

    /// The socket, for the worker to close once the connection `is_finished`.
    pub fn into_socket(self) -> OwnedFd {
        self.socket
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
        self.closing && !self.recv_armed && self.ops_in_flight == 0
    }

    /// Starts receiving: after accept, when a multishot receive ends, and when a paused
    /// connection has worked through its buffered requests.
    pub fn arm_recv(&mut self, ctx: &mut Ctx) {
        if !self.recv_armed && !self.closing && !self.peer_closed && self.inbuf.len() < high_water(ctx) {
            self.recv_armed = true;
            self.recv_pausing = false;
            if self.seen_request {
                ctx.ring.recv_multi(self.fd(), self.token(Op::Recv));
            } else {
                // Until a request shows the client wants keep-alive, one receive is enough: a
                // one-request connection then has nothing left to cancel when it closes.
                ctx.ring.recv_once(self.fd(), self.token(Op::Recv));
            }
        }
    }

    /// Too many unanswered bytes: stop the multishot receive until they are answered.
    fn pause_recv(&mut self, ctx: &mut Ctx) {
        if self.recv_armed && !self.recv_pausing {
            self.recv_pausing = true;
            ctx.ring.cancel_op(self.token(Op::Recv), self.token(Op::Cancel));
        }
    }

    /// Routes a completion to the transition for its operation. The receive runs beside the
    /// phase and cancellations own nothing; every other operation belongs to the phase, and
    /// once the connection is closing its result is only released, never acted on, so nothing
    /// new is submitted for a connection being torn down.
    /// What dropped with a closing connection's completion (a descriptor an open created, a
    /// buffer the ring handed back) is simply released with the `Completion`.
    pub fn on_completion(&mut self, op: Op, c: &mut Completion, ctx: &mut Ctx) -> Followup {
        match op {
            Op::Recv => return self.on_recv(c, ctx),
            // Cancellations own nothing; a test delay's own completion means nothing.
            Op::Cancel | Op::Delay => return Followup::None,
            _ => {}
        }
        self.ops_in_flight -= 1;
        if self.closing {
            return Followup::None;
        }
        let result = c.result;
        match op {
            Op::Open => self.on_open(result, c.take_fd(), ctx),
            Op::Statx => self.on_statx(result, c.statx().copied(), ctx),
            Op::Read => self.on_read(result, c.take_buffer(), ctx),
            Op::Send => self.on_send(result, c.take_outgoing(), ctx),
            Op::SpliceIn => self.on_splice_in(result, ctx),
            Op::SpliceOut => self.on_splice_out(result, ctx),
            Op::PollOut => self.on_writable(result, ctx),
            Op::Shutdown => {}
            other => unreachable!("{other:?} is not a connection's operation"),
        }
        Followup::None
    }

    // ---- receiving and parsing ----

    fn on_recv(&mut self, c: &Completion, ctx: &mut Ctx) -> Followup {
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
            e if -e == libc::ENOBUFS && !self.recv_armed => return Followup::RearmRecvLater,
            e if -e == libc::ENOBUFS => {}
            // Paused; resume at once if the requests were answered while the cancel was on its way.
            e if -e == libc::ECANCELED && self.recv_pausing && !self.closing => self.arm_recv(ctx),
            _ => self.abort(ctx),
        }
        if !self.recv_armed && c.result > 0 && matches!(self.phase, Phase::Idle | Phase::Lingering) {
            self.arm_recv(ctx);
        }
        Followup::None
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
        } else if self.inbuf.len() > high_water(ctx) + RECV_HARD_LIMIT {
            self.abort(ctx);
        } else if self.inbuf.len() >= high_water(ctx) {
            self.pause_recv(ctx);
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
                self.request_started = ctx.now;
                self.seen_request = true;
                if req.keep_alive {
                    self.arm_recv(ctx);
                }
                self.start_request(ctx, req);
            }
        }
    }

    fn start_request(&mut self, ctx: &mut Ctx, req: Box<Request>) {
        crate::test_hooks::panic_if_requested(&req.target);
        let keep_alive = req.keep_alive && !req.has_body && !ctx.stopping;
        if self.serves_metrics {
            return self.respond_metrics(ctx, req, keep_alive);
        }
        if req.method() == Method::Other {
            return self.respond_error(ctx, Some(req), Status::MethodNotAllowed, keep_alive);
        }
        let (file, is_index) = match path::resolve(&req.target) {
            Ok(t) => (t.file, t.is_index),
            Err(_) => return self.respond_error(ctx, Some(req), Status::BadRequest, false),
        };
        if ctx.cfg.hide_dotfiles && path::is_hidden(&file) {
            // 404, not 403: whether such a file exists is nobody's business.
            return self.respond_error(ctx, Some(req), Status::NotFound, keep_alive);
        }
        self.look_up(ctx, req, file, is_index, Purpose::Request);
    }

    /// Answers from the cache, or starts resolving `file` on disk.
    fn look_up(&mut self, ctx: &mut Ctx, req: Box<Request>, file: Vec<u8>, is_index: bool, purpose: Purpose) {
        let cached = ctx.cache.fresh(&file, ctx.now);
        ctx.metrics.cache_lookup(cached.is_some());
        match cached {
            Some(entry) => self.respond_entry(ctx, req, is_index, entry, purpose),
            None => self.open(ctx, Lookup::new(req, file, is_index, purpose)),
        }
    }

    // ---- sending ----

    fn send(&mut self, ctx: &mut Ctx, head: Vec<u8>, body: Body, ex: Exchange) {
        let (cached, then) = match body {
            Body::None => (None, None),
            Body::Cached(c) => (Some(c), None),
            Body::File(f) => (None, Some(f)),
        };
        self.phase = Phase::Sending(Box::new(Sending { then, ex }));
        self.deadline = ctx.now + ctx.cfg.send_timeout;
        self.send_rest(ctx, Outgoing { head, body: cached, sent: 0 });
    }

    /// Hands what is left of `out` to the ring, which owns it until the send completes.
    fn send_rest(&mut self, ctx: &mut Ctx, out: Outgoing) {
        let Phase::Sending(s) = &self.phase else { unreachable!("sending outside the sending phase") };
        let more = s.then.is_some() || !s.ex.rest.is_empty();
        ctx.ring.send(self.fd(), out, more, self.token(Op::Send));
        self.ops_in_flight += 1;
    }

    fn on_send(&mut self, result: i32, out: Option<Outgoing>, ctx: &mut Ctx) {
        let Some(mut out) = out else { unreachable!("a send completion without its buffers") };
        if result < 0 {
            return self.abort(ctx);
        }
        out.sent += result as usize;
        self.deadline = ctx.now + ctx.cfg.send_timeout;
        if out.sent < out.total() {
            return self.send_rest(ctx, out);
        }
        ctx.recycle_head_buffer(out.head);
        let Phase::Sending(s) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            unreachable!("a send completed outside the sending phase");
        };
        let Sending { then, ex } = *s;
        match then {
            None => self.next_piece(ctx, ex),
            Some(body) => self.start_splice(ctx, body, ex),
        }
    }

    fn start_splice(&mut self, ctx: &mut Ctx, body: BodyFile, ex: Exchange) {
        let Some(pipe) = ctx.pipes.take() else {
            crate::log_warn!("cannot create a pipe for a file body; closing the connection");
            self.close_reason = CloseReason::Error;
            return self.abort_with(ctx, ex);
        };
        self.phase =
            Phase::Splicing(Box::new(Splicing { body, pipe: Some(pipe), in_pipe: 0, ex, stall: None }));
        self.splice_step(ctx);
    }

    /// Next splice: drain the pipe into the socket first; otherwise refill it from the file with
    /// the socket splice linked behind, so a full chunk moves in one round trip.
    fn splice_step(&mut self, ctx: &mut Ctx) {
        let socket = self.fd();
        let (tok_in, tok_out) = (self.token(Op::SpliceIn), self.token(Op::SpliceOut));
        let Phase::Splicing(sp) = &mut self.phase else { return };
        let Some(pipe) = &sp.pipe else { return };
        let drain = |len: u32| SpliceLeg {
            from: pipe.read.as_raw_fd(),
            from_offset: -1,
            to: socket,
            len,
            token: tok_out,
        };
        if sp.in_pipe > 0 {
            ctx.ring.splice(drain(sp.in_pipe as u32));
            self.ops_in_flight += 1;
        } else if sp.body.remaining > 0 {
            let len = sp.body.remaining.min(pipe.capacity as u64) as u32;
            let fill = SpliceLeg {
                from: sp.body.info.file.as_raw_fd(),
                from_offset: sp.body.offset as i64,
                to: pipe.write.as_raw_fd(),
                len,
                token: tok_in,
            };
            // The socket splice runs only if the file splice filled the pipe with all `len`
            // bytes; otherwise it completes with ECANCELED and what did arrive is sent alone.
            ctx.ring.splice_linked(fill, drain(len));
            self.ops_in_flight += 2;
        } else {
            let Phase::Splicing(mut sp) = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
            if let Some(pipe) = sp.pipe.take() {
                ctx.pipes.give_back(pipe);
            }
            self.next_piece(ctx, sp.ex);
        }
    }

    fn on_splice_in(&mut self, result: i32, ctx: &mut Ctx) {
        let Phase::Splicing(sp) = &mut self.phase else { return };
        if result <= 0 {
            // The file shrank (0) or failed: the promised length cannot be kept, so close.
            if result == 0 {
                crate::log_warn!("file shrank while being sent; closing the connection");
            }
            return self.abort_for(CloseReason::Error, ctx);
        }
        sp.body.offset += result as u64;
        sp.body.remaining -= (result as u64).min(sp.body.remaining);
        sp.in_pipe += result as usize;
        // The linked socket splice, or its cancellation, follows.
    }

    fn on_splice_out(&mut self, result: i32, ctx: &mut Ctx) {
        let fd = self.fd();
        let Phase::Splicing(sp) = &mut self.phase else { return };
        match result {
            // The file splice came up short and broke the link: send what it moved.
            r if r == -libc::ECANCELED => self.splice_step(ctx),
            r if r == -libc::EAGAIN => {
                // The socket is full: wait for room instead of parking a kernel thread on it,
                // noting how much the client still has to take, to tell slow from stalled.
                // Only now does the send timeout run: until here the server was working.
                sp.stall = Some(Stall { unacked: sys::unacked_bytes(fd) });
                self.deadline = ctx.now + ctx.cfg.send_timeout;
                ctx.ring.poll_writable(fd, self.token(Op::PollOut));
                self.ops_in_flight += 1;
            }
            r if r <= 0 => self.abort(ctx),
            sent => {
                sp.in_pipe -= (sent as usize).min(sp.in_pipe);
                self.splice_step(ctx);
            }
        }
    }

    fn on_writable(&mut self, result: i32, ctx: &mut Ctx) {
        if result < 0 {
            return self.abort(ctx);
        }
        if let Phase::Splicing(sp) = &mut self.phase {
            sp.stall = None;
        }
        self.splice_step(ctx);
    }

    /// Sends the next piece of a response in several pieces, or finishes it.
    fn next_piece(&mut self, ctx: &mut Ctx, mut ex: Exchange) {
        match ex.rest.pop_front() {
            Some((bytes, body)) => self.send(ctx, bytes, body, ex),
            None => self.response_done(ctx, ex),
        }
    }

    /// A response is fully handed to the kernel: log it, then read the next request or close.
    fn response_done(&mut self, ctx: &mut Ctx, ex: Exchange) {
        self.log_exchange(ctx, &ex);
        ctx.metrics.response(
            ex.status,
            ex.body_bytes,
            ctx.now.saturating_duration_since(self.request_started),
        );
        if !ex.keep_alive || ctx.stopping {
            return self.close_after(ctx, &ex);
        }
        if self.peer_closed && self.inbuf.is_empty() {
            // The client's FIN came after its last request, which is now answered.
            return self.abort(ctx);
        }
        // Requests the client sent before a FIN are still answered (`process_input` closes once
        // only a partial head is left).
        self.phase = Phase::Idle;
        if self.inbuf.is_empty() {
            // A small buffer is kept for the next request; a large one is not held while idle.
            if self.inbuf.capacity() > KEEP_INBUF {
                self.inbuf = Vec::new();
            }
            self.between_requests = true;
            self.deadline = ctx.now + ctx.cfg.keepalive_timeout;
        } else {
            self.deadline = ctx.now + ctx.cfg.header_timeout;
        }
        self.arm_recv(ctx);
        self.process_input(ctx);
    }

    fn log_exchange(&self, ctx: &mut Ctx, ex: &Exchange) {
        if let Some(log) = &mut ctx.log {
            log.record(self.peer, ex.req.as_deref(), ex.status.code(), ex.body_bytes, ctx.unix_now);
        }
    }

    // ---- closing ----

    /// Ends the connection after its last response. Closing a socket that has unread input,
    /// or that receives any later, sends a reset, which destroys whatever of the response the
    /// client has not yet received. So the close lingers (see `linger`) unless the client has
    /// already closed its side, or has sent nothing more and acknowledged the whole response
    /// (then nothing is left to destroy: the common case of a small response on a fast link).
    fn close_after(&mut self, ctx: &mut Ctx, ex: &Exchange) {
        let must_linger = !self.peer_closed
            && (!self.inbuf.is_empty()
                || ctx.stopping
                || ex.status.closes_connection()
                || ex.req.as_ref().is_none_or(|r| r.has_body)
                || sys::has_unread_input(self.fd())
                || sys::unacked_bytes(self.fd()).is_none_or(|n| n > 0));
        if must_linger { self.linger(ctx) } else { self.abort(ctx) }
    }

    /// Sends FIN after the last response and waits (briefly) for the client's, so request bytes
    /// still arriving do not turn our close into a reset that destroys the unread response.
    fn linger(&mut self, ctx: &mut Ctx) {
        ctx.ring.shutdown_write(self.fd(), self.token(Op::Shutdown));
        self.ops_in_flight += 1;
        self.phase = Phase::Lingering;
        self.inbuf = Vec::new();
        self.deadline = ctx.now + LINGER;
        self.arm_recv(ctx);
    }

    /// `abort`, recording why (unless the connection is already closing for another reason).
    pub fn abort_for(&mut self, reason: CloseReason, ctx: &mut Ctx) {
        if !self.closing {
            self.close_reason = reason;
        }
        self.abort(ctx);
    }

    /// Why the connection ended, for the metrics.
    pub fn close_reason(&self) -> CloseReason {
        self.close_reason
    }

    /// Tears the connection down now: operations in flight are cancelled, and the worker closes
    /// the socket once the last completion has arrived (`is_finished`).
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
        if self.recv_armed || self.ops_in_flight > 0 {
            ctx.ring.cancel_fd(self.fd(), self.token(Op::Cancel));
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

    /// The deadline passed: 408 for a half-sent head, otherwise just close. Client deadlines
    /// apply only while waiting for the client: not while the server itself opens, reads or
    /// splices the file (that work is bounded by the server, and its next wait on the client
    /// sets a fresh deadline).
    pub fn on_timeout(&mut self, ctx: &mut Ctx) {
        if self.server_is_working() || self.client_took_bytes() {
            self.deadline = ctx.now + ctx.cfg.send_timeout;
            return;
        }
        if matches!(self.phase, Phase::Idle) && !self.inbuf.is_empty() && self.ops_in_flight == 0 {
            self.inbuf = Vec::new();
            self.respond_error(ctx, None, Status::RequestTimeout, false);
            // The client had its chance; if it does not read the 408 either, drop it.
            self.deadline = ctx.now + LINGER;
            self.close_reason = CloseReason::HeaderTimeout;
            return;
        }
        let reason = match self.phase {
            Phase::Idle if self.between_requests => CloseReason::KeepaliveTimeout,
            Phase::Idle => CloseReason::HeaderTimeout,
            Phase::Sending(_) | Phase::Splicing(_) => CloseReason::SendTimeout,
            // A lingering close that ran out, or the 408 path's close: as decided before.
            _ => self.close_reason,
        };
        self.abort_for(reason, ctx);
    }

    /// While waiting for room in a full socket: has the client acknowledged bytes since the
    /// last look? (Writability only returns once a third of the buffer is free, which a slow
    /// but live reader can take longer than the send timeout to free.)
    fn client_took_bytes(&mut self) -> bool {
        let fd = self.fd();
        let Phase::Splicing(sp) = &mut self.phase else { return false };
        let Some(stall) = &mut sp.stall else { return false };
        let Some(mark) = stall.unacked else { return false };
        let now = sys::unacked_bytes(fd);
        stall.unacked = now;
        !self.closing && now.is_some_and(|n| n < mark)
    }

    /// The server, not the client, is what the connection waits for.
    fn server_is_working(&self) -> bool {
        match &self.phase {
            Phase::Opening(_) | Phase::Stating(_) | Phase::Loading(_) | Phase::Listing(_) => !self.closing,
            Phase::Splicing(sp) => sp.stall.is_none() && !self.closing,
            Phase::Idle | Phase::Sending(_) | Phase::Lingering => false,
        }
    }

    /// Graceful stop: idle connections close now; busy ones close after their response.
    pub fn on_stop(&mut self, ctx: &mut Ctx) {
        if matches!(self.phase, Phase::Idle) {
            self.abort_for(CloseReason::Shutdown, ctx);
        }
    }
}

impl Exchange {
    fn new(req: Option<Box<Request>>, status: Status, keep_alive: bool, body_bytes: u64) -> Exchange {
        Exchange { req, status, keep_alive, body_bytes, rest: VecDeque::new() }
    }

    fn placeholder() -> Exchange {
        Exchange::new(None, Status::Ok, false, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle keep-alive connection costs its slab entry and nothing else in user space; keep
    /// the entry small (the phase data of busy states is boxed for this reason).
    #[test]
    fn idle_connection_state_stays_small() {
        assert!(std::mem::size_of::<Conn>() <= 128, "Conn is {} bytes", std::mem::size_of::<Conn>());
    }
}
