//! RFC 9110 semantics beyond the basics: every precondition in §13.2.2's order, all three
//! HTTP-date formats, and multipart byte ranges (§14.6) with their amplification guard.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use common::check::assert_multipart;
use common::fixture::pseudo_random;
use common::http::{Response, send_with};
use common::server::Server;

/// 1994-11-06 08:49:37 UTC, RFC 9110's example instant.
const EXAMPLE: u64 = 784_111_777;
const IMF: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
const RFC850: &str = "Sunday, 06-Nov-94 08:49:37 GMT";
const ASCTIME: &str = "Sun Nov  6 08:49:37 1994";
const EARLIER: &str = "Sun, 06 Nov 1994 08:49:36 GMT";

fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    send_with(addr, "GET", path, headers)
}

/// A server with a small (cached) and a large (spliced) file, both last modified at `EXAMPLE`.
fn server_with_dated_files() -> Server {
    let server = Server::start();
    for (rel, len) in [("dated/small.txt", 3000), ("dated/large.bin", 200_000)] {
        let path = server.fixture().path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, pseudo_random(len as u64, len)).unwrap();
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(UNIX_EPOCH + Duration::from_secs(EXAMPLE)).unwrap();
    }
    server
}

const FILES: [&str; 2] = ["dated/small.txt", "dated/large.bin"];

fn assert_precondition_failed(r: &Response, why: &str) {
    assert_eq!((r.status, r.reason.as_str()), (412, "Precondition Failed"), "{why}: {r:#?}");
    assert_eq!(r.content_length(), 0, "{why}: a 412 has no body");
    assert!(r.body.is_empty());
}

#[test]
fn if_match_uses_strong_comparison() {
    let server = server_with_dated_files();
    for rel in FILES {
        let url = format!("/{rel}");
        let etag = get(server.addr, &url, &[]).expect_header("etag").to_owned();
        let list = format!("\"a\", {etag}, \"b\"");
        for ok in [etag.as_str(), "*", list.as_str()] {
            let r = get(server.addr, &url, &[("If-Match", ok)]);
            assert_eq!(r.status, 200, "{rel} If-Match: {ok}: {r:#?}");
        }
        let weak = format!("W/{etag}");
        for failing in ["\"nope\"", weak.as_str(), "\"a\", \"b\""] {
            for method in ["GET", "HEAD"] {
                let r = send_with(server.addr, method, &url, &[("If-Match", failing)]);
                assert_precondition_failed(&r, &format!("{method} {rel} If-Match: {failing}"));
            }
        }
    }
}

#[test]
fn if_unmodified_since_in_every_date_format() {
    let server = server_with_dated_files();
    for rel in FILES {
        let url = format!("/{rel}");
        for since in [IMF, RFC850, ASCTIME, "Mon, 01 Jan 2035 00:00:00 GMT"] {
            let r = get(server.addr, &url, &[("If-Unmodified-Since", since)]);
            assert_eq!(r.status, 200, "{rel} If-Unmodified-Since: {since}: {r:#?}");
        }
        for method in ["GET", "HEAD"] {
            let r = send_with(server.addr, method, &url, &[("If-Unmodified-Since", EARLIER)]);
            assert_precondition_failed(&r, &format!("{method} {rel} If-Unmodified-Since earlier"));
        }
        // An invalid date is ignored, as if the field were absent.
        let r = get(server.addr, &url, &[("If-Unmodified-Since", "yesterday")]);
        assert_eq!(r.status, 200, "{r:#?}");
    }
}

#[test]
fn if_modified_since_in_every_date_format() {
    let server = server_with_dated_files();
    for rel in FILES {
        let url = format!("/{rel}");
        for since in [IMF, RFC850, ASCTIME] {
            let r = get(server.addr, &url, &[("If-Modified-Since", since)]);
            assert_eq!(r.status, 304, "{rel} If-Modified-Since: {since}: {r:#?}");
        }
        let r = get(server.addr, &url, &[("If-Modified-Since", EARLIER)]);
        assert_eq!(r.status, 200, "{r:#?}");
    }
}

/// §13.2.2: If-Match is evaluated first and If-Unmodified-Since only without it; If-None-Match
/// wins over If-Modified-Since; a failed precondition wins over a 304.
#[test]
fn preconditions_are_evaluated_in_order() {
    let server = server_with_dated_files();
    for rel in FILES {
        let url = format!("/{rel}");
        let etag = get(server.addr, &url, &[]).expect_header("etag").to_owned();
        let cases: [(&[(&str, &str)], u16); 5] = [
            (&[("If-Match", &etag), ("If-Unmodified-Since", EARLIER)], 200),
            (&[("If-Match", "\"x\""), ("If-None-Match", &etag)], 412),
            (&[("If-Unmodified-Since", EARLIER), ("If-None-Match", &etag)], 412),
            (&[("If-None-Match", "\"x\""), ("If-Modified-Since", IMF)], 200),
            (&[("If-Match", &etag), ("If-None-Match", &etag)], 304),
        ];
        for (headers, status) in cases {
            let r = get(server.addr, &url, headers);
            assert_eq!(r.status, status, "{rel} {headers:?}: {r:#?}");
        }
    }
}

/// A 304 carries exactly the fields §15.4.5 lists (plus Server and Connection).
#[test]
fn not_modified_sends_only_the_listed_fields() {
    let server = Server::start_with(2, &["--cache-control", "max-age=60"]);
    for rel in ["index.html", "httptest/big.bin"] {
        let url = format!("/{rel}");
        let etag = get(server.addr, &url, &[]).expect_header("etag").to_owned();
        let r = get(server.addr, &url, &[("If-None-Match", &etag)]);
        assert_eq!(r.status, 304, "{r:#?}");
        let allowed = [
            "server",
            "date",
            "etag",
            "last-modified",
            "cache-control",
            "expires",
            "vary",
            "content-location",
            "connection",
        ];
        for (name, _) in &r.headers {
            assert!(allowed.contains(&name.to_ascii_lowercase().as_str()), "{name} in a 304: {r:#?}");
        }
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert_eq!(r.header("cache-control"), Some("max-age=60"));
    }
}

#[test]
fn several_ranges_are_a_multipart_answer() {
    let server = server_with_dated_files();
    for rel in ["dated/small.txt", "dated/large.bin", "httptest/big.bin"] {
        let url = format!("/{rel}");
        let content = server.fixture().read(rel);
        let part_type = get(server.addr, &url, &[]).expect_header("content-type").to_owned();
        let n = content.len();
        let cases: [(String, Vec<(usize, usize)>); 4] = [
            ("bytes=0-9,20-29".into(), vec![(0, 9), (20, 29)]),
            (format!("bytes=0-0,-1,{}-", n / 2), vec![(0, 0), (n / 2, n - 1)]),
            ("bytes=100-2999,0-9".into(), vec![(0, 9), (100, 2999)]),
            (format!("bytes=1-2,4-5,7-8,10-2500,{}-", n + 5), vec![(1, 2), (4, 5), (7, 8), (10, 2500)]),
        ];
        for (range, expected) in cases {
            let r = get(server.addr, &url, &[("Range", &range)]);
            assert_multipart(&r, &content, &expected, &part_type, &format!("{rel} with {range}"));
        }
        // The head alone for HEAD (which ignores Range here, as for single ranges).
        let head = send_with(server.addr, "HEAD", &url, &[("Range", "bytes=0-9,20-29")]);
        assert!(head.status == 200 || head.status == 206, "{head:#?}");
    }
}

#[test]
fn ranges_that_coalesce_are_a_single_range() {
    let server = server_with_dated_files();
    let content = server.fixture().read("dated/small.txt");
    for range in ["bytes=0-9,5-19", "bytes=0-9,10-19", "bytes=10-19,0-9"] {
        let r = get(server.addr, "/dated/small.txt", &[("Range", range)]);
        assert_eq!(r.status, 206, "{range}: {r:#?}");
        assert_eq!(r.header("content-range"), Some(format!("bytes 0-19/{}", content.len()).as_str()));
        assert!(r.body == content[..20]);
    }
}

/// Like nginx's max_ranges: too many ranges, or too many overlapping or backwards ones, get the
/// whole file instead of an amplified answer.
#[test]
fn amplifying_ranges_get_the_whole_file() {
    let server = server_with_dated_files();
    let content = server.fixture().read("dated/large.bin");
    let seventeen: Vec<String> = (0..17).map(|i| format!("{0}-{0}", i * 10)).collect();
    let ranges = [
        format!("bytes={}", seventeen.join(",")),
        "bytes=0-99999,0-99999,0-99999,0-99999".to_owned(),
        "bytes=400-499,300-399,200-299,100-199".to_owned(),
    ];
    for range in ranges {
        let r = get(server.addr, "/dated/large.bin", &[("Range", &range)]);
        assert_eq!(r.status, 200, "{range}: {r:#?}");
        assert!(r.body == content);
    }
}

#[test]
fn if_range_applies_to_multipart_too() {
    let server = server_with_dated_files();
    let content = server.fixture().read("dated/large.bin");
    let r = get(server.addr, "/dated/large.bin", &[("Range", "bytes=0-9,20-29"), ("If-Range", IMF)]);
    assert_eq!(r.status, 206, "{r:#?}");
    let r = get(server.addr, "/dated/large.bin", &[("Range", "bytes=0-9,20-29"), ("If-Range", EARLIER)]);
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(r.body == content);
}

/// Pipelined after a multipart answer, the next request is answered in order on the same
/// connection: the parts' framing is exact.
#[test]
fn multipart_keeps_the_connection_in_sync() {
    let server = server_with_dated_files();
    let mut client = common::http::Client::connect(server.addr);
    let raw = "GET /dated/large.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9,150000-199999\r\n\r\n\
               GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n";
    client.send(raw.as_bytes());
    let first = client.read_response(false);
    assert_eq!(first.status, 206, "{first:#?}");
    let second = client.read_response(false);
    assert_eq!(second.status, 200, "{second:#?}");
    assert_eq!(second.body, server.fixture().read("index.html"));
}
