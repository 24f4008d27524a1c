//! Persistent connections and pipelining: when a connection stays open, when it closes, and that
//! back-to-back requests are answered in order with the right bodies.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::check::{assert_error, assert_serves};
use common::http::{
    Client, connect, exchange, get_keepalive, get_request, parse_responses, segments_in_without_data,
};
use common::server::Server;

const PAGE: &str = "httptest/dir2/page.html";
const WIKI: &str = "httptest/wikipedia_russia.html";

#[test]
fn http11_stays_open_by_default() {
    let server = Server::start();
    let mut client = Client::connect(server.addr);
    for _ in 0..3 {
        let r = client.roundtrip(get_keepalive("/index.html").as_bytes());
        assert_serves(&r, server.fixture(), "index.html");
        assert_eq!(r.expect_header("connection"), "keep-alive");
    }
}

#[test]
fn http11_connection_close_closes() {
    let server = Server::start();
    let mut client = Client::connect(server.addr);
    let first = client.roundtrip(get_keepalive("/index.html").as_bytes());
    assert_eq!(first.expect_header("connection"), "keep-alive");
    let raw = format!("GET /{PAGE} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let r = client.roundtrip(raw.as_bytes());
    assert_serves(&r, server.fixture(), PAGE);
    assert_eq!(r.expect_header("connection"), "close");
    client.expect_closed();
}

#[test]
fn connection_tokens_are_case_insensitive_lists() {
    let server = Server::start();
    for value in ["Close", "CLOSE", "foo, close", "close, foo"] {
        let mut client = Client::connect(server.addr);
        let raw = format!("GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: {value}\r\n\r\n");
        let r = client.roundtrip(raw.as_bytes());
        assert_eq!(r.status, 200);
        assert_eq!(r.expect_header("connection"), "close", "Connection: {value}");
        client.expect_closed();
    }
}

#[test]
fn http10_closes_by_default() {
    let server = Server::start();
    let mut client = Client::connect(server.addr);
    let r = client.roundtrip(format!("GET /{PAGE} HTTP/1.0\r\n\r\n").as_bytes());
    assert_serves(&r, server.fixture(), PAGE);
    assert_eq!(r.expect_header("connection"), "close");
    client.expect_closed();
}

#[test]
fn http10_keep_alive_stays_open() {
    let server = Server::start();
    let mut client = Client::connect(server.addr);
    let raw = format!("GET /{PAGE} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    for _ in 0..3 {
        let r = client.roundtrip(raw.as_bytes());
        assert_serves(&r, server.fixture(), PAGE);
        assert_eq!(r.expect_header("connection").to_ascii_lowercase(), "keep-alive");
    }
    let last = client.roundtrip(format!("GET /{PAGE} HTTP/1.0\r\n\r\n").as_bytes());
    assert_eq!(last.expect_header("connection"), "close");
    client.expect_closed();
}

#[test]
fn connection_header_tells_the_truth_after_404() {
    let server = Server::start();
    let mut client = Client::connect(server.addr);
    let r = client.roundtrip(get_keepalive("/missing.html").as_bytes());
    assert_error(&r, 404);
    if r.says_close() {
        client.expect_closed();
    } else {
        let next = client.roundtrip(get_keepalive("/index.html").as_bytes());
        assert_serves(&next, server.fixture(), "index.html");
    }
}

#[test]
fn many_requests_on_one_connection() {
    let server = Server::start();
    let mut client = Client::connect(server.addr);
    for i in 0..100 {
        let (path, rel) = if i % 2 == 0 {
            ("/", "index.html")
        } else {
            ("/httptest/types/sample.png", "httptest/types/sample.png")
        };
        let r = client.roundtrip(get_keepalive(path).as_bytes());
        assert_serves(&r, server.fixture(), rel);
    }
}

/// Expected outcome of one pipelined request.
struct Expect {
    raw: String,
    head: bool,
    status: u16,
    body_of: Option<&'static str>,
}

fn expect(method: &str, path: &str, status: u16, body_of: Option<&'static str>) -> Expect {
    Expect {
        raw: format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        head: method == "HEAD",
        status,
        body_of,
    }
}

fn pipeline() -> Vec<Expect> {
    let mut list = vec![
        expect("GET", "/index.html", 200, Some("index.html")),
        expect("HEAD", &format!("/{PAGE}"), 200, None),
        expect("HEAD", "/httptest/big.bin", 200, None),
        expect("GET", &format!("/{WIKI}"), 200, Some(WIKI)),
        expect("GET", "/httptest/types/sample.gif", 200, Some("httptest/types/sample.gif")),
        expect("GET", "/missing.html", 404, None),
        expect("GET", &format!("/{PAGE}"), 200, Some(PAGE)),
        expect("HEAD", "/index.html", 200, None),
        expect("GET", "/httptest/empty.txt", 200, Some("httptest/empty.txt")),
    ];
    let last = list.last_mut().unwrap();
    last.raw = last.raw.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    list
}

/// Checks the responses read to EOF against `list`. A 404 may end the connection; then nothing
/// may follow it.
fn check_pipeline(server: &Server, list: &[Expect], bytes: &[u8]) {
    let heads: Vec<bool> = list.iter().map(|e| e.head).collect();
    let responses = parse_responses(bytes, &heads);
    assert!(!responses.is_empty(), "no responses");
    for (i, (r, e)) in responses.iter().zip(list).enumerate() {
        assert_eq!(r.status, e.status, "response #{i} to {:?}", e.raw);
        if let Some(rel) = e.body_of {
            assert_eq!(r.body, server.fixture().read(rel), "body #{i} ({rel})");
        }
        if e.status >= 400 {
            assert_error(r, e.status);
        }
        if r.says_close() {
            assert_eq!(responses.len(), i + 1, "responses after a close");
            assert!(e.status == 404 || i + 1 == list.len(), "early close at #{i}");
            return;
        }
    }
    assert_eq!(responses.len(), list.len(), "every request answered");
}

#[test]
fn pipelined_requests_in_one_write() {
    let server = Server::start();
    let list = pipeline();
    let raw: String = list.iter().map(|e| e.raw.as_str()).collect();
    let bytes = exchange(server.addr, raw.as_bytes());
    check_pipeline(&server, &list, &bytes);
}

#[test]
fn pipelined_requests_byte_by_byte() {
    let server = Server::start();
    let list: Vec<Expect> = pipeline().into_iter().skip(5).collect();
    let raw: String = list.iter().map(|e| e.raw.as_str()).collect();
    let mut stream = common::http::connect(server.addr);
    for byte in raw.as_bytes() {
        common::http::send_lenient(&mut stream, std::slice::from_ref(byte));
    }
    let bytes = common::http::read_to_close(&mut stream);
    check_pipeline(&server, &list, &bytes);
}

#[test]
fn pipelined_large_responses_stay_in_order() {
    let server = Server::start();
    let mut raw = String::new();
    let mut rels = Vec::new();
    for i in 0..8 {
        let rel = if i % 2 == 0 { WIKI } else { "httptest/big.bin" };
        raw.push_str(&get_keepalive(&format!("/{rel}")));
        rels.push(rel);
    }
    raw.push_str(&common::http::get_request("/index.html"));
    rels.push("index.html");
    let bytes = exchange(server.addr, raw.as_bytes());
    let responses = parse_responses(&bytes, &[]);
    assert_eq!(responses.len(), rels.len());
    for (r, rel) in responses.iter().zip(&rels) {
        assert_serves(r, server.fixture(), rel);
    }
}

#[test]
fn concurrent_keepalive_clients() {
    let server = Server::start();
    let addr = server.addr;
    let expected_wiki = server.fixture().read(WIKI);
    let expected_page = server.fixture().read(PAGE);
    thread::scope(|scope| {
        for t in 0..6 {
            let (wiki, page) = (&expected_wiki, &expected_page);
            scope.spawn(move || {
                let mut client = Client::connect(addr);
                for i in 0..15 {
                    let big = (i + t) % 5 == 0;
                    let path = if big { WIKI } else { PAGE };
                    let r = client.roundtrip(get_keepalive(&format!("/{path}")).as_bytes());
                    assert_eq!(r.status, 200);
                    assert!(&r.body == if big { wiki } else { page }, "body of {path}");
                }
            });
        }
    });
}

/// A pipelined burst larger than any single receive buffer: every request is still answered, in
/// order (the server may stop reading while it catches up, but must not drop the connection).
#[test]
fn large_pipelined_burst_is_answered() {
    let server = Server::start();
    let count = 2500;
    let mut raw = get_keepalive(&format!("/{PAGE}")).repeat(count - 1);
    raw.push_str(&common::http::get_request("/index.html"));
    let bytes = exchange(server.addr, raw.as_bytes());
    let responses = parse_responses(&bytes, &[]);
    assert_eq!(
        responses.len(),
        count,
        "responses to {count} pipelined requests ({} bytes in one write)",
        raw.len()
    );
    let page = server.fixture().read(PAGE);
    for (i, r) in responses[..count - 1].iter().enumerate() {
        assert_eq!((r.status, &r.body), (200, &page), "response #{i}");
    }
    assert_serves(&responses[count - 1], server.fixture(), "index.html");
}

/// The same burst for a body that goes out by sendfile with its head sent at once: each
/// response finished at once must not answer the next pipelined request from inside itself
/// (thousands of nested calls), and every response still arrives whole and in order.
#[test]
fn large_pipelined_burst_of_sendfile_bodies_is_answered() {
    let server = Server::start();
    let rel = "httptest/twenty_kib.bin";
    let body = common::fixture::pseudo_random(0x20, 20 * 1024);
    std::fs::write(server.fixture().path(rel), &body).expect("write the 20 KiB file");
    let count = 2500;
    let mut raw = get_keepalive(&format!("/{rel}")).repeat(count - 1);
    raw.push_str(&common::http::get_request(&format!("/{rel}")));
    let bytes = exchange(server.addr, raw.as_bytes());
    let responses = parse_responses(&bytes, &[]);
    assert_eq!(responses.len(), count, "responses to {count} pipelined requests");
    for (i, r) in responses.iter().enumerate() {
        assert!(
            r.status == 200 && r.body == body,
            "response #{i}: status {}, {} bytes",
            r.status,
            r.body.len()
        );
    }
}

/// A client that reads in small pieces makes the server wait on a full socket buffer many times
/// per response; the bytes must still arrive complete and in order.
#[test]
fn slow_reader_gets_every_byte() {
    let server = Server::start();
    let mut raw = get_keepalive("/httptest/big.bin").repeat(2);
    raw.push_str(&common::http::get_request(&format!("/{WIKI}")));
    let mut stream = common::http::connect(server.addr);
    common::http::send_lenient(&mut stream, raw.as_bytes());
    let mut bytes = Vec::new();
    let mut piece = [0u8; 1024];
    loop {
        match std::io::Read::read(&mut stream, &mut piece) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&piece[..n]),
            Err(e) => panic!("after {} bytes: {e}", bytes.len()),
        }
    }
    let responses = parse_responses(&bytes, &[]);
    assert_eq!(responses.len(), 3);
    assert_serves(&responses[0], server.fixture(), "httptest/big.bin");
    assert_serves(&responses[1], server.fixture(), "httptest/big.bin");
    assert_serves(&responses[2], server.fixture(), WIKI);
}

/// Many connections open at once, each with a request in flight before any is read.
#[test]
fn many_simultaneous_connections() {
    let server = Server::start();
    let mut clients: Vec<Client> = (0..200).map(|_| Client::connect(server.addr)).collect();
    for client in &mut clients {
        client.send(get_keepalive(&format!("/{PAGE}")).as_bytes());
    }
    for client in &mut clients {
        assert_serves(&client.read_response(false), server.fixture(), PAGE);
    }
    for client in &mut clients {
        let r = client.roundtrip(get_keepalive("/index.html").as_bytes());
        assert_serves(&r, server.fixture(), "index.html");
    }
}

/// Reads to the end of the stream, which must come within `within` of the last bytes.
fn read_to_prompt_eof(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "no end of stream within {within:?} after {} bytes (the FIN waited for the worker): {e}",
                received.len()
            ),
        }
    }
}

/// A response that ends the connection is followed by the server's FIN at once, not whenever
/// the worker next gets round to the connection; otherwise a fast client closes first and
/// holds the TIME_WAIT, which makes each of its later connects dearer (on a many-core machine
/// that halved the new-connection-per-request rate). Here the worker would stall for 2 s after
/// the completion of a response's send (a debug-build hook, as a worker busy with other
/// connections would be late), and the client must still see the end of the stream within 1 s.
#[test]
fn closing_response_is_followed_by_fin_without_waiting_for_the_worker() {
    let server = Server::start_with_env(1, &[], &[("RINGHTTPD_TEST_STALL_AFTER_SEND", "/index.html=2000")]);
    let mut stream = connect(server.addr);
    stream.write_all(get_request("/index.html").as_bytes()).expect("sending the request");
    let received = read_to_prompt_eof(&mut stream, Duration::from_secs(1));
    let responses = parse_responses(&received, &[false]);
    assert_eq!(responses.len(), 1, "{:?}", String::from_utf8_lossy(&received));
    assert_serves(&responses[0], server.fixture(), "index.html");
    assert_eq!(responses[0].expect_header("connection"), "close");
    // Once the worker is back, it goes on serving.
    let again = exchange(server.addr, get_request("/index.html").as_bytes());
    assert_serves(&parse_responses(&again, &[false])[0], server.fixture(), "index.html");
}

/// The FIN of a response that ends the connection rides on the response's last segment
/// instead of following in a packet of its own: a packet and its acknowledgement fewer per
/// connection, a fifth of the segments of a one-request connection. The client counts the
/// segments without data it received: on a connection that stays open that is the SYN-ACK and
/// whatever acknowledgement this kernel sends for the request, and a closing response must add
/// none. Extra segments can only be added by a busy machine (a delayed ACK), so the fewest of
/// five connections are compared.
#[test]
fn closing_response_carries_the_fin_in_its_last_segment() {
    let server = Server::start();
    let fewest = |close: bool| {
        (0..5)
            .map(|_| {
                let mut client = Client::connect(server.addr);
                let request = if close { get_request("/index.html") } else { get_keepalive("/index.html") };
                let response = client.roundtrip(request.as_bytes());
                assert_serves(&response, server.fixture(), "index.html");
                if close {
                    let mut rest = Vec::new();
                    client.stream().set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
                    client.stream().read_to_end(&mut rest).expect("the end of the stream");
                    assert!(rest.is_empty(), "bytes after the response: {rest:?}");
                }
                segments_in_without_data(client.stream())
            })
            .min()
            .expect("five connections")
    };
    let (open, closed) = (fewest(false), fewest(true));
    assert!(
        closed <= open,
        "the FIN came in a segment of its own ({closed} segments without data, {open} on a connection kept open)"
    );
}
