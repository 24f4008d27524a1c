//! Resource limits: the header, keep-alive and send timeouts, the size and line-count limits on a
//! request head, and the per-worker connection limit.
//!
//! Timers run on a one-second tick, so a connection is reaped between its deadline and about two
//! seconds later. Every wait here is a read timeout or a bounded polling loop with a generous
//! upper bound; nothing sleeps to wait for the server.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::check::{assert_error, assert_error_shape, assert_serves};
use common::fixture::pseudo_random;
use common::http::{Client, Response, connect, get_keepalive, parse_responses, request};
use common::server::Server;

/// How long after its deadline a connection may still be open: up to two ticks, plus slack for
/// a loaded machine running many tests at once.
const REAP_SLACK: Duration = Duration::from_secs(4);
/// Allowance for the test's clock starting a little after the server's.
const CLOCK_EPSILON: Duration = Duration::from_millis(200);
/// A file much larger than every socket and pipe buffer between the server and a client.
const HUGE_REL: &str = "httptest/huge.bin";
const HUGE_SIZE: usize = 16 * 1024 * 1024;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(600)]).into_owned()
}

/// Reads until the server closes (EOF or reset) and returns what arrived and when the close was
/// seen. Panics if the connection is still open after `limit`.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Instant) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "connection still open after {limit:?}; received {:?}", text(&out));
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return (out, Instant::now()),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                return (out, Instant::now());
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("reading: {e}; received {:?}", text(&out)),
        }
    }
}

/// Asserts that nothing arrives and the connection stays open for `wait`.
fn assert_open_and_silent(stream: &mut TcpStream, wait: Duration) {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(0) => panic!("closed before {wait:?} had passed"),
        Ok(_) => panic!("unexpected byte {byte:?} within {wait:?}"),
        Err(e) => panic!("connection failed within {wait:?}: {e}"),
    }
}

/// Asserts that a close seen `elapsed` after the timer started came on time for `timeout`.
fn assert_reaped_on_time(elapsed: Duration, timeout: Duration, what: &str) {
    assert!(
        elapsed + CLOCK_EPSILON >= timeout,
        "{what}: closed after {elapsed:?}, before its {timeout:?} timeout"
    );
    assert!(elapsed <= timeout + REAP_SLACK, "{what}: closed only after {elapsed:?} (timeout {timeout:?})");
}

/// The single response in `bytes`, which must be a 408 announcing the close.
fn assert_request_timeout(bytes: &[u8]) {
    let responses = parse_responses(bytes, &[false]);
    assert_eq!(responses.len(), 1, "expected exactly one 408: {responses:#?}");
    let r = &responses[0];
    assert_eq!((r.status, r.reason.as_str()), (408, "Request Timeout"), "{r:#?}");
    assert_error_shape(r);
    assert!(r.says_close(), "a 408 closes the connection: {r:#?}");
}

fn keepalive_get(client: &mut Client, server: &Server, rel: &str) -> Response {
    let r = client.roundtrip(get_keepalive(&format!("/{rel}")).as_bytes());
    assert_serves(&r, server.fixture(), rel);
    assert_eq!(r.expect_header("connection"), "keep-alive", "{r:#?}");
    r
}

// ---- header timeout ----

#[test]
fn partial_head_gets_408_then_close() {
    let mut server = Server::start_with(1, &["--header-timeout", "1"]);
    let started = Instant::now();
    let mut stream = connect(server.addr);
    stream.write_all(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n").unwrap();
    let (bytes, closed) = read_until_closed(&mut stream, secs(1) + REAP_SLACK + secs(1));
    assert_reaped_on_time(closed - started, secs(1), "partial head");
    assert_request_timeout(&bytes);
    server.assert_alive();
}

#[test]
fn silent_connection_is_closed_without_a_response() {
    let mut server = Server::start_with(1, &["--header-timeout", "1"]);
    let started = Instant::now();
    let mut stream = connect(server.addr);
    let (bytes, closed) = read_until_closed(&mut stream, secs(1) + REAP_SLACK + secs(1));
    assert_reaped_on_time(closed - started, secs(1), "silent connection");
    assert!(bytes.is_empty(), "nothing is sent to a silent client: {:?}", text(&bytes));
    server.assert_alive();
}

/// Slowloris: a head that grows by one byte every 200 ms never completes, and the trickle must
/// not push the deadline back.
#[test]
fn trickled_head_still_times_out() {
    let mut server = Server::start_with(1, &["--header-timeout", "2"]);
    let started = Instant::now();
    let mut stream = connect(server.addr);
    stream.write_all(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").unwrap();
    let limit = secs(2) + REAP_SLACK + secs(1);
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    // Each read waits at most 200 ms for the server; when it has nothing to say, send a byte.
    let closed = loop {
        assert!(started.elapsed() < limit, "trickling client not reaped within {limit:?}");
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => break Instant::now(),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if received.is_empty() {
                    // The server may already have closed; the read above will tell.
                    let _ = stream.write_all(b"a");
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break Instant::now(),
            Err(e) => panic!("reading: {e}"),
        }
    };
    assert_reaped_on_time(closed - started, secs(2), "trickled head");
    assert_request_timeout(&received);
    server.assert_alive();
}

/// After a response, the first byte of the next request starts the header timer again.
#[test]
fn partial_second_request_gets_408() {
    let mut server = Server::start_with(1, &["--header-timeout", "1", "--keepalive-timeout", "30"]);
    let mut client = Client::connect(server.addr);
    keepalive_get(&mut client, &server, "index.html");
    let started = Instant::now();
    client.send(b"GET /index.html HTTP/1.1\r\nHo");
    let mut stream = client.stream().try_clone().unwrap();
    let (bytes, closed) = read_until_closed(&mut stream, secs(1) + REAP_SLACK + secs(1));
    assert_reaped_on_time(closed - started, secs(1), "partial second head");
    assert_request_timeout(&bytes);
    server.assert_alive();
}

// ---- keep-alive timeout ----

#[test]
fn idle_keepalive_connection_is_closed() {
    let mut server = Server::start_with(1, &["--keepalive-timeout", "1", "--header-timeout", "30"]);
    let mut client = Client::connect(server.addr);
    keepalive_get(&mut client, &server, "index.html");
    let started = Instant::now();
    let mut stream = client.stream().try_clone().unwrap();
    let (bytes, closed) = read_until_closed(&mut stream, secs(1) + REAP_SLACK + secs(1));
    assert_reaped_on_time(closed - started, secs(1), "idle keep-alive");
    assert!(bytes.is_empty(), "an idle close sends nothing: {:?}", text(&bytes));
    server.assert_alive();
}

/// Between requests the keep-alive timeout applies, not the (shorter) header timeout.
#[test]
fn keepalive_wait_is_not_cut_short_by_the_header_timeout() {
    let mut server = Server::start_with(1, &["--header-timeout", "1", "--keepalive-timeout", "4"]);
    let mut client = Client::connect(server.addr);
    keepalive_get(&mut client, &server, "index.html");
    let started = Instant::now();
    let mut stream = client.stream().try_clone().unwrap();
    assert_open_and_silent(&mut stream, secs(3));
    let (bytes, closed) = read_until_closed(&mut stream, secs(1) + REAP_SLACK + secs(1));
    assert_reaped_on_time(closed - started, secs(4), "idle keep-alive");
    assert!(bytes.is_empty(), "an idle close sends nothing: {:?}", text(&bytes));
    server.assert_alive();
}

/// A connection that keeps asking is never idle for a whole timeout, so it stays open.
#[test]
fn busy_keepalive_connection_is_kept() {
    let server = Server::start_with(1, &["--keepalive-timeout", "1", "--header-timeout", "1"]);
    let mut client = Client::connect(server.addr);
    let started = Instant::now();
    while started.elapsed() < secs(4) {
        keepalive_get(&mut client, &server, "index.html");
        thread::sleep(Duration::from_millis(300));
    }
}

// ---- send timeout ----

fn start_with_huge_file(extra: &[&str]) -> Server {
    let server = Server::start_with(1, extra);
    fs::write(server.fixture().path(HUGE_REL), pseudo_random(0x4a6e, HUGE_SIZE)).unwrap();
    server
}

/// Sends a GET for the huge file and reads just its head; returns the head's Content-Length.
fn start_huge_download(stream: &mut TcpStream) -> usize {
    stream.write_all(get_keepalive(&format!("/{HUGE_REL}")).as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed in the head: {:?}", text(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .expect("Content-Length");
    length.parse().unwrap()
}

/// The TCP state (as in /proc/net/tcp, e.g. 0x01 ESTABLISHED) of the server's end of the
/// loopback connection from `client` to `server`, if that socket still exists.
fn server_side_state(server: SocketAddr, client: SocketAddr) -> Option<u8> {
    let table = fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!("0100007F:{:04X}", server.port());
    let remote = format!("0100007F:{:04X}", client.port());
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()))
            .then(|| u8::from_str_radix(fields[3], 16).expect("hex state"))
    })
}

const TCP_ESTABLISHED: u8 = 0x01;

/// A client that takes no bytes at all is dropped after the send timeout: the server's end
/// leaves ESTABLISHED, and the client then gets less than the promised body before EOF.
#[test]
fn client_that_reads_nothing_is_dropped_after_send_timeout() {
    let mut server = start_with_huge_file(&["--send-timeout", "1"]);
    let mut stream = connect(server.addr);
    let me = stream.local_addr().unwrap();
    let started = Instant::now();
    let length = start_huge_download(&mut stream);
    assert_eq!(length, HUGE_SIZE);
    let limit = secs(1) + REAP_SLACK;
    let dropped = loop {
        match server_side_state(server.addr, me) {
            Some(TCP_ESTABLISHED) => {}
            _ => break started.elapsed(),
        }
        assert!(started.elapsed() < limit, "stalled client still connected after {limit:?}");
        thread::sleep(Duration::from_millis(50));
    };
    assert_reaped_on_time(dropped, secs(1), "stalled reader");
    let (body, _) = read_until_closed(&mut stream, secs(10));
    assert!(body.len() < length, "the dropped client still got the whole body ({} bytes)", body.len());
    let file = server.fixture().read(HUGE_REL);
    assert!(body == file[..body.len()], "bytes before the drop differ from the file");
    server.assert_alive();
}

/// A slow reader that takes 64 KiB every 250 ms (about 256 KB/s) accepts response bytes all the
/// time, so a 2 s send timeout must never drop it, however long the whole download takes.
#[test]
fn slow_reader_making_progress_is_kept() {
    const STEP: usize = 64 * 1024;
    let mut server = start_with_huge_file(&["--send-timeout", "2"]);
    let mut stream = connect(server.addr);
    let me = stream.local_addr().unwrap();
    let length = start_huge_download(&mut stream);
    let mut body = Vec::with_capacity(length);
    let mut chunk = vec![0u8; STEP];
    let started = Instant::now();
    while started.elapsed() < secs(6) {
        thread::sleep(Duration::from_millis(250));
        let n = stream.read(&mut chunk).expect("slow read");
        body.extend_from_slice(&chunk[..n]);
        assert_eq!(
            server_side_state(server.addr, me),
            Some(TCP_ESTABLISHED),
            "the server dropped a client reading {STEP} bytes every 250 ms, {:?} into the body \
             ({} bytes read)",
            started.elapsed(),
            body.len()
        );
    }
    assert!(body.len() < length, "the slow phase must not finish the download");
    let mut chunk = vec![0u8; 1024 * 1024];
    stream.set_read_timeout(Some(secs(10))).unwrap();
    while body.len() < length {
        let n = stream.read(&mut chunk).expect("fast read");
        assert!(n > 0, "closed after {} of {length} bytes", body.len());
        body.extend_from_slice(&chunk[..n]);
    }
    assert!(body == server.fixture().read(HUGE_REL), "body differs from the file");
    server.assert_alive();
}

// ---- request head size and header count ----

/// `GET /index.html` padded with one header to exactly `len` bytes of head.
fn head_of_len(len: usize) -> Vec<u8> {
    let start = "GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Pad: ";
    let fill = len - start.len() - 4;
    format!("{start}{}\r\n\r\n", "p".repeat(fill)).into_bytes()
}

#[test]
fn head_exactly_at_the_limit_is_served() {
    let mut server = Server::start_with(1, &["--max-header-size", "1024"]);
    let r = request(server.addr, &head_of_len(1024));
    assert_serves(&r, server.fixture(), "index.html");
    server.assert_alive();
}

#[test]
fn head_one_byte_over_the_limit_gets_431() {
    let mut server = Server::start_with(1, &["--max-header-size", "1024"]);
    for len in [1025, 2000, 5000] {
        let r = request(server.addr, &head_of_len(len));
        assert_error(&r, 431);
        assert!(r.says_close(), "head of {len} bytes: {r:#?}");
    }
    server.assert_alive();
}

/// A head that keeps coming without ever ending is refused once it passes the limit, without
/// waiting for its end.
#[test]
fn endless_header_gets_431_without_waiting_for_the_end() {
    let mut server = Server::start_with(1, &["--max-header-size", "1024"]);
    let mut stream = connect(server.addr);
    stream.write_all(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nX-Endless: ").unwrap();
    let _ = stream.write_all(&[b'e'; 4000]);
    let (bytes, _) = read_until_closed(&mut stream, secs(5));
    let responses = parse_responses(&bytes, &[false]);
    assert_eq!(responses.len(), 1, "{responses:#?}");
    assert_error(&responses[0], 431);
    assert!(responses[0].says_close());
    server.assert_alive();
}

/// A request line that has not ended within the limit is a 414, whether or not the rest of
/// the head arrives in the same segment (RFC 9112 section 3: a server receiving a
/// request-target longer than it wishes to parse answers 414).
#[test]
fn request_line_longer_than_the_limit_gets_414() {
    let mut server = Server::start_with(1, &["--max-header-size", "1024"]);
    let mut failures = Vec::new();
    for target_len in [1100, 1500, 3000, 9000] {
        let target = format!("/{}", "t".repeat(target_len));
        let raw = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let r = request(server.addr, raw.as_bytes());
        assert_error_shape(&r);
        assert!(r.says_close(), "target of {target_len} bytes: {r:#?}");
        if r.status != 414 {
            failures.push(format!("target of {target_len} bytes: {} {}", r.status, r.reason));
        }
    }
    assert!(failures.is_empty(), "not 414:\n{}", failures.join("\n"));
    server.assert_alive();
}

fn head_with_lines(lines: usize) -> Vec<u8> {
    let mut raw = String::from("GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for i in 2..lines {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    raw.into_bytes()
}

#[test]
fn hundred_header_lines_are_served() {
    let mut server = Server::start_with(1, &[]);
    let r = request(server.addr, &head_with_lines(100));
    assert_serves(&r, server.fixture(), "index.html");
    server.assert_alive();
}

#[test]
fn more_than_hundred_header_lines_get_431() {
    let mut server = Server::start_with(1, &[]);
    for lines in [101, 150, 500] {
        let r = request(server.addr, &head_with_lines(lines));
        assert_error(&r, 431);
        assert!(r.says_close(), "{lines} header lines: {r:#?}");
    }
    server.assert_alive();
}

// ---- connection limit ----

/// At `--max-connections` the worker stops accepting: a further connection waits in the
/// backlog, unanswered, until one of the open ones closes.
#[test]
fn connection_over_the_limit_waits_for_a_free_slot() {
    let mut server = Server::start_with(1, &["--max-connections", "2"]);
    let mut first = Client::connect(server.addr);
    let mut second = Client::connect(server.addr);
    keepalive_get(&mut first, &server, "index.html");
    keepalive_get(&mut second, &server, "index.html");

    let mut third = Client::connect(server.addr);
    third.send(get_keepalive("/index.html").as_bytes());
    let mut probe = third.stream().try_clone().unwrap();
    assert_open_and_silent(&mut probe, secs(1));

    drop(first);
    third.stream().set_read_timeout(Some(secs(5))).unwrap();
    let r = third.read_response(false);
    assert_serves(&r, server.fixture(), "index.html");
    keepalive_get(&mut second, &server, "index.html");
    drop(second);
    drop(third);
    server.assert_alive();
}
