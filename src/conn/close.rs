//! Ending a connection: after its last response (at once, or lingering until the client's FIN
//! so that a stray byte cannot turn the close into a reset), on an error, a deadline or a
//! graceful stop. A connection is torn down by cancelling what it has in flight; the worker
//! frees it once the last completion has arrived. Nothing here closes a socket an operation
//! in flight still uses.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::{Conn, Exchange, Phase, Recv, Wait};
use crate::http::Status;
use crate::kernel::direct;
use crate::kernel::token::Op;
use crate::ops::metrics::CloseReason;
use crate::server::context::Ctx;

/// How long a closing connection waits for the client's FIN after ours, so that a client still
/// sending does not turn our close into a reset that destroys the response it has not read.
const LINGER: Duration = Duration::from_secs(2);
/// Response bodies above this always get a lingering close: they can still be in the socket,
/// unacknowledged, long after the last byte is handed over. A smaller one is closed at once
/// unless input is already waiting (nginx's `lingering_close on` makes the same trade): only a
/// client that sends more bytes within the response's last round trip can still lose its tail.
const LINGER_ABOVE: u64 = 64 * 1024;
/// How long a graceful stop waits for a request head that has not arrived (whole) yet.
const STOP_HEAD_GRACE: Duration = Duration::from_secs(1);
impl Conn {
    /// Ends the connection after its last response. Closing a socket that has unread input,
    /// or that receives any later, sends a reset, which destroys whatever of the response the
    /// client has not yet received. So the close lingers (see `linger`) unless the client has
    /// already closed its side, or has sent nothing more (none buffered, and the kernel flagged
    /// no bytes left behind by the last receive) and the response was small enough to be on its
    /// way already: the common case of a small response, closed at no extra cost. Only bytes a
    /// client sends after its request, between that receive and the close (microseconds from
    /// the cache, longer while a file is opened), can still turn it into a reset (nginx closes
    /// without any such check). A large response may still
    /// sit unacknowledged in the socket for a long time (a client that reads slowly), so it
    /// always lingers.
    pub(super) fn close_after(&mut self, ctx: &mut Ctx, ex: &Exchange) {
        // Over TLS, the response's end is said before the FIN: a close without close_notify
        // may be taken for a truncation.
        self.send_close_notify();
        if self.needs_linger(ctx, ex) { self.linger(ctx) } else { self.abort(ctx) }
    }

    /// Whether closing after `ex` must linger (see `close_after`); decided before its last send
    /// too, to close the socket right behind it when it need not.
    pub(super) fn needs_linger(&self, ctx: &Ctx, ex: &Exchange) -> bool {
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
    /// The FIN goes out with a plain `shutdown`, which never blocks: io_uring would hand its
    /// shutdown to a kernel worker thread every time.
    pub(super) fn linger(&mut self, ctx: &mut Ctx) {
        if direct::shutdown_write(self.fd()).is_err() {
            // Not connected any more (the client reset it): nothing to wait for.
            return self.abort(ctx);
        }
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
            Phase::Sealing(sl) => {
                self.log_exchange(ctx, &sl.ex);
                Some(Box::new(Phase::Sealing(sl)))
            }
            // Their descriptors may still be in use by the operation in flight.
            previous @ (Phase::Stating(_) | Phase::Loading(_)) => Some(Box::new(previous)),
            Phase::Handshaking
            | Phase::Waiting(_)
            | Phase::Opening(_)
            | Phase::Listing(_)
            | Phase::Lingering
            | Phase::Closing { .. }
            // Aborted from inside a transition: what it took is the transition's to drop.
            | Phase::Taken => None,
        };
        self.phase = Phase::Closing { _held: held };
        self.inbuf = Vec::new();
        if matches!(self.recv, Recv::Armed { .. } | Recv::Pausing) || self.in_flight.any() {
            // (A socket closed right after its response had nothing in flight.)
            if let Some(socket) = &self.socket {
                ctx.ring.cancel_socket(socket.as_raw_fd(), self.token(Op::Cancel));
            }
        }
    }

    /// The deadline passed: 408 for a half-sent head, 503 for a listing not built within the
    /// send timeout, otherwise just close. Client deadlines apply only while waiting for the
    /// client: not while the server itself opens, reads or splices the file (that work is
    /// bounded by the server, and its next wait on the client sets a fresh deadline). A listing
    /// is not bounded that way (a huge directory, a long queue), so it has its own deadline.
    pub fn on_timeout(&mut self, ctx: &mut Ctx) {
        if matches!(self.phase, Phase::Listing(_)) {
            return self.give_up_listing(ctx);
        }
        if matches!(self.phase, Phase::Handshaking) {
            return self.handshake_failed(crate::tls::session::Failure::Timeout, ctx);
        }
        if self.server_is_working() || self.client_took_bytes() {
            self.deadline = ctx.now + self.timeout(ctx.cfg.send_timeout);
            return;
        }
        if matches!(self.phase, Phase::Waiting(_)) && !self.inbuf.is_empty() && !self.in_flight.any() {
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
        let now = direct::unacked_bytes(fd);
        stall.unacked = now;
        now.is_some_and(|n| n < mark)
    }

    /// The server, not the client, is what the connection waits for.
    fn server_is_working(&self) -> bool {
        match &self.phase {
            Phase::Opening(_) | Phase::Stating(_) | Phase::Loading(_) | Phase::Sealing(_) => true,
            Phase::Splicing(sp) => sp.stall.is_none(),
            Phase::Handshaking
            | Phase::Waiting(_)
            | Phase::Sending(_)
            | Phase::Listing(_)
            | Phase::Lingering
            | Phase::Closing { .. } => false,
            Phase::Taken => unreachable!("a deadline checked inside a transition"),
        }
    }

    /// Graceful stop: idle keep-alive connections close now; busy ones close after their
    /// response. A connection still waiting for (the rest of) a request's head gets to send it
    /// and is answered, as one accepted just before the stop may have its request on the way,
    /// but only for `STOP_HEAD_GRACE`: a client that connected and sends nothing does not hold
    /// the stop up for the whole header timeout. A listing is not waited for (503).
    pub fn on_stop(&mut self, ctx: &mut Ctx) {
        match self.phase {
            Phase::Waiting(Wait::NextRequest) if self.inbuf.is_empty() => {
                self.abort_for(CloseReason::Shutdown, ctx);
            }
            Phase::Waiting(_) | Phase::Handshaking => {
                self.deadline = self.deadline.min(ctx.now + STOP_HEAD_GRACE)
            }
            // Nothing is waited for once stopping: the client is told to come back.
            Phase::Listing(_) => self.give_up_listing(ctx),
            _ => {}
        }
    }
}
