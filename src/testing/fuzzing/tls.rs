//! The connection driver's TLS mode: one HTTPS connection (`Phase::Handshaking` first, records
//! sealed by rustls after it, as where the kernel has no `tls` module) against a real rustls
//! client in the same process. The client's bytes reach the server only through the simulated
//! receives, cut where the input says; the input also corrupts, drops or injects bytes on their
//! way, has the client read what the server's sends carried (when it says: that is how the
//! client's flights interleave with the server's completions), has the client write requests
//! a piece at a time, and completes the server's operations as the plain driver does.
//!
//! Checked, besides the plain driver's invariants: the client never rejects a byte the server
//! sent while nothing was tampered with; what the client decrypts is a sequence of well-formed
//! HTTP/1.1 responses, never more of them than requests; the server counts at most one
//! handshake outcome per connection. Where nothing was tampered with and no completion ended
//! the exchange early, the driver then lets everything complete in full and requires the
//! handshake to finish, the requests to be answered (all of them, or up to a response that
//! closes the connection) and the server to have counted the handshake.
//!
//! The certificate and key below are test material only, made for this driver: a self-signed
//! ECDSA P-256 certificate for `localhost`, valid 2000-2100, whose private key is published
//! here. Nothing outside the fuzzing feature uses them.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, OnceLock};

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use super::{Input, MAX_STEPS, Wire, complete_oldest, deliver_bytes, end_of_input, finish, pending};
use crate::conn::Conn;
use crate::kernel::token::{Op, Token};
use crate::server::context::{Ctx, TlsCtx};

/// TEST MATERIAL ONLY: the self-signed certificate the fuzzed server presents (ECDSA P-256,
/// subjectAltName `localhost`, not a CA, valid 2000-01-01 to 2100-01-01).
pub const TEST_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBtjCCAVugAwIBAgIBATAKBggqhkjOPQQDAjAtMSswKQYDVQQDDCJyaW5naHR0
cGQgZnV6emluZyB0ZXN0IGNlcnRpZmljYXRlMCAXDTAwMDEwMTAwMDAwMFoYDzIx
MDAwMTAxMDAwMDAwWjAtMSswKQYDVQQDDCJyaW5naHR0cGQgZnV6emluZyB0ZXN0
IGNlcnRpZmljYXRlMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEy//ZWpvXN0ZY
ZqPA1PUQnWAyqmBf0QJYl5beYDBF4QDHe9cJjGBTq7ziGy6hwetPAmcYTkbz1+Gr
CdNTFfQYcKNqMGgwFAYDVR0RBA0wC4IJbG9jYWxob3N0MAwGA1UdEwEB/wQCMAAw
DgYDVR0PAQH/BAQDAgeAMBMGA1UdJQQMMAoGCCsGAQUFBwMBMB0GA1UdDgQWBBTH
Sj//c6Er63v0drAqe+uxYh4EnDAKBggqhkjOPQQDAgNJADBGAiEAyHNHTfzsdDRv
n4RVdOao1vcMGRILYMB3sJUeu2Fg8zkCIQD6hRLL5PqAR/TCuPqcFua8+gPE6/m8
tQ/ii+ZYYSgTCQ==
-----END CERTIFICATE-----
";

/// TEST MATERIAL ONLY: the private key of `TEST_CERT_PEM` (PKCS#8). It is public; never use it
/// for anything but tests.
pub const TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgV7jhuoCzOLXZBbhN
faBgu1hg3zooBTXpt/Mk5vAVbN+hRANCAATL/9lam9c3Rlhmo8DU9RCdYDKqYF/R
AliXlt5gMEXhAMd71wmMYFOrvOIbLqHB608CZxhORvPX4asJ01MV9Bhw
-----END PRIVATE KEY-----
";

/// Requests the client writes (whole, though a piece at a time): the plain driver's, less its
/// unfinished head, which would leave nothing to answer.
const REQUESTS: &[&str] = super::REQUESTS.split_last().expect("requests").1;

/// What the client offers for ALPN: nothing, the server's protocol, or another one before it.
const ALPN_OFFERS: [&[&[u8]]; 3] = [&[], &[b"http/1.1"], &[b"h2", b"http/1.1"]];

/// The `Strict-Transport-Security` line some runs have the server add.
const HSTS: &[u8] = b"Strict-Transport-Security: max-age=63072000\r\n";

/// The server's TLS settings, as `tls::config::Tls::new` makes them, with the test pair as its
/// only certificate (built once: the ticket keys and the session cache are shared by all runs,
/// as by all of a worker's connections).
pub(crate) fn server_config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(crate::tls::config::provider());
            let chain = CertificateDer::pem_slice_iter(TEST_CERT_PEM.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("the test certificate");
            let key = PrivateKeyDer::from_pem_slice(TEST_KEY_PEM.as_bytes()).expect("the test key");
            let pair = rustls::sign::CertifiedKey::from_der(chain, key, &provider).expect("the test pair");
            let resolver = Arc::new(rustls::sign::SingleCertAndKey::from(pair));
            let config =
                crate::tls::config::server_config(provider, resolver).expect("the server's settings");
            Arc::new(config)
        })
        .clone()
}

/// What the client offers, from the input's first byte: TLS 1.3 and 1.2, or one of them; all
/// cipher suites or those of one AEAD; ALPN or not; a session to resume or not.
struct Offer {
    versions: &'static [&'static rustls::SupportedProtocolVersion],
    aead: Option<&'static str>,
    alpn: &'static [&'static [u8]],
    resume: bool,
    hsts: bool,
}

impl Offer {
    fn from_byte(b: u8) -> Offer {
        static BOTH: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static V13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        static V12: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
        Offer {
            versions: match b % 3 {
                0 => &BOTH,
                1 => &V13,
                _ => &V12,
            },
            aead: [None, Some("AES_128_GCM"), Some("AES_256_GCM"), Some("CHACHA20")][usize::from(b / 3 % 4)],
            alpn: ALPN_OFFERS[usize::from(b / 12 % 3)],
            resume: b & 0x40 != 0,
            hsts: b & 0x80 != 0,
        }
    }

    fn client_config(&self) -> Arc<ClientConfig> {
        let mut provider: CryptoProvider = rustls::crypto::ring::default_provider();
        if let Some(aead) = self.aead {
            provider.cipher_suites.retain(|s| format!("{:?}", s.suite()).contains(aead));
        }
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(TEST_CERT_PEM.as_bytes()) {
            roots.add(cert.expect("the test certificate")).expect("a trust anchor");
        }
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(self.versions)
            .expect("suites for the versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = self.alpn.iter().map(|p| p.to_vec()).collect();
        // A store of this run's own: what a run resumes does not depend on earlier runs.
        config.resumption = Resumption::in_memory_sessions(4);
        Arc::new(config)
    }
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a DNS name")
}

/// A complete handshake between the client configuration and the shared server configuration
/// in memory, so that the client holds a ticket (or a session ID) for the fuzzed connection
/// to resume.
fn prime_resumption(config: &Arc<ClientConfig>) {
    let mut client = ClientConnection::new(config.clone(), server_name()).expect("a client");
    let mut server = ServerConnection::new(server_config()).expect("a server");
    for _ in 0..16 {
        let mut moved = false;
        let mut buf = Vec::new();
        while client.wants_write() && client.write_tls(&mut buf).is_ok() {}
        moved |= !buf.is_empty();
        let mut rd = &buf[..];
        while !rd.is_empty() && server.read_tls(&mut rd).is_ok_and(|n| n > 0) {}
        server.process_new_packets().expect("a clean priming handshake (server)");
        buf.clear();
        while server.wants_write() && server.write_tls(&mut buf).is_ok() {}
        moved |= !buf.is_empty();
        let mut rd = &buf[..];
        while !rd.is_empty() && client.read_tls(&mut rd).is_ok_and(|n| n > 0) {}
        client.process_new_packets().expect("a clean priming handshake (client)");
        if !moved && !client.is_handshaking() {
            return;
        }
    }
}

/// A request the client has begun to write: whether it is a HEAD (its response has no body)
/// and whether all of it is written.
#[derive(Clone, Copy)]
struct Started {
    head: bool,
    whole: bool,
}

/// The client, on the far side of the simulated socket.
struct Client {
    tls: ClientConnection,
    /// The client's bytes not yet received by the server.
    to_server: Vec<u8>,
    /// What the client decrypted.
    plain: Vec<u8>,
    /// The client rejected what the server sent (only acceptable after tampering).
    failed: Option<rustls::Error>,
    requests: Vec<Started>,
    /// The rest of the request being written.
    unwritten: &'static [u8],
    /// Something the server was to receive was corrupted, dropped or made up, or the client
    /// sent close_notify before its handshake was done (rustls answers that with an alert):
    /// the client may then reject what the server sends.
    tampered: bool,
    /// The client sent close_notify: it reads nothing more (rustls's client is not made to).
    closed: bool,
    /// The server's socket: what it sent directly (not through the ring) arrives here.
    socket: UnixStream,
}

impl Client {
    /// Moves what the client has to send into `to_server`.
    fn pump(&mut self) {
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut self.to_server).is_err() {
                break;
            }
        }
    }

    /// Collects what the server sent directly on its socket (a response sent whole before the
    /// close, an alert) behind what its ring sends carried.
    fn collect(&mut self, wire: &mut Wire) {
        let mut buf = [0u8; 16384];
        while let Ok(n) = self.socket.read(&mut buf) {
            if n == 0 {
                break;
            }
            wire.sent.extend_from_slice(&buf[..n]);
        }
    }

    /// The client reads everything the server sent so far; panics if it rejects any of it
    /// while nothing was tampered with.
    fn read_server(&mut self, wire: &mut Wire) {
        self.collect(wire);
        let bytes = std::mem::take(&mut wire.sent);
        if self.closed {
            return;
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() && self.failed.is_none() {
            match self.tls.read_tls(&mut rest) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            match self.tls.process_new_packets() {
                Ok(_) => match self.tls.reader().read_to_end(&mut self.plain) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("the client cannot read what it decrypted: {e}"),
                },
                Err(e) => self.failed = Some(e),
            }
        }
        if let Some(e) = &self.failed {
            assert!(self.tampered, "the client rejected the server's bytes ({e}); nothing was tampered with");
        }
        self.pump();
    }

    /// Writes the next piece of a request (starting the one `pick` chooses if none is under
    /// way); `len` bytes of it, or all of it.
    fn write_request(&mut self, pick: u8, len: Option<usize>) {
        if self.failed.is_some() || self.closed {
            return;
        }
        if self.unwritten.is_empty() {
            let request = REQUESTS[usize::from(pick) % REQUESTS.len()];
            self.unwritten = request.as_bytes();
            self.requests.push(Started { head: request.starts_with("HEAD "), whole: false });
        }
        let n = len.unwrap_or(self.unwritten.len()).min(self.unwritten.len());
        let (piece, rest) = self.unwritten.split_at(n);
        if self.tls.writer().write_all(piece).is_err() {
            return;
        }
        self.unwritten = rest;
        if rest.is_empty() {
            if let Some(last) = self.requests.last_mut() {
                last.whole = true;
            }
        }
        self.pump();
    }

    /// Corrupts, drops or makes up bytes on their way to the server, as the input says, at
    /// any point: after the server sealed its close_notify too (rustls must then not be asked
    /// to answer a bad record with a second alert).
    fn tamper(&mut self, kind: u8, input: &mut Input) {
        let at = usize::from(u16::from_le_bytes([input.byte().unwrap_or(0), input.byte().unwrap_or(0)]));
        let arg = input.byte().unwrap_or(0);
        let len = self.to_server.len();
        match kind {
            0 if len > 0 => self.to_server[at % len] ^= arg.max(1),
            1 if len > 0 => {
                let from = at % len;
                let to = if arg >= 240 { len } else { (from + usize::from(arg % 16) + 1).min(len) };
                self.to_server.drain(from..to);
            }
            2 => {
                let made_up = input.bytes(usize::from(arg % 32) + 1).to_vec();
                let from = at % (len + 1);
                self.to_server.splice(from..from, made_up);
            }
            _ => return,
        }
        self.tampered = true;
    }
}

/// Runs one HTTPS connection through the events `data` describes; panics on a broken
/// invariant. The first byte chooses what the client offers (see `Offer`); then each action
/// byte, modulo 16: 0-3 the server receives the client's next bytes (a length byte: 1-64,
/// 1-2017 or a whole buffer; a byte saying whether the receive stays armed), 4-6 the server's
/// oldest operation other than the receive completes (as in the plain driver), 7 the client reads what the server
/// sent, 8 the client writes (a byte picks the request, another the piece: 1-32 bytes or the
/// rest), 9-11 corrupt, drop or make up bytes on their way to the server (two bytes of
/// position, one of argument), 12 time passes, 13 FIN or a reset, 14 a graceful stop, 15 the
/// client sends close_notify or updates its keys.
pub fn drive_tls_connection(data: &[u8]) {
    super::with_context(|ctx| {
        run(ctx, data);
    });
}

/// What a run came to, for the driver's own tests.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// It was let run to completion and checked (`settle`).
    settled: bool,
    /// Complete responses the client decrypted.
    responses: usize,
}

fn run(ctx: &mut Ctx, data: &[u8]) -> Outcome {
    let mut input = Input(data);
    let offer = Offer::from_byte(input.byte().unwrap_or(0));
    ctx.tls = Some(TlsCtx {
        config: server_config(),
        kernel: false,
        hsts: offer.hsts.then(|| HSTS.to_vec()),
        port: 443,
    });
    let config = offer.client_config();
    if offer.resume {
        prime_resumption(&config);
    }
    let (server_end, client_end) = UnixStream::pair().expect("socketpair");
    client_end.set_nonblocking(true).expect("a non-blocking socket");
    let mut client = Client {
        tls: ClientConnection::new(config, server_name()).expect("a client connection"),
        to_server: Vec::new(),
        plain: Vec::new(),
        failed: None,
        requests: Vec::new(),
        unwritten: &[],
        tampered: false,
        closed: false,
        socket: client_end,
    };
    client.pump();
    let outcomes_before = handshake_outcomes(ctx);

    let mut conn = Conn::new(OwnedFd::from(server_end), 0, 1, false, true, ctx);
    conn.arm_recv(ctx);
    let mut wire = Wire::default();
    for _ in 0..MAX_STEPS {
        if conn.is_finished() {
            break;
        }
        let Some(action) = input.byte() else { break };
        match action % 16 {
            0..=3 => receive(&mut conn, ctx, &mut client, &mut input),
            4..=6 if server_busy(ctx) => complete_oldest(&mut conn, ctx, &mut input, &mut wire),
            // Only the receive is in flight: it ends with the client's bytes, FIN or a reset.
            4..=6 => {}
            7 => client.read_server(&mut wire),
            8 => {
                let pick = input.byte().unwrap_or(0);
                let len = input.byte().unwrap_or(255);
                client.write_request(pick, (len < 128).then_some(usize::from(len % 32) + 1));
            }
            9..=11 => client.tamper(action % 16 - 9, &mut input),
            12 => {
                wire.disturbed = true;
                super::time_passes(&mut conn, ctx);
            }
            13 => {
                wire.disturbed = true;
                end_of_input(&mut conn, ctx, &mut input);
            }
            14 => {
                wire.disturbed = true;
                super::stop(&mut conn, ctx);
            }
            _ => {
                if input.byte().unwrap_or(0) % 2 == 0 {
                    wire.disturbed = true;
                    client.tampered |= client.tls.is_handshaking();
                    client.tls.send_close_notify();
                    client.closed = true;
                } else {
                    // Refused during the handshake and under TLS 1.2: then nothing happens.
                    // After close_notify, a record behind it must be ignored.
                    let _ = client.tls.refresh_traffic_keys();
                }
                client.pump();
            }
        }
        client.collect(&mut wire);
    }

    let settled = !client.tampered && !wire.disturbed && !conn.is_finished();
    if settled {
        settle(&mut conn, ctx, &mut client, &mut wire);
        check_settled(ctx, &mut client, &mut wire, outcomes_before);
    }
    finish(&mut conn, ctx, &mut wire);
    client.read_server(&mut wire);
    let responses = check_responses(&client);
    let counted = handshake_outcomes(ctx) - outcomes_before;
    assert!(counted <= 1, "one connection's handshake was counted {counted} times");
    Outcome { settled, responses }
}

/// The client's next bytes, cut where the input says, for the receive in flight (if any).
fn receive(conn: &mut Conn, ctx: &mut Ctx, client: &mut Client, input: &mut Input) {
    let b = input.byte().unwrap_or(0);
    let more = input.byte().unwrap_or(0) % 4 != 0;
    let Some(recv) = pending(ctx, Op::Recv) else { return };
    let len = match b >> 6 {
        0 => usize::from(b & 63) + 1,
        1 => usize::from(b & 63) * 32 + 1,
        _ => RECV_BUFFER,
    };
    let n = len.min(RECV_BUFFER).min(client.to_server.len());
    if n == 0 {
        return;
    }
    let chunk: Vec<u8> = client.to_server.drain(..n).collect();
    deliver_bytes(conn, ctx, recv, &chunk, more);
}

/// An operation other than the receive is in flight.
fn server_busy(ctx: &mut Ctx) -> bool {
    ctx.ring.sim().submitted.iter().any(|&u| Token::decode(u).is_some_and(|t| t.op != Op::Recv))
}

/// The size of the simulated ring's provided buffers: the most one receive completion carries.
const RECV_BUFFER: usize = 2048;

/// Lets everything run to completion in full: every request written, every byte received by
/// the other side, every operation completed with its whole result; until nothing moves.
fn settle(conn: &mut Conn, ctx: &mut Ctx, client: &mut Client, wire: &mut Wire) {
    if client.requests.is_empty() {
        client.write_request(0, None);
    }
    if !client.unwritten.is_empty() {
        client.write_request(0, None);
    }
    let mut full = Input(&[]);
    for _ in 0..MAX_STEPS {
        if conn.is_finished() {
            break;
        }
        let mut moved = false;
        if let Some(recv) = pending(ctx, Op::Recv) {
            if !client.to_server.is_empty() {
                let n = client.to_server.len().min(RECV_BUFFER);
                let chunk: Vec<u8> = client.to_server.drain(..n).collect();
                deliver_bytes(conn, ctx, recv, &chunk, false);
                moved = true;
            }
        }
        if server_busy(ctx) {
            complete_oldest(conn, ctx, &mut full, wire);
            moved = true;
        }
        client.collect(wire);
        if !wire.sent.is_empty() {
            client.read_server(wire);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(!wire.disturbed, "a full completion disturbed the exchange");
}

/// After `settle`: the handshake is done and counted, and the requests are answered, all of
/// them or up to a response that closes the connection.
fn check_settled(ctx: &mut Ctx, client: &mut Client, wire: &mut Wire, outcomes_before: u64) {
    client.read_server(wire);
    assert!(
        !client.tls.is_handshaking(),
        "an untampered handshake did not complete once everything was delivered"
    );
    assert_eq!(handshake_outcomes(ctx) - outcomes_before, 1, "the completed handshake was not counted once");
    let (responses, incomplete) = responses(client);
    assert!(!incomplete, "a response is incomplete once everything was delivered");
    let asked = client.requests.len();
    let answered = responses.len();
    let closed = responses.last().is_some_and(|r| r.closes);
    assert!(
        answered == asked || (answered > 0 && closed),
        "{answered} responses to {asked} requests, the last not closing the connection; client read {:?}",
        String::from_utf8_lossy(&client.plain[..client.plain.len().min(2000)])
    );
}

/// The client's plaintext is well-formed responses (the last possibly cut short), no more of
/// them than requests begun; returns how many are complete.
fn check_responses(client: &Client) -> usize {
    let (responses, _) = responses(client);
    assert!(
        responses.len() <= client.requests.len(),
        "{} responses to {} requests",
        responses.len(),
        client.requests.len()
    );
    responses.len()
}

struct Response {
    closes: bool,
}

/// Splits what the client decrypted into complete responses; `true` beside them if it ends
/// inside one. Panics on bytes that are no HTTP/1.1 response.
fn responses(client: &Client) -> (Vec<Response>, bool) {
    let plain = &client.plain;
    let mut out = Vec::new();
    let mut at = 0;
    while at < plain.len() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        let head_len = match parsed.parse(&plain[at..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return (out, true),
            Err(e) => panic!(
                "response {} is malformed ({e}): {:?}",
                out.len() + 1,
                String::from_utf8_lossy(&plain[at..plain.len().min(at + 300)])
            ),
        };
        assert_eq!(parsed.version, Some(1), "response {} is not HTTP/1.1", out.len() + 1);
        let status = parsed.code.unwrap_or(0);
        let header =
            |name: &str| parsed.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
        let closes = header("connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
        // A HEAD's response has no body, unless it is the 408 for a head that never arrived
        // whole (the server cannot know it was a HEAD).
        let head_request = client.requests.get(out.len()).is_some_and(|r| r.head) && status != 408;
        let body = if head_request || status == 304 || status == 204 || (100..200).contains(&status) {
            0
        } else {
            let length =
                header("content-length").unwrap_or_else(|| panic!("a {status} without Content-Length"));
            std::str::from_utf8(length)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("a {status} with Content-Length {length:?}"))
        };
        if plain.len() - at < head_len + body {
            return (out, true);
        }
        at += head_len + body;
        out.push(Response { closes });
        assert!(
            !closes || at == plain.len(),
            "{} bytes after a response that closes the connection",
            plain.len() - at
        );
    }
    (out, false)
}

/// Handshake outcomes the server counted so far (completed and failed).
fn handshake_outcomes(ctx: &Ctx) -> u64 {
    ctx.registry
        .render()
        .lines()
        .filter(|l| {
            l.starts_with("ringhttpd_tls_handshakes_total ")
                || l.starts_with("ringhttpd_tls_handshake_failures_total{")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The driver's server configuration is the server's own: built by `tls::config::Tls::new`
    /// from the same pair, its settings match.
    #[test]
    fn server_config_matches_the_servers_own() {
        let dir = std::env::temp_dir().join(format!("ringhttpd-fuzz-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, TEST_CERT_PEM).unwrap();
        std::fs::write(&key, TEST_KEY_PEM).unwrap();
        let real = crate::tls::config::Tls::new(vec![crate::tls::certs::PairPaths { cert, key }])
            .expect("the server accepts the test pair");
        std::fs::remove_dir_all(&dir).unwrap();
        let (real, ours) = (&real.config, server_config());
        assert_eq!(real.alpn_protocols, ours.alpn_protocols);
        assert_eq!(real.send_tls13_tickets, ours.send_tls13_tickets);
        assert_eq!(real.max_early_data_size, ours.max_early_data_size);
        assert_eq!(real.enable_secret_extraction, ours.enable_secret_extraction);
        assert_eq!(real.ticketer.enabled(), ours.ticketer.enabled());
        assert_eq!(real.session_storage.can_cache(), ours.session_storage.can_cache());
        assert_eq!(real.ignore_client_order, ours.ignore_client_order);
        assert_eq!(real.max_fragment_size, ours.max_fragment_size);
        assert_eq!(format!("{:?}", real.crypto_provider()), format!("{:?}", ours.crypto_provider()));
    }

    fn outcome(data: &[u8]) -> Outcome {
        let mut outcome = None;
        crate::testing::fuzzing::with_context(|ctx| outcome = Some(run(ctx, data)));
        outcome.unwrap()
    }

    /// The client writes whole requests and nothing else happens: the driver settles the
    /// exchange, and every request is answered (or all up to a closing response).
    #[test]
    fn clean_exchanges_settle_with_responses() {
        // Both versions, all suites; TLS 1.3 only, resumed, with HSTS; TLS 1.2 only, resumed.
        for offer in [0, 0xc1, 0x42, 2 + 3 * 3, 1 + 12] {
            // GET /index.html, HEAD with two ranges, GET HTTP/1.0 (closes).
            let data = [offer, 8, 0, 255, 8, 1, 255, 8, 3, 255];
            assert_eq!(outcome(&data), Outcome { settled: true, responses: 3 }, "offer {offer:#x}");
        }
        // A request written in pieces of 1 and 5 bytes before the handshake; the ClientHello
        // received in pieces of 5 and 3 bytes and the rest, each flight sent and read in turn.
        let data = [0, 8, 0, 0, 8, 0, 4, 0, 4, 1, 0, 2, 1, 0, 255, 0, 4, 0, 7, 0, 255, 0, 4, 0, 7];
        assert_eq!(outcome(&data), Outcome { settled: true, responses: 1 });
    }

    /// A flipped byte in the ClientHello is never accepted silently: no response, and no
    /// settling.
    #[test]
    fn tampering_ends_the_exchange() {
        let data = [0, 9, 40, 0, 1, 0, 255, 0, 4, 0, 7, 8, 0, 255, 0, 255, 0, 4, 0, 7];
        assert_eq!(outcome(&data), Outcome { settled: false, responses: 0 });
    }
}
