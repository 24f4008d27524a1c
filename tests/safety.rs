//! Hostile input: every route out of the document root, request smuggling, and clients that
//! misbehave at the socket level. The server must never leak a file from outside the root and
//! must keep serving afterwards.

mod common;

use common::check::{assert_error, assert_error_shape, assert_serves};
use common::fixture::{OUTSIDE_MARKER, PASSWD_MARKER, SECRET_MARKER, pseudo_random};
use common::http::{
    Client, Response, connect, exchange, get, parse_responses, read_to_close, request, send_lenient,
    set_linger_zero,
};
use common::server::Server;

/// Whether `r` is a refusal that leaks nothing: 400, 403 or 404 and no secret in the body.
fn leak_free_refusal(r: &Response) -> Result<(), String> {
    let body = r.body_text();
    for marker in [SECRET_MARKER, OUTSIDE_MARKER, PASSWD_MARKER] {
        if body.contains(marker) {
            return Err(format!("body contains {marker:?}"));
        }
    }
    if !matches!(r.status, 400 | 403 | 404) {
        return Err(format!("status {}", r.status));
    }
    Ok(())
}

/// Sends `GET target` for every target and asserts that each is refused without a leak;
/// reports all offending targets at once.
fn assert_all_refused(server: &Server, targets: &[&str]) {
    let mut failures = Vec::new();
    for target in targets {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let r = request(server.addr, raw.as_bytes());
        match leak_free_refusal(&r) {
            Ok(()) => assert_error_shape(&r),
            Err(why) => failures.push(format!("{target}: {why}")),
        }
    }
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));
}

#[test]
fn dot_dot_segments_do_not_escape() {
    let mut server = Server::start();
    assert_all_refused(
        &server,
        &[
            "/../secret.txt",
            "/../../../../../../../../etc/passwd",
            "/httptest/../../secret.txt",
            "/httptest/../../../../etc/passwd",
            "/httptest/dir1/../../../secret.txt",
            "/./../secret.txt",
            "/httptest/./../.././secret.txt",
        ],
    );
    server.assert_alive();
}

#[test]
fn encoded_dot_dot_does_not_escape() {
    let mut server = Server::start();
    assert_all_refused(
        &server,
        &[
            "/%2e%2e/secret.txt",
            "/%2E%2E/secret.txt",
            "/%2e%2e%2fsecret.txt",
            "/%2e%2e%2Fsecret.txt",
            "/..%2fsecret.txt",
            "/.%2e/secret.txt",
            "/%2e./secret.txt",
            "/httptest/%2e%2e/%2e%2e/secret.txt",
            "/httptest/dir2/..%2f..%2f..%2fsecret.txt",
            "/httptest/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "/%c0%ae%c0%ae/secret.txt",
        ],
    );
    server.assert_alive();
}

#[test]
fn double_encoding_is_decoded_once() {
    let server = Server::start();
    for target in
        ["/%252e%252e/secret.txt", "/%252e%252e%252fsecret.txt", "/httptest/%252e%252e/%252e%252e/secret.txt"]
    {
        let r = get(server.addr, target);
        assert_error(&r, 404);
        assert!(!r.body_text().contains(SECRET_MARKER));
    }
    // `%25` decodes to a literal `%`: this names the file called `%2e` in the root.
    let literal = get(server.addr, "/%252e");
    assert_serves(&literal, server.fixture(), "%2e");
}

#[test]
fn absolute_paths_inside_the_target_do_not_escape() {
    let mut server = Server::start();
    assert_all_refused(&server, &["//etc/passwd", "/%2fetc/passwd", "/%2Fetc%2Fpasswd", "///etc/passwd"]);
    server.assert_alive();
}

#[test]
fn backslashes_do_not_escape() {
    let mut server = Server::start();
    assert_all_refused(
        &server,
        &[
            "/..\\secret.txt",
            "/httptest\\..\\..\\secret.txt",
            "/%5c..%5csecret.txt",
            "/..%5c..%5csecret.txt",
            "/httptest/..%5c..%5csecret.txt",
        ],
    );
    server.assert_alive();
}

#[test]
fn absolute_form_target_does_not_escape() {
    let mut server = Server::start();
    assert_all_refused(
        &server,
        &[
            "http://x/../../etc/passwd",
            "http://localhost/../secret.txt",
            "http://localhost/%2e%2e/secret.txt",
            "http://localhost/..%2f..%2fetc%2fpasswd",
            "../secret.txt",
            "secret.txt",
        ],
    );
    server.assert_alive();
}

#[test]
fn symlinks_out_of_the_root_are_refused() {
    let mut server = Server::start();
    assert_all_refused(
        &server,
        &[
            "/httptest/link_outside.txt",
            "/httptest/link_passwd",
            "/httptest/link_relative_outside.txt",
            "/httptest/link_outdir/secret_outside.txt",
            "/httptest/link_outdir/",
            "/httptest/link_outdir/index.html",
            "/httptest/link_relative_outdir/secret_outside.txt",
            "/httptest/link_relative_outdir/",
            "/httptest/link_loop",
            "/httptest/link_loop/",
        ],
    );
    server.assert_alive();
}

/// A redirect echoes the request path in `Location`; decoded CR LF must never reach the header
/// (the strict parser also rejects any CR or LF inside a header line).
#[test]
fn redirect_cannot_inject_headers() {
    let server = Server::start();
    let cases = [
        ("/httptest/inj%0d%0aX-Injected:%20yes", "/httptest/inj%"),
        ("/httptest/dir2?%0d%0aX-Injected:%20yes", "/httptest/dir2/?%"),
    ];
    for (target, location_prefix) in cases {
        let r = get(server.addr, target);
        assert_eq!(r.status, 301, "{target}: {r:#?}");
        assert!(r.header("x-injected").is_none(), "{target}: {r:#?}");
        let location = r.all("location");
        assert_eq!(location.len(), 1, "{r:#?}");
        assert!(location[0].starts_with(location_prefix), "{target}: {r:#?}");
    }
}

/// Error pages must not reflect the request path as markup.
#[test]
fn error_pages_do_not_reflect_markup() {
    let server = Server::start();
    let r = get(server.addr, "/%3Cscript%3Ealert(1)%3C/script%3E.html");
    assert_error(&r, 404);
    assert!(!r.body_text().to_ascii_lowercase().contains("<script"), "{r:#?}");
}

#[test]
fn head_of_escaping_targets_is_refused() {
    let server = Server::start();
    for target in ["/../secret.txt", "/httptest/link_passwd", "/%2e%2e/secret.txt"] {
        let raw = format!("HEAD {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let r = request(server.addr, raw.as_bytes());
        assert!(matches!(r.status, 400 | 403 | 404), "HEAD {target}: {r:#?}");
    }
}

#[test]
fn fifo_is_refused_without_hanging() {
    let mut server = Server::start();
    let r = get(server.addr, "/httptest/fifo");
    assert!(matches!(r.status, 403 | 404), "{r:#?}");
    assert_error_shape(&r);
    server.assert_alive();
}

/// Checks the answer to a request with a body followed by a pipelined GET of `page.html`.
/// Either the body was consumed and both requests are answered, or the server answered the first
/// request (served or refused) and closed. A response to anything inside the body is a failure.
fn check_body_then_next(server: &Server, bytes: &[u8], refusals: &[u16]) {
    let responses = parse_responses(bytes, &[]);
    let first = &responses[0];
    if first.status == 200 {
        assert_serves(first, server.fixture(), "index.html");
    } else {
        assert!(refusals.contains(&first.status), "{responses:#?}");
        assert_error_shape(first);
        assert!(first.says_close(), "a refused body ends the connection");
    }
    if first.says_close() {
        assert_eq!(responses.len(), 1, "nothing after a close: {responses:#?}");
    } else {
        assert_eq!(responses.len(), 2, "{responses:#?}");
        assert_serves(&responses[1], server.fixture(), "httptest/dir2/page.html");
    }
}

/// A request whose body is itself a request: the server must frame by Content-Length, so the
/// embedded request is never answered.
#[test]
fn body_framed_by_content_length_is_not_a_request() {
    let server = Server::start();
    let smuggled = "GET /httptest/text..txt HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let raw = format!(
        "GET /index.html HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{smuggled}\
         GET /httptest/dir2/page.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        smuggled.len()
    );
    check_body_then_next(&server, &exchange(server.addr, raw.as_bytes()), &[400, 413]);
}

/// Chunked request bodies: decoded, or refused with a closing error; never parsed as requests.
#[test]
fn chunked_body_is_decoded_or_refused() {
    let server = Server::start();
    let raw = "GET /index.html HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
               24\r\nGET /httptest/text..txt HTTP/1.0\r\n\r\n\r\n0\r\n\r\n\
               GET /httptest/dir2/page.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    check_body_then_next(&server, &exchange(server.addr, raw.as_bytes()), &[400, 411, 413, 501]);
}

#[test]
fn unknown_transfer_coding_is_refused_and_closed() {
    let server = Server::start();
    for coding in ["gzip", "chunked, gzip", "identity"] {
        let raw = format!(
            "GET /index.html HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: {coding}\r\n\r\n\
             GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n"
        );
        let mut client = Client::connect(server.addr);
        client.send(raw.as_bytes());
        let r = client.read_response(false);
        assert!(matches!(r.status, 400 | 501), "Transfer-Encoding: {coding}: {r:#?}");
        assert_eq!(r.expect_header("connection"), "close");
        client.expect_closed();
    }
}

#[test]
fn transfer_encoding_in_http10_is_refused_and_closed() {
    let server = Server::start();
    let raw = b"GET /index.html HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\
                \r\n0\r\n\r\nGET /index.html HTTP/1.0\r\n\r\n";
    let mut client = Client::connect(server.addr);
    client.send(raw);
    let r = client.read_response(false);
    assert_error(&r, 400);
    client.expect_closed();
}

#[test]
fn bare_newline_then_disconnect() {
    let mut server = Server::start();
    let mut stream = connect(server.addr);
    send_lenient(&mut stream, b"\n");
    drop(stream);
    server.assert_alive();
}

#[test]
fn connect_and_close_without_a_request() {
    let mut server = Server::start();
    for _ in 0..20 {
        drop(connect(server.addr));
    }
    server.assert_alive();
}

#[test]
fn random_garbage_gets_400_or_close() {
    let mut server = Server::start();
    for seed in 1..=4 {
        let mut stream = connect(server.addr);
        send_lenient(&mut stream, &pseudo_random(seed, 4096));
        let bytes = read_to_close(&mut stream);
        if !bytes.is_empty() {
            let responses = parse_responses(&bytes, &[]);
            assert_eq!(responses.len(), 1, "one answer to garbage");
            assert_error(&responses[0], 400);
        }
    }
    server.assert_alive();
}

#[test]
fn half_request_then_reset() {
    let mut server = Server::start();
    for _ in 0..10 {
        let mut stream = connect(server.addr);
        send_lenient(&mut stream, b"GET /index.html HTTP/1.1\r\nHost: loc");
        set_linger_zero(&stream);
        drop(stream);
    }
    server.assert_alive();
}

#[test]
fn reset_in_the_middle_of_a_large_response() {
    let mut server = Server::start();
    for path in ["/httptest/wikipedia_russia.html", "/httptest/big.bin"] {
        for _ in 0..3 {
            let mut client = Client::connect(server.addr);
            let raw = common::http::get_keepalive(path).repeat(4);
            client.send(raw.as_bytes());
            let mut some = [0u8; 1024];
            std::io::Read::read_exact(&mut client.stream(), &mut some).expect("first bytes");
            set_linger_zero(client.stream());
            drop(client);
        }
    }
    server.assert_alive();
}

#[test]
fn close_without_reading_the_response() {
    let mut server = Server::start();
    for _ in 0..5 {
        let mut stream = connect(server.addr);
        send_lenient(&mut stream, common::http::get_keepalive("/httptest/big.bin").as_bytes());
        drop(stream);
    }
    server.assert_alive();
}

#[test]
fn half_closed_client_still_gets_its_response() {
    let server = Server::start();
    let mut client = Client::connect(server.addr);
    client.send(b"GET /httptest/dir2/page.html HTTP/1.0\r\n\r\n");
    client.shutdown_write();
    let r = client.read_response(false);
    assert_serves(&r, server.fixture(), "httptest/dir2/page.html");
    client.expect_closed();
}
