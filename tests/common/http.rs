//! A deliberately strict HTTP/1.1 client side: raw request bytes out, parsed responses in.
//!
//! The parser is written here rather than borrowed so that it checks the server's framing:
//! every line must end in CRLF, header names must be tokens, and a body is exactly
//! `Content-Length` bytes. Every socket operation has a timeout, so a silent server fails a test
//! instead of hanging it.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Bound on every connect, read and write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One parsed response.
#[derive(Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Header lines in arrival order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    /// The values of every header called `name` (case-insensitive), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// The value of the header `name`; panics with the whole response if it is missing.
    pub fn expect_header(&self, name: &str) -> &str {
        self.header(name).unwrap_or_else(|| panic!("no {name} header in {self:#?}"))
    }

    /// The parsed `Content-Length`.
    pub fn content_length(&self) -> usize {
        let values = self.all("content-length");
        assert_eq!(values.len(), 1, "exactly one Content-Length in {self:#?}");
        values[0].parse().expect("numeric Content-Length")
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the server announced that it closes the connection.
    pub fn says_close(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Shows the body as text, cut to a readable length, so failure messages stay legible.
impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.body[..self.body.len().min(300)];
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("body", &String::from_utf8_lossy(shown))
            .finish()
    }
}

/// Result of parsing the start of a buffer.
#[derive(Debug)]
pub enum Parsed {
    /// A whole response and the number of bytes it used.
    Complete(Response, usize),
    /// More bytes are needed.
    Partial,
}

/// Parses one response from the start of `buf`. `head` says the request was HEAD, so no body
/// follows the headers whatever `Content-Length` says.
pub fn parse_response(buf: &[u8], head: bool) -> Result<Parsed, String> {
    let Some(head_len) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        return check_partial_head(buf).map(|()| Parsed::Partial);
    };
    let text =
        std::str::from_utf8(&buf[..head_len - 4]).map_err(|_| "response head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let (status, reason) = parse_status_line(lines.next().unwrap_or(""))?;
    let headers = lines.map(parse_header_line).collect::<Result<Vec<_>, _>>()?;
    let mut response = Response { status, reason, headers, body: Vec::new() };
    let body_len =
        if head || status < 200 || status == 204 || status == 304 { 0 } else { declared_length(&response)? };
    if buf.len() < head_len + body_len {
        return Ok(Parsed::Partial);
    }
    response.body = buf[head_len..head_len + body_len].to_vec();
    Ok(Parsed::Complete(response, head_len + body_len))
}

/// Parses back-to-back responses filling all of `buf`; `heads[i]` says whether request `i` was
/// HEAD (missing entries mean GET). Panics on malformed or incomplete input.
pub fn parse_responses(buf: &[u8], heads: &[bool]) -> Vec<Response> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let head = heads.get(out.len()).copied().unwrap_or(false);
        match parse_response(&buf[at..], head) {
            Ok(Parsed::Complete(r, used)) => {
                out.push(r);
                at += used;
            }
            Ok(Parsed::Partial) => panic!(
                "truncated response #{} after {} complete; bytes: {:?}",
                out.len() + 1,
                out.len(),
                String::from_utf8_lossy(&buf[at..buf.len().min(at + 600)])
            ),
            Err(e) => panic!(
                "bad response #{} ({e}); bytes: {:?}",
                out.len() + 1,
                String::from_utf8_lossy(&buf[at..buf.len().min(at + 600)])
            ),
        }
    }
    out
}

fn check_partial_head(buf: &[u8]) -> Result<(), String> {
    let bare_lf = buf.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || buf[i - 1] != b'\r'));
    if bare_lf { Err("bare LF in response head".into()) } else { Ok(()) }
}

fn parse_status_line(line: &str) -> Result<(u16, String), String> {
    let rest = line
        .strip_prefix("HTTP/1.1 ")
        .ok_or_else(|| format!("status line {line:?} does not start with \"HTTP/1.1 \""))?;
    let (code, reason) =
        rest.split_once(' ').ok_or_else(|| format!("status line {line:?} has no reason phrase"))?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("status code {code:?} is not three digits"));
    }
    let status = code.parse().map_err(|_| "bad status code".to_string())?;
    Ok((status, reason.to_string()))
}

fn parse_header_line(line: &str) -> Result<(String, String), String> {
    if line.contains('\n') || line.contains('\r') {
        return Err(format!("header line {line:?} contains a bare CR or LF"));
    }
    let (name, value) = line.split_once(':').ok_or_else(|| format!("header line {line:?} has no colon"))?;
    let is_token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_token) {
        return Err(format!("header name {name:?} is not a token"));
    }
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    Ok((name.to_string(), value.to_string()))
}

fn declared_length(response: &Response) -> Result<usize, String> {
    let values = response.all("content-length");
    if response.header("transfer-encoding").is_some() {
        return Err("unexpected Transfer-Encoding in a response".into());
    }
    match values.as_slice() {
        [one] => one.parse().map_err(|_| format!("Content-Length {one:?} is not a number")),
        [] => Err("response has no Content-Length".into()),
        _ => Err(format!("several Content-Length headers: {values:?}")),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether raw request bytes are a HEAD request.
pub fn is_head(raw: &[u8]) -> bool {
    raw.starts_with(b"HEAD ")
}

/// A connected stream with timeouts set and Nagle off.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Writes `raw`, tolerating a server that closed early (it may answer before reading it all).
pub fn send_lenient(stream: &mut TcpStream, raw: &[u8]) {
    match stream.write_all(raw) {
        Ok(()) => {}
        Err(e) if is_disconnect(&e) => {}
        Err(e) => panic!("writing request: {e}"),
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted)
}

/// Reads until the server closes. A reset counts as a close. Panics if the server neither sends
/// nor closes within [`IO_TIMEOUT`].
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if is_disconnect(&e) => return out,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "server did not close within {IO_TIMEOUT:?} ({e}); received so far: {:?}",
                String::from_utf8_lossy(&out[..out.len().min(600)])
            ),
        }
    }
}

/// Opens a connection, sends `raw` and returns everything the server sends until it closes.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    send_lenient(&mut stream, raw);
    read_to_close(&mut stream)
}

/// Sends one request on a fresh connection and reads to EOF; exactly one response must arrive.
/// The request must end the connection (`Connection: close`, HTTP/1.0, or an error).
pub fn request(addr: SocketAddr, raw: &[u8]) -> Response {
    let bytes = exchange(addr, raw);
    let mut responses = parse_responses(&bytes, &[is_head(raw)]);
    assert_eq!(
        responses.len(),
        1,
        "expected one response to {:?}, got {responses:#?}",
        String::from_utf8_lossy(raw)
    );
    responses.remove(0)
}

/// `GET path` over HTTP/1.1 with `Connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, get_request(path).as_bytes())
}

/// `METHOD path` over HTTP/1.1 with extra `headers` and `Connection: close`, on its own
/// connection.
pub fn send_with(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("Connection: close\r\n\r\n");
    request(addr, raw.as_bytes())
}

/// `HEAD path` over HTTP/1.1 with `Connection: close`.
pub fn head(addr: SocketAddr, path: &str) -> Response {
    let raw = format!("HEAD {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    request(addr, raw.as_bytes())
}

/// The bytes of `GET path` over HTTP/1.1 with `Connection: close`.
pub fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

/// The bytes of `GET path` over HTTP/1.1 on a connection meant to stay open.
pub fn get_keepalive(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// Makes the next close of `stream` send RST instead of FIN (SO_LINGER with a zero timeout).
pub fn set_linger_zero(stream: &TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: the fd is open for the lifetime of `stream`; `linger` is a valid `struct linger`
    // and the length passed is its exact size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

/// Segments received so far on `stream` that carried no data (the SYN-ACK, pure ACKs, a FIN
/// of its own), from TCP_INFO.
pub fn segments_in_without_data(stream: &TcpStream) -> u32 {
    // SAFETY: tcp_info is plain old data; all-zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the fd is open for the lifetime of `stream`; the kernel writes at most `len`
    // bytes into `info` and stores the length it wrote.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", io::Error::last_os_error());
    info.tcpi_segs_in - info.tcpi_data_segs_in
}

/// A keep-alive connection: sends requests and reads exactly one response at a time, keeping any
/// bytes that arrive beyond it for the next read.
pub struct Client {
    stream: TcpStream,
    /// Received bytes not yet consumed by a parsed response.
    pending: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client { stream: connect(addr), pending: Vec::new() }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn send(&mut self, raw: &[u8]) {
        send_lenient(&mut self.stream, raw);
    }

    /// Sends `raw` and reads its response.
    pub fn roundtrip(&mut self, raw: &[u8]) -> Response {
        self.send(raw);
        self.read_response(is_head(raw))
    }

    /// Reads exactly one response; panics on timeout, early close or malformed bytes.
    pub fn read_response(&mut self, head: bool) -> Response {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match parse_response(&self.pending, head) {
                Ok(Parsed::Complete(response, used)) => {
                    self.pending.drain(..used);
                    return response;
                }
                Ok(Parsed::Partial) => {}
                Err(e) => panic!("bad response ({e}): {:?}", self.pending_text()),
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("connection closed mid-response: {:?}", self.pending_text()),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("reading response: {e}; have {:?}", self.pending_text()),
            }
        }
    }

    /// Asserts that the server closes the connection without sending anything more.
    pub fn expect_closed(&mut self) {
        let rest = read_to_close(&mut self.stream);
        assert!(
            self.pending.is_empty() && rest.is_empty(),
            "unexpected bytes before close: {:?}{:?}",
            self.pending_text(),
            String::from_utf8_lossy(&rest)
        );
    }

    /// Closes our sending side; the server sees EOF after what was sent.
    pub fn shutdown_write(&self) {
        self.stream.shutdown(Shutdown::Write).expect("shutdown(Write)");
    }

    fn pending_text(&self) -> String {
        String::from_utf8_lossy(&self.pending[..self.pending.len().min(600)]).into_owned()
    }
}

/// A connected IPv4 stream whose receive buffer is `bytes` (set before connecting, so the
/// advertised window is small from the start).
pub fn connect_small_rcvbuf(addr: SocketAddr, bytes: libc::c_int) -> TcpStream {
    let SocketAddr::V4(v4) = addr else { panic!("the tests listen on IPv4") };
    // SAFETY: a plain syscall without memory arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just returned by socket() and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the descriptor is open; the option value is a c_int and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
        sin_zero: [0; 8],
    };
    // SAFETY: `sin` is a valid sockaddr_in and its exact size is passed; the descriptor is open.
    let rc = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}
