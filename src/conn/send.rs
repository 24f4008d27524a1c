//! Sending a response: the head with a cached body through the ring, or, for a response that
//! ends the connection, at once with the socket closed right behind it; file bodies with
//! `sendfile` from the page cache or spliced file → pipe → socket through the ring; the pieces
//! of a multipart response one after another. Nothing here blocks: a full socket waits for a
//! writability poll, and a file not in the page cache is never read on the worker thread.

use std::os::fd::AsRawFd;
use std::rc::Rc;

use super::{Conn, Exchange, Phase, Recv, ends_connection};
use crate::files::cache::FileInfo;
use crate::http::Status;
use crate::kernel::direct;
use crate::kernel::ring::{Outgoing, SharedBytes, SpliceLeg};
use crate::kernel::sys::Pipe;
use crate::kernel::token::Op;
use crate::ops::metrics::{BodyRoute, CloseReason};
use crate::server::context::Ctx;

/// The most bytes handed to one `sendfile` call within a turn (a turn is
/// `--sendfile-max-chunk`, 2 MiB by default), cut to whole segments (`piece_size`). One call
/// per turn queues the whole turn in the socket before the client may take any of it; pieces
/// of about 64 KiB (one loopback segment, one TSO burst on a network) let the client read and
/// acknowledge while the rest goes out. Measured on 2 cores, 1 MiB bodies over 16
/// connections, two runs of 7 rounds: 21 to 26% less CPU per request and 22 to 26% more
/// requests per second than 2 MiB calls; 32 KiB pieces halved the rate. Two and four
/// segments a piece cost more than one (README, architecture).
const SENDFILE_PIECE: u64 = 64 * 1024;

/// The most plaintext one TLS record carries (rustls seals at most this much per record).
const RECORD_PLAINTEXT: u64 = 16 * 1024;

/// A head (and a body from the cache) going out; the bytes themselves are with the ring while
/// a send is in flight (`ring::Outgoing`).
pub(super) struct Sending {
    /// The file body to send once this is sent.
    pub(super) then: Option<Then>,
    pub(super) ex: Exchange,
}

/// How a file body follows its head.
pub(super) enum Then {
    /// Spliced (or sent with sendfile) through this pipe.
    Splice(BodyFile, Pipe),
    /// Read and sealed in user space, a chunk at a time, into this buffer.
    Seal(BodyFile, Vec<u8>),
}

/// A chunk of a file body being read to be sealed (TLS in user space); the buffer is with the
/// ring while the read is in flight.
pub(super) struct Sealing {
    pub(super) body: BodyFile,
    pub(super) ex: Exchange,
}

/// A slice of a cached file's bytes.
pub(super) type CachedBody = SharedBytes;

/// What follows a response head.
pub(super) enum Body {
    None,
    Cached(CachedBody),
    File(BodyFile),
}

/// A body range still to be sent from a file.
pub(super) struct BodyFile {
    pub(super) info: Rc<FileInfo>,
    pub(super) offset: u64,
    pub(super) remaining: u64,
}

/// A file body going out: `sendfile` while its pages are cached, else file → pipe → socket
/// splices (the pipe is held either way, taken before the head went out).
pub(super) struct Splicing {
    pub(super) body: BodyFile,
    pub(super) pipe: Option<Pipe>,
    pub(super) in_pipe: usize,
    pub(super) ex: Exchange,
    /// The socket was full: a writability poll is in flight and the send timeout runs.
    pub(super) stall: Option<Stall>,
    /// Bytes per `sendfile` call, whole segments of this connection (`piece_size`); 0 until
    /// the first call.
    pub(super) piece: u64,
}

/// Waiting for the client to make room in the socket.
pub(super) struct Stall {
    /// Bytes the client had not acknowledged when the socket was found full (to tell a slow
    /// reader, which keeps acknowledging, from a stalled one).
    pub(super) unacked: Option<u32>,
}

impl Conn {
    /// Sends a response: its head, then `body`.
    pub(super) fn send(&mut self, ctx: &mut Ctx, head: Vec<u8>, body: Body, ex: Exchange) {
        self.send_piece(ctx, head, body, ex, true);
    }

    /// Sends one piece of a response: the first (its head), or a later one (a multipart part).
    pub(super) fn send_piece(
        &mut self,
        ctx: &mut Ctx,
        mut head: Vec<u8>,
        body: Body,
        ex: Exchange,
        first: bool,
    ) {
        if first && self.tls.is_some() {
            if let Some(hsts) = ctx.tls.as_ref().and_then(|t| t.hsts.as_deref()) {
                add_header_line(&mut head, hsts);
            }
        }
        let (cached, then) = match body {
            Body::None => (None, None),
            Body::Cached(c) => (Some(c), None),
            // Sealed in user space: read into memory a chunk at a time.
            Body::File(f) if self.sealed_by_user() => (None, Some(Then::Seal(f, Vec::new()))),
            // The pipe is taken before the head goes out: without one (out of descriptors) the
            // answer is a 503, not a promised body cut short after its head.
            Body::File(f) => match ctx.pipes.take() {
                Some(pipe) => (None, Some(Then::Splice(f, pipe))),
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
        let out = if self.sealed_by_user() {
            let closing = then.is_none() && ex.rest.is_empty() && ends_connection(&ex, ctx);
            let body = cached.as_ref().map_or(&[][..], |c| c.bytes());
            let sealed = self.seal(&head, body, closing, ctx.head_buffer());
            ctx.recycle_head_buffer(head);
            Outgoing { head: sealed, body: None, sent: 0 }
        } else {
            Outgoing { head, body: cached, sent: 0 }
        };
        self.deadline = ctx.now + self.timeout(ctx.cfg.send_timeout);
        let (out, then) = match self.head_sent_now(ctx, out, then, first) {
            Ok((body, pipe)) => return self.start_splice(ctx, body, pipe, ex),
            Err(unsent) => unsent,
        };
        self.phase = Phase::Sending(Box::new(Sending { then, ex }));
        self.send_rest(ctx, out);
    }

    /// Sends the head of a plain connection's file body here and now, which spares the ring
    /// round trip before the body's `sendfile`: what made sendfile cost more than a copy from
    /// memory up to 16 KiB (README, architecture). `MSG_MORE` keeps the head's segment open
    /// for the body's first bytes, as the ring's send does. Gives back what is still to go
    /// through the ring: the head the socket did not take whole (or that failed: the ring's
    /// send meets the same error and aborts), and anything that is not such a head. Only for
    /// a response's first piece, and only when no pipelined request waits behind it: a ring
    /// send between the parts of a multipart response, and between pipelined responses, lets
    /// the worker's other connections go first, and a response finished here answers the next
    /// pipelined request from inside this call, so a client pipelining thousands of requests
    /// would otherwise nest thousands of calls deep.
    fn head_sent_now(
        &self,
        ctx: &mut Ctx,
        mut out: Outgoing,
        then: Option<Then>,
        first: bool,
    ) -> Result<(BodyFile, Pipe), (Outgoing, Option<Then>)> {
        let Some(Then::Splice(body, pipe)) = then else { return Err((out, then)) };
        if !first || !self.inbuf.is_empty() || self.tls.is_some() || out.body.is_some() {
            return Err((out, Some(Then::Splice(body, pipe))));
        }
        if let Ok(n) = direct::send_more_now(self.fd(), &out.head) {
            out.sent = n;
        }
        if out.sent < out.total() {
            return Err((out, Some(Then::Splice(body, pipe))));
        }
        ctx.recycle_head_buffer(out.head);
        Ok((body, pipe))
    }

    /// Hands what is left of `out` to the ring, which owns it until the send completes.
    /// The last piece of a response that ends the connection is sent at once and the socket
    /// closed behind it (see `sent_and_closed`), unless the close must linger (`needs_linger`),
    /// a receive is in flight, or the socket does not take it whole.
    fn send_rest(&mut self, ctx: &mut Ctx, mut out: Outgoing) {
        let fd = self.fd();
        let Phase::Sending(s) = &self.phase else { unreachable!("sending outside the sending phase") };
        let last = s.then.is_none() && s.ex.rest.is_empty();
        // Nothing else may be in flight on the socket: its number is free once it is closed.
        // Not for kernel TLS: the send that holds the last bytes back for the FIN would leave
        // them in an open record.
        let close_now = last
            && !matches!(self.tls, Some(super::Tls::Kernel))
            && ends_connection(&s.ex, ctx)
            && matches!(self.recv, Recv::Off { .. } | Recv::Ended)
            && !self.in_flight.any()
            && !self.needs_linger(ctx, &s.ex);
        if close_now {
            match direct::send_before_close(fd, out.unsent()) {
                Ok(n) => out.sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return self.abort(ctx),
            }
            if out.sent == out.total() {
                return self.sent_and_closed(ctx, out);
            }
        }
        let token = self.token(Op::Send);
        self.in_flight.submit(1, || ctx.ring.send(fd, out, !last, token));
    }

    pub(super) fn on_send(&mut self, result: i32, out: Option<Outgoing>, ctx: &mut Ctx) {
        let Some(mut out) = out else { unreachable!("a send completion without its buffers") };
        if let Phase::Sending(s) = &self.phase {
            crate::testing::hooks::stall_after_send(s.ex.req.as_ref().map_or("", |r| r.target()));
        }
        if result < 0 {
            return self.abort(ctx);
        }
        out.sent += result as usize;
        self.deadline = ctx.now + self.timeout(ctx.cfg.send_timeout);
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
            Some(Then::Splice(body, pipe)) => self.start_splice(ctx, body, pipe, ex),
            Some(Then::Seal(body, buf)) => self.seal_file(ctx, body, buf, ex),
        }
    }

    /// Sends a file body that rustls seals (a TLS connection in user space), a chunk at a
    /// time. While the chunk's pages are in the page cache it is read here at once, and while
    /// the socket takes the sealed records whole they are sent from here too, up to
    /// `--sendfile-max-chunk` body bytes per turn (as `send_file_now` does); otherwise the read
    /// goes through the ring (it may wait for the disk), and the send through the ring's send.
    fn seal_file(&mut self, ctx: &mut Ctx, body: BodyFile, buf: Vec<u8>, ex: Exchange) {
        let mut budget = ctx.cfg.sendfile_max_chunk as usize;
        let chunk = self.seal_chunk();
        let mut next = Some((body, buf, ex));
        while let Some((body, mut buf, ex)) = next.take() {
            let len = body.remaining.min(chunk) as usize;
            buf.resize(len, 0);
            let (file, offset) = (body.info.file.as_raw_fd(), body.offset);
            let read = if direct::pages_cached(file, offset, len as u64) {
                direct::read_cached(file, &mut buf, offset).ok()
            } else {
                None
            };
            let Some(n) = read else {
                let token = self.token(Op::Read);
                self.phase = Phase::Sealing(Box::new(Sealing { body, ex }));
                return self.in_flight.submit(1, || ctx.ring.read_at(file, buf, 0, offset, token));
            };
            next = self.send_sealed_chunk(ctx, body, buf, n, ex, &mut budget);
        }
    }

    /// Body bytes read and sealed at a time by a TLS connection in user space: as much as
    /// fills one `sendfile` piece of this connection's segments once sealed (`chunk_to_seal`).
    fn seal_chunk(&self) -> u64 {
        let Some(super::Tls::User(session)) = &self.tls else { unreachable!("sealing without a session") };
        let piece = piece_size(direct::segment_size(self.fd()));
        chunk_to_seal(piece, session.record_overhead() as u64)
    }

    /// A chunk to seal was read through the ring.
    pub(super) fn on_sealed_read(&mut self, result: i32, buf: Option<Vec<u8>>, ctx: &mut Ctx) {
        let Some(buf) = buf else { unreachable!("a read completion without its buffer") };
        let Phase::Sealing(sl) = self.take_phase() else { unreachable!("checked by the caller") };
        let Sealing { body, ex } = *sl;
        if result < 0 {
            self.phase = Phase::Sealing(Box::new(Sealing { body, ex }));
            return self.abort_for(CloseReason::Error, ctx);
        }
        // Through the ring only, this turn: the read already took one.
        let mut budget = 0;
        if let Some((body, buf, ex)) =
            self.send_sealed_chunk(ctx, body, buf, result as usize, ex, &mut budget)
        {
            self.seal_file(ctx, body, buf, ex);
        }
    }

    /// Seals the `n` bytes read into `buf` and sends them: from here if `budget` allows and
    /// the socket takes them whole (then the body and buffer come back for the next chunk),
    /// else through the ring's send, with the rest of the body to follow its completion.
    fn send_sealed_chunk(
        &mut self,
        ctx: &mut Ctx,
        mut body: BodyFile,
        mut buf: Vec<u8>,
        n: usize,
        ex: Exchange,
        budget: &mut usize,
    ) -> Option<(BodyFile, Vec<u8>, Exchange)> {
        if n == 0 {
            // The file shrank: the promised length cannot be kept, so close.
            crate::log_warn!("file shrank while being sent; closing the connection");
            self.phase = Phase::Sealing(Box::new(Sealing { body, ex }));
            self.abort_for(CloseReason::Error, ctx);
            return None;
        }
        let n = n.min(buf.len());
        buf.truncate(n);
        body.offset += n as u64;
        body.remaining -= (n as u64).min(body.remaining);
        ctx.metrics.file_body_sent(BodyRoute::Sealed, n as u64);
        let last = body.remaining == 0;
        let closing = last && ex.rest.is_empty() && ends_connection(&ex, ctx);
        // A chunk is far larger than a pooled head buffer: a buffer of its own.
        let sealed = self.seal(&buf, &[], closing, Vec::new());
        let mut sent = 0;
        // The turn counts body bytes, as `send_file_now`'s does: a 64 KiB turn takes one
        // 64 KiB chunk, whose records are larger. A partial send hands the turn to the ring.
        if n <= *budget && !closing {
            match direct::send_now(self.fd(), &sealed) {
                Ok(k) => sent = k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.phase = Phase::Sealing(Box::new(Sealing { body, ex }));
                    self.abort(ctx);
                    return None;
                }
            }
            *budget -= n;
        }
        if sent == sealed.len() {
            if last {
                self.next_piece(ctx, ex);
                return None;
            }
            return Some((body, buf, ex));
        }
        let then = (!last).then_some(Then::Seal(body, buf));
        self.phase = Phase::Sending(Box::new(Sending { then, ex }));
        self.deadline = ctx.now + self.timeout(ctx.cfg.send_timeout);
        self.send_rest(ctx, Outgoing { head: sealed, body: None, sent });
        None
    }

    /// A response that ends the connection went out whole at once: close the socket now (a
    /// plain `close`), as a blocking server does, so our FIN follows the response within
    /// microseconds, in the same segment as the response's last bytes (`send_before_close`
    /// holds them back for it). Were the FIN to wait for the ring (even linked behind the send,
    /// it runs only after the whole batch of that submission), a fast client would read the
    /// response and close first, and hold the TIME_WAIT: each later `connect` of that client
    /// pays for the ones it holds (on 16 cores that held new-connection-per-request to half of
    /// nginx's rate, with the client's cores saturated and the server's half idle).
    fn sent_and_closed(&mut self, ctx: &mut Ctx, out: Outgoing) {
        ctx.recycle_head_buffer(out.head);
        let Phase::Sending(s) = self.take_phase() else { unreachable!("sending outside the sending phase") };
        self.response_done(ctx, s.ex, true);
    }

    pub(super) fn start_splice(&mut self, ctx: &mut Ctx, body: BodyFile, pipe: Pipe, ex: Exchange) {
        self.phase = Phase::Splicing(Box::new(Splicing {
            body,
            pipe: Some(pipe),
            in_pipe: 0,
            ex,
            stall: None,
            piece: 0,
        }));
        self.splice_step(ctx);
    }

    /// Next step of a file body: drain the pipe into the socket first; otherwise, if the next
    /// chunk is in the page cache, `sendfile` it from this thread (`send_file_now`); otherwise
    /// refill the pipe from the file with the socket splice linked behind, so a full chunk
    /// moves in one round trip.
    fn splice_step(&mut self, ctx: &mut Ctx) {
        let socket = self.fd();
        let (tok_in, tok_out) = (self.token(Op::SpliceIn), self.token(Op::SpliceOut));
        let Phase::Splicing(sp) = &mut self.phase else { unreachable!("a splice step outside splicing") };
        let Some(pipe) = &sp.pipe else { unreachable!("splicing without its pipe") };
        let drain = |len: u32| SpliceLeg {
            from: pipe.read.as_raw_fd(),
            from_offset: -1,
            to: socket,
            len,
            token: tok_out,
        };
        if sp.in_pipe > 0 {
            self.in_flight.submit(1, || ctx.ring.splice(drain(sp.in_pipe as u32)));
        } else if sp.body.remaining > 0 {
            let chunk = sp.body.remaining.min(ctx.cfg.sendfile_max_chunk);
            if direct::pages_cached(sp.body.info.file.as_raw_fd(), sp.body.offset, chunk) {
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
            self.in_flight.submit(2, || ctx.ring.splice_linked(fill, drain(len)));
        } else {
            let Phase::Splicing(mut sp) = self.take_phase() else { unreachable!("checked above") };
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
        let Phase::Splicing(sp) = &mut self.phase else { unreachable!("a file body step outside splicing") };
        if sp.piece == 0 {
            // A body that fits one piece goes in one call whatever the segments: no need to ask.
            let fits = sp.body.remaining <= SENDFILE_PIECE;
            sp.piece = if fits { SENDFILE_PIECE } else { piece_size(direct::segment_size(socket)) };
        }
        let mut left = chunk;
        let stop = loop {
            if left == 0 {
                break Stop::ChunkSent;
            }
            let piece = left.min(sp.piece) as usize;
            match direct::sendfile_now(socket, sp.body.info.file.as_raw_fd(), sp.body.offset, piece) {
                Ok(0) => break Stop::FileShrank,
                Ok(n) => {
                    let n = (n as u64).min(left);
                    ctx.metrics.file_body_sent(BodyRoute::Sendfile, n);
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
        let Phase::Splicing(sp) = &mut self.phase else { unreachable!("a file body step outside splicing") };
        sp.stall = Some(Stall { unacked: direct::unacked_bytes(fd) });
        self.deadline = ctx.now + self.timeout(ctx.cfg.send_timeout);
        let token = self.token(Op::PollOut);
        self.in_flight.submit(1, || ctx.ring.poll_writable(fd, token));
    }

    pub(super) fn on_splice_in(&mut self, result: i32, ctx: &mut Ctx) {
        let Phase::Splicing(sp) = &mut self.phase else { unreachable!("a file body step outside splicing") };
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

    pub(super) fn on_splice_out(&mut self, result: i32, ctx: &mut Ctx) {
        let Phase::Splicing(sp) = &mut self.phase else { unreachable!("a file body step outside splicing") };
        match result {
            // The file splice came up short and broke the link: send what it moved.
            r if r == -libc::ECANCELED => self.splice_step(ctx),
            r if r == -libc::EAGAIN => self.wait_for_room(ctx),
            r if r <= 0 => self.abort(ctx),
            sent => {
                ctx.metrics.file_body_sent(BodyRoute::Splice, sent as u64);
                sp.in_pipe -= (sent as usize).min(sp.in_pipe);
                self.splice_step(ctx);
            }
        }
    }

    pub(super) fn on_writable(&mut self, result: i32, ctx: &mut Ctx) {
        if result < 0 {
            return self.abort(ctx);
        }
        if let Phase::Splicing(sp) = &mut self.phase {
            sp.stall = None;
        }
        self.splice_step(ctx);
    }

    /// Sends the next piece of a response in several pieces, or finishes it.
    pub(super) fn next_piece(&mut self, ctx: &mut Ctx, mut ex: Exchange) {
        match ex.rest.pop_front() {
            Some((bytes, body)) => self.send_piece(ctx, bytes, body, ex, false),
            None => self.response_done(ctx, ex, false),
        }
    }
}

/// Bytes per `sendfile` call on a connection whose segments carry `segment` bytes: as many
/// whole segments as fit in `SENDFILE_PIECE`, at least one. With `TCP_NODELAY` each call
/// ends in a push, so the part of a piece past its last whole segment goes out alone: 64 KiB
/// on loopback (65,483-byte segments) went out as a full segment and a 53-byte one, twice the
/// packets, each one woken for and acknowledged.
fn piece_size(segment: Option<u32>) -> u64 {
    match segment.map(u64::from) {
        Some(segment) if segment > 0 => (SENDFILE_PIECE / segment).max(1) * segment,
        _ => SENDFILE_PIECE,
    }
}

/// Body bytes whose records, each `overhead` bytes larger than the at most 16 KiB it carries,
/// come to at most `piece` sealed: as many as the records that fill it can carry. Sealed
/// chunks of 64 KiB of body came to 65,624 bytes over TLS 1.3, a full loopback segment and a
/// 141-byte one, as 64 KiB `sendfile` calls did (`piece_size`).
fn chunk_to_seal(piece: u64, overhead: u64) -> u64 {
    let records = piece.div_ceil(RECORD_PLAINTEXT + overhead);
    piece - records * overhead
}

/// Adds a header line (ending in CRLF) to a response head, right after its status line.
fn add_header_line(head: &mut Vec<u8>, line: &[u8]) {
    let at = head.windows(2).position(|w| w == b"\r\n").map_or(head.len(), |p| p + 2);
    head.splice(at..at, line.iter().copied());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_is_whole_segments_within_64_kib_and_never_less_than_one() {
        assert_eq!(piece_size(Some(65_483)), 65_483, "loopback: one segment");
        assert_eq!(piece_size(Some(1_448)), 45 * 1_448, "Ethernet with timestamps");
        assert_eq!(piece_size(Some(100_000)), 100_000, "a segment larger than 64 KiB");
        assert_eq!(piece_size(None), SENDFILE_PIECE);
        assert_eq!(piece_size(Some(0)), SENDFILE_PIECE);
    }

    #[test]
    fn a_sealed_chunk_fills_its_piece_and_never_more() {
        // TLS 1.3 on loopback: four records, the last one 141 bytes short of 16 KiB.
        assert_eq!(chunk_to_seal(65_483, 22), 65_483 - 4 * 22);
        for piece in [65_483, 45 * 1_448, SENDFILE_PIECE, 100_000, 16_406, 16_407, 1_448] {
            for overhead in [21, 22, 29] {
                let body = chunk_to_seal(piece, overhead);
                let sealed = body + body.div_ceil(RECORD_PLAINTEXT) * overhead;
                assert!(body > 0 && sealed <= piece, "{piece} {overhead}: {body} sealed to {sealed}");
                assert!(piece - sealed <= overhead, "{piece} {overhead}: {body} sealed to {sealed}");
            }
        }
    }
}
