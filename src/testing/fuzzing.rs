//! Drives one connection's state machine from a byte stream over a simulated ring, so its
//! transitions can be fuzzed without a kernel: request bytes arrive split at arbitrary
//! boundaries (pipelined, half-closed, reset), and every operation completes with a result the
//! stream chooses (short and failed sends, short or failed splices and reads, missing files,
//! cancellations, timeouts, a graceful stop). Findings are panics: an `unreachable!` transition,
//! an overflow of the in-flight count, two operations under one token, or a connection that
//! cannot finish once aborted and drained, or that leaves an operation other than a
//! cancellation in flight once finished. Used by the `connection` fuzz target and by the
//! property tests; it never touches the network or the filesystem beyond `/dev/null`.
//!
//! `drive_tls_connection` (submodule `tls`) runs an HTTPS connection the same way, with a real
//! rustls client on the other side of the simulated socket.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::conn::{Conn, Followup};
use crate::files::cache::FileCache;
use crate::http::response;
use crate::kernel::pipe_pool::PipePool;
use crate::kernel::ring::Ring;
use crate::kernel::sim::cqueue_flags;
use crate::kernel::token::{Op, Token};
use crate::ops::metrics::Metrics;
use crate::server::config::{Args, Config};
use crate::server::context::Ctx;

mod tls;
pub use tls::drive_tls_connection;

/// Steps one input may take (each consumes at least one byte, so this is a backstop).
const MAX_STEPS: usize = 4096;

/// The fuzz input, read a byte at a time.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }

    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.byte().unwrap_or(0) as usize % choices.len()]
    }
}

thread_local! {
    /// One context (with its simulated ring) per thread, reset for every run: setting up an
    /// io_uring for the provided buffers and parsing flags per input would cost more than the
    /// run itself.
    static CONTEXT: std::cell::RefCell<Option<Ctx>> = const { std::cell::RefCell::new(None) };
}

/// Requests a simulated client sends (the last one's head unfinished), for the drivers and the
/// property tests that feed them.
pub const REQUESTS: &[&str] = &[
    "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n",
    "HEAD /a HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9,20-29\r\n\r\n",
    "GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=5-\r\n\r\n",
    "GET /x HTTP/1.0\r\n\r\n",
    "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    "GET /d/ HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n",
    "GARBAGE\r\n\r\n",
    "GET /partial HTTP/1.1\r\nHo",
];

fn context() -> Ctx {
    let args = Args::parse_from(["ringhttpd", "-r", "/", "--header-timeout", "5", "--send-timeout", "5"]);
    let cfg = Arc::new(Config::from_args(args).expect("fixed flags"));
    let registry = Arc::new(Metrics::new(1, 0));
    Ctx {
        ring: Ring::simulated().expect("an io_uring for the provided buffers"),
        cfg,
        root: -1,
        cache: FileCache::default(),
        pipes: PipePool::default(),
        log: None,
        now: Instant::now(),
        unix_now: 1_800_000_000,
        date_line: response::date_line(1_800_000_000),
        stopping: false,
        head_buffers: Vec::new(),
        requests: Vec::new(),
        file_path: Vec::new(),
        lister: None,
        metrics: registry.worker(0),
        registry,
        tls: None,
    }
}

/// Runs one connection through the events `data` describes; panics on a broken invariant.
pub fn drive_connection(data: &[u8]) {
    with_context(|ctx| {
        ctx.tls = None;
        run(ctx, data);
    });
}

/// Runs `f` on this thread's context, reset for a new run.
fn with_context(f: impl FnOnce(&mut Ctx)) {
    let mut ctx = CONTEXT.with(|c| c.borrow_mut().take()).unwrap_or_else(context);
    ctx.ring.sim_reset();
    ctx.cache = FileCache::default();
    ctx.stopping = false;
    ctx.now = Instant::now();
    f(&mut ctx);
    CONTEXT.with(|c| *c.borrow_mut() = Some(ctx));
}

fn run(ctx: &mut Ctx, data: &[u8]) {
    let (socket, _peer) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let mut conn = Conn::new(OwnedFd::from(socket), 0, 1, false, false, ctx);
    conn.arm_recv(ctx);
    let mut input = Input(data);
    let mut wire = Wire::default();
    for _ in 0..MAX_STEPS {
        if conn.is_finished() {
            return check_nothing_left(ctx);
        }
        let Some(action) = input.byte() else { break };
        match action % 10 {
            0..=3 => receive(&mut conn, ctx, &mut input),
            4..=6 => complete_oldest(&mut conn, ctx, &mut input, &mut wire),
            7 => time_passes(&mut conn, ctx),
            8 => end_of_input(&mut conn, ctx, &mut input),
            _ => stop(&mut conn, ctx),
        }
    }
    finish(&mut conn, ctx, &mut wire);
}

/// The clock jumps past the longest timeout the context sets; the deadline fires if it passed.
fn time_passes(conn: &mut Conn, ctx: &mut Ctx) {
    ctx.now += Duration::from_secs(6);
    if conn.deadline <= ctx.now {
        conn.on_timeout(ctx);
    }
}

/// A graceful stop of the server.
fn stop(conn: &mut Conn, ctx: &mut Ctx) {
    ctx.stopping = true;
    conn.on_stop(ctx);
}

/// However the stream ended, an aborted connection must be able to finish once everything in
/// flight has completed, and then leave nothing behind.
fn finish(conn: &mut Conn, ctx: &mut Ctx, wire: &mut Wire) {
    conn.abort(ctx);
    let mut drain = Input(&[]);
    for _ in 0..MAX_STEPS {
        if conn.is_finished() {
            return check_nothing_left(ctx);
        }
        if ctx.ring.sim().submitted.is_empty() {
            break;
        }
        complete_oldest(conn, ctx, &mut drain, wire);
    }
    assert!(conn.is_finished(), "an aborted connection with nothing left in flight is not finished");
    check_nothing_left(ctx);
}

/// A finished connection has nothing in flight but cancellations (which own nothing): no
/// operation still holds its socket, a file, a buffer or a pipe.
fn check_nothing_left(ctx: &mut Ctx) {
    let left: Vec<Op> = ctx
        .ring
        .sim()
        .submitted
        .iter()
        .filter_map(|&u| Token::decode(u))
        .map(|t| t.op)
        .filter(|&op| op != Op::Cancel)
        .collect();
    assert!(left.is_empty(), "a finished connection still has {left:?} in flight");
}

/// What the peer got from the ring's completions: the bytes the sends took, and whether any
/// result was one that ends an exchange early (a failed send, read or poll, a receive ended by
/// the ring), after which no complete response can be promised.
#[derive(Default)]
struct Wire {
    sent: Vec<u8>,
    disturbed: bool,
}

fn pending(ctx: &mut Ctx, op: Op) -> Option<u64> {
    ctx.ring.sim().submitted.iter().copied().find(|&u| Token::decode(u).is_some_and(|t| t.op == op))
}

fn take_pending(ctx: &mut Ctx, user_data: u64) {
    let submitted = &mut ctx.ring.sim().submitted;
    if let Some(i) = submitted.iter().position(|&u| u == user_data) {
        submitted.remove(i);
    }
}

fn deliver(conn: &mut Conn, ctx: &mut Ctx, user_data: u64, result: i32, flags: u32, fd: Option<OwnedFd>) {
    if flags & cqueue_flags::MORE == 0 {
        take_pending(ctx, user_data);
    }
    let mut c = ctx.ring.sim_complete(user_data, result, flags, fd);
    let Some(token) = Token::decode(user_data) else { return };
    if conn.on_completion(token.op, &mut c, ctx) == Followup::RearmRecvLater {
        conn.arm_recv(ctx);
    }
}

/// Request bytes for the receive in flight (if any): a chunk of the input, at an arbitrary
/// boundary; the receive stays armed or ends, as the input says.
fn receive(conn: &mut Conn, ctx: &mut Ctx, input: &mut Input) {
    let Some(recv) = pending(ctx, Op::Recv) else { return };
    let len = usize::from(input.byte().unwrap_or(0)) * 8 + 1;
    let chunk = input.bytes(len).to_vec();
    if chunk.is_empty() {
        return;
    }
    let more = input.byte().unwrap_or(0) % 4 != 0;
    deliver_bytes(conn, ctx, recv, &chunk, more);
}

/// Completes the receive in flight under `recv` with `chunk` (at most one provided buffer's
/// worth), leaving it armed if `more` and it is a multishot receive (a single-shot one always
/// ends with its first completion).
fn deliver_bytes(conn: &mut Conn, ctx: &mut Ctx, recv: u64, chunk: &[u8], more: bool) {
    let more = more && ctx.ring.sim().multishot.contains(&recv);
    let flags = ctx.ring.sim_receive(chunk) | if more { cqueue_flags::MORE } else { 0 };
    deliver(conn, ctx, recv, chunk.len() as i32, flags, None);
}

/// The client's FIN, or a reset, on the receive in flight.
fn end_of_input(conn: &mut Conn, ctx: &mut Ctx, input: &mut Input) {
    let Some(recv) = pending(ctx, Op::Recv) else { return };
    let result = input.pick(&[0, 0, -libc::ECONNRESET, -libc::ENOBUFS]);
    deliver(conn, ctx, recv, result, 0, None);
}

/// Completes the oldest operation other than the receive with a result the input picks (with
/// no input left: the full, successful result).
fn complete_oldest(conn: &mut Conn, ctx: &mut Ctx, input: &mut Input, wire: &mut Wire) {
    let next = ctx
        .ring
        .sim()
        .submitted
        .iter()
        .copied()
        .find(|&u| Token::decode(u).is_some_and(|t| t.op != Op::Recv));
    let Some(user_data) = next.or_else(|| pending(ctx, Op::Recv)) else { return };
    let Some(token) = Token::decode(user_data) else { return take_pending(ctx, user_data) };
    match token.op {
        Op::Open => complete_open(conn, ctx, input, user_data),
        Op::Statx => complete_statx(conn, ctx, input, user_data),
        Op::Read => {
            let room = ctx.ring.sim_read_room(user_data) as i32;
            let result = input.pick(&[room, room, room / 2, 0, -libc::EIO]);
            wire.disturbed |= result <= 0 && room > 0;
            deliver(conn, ctx, user_data, result, 0, None);
        }
        Op::Send => {
            let left = ctx.ring.sim_send_left(user_data) as i32;
            let result = input.pick(&[left, left, left / 2 + 1, 1, -libc::EPIPE, -libc::ECONNRESET]);
            wire.disturbed |= result < 0;
            let sent = ctx.ring.sim_send_bytes(user_data, result.max(0) as usize);
            wire.sent.extend_from_slice(&sent);
            deliver(conn, ctx, user_data, result, 0, None);
        }
        Op::SpliceIn => complete_splice_in(conn, ctx, input, user_data, token, wire),
        Op::SpliceOut => {
            let len = ctx.ring.sim().splice_len.get(&user_data).copied().unwrap_or(0) as i32;
            let result = input.pick(&[len, len, len / 2 + 1, -libc::EAGAIN, -libc::EPIPE]);
            wire.disturbed |= result == -libc::EPIPE;
            deliver(conn, ctx, user_data, result, 0, None);
        }
        Op::PollOut => {
            let result = input.pick(&[libc::POLLOUT as i32, libc::POLLOUT as i32, -libc::ECONNRESET]);
            wire.disturbed |= result < 0;
            deliver(conn, ctx, user_data, result, 0, None);
        }
        Op::Cancel => complete_cancel(conn, ctx, user_data),
        Op::Delay => deliver(conn, ctx, user_data, -libc::ETIME, 0, None),
        Op::Recv => {
            wire.disturbed = true;
            deliver(conn, ctx, user_data, -libc::ECANCELED, 0, None);
        }
        _ => deliver(conn, ctx, user_data, 0, 0, None),
    }
}

fn complete_open(conn: &mut Conn, ctx: &mut Ctx, input: &mut Input, user_data: u64) {
    let result = input.pick(&[0, 0, 0, -libc::ENOENT, -libc::EACCES, -libc::EMFILE]);
    let fd = (result == 0).then(|| OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null")));
    deliver(conn, ctx, user_data, result, 0, fd);
}

fn complete_statx(conn: &mut Conn, ctx: &mut Ctx, input: &mut Input, user_data: u64) {
    let mode = input.pick(&[
        libc::S_IFREG | 0o644,
        libc::S_IFREG | 0o644,
        libc::S_IFDIR | 0o755,
        libc::S_IFIFO | 0o644,
        libc::S_IFREG,
    ]);
    let size = input.pick(&[0u64, 11, 3000, 40_000, 2 << 20]);
    let mtime = i64::from(input.byte().unwrap_or(0));
    ctx.ring.sim_statx(user_data, |st| {
        st.stx_mode = mode as u16;
        st.stx_size = size;
        st.stx_ino = 7;
        st.stx_mtime.tv_sec = 1_700_000_000 + mtime;
    });
    let result = input.pick(&[0, 0, 0, -libc::EIO]);
    deliver(conn, ctx, user_data, result, 0, None);
}

/// A file → pipe splice; if it moves less than asked, the linked pipe → socket splice is
/// cancelled, as the kernel does.
fn complete_splice_in(
    conn: &mut Conn,
    ctx: &mut Ctx,
    input: &mut Input,
    user_data: u64,
    token: Token,
    wire: &mut Wire,
) {
    let len = ctx.ring.sim().splice_len.get(&user_data).copied().unwrap_or(0) as i32;
    let result = input.pick(&[len, len, len, len / 2 + 1, 0, -libc::EIO]);
    wire.disturbed |= result <= 0 && len > 0;
    deliver(conn, ctx, user_data, result, 0, None);
    if result != len {
        let linked = Token { op: Op::SpliceOut, ..token }.encode();
        if ctx.ring.sim().submitted.contains(&linked) {
            deliver(conn, ctx, linked, -libc::ECANCELED, 0, None);
        }
    }
}

/// A cancellation: the operations on the socket (receive, send, socket splice, poll,
/// shutdown) end with ECANCELED, then the cancel itself completes.
fn complete_cancel(conn: &mut Conn, ctx: &mut Ctx, user_data: u64) {
    let on_socket: Vec<u64> = ctx
        .ring
        .sim()
        .submitted
        .iter()
        .copied()
        .filter(|&u| {
            Token::decode(u)
                .is_some_and(|t| matches!(t.op, Op::Recv | Op::Send | Op::SpliceOut | Op::PollOut))
        })
        .collect();
    for target in on_socket {
        deliver(conn, ctx, target, -libc::ECANCELED, 0, None);
    }
    deliver(conn, ctx, user_data, 0, 0, None);
}
