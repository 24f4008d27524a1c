//! Parses one request head from bytes into the owned facts the server acts on.
//!
//! Incomplete input is `Parse::Partial`; every malformed input maps to the status it deserves
//! (400, 405 is decided later, 414, 431, 505). This module must never allocate in proportion to
//! anything but the head it was given, and never look at the filesystem.

use super::Status;

/// Most header lines a request may carry; one more is a 431.
pub const MAX_HEADERS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// A syntactically valid method this server does not serve (answered 405).
    Other,
}

/// What a request asks for, copied out of the receive buffer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    pub method_name: String,
    pub target: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub keep_alive: bool,
    /// The Host header, as sent (validated).
    pub host: Option<String>,
    /// The request announced a body (Content-Length > 0 or Transfer-Encoding); the server does
    /// not read bodies, so such a connection closes after the response.
    pub has_body: bool,
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    /// HTTP-dates are kept as sent: their meaning (RFC 850's two-digit years) depends on the
    /// time they are evaluated at.
    pub if_modified_since: Option<String>,
    pub if_unmodified_since: Option<String>,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub accept_encoding: Option<String>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
}

impl Request {
    /// The answer carries no body: the one rule for HEAD (RFC 9110 §9.3.2), whatever the
    /// status and wherever the response is built.
    pub fn head_only(&self) -> bool {
        self.method() == Method::Head
    }

    pub fn method(&self) -> Method {
        match self.method_name.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            _ => Method::Other,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// The head is not complete yet.
    Partial,
    /// A request and the number of bytes its head used.
    Complete(Box<Request>, usize),
    /// The bytes cannot be a valid request; answer with this status and close.
    Invalid(Status),
}

/// Whether the request line in `buf` names the HEAD method, even when the rest of the head is
/// invalid: the answer to it then carries no body either.
pub fn asks_head(buf: &[u8]) -> bool {
    // Empty lines before the request line are ignored (RFC 9112 §2.2), as the parser does.
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    buf[start..].starts_with(b"HEAD ")
}

/// Parses the head at the start of `buf`; `max_head` bounds how large it may be.
pub fn parse(buf: &[u8], max_head: usize) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => partial(buf, max_head),
        Ok(httparse::Status::Complete(len)) if len > max_head => Parse::Invalid(too_large(buf, max_head)),
        Ok(httparse::Status::Complete(len)) => match build(&req) {
            Ok(r) => Parse::Complete(Box::new(r), len),
            Err(status) => Parse::Invalid(status),
        },
        Err(httparse::Error::TooManyHeaders) => Parse::Invalid(Status::HeaderFieldsTooLarge),
        Err(httparse::Error::Version) => match higher_minor_version(buf) {
            Some(at) => parse_as_http11(buf, at, max_head),
            // The version may be judged only once the request line has ended (`HTTP/1.2` can
            // arrive before its CRLF, and is then served as HTTP/1.1).
            None if !request_line_ended(buf) => partial(buf, max_head),
            None => Parse::Invalid(version_error(buf)),
        },
        Err(_) => Parse::Invalid(Status::BadRequest),
    }
}

fn request_line_ended(buf: &[u8]) -> bool {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    buf[start..].contains(&b'\n')
}

/// A request line in HTTP/1.x with x > 1 is answered as the highest 1.x this server speaks
/// (RFC 9110 §2.5, RFC 9112 §2.3): the head is parsed again with `HTTP/1.1` in its place.
fn parse_as_http11(buf: &[u8], minor_at: usize, max_head: usize) -> Parse {
    let mut copy = buf.to_vec();
    copy[minor_at] = b'1';
    parse(&copy, max_head)
}

/// Where the minor digit of an `HTTP/1.x` (x > 1) request-line version sits, if that is the
/// version the request line ends with.
fn higher_minor_version(buf: &[u8]) -> Option<usize> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let line_len = buf[start..].iter().position(|&b| b == b'\n')?;
    let line = &buf[start..start + line_len];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let version = &line[line.len().checked_sub(9)?..];
    match version {
        [b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor]
            if minor.is_ascii_digit() && *minor > b'1' =>
        {
            Some(start + line.len() - 1)
        }
        _ => None,
    }
}

/// A head still incomplete past the limit is refused.
fn partial(buf: &[u8], max_head: usize) -> Parse {
    if buf.len() <= max_head { Parse::Partial } else { Parse::Invalid(too_large(buf, max_head)) }
}

/// 414 when the request line alone exceeds the limit (or has not ended within it), 431 when
/// the header fields are what made the head too large.
fn too_large(buf: &[u8], max_head: usize) -> Status {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(0);
    match buf[start..].iter().position(|&b| b == b'\n') {
        Some(line_len) if line_len <= max_head => Status::HeaderFieldsTooLarge,
        _ => Status::UriTooLong,
    }
}

/// `HTTP/2.0`, `HTTP/1.2`, `HTTP/0.9` are well-formed but unsupported (505); anything else that
/// fails version parsing is simply malformed (400).
fn version_error(buf: &[u8]) -> Status {
    let line = buf.split(|&b| b == b'\n').find(|l| !l.is_empty() && *l != b"\r").unwrap_or(b"");
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(b"");
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Status::VersionNotSupported
        }
        [b'H', b'T', b'T', b'P', b'/', major] if major.is_ascii_digit() => Status::VersionNotSupported,
        _ => Status::BadRequest,
    }
}

fn text(value: &[u8]) -> Result<&str, Status> {
    std::str::from_utf8(value).map(str::trim).map_err(|_| Status::BadRequest)
}

fn build(req: &httparse::Request) -> Result<Request, Status> {
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(Status::BadRequest);
    };
    let mut out = Request {
        method_name: method.to_owned(),
        target: target.to_owned(),
        minor_version: minor,
        ..Default::default()
    };
    let mut hosts = 0;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<String> = None;
    let (mut close, mut keep_alive) = (false, false);
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            validate_host(h.value)?;
            out.host = Some(text(h.value)?.to_owned());
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(text(h.value)?)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(Status::BadRequest);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let v = text(h.value)?;
            transfer_encoding = Some(match transfer_encoding {
                Some(prev) => format!("{prev}, {v}"),
                None => v.to_owned(),
            });
        } else if name.eq_ignore_ascii_case("connection") {
            for token in text(h.value)?.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else {
            store_optional(&mut out, name, h.value)?;
        }
    }
    if hosts > 1 || (minor == 1 && hosts == 0) {
        return Err(Status::BadRequest);
    }
    if let Some(te) = &transfer_encoding {
        check_transfer_coding(te, content_length.is_some(), minor)?;
    }
    out.has_body = transfer_encoding.is_some() || content_length.is_some_and(|n| n > 0);
    out.keep_alive = if minor == 1 { !close } else { keep_alive && !close };
    Ok(out)
}

/// Both framings at once is the classic smuggling vector (400); a coding this server does not
/// know is 501 (RFC 9112 §6.1); a final coding other than chunked, or chunked twice, leaves the
/// body length unknowable (400, §6.3).
fn check_transfer_coding(te: &str, has_length: bool, minor: u8) -> Result<(), Status> {
    const KNOWN: [&str; 6] = ["chunked", "gzip", "x-gzip", "deflate", "compress", "x-compress"];
    if has_length || minor == 0 {
        return Err(Status::BadRequest);
    }
    let codings: Vec<&str> = te.split(',').map(str::trim).collect();
    if codings.iter().any(|c| !KNOWN.iter().any(|k| c.eq_ignore_ascii_case(k))) {
        return Err(Status::NotImplemented);
    }
    let chunked = codings.iter().filter(|c| c.eq_ignore_ascii_case("chunked")).count();
    let last_is_chunked = codings.last().is_some_and(|c| c.eq_ignore_ascii_case("chunked"));
    if !last_is_chunked || chunked > 1 { Err(Status::BadRequest) } else { Ok(()) }
}

fn store_optional(out: &mut Request, name: &str, value: &[u8]) -> Result<(), Status> {
    let slot = if name.eq_ignore_ascii_case("if-none-match") {
        &mut out.if_none_match
    } else if name.eq_ignore_ascii_case("if-match") {
        &mut out.if_match
    } else if name.eq_ignore_ascii_case("if-modified-since") {
        &mut out.if_modified_since
    } else if name.eq_ignore_ascii_case("if-unmodified-since") {
        &mut out.if_unmodified_since
    } else if name.eq_ignore_ascii_case("range") {
        &mut out.range
    } else if name.eq_ignore_ascii_case("if-range") {
        &mut out.if_range
    } else if name.eq_ignore_ascii_case("accept-encoding") {
        &mut out.accept_encoding
    } else if name.eq_ignore_ascii_case("referer") {
        &mut out.referer
    } else if name.eq_ignore_ascii_case("user-agent") {
        &mut out.user_agent
    } else {
        return Ok(());
    };
    let v = String::from_utf8_lossy(value).trim().to_owned();
    *slot = Some(match slot.take() {
        Some(prev) => format!("{prev}, {v}"),
        None => v,
    });
    Ok(())
}

/// Content-Length is one or more digits and nothing else (RFC 9110 §8.6).
fn parse_content_length(v: &str) -> Result<u64, Status> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Status::BadRequest);
    }
    v.parse().map_err(|_| Status::BadRequest)
}

/// A Host value is `host[:port]` without whitespace, slashes or other delimiters.
fn validate_host(v: &[u8]) -> Result<(), Status> {
    let ok = v.iter().all(|&b| b.is_ascii_alphanumeric() || b"-._~:[]!$&'()*+,;=%".contains(&b));
    if ok { Ok(()) } else { Err(Status::BadRequest) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> Request {
        match parse(raw.as_bytes(), 8192) {
            Parse::Complete(r, len) => {
                assert_eq!(len, raw.len());
                *r
            }
            other => panic!("{raw:?} gave {other:?}"),
        }
    }

    fn status(raw: &str) -> Status {
        match parse(raw.as_bytes(), 8192) {
            Parse::Invalid(s) => s,
            other => panic!("{raw:?} gave {other:?}"),
        }
    }

    #[test]
    fn simple_requests_and_keep_alive_rules() {
        let r = ok("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            (r.method(), r.target.as_str(), r.minor_version, r.keep_alive),
            (Method::Get, "/a", 1, true)
        );
        assert!(!ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(ok("HEAD / HTTP/1.1\r\nHost: x\r\nConnection: TE, keep-alive\r\n\r\n").keep_alive);
        assert_eq!(ok("POST / HTTP/1.1\r\nHost: x\r\n\r\n").method(), Method::Other);
    }

    #[test]
    fn partial_heads_wait_for_more() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n", 8192), Parse::Partial);
        assert_eq!(parse(b"\n", 8192), Parse::Partial);
        assert_eq!(parse(b"", 8192), Parse::Partial);
    }

    #[test]
    fn host_rules() {
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), Status::BadRequest);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), Status::BadRequest);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), Status::BadRequest);
        ok("GET / HTTP/1.0\r\n\r\n");
        ok("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    }

    #[test]
    fn framing_rules() {
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Status::BadRequest
        );
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"), Status::BadRequest);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n"), Status::BadRequest);
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Status::BadRequest
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Status::BadRequest
        );
        assert_eq!(
            status(
                "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            Status::BadRequest
        );
        assert!(ok("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n").has_body);
        assert!(!ok("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").has_body);
        assert!(ok("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").has_body);
    }

    #[test]
    fn versions_and_garbage() {
        assert_eq!(status("GET / HTTP/2.0\r\n\r\n"), Status::VersionNotSupported);
        assert_eq!(status("GET / HTTP/0.9\r\n\r\n"), Status::VersionNotSupported);
        assert_eq!(status("GET / HTTP/3\r\n\r\n"), Status::VersionNotSupported);
        assert_eq!(status("GET / FOO/1.1\r\n\r\n"), Status::BadRequest);
        assert_eq!(status("GARBAGE\r\n\r\n"), Status::BadRequest);
        assert_eq!(status("GET  / HTTP/1.1\r\n\r\n"), Status::BadRequest);
        assert_eq!(
            parse(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 8192),
            Parse::Invalid(Status::BadRequest)
        );
    }

    /// A higher HTTP/1.x minor version is served as HTTP/1.1, with 1.1's rules (Host required).
    #[test]
    fn higher_minor_versions_are_http11() {
        let r = ok("GET /a HTTP/1.2\r\nHost: x\r\n\r\n");
        assert_eq!((r.target.as_str(), r.minor_version, r.keep_alive), ("/a", 1, true));
        assert_eq!(ok("\r\nHEAD / HTTP/1.9\r\nHost: x\r\n\r\n").method(), Method::Head);
        assert_eq!(status("GET / HTTP/1.2\r\n\r\n"), Status::BadRequest);
        assert_eq!(parse(b"GET / HTTP/1.2\r\nHost: x\r\n", 8192), Parse::Partial);
        // Cut before the request line's end, the version is not judged yet.
        for cut in ["GET / HTTP/1.2", "GET / HTTP/1.2\r", "GET / HTTP/2.0"] {
            assert_eq!(parse(cut.as_bytes(), 8192), Parse::Partial, "{cut:?}");
        }
    }

    #[test]
    fn unknown_transfer_codings_are_not_implemented() {
        let te = |v: &str| status(&format!("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {v}\r\n\r\n"));
        assert_eq!(te("xchunked"), Status::NotImplemented);
        assert_eq!(te("foo, chunked"), Status::NotImplemented);
        assert_eq!(te("chunked, gzip"), Status::BadRequest);
        assert_eq!(te("chunked, chunked"), Status::BadRequest);
        assert!(ok("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").has_body);
    }

    #[test]
    fn size_limits() {
        let long_line = format!("GET /{} HTTP/1.1", "a".repeat(100));
        assert_eq!(parse(long_line.as_bytes(), 50), Parse::Invalid(Status::UriTooLong));
        let complete_long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100));
        assert_eq!(parse(complete_long_line.as_bytes(), 50), Parse::Invalid(Status::UriTooLong));
        let big_head = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n", "a".repeat(100));
        assert_eq!(parse(big_head.as_bytes(), 50), Parse::Invalid(Status::HeaderFieldsTooLarge));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")), Status::HeaderFieldsTooLarge);
    }

    #[test]
    fn conditional_and_log_fields() {
        let r = ok(
            "GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"a\"\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nRange: bytes=0-1\r\nUser-Agent: t/1\r\nReferer: http://r/\r\n\r\n",
        );
        assert_eq!(r.if_none_match.as_deref(), Some("\"a\""));
        assert_eq!(r.if_modified_since.as_deref(), Some("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(r.range.as_deref(), Some("bytes=0-1"));
        assert_eq!((r.user_agent.as_deref(), r.referer.as_deref()), (Some("t/1"), Some("http://r/")));
    }
}
