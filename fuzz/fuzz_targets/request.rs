//! Fuzzes the request-head parser, `ringhttpd::http::request::parse`.
//!
//! Input: the bytes received so far on a connection. Checked on every input:
//! - it never panics, and parsing the same bytes twice gives the same answer;
//! - `Complete(req, len)` has `0 < len <= buf.len()` and `len <= max_head`; the head alone
//!   (`buf[..len]`) parses to the same request, so whatever follows it (a pipelined request)
//!   does not change it; with the limit exactly `len` it still parses, one byte less is 414/431;
//! - a prefix of the buffer never yields a head longer than the prefix, and a proper prefix of a
//!   complete head (the head split by the network) is `Partial`;
//! - `Partial` only while the buffer is within the limit; `Invalid` only with the statuses the
//!   parser documents (400, 414, 431, 501, 505);
//! - the request's fields hold no bytes the grammar forbids: a target without whitespace or
//!   control characters, header values without CR, LF or NUL (they reach logs and headers).
//!
//! The same checks run again with a smaller limit taken from the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringhttpd::http::Status;
use ringhttpd::http::request::{Field, Parse, Request, parse};

/// The server's default head limit.
const MAX_HEAD: usize = 8192;

fuzz_target!(|data: &[u8]| {
    let full = parse(data, MAX_HEAD);
    check(data, MAX_HEAD, &full);
    assert_eq!(parse(data, MAX_HEAD), full, "parse is not deterministic");

    if let Parse::Complete(req, len) = &full {
        let len = *len;
        check_fields(req);
        assert_eq!(&parse(&data[..len], MAX_HEAD), &full, "the head alone parses differently");
        assert_eq!(&parse(data, len), &full, "a limit of exactly the head's length changes it");
        match parse(data, len - 1) {
            Parse::Invalid(Status::UriTooLong | Status::HeaderFieldsTooLarge) => {}
            other => panic!("a {len}-byte head under a {} limit gave {other:?}", len - 1),
        }
        for end in split_points(&data[..len]) {
            match parse(&data[..end], MAX_HEAD) {
                Parse::Partial => {}
                other => panic!("a complete {len}-byte head cut to {end} bytes gave {other:?}"),
            }
        }
    } else {
        // Whatever the answer for the whole buffer, no prefix claims more bytes than it has.
        for end in split_points(data) {
            let prefix = &data[..end];
            let p = parse(prefix, MAX_HEAD);
            check(prefix, MAX_HEAD, &p);
        }
    }

    // A smaller limit, taken from the input.
    if let Some(&first) = data.first() {
        let limit = usize::from(first) * 37 % (data.len() + 1);
        let small = parse(data, limit);
        check(data, limit, &small);
        if let Parse::Complete(_, len) = &small {
            assert_eq!(&small, &full, "a {len}-byte head parses differently under a {limit} limit");
        }
    }
});

/// The promises of `parse(buf, max_head)` for any input.
fn check(buf: &[u8], max_head: usize, result: &Parse) {
    match result {
        Parse::Complete(_, len) => {
            assert!(*len > 0, "an empty head");
            assert!(*len <= buf.len(), "a {len}-byte head in a {}-byte buffer", buf.len());
            assert!(*len <= max_head, "a {len}-byte head over the {max_head} limit");
        }
        Parse::Partial => {
            assert!(buf.len() <= max_head, "still partial at {} bytes, past the {max_head} limit", buf.len());
        }
        Parse::Invalid(status) => assert!(
            matches!(
                status,
                Status::BadRequest
                    | Status::UriTooLong
                    | Status::HeaderFieldsTooLarge
                    | Status::NotImplemented
                    | Status::VersionNotSupported
            ),
            "unexpected status {status:?}"
        ),
    }
}

/// What a parsed request may hold.
fn check_fields(req: &Request) {
    let (method, target) = (req.method_name(), req.target());
    assert!(!method.is_empty(), "empty method");
    assert!(method.bytes().all(|b| b.is_ascii_graphic()), "method {method:?}");
    assert!(!target.is_empty(), "empty target");
    assert!(target.bytes().all(|b| b > b' ' && b != 0x7f), "target {target:?}");
    assert!(req.minor_version <= 1, "minor version {}", req.minor_version);
    let fields = Field::ALL.map(|f| req.field(f));
    for value in fields.into_iter().flatten() {
        assert!(!value.contains(['\r', '\n', '\0']), "control character in a header value {value:?}");
    }
}

/// Where the network might cut a buffer: every position in a short one; in a longer one, around
/// the first line ends (where the request line and the fields end) and a few fixed fractions.
/// Each is a proper prefix length (`< buf.len()`); kept to a few dozen parses an input.
fn split_points(buf: &[u8]) -> Vec<usize> {
    let n = buf.len();
    if n <= 48 {
        return (0..n).collect();
    }
    let mut points = vec![0, 1, n / 4, n / 2, 3 * n / 4, n - 2, n - 1];
    for i in buf.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i).take(6) {
        points.extend([i.saturating_sub(1), i, i + 1]);
    }
    points.retain(|&p| p < n);
    points.sort_unstable();
    points.dedup();
    points
}
