//! Faults: clients that vanish or half-close mid-exchange, files that shrink, disappear or change
//! kind while being served, a worker panic, and descriptor leaks after a burst of odd clients.
//!
//! After every fault the server must still answer a normal GET. Waits are bounded read timeouts
//! or polling loops; the per-worker file cache trusts an entry for one second, so a change on
//! disk must be visible once `CACHE_WINDOW` has passed.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::thread;
use std::time::{Duration, Instant};

use common::check::{assert_error, assert_serves};
use common::fixture::BIG_SIZE;
use common::http::{
    Client, Response, connect, connect_small_rcvbuf, exchange, get, get_keepalive, get_request,
    parse_responses, read_to_close, send_lenient, set_linger_zero,
};
use common::server::Server;

const BIG: &str = "httptest/big.bin";
const PAGE: &str = "httptest/dir2/page.html";
/// How long after a change on disk stale answers are tolerated: the cache's one-second trust
/// window plus a margin.
const CACHE_WINDOW: Duration = Duration::from_millis(1500);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(600)]).into_owned()
}

/// Reads a response head byte by byte (so no body byte is consumed) and returns its
/// Content-Length.
fn read_head(stream: &mut TcpStream) -> usize {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("reading the response head");
        assert_eq!(n, 1, "closed in the head: {:?}", text(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("UTF-8 head");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    head.lines()
        .find_map(|l| {
            let lower = l.to_ascii_lowercase();
            lower.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
        })
        .expect("Content-Length")
}

/// Reads `n` body bytes (or fewer if the connection ends).
fn read_some(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        match stream.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("reading body: {e}"),
        }
    }
    out.truncate(filled);
    out
}

// ---- clients that go away ----

/// Clients resetting in the middle of a 1 MiB body do not disturb a client downloading the
/// same file on the same worker at the same time.
#[test]
fn reset_mid_response_leaves_other_clients_alone() {
    let mut server = Server::start_with(1, &[]);
    let addr = server.addr;
    let expected = server.fixture().read(BIG);
    let steady = thread::spawn(move || {
        let mut client = Client::connect(addr);
        (0..15)
            .map(|_| client.roundtrip(get_keepalive(&format!("/{BIG}")).as_bytes()))
            .collect::<Vec<Response>>()
    });
    for i in 0..20 {
        let mut stream = connect(addr);
        stream.write_all(get_keepalive(&format!("/{BIG}")).as_bytes()).unwrap();
        assert_eq!(read_head(&mut stream), BIG_SIZE);
        let taken = read_some(&mut stream, 1 + i * 37_000);
        assert!(taken == expected[..taken.len()], "reset client {i} got wrong bytes");
        set_linger_zero(&stream);
    }
    for (i, r) in steady.join().expect("steady client").iter().enumerate() {
        assert_eq!(r.status, 200, "steady response {i}: {r:#?}");
        assert!(r.body == expected, "steady response {i} differs from the file");
    }
    server.assert_alive();
}

/// A client that sends its request and then shuts down its sending side still reads the
/// whole response, for a body sent from memory and for one spliced from the file.
#[test]
fn half_closed_client_gets_the_whole_response() {
    let mut server = Server::start();
    for rel in ["index.html", PAGE, "httptest/wikipedia_russia.html", BIG] {
        let client = Client::connect(server.addr);
        let mut stream = client.stream().try_clone().unwrap();
        stream.write_all(get_keepalive(&format!("/{rel}")).as_bytes()).unwrap();
        client.shutdown_write();
        let bytes = read_to_close(&mut stream);
        let responses = parse_responses(&bytes, &[false]);
        assert_eq!(responses.len(), 1, "{rel}: {responses:#?}");
        assert_serves(&responses[0], server.fixture(), rel);
    }
    server.assert_alive();
}

/// Requests pipelined before the half-close: the server may close after any response (RFC 9112
/// section 9.5; the client retries the rest), but what it sends is complete responses to the
/// first requests, in order, and at least the first one.
#[test]
fn half_closed_pipelining_client_gets_complete_responses_in_order() {
    let mut server = Server::start();
    let rels = ["index.html", PAGE, BIG];
    let client = Client::connect(server.addr);
    let mut stream = client.stream().try_clone().unwrap();
    let raw: String = rels.iter().map(|rel| get_keepalive(&format!("/{rel}"))).collect();
    stream.write_all(raw.as_bytes()).unwrap();
    client.shutdown_write();
    let bytes = read_to_close(&mut stream);
    let responses = parse_responses(&bytes, &[false; 3]);
    assert!(!responses.is_empty(), "no response before the close");
    assert!(responses.len() <= rels.len(), "{responses:#?}");
    for (r, rel) in responses.iter().zip(rels) {
        assert_serves(r, server.fixture(), rel);
    }
    server.assert_alive();
}

// ---- files that change while served ----

/// `len` bytes where each 8-byte word holds its own offset: a misplaced byte is always visible.
fn offset_pattern(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut offset = 0u64;
    while out.len() < len {
        out.extend_from_slice(&offset.to_le_bytes());
        offset += 8;
    }
    out.truncate(len);
    out
}

/// A 64 MiB file truncated to 1 MiB while a slow client downloads it: the client never gets
/// more than Content-Length, the connection ends (no hang), and the part of the file that
/// survived the truncation arrives intact.
#[test]
fn truncated_file_never_overruns_its_content_length() {
    const REL: &str = "httptest/shrinking.bin";
    const SIZE: usize = 64 * 1024 * 1024;
    const TRUNCATED_TO: usize = 1024 * 1024;
    let mut server = Server::start();
    let original = offset_pattern(SIZE);
    fs::write(server.fixture().path(REL), &original).unwrap();

    let mut stream = connect_small_rcvbuf(server.addr, 4096);
    stream.write_all(get_request(&format!("/{REL}")).as_bytes()).unwrap();
    let length = read_head(&mut stream);
    assert_eq!(length, SIZE);
    let mut body = Vec::new();
    for _ in 0..4 {
        body.extend(read_some(&mut stream, 4096));
        thread::sleep(Duration::from_millis(50));
    }
    let file = fs::OpenOptions::new().write(true).open(server.fixture().path(REL)).unwrap();
    file.set_len(TRUNCATED_TO as u64).unwrap();

    let started = Instant::now();
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "no EOF {:?} after the truncation ({e}); {} of {length} body bytes received",
                started.elapsed(),
                body.len()
            ),
        }
    }
    assert!(body.len() <= length, "{} body bytes for a Content-Length of {length}", body.len());
    // Bytes past the new end may have been queued before the truncation: the body goes out
    // zero-copy from the page cache, so they can read as zeroes. What lies below it must match.
    let kept = body.len().min(TRUNCATED_TO);
    assert!(body[..kept] == original[..kept], "the body differs from the file below the truncation point");
    server.assert_alive();
}

/// Requests `path` until `CACHE_WINDOW` has passed since `changed`: every answer must satisfy
/// `old` or `new`; after the window, five answers in a row must satisfy `new`.
fn assert_settles(
    server: &Server,
    path: &str,
    changed: Instant,
    old: &dyn Fn(&Response) -> bool,
    new: &dyn Fn(&Response) -> bool,
) {
    while changed.elapsed() < CACHE_WINDOW {
        let r = get(server.addr, path);
        assert!(old(&r) || new(&r), "{path} during the change: {r:#?}");
        thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..5 {
        let r = get(server.addr, path);
        assert!(new(&r), "{path} {:?} after the change: {r:#?}", changed.elapsed());
    }
}

fn is_body(expected: Vec<u8>) -> impl Fn(&Response) -> bool {
    move |r| r.status == 200 && r.content_length() == expected.len() && r.body == expected
}

fn is_status(status: u16) -> impl Fn(&Response) -> bool {
    move |r| r.status == status
}

#[test]
fn deleted_file_becomes_404() {
    let mut server = Server::start();
    for rel in [PAGE, BIG] {
        let before = server.fixture().read(rel);
        for _ in 0..4 {
            assert_serves(&get(server.addr, &format!("/{rel}")), server.fixture(), rel);
        }
        fs::remove_file(server.fixture().path(rel)).unwrap();
        let changed = Instant::now();
        assert_settles(&server, &format!("/{rel}"), changed, &is_body(before), &is_status(404));
        assert_error(&get(server.addr, &format!("/{rel}")), 404);
    }
    server.assert_alive();
}

/// Replacing a file by renaming a new one over it: each answer is wholly the old or wholly the
/// new file, and the new one after the window.
#[test]
fn replaced_file_is_served_new() {
    let mut server = Server::start();
    for (rel, new_len) in [(PAGE, 5000), (BIG, 2 * 1024 * 1024 + 3)] {
        let before = server.fixture().read(rel);
        for _ in 0..4 {
            assert_serves(&get(server.addr, &format!("/{rel}")), server.fixture(), rel);
        }
        let after = common::fixture::pseudo_random(new_len as u64, new_len);
        let temp = server.fixture().path(&format!("{rel}.tmp"));
        fs::write(&temp, &after).unwrap();
        fs::rename(&temp, server.fixture().path(rel)).unwrap();
        let changed = Instant::now();
        assert_settles(&server, &format!("/{rel}"), changed, &is_body(before), &is_body(after));
    }
    server.assert_alive();
}

fn is_redirect_to(location: &'static str) -> impl Fn(&Response) -> bool {
    move |r| r.status == 301 && r.header("location") == Some(location)
}

/// A directory replaced by a file (and back) is answered as what it is now.
#[test]
fn directory_and_file_swaps_are_noticed() {
    let mut server = Server::start();
    let dir = server.fixture().path("httptest/swap");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("index.html"), b"swap: a directory index\n").unwrap();
    for _ in 0..4 {
        assert!(is_body(b"swap: a directory index\n".to_vec())(&get(server.addr, "/httptest/swap/")));
        assert!(is_redirect_to("/httptest/swap/")(&get(server.addr, "/httptest/swap")));
    }

    fs::remove_dir_all(&dir).unwrap();
    fs::write(&dir, b"swap: now a file\n").unwrap();
    let changed = Instant::now();
    let dir_index = || is_body(b"swap: a directory index\n".to_vec());
    let file = || is_body(b"swap: now a file\n".to_vec());
    assert_settles(&server, "/httptest/swap", changed, &is_redirect_to("/httptest/swap/"), &file());
    assert_settles(&server, "/httptest/swap/", changed, &dir_index(), &is_status(404));

    fs::remove_file(&dir).unwrap();
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("index.html"), b"swap: a directory again\n").unwrap();
    let changed = Instant::now();
    let again = || is_body(b"swap: a directory again\n".to_vec());
    assert_settles(&server, "/httptest/swap", changed, &file(), &is_redirect_to("/httptest/swap/"));
    assert_settles(&server, "/httptest/swap/", changed, &is_status(404), &again());
    server.assert_alive();
}

/// Raw UTF-8 in a target is not valid URI syntax, but it is only a client's mistake: wherever a
/// multi-byte character falls, the answer is a 400 or a 404 and the server stays up (any panic
/// would abort the whole process).
#[test]
fn non_ascii_targets_are_answered_without_a_crash() {
    let mut server = Server::start();
    let mut failures = Vec::new();
    for prefix in 0..10 {
        let target = format!("/{}\u{e9}\u{20ac}", "a".repeat(prefix));
        let raw = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let bytes = exchange(server.addr, raw.as_bytes());
        if bytes.is_empty() {
            failures.push(format!("{target:?}: closed without a response"));
            break;
        }
        let r = &parse_responses(&bytes, &[false])[0];
        if !matches!(r.status, 400 | 404) {
            failures.push(format!("{target:?}: {} {}", r.status, r.reason));
        }
    }
    assert!(failures.is_empty(), "{}\nstderr:\n{}", failures.join("\n"), server.log());
    server.assert_alive();
}

// ---- a panicking worker ----

/// A panic in a worker takes the whole process down with SIGABRT after logging a `fatal:` line,
/// instead of leaving a server with a dead worker.
#[test]
fn worker_panic_aborts_the_process() {
    let mut server = Server::start_with_env(2, &[], &[("RINGHTTPD_TEST_PANIC_PATH", "/x")]);
    let r = get(server.addr, "/index.html");
    assert_eq!(r.status, 200, "{r:#?}");
    assert_error(&get(server.addr, "/x/"), 404);

    let mut stream = connect(server.addr);
    send_lenient(&mut stream, get_request("/x").as_bytes());
    let bytes = read_to_close(&mut stream);
    assert!(bytes.is_empty(), "a response from a panicking worker: {:?}", text(&bytes));

    let status = server.wait_exit(Duration::from_secs(10));
    // The reader thread sees EOF once the process is gone; give it a moment to store the rest.
    let deadline = Instant::now() + Duration::from_secs(5);
    let fatal = loop {
        let log = server.log();
        if let Some(line) = log.lines().find(|l| l.contains("fatal:")) {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no fatal: line in stderr:\n{log}");
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.signal(), Some(libc::SIGABRT), "exit status {status:?}");
    assert!(fatal.contains("aborting"), "fatal line {fatal:?}");
}

// ---- descriptor leaks ----

/// One misbehaving (or not) client; `kind` picks the behaviour.
fn odd_client(addr: SocketAddr, kind: usize) {
    let mut stream = connect(addr);
    match kind {
        // Reset after part of the request head.
        0 => {
            send_lenient(&mut stream, b"GET /index.html HTTP/1.1\r\nHo");
            set_linger_zero(&stream);
        }
        // Part of a head, then a normal close.
        1 => send_lenient(&mut stream, b"GET /index.html HTT"),
        // Garbage: answered 400 and closed.
        2 => {
            send_lenient(&mut stream, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n");
            let _ = read_to_close(&mut stream);
        }
        // A normal request.
        3 => {
            send_lenient(&mut stream, get_request("/index.html").as_bytes());
            let _ = read_to_close(&mut stream);
        }
        // Connect and leave at once.
        4 => {}
        // Two pipelined requests, then close without reading the answers.
        5 => send_lenient(
            &mut stream,
            format!("{}{}", get_keepalive("/index.html"), get_keepalive(&format!("/{PAGE}"))).as_bytes(),
        ),
        // A request for a missing file, then half-close and read.
        _ => {
            send_lenient(&mut stream, get_keepalive("/no/such/file").as_bytes());
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let _ = read_to_close(&mut stream);
        }
    }
}

/// One client of the large-file kind: at most one of these runs at a time, so the pool of
/// splice pipes never grows past one.
fn big_file_client(addr: SocketAddr, kind: usize) {
    let mut stream = connect(addr);
    send_lenient(&mut stream, get_keepalive(&format!("/{BIG}")).as_bytes());
    match kind {
        // Reset mid-body.
        0 => {
            read_head(&mut stream);
            read_some(&mut stream, 100_000);
            set_linger_zero(&stream);
        }
        // Half-close, then read everything.
        1 => {
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let _ = read_to_close(&mut stream);
        }
        // Close mid-body without a reset.
        _ => {
            read_head(&mut stream);
            read_some(&mut stream, 300_000);
        }
    }
}

/// 30 large-file clients that reset or close mid-body, then 170 connections that reset, stop
/// half-way, send garbage or behave: once the server says it holds no connection, its
/// descriptors come back to what they were before the first request.
///
/// Every wait is on the server's own state, bounded generously, never on a guessed time: a
/// leak never goes away, so a slow machine only makes the test slower. The cache's descriptors
/// go once its entries have been idle for `IDLE_AGE` (3 s); the pipe pool keeps one pipe (two
/// descriptors), since the large-file clients run one at a time, each after the server has let
/// go of the one before.
#[test]
fn odd_connections_leak_no_descriptors() {
    let mut server = Server::start_with(1, &["--metrics", "127.0.0.1:0"]);
    let addr = server.addr;
    let pid = server.pid();
    let metrics = metrics_addr(&server);
    let root = fs::canonicalize(server.fixture().root()).expect("the document root");
    let before = open_fds(pid, &root);
    for rel in ["index.html", PAGE, BIG] {
        assert_serves(&get(addr, &format!("/{rel}")), server.fixture(), rel);
    }

    for i in 0..30 {
        big_file_client(addr, i % 3);
        await_no_connections(metrics);
    }
    let small: Vec<_> =
        (0..5).map(|t| thread::spawn(move || (0..34).for_each(|i| odd_client(addr, t + i)))).collect();
    for handle in small {
        handle.join().expect("odd clients");
    }
    await_no_connections(metrics);

    let settled = |now: &Fds| {
        now.sockets == before.sockets
            && now.served == 0
            && now.other == before.other
            && now.pipes <= before.pipes + 2
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut now = open_fds(pid, &root);
    while !settled(&now) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        now = open_fds(pid, &root);
    }
    assert!(settled(&now), "descriptors after the clients: {now:?}; before the first request: {before:?}");
    server.assert_alive();
}

/// The metrics address the server printed (`metrics on http://ADDR/metrics`).
fn metrics_addr(server: &Server) -> SocketAddr {
    let log = server.log();
    let line = log.lines().find(|l| l.contains("metrics on http://")).expect("a metrics line");
    let rest = &line[line.find("http://").expect("a URL") + 7..];
    rest.split('/').next().and_then(|a| a.parse().ok()).expect("the metrics address")
}

/// Waits until the only connection the server holds is the metrics request asking; panics
/// after a minute.
fn await_no_connections(metrics: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = get(metrics, "/metrics").body_text();
        let open = text
            .lines()
            .find_map(|l| l.strip_prefix("ringhttpd_connections_open "))
            .and_then(|n| n.parse::<u64>().ok())
            .expect("a ringhttpd_connections_open sample");
        if open <= 1 {
            return;
        }
        assert!(Instant::now() < deadline, "{} connections still open after a minute", open - 1);
        thread::sleep(Duration::from_millis(20));
    }
}

/// A process's open descriptors by kind: sockets, pipes, files beneath the document root
/// (the cache's), and the rest (rings, eventfds, the root itself, inherited ones).
#[derive(Debug, Clone, Copy, Default)]
struct Fds {
    sockets: usize,
    pipes: usize,
    served: usize,
    other: usize,
}

fn open_fds(pid: u32, root: &std::path::Path) -> Fds {
    let mut fds = Fds::default();
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).expect("read the server's fd directory") {
        // A descriptor closed between the listing and the readlink is simply gone.
        let Ok(target) = entry.and_then(|e| fs::read_link(e.path())) else { continue };
        let name = target.to_string_lossy();
        if name.starts_with("socket:") {
            fds.sockets += 1;
        } else if name.starts_with("pipe:") {
            fds.pipes += 1;
        } else if target.starts_with(root) && target != root {
            fds.served += 1;
        } else {
            fds.other += 1;
        }
    }
    fds
}
