//! Requests the server must refuse: the status chosen for each, the shape of error responses,
//! and whether the connection survives the error.

mod common;

use common::check::{assert_error, assert_error_shape};
use common::http::{Client, Response, exchange, get, parse_responses};
use common::server::Server;

/// Sends `raw` on a connection the client would keep open, expects `status`, and expects the
/// server to close the connection after it.
fn expect_error_and_close(server: &Server, raw: &[u8], status: u16) -> Response {
    let mut client = Client::connect(server.addr);
    client.send(raw);
    let r = client.read_response(false);
    assert_eq!(r.status, status, "request {:?} got {r:#?}", String::from_utf8_lossy(raw));
    assert_error_shape(&r);
    assert_eq!(r.expect_header("connection"), "close", "after {:?}", String::from_utf8_lossy(raw));
    client.expect_closed();
    r
}

#[test]
fn unsafe_methods_are_not_allowed() {
    let server = Server::start();
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let raw = format!(
            "{method} /index.html HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\
             Connection: close\r\n\r\nabc"
        );
        let bytes = exchange(server.addr, raw.as_bytes());
        let r = parse_responses(&bytes, &[false]).remove(0);
        assert_error(&r, 405);
        assert_eq!(r.all("allow"), ["GET, HEAD"], "Allow for {method}");
    }
}

#[test]
fn method_without_body_is_not_allowed() {
    let server = Server::start();
    let bytes =
        exchange(server.addr, b"DELETE /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let r = parse_responses(&bytes, &[false]).remove(0);
    assert_error(&r, 405);
    assert_eq!(r.all("allow"), ["GET, HEAD"]);
    assert!(server.fixture().path("index.html").exists());
}

#[test]
fn rejected_body_is_skipped_or_connection_closed() {
    let server = Server::start();
    let body = "GET /httptest/text..txt HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let raw = format!(
        "POST /index.html HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}\
         GET /httptest/dir2/page.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let bytes = exchange(server.addr, raw.as_bytes());
    let responses = parse_responses(&bytes, &[]);
    assert_error(&responses[0], 405);
    if responses[0].says_close() {
        assert_eq!(responses.len(), 1, "nothing after a closing 405");
    } else {
        assert_eq!(responses.len(), 2, "the POST body is not a request: {responses:#?}");
        assert_eq!(responses[1].status, 200);
        assert_eq!(responses[1].body, server.fixture().read("httptest/dir2/page.html"));
    }
}

#[test]
fn unknown_method_is_refused() {
    let server = Server::start();
    let r = common::http::request(
        server.addr,
        b"BREW /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(matches!(r.status, 405 | 501), "{r:#?}");
    assert_error_shape(&r);
}

#[test]
fn malformed_request_lines_are_bad_requests() {
    let server = Server::start();
    let cases: &[&[u8]] = &[
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /index.html\r\nHost: localhost\r\n\r\n",
        b"GET /index.html HTTP/1.1 extra\r\nHost: localhost\r\n\r\n",
        b"GET /index.html HTTX/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /in\x01dex.html HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET index.html HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ];
    for raw in cases {
        expect_error_and_close(&server, raw, 400);
    }
}

#[test]
fn malformed_header_lines_are_bad_requests() {
    let server = Server::start();
    let cases: &[&[u8]] = &[
        b"GET /index.html HTTP/1.1\r\nHost localhost\r\n\r\n",
        b"GET /index.html HTTP/1.1\r\nHost : localhost\r\n\r\n",
        b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nBad Name: x\r\n\r\n",
        b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n: empty-name\r\n\r\n",
    ];
    for raw in cases {
        expect_error_and_close(&server, raw, 400);
    }
}

#[test]
fn unsupported_major_version() {
    let server = Server::start();
    for version in ["HTTP/2.0", "HTTP/3.0"] {
        let raw = format!("GET /index.html {version}\r\nHost: localhost\r\n\r\n");
        expect_error_and_close(&server, raw.as_bytes(), 505);
    }
}

/// RFC 9110 §2.5 and RFC 9112 §2.3: a higher 1.x minor version is served as HTTP/1.1.
#[test]
fn higher_minor_version_is_served_as_11() {
    let server = Server::start();
    for version in ["HTTP/1.2", "HTTP/1.9"] {
        let raw = format!("GET /index.html {version}\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let r = common::http::request(server.addr, raw.as_bytes());
        assert_eq!(r.status, 200, "{version}: {r:#?}");
        assert_eq!(r.body, server.fixture().read("index.html"));
    }
    // With 1.1's rules: a Host is required.
    expect_error_and_close(&server, b"GET /index.html HTTP/1.2\r\n\r\n", 400);
}

/// RFC 9112 §6.1: a transfer coding the server does not understand is 501, and the connection
/// closes (the body's framing is unknown).
#[test]
fn unknown_transfer_coding_is_not_implemented() {
    let server = Server::start();
    for coding in ["xchunked", "foo, chunked"] {
        let raw =
            format!("GET /index.html HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: {coding}\r\n\r\n");
        expect_error_and_close(&server, raw.as_bytes(), 501);
    }
    // Chunked not last (with known codings) stays a 400.
    let raw = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, gzip\r\n\r\n";
    expect_error_and_close(&server, raw, 400);
}

#[test]
fn http11_requires_host() {
    let server = Server::start();
    expect_error_and_close(&server, b"GET /index.html HTTP/1.1\r\n\r\n", 400);
}

#[test]
fn two_host_headers_are_bad_requests() {
    let server = Server::start();
    let cases: &[&[u8]] = &[
        b"GET /index.html HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /index.html HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
    ];
    for raw in cases {
        expect_error_and_close(&server, raw, 400);
    }
}

#[test]
fn content_length_with_transfer_encoding_is_refused_and_closed() {
    let server = Server::start();
    let cases: &[&[u8]] = &[
        b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
          Content-Length: 5\r\n\r\n0\r\n\r\n",
        b"POST /index.html HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for raw in cases {
        expect_error_and_close(&server, raw, 400);
    }
}

#[test]
fn invalid_content_length_is_refused_and_closed() {
    let server = Server::start();
    for value in ["abc", "-1", "+3", "0x10", "3 4", "3, 4", ""] {
        let raw =
            format!("GET /index.html HTTP/1.1\r\nHost: localhost\r\nContent-Length: {value}\r\n\r\nabcd");
        expect_error_and_close(&server, raw.as_bytes(), 400);
    }
}

#[test]
fn conflicting_content_lengths_are_refused_and_closed() {
    let server = Server::start();
    let raw = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\
                Content-Length: 4\r\n\r\nabcd";
    expect_error_and_close(&server, raw, 400);
}

#[test]
fn overflowing_content_length_is_refused_and_closed() {
    let server = Server::start();
    let raw = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\
                Content-Length: 99999999999999999999999999\r\n\r\nabcd";
    let mut client = Client::connect(server.addr);
    client.send(raw);
    let r = client.read_response(false);
    assert!(matches!(r.status, 400 | 413), "{r:#?}");
    assert_error_shape(&r);
    client.expect_closed();
}

#[test]
fn bad_percent_escapes_are_bad_requests() {
    let server = Server::start();
    for target in [
        "/index.html%00",
        "/index%00.html",
        "/%zz",
        "/index.html%4",
        "/index.html%",
        "/%4g.html",
        "/%g4.html",
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        expect_error_and_close(&server, raw.as_bytes(), 400);
    }
}

#[test]
fn oversized_request_head_is_refused() {
    let server = Server::start();
    let long_target = format!("/{}", "a".repeat(32 * 1024));
    let long_header = "b".repeat(32 * 1024);
    let cases = [
        format!("GET {long_target} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {long_header}\r\n\r\n"),
    ];
    for raw in cases {
        let mut client = Client::connect(server.addr);
        client.send(raw.as_bytes());
        let r = client.read_response(false);
        assert!(matches!(r.status, 400 | 413 | 414 | 431), "{r:#?}");
        assert_error_shape(&r);
        client.expect_closed();
    }
}

#[test]
fn many_headers_get_an_answer() {
    let server = Server::start();
    let mut raw = String::from("GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for i in 0..500 {
        raw.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    raw.push_str("\r\n");
    let r = common::http::request(server.addr, raw.as_bytes());
    match r.status {
        200 => assert_eq!(r.body, server.fixture().read("index.html")),
        400 | 431 => assert_error_shape(&r),
        _ => panic!("500 headers got {r:#?}"),
    }
}

#[test]
fn error_responses_have_complete_headers() {
    let server = Server::start();
    let r = get(server.addr, "/nope");
    assert_error(&r, 404);
    assert_eq!(r.expect_header("connection"), "close");
    let forbidden = get(server.addr, "/httptest/unreadable.txt");
    assert_error(&forbidden, 403);
}

/// The harness's own date parser, which every Date and Last-Modified check relies on.
#[test]
fn date_parser_accepts_only_imf_fixdate() {
    use common::check::parse_http_date;
    assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
    assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    assert_eq!(parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT"), Some(1_835_481_599));
    for bad in [
        "Mon, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 24:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
    ] {
        assert_eq!(parse_http_date(bad), None, "{bad:?}");
    }
}

/// A body much larger than any receive buffer: the server may skip it or refuse it, but it
/// must answer before closing.
#[test]
fn large_request_body_gets_an_answer() {
    let server = Server::start();
    for len in [100_000, 300_000] {
        let raw = format!(
            "POST /index.html HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\n\
             Connection: close\r\n\r\n{}",
            "z".repeat(len)
        );
        let bytes = exchange(server.addr, raw.as_bytes());
        assert!(!bytes.is_empty(), "closed without a response to a {len}-byte body");
        let r = parse_responses(&bytes, &[]).remove(0);
        assert!(matches!(r.status, 405 | 413), "{r:#?}");
        assert_error_shape(&r);
    }
}

/// RFC 9112 §6.3: the answer to HEAD has no body, even when the request is refused before it is
/// understood; its Content-Length still says what a GET would have got.
#[test]
fn refusals_of_head_requests_carry_no_body() {
    let server = Server::start();
    let cases: [(&[u8], u16); 4] = [
        (b"HEAD / HTTP/1.1\r\n\r\n", 400),
        (b"HEAD / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"\r\nHEAD /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"HEAD / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    ];
    for (raw, status) in cases {
        let bytes = exchange(server.addr, raw);
        let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
        let Some(head_end) = head_end else { panic!("no response head to {raw:?}: {bytes:?}") };
        let r = &parse_responses(&bytes[..head_end], &[true])[0];
        assert_eq!(r.status, status, "{:?}: {r:#?}", String::from_utf8_lossy(raw));
        assert_ne!(r.content_length(), 0, "the length a GET would have got: {r:#?}");
        assert_eq!(
            &bytes[head_end..],
            b"",
            "body bytes after the head of the answer to {:?}",
            String::from_utf8_lossy(raw)
        );
    }
}
