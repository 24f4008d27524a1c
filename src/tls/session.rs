//! One connection's TLS state in user space: rustls driven by the bytes the ring received, and
//! producing the bytes the ring is to send. Received ciphertext is given to rustls in whole
//! records only, so that when the handshake is over and nothing is half-received the record
//! layer can move to the kernel (`into_kernel`) without a byte of the stream left behind in
//! user memory. Until then (or for good, where the kernel cannot take it) responses are sealed
//! here. Nothing here touches a socket.

use std::io::{Read, Write};

use std::sync::Arc;

use rustls::{ConnectionTrafficSecrets, ProtocolVersion, ServerConfig, ServerConnection};

use crate::kernel::ktls::{Cipher, Direction};

/// The largest TLS record a peer may send (a TLS 1.2 ciphertext: 2^14 + 2048, plus the header).
const MAX_RECORD: usize = 5 + 16384 + 2048;

/// Why a TLS connection failed, as `ringhttpd_tls_handshake_failures_total{reason=...}` reports
/// it while the handshake runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The first bytes were not a TLS handshake record (plain HTTP, garbage).
    NotTls,
    /// The peer broke the protocol, offered nothing acceptable, or sent a fatal alert.
    Protocol,
    /// The peer closed the connection (or sent FIN) before the handshake completed.
    PeerClosed,
    /// The handshake did not complete within the header timeout.
    Timeout,
}

impl Failure {
    pub const ALL: [Failure; 4] = [Failure::NotTls, Failure::Protocol, Failure::PeerClosed, Failure::Timeout];

    pub fn label(self) -> &'static str {
        match self {
            Failure::NotTls => "not_tls",
            Failure::Protocol => "protocol",
            Failure::PeerClosed => "peer_closed",
            Failure::Timeout => "timeout",
        }
    }
}

/// What receiving produced besides plaintext.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The peer sent close_notify: nothing more will come.
    pub peer_closed: bool,
}

/// The traffic keys of both directions, for the kernel.
pub struct KernelKeys {
    pub version: u16,
    pub tx: Direction,
    pub rx: Direction,
}

pub struct Session {
    conn: ServerConnection,
    /// Received bytes of a record not complete yet.
    partial: Vec<u8>,
    /// No byte received yet (the first tells TLS from anything else).
    fresh: bool,
    /// The first bytes were a plain HTTP request line's start.
    plain_http: bool,
    /// The peer's close_notify arrived: rustls reads no record after it.
    peer_closed: bool,
    /// Ours was sealed: nothing received is read any more (rustls must not answer a bad
    /// record with a second alert).
    closing: bool,
}

impl Session {
    pub fn new(config: &Arc<ServerConfig>) -> Session {
        let mut conn = ServerConnection::new(config.clone())
            .expect("a server configuration rustls accepted at start-up");
        // Plaintext is handed over in bounded pieces (a head, a cached body, a file chunk) and
        // drained after each, so rustls needs no limit of its own.
        conn.set_buffer_limit(None);
        Session {
            conn,
            partial: Vec::new(),
            fresh: true,
            plain_http: false,
            peer_closed: false,
            closing: false,
        }
    }

    /// The client spoke plain HTTP to the TLS port (it may be told so in plain HTTP).
    pub fn got_plain_http(&self) -> bool {
        self.plain_http
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// No record is half-received: everything received so far has been through rustls.
    pub fn at_record_boundary(&self) -> bool {
        self.partial.is_empty()
    }

    /// Takes received ciphertext: whole records go through rustls, whose plaintext is appended
    /// to `plain`; the start of a record still arriving waits for the rest.
    pub fn receive(&mut self, bytes: &[u8], plain: &mut Vec<u8>) -> Result<Received, Failure> {
        if self.peer_closed || self.closing {
            return Ok(Received { peer_closed: self.peer_closed });
        }
        if std::mem::take(&mut self.fresh) && bytes.first().is_some_and(|&b| b != 22) {
            self.plain_http = looks_like_http(bytes);
            return Err(Failure::NotTls);
        }
        let received;
        if self.partial.is_empty() {
            let whole = whole_records(bytes)?;
            received = self.process(&bytes[..whole], plain)?;
            self.partial.extend_from_slice(&bytes[whole..]);
        } else {
            self.partial.extend_from_slice(bytes);
            let buffered = std::mem::take(&mut self.partial);
            let whole = whole_records(&buffered)?;
            let result = self.process(&buffered[..whole], plain);
            self.partial = buffered;
            self.partial.drain(..whole);
            received = result?;
        }
        if self.partial.capacity() > MAX_RECORD && self.partial.is_empty() {
            self.partial = Vec::new();
        }
        Ok(received)
    }

    fn process(&mut self, mut records: &[u8], plain: &mut Vec<u8>) -> Result<Received, Failure> {
        let mut received = Received::default();
        while !records.is_empty() {
            if self.conn.read_tls(&mut records).map_err(|_| Failure::Protocol)? == 0 {
                // rustls takes nothing after the peer's close_notify: the rest is ignored.
                self.peer_closed = true;
                return Ok(Received { peer_closed: true });
            }
            let state = self.conn.process_new_packets().map_err(|_| Failure::Protocol)?;
            if state.plaintext_bytes_to_read() > 0 {
                plain.reserve(state.plaintext_bytes_to_read());
                match self.conn.reader().read_to_end(plain) {
                    Ok(_) => received.peer_closed = true,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return Err(Failure::Protocol),
                }
            }
            received.peer_closed |= state.peer_has_closed();
        }
        self.peer_closed |= received.peer_closed;
        Ok(received)
    }

    /// Our close_notify was sealed.
    pub fn closing(&self) -> bool {
        self.closing
    }

    /// The peer sent close_notify: it will send nothing more.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Appends what rustls has to send (handshake flights, an alert, a key update's answer).
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// Appends `first` then `second` (either may be empty), sealed as application data records,
    /// behind anything rustls had queued (a key update's answer goes first, so the peer
    /// switches keys where it must).
    pub fn seal(&mut self, first: &[u8], second: &[u8], out: &mut Vec<u8>) {
        let total = first.len() + second.len();
        out.reserve(total + total.div_ceil(16384) * 22 + 64);
        // One write, so a head and a small body share a record; with unlimited buffering (see
        // `new`) it takes everything.
        let slices = [std::io::IoSlice::new(first), std::io::IoSlice::new(second)];
        let _ = self.conn.writer().write_vectored(&slices);
        self.take_output(out);
    }

    /// Appends a close_notify alert: the response is complete, no truncation.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) {
        self.closing = true;
        self.conn.send_close_notify();
        self.take_output(out);
    }

    /// Bytes each application data record adds to the plaintext it carries: the 5-byte
    /// header and the AEAD's 16-byte tag (every suite offered), plus the inner content type in
    /// TLS 1.3 (RFC 8446, 5.2) or the explicit 8-byte nonce of AES-GCM in TLS 1.2 (RFC 5288).
    pub fn record_overhead(&self) -> usize {
        match (self.conn.protocol_version(), self.kernel_cipher()) {
            (Some(ProtocolVersion::TLSv1_2), Some(Cipher::Aes128Gcm | Cipher::Aes256Gcm)) => 5 + 8 + 16,
            (Some(ProtocolVersion::TLSv1_2), _) => 5 + 16,
            _ => 5 + 1 + 16,
        }
    }

    /// The kernel can take this connection's cipher (kTLS knows the AEADs rustls offers, but
    /// check rather than assume).
    pub fn kernel_cipher(&self) -> Option<Cipher> {
        let suite = self.conn.negotiated_cipher_suite()?;
        match suite.suite() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
            | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => Some(Cipher::Aes128Gcm),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
            | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Some(Cipher::Aes256Gcm),
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => {
                Some(Cipher::Chacha20Poly1305)
            }
            _ => None,
        }
    }

    /// Gives up the record layer: the traffic keys and sequence numbers of both directions,
    /// for the kernel. Only once the handshake is over, nothing is queued to send and no
    /// record is half-received (the caller checks); `None` if rustls still refuses.
    pub fn into_kernel(self) -> Option<KernelKeys> {
        let version = match self.conn.protocol_version()? {
            ProtocolVersion::TLSv1_3 => 0x0304,
            ProtocolVersion::TLSv1_2 => 0x0303,
            _ => return None,
        };
        let secrets = self.conn.dangerous_extract_secrets().ok()?;
        Some(KernelKeys { version, tx: direction(secrets.tx)?, rx: direction(secrets.rx)? })
    }
}

fn direction((seq, secrets): (u64, ConnectionTrafficSecrets)) -> Option<Direction> {
    let (cipher, key, iv) = match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Cipher::Aes128Gcm, key, iv),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Cipher::Aes256Gcm, key, iv),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (Cipher::Chacha20Poly1305, key, iv),
        _ => return None,
    };
    Direction::new(cipher, key.as_ref(), iv.as_ref(), seq)
}

/// `bytes` start like an HTTP/1 request line: a method token of capital letters, a space.
fn looks_like_http(bytes: &[u8]) -> bool {
    let method = bytes.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (3..=7).contains(&method) && bytes.get(method) == Some(&b' ')
}

/// The length of the prefix of `buf` made of whole records; a record longer than any peer may
/// send is a protocol failure.
fn whole_records(buf: &[u8]) -> Result<usize, Failure> {
    let mut at = 0;
    while let Some(header) = buf.get(at..at + 5) {
        let len = 5 + usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len > MAX_RECORD {
            return Err(Failure::Protocol);
        }
        if buf.len() - at < len {
            break;
        }
        at += len;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_records_stop_before_a_partial_one() {
        let record = |len: u16| {
            let mut r = vec![23, 3, 3];
            r.extend_from_slice(&len.to_be_bytes());
            r.extend(std::iter::repeat_n(0, len as usize));
            r
        };
        let mut buf = record(10);
        buf.extend(record(3));
        assert_eq!(whole_records(&buf), Ok(23));
        buf.extend(&record(100)[..50]);
        assert_eq!(whole_records(&buf), Ok(23));
        assert_eq!(whole_records(&buf[..4]), Ok(0));
        assert_eq!(whole_records(&[22, 3, 1, 0xff, 0xff]), Err(Failure::Protocol));
    }

    #[test]
    fn plain_http_is_told_from_garbage() {
        assert!(looks_like_http(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http(b"OPTIONS * HTTP/1.1\r\n"));
        assert!(!looks_like_http(b"\x00\x01garbage"));
        assert!(!looks_like_http(b"SSH-2.0-OpenSSH"));
    }
}
