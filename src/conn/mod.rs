//! One client connection: a state machine driven by ring completions.
//!
//! A connection is a `Phase` (what it is doing, owning exactly what that needs) and, beside it,
//! a `Recv` (the receive into the ring's provided buffers). The ring owns the memory of every
//! operation in flight and hands it back with the completion (`ring::Completion`), so a phase
//! can never free memory the kernel uses; a phase that holds a descriptor an operation in
//! flight uses is kept (inside `Closing`) until that operation completes. A phase's operations
//! are counted in flight where they are submitted (`InFlight::submit`) and uncounted in
//! `on_completion`, which does that bookkeeping once (with the closing check) and calls one
//! transition; a transition that forgets to set the next phase leaves `Taken` behind, which
//! the entry points check.
//! The transitions live by concern: receiving and parsing here, finding the file in `lookup`,
//! deciding the answer in `respond`, sending it in `send`, ending the connection in `close`.
//!
//! | phase | waits for | next |
//! |---|---|---|
//! | `Handshaking` | a TLS client's handshake bytes, or our flight's send (header timeout) | `Waiting(Head)` (records sealed by the kernel or by rustls), `Closing` |
//! | `Waiting(Head)` | request bytes (header timeout) | `Opening`, `Sending` (from the cache, or an error), `Listing` (a cached directory), `Closing` |
//! | `Waiting(NextRequest)` | a keep-alive client's next request (keep-alive timeout) | `Waiting(Head)` on its first bytes, `Closing` |
//! | `Opening` | `openat2` | `Stating`, `Opening` (next sibling), `Sending`, `Listing` |
//! | `Stating` | `statx` | `Loading`, `Opening` (next sibling, a fallback, a listed directory), `Sending`, `Listing` |
//! | `Loading` | `read` of a small file | `Opening` (next sibling), `Sending` |
//! | `Listing` | the listing threads (`--autoindex`; send timeout, a close or a stop cancels) | `Sending`, `Opening` (fallback), `Closing` |
//! | `Sending` | `send` of a head and cached body (send timeout); a response that ends the connection and needs no lingering close is sent and closed at once, when the socket takes it whole; so is a plain connection's file body's head, which goes straight on to `Splicing` (this phase is skipped) | `Splicing`, `Sending` (next multipart piece), `Waiting`, `Lingering`, `Closing` |
//! | `Sealing` | `read` of a file body's next chunk, to seal it in user space (TLS without kTLS) | `Sending` (the sealed chunk) |
//! | `Splicing` | file → pipe → socket splices; `poll` for room (send timeout only then) | `Sending` (next piece), `Waiting`, `Lingering`, `Closing` |
//! | `Lingering` | the client's FIN after ours (2 s) | `Closing` |
//! | `Closing` | the last completions in flight | freed by the worker (`is_finished`) |
//! | `Taken` | nothing: only inside a transition, between `take_phase` and the next phase | the next phase, before the transition returns |
//!
//! | `Recv` | meaning | next |
//! |---|---|---|
//! | `Off` | none in flight; the next is single-shot until a request arrived, multishot after | `Armed` |
//! | `Armed` | in flight | `Off` (ended), `Pausing`, `Ended` (FIN) |
//! | `Pausing` | being cancelled: 64 KiB of requests wait unanswered | `Off`, then `Armed` once answered; `Ended` (FIN) |
//! | `Ended` | the client sent FIN: requests already received are answered, nothing is re-armed | — |
//!
//! This module must never block and never send a response whose framing it cannot keep: if a
//! file shrinks mid-body, the connection is closed.

mod autoindex;
mod close;
mod lookup;
mod respond;
mod send;
mod tls;

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use crate::http::Status;
use crate::http::request::{self, Method, Parse, Request};
use crate::http::target;
use crate::ops::metrics::CloseReason;

use crate::kernel::ring::Completion;
use crate::kernel::sys;
use crate::kernel::token::{Op, Token};
use crate::server::context::Ctx;
use lookup::{Loading, Lookup, Opening, Purpose, Stating};
use send::{Body, Sealing, Sending, Splicing};
use tls::Tls;

/// Buffered request bytes above which receiving pauses until requests are answered (the rest
/// waits in the socket, and TCP flow control slows the client down).
const RECV_HIGH_WATER: usize = 64 * 1024;
/// Bytes that may still land after a pause is requested; beyond this a client is abusive.
const RECV_HARD_LIMIT: usize = 1024 * 1024;

/// The longest any deadline runs on the `--metrics` listener: a scrape is quick, and nobody
/// may park connections there.
const METRICS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
    in_flight: InFlight,
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
    /// HTTPS: who seals and opens the records (`None` on a plain connection).
    tls: Option<Tls>,
}

/// The phase's operations in flight: one, or two for a linked file → pipe → socket splice.
/// Counted only by `submit`, as they go to the ring, and uncounted in `Conn::on_completion`.
#[derive(Debug, Default)]
struct InFlight(u8);

impl InFlight {
    /// Hands `count` operations of the phase to the ring (`push` submits them) and counts them.
    fn submit(&mut self, count: u8, push: impl FnOnce()) {
        push();
        self.0 += count;
    }

    /// One of them completed.
    fn completed(&mut self) {
        self.0 -= 1;
    }

    fn any(&self) -> bool {
        self.0 > 0
    }
}

/// The receive that runs beside the phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    /// None in flight. The next is `multishot` once a complete request has arrived; until then
    /// one single-shot receive is enough, and a one-request connection has nothing to cancel.
    Off { multishot: bool },
    /// A receive is in flight (its final completion has not arrived), of the kind `multishot`
    /// says.
    Armed { multishot: bool },
    /// In flight and being cancelled, because `inbuf` holds enough unanswered requests.
    Pausing,
    /// The client sent FIN: nothing more will arrive, and no receive is armed again.
    Ended,
}

impl Recv {
    /// The receive in flight ended (its completion came without `more`).
    fn ended(self) -> Recv {
        match self {
            Recv::Armed { multishot } => Recv::Off { multishot },
            // Only a multishot receive is ever paused: requests had arrived before it.
            Recv::Pausing => Recv::Off { multishot: true },
            settled => settled,
        }
    }

    /// A complete request arrived: the next receives are multishot.
    fn go_multishot(&mut self) {
        if let Recv::Off { multishot } = self {
            *multishot = true;
        }
    }
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
    /// A TLS handshake: waiting for the client's next flight, or sending ours.
    Handshaking,
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
    /// Reading a file body's next chunk to seal it in user space.
    Sealing(Box<Sealing>),
    /// Moving a large body file → pipe → socket.
    Splicing(Box<Splicing>),
    /// Waiting for the listing threads to build a directory listing (`--autoindex`); no ring
    /// operation of the phase is in flight, only the receive that notices a client's close.
    Listing(Box<autoindex::Waiting>),
    /// Our FIN is sent; draining input until the client closes too.
    Lingering,
    /// Torn down: nothing new is submitted, and the worker frees the connection once nothing
    /// is in flight. What the previous phase held that operations still in flight may use
    /// (the descriptors of a statx, read or splice) is kept here until then.
    Closing { _held: Option<Box<Phase>> },
    /// Between two phases: a transition took the previous one (`take_phase`) and has not set
    /// the next yet. Never seen outside a transition (`check_settled`).
    Taken,
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

impl Conn {
    pub fn new(
        socket: OwnedFd,
        key: usize,
        generation: u32,
        serves_metrics: bool,
        secure: bool,
        ctx: &mut Ctx,
    ) -> Conn {
        let peer = if ctx.log.is_some() { sys::peer_ip(socket.as_raw_fd()) } else { None };
        let tls = if secure { Tls::new(ctx) } else { None };
        let mut conn = Conn {
            socket: Some(socket),
            key,
            generation,
            phase: if tls.is_some() { Phase::Handshaking } else { Phase::Waiting(Wait::Head) },
            recv: Recv::Off { multishot: false },
            in_flight: InFlight::default(),
            inbuf: Vec::new(),
            input_left: false,
            deadline: ctx.now,
            request_started: ctx.now,
            peer,
            serves_metrics,
            close_reason: CloseReason::Client,
            tls,
        };
        conn.deadline = ctx.now + conn.timeout(ctx.cfg.header_timeout);
        conn
    }

    /// The socket, for the worker to close once the connection `is_finished` (unless it was
    /// closed already, right after the last response).
    pub fn into_socket(self) -> Option<OwnedFd> {
        self.socket
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Accepted on the `--metrics` listener.
    pub fn serves_metrics(&self) -> bool {
        self.serves_metrics
    }

    /// A configured timeout as it applies to this connection.
    fn timeout(&self, configured: std::time::Duration) -> std::time::Duration {
        if self.serves_metrics { configured.min(METRICS_TIMEOUT) } else { configured }
    }

    fn token(&self, op: Op) -> Token {
        Token::conn(self.key, self.generation, op)
    }

    /// The socket's descriptor (-1 once closed, after which nothing is submitted on it).
    fn fd(&self) -> i32 {
        self.socket.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Nothing is in flight and the connection is done: the worker may free it. The worker
    /// asks after every call into the connection, so this is also where a transition that
    /// forgot its next phase is caught.
    pub fn is_finished(&self) -> bool {
        self.check_settled();
        self.is_closing() && matches!(self.recv, Recv::Off { .. } | Recv::Ended) && !self.in_flight.any()
    }

    fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing { .. })
    }

    /// Takes the phase out to transition from it; the caller sets the next one.
    fn take_phase(&mut self) -> Phase {
        std::mem::replace(&mut self.phase, Phase::Taken)
    }

    /// Every transition set the next phase: a connection left `Taken` would wait for nothing
    /// until its deadline. Checked when control returns to the worker (`is_finished`).
    fn check_settled(&self) {
        debug_assert!(!matches!(self.phase, Phase::Taken), "a transition left the connection between phases");
    }

    /// Starts receiving: after accept, when a multishot receive ends, and when a paused
    /// connection has worked through its buffered requests.
    pub fn arm_recv(&mut self, ctx: &mut Ctx) {
        let Recv::Off { multishot } = self.recv else { return };
        if !self.is_closing() && self.inbuf.len() < high_water(ctx) {
            self.recv = Recv::Armed { multishot };
            if multishot {
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
        if let Recv::Armed { .. } = self.recv {
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
        self.in_flight.completed();
        if self.is_closing() {
            return Followup::None;
        }
        let result = c.result;
        match op {
            Op::Open => self.on_open(result, c.take_fd(), ctx),
            Op::Statx => self.on_statx(result, c.statx().copied(), ctx),
            Op::Read if matches!(self.phase, Phase::Sealing(_)) => {
                self.on_sealed_read(result, c.take_buffer(), ctx)
            }
            Op::Read => self.on_read(result, c.take_buffer(), ctx),
            Op::Send if matches!(self.phase, Phase::Handshaking) => {
                self.on_flight_sent(result, c.take_outgoing(), ctx)
            }
            Op::Send => self.on_send(result, c.take_outgoing(), ctx),
            Op::SpliceIn => self.on_splice_in(result, ctx),
            Op::SpliceOut => self.on_splice_out(result, ctx),
            Op::PollOut => self.on_writable(result, ctx),
            other => unreachable!("{other:?} is not a connection's operation"),
        }
        Followup::None
    }

    // ---- receiving and parsing ----

    fn on_recv(&mut self, c: &mut Completion, ctx: &mut Ctx) -> Followup {
        let was_pausing = self.recv == Recv::Pausing;
        if !c.more() {
            self.recv = self.recv.ended();
        }
        if c.result > 0 {
            self.input_left = c.input_left();
        }
        let keep = c.result > 0 && !matches!(self.phase, Phase::Closing { .. } | Phase::Lingering);
        let (tls, inbuf) = (&mut self.tls, &mut self.inbuf);
        let before = inbuf.len();
        let mut opened = Ok(Default::default());
        ctx.ring.received(c, |bytes| {
            if keep {
                opened = Conn::take_input(tls, inbuf, bytes);
            }
        });
        match c.result {
            n if n > 0 => match opened {
                Err(failure) if matches!(self.phase, Phase::Handshaking) => {
                    self.handshake_failed(failure, ctx)
                }
                Err(_) => self.fail_tls(CloseReason::Client, ctx),
                Ok(_) if matches!(self.phase, Phase::Handshaking) => self.handshake_step(ctx),
                Ok(received) => {
                    if self.inbuf.len() > before || !self.sealed_by_user() {
                        self.on_input(ctx);
                    }
                    if received.peer_closed && matches!(self.phase, Phase::Waiting(_) | Phase::Lingering) {
                        // close_notify: nothing more will come, and nothing is left to answer.
                        self.abort(ctx);
                    }
                }
            },
            0 => self.on_peer_closed(ctx),
            // No provided buffer was free: bytes are waiting in the socket.
            e if -e == libc::ENOBUFS && matches!(self.recv, Recv::Off { .. }) => {
                self.input_left = true;
                return Followup::RearmRecvLater;
            }
            e if -e == libc::ENOBUFS => self.input_left = true,
            // Paused; resume at once if the requests were answered while the cancel was on its way.
            e if -e == libc::ECANCELED && was_pausing => self.arm_recv(ctx),
            e if -e == libc::EIO && matches!(self.tls, Some(Tls::Kernel)) => self.on_control_record(ctx),
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
            Phase::Handshaking => self.handshake_failed(crate::tls::session::Failure::PeerClosed, ctx),
            // Nothing (complete) to answer, or our side is already done.
            Phase::Waiting(_) | Phase::Lingering => self.abort(ctx),
            // Nobody may be left to read a listing that has not been built yet.
            Phase::Listing(_) => self.abort_for(CloseReason::Client, ctx),
            // A half-closed client still reads: finish the response, then close.
            _ => {}
        }
    }

    fn on_input(&mut self, ctx: &mut Ctx) {
        if let Phase::Waiting(wait) = &mut self.phase {
            if *wait == Wait::NextRequest {
                *wait = Wait::Head;
                self.deadline = ctx.now + self.timeout(ctx.cfg.header_timeout);
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
        let mut spare = ctx.requests.pop();
        let parsed = request::parse_reusing(&self.inbuf, ctx.cfg.max_header_size, &mut spare);
        if let Some(unused) = spare {
            ctx.recycle_request(unused);
        }
        match parsed {
            Parse::Partial => {
                if self.client_done_sending() {
                    self.abort(ctx);
                }
            }
            Parse::Invalid(status) => {
                let head_only = request::asks_head(&self.inbuf);
                self.inbuf = Vec::new();
                self.respond_unparsable(ctx, status, head_only);
            }
            Parse::Complete(req, len) => {
                self.inbuf.drain(..len);
                self.request_started = ctx.now;
                self.recv.go_multishot();
                if req.keep_alive {
                    self.arm_recv(ctx);
                }
                self.start_request(ctx, req);
            }
        }
    }

    fn start_request(&mut self, ctx: &mut Ctx, req: Box<Request>) {
        crate::testing::hooks::panic_if_requested(req.target());
        let keep_alive = may_keep_alive(&req, ctx);
        if self.serves_metrics {
            return self.respond_metrics(ctx, req, keep_alive);
        }
        if req.method() == Method::Other {
            return self.respond_error(ctx, Some(req), Status::MethodNotAllowed, keep_alive);
        }
        if self.redirects_to_https(ctx, &req) {
            return self.redirect_to_https(ctx, req, keep_alive);
        }
        // The path goes into the worker's buffer, given back after a lookup from the cache.
        let mut file = std::mem::take(&mut ctx.file_path);
        file.clear();
        let is_index = match target::resolve(req.target()) {
            Ok(t) => {
                file.extend_from_slice(&t.file);
                t.is_index
            }
            Err(_) => return self.respond_error(ctx, Some(req), Status::BadRequest, false),
        };
        if ctx.cfg.hide_dotfiles && target::is_hidden(&file) {
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
            Some(entry) => {
                self.respond_entry(ctx, req, &file, is_index, entry, purpose);
                ctx.file_path = file;
            }
            None => self.open(ctx, Lookup::new(req, file, is_index, purpose)),
        }
    }

    /// A response is fully handed to the kernel (and the socket is to be closed behind it at
    /// once if `closed`): log and count it, then read the next request or close. The close comes
    /// after the counting, so a client that sees it and asks the metrics finds its response.
    fn response_done(&mut self, ctx: &mut Ctx, mut ex: Exchange, closed: bool) {
        self.log_exchange(ctx, &ex);
        ctx.metrics.response(
            ex.status,
            ex.body_bytes,
            ctx.now.saturating_duration_since(self.request_started),
        );
        if closed {
            // Counted here, not when the worker frees the connection: the client may ask the
            // metrics the moment it sees the close.
            ctx.metrics.closed(self.close_reason);
            drop(self.socket.take());
            if let Some(req) = ex.req.take() {
                ctx.recycle_request(req);
            }
            return self.abort(ctx);
        }
        if ends_connection(&ex, ctx) {
            return self.close_after(ctx, &ex);
        }
        if self.client_done_sending() && self.inbuf.is_empty() {
            // The client's FIN came after its last request, which is now answered.
            return self.abort(ctx);
        }
        if let Some(req) = ex.req.take() {
            ctx.recycle_request(req);
        }
        // Requests the client sent before a FIN are still answered (`process_input` closes once
        // only a partial head is left).
        if self.inbuf.is_empty() {
            // A small buffer is kept for the next request; a large one is not held while idle.
            if self.inbuf.capacity() > KEEP_INBUF {
                self.inbuf = Vec::new();
            }
            self.phase = Phase::Waiting(Wait::NextRequest);
            self.deadline = ctx.now + self.timeout(ctx.cfg.keepalive_timeout);
        } else {
            self.phase = Phase::Waiting(Wait::Head);
            self.deadline = ctx.now + self.timeout(ctx.cfg.header_timeout);
        }
        self.arm_recv(ctx);
        self.process_input(ctx);
    }

    fn log_exchange(&self, ctx: &mut Ctx, ex: &Exchange) {
        if let Some(log) = &mut ctx.log {
            log.record(self.peer, ex.req.as_deref(), ex.status.code(), ex.body_bytes, ctx.unix_now);
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

    /// The variants `enum NAME` declares in `source` (lines indented once, starting with a
    /// capital letter).
    fn variants(source: &str, name: &str) -> std::collections::BTreeSet<String> {
        let start = source.find(&format!("\nenum {name} {{")).expect("the enum") + 1;
        source[start..]
            .lines()
            .skip(1)
            .take_while(|l| *l != "}")
            .filter_map(|l| l.strip_prefix("    "))
            .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
            .map(|l| l.split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or("").to_owned())
            .collect()
    }

    /// The variants the module doc's table under `header` has rows for (`Waiting(Head)` and
    /// `Waiting(NextRequest)` both count as `Waiting`).
    fn rows(source: &str, header: &str) -> std::collections::BTreeSet<String> {
        let start = source.find(header).expect("the table");
        source[start..]
            .lines()
            .skip(2)
            .map_while(|l| l.strip_prefix("//! | `"))
            .map(|l| l.split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or("").to_owned())
            .collect()
    }

    /// The state tables in the module doc are the map of this machine: a variant added without
    /// its row (or a row left for a variant that is gone) fails here.
    #[test]
    fn the_state_tables_match_the_enums() {
        let source = include_str!("mod.rs");
        assert_eq!(rows(source, "//! | phase | waits for | next |"), variants(source, "Phase"));
        assert_eq!(rows(source, "//! | `Recv` | meaning | next |"), variants(source, "Recv"));
        assert!(variants(source, "Phase").len() >= 10, "{:?}", variants(source, "Phase"));
    }

    /// An idle keep-alive connection costs its slab entry and nothing else in user space; keep
    /// the entry small (the phase data of busy states is boxed for this reason).
    #[test]
    fn idle_connection_state_stays_small() {
        assert!(std::mem::size_of::<Conn>() <= 128, "Conn is {} bytes", std::mem::size_of::<Conn>());
    }
}
