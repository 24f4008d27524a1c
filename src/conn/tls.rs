//! A TLS connection's own steps: the handshake (rustls's flights out through the ring's sends,
//! the client's in through its receives, the header timeout over both), the move of the record
//! layer to the kernel once the handshake is done (kTLS, so bodies still go out with sendfile
//! and splice), and, where the kernel cannot take it, the sealing and opening of records in
//! user space. After the handshake a TLS connection runs the plain connection's machine; this
//! module only changes which bytes go through it. It never blocks: alerts and close_notify
//! records are sent only if the socket takes them at once.

use super::{Conn, Phase, Recv, Wait};
use crate::kernel::ktls;
use crate::kernel::ring::Outgoing;
use crate::kernel::token::Op;
use crate::ops::metrics::{CloseReason, TlsMode};
use crate::server::context::Ctx;
use crate::tls::session::{Failure, Received, Session};

/// The answer, in plain HTTP, to a plain HTTP request sent to the TLS port.
const PLAIN_HTTP_TO_TLS_PORT: &[u8] = b"HTTP/1.1 400 Bad Request\r\nServer: ringhttpd\r\n\
Content-Type: text/plain\r\nContent-Length: 50\r\nConnection: close\r\n\r\n\
This is an HTTPS port: send the request with TLS.\n";

/// Who seals and opens a TLS connection's records.
pub(super) enum Tls {
    /// rustls, in user space: during the handshake, and after it where the kernel cannot.
    User(Box<Session>),
    /// The kernel (kTLS): the socket carries plaintext for this side.
    Kernel,
}

impl Tls {
    pub(super) fn new(ctx: &Ctx) -> Option<Tls> {
        ctx.tls.as_ref().map(|t| Tls::User(Box::new(Session::new(&t.config))))
    }
}

impl Conn {
    /// rustls seals this connection's records.
    pub(super) fn sealed_by_user(&self) -> bool {
        matches!(self.tls, Some(Tls::User(_)))
    }

    /// File bodies may go out with `sendfile`: the kernel writes them as they are (plain) or
    /// seals them itself (kernel TLS).
    pub(super) fn can_sendfile(&self) -> bool {
        !self.sealed_by_user()
    }

    /// The client will send nothing more: it sent FIN, or (over TLS) close_notify.
    pub(super) fn client_done_sending(&self) -> bool {
        self.recv == Recv::Ended || matches!(&self.tls, Some(Tls::User(session)) if session.peer_closed())
    }

    /// Hands received bytes to the connection: plaintext straight to `inbuf`, ciphertext of a
    /// connection in user space through rustls first.
    pub(super) fn take_input(
        tls: &mut Option<Tls>,
        inbuf: &mut Vec<u8>,
        bytes: &[u8],
    ) -> Result<Received, Failure> {
        match tls {
            Some(Tls::User(session)) => session.receive(bytes, inbuf),
            _ => {
                inbuf.extend_from_slice(bytes);
                Ok(Received::default())
            }
        }
    }

    /// The next step of a handshake: send what rustls has to say, else wait for the client,
    /// else (it is done) serve.
    pub(super) fn handshake_step(&mut self, ctx: &mut Ctx) {
        let Some(Tls::User(session)) = &mut self.tls else { unreachable!("a handshake without a session") };
        let mut flight = Vec::new();
        session.take_output(&mut flight);
        if !flight.is_empty() {
            self.phase = Phase::Handshaking;
            return self.send_flight(ctx, Outgoing { head: flight, body: None, sent: 0 });
        }
        if session.is_handshaking() {
            self.phase = Phase::Handshaking;
            return self.arm_recv(ctx);
        }
        self.handshake_done(ctx);
    }

    fn send_flight(&mut self, ctx: &mut Ctx, out: Outgoing) {
        let (fd, token) = (self.fd(), self.token(Op::Send));
        self.in_flight.submit(1, || ctx.ring.send(fd, out, false, token));
    }

    /// A handshake flight's send completed.
    pub(super) fn on_flight_sent(&mut self, result: i32, out: Option<Outgoing>, ctx: &mut Ctx) {
        let Some(mut out) = out else { unreachable!("a send completion without its buffers") };
        if result < 0 {
            return self.handshake_failed(Failure::PeerClosed, ctx);
        }
        out.sent += result as usize;
        if out.sent < out.total() {
            return self.send_flight(ctx, out);
        }
        self.handshake_step(ctx);
    }

    /// The handshake is over and nothing is left to send: move the record layer to the kernel
    /// where it can go, then read requests as on any connection.
    fn handshake_done(&mut self, ctx: &mut Ctx) {
        let Some(Tls::User(session)) = self.tls.take() else { unreachable!("checked by the caller") };
        let try_kernel = ctx.tls.as_ref().is_some_and(|t| t.kernel)
            && session.at_record_boundary()
            && session.kernel_cipher().is_some()
            && matches!(self.recv, Recv::Off { .. });
        let tls = if try_kernel { self.hand_to_kernel(session, ctx) } else { Some(Tls::User(session)) };
        let Some(tls) = tls else {
            return self.abort_for(CloseReason::Error, ctx);
        };
        let mode = if matches!(tls, Tls::Kernel) { TlsMode::Kernel } else { TlsMode::User };
        crate::log_debug!(
            "TLS handshake done; records sealed by {}",
            if mode == TlsMode::Kernel { "the kernel" } else { "rustls" }
        );
        ctx.metrics.tls_handshake(Ok(mode));
        self.tls = Some(tls);
        self.phase = Phase::Waiting(Wait::Head);
        self.process_input(ctx);
        if matches!(self.phase, Phase::Waiting(_)) {
            self.arm_recv(ctx);
        }
    }

    /// Installs the connection's keys in the kernel. The session stays in user space where the
    /// kernel has no `tls` module (noted, so later connections do not ask again) or refuses the
    /// ULP; `None` where the keys left rustls but the kernel then refused them.
    fn hand_to_kernel(&mut self, session: Box<Session>, ctx: &mut Ctx) -> Option<Tls> {
        let fd = self.fd();
        if let Err(e) = ktls::attach(fd) {
            if e.raw_os_error() == Some(libc::ENOENT) {
                if let Some(t) = &mut ctx.tls {
                    t.kernel = false;
                }
                crate::log_info!("the kernel has no tls module: HTTPS records are sealed by rustls");
            }
            return Some(Tls::User(session));
        }
        let keys = session.into_kernel()?;
        match ktls::install(fd, keys.version, &keys.tx, &keys.rx) {
            Ok(()) => Some(Tls::Kernel),
            Err(e) => {
                crate::log_warn!("kernel TLS refused the keys ({e}); closing the connection");
                None
            }
        }
    }

    /// The handshake failed: counted by reason, an alert sent if rustls has one and the socket
    /// takes it, and the connection closed.
    pub(super) fn handshake_failed(&mut self, failure: Failure, ctx: &mut Ctx) {
        ctx.metrics.tls_handshake(Err(failure));
        if let Some(Tls::User(session)) = &self.tls {
            if session.got_plain_http() && !self.in_flight.any() {
                // As nginx does: a person who typed http:// for this port learns why.
                let _ = crate::kernel::direct::send_before_close(self.fd(), [PLAIN_HTTP_TO_TLS_PORT, &[]]);
            }
        }
        let reason = match failure {
            Failure::Timeout => CloseReason::HeaderTimeout,
            Failure::PeerClosed | Failure::NotTls | Failure::Protocol => CloseReason::Client,
        };
        self.fail_tls(reason, ctx);
    }

    /// Closes a TLS connection that broke the protocol, with rustls's alert if the socket
    /// takes it now.
    pub(super) fn fail_tls(&mut self, reason: CloseReason, ctx: &mut Ctx) {
        if let Some(Tls::User(session)) = &mut self.tls {
            let mut alert = Vec::new();
            session.take_output(&mut alert);
            if !alert.is_empty() && !self.in_flight.any() {
                let _ = crate::kernel::direct::send_before_close(self.fd(), [&alert, &[]]);
            }
        }
        self.abort_for(reason, ctx);
    }

    /// A kernel TLS receive failed with EIO: the next record is not application data. A
    /// close_notify ends the client's side; anything else (a fatal alert, a TLS 1.3 key update
    /// the kernel cannot follow) closes the connection.
    pub(super) fn on_control_record(&mut self, ctx: &mut Ctx) {
        let mut record = [0u8; 512];
        match ktls::read_control_record(self.fd(), &mut record) {
            Ok((ktls::ALERT, n)) if n >= 2 && record[1] == 0 => self.on_peer_closed(ctx),
            Ok((kind, _)) => {
                crate::log_debug!("kernel TLS: record of type {kind} from the client; closing");
                if kind != ktls::ALERT {
                    ktls::send_unexpected_message(self.fd());
                }
                self.abort_for(CloseReason::Client, ctx);
            }
            Err(_) => self.abort(ctx),
        }
    }

    /// Seals plaintext (`first`, then `second`) for a connection in user space into `out` (a
    /// head buffer from the worker's pool, so a small response costs no allocation); the last
    /// piece of a response that ends the connection carries a close_notify behind it.
    pub(super) fn seal(&mut self, first: &[u8], second: &[u8], closing: bool, mut out: Vec<u8>) -> Vec<u8> {
        let Some(Tls::User(session)) = &mut self.tls else { unreachable!("sealing without a session") };
        session.seal(first, second, &mut out);
        if closing {
            session.close_notify(&mut out);
        }
        out
    }

    /// Before the socket closes after the last response: close_notify, unless it was sealed
    /// behind that response already; sent only if the socket takes it at once.
    pub(super) fn send_close_notify(&mut self) {
        let fd = self.fd();
        match &mut self.tls {
            Some(Tls::Kernel) => ktls::send_close_notify(fd),
            Some(Tls::User(session)) if !session.closing() => {
                let mut alert = Vec::new();
                session.close_notify(&mut alert);
                if !self.in_flight.any() {
                    let _ = crate::kernel::direct::send_now(fd, &alert);
                }
            }
            _ => {}
        }
    }
}
