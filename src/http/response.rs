//! Response heads, written straight into the buffer that is sent. Every response carries Server,
//! Date, Content-Type (on anything with a body), Content-Length and Connection; this module
//! must never emit a head whose Content-Length disagrees with the body that follows it.

use super::Status;

pub const SERVER: &str = "ringhttpd";

/// Appends the decimal digits of `n` without going through `fmt`.
pub fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Starts a head: status line, Server and the (pre-formatted, once a second) Date header line.
pub fn start(buf: &mut Vec<u8>, status: Status, date_line: &[u8]) {
    buf.extend_from_slice(b"HTTP/1.1 ");
    push_u64(buf, u64::from(status.code()));
    buf.push(b' ');
    buf.extend_from_slice(status.reason().as_bytes());
    buf.extend_from_slice(b"\r\nServer: ");
    buf.extend_from_slice(SERVER.as_bytes());
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(date_line);
}

pub fn header(buf: &mut Vec<u8>, name: &str, value: &[u8]) {
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

pub fn content_length(buf: &mut Vec<u8>, len: u64) {
    buf.extend_from_slice(b"Content-Length: ");
    push_u64(buf, len);
    buf.extend_from_slice(b"\r\n");
}

/// `Content-Range: bytes START-END/SIZE`
pub fn content_range(buf: &mut Vec<u8>, start: u64, end: u64, size: u64) {
    buf.extend_from_slice(b"Content-Range: bytes ");
    push_u64(buf, start);
    buf.push(b'-');
    push_u64(buf, end);
    buf.push(b'/');
    push_u64(buf, size);
    buf.extend_from_slice(b"\r\n");
}

/// Ends the head with the Connection header and the blank line.
pub fn finish(buf: &mut Vec<u8>, keep_alive: bool) {
    buf.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
}

/// The `Date: ...\r\n` line for a given second.
pub fn date_line(unix: i64) -> Vec<u8> {
    format!("Date: {}\r\n", super::date::imf_fixdate(unix)).into_bytes()
}

/// A complete response with a short HTML page as its body (errors, redirects), plus any
/// `extra` headers. HEAD gets the same head without the body. Returns the body bytes sent.
pub fn page(
    buf: &mut Vec<u8>,
    status: Status,
    date_line: &[u8],
    keep_alive: bool,
    head_only: bool,
    extra: &[(&str, &[u8])],
) -> u64 {
    let body = format!(
        "<html><head><title>{0} {1}</title></head><body><h1>{0} {1}</h1></body></html>\n",
        status.code(),
        status.reason()
    );
    start(buf, status, date_line);
    header(buf, "Content-Type", b"text/html");
    content_length(buf, body.len() as u64);
    if status == Status::MethodNotAllowed {
        header(buf, "Allow", b"GET, HEAD");
    }
    for (name, value) in extra {
        header(buf, name, value);
    }
    finish(buf, keep_alive);
    if head_only {
        return 0;
    }
    buf.extend_from_slice(body.as_bytes());
    body.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(buf: &[u8]) -> (String, Vec<u8>) {
        let text = String::from_utf8_lossy(buf);
        let end = text.find("\r\n\r\n").expect("head ends") + 4;
        (text[..end].to_string(), buf[end..].to_vec())
    }

    #[test]
    fn numbers() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            let mut b = Vec::new();
            push_u64(&mut b, n);
            assert_eq!(b, n.to_string().into_bytes());
        }
    }

    #[test]
    fn page_bodies_match_their_length() {
        let mut buf = Vec::new();
        let sent = page(&mut buf, Status::NotFound, b"Date: x\r\n", true, false, &[]);
        let (head, body) = split(&buf);
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\nServer: ringhttpd\r\nDate: x\r\n"));
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(head.ends_with("Connection: keep-alive\r\n\r\n"));
        assert_eq!(sent, body.len() as u64);
        assert!(!body.is_empty());
    }

    #[test]
    fn head_pages_keep_the_length_but_drop_the_body() {
        let mut buf = Vec::new();
        let sent = page(&mut buf, Status::MethodNotAllowed, b"", false, true, &[("Location", b"/x/")]);
        assert_eq!(sent, 0);
        let (head, body) = split(&buf);
        assert!(head.contains("Allow: GET, HEAD\r\n"));
        assert!(head.contains("Location: /x/\r\n"));
        assert!(head.contains("Connection: close\r\n"));
        assert!(body.is_empty());
        assert!(!head.contains("Content-Length: 0\r\n"));
    }
}
