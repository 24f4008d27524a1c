//! Parses one request head from bytes into the owned facts the server acts on.
//!
//! Incomplete input is `Parse::Partial`; every malformed input maps to the status it deserves
//! (400, 405 is decided later, 414, 431, 505). This module must never allocate in proportion to
//! anything but the head it was given, and never look at the filesystem.

use std::mem::MaybeUninit;

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

/// What a request asks for, copied out of the receive buffer: every field's text lies in one
/// buffer, and a request recycled for the next head (`parse_reusing`) keeps that buffer, so a
/// keep-alive connection parses head after head without allocating.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    /// The text of every field below, one after another.
    text: String,
    method: Span,
    target: Span,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub keep_alive: bool,
    /// The request announced a body (Content-Length > 0 or Transfer-Encoding); the server does
    /// not read bodies, so such a connection closes after the response.
    pub has_body: bool,
    /// The optional header fields the server acts on (`Field`), as sent (repeated ones joined
    /// with ", "); the Host header is validated.
    fields: [Option<Span>; Field::COUNT],
}

/// Where a field's text lies in `Request::text`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

/// The header fields a request keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Host,
    IfMatch,
    IfNoneMatch,
    /// HTTP-dates are kept as sent: their meaning (RFC 850's two-digit years) depends on the
    /// time they are evaluated at.
    IfModifiedSince,
    IfUnmodifiedSince,
    Range,
    IfRange,
    AcceptEncoding,
    Referer,
    UserAgent,
}

impl Field {
    const COUNT: usize = 10;

    /// Every field, in declaration order.
    pub const ALL: [Field; Field::COUNT] = [
        Field::Host,
        Field::IfMatch,
        Field::IfNoneMatch,
        Field::IfModifiedSince,
        Field::IfUnmodifiedSince,
        Field::Range,
        Field::IfRange,
        Field::AcceptEncoding,
        Field::Referer,
        Field::UserAgent,
    ];

    /// The field a header name (any case) is kept as; Host is handled on its own.
    fn named(name: &str) -> Option<Field> {
        const NAMES: [(&str, Field); 9] = [
            ("if-none-match", Field::IfNoneMatch),
            ("if-match", Field::IfMatch),
            ("if-modified-since", Field::IfModifiedSince),
            ("if-unmodified-since", Field::IfUnmodifiedSince),
            ("range", Field::Range),
            ("if-range", Field::IfRange),
            ("accept-encoding", Field::AcceptEncoding),
            ("referer", Field::Referer),
            ("user-agent", Field::UserAgent),
        ];
        NAMES.iter().find(|(n, _)| name.eq_ignore_ascii_case(n)).map(|&(_, f)| f)
    }
}

impl Request {
    /// The method as sent.
    pub fn method_name(&self) -> &str {
        self.span(self.method)
    }

    /// The request target as sent.
    pub fn target(&self) -> &str {
        self.span(self.target)
    }

    /// A header field's value, if the request has it.
    pub fn field(&self, field: Field) -> Option<&str> {
        self.fields[field as usize].map(|s| self.span(s))
    }

    /// The Host header, as sent (validated).
    pub fn host(&self) -> Option<&str> {
        self.field(Field::Host)
    }

    /// The answer carries no body: the one rule for HEAD (RFC 9110 §9.3.2), whatever the
    /// status and wherever the response is built.
    pub fn head_only(&self) -> bool {
        self.method() == Method::Head
    }

    pub fn method(&self) -> Method {
        match self.method_name() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            _ => Method::Other,
        }
    }

    /// Whether keeping this request for the next head is worth it: a buffer grown by an
    /// unusually large head is let go rather than held.
    pub fn worth_recycling(&self) -> bool {
        self.text.capacity() <= RECYCLED_TEXT
    }

    fn span(&self, s: Span) -> &str {
        &self.text[s.start as usize..s.end as usize]
    }

    /// Appends `value` to the text and returns where it lies.
    fn push(&mut self, value: &str) -> Span {
        let start = self.text.len() as u32;
        self.text.push_str(value);
        Span { start, end: self.text.len() as u32 }
    }

    /// Empties the request, keeping its buffer.
    fn clear(&mut self) {
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        *self = Request { text, ..Default::default() };
    }
}

/// The largest text buffer a recycled request keeps.
const RECYCLED_TEXT: usize = 1024;

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
    parse_reusing(buf, max_head, &mut None)
}

/// `parse`, filling the request in `spare` (one done with, whose buffer is reused) when the
/// head is complete and valid; otherwise `spare` is left as it was.
pub fn parse_reusing(buf: &[u8], max_head: usize, spare: &mut Option<Box<Request>>) -> Parse {
    // Left uninitialised: httparse fills only as many as the head has (zeroing all of them
    // cost more than parsing a typical head).
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Partial) => partial(buf, max_head),
        Ok(httparse::Status::Complete(len)) if len > max_head => Parse::Invalid(too_large(buf, max_head)),
        Ok(httparse::Status::Complete(len)) => {
            let mut out = spare.take().unwrap_or_default();
            match build(&req, &mut out) {
                Ok(()) => Parse::Complete(out, len),
                Err(status) => {
                    *spare = Some(out);
                    Parse::Invalid(status)
                }
            }
        }
        Err(httparse::Error::TooManyHeaders) => Parse::Invalid(Status::HeaderFieldsTooLarge),
        Err(httparse::Error::Version) => match higher_minor_version(buf) {
            Some(at) => parse_as_http11(buf, at, max_head, spare),
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
fn parse_as_http11(buf: &[u8], minor_at: usize, max_head: usize, spare: &mut Option<Box<Request>>) -> Parse {
    let mut copy = buf.to_vec();
    copy[minor_at] = b'1';
    parse_reusing(&copy, max_head, spare)
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

/// Fills `out` (emptied first) from a parsed head.
fn build(req: &httparse::Request, out: &mut Request) -> Result<(), Status> {
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(Status::BadRequest);
    };
    out.clear();
    out.method = out.push(method);
    out.target = out.push(target);
    out.minor_version = minor;
    let mut hosts = 0;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<String> = None;
    let (mut close, mut keep_alive) = (false, false);
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            validate_host(h.value)?;
            let host = out.push(text(h.value)?);
            out.fields[Field::Host as usize] = Some(host);
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
        } else if let Some(field) = Field::named(name) {
            store(out, field, h.value);
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
    Ok(())
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

/// Keeps a header field's value; a repeated field is joined to the earlier value with ", ".
fn store(out: &mut Request, field: Field, value: &[u8]) {
    let value = String::from_utf8_lossy(value);
    let value = value.trim();
    let span = match out.fields[field as usize] {
        Some(prev) => {
            let joined = format!("{}, {value}", out.span(prev));
            out.push(&joined)
        }
        None => out.push(value),
    };
    out.fields[field as usize] = Some(span);
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
        assert_eq!((r.method(), r.target(), r.minor_version, r.keep_alive), (Method::Get, "/a", 1, true));
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

    /// A recycled request keeps nothing of the head it held before, and is reused only when
    /// the next head is complete and valid.
    #[test]
    fn a_recycled_request_starts_empty() {
        let first = "GET /old HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\nIf-None-Match: \"x\"\r\n\r\n";
        let Parse::Complete(used, _) = parse(first.as_bytes(), 8192) else {
            panic!("{first:?} did not parse")
        };
        let mut spare = Some(used);
        assert_eq!(parse_reusing(b"GET /new HT", 8192, &mut spare), Parse::Partial);
        assert_eq!(
            parse_reusing(b"GET / HTTP/1.1\r\n\r\n", 8192, &mut spare),
            Parse::Invalid(Status::BadRequest)
        );
        assert!(spare.is_some(), "kept for the next head");
        let second = "HEAD /new HTTP/1.0\r\n\r\n";
        let Parse::Complete(reused, len) = parse_reusing(second.as_bytes(), 8192, &mut spare) else {
            panic!("{second:?} did not parse")
        };
        assert!(spare.is_none(), "filled");
        assert_eq!(len, second.len());
        assert_eq!(reused, Box::new(ok(second)));
        assert_eq!((reused.method(), reused.target(), reused.minor_version), (Method::Head, "/new", 0));
        assert!(Field::ALL.iter().all(|&f| reused.field(f).is_none()));
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
        assert_eq!((r.target(), r.minor_version, r.keep_alive), ("/a", 1, true));
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
        assert_eq!(r.field(Field::IfNoneMatch), Some("\"a\""));
        assert_eq!(r.field(Field::IfModifiedSince), Some("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(r.field(Field::Range), Some("bytes=0-1"));
        assert_eq!((r.field(Field::UserAgent), r.field(Field::Referer)), (Some("t/1"), Some("http://r/")));
    }
}
