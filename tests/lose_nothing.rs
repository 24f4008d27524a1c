//! Nothing lost around the end of an exchange: a response is never cut short by a reset, a
//! half-close never drops requests already sent, an aborted connection never sends again, the
//! client's deadlines never run while the server itself is working, transient errors are not
//! remembered, and a deleted file's descriptor is let go.
//!
//! Slow storage is simulated with the debug-build hook `RINGHTTPD_TEST_SLOW_OPEN=NAME=MS`: the
//! open of NAME (a path beneath the root, as the server opens it) starts MS milliseconds late,
//! through the ring, so the worker stays free meanwhile; a missing NAME then fails as usual.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::fixture::pseudo_random;
use common::http::{Client, connect, get, get_keepalive, get_request, parse_responses, read_to_close};
use common::server::Server;

const HUGE: &str = "huge.bin";
const HUGE_SIZE: usize = 20 * 1024 * 1024;
const PAGE: &str = "httptest/dir2/page.html";

/// Reads a whole response to EOF, failing on a reset (which would have destroyed unread bytes).
fn read_all_without_reset(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("after {} bytes: {e}", out.len()),
        }
    }
}

/// Splits one response into head text and body bytes.
fn split_head(bytes: &[u8]) -> (String, &[u8]) {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    (String::from_utf8_lossy(&bytes[..end]).into_owned(), &bytes[end..])
}

fn assert_whole_huge_body(bytes: &[u8], expected: &[u8]) {
    let (head, body) = split_head(bytes);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body.len(), expected.len(), "body cut short (head: {head})");
    assert!(body == expected, "body bytes differ");
}

/// Bug 1: bytes a client sends after a `Connection: close` request (a stray CRLF, a second
/// request it should not have sent) must not turn the close into a reset that destroys the
/// response still on its way.
#[test]
fn close_response_survives_bytes_sent_after_the_request() {
    let server = Server::start_with(1, &[]);
    let expected = pseudo_random(0x20, HUGE_SIZE);
    fs::write(server.fixture().path(HUGE), &expected).expect("writing the big file");
    for raw in [get_request(&format!("/{HUGE}")), format!("GET /{HUGE} HTTP/1.0\r\n\r\n")] {
        let mut stream = connect(server.addr);
        stream.write_all(raw.as_bytes()).expect("sending the request");
        // The response has started (so the server is mid-body) before the stray bytes go out.
        let mut first = vec![0u8; 64 * 1024];
        stream.read_exact(&mut first).expect("the first bytes of the response");
        stream.write_all(b"\r\n").expect("sending stray bytes");
        first.extend(read_all_without_reset(&mut stream));
        assert_whole_huge_body(&first, &expected);
    }
}

/// Polls `path` until it holds `lines` lines; panics after 10 s.
fn wait_for_log_lines(path: &std::path::Path, lines: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read_to_string(path).map_or(0, |t| t.lines().count()) < lines {
        assert!(Instant::now() < deadline, "no {lines} access log lines within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bug 1, the other half: a `Connection: close` response that the kernel took whole before the
/// stray bytes arrive (the access log line is written once the last byte is handed over) is
/// not destroyed either: bytes the client has not acknowledged make the close linger too.
#[test]
fn close_response_survives_bytes_sent_after_it_was_handed_over() {
    let log_dir = std::env::temp_dir().join(format!("ringhttpd-linger-{}", std::process::id()));
    fs::create_dir_all(&log_dir).expect("log dir");
    let log = log_dir.join("access.log");
    let log_arg = log.to_string_lossy().into_owned();
    let server = Server::start_with(1, &["--access-log", &log_arg]);
    let expected = server.fixture().read("httptest/big.bin");
    for (round, raw) in
        [get_request("/httptest/big.bin"), "GET /httptest/big.bin HTTP/1.0\r\n\r\n".into()].iter().enumerate()
    {
        let mut stream = connect(server.addr);
        stream.write_all(raw.as_bytes()).expect("sending the request");
        wait_for_log_lines(&log, round + 1);
        stream.write_all(b"\r\n").expect("sending stray bytes");
        let bytes = read_all_without_reset(&mut stream);
        assert_whole_huge_body(&bytes, &expected);
    }
    drop(server);
    let _ = fs::remove_dir_all(&log_dir);
}

/// Bug 2: a FIN after pipelined requests means "no more requests", not "forget the ones sent".
#[test]
fn pipelined_requests_before_a_half_close_are_all_answered() {
    let server = Server::start_with(1, &[]);
    for count in [2, 3, 5] {
        let mut client = Client::connect(server.addr);
        let paths = ["/index.html", &format!("/{PAGE}"), "/httptest/big.bin"];
        let wanted: Vec<&str> = (0..count).map(|i| paths[i % paths.len()]).collect();
        let raw: String = wanted.iter().map(|p| get_keepalive(p)).collect();
        client.send(raw.as_bytes());
        client.shutdown_write();
        let mut stream = client.stream().try_clone().expect("clone");
        let bytes = read_to_close(&mut stream);
        let responses = parse_responses(&bytes, &[]);
        assert_eq!(responses.len(), count, "{count} pipelined requests then FIN: {responses:#?}");
        for (response, path) in responses.iter().zip(&wanted) {
            assert_eq!(response.status, 200, "{path}: {response:#?}");
            assert_eq!(response.body, server.fixture().read(&path[1..]), "{path}");
        }
    }
}

/// A round trip on another connection: the one worker has handled everything sent before it.
fn barrier(addr: SocketAddr) {
    let response = get(addr, "/index.html");
    assert_eq!(response.status, 200, "{response:#?}");
}

/// Bug 3: a connection aborted while its file lookup is in flight (here by the shutdown
/// timeout) must not go on to probe siblings and send a response once the lookup fails; the
/// stop then completes as soon as the lookup does.
#[test]
fn connection_aborted_during_a_failing_lookup_sends_nothing() {
    let slow = format!("{HUGE}.br=3000");
    let mut server = Server::start_with_env(
        1,
        &["--shutdown-timeout", "1"],
        &[("RINGHTTPD_TEST_SLOW_OPEN", slow.as_str())],
    );
    fs::File::create(server.fixture().path(HUGE)).and_then(|f| f.set_len(HUGE_SIZE as u64)).expect("file");
    let mut stream = connect(server.addr);
    stream.write_all(get_request(&format!("/{HUGE}")).as_bytes()).expect("sending the request");
    barrier(server.addr);
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let after_abort = read_to_close(&mut stream);
    assert!(
        after_abort.is_empty(),
        "an aborted connection sent {} bytes: {:?}",
        after_abort.len(),
        String::from_utf8_lossy(&after_abort[..after_abort.len().min(200)])
    );
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}; stderr:\n{}", server.log());
    assert!(signalled.elapsed() < Duration::from_secs(10));
}

/// Bug 5: the header timeout covers receiving the head, not the server's own work on the
/// file: a complete request whose lookup outlasts it is still answered.
#[test]
fn header_timeout_does_not_cut_off_a_slow_lookup() {
    let slow = format!("{PAGE}=2500");
    let server =
        Server::start_with_env(1, &["--header-timeout", "1"], &[("RINGHTTPD_TEST_SLOW_OPEN", slow.as_str())]);
    let mut client = Client::connect(server.addr);
    let response = client.roundtrip(get_keepalive(&format!("/{PAGE}")).as_bytes());
    assert_eq!(response.status, 200, "{response:#?}");
    assert_eq!(response.body, server.fixture().read(PAGE));
    // The keep-alive connection still works afterwards (from the cache, at once).
    let again = client.roundtrip(get_keepalive(&format!("/{PAGE}")).as_bytes());
    assert_eq!(again.status, 200, "{again:#?}");
}

/// Lowest descriptor number a process has free, from /proc.
fn lowest_free_fd(pid: u32) -> u64 {
    let used: std::collections::HashSet<u64> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).expect("a free number")
}

fn set_nofile(pid: u32, soft: u64, hard: u64) {
    let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: `limit` is a live rlimit read by the kernel; the old value is not asked for (null).
    let rc = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

fn nofile(pid: u32) -> (u64, u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a live rlimit the kernel writes the current value into.
    let rc = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, std::ptr::null(), &mut limit) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    (limit.rlim_cur, limit.rlim_max)
}

/// Running out of descriptors says nothing about the file: once the cause is gone, the next
/// request for it is served, not answered from a remembered 503.
#[test]
fn transient_open_failures_are_not_remembered() {
    let mut server = Server::start_with(1, &[]);
    let pid = server.pid();
    let mut client = Client::connect(server.addr);
    assert_eq!(client.roundtrip(get_keepalive("/index.html").as_bytes()).status, 200);
    let (soft, hard) = nofile(pid);
    // No descriptor number below the limit is free: the open of an uncached file gets EMFILE.
    set_nofile(pid, lowest_free_fd(pid), hard);
    let starved = client.roundtrip(get_keepalive(&format!("/{PAGE}")).as_bytes());
    set_nofile(pid, soft, hard);
    assert_eq!(starved.status, 503, "{starved:#?}");
    // A 503 closes its connection; the next request comes on a new one.
    let recovered = get(server.addr, &format!("/{PAGE}"));
    assert_eq!(recovered.status, 200, "right after the limit was raised again: {recovered:#?}");
    assert_eq!(recovered.body, server.fixture().read(PAGE));
    server.assert_alive();
}

/// Descriptors of the server that point at deleted files.
fn deleted_files_held(pid: u32, name: &str) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| fs::read_link(e.ok()?.path()).ok())
                .filter(|target| {
                    let text = target.to_string_lossy();
                    text.contains(name) && text.ends_with("(deleted)")
                })
                .count()
        })
        .unwrap_or(0)
}

/// A served file deleted from disk is released within a few seconds, even if nobody asks for
/// its path again (after a deploy that removes old assets, their disk space comes back).
#[test]
fn deleted_file_is_released_without_another_request() {
    let mut server = Server::start_with(1, &[]);
    let name = "old-asset.bin";
    fs::write(server.fixture().path(name), pseudo_random(7, 100_000)).expect("file");
    let response = get(server.addr, &format!("/{name}"));
    assert_eq!(response.status, 200, "{response:#?}");
    fs::remove_file(server.fixture().path(name)).expect("deleting the file");
    assert_eq!(deleted_files_held(server.pid(), name), 1, "the cache should hold the file open");
    let deadline = Instant::now() + Duration::from_secs(10);
    while deleted_files_held(server.pid(), name) > 0 {
        assert!(Instant::now() < deadline, "the deleted file is still held open after 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.assert_alive();
}
