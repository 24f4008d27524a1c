//! One client connection: a state machine driven by ring completions.
//!
//! A connection is a `Phase` (what it is doing, owning exactly what that needs) and, beside it,
//! a `Recv` (the receive into the ring's provided buffers). The ring owns the memory of every
//! operation in flight and hands it back with the completion (`ring::Completion`), so a phase
//! can never free memory the kernel uses; a phase that holds a descriptor an operation in
//! flight uses is kept (inside `Closing`) until that operation completes. `on_completion` does
//! the bookkeeping once (operations in flight, the closing check) and calls one transition.
//!
//! | phase | waits for | next |
//! |---|---|---|
//! | `Waiting(Head)` | request bytes (header timeout) | `Opening`, `Sending` (from the cache, or an error), `Closing` |
//! | `Waiting(NextRequest)` | a keep-alive client's next request (keep-alive timeout) | `Waiting(Head)` on its first bytes, `Closing` |
//! | `Opening` | `openat2` | `Stating`, `Opening` (next sibling), `Sending`, `Listing` |
//! | `Stating` | `statx` | `Loading`, `Opening` (next sibling), `Sending` |
//! | `Loading` | `read` of a small file | `Opening` (next sibling), `Sending` |
//! | `Listing` | the listing thread (`--autoindex`) | `Sending`, `Opening` (fallback) |
//! | `Sending` | `send` of a head and cached body (send timeout); a response that ends the connection and needs no lingering close is sent and closed at once, when the socket takes it whole | `Splicing`, `Sending` (next multipart piece), `Waiting`, `Lingering`, `Closing` |
//! | `Splicing` | file → pipe → socket splices; `poll` for room (send timeout only then) | `Sending` (next piece), `Waiting`, `Lingering`, `Closing` |
//! | `Lingering` | the client's FIN after ours (2 s) | `Closing` |
//! | `Closing` | the last completions in flight | freed by the worker (`is_finished`) |
//!
//! | `Recv` | meaning | next |
//! |---|---|---|
//! | `Off` | none in flight (single-shot until a request arrived, multishot after) | `Armed` |
//! | `Armed` | in flight | `Off` (ended), `Pausing`, `Ended` (FIN) |
//! | `Pausing` | being cancelled: 64 KiB of requests wait unanswered | `Off`, then `Armed` once answered |
//! | `Ended` | the client sent FIN: requests already received are answered, nothing is re-armed | — |
//!
//! This module must never block and never send a response whose framing it cannot keep: if a
//! file shrinks mid-body, the connection is closed.

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
/// Response bodies above this always get a lingering close: they can still be in the socket,
/// unacknowledged, long after the last byte is handed over. A smaller one is closed at once
/// unless input is already waiting (nginx's `lingering_close on` makes the same trade): only a
/// client that sends more bytes within the response's last round trip can still lose its tail.
const LINGER_ABOVE: u64 = 64 * 1024;
/// Buffered request bytes above which receiving pauses until requests are answered (the rest
/// waits in the socket, and TCP flow control slows the client down).
const RECV_HIGH_WATER: usize = 64 * 1024;
/// Bytes that may still land after a pause is requested; beyond this a client is abusive.
const RECV_HARD_LIMIT: usize = 1024 * 1024;

/// Bytes of a body `sendfile`d from the worker thread in one go before it turns to its other
/// connections (nginx's `sendfile_max_chunk` makes the same bound).
const SENDFILE_CHUNK: u64 = 2 * 1024 * 1024;

/// Receive-buffer capacity an idle keep-alive connection may keep for its next request.
const KEEP_INBUF: usize = 512;

/// The keep-alive rule, decided in this one place: the client asked for it (HTTP/1.1 by
/// default, 1.0 with `Connection: keep-alive`), sent no body (bodies are never read, so the
/// framing after one is unknown), and the server is not stopping. Statuses that close the
/// connection (`Status::closes_connection`) override it where the response is built.
fn may_keep_alive(req: &Request, ctx: &Ctx) -> bool {
    req.keep_alive && !req.has_body && !ctx.stopping
}

/// The connection closes once this response is out: the client asked for that, the status
/// demands it (it cleared `keep_alive`), or the server is stopping.
fn ends_connection(ex: &Exchange, ctx: &Ctx) -> bool {
    !ex.keep_alive || ctx.stopping
}

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
    /// `None` once closed right after the last response (`sent_and_closed`).
    socket: Option<OwnedFd>,
    key: usize,
    generation: u32,
    phase: Phase,
    recv: Recv,
    /// A complete request has arrived: receives are multishot from then on (until then one
    /// single-shot receive is enough, and a one-request connection has nothing to cancel).
    multishot: bool,
    /// Operations of the phase in flight: one, or two for a linked file → pipe → socket splice.
    ops_in_flight: u8,
    /// Received bytes not yet consumed as requests.
    inbuf: Vec<u8>,
    /// The last receive left bytes in the socket, as the kernel flags it on the completion.
    input_left: bool,
    pub deadline: Instant,
    /// When the current request's head was complete (for the duration histogram).
    request_started: Instant,
    peer: Option<std::net::IpAddr>,
    /// Accepted on the `--metrics` listener: only `/metrics` is served here.
    serves_metrics: bool,
    close_reason: CloseReason,
}

/// The receive that runs beside the phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    /// None in flight.
    Off,
    /// A receive is in flight (its final completion has not arrived).
    Armed,
    /// In flight and being cancelled, because `inbuf` holds enough unanswered requests.
    Pausing,
    /// The client sent FIN: nothing more will arrive, and no receive is armed again.
    Ended,
}

/// What a waiting connection waits for, which decides the deadline that runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The next request of a keep-alive connection (the keep-alive timeout).
    NextRequest,
    /// The (rest of the) head of a request: after accept, or once its first bytes arrived (the
    /// header timeout); any bytes so far are in `inbuf`.
    Head,
}

enum Phase {
    /// Waiting for a request.
    Waiting(Wait),
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
    /// Torn down: nothing new is submitted, and the worker frees the connection once nothing
    /// is in flight. What the previous phase held that operations still in flight may use
    /// (the descriptors of a statx, read or splice) is kept here until then.
    Closing { _held: Option<Box<Phase>> },
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
    then: Option<(BodyFile, Pipe)>,
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
            socket: Some(socket),
            key,
            generation,
            phase: Phase::Waiting(Wait::Head),
            recv: Recv::Off,
            multishot: false,
            ops_in_flight: 0,
            inbuf: Vec::new(),
            input_left: false,
            deadline: ctx.now + ctx.cfg.header_timeout,
            request_started: ctx.now,
            peer,
            serves_metrics,
            close_reason: CloseReason::Client,
        }
    }

    /// The socket, for the worker to close once the connection `is_finished` (unless it was
    /// closed already, right after the last response).
    pub fn into_socket(self) -> Option<OwnedFd> {
        self.socket
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    fn token(&self, op: Op) -> Token {
        Token::conn(self.key, self.generation, op)
    }

    /// The socket's descriptor (-1 once closed, after which nothing is submitted on it).
    fn fd(&self) -> i32 {
        self.socket.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Nothing is in flight and the connection is done: the worker may free it.
    pub fn is_finished(&self) -> bool {
        self.is_closing() && matches!(self.recv, Recv::Off | Recv::Ended) && self.ops_in_flight == 0
    }

    fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing { .. })
    }

    /// Takes the phase out to transition from it; the caller sets the next one.
    fn take_phase(&mut self) -> Phase {
        std::mem::replace(&mut self.phase, Phase::Waiting(Wait::Head))
    }

    /// Starts receiving: after accept, when a multishot receive ends, and when a paused
    /// connection has worked through its buffered requests.
    pub fn arm_recv(&mut self, ctx: &mut Ctx) {
        if self.recv == Recv::Off && !self.is_closing() && self.inbuf.len() < high_water(ctx) {
            self.recv = Recv::Armed;
            if self.multishot {
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
        if self.recv == Recv::Armed {
            self.recv = Recv::Pausing;
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
        if self.is_closing() {
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
            // A lingering close's FIN: nothing more to do.
            Op::Shutdown => {}
            other => unreachable!("{other:?} is not a connection's operation"),
        }
        Followup::None
    }

    // ---- receiving and parsing ----

    fn on_recv(&mut self, c: &Completion, ctx: &mut Ctx) -> Followup {
        let was_pausing = self.recv == Recv::Pausing;
        if !c.more() {
            self.recv = Recv::Off;
        }
        if c.result > 0 {
            self.input_left = c.input_left();
        }
        if let Some(bid) = c.buffer_id() {
            if c.result > 0 && !matches!(self.phase, Phase::Closing { .. } | Phase::Lingering) {
                self.inbuf.extend_from_slice(ctx.ring.buffer(bid, c.result as usize));
            }
            ctx.ring.recycle(bid);
        }
        match c.result {
            n if n > 0 => self.on_input(ctx),
            0 => self.on_peer_closed(ctx),
            e if -e == libc::ENOBUFS && self.recv == Recv::Off => return Followup::RearmRecvLater,
            e if -e == libc::ENOBUFS => {}
            // Paused; resume at once if the requests were answered while the cancel was on its way.
            e if -e == libc::ECANCELED && was_pausing => self.arm_recv(ctx),
            _ => self.abort(ctx),
        }
        if c.result > 0 && matches!(self.phase, Phase::Waiting(_) | Phase::Lingering) {
            self.arm_recv(ctx);
        }
        Followup::None
    }

    fn on_peer_closed(&mut self, ctx: &mut Ctx) {
        self.recv = Recv::Ended;
        match self.phase {
            // Nothing (complete) to answer, or our side is already done.
            Phase::Waiting(_) | Phase::Lingering => self.abort(ctx),
            // A half-closed client still reads: finish the response, then close.
            _ => {}
        }
    }

    fn on_input(&mut self, ctx: &mut Ctx) {
        if let Phase::Waiting(wait) = &mut self.phase {
            if *wait == Wait::NextRequest {
                *wait = Wait::Head;
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
        if !matches!(self.phase, Phase::Waiting(_)) || self.inbuf.is_empty() {
            return;
        }
        match request::parse(&self.inbuf, ctx.cfg.max_header_size) {
            Parse::Partial => {
                if self.recv == Recv::Ended {
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
                self.multishot = true;
                if req.keep_alive {
                    self.arm_recv(ctx);
                }
                self.start_request(ctx, req);
            }
        }
    }

    fn start_request(&mut self, ctx: &mut Ctx, req: Box<Request>) {
        crate::test_hooks::panic_if_requested(&req.target);
        let keep_alive = may_keep_alive(&req, ctx);
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
        self.send_piece(ctx, head, body, ex, true);
    }

    /// Sends one piece of a response: the first (its head), or a later one (a multipart part).
    fn send_piece(&mut self, ctx: &mut Ctx, head: Vec<u8>, body: Body, ex: Exchange, first: bool) {
        let (cached, then) = match body {
            Body::None => (None, None),
            Body::Cached(c) => (Some(c), None),
            // The pipe is taken before the head goes out: without one (out of descriptors) the
            // answer is a 503, not a promised body cut short after its head.
            Body::File(f) => match ctx.pipes.take() {
                Some(pipe) => (None, Some((f, pipe))),
                None if first => {
                    crate::log_warn!("cannot create a pipe for a file body; answering 503");
                    ctx.recycle_head_buffer(head);
                    return self.builtin_error(ctx, ex.req, Status::ServiceUnavailable, false);
                }
                // Part of the response is out: its framing can no longer be kept.
                None => {
                    crate::log_warn!("cannot create a pipe for a file body; closing the connection");
                    self.close_reason = CloseReason::Error;
                    self.log_exchange(ctx, &ex);
                    return self.abort(ctx);
                }
            },
        };
        self.phase = Phase::Sending(Box::new(Sending { then, ex }));
        self.deadline = ctx.now + ctx.cfg.send_timeout;
        self.send_rest(ctx, Outgoing { head, body: cached, sent: 0 });
    }

    /// Hands what is left of `out` to the ring, which owns it until the send completes.
    /// The last piece of a response that ends the connection is sent at once and the socket
    /// closed behind it (see `sent_and_closed`), unless the close must linger (`needs_linger`),
    /// a receive is in flight, or the socket does not take it whole.
    fn send_rest(&mut self, ctx: &mut Ctx, mut out: Outgoing) {
        let fd = self.fd();
        let Phase::Sending(s) = &self.phase else { unreachable!("sending outside the sending phase") };
        let last = s.then.is_none() && s.ex.rest.is_empty();
        let close_now = last
            && ends_connection(&s.ex, ctx)
            && matches!(self.recv, Recv::Off | Recv::Ended)
            && !self.needs_linger(ctx, &s.ex);
        if close_now {
            match sys::send_now(fd, out.unsent()) {
                Ok(n) => out.sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return self.abort(ctx),
            }
            if out.sent == out.total() {
                return self.sent_and_closed(ctx, out);
            }
        }
        ctx.ring.send(fd, out, !last, self.token(Op::Send));
        self.ops_in_flight += 1;
    }

    fn on_send(&mut self, result: i32, out: Option<Outgoing>, ctx: &mut Ctx) {
        let Some(mut out) = out else { unreachable!("a send completion without its buffers") };
        if let Phase::Sending(s) = &self.phase {
            crate::test_hooks::stall_after_send(s.ex.req.as_ref().map_or("", |r| &r.target));
        }
        if result < 0 {
            return self.abort(ctx);
        }
        out.sent += result as usize;
        self.deadline = ctx.now + ctx.cfg.send_timeout;
        if out.sent < out.total() {
            return self.send_rest(ctx, out);
        }
        ctx.recycle_head_buffer(out.head);
        let Phase::Sending(s) = self.take_phase() else {
            unreachable!("a send completed outside the sending phase");
        };
        let Sending { then, ex } = *s;
        match then {
            None => self.next_piece(ctx, ex),
            Some((body, pipe)) => self.start_splice(ctx, body, pipe, ex),
        }
    }

    /// A response that ends the connection went out whole at once: close the socket now (a
    /// plain `close`), as a blocking server does, so our FIN follows the response within
    /// microseconds. Were the FIN to wait for the ring (even linked behind the send, it runs
    /// only after the whole batch of that submission), a fast client would read the response
    /// and close first, and hold the TIME_WAIT: each later `connect` of that client pays for
    /// the ones it holds (on 16 cores that held new-connection-per-request to half of nginx's
    /// rate, with the client's cores saturated and the server's half idle).
    fn sent_and_closed(&mut self, ctx: &mut Ctx, out: Outgoing) {
        ctx.recycle_head_buffer(out.head);
        drop(self.socket.take());
        let Phase::Sending(s) = self.take_phase() else { unreachable!("sending outside the sending phase") };
        self.response_done(ctx, s.ex, true);
    }

    fn start_splice(&mut self, ctx: &mut Ctx, body: BodyFile, pipe: Pipe, ex: Exchange) {
        self.phase =
            Phase::Splicing(Box::new(Splicing { body, pipe: Some(pipe), in_pipe: 0, ex, stall: None }));
        self.splice_step(ctx);
    }

    /// Next step of a file body: drain the pipe into the socket first; otherwise, if the next
    /// chunk is in the page cache, `sendfile` it from this thread (`send_file_now`); otherwise
    /// refill the pipe from the file with the socket splice linked behind, so a full chunk
    /// moves in one round trip.
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
            let chunk = sp.body.remaining.min(SENDFILE_CHUNK);
            if sys::pages_cached(sp.body.info.file.as_raw_fd(), sp.body.offset, chunk) {
                return self.send_file_now(ctx, chunk);
            }
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
            let Phase::Splicing(mut sp) = self.take_phase() else { return };
            if let Some(pipe) = sp.pipe.take() {
                ctx.pipes.give_back(pipe);
            }
            self.next_piece(ctx, sp.ex);
        }
    }

    /// Sends up to `chunk` bytes of a body whose pages are all in the page cache with
    /// `sendfile` on this thread: the io_uring splices run on kernel worker threads (a splice
    /// from a file is never issued inline), which costs a thread hand-off per chunk. Page-cache
    /// reads do not wait for the disk (pages evicted in between would make it wait once).
    /// Stops when the socket is full (then waits for room, like a splice) or after the chunk
    /// (then lets the worker's other connections go first, through the same wait for room).
    fn send_file_now(&mut self, ctx: &mut Ctx, chunk: u64) {
        enum Stop {
            ChunkSent,
            FileShrank,
            Failed,
        }
        let socket = self.fd();
        let Phase::Splicing(sp) = &mut self.phase else { return };
        let mut left = chunk;
        let stop = loop {
            if left == 0 {
                break Stop::ChunkSent;
            }
            match sys::sendfile_now(socket, sp.body.info.file.as_raw_fd(), sp.body.offset, left as usize) {
                Ok(0) => break Stop::FileShrank,
                Ok(n) => {
                    let n = (n as u64).min(left);
                    sp.body.offset += n;
                    sp.body.remaining -= n.min(sp.body.remaining);
                    left -= n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return self.wait_for_room(ctx),
                Err(_) => break Stop::Failed,
            }
        };
        match stop {
            Stop::ChunkSent if sp.body.remaining == 0 => self.splice_step(ctx),
            // Room or not, go through a writability poll: it completes at once when there
            // is room, and if the chunk filled the socket, the send timeout must run.
            Stop::ChunkSent => self.wait_for_room(ctx),
            Stop::FileShrank => {
                crate::log_warn!("file shrank while being sent; closing the connection");
                self.abort_for(CloseReason::Error, ctx);
            }
            Stop::Failed => self.abort(ctx),
        }
    }

    /// The socket is full (or may be, after a whole chunk): wait for room instead of parking a
    /// kernel thread on it, noting how much the client still has to take, to tell slow from
    /// stalled. Only now does the send timeout run: until here the server was working.
    fn wait_for_room(&mut self, ctx: &mut Ctx) {
        let fd = self.fd();
        let Phase::Splicing(sp) = &mut self.phase else { return };
        sp.stall = Some(Stall { unacked: sys::unacked_bytes(fd) });
        self.deadline = ctx.now + ctx.cfg.send_timeout;
        ctx.ring.poll_writable(fd, self.token(Op::PollOut));
        self.ops_in_flight += 1;
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
        let Phase::Splicing(sp) = &mut self.phase else { return };
        match result {
            // The file splice came up short and broke the link: send what it moved.
            r if r == -libc::ECANCELED => self.splice_step(ctx),
            r if r == -libc::EAGAIN => self.wait_for_room(ctx),
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
            Some((bytes, body)) => self.send_piece(ctx, bytes, body, ex, false),
            None => self.response_done(ctx, ex, false),
        }
    }

    /// A response is fully handed to the kernel (and the socket closed behind it if `closed`):
    /// log it, then read the next request or close.
    fn response_done(&mut self, ctx: &mut Ctx, ex: Exchange, closed: bool) {
        self.log_exchange(ctx, &ex);
        ctx.metrics.response(
            ex.status,
            ex.body_bytes,
            ctx.now.saturating_duration_since(self.request_started),
        );
        if closed {
            return self.abort(ctx);
        }
        if ends_connection(&ex, ctx) {
            return self.close_after(ctx, &ex);
        }
        if self.recv == Recv::Ended && self.inbuf.is_empty() {
            // The client's FIN came after its last request, which is now answered.
            return self.abort(ctx);
        }
        // Requests the client sent before a FIN are still answered (`process_input` closes once
        // only a partial head is left).
        if self.inbuf.is_empty() {
            // A small buffer is kept for the next request; a large one is not held while idle.
            if self.inbuf.capacity() > KEEP_INBUF {
                self.inbuf = Vec::new();
            }
            self.phase = Phase::Waiting(Wait::NextRequest);
            self.deadline = ctx.now + ctx.cfg.keepalive_timeout;
        } else {
            self.phase = Phase::Waiting(Wait::Head);
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
    /// already closed its side, or has sent nothing more (none buffered, and the kernel flagged
    /// no bytes left behind by the last receive) and the response was small enough to be on its
    /// way already: the common case of a small response, closed at no extra cost. Only bytes a
    /// client sends after its request, within the few microseconds before the close, can still
    /// turn it into a reset (nginx closes without any such check). A large response may still
    /// sit unacknowledged in the socket for a long time (a client that reads slowly), so it
    /// always lingers.
    fn close_after(&mut self, ctx: &mut Ctx, ex: &Exchange) {
        if self.needs_linger(ctx, ex) { self.linger(ctx) } else { self.abort(ctx) }
    }

    /// Whether closing after `ex` must linger (see `close_after`); decided before its last send
    /// too, to close the socket right behind it when it need not.
    fn needs_linger(&self, ctx: &Ctx, ex: &Exchange) -> bool {
        self.recv != Recv::Ended
            && (!self.inbuf.is_empty()
                || ctx.stopping
                || ex.status.closes_connection()
                || ex.req.as_ref().is_none_or(|r| r.has_body)
                || ex.body_bytes > LINGER_ABOVE
                || self.input_left)
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
        if !self.is_closing() {
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
        if self.is_closing() {
            return;
        }
        let held = match self.take_phase() {
            // An unfinished response is still logged.
            Phase::Sending(s) => {
                self.log_exchange(ctx, &s.ex);
                None
            }
            Phase::Splicing(sp) => {
                self.log_exchange(ctx, &sp.ex);
                Some(Box::new(Phase::Splicing(sp)))
            }
            // Their descriptors may still be in use by the operation in flight.
            previous @ (Phase::Stating(_) | Phase::Loading(_)) => Some(Box::new(previous)),
            Phase::Waiting(_)
            | Phase::Opening(_)
            | Phase::Listing(_)
            | Phase::Lingering
            | Phase::Closing { .. } => None,
        };
        self.phase = Phase::Closing { _held: held };
        self.inbuf = Vec::new();
        if matches!(self.recv, Recv::Armed | Recv::Pausing) || self.ops_in_flight > 0 {
            // (A socket closed right after its response had nothing in flight.)
            if let Some(socket) = &self.socket {
                ctx.ring.cancel_fd(socket.as_raw_fd(), self.token(Op::Cancel));
            }
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
        if matches!(self.phase, Phase::Waiting(_)) && !self.inbuf.is_empty() && self.ops_in_flight == 0 {
            self.inbuf = Vec::new();
            self.respond_error(ctx, None, Status::RequestTimeout, false);
            // The client had its chance; if it does not read the 408 either, drop it.
            self.deadline = ctx.now + LINGER;
            self.close_reason = CloseReason::HeaderTimeout;
            return;
        }
        let reason = match self.phase {
            Phase::Waiting(Wait::NextRequest) => CloseReason::KeepaliveTimeout,
            Phase::Waiting(Wait::Head) => CloseReason::HeaderTimeout,
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
        now.is_some_and(|n| n < mark)
    }

    /// The server, not the client, is what the connection waits for.
    fn server_is_working(&self) -> bool {
        match &self.phase {
            Phase::Opening(_) | Phase::Stating(_) | Phase::Loading(_) | Phase::Listing(_) => true,
            Phase::Splicing(sp) => sp.stall.is_none(),
            Phase::Waiting(_) | Phase::Sending(_) | Phase::Lingering | Phase::Closing { .. } => false,
        }
    }

    /// Graceful stop: idle keep-alive connections close now; busy ones close after their
    /// response. A connection still waiting for (the rest of) a request's head gets to send it
    /// and is answered, as one accepted just before the stop may have its request on the way
    /// (the header timeout and the shutdown timeout still bound it).
    pub fn on_stop(&mut self, ctx: &mut Ctx) {
        if matches!(self.phase, Phase::Waiting(Wait::NextRequest)) && self.inbuf.is_empty() {
            self.abort_for(CloseReason::Shutdown, ctx);
        }
    }
}

impl Exchange {
    fn new(req: Option<Box<Request>>, status: Status, keep_alive: bool, body_bytes: u64) -> Exchange {
        Exchange { req, status, keep_alive, body_bytes, rest: VecDeque::new() }
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
