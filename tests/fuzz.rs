//! Property tests of the two pure functions every request byte goes through: the request-head
//! parser and the target-to-path resolver.
//!
//! They must never panic, whatever the input, and must keep their promises: a complete head
//! never claims more bytes than it was given or than the limit, and a resolved path never leaves
//! the document root. The number of cases is proptest's (`PROPTEST_CASES`, default 256).

use proptest::prelude::*;
use proptest::test_runner::Config;

use ringhttpd::http::Status;
use ringhttpd::http::request::{Parse, parse};
use ringhttpd::http::target::{PathError, resolve};

/// Proptest's defaults (including `PROPTEST_CASES`), without regression files in the tree: a
/// failure prints its minimal input, which belongs in a table-driven test.
fn config() -> Config {
    Config { failure_persistence: None, ..Config::default() }
}

// ---- request heads ----

/// Pieces of HTTP/1.1 syntax (and some breakage), so random heads get past the request line.
fn head_fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "GET ",
            "HEAD ",
            "POST ",
            "G",
            " ",
            "  ",
            "/",
            "/index.html",
            "*",
            "http://h/x",
            " HTTP/1.1",
            " HTTP/1.0",
            " HTTP/2.0",
            " HTTP/1.",
            "HTTP/",
            "\r\n",
            "\n",
            "\r",
            "\r\n\r\n",
            ": ",
            ":",
            "Host",
            "Host: x",
            "host: [::1]:80",
            "Content-Length",
            "Content-Length: 0",
            "Content-Length: 5",
            "Content-Length: -1",
            "Content-Length: 99999999999999999999999",
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: gzip",
            "Connection: close",
            "Connection: keep-alive",
            "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT",
            "Range: bytes=0-",
            "If-None-Match: \"x\"",
            "\t",
            "%00",
            "%zz",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 1..8),
    ]
}

fn request_like() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(head_fragment(), 0..40).prop_map(|parts| parts.concat())
}

/// The promises of `parse` on any input: a complete head fits in the buffer and the limit, and
/// parsing exactly that head again gives the same request.
fn check_parse(buf: &[u8], max_head: usize) -> Result<(), TestCaseError> {
    match parse(buf, max_head) {
        Parse::Complete(req, len) => {
            prop_assert!(len <= buf.len(), "head of {len} bytes in a {}-byte buffer", buf.len());
            prop_assert!(len <= max_head, "head of {len} bytes over the {max_head} limit");
            prop_assert!(len > 0);
            prop_assert_eq!(parse(&buf[..len], max_head), Parse::Complete(req, len));
        }
        Parse::Partial => {
            prop_assert!(buf.len() <= max_head, "still partial past the limit");
        }
        Parse::Invalid(status) => {
            prop_assert!(
                matches!(
                    status,
                    Status::BadRequest
                        | Status::UriTooLong
                        | Status::HeaderFieldsTooLarge
                        | Status::NotImplemented
                        | Status::VersionNotSupported
                ),
                "unexpected status {:?}",
                status
            );
        }
    }
    Ok(())
}

/// A request that must parse: its exact bytes and what the parser should make of them.
#[derive(Debug, Clone)]
struct WellFormed {
    raw: Vec<u8>,
    method: String,
    target: String,
    minor: u8,
    keep_alive: bool,
    /// Length of the request line with its CRLF.
    line_len: usize,
}

fn header_line() -> impl Strategy<Value = String> {
    let name = "[A-Za-z][A-Za-z0-9-]{0,15}".prop_filter("no framing or routing header", |n| {
        !["host", "content-length", "transfer-encoding", "connection"]
            .contains(&n.to_ascii_lowercase().as_str())
    });
    (name, "[ -~]{0,40}").prop_map(|(n, v)| format!("{n}: {}\r\n", v.trim()))
}

fn well_formed() -> impl Strategy<Value = WellFormed> {
    (
        prop_oneof![Just("GET".to_owned()), Just("HEAD".to_owned()), "[A-Z]{1,10}"],
        "/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,60}(\\?[A-Za-z0-9=&/.%-]{0,20})?",
        0u8..=1,
        prop::option::of(prop::sample::select(vec!["close", "keep-alive", "Keep-Alive, TE"])),
        prop::collection::vec(header_line(), 0..20),
    )
        .prop_map(|(method, target, minor, connection, headers)| {
            let line = format!("{method} {target} HTTP/1.{minor}\r\n");
            let mut raw = line.clone();
            if minor == 1 {
                raw.push_str("Host: example.com:8080\r\n");
            }
            if let Some(c) = connection {
                raw.push_str(&format!("Connection: {c}\r\n"));
            }
            raw.push_str(&headers.concat());
            raw.push_str("\r\n");
            let close = connection == Some("close");
            let asked = connection.is_some_and(|c| c.to_ascii_lowercase().contains("keep-alive"));
            WellFormed {
                raw: raw.into_bytes(),
                method,
                target,
                minor,
                keep_alive: if minor == 1 { !close } else { asked },
                line_len: line.len(),
            }
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_survives_any_bytes(buf in prop::collection::vec(any::<u8>(), 0..3000), max_head in 0usize..4096) {
        check_parse(&buf, max_head)?;
    }

    #[test]
    fn parse_survives_request_like_bytes(buf in request_like(), max_head in prop_oneof![0usize..600, Just(8192)]) {
        check_parse(&buf, max_head)?;
    }

    #[test]
    fn well_formed_heads_parse_exactly(req in well_formed(), extra in prop::collection::vec(any::<u8>(), 0..64)) {
        let raw = &req.raw;
        let Parse::Complete(parsed, len) = parse(raw, 8192) else {
            return Err(TestCaseError::fail(format!("{:?} did not parse", String::from_utf8_lossy(raw))));
        };
        prop_assert_eq!(len, raw.len());
        prop_assert_eq!(parsed.method_name(), req.method.as_str());
        prop_assert_eq!(parsed.target(), req.target.as_str());
        prop_assert_eq!(parsed.minor_version, req.minor);
        prop_assert_eq!(parsed.keep_alive, req.keep_alive);
        prop_assert!(!parsed.has_body);

        // Whatever follows (a pipelined request, garbage) does not change where the head ends.
        let mut longer = raw.clone();
        longer.extend_from_slice(&extra);
        prop_assert_eq!(parse(&longer, 8192), Parse::Complete(parsed, len));
    }

    /// A head split anywhere by the network is incomplete, never invalid.
    #[test]
    fn every_prefix_of_a_head_is_partial(req in well_formed()) {
        for end in 0..req.raw.len() {
            prop_assert_eq!(parse(&req.raw[..end], 8192), Parse::Partial, "prefix of {} bytes", end);
        }
    }

    /// Over the limit a head is refused; when its request line fits, the fault lies with the
    /// header fields (431), never with the target.
    #[test]
    fn heads_over_the_limit_are_refused(req in well_formed(), short_by in 1usize..64) {
        let max_head = req.raw.len().saturating_sub(short_by);
        match parse(&req.raw, max_head) {
            Parse::Invalid(Status::HeaderFieldsTooLarge) => {}
            Parse::Invalid(Status::UriTooLong) => {
                prop_assert!(req.line_len > max_head, "414 for a request line of {} bytes within {}", req.line_len, max_head);
            }
            other => return Err(TestCaseError::fail(format!("{other:?} for {} bytes over a {max_head} limit", req.raw.len()))),
        }
    }
}

// ---- request targets ----

/// Checks what any resolved path must satisfy: relative, no empty, `.` or `..` segment, no NUL,
/// and a walk from the root along it never climbs above the root.
fn check_resolved(target: &str) -> Result<(), TestCaseError> {
    let Ok(t) = resolve(target) else {
        return Ok(());
    };
    let file = &t.file;
    prop_assert!(!file.is_empty(), "empty file for {:?}", target);
    prop_assert!(!file.starts_with(b"/"), "absolute file {:?}", String::from_utf8_lossy(file));
    prop_assert!(!file.contains(&0), "NUL in the file for {:?}", target);
    let mut depth = 0i64;
    for seg in file.split(|&b| b == b'/') {
        prop_assert!(!seg.is_empty(), "empty segment in {:?}", String::from_utf8_lossy(file));
        prop_assert!(seg != b"." && seg != b"..", "dot segment in {:?}", String::from_utf8_lossy(file));
        depth += 1;
        prop_assert!(depth > 0);
    }
    prop_assert!(!t.is_index || file.ends_with(b"index.html"));
    prop_assert!(target.contains(t.raw_path), "raw path {:?} not in {:?}", t.raw_path, target);
    prop_assert!(!t.raw_path.contains(['?', '#']));
    if let Some(q) = t.query {
        prop_assert!(!q.contains('#'), "fragment in the query {:?}", q);
    }
    Ok(())
}

/// Pieces of traversal attempts: dot segments plain and encoded, encoded slashes, names.
fn escape_piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "..",
        ".",
        "/",
        "//",
        "%2e",
        "%2E",
        "%2e%2e",
        "%2E%2E",
        ".%2e",
        "%2e.",
        "%2f",
        "%2F",
        "a",
        "b",
        "name",
        "..name",
        "...",
        "%252e%252e",
        "%5c",
        "\\",
        "%20",
        "x%2fy",
    ])
}

/// Decodes `%XX` once, as the resolver documents; `None` for the errors it reports.
fn decode(path: &str) -> Result<Vec<u8>, PathError> {
    let bytes = path.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or(PathError::BadEscape)?;
            let v = u8::from_str_radix(hex, 16).unwrap();
            if v == 0 {
                return Err(PathError::Nul);
            }
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Walks the decoded path from the root: the names it ends in, or `None` if it climbs out.
fn walk(decoded: &[u8]) -> Option<Vec<&[u8]>> {
    let mut stack = Vec::new();
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                stack.pop()?;
            }
            name => stack.push(name),
        }
    }
    Some(stack)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn resolve_survives_any_string(target in any::<String>()) {
        check_resolved(&target)?;
    }

    #[test]
    fn resolve_survives_path_like_strings(target in "/[/.%0-9a-fA-FxX?#:\\\\ \u{0}\u{e9}]{0,60}") {
        check_resolved(&target)?;
    }

    /// Traversal attempts fail exactly when a walk from the root would climb above it, and
    /// otherwise resolve to where the walk ends; the query never matters.
    #[test]
    fn escape_attempts_fail_or_stay_beneath_the_root(
        pieces in prop::collection::vec(escape_piece(), 0..24),
        absolute in any::<bool>(),
        query in prop::option::of(Just("?x=/../../..%2e%2e")),
    ) {
        let path = format!("/{}", pieces.concat());
        let target = format!(
            "{}{path}{}",
            if absolute { "http://example.com" } else { "" },
            query.unwrap_or("")
        );
        check_resolved(&target)?;
        let decoded = match decode(&path) {
            Ok(d) => d,
            Err(e) => {
                prop_assert_eq!(resolve(&target).map(|t| t.file), Err(e));
                return Ok(());
            }
        };
        match (walk(&decoded), resolve(&target)) {
            (None, result) => prop_assert_eq!(result.map(|t| t.file), Err(PathError::Escapes), "{} climbs out", path),
            (Some(names), Ok(t)) => {
                let last = decoded.rsplit(|&b| b == b'/').next().unwrap_or(b"");
                prop_assert_eq!(t.is_index, matches!(last, b"" | b"." | b".."), "is_index of {}", path);
                let file: Vec<&[u8]> = t.file.split(|&b| b == b'/').collect();
                let named = if t.is_index { &file[..file.len() - 1] } else { &file[..] };
                prop_assert_eq!(named, names.as_slice(), "{} resolved to {:?}", path, String::from_utf8_lossy(&t.file));
            }
            (Some(_), Err(e)) => return Err(TestCaseError::fail(format!("{path} stays inside but gave {e:?}"))),
        }
    }
}

// ---- the connection state machine ----

/// Requests the simulated client sends, pipelined and cut at arbitrary points.
use ringhttpd::testing::fuzzing::REQUESTS;

/// One step of the driver's input language (see `ringhttpd::fuzzing`): a receive of the next
/// `len` request bytes, or an action byte followed by the bytes it reads.
fn connection_events() -> impl Strategy<Value = Vec<u8>> {
    let step = prop_oneof![
        3 => (0u8..8, any::<bool>()).prop_map(|(len, more)| (0u8, len, more, Vec::new())),
        3 => prop::collection::vec(any::<u8>(), 1..4).prop_map(|b| (4u8, 0, false, b)),
        1 => prop::collection::vec(any::<u8>(), 0..2).prop_map(|b| (7u8, 0, false, b)),
        1 => any::<u8>().prop_map(|b| (8u8, 0, false, vec![b])),
        1 => Just((9u8, 0, false, Vec::new())),
    ];
    (prop::collection::vec(step, 1..60), prop::collection::vec(0..REQUESTS.len(), 1..6)).prop_map(
        |(steps, picks)| {
            let stream: Vec<u8> = picks.iter().flat_map(|&i| REQUESTS[i].bytes()).collect();
            let mut at = 0;
            let mut out = Vec::new();
            for (action, len, more, extra) in steps {
                out.push(action);
                if action == 0 {
                    let n = usize::from(len) * 8 + 1;
                    out.push(len);
                    let chunk: Vec<u8> =
                        (0..n).map(|k| stream.get(at + k).copied().unwrap_or(b'\n')).collect();
                    at += n;
                    out.extend(chunk);
                    out.push(if more { 1 } else { 0 });
                } else {
                    out.extend(extra);
                }
            }
            out
        },
    )
}

proptest! {
    #![proptest_config(Config { cases: 2000, ..config() })]

    /// Whatever the client sends and whatever the ring answers, no transition is unreachable,
    /// nothing is accounted twice, and an aborted connection always finishes.
    #[test]
    fn connection_state_machine_survives_any_events(events in connection_events()) {
        ringhttpd::testing::fuzzing::drive_connection(&events);
    }

    #[test]
    fn connection_state_machine_survives_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        ringhttpd::testing::fuzzing::drive_connection(&bytes);
    }
}

// ---- the connection state machine over TLS ----

/// One step of the TLS driver's input language (see `ringhttpd::testing::fuzzing::tls`):
/// mostly the steps a handshake and its requests need (the client's bytes received in pieces,
/// the server's sends completed, the client reading them, requests written a piece at a time),
/// some tampering on the way to the server, timeouts, FIN, stops, close_notify and key updates.
fn tls_events() -> impl Strategy<Value = Vec<u8>> {
    // A completion's result: mostly a full or short one, sometimes anything (failures).
    let result = || prop_oneof![4 => 0u8..4, 1 => any::<u8>()];
    let step = prop_oneof![
        16 => (any::<u8>(), any::<u8>()).prop_map(|(len, more)| vec![0, len, more]),
        16 => result().prop_map(|r| vec![4, r]),
        10 => Just(vec![7]),
        6 => (any::<u8>(), any::<u8>()).prop_map(|(pick, len)| vec![8, pick, len]),
        2 => (9u8..12, prop::collection::vec(any::<u8>(), 3..12)).prop_map(|(a, b)| [vec![a], b].concat()),
        1 => (12u8..16, any::<u8>()).prop_map(|(a, b)| vec![a, b]),
    ];
    (any::<u8>(), prop::collection::vec(step, 1..60))
        .prop_map(|(offer, steps)| [vec![offer], steps.concat()].concat())
}

proptest! {
    // A handshake costs about a millisecond even in a debug build: this runs in a few seconds.
    #![proptest_config(Config { cases: 1000, ..config() })]

    /// An HTTPS connection against a real rustls client: whatever is cut, corrupted or
    /// interleaved, no transition is unreachable, the client never rejects what the server
    /// sent unless something was tampered with, what it decrypts is well-formed responses,
    /// and an untampered exchange, let run, completes its handshake and answers its requests.
    #[test]
    fn tls_connection_survives_any_events(events in tls_events()) {
        ringhttpd::testing::fuzzing::drive_tls_connection(&events);
    }

    #[test]
    fn tls_connection_survives_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        ringhttpd::testing::fuzzing::drive_tls_connection(&bytes);
    }
}

/// A client sends its request, then close_notify while the request is being answered, then
/// one more record after the response. rustls reads nothing after a close_notify (`read_tls`
/// returns 0), which once made the session's record loop spin forever; the close_notify must
/// also end the connection once the response is out.
#[test]
fn tls_record_after_close_notify_while_answering() {
    ringhttpd::testing::fuzzing::drive_tls_connection(&[
        0x01, // TLS 1.3 only
        0, 255, 0, 4, 0, 7, 0, 255, 0, 4, 0, // the handshake, its ticket included
        8, 0, 255, // the client writes GET /index.html
        0, 255, 0, // the server receives it and opens the file
        15, 0, // the client sends close_notify
        0, 255, 0, // the server receives it (still opening)
        15, 1, // the client updates its keys: a KeyUpdate record behind its close_notify
        4, 0, 4, 0, 0, 0, 0, 4, 0, 4, 0, 0, 0, 0, 4, 0, 4, 0, 0, 0, 0, // open and statx, three times
        4, 0, // the response is sent
        0, 255, 0, // the server receives the KeyUpdate: it never returns
    ]);
}
