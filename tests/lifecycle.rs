//! The life of the process around the requests: a graceful stop on SIGTERM/SIGINT (listeners
//! closed at once, responses in flight finished, idle connections closed, exit 0), the shutdown
//! timeout and the second signal, the access log (Combined Log Format, flushing, reopening on
//! SIGHUP/SIGUSR1, stdout), and the clean refusals when the server cannot start.

mod common;

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::check::parse_http_date;
use common::fixture::{Fixture, pseudo_random};
use common::http::{
    Client, IO_TIMEOUT, Parsed, Response, connect_small_rcvbuf, get_keepalive, get_request, parse_response,
    parse_responses, read_to_close, request,
};
use common::server::{Exit, Server, run_to_exit};

/// Size of the download that is in flight when the stop signal arrives: far more than the
/// socket buffers of both ends hold, so the server is still sending it.
const HUGE_SIZE: usize = 64 * 1024 * 1024;
/// Receive buffer of the slow client, so the server can only send as fast as the test reads.
const SLOW_RCVBUF: libc::c_int = 16 * 1024;
/// Bound on anything the server should do "at once" or "within a second or so".
const PROMPTLY: Duration = Duration::from_secs(5);
/// How far an access log timestamp may be from the test's clock.
const CLOCK_SLACK_SECS: i64 = 300;

/// A server with `workers` workers writing its access log to `<base>/access.log`.
fn with_access_log(workers: usize) -> (Server, PathBuf) {
    let fixture = Fixture::create();
    let log = fixture.base().join("access.log");
    let server = Server::launch(workers).fixture(fixture).arg("--access-log").arg(&log).start();
    (server, log)
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// Reads up to the end of a response head; returns the parsed head and any body bytes that
/// arrived with it.
fn read_head(stream: &mut TcpStream) -> (Response, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) {
            // Parsed as the answer to HEAD: the head alone, whatever Content-Length says.
            let Ok(Parsed::Complete(head, _)) = parse_response(&buf[..end], true) else {
                panic!("bad response head: {:?}", String::from_utf8_lossy(&buf[..end]));
            };
            return (head, buf.split_off(end));
        }
        let n = stream.read(&mut chunk).expect("reading a response head");
        assert!(n > 0, "closed before the response head: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Polls until connecting to `addr` is refused (nothing listens any more); panics after
/// [`PROMPTLY`]. Connections that still get through meanwhile are dropped; a handshake reset
/// because the listener closed during it is part of the same transition.
fn wait_until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + PROMPTLY;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connect to {addr} failed with {e}, expected ECONNREFUSED"),
        }
        assert!(Instant::now() < deadline, "{addr} still accepts {PROMPTLY:?} after the signal");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that the server closes `stream` in order (FIN, not a reset) without sending more.
fn expect_eof(mut stream: &TcpStream) {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => panic!("unexpected bytes instead of EOF: {:?}", String::from_utf8_lossy(&chunk[..n])),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("expected EOF, got {e}"),
        }
    }
}

/// A connection kept idle after one keep-alive exchange.
fn idle_client(addr: SocketAddr) -> Client {
    let mut client = Client::connect(addr);
    let response = client.roundtrip(get_keepalive("/index.html").as_bytes());
    assert_eq!(response.status, 200, "{response:#?}");
    assert!(!response.says_close(), "the idle client must be kept alive: {response:#?}");
    client
}

/// A client that asks for `path` (a file far larger than the socket buffers), takes the
/// response head, and then reads nothing more.
fn stalled_download(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = connect_small_rcvbuf(addr, SLOW_RCVBUF);
    stream.write_all(get_request(path).as_bytes()).expect("sending the request");
    let (head, _) = read_head(&mut stream);
    assert_eq!(head.status, 200, "{head:#?}");
    stream
}

/// A file of `len` bytes that takes no disk space (a hole reads as zeros).
fn write_sparse(path: &Path, len: u64) {
    std::fs::File::create(path).and_then(|f| f.set_len(len)).expect("creating a sparse file");
}

// ---------------------------------------------------------------------------------------------
// Graceful stop
// ---------------------------------------------------------------------------------------------

/// Asserts the stderr of a graceful stop: the listening line, later the stopping line naming
/// `signal`, and `stopped` last, with no error line. (Warnings may come before the listening
/// line, e.g. about the descriptor limit.)
fn assert_stop_log(server: &Server, workers: usize, signal: &str) {
    let text = server.log();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let listening = format!("ringhttpd: info: listening on {} (workers: {workers}, io_uring: ", server.addr);
    let listen_at = lines.iter().position(|l| l.starts_with(&listening) && l.ends_with(')'));
    let Some(listen_at) = listen_at else { panic!("no {listening:?}...\")\" line:\n{text}") };
    let stopping = format!("ringhttpd: info: stopping ({signal}): ");
    let stop_at = lines.iter().position(|l| l.starts_with(&stopping));
    assert!(stop_at.is_some_and(|i| i > listen_at), "no {stopping:?} line after the listening line:\n{text}");
    assert_eq!(lines.last(), Some(&"ringhttpd: info: stopped"), "last line:\n{text}");
    assert!(!text.contains("ringhttpd: error:") && !text.contains("panicked"), "{text}");
}

#[test]
fn sigterm_finishes_download_refuses_new_connections_and_closes_idle_ones() {
    let fixture = Fixture::create();
    let huge = pseudo_random(0x5107, HUGE_SIZE);
    std::fs::write(fixture.path("huge.bin"), &huge).expect("writing huge.bin");
    let mut server = Server::launch(2).fixture(fixture).start();
    let addr = server.addr;

    let mut download = connect_small_rcvbuf(addr, SLOW_RCVBUF);
    download.write_all(get_keepalive("/huge.bin").as_bytes()).expect("sending the request");
    let (head, mut body) = read_head(&mut download);
    assert_eq!((head.status, head.content_length()), (200, HUGE_SIZE), "{head:#?}");
    read_slowly(&mut download, &mut body, 1024 * 1024);
    let idle: Vec<Client> = (0..4).map(|_| idle_client(addr)).collect();

    server.signal(libc::SIGTERM);
    wait_until_refused(addr);
    for client in &idle {
        expect_eof(client.stream());
    }
    assert!(body.len() < HUGE_SIZE / 2, "the download should still be in flight");
    server.assert_running();

    read_body(&mut download, &mut body, HUGE_SIZE);
    assert!(body == huge, "the download differs from huge.bin ({} bytes received)", body.len());
    expect_eof(&download);
    server.expect_exit(0, PROMPTLY);
    assert_stop_log(&server, 2, "SIGTERM");
}

/// Reads until `body` holds at least `until` bytes, in small reads with pauses.
fn read_slowly(stream: &mut TcpStream, body: &mut Vec<u8>, until: usize) {
    let mut chunk = [0u8; 8192];
    while body.len() < until {
        let n = stream.read(&mut chunk).expect("reading the download");
        assert!(n > 0, "download closed after {} bytes", body.len());
        body.extend_from_slice(&chunk[..n]);
        thread::sleep(Duration::from_millis(1));
    }
}

/// Reads the rest of a body of `len` bytes.
fn read_body(stream: &mut TcpStream, body: &mut Vec<u8>, len: usize) {
    let mut chunk = vec![0u8; 256 * 1024];
    while body.len() < len {
        let want = (len - body.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..want]).expect("reading the download");
        assert!(n > 0, "download closed after {} of {len} bytes", body.len());
        body.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn sigint_stops_an_idle_server_cleanly() {
    let mut server = Server::launch(3).start();
    let idle = idle_client(server.addr);
    server.signal(libc::SIGINT);
    expect_eof(idle.stream());
    wait_until_refused(server.addr);
    server.expect_exit(0, PROMPTLY);
    assert_stop_log(&server, 3, "SIGINT");
}

/// A request whose head is still arriving when the stop signal comes is answered (with
/// `Connection: close`), not cut off: the client cannot know the stop came first.
#[test]
fn request_arriving_during_a_graceful_stop_is_answered() {
    let mut server = Server::launch(1).start();
    let mut pending = TcpStream::connect(server.addr).expect("connect");
    pending.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    pending.write_all(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n").expect("first part of the head");
    // One worker takes connections in order: once this answer is back, the first part is in.
    let barrier = request(server.addr, get_request("/index.html").as_bytes());
    assert_eq!(barrier.status, 200);
    server.signal(libc::SIGTERM);
    // Refused means the worker has begun its stop (it closes its listener then).
    wait_until_refused(server.addr);
    pending.write_all(b"\r\n").expect("the end of the head");
    let received = read_to_close(&mut pending);
    let response = parse_responses(&received, &[false]).pop().expect("a response");
    assert_eq!(response.status, 200, "{response:#?}");
    assert!(response.says_close(), "{response:#?}");
    assert_eq!(response.body, server.fixture().read("index.html"));
    server.expect_exit(0, PROMPTLY);
}

/// A client that started a request head and went quiet does not hold a graceful stop up for
/// the whole shutdown timeout (30 s by default): it gets a short grace, then the server exits.
#[test]
fn silent_partial_request_does_not_hold_up_a_graceful_stop() {
    let mut server = Server::launch(1).start();
    let mut quiet = TcpStream::connect(server.addr).expect("connect");
    quiet.write_all(b"GET /index.html HT").expect("a partial head");
    // One worker takes connections in order: once this answer is back, the partial head is in.
    let barrier = request(server.addr, get_request("/index.html").as_bytes());
    assert_eq!(barrier.status, 200);
    server.signal(libc::SIGTERM);
    server.expect_exit(0, Duration::from_secs(10));
    drop(quiet);
}

#[test]
fn shutdown_timeout_closes_a_stalled_response_and_exits_zero() {
    let fixture = Fixture::create();
    write_sparse(&fixture.path("sparse.bin"), HUGE_SIZE as u64);
    let mut server = Server::launch(2).fixture(fixture).args(["--shutdown-timeout", "1"]).start();
    let mut stalled = stalled_download(server.addr, "/sparse.bin");

    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    wait_until_refused(server.addr);
    let status = server.try_wait_exit(Duration::from_secs(4));
    let waited = signalled.elapsed();
    assert!(status.is_some(), "still running 4 s after SIGTERM with --shutdown-timeout 1");
    server.expect_exit(0, Duration::ZERO);
    assert!(waited >= Duration::from_millis(900), "exited after {waited:?}, before the 1 s timeout");
    let received = read_to_close(&mut stalled);
    assert!(received.len() < HUGE_SIZE, "the stalled response cannot have completed");
    assert!(server.log().contains("ringhttpd: info: stopped"), "{}", server.log());
}

/// A stop that is waiting for a stalled response is cut short by a second signal: exit 1.
fn second_signal_exits_at_once(first: libc::c_int, second: libc::c_int, first_name: &str) {
    let fixture = Fixture::create();
    write_sparse(&fixture.path("sparse.bin"), HUGE_SIZE as u64);
    let mut server = Server::launch(2).fixture(fixture).start();
    let _stalled = stalled_download(server.addr, "/sparse.bin");

    server.signal(first);
    server.wait_for_log(&format!("stopping ({first_name})"), PROMPTLY);
    thread::sleep(Duration::from_millis(200));
    server.assert_running();
    server.signal(second);
    server.expect_exit(1, Duration::from_secs(2));
}

#[test]
fn second_sigterm_exits_immediately_with_status_1() {
    second_signal_exits_at_once(libc::SIGTERM, libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_after_sigterm_exits_immediately_with_status_1() {
    second_signal_exits_at_once(libc::SIGTERM, libc::SIGINT, "SIGTERM");
}

// ---------------------------------------------------------------------------------------------
// Access log
// ---------------------------------------------------------------------------------------------

/// One parsed Combined Log Format line.
#[derive(Debug)]
struct LogLine {
    peer: String,
    /// Seconds since the epoch of the bracketed time.
    time: i64,
    request: String,
    status: u16,
    bytes: u64,
    referer: String,
    agent: String,
}

/// Parses `PEER - - [DD/Mon/YYYY:HH:MM:SS +0000] "REQUEST" STATUS BYTES "REFERER" "AGENT"`
/// strictly: single spaces, a UTC offset, digits only, quoted fields with `\"`/`\\` escapes.
fn parse_clf(line: &str) -> Result<LogLine, String> {
    let (peer, rest) = line.split_once(" - - [").ok_or("no \" - - [\"")?;
    let (stamp, rest) = rest.split_once("] ").ok_or("no \"] \"")?;
    let time = parse_clf_time(stamp).ok_or_else(|| format!("bad time {stamp:?}"))?;
    let (request, rest) = quoted(rest)?;
    let rest = rest.strip_prefix(' ').ok_or("no space after the request")?;
    let (status, rest) = rest.split_once(' ').ok_or("no space after the status")?;
    let (bytes, rest) = rest.split_once(' ').ok_or("no space after the byte count")?;
    let (referer, rest) = quoted(rest)?;
    let (agent, rest) = quoted(rest.strip_prefix(' ').ok_or("no space after the referer")?)?;
    if !rest.is_empty() {
        return Err(format!("trailing {rest:?}"));
    }
    Ok(LogLine {
        peer: peer.to_owned(),
        time,
        request,
        status: number(status)? as u16,
        bytes: number(bytes)?,
        referer,
        agent,
    })
}

fn number(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a number"));
    }
    s.parse().map_err(|e| format!("{s:?}: {e}"))
}

/// A `"..."` field at the start of `s`, unescaped, and what follows it.
fn quoted(s: &str) -> Result<(String, &str), String> {
    let body = s.strip_prefix('"').ok_or_else(|| format!("{s:?} does not start with a quote"))?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &body[i + 1..])),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => out.push(e),
                other => return Err(format!("bad escape {other:?} in {s:?}")),
            },
            c if c.is_control() => return Err(format!("raw control character in {s:?}")),
            c => out.push(c),
        }
    }
    Err(format!("unterminated quote in {s:?}"))
}

/// `24/Nov/2026:10:00:00 +0000` as seconds since the epoch. The weekday the shared IMF-fixdate
/// parser insists on is not part of this format, so each is tried; the right one matches.
fn parse_clf_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || &s[20..] != " +0000" {
        return None;
    }
    let (day, month, year, clock) = (&s[..2], &s[3..6], &s[7..11], &s[12..20]);
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .iter()
        .find_map(|wd| parse_http_date(&format!("{wd}, {day} {month} {year} {clock} GMT")))
}

/// Asserts every field of a log line.
fn assert_log_line(line: &str, request: &str, status: u16, bytes: u64, referer: &str, agent: &str) {
    let parsed = parse_clf(line).unwrap_or_else(|e| panic!("{line:?} is not Combined Log Format: {e}"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64;
    assert_eq!(parsed.peer, "127.0.0.1", "{line:?}");
    assert!((parsed.time - now).abs() <= CLOCK_SLACK_SECS, "time of {line:?} is not now");
    assert_eq!(
        (parsed.request.as_str(), parsed.status, parsed.bytes),
        (request, status, bytes),
        "request, status and byte count of {line:?}"
    );
    assert_eq!((parsed.referer.as_str(), parsed.agent.as_str()), (referer, agent), "{line:?}");
}

/// The lines of the file at `path` once it has at least `count`; panics after [`PROMPTLY`].
fn wait_for_lines(path: &Path, count: usize) -> Vec<String> {
    wait_for_text_lines(
        || std::fs::read_to_string(path).unwrap_or_default(),
        count,
        &path.display().to_string(),
    )
}

fn wait_for_text_lines(read: impl Fn() -> String, count: usize, what: &str) -> Vec<String> {
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let text = read();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= count {
            assert!(text.ends_with('\n'), "{what}: last line is incomplete: {text:?}");
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {count} lines expected within {PROMPTLY:?}, have:\n{text}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The one line whose request is `request`.
fn line_for<'a>(lines: &'a [String], request: &str) -> &'a str {
    let needle = format!("\"{request}\"");
    let found: Vec<&String> = lines.iter().filter(|l| l.contains(&needle)).collect();
    assert_eq!(found.len(), 1, "one line for {request:?} expected in {lines:#?}");
    found[0]
}

/// Sends `raw` on its own connection and returns the response.
fn ask(addr: SocketAddr, raw: &str) -> Response {
    request(addr, raw.as_bytes())
}

#[test]
fn access_log_lines_are_combined_log_format() {
    let (server, log) = with_access_log(2);
    let addr = server.addr;
    let index_len = server.fixture().read("index.html").len() as u64;
    let agent = r#"probe "quoted" agent \ 1.0"#;

    let ok = ask(addr, &get_request("/index.html"));
    let missing = ask(addr, &get_request("/no-such-file.html"));
    let with_headers = ask(
        addr,
        "GET /httptest/dir2/page.html?from=ref HTTP/1.1\r\nHost: localhost\r\nReferer: http://example.com/start?a=b\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64) probe/1.0\r\nConnection: close\r\n\r\n",
    );
    let head = ask(addr, "HEAD /index.html?head=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let odd = ask(
        addr,
        &format!(
            "GET /index.html?agent=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {agent}\r\nConnection: close\r\n\r\n"
        ),
    );
    let statuses = [ok.status, missing.status, with_headers.status, head.status, odd.status];
    assert_eq!(statuses, [200, 404, 200, 200, 200]);

    let lines = wait_for_lines(&log, 5);
    assert_eq!(lines.len(), 5, "one line per request: {lines:#?}");
    let get = |target: &str| format!("GET {target} HTTP/1.1");
    assert_log_line(line_for(&lines, &get("/index.html")), &get("/index.html"), 200, index_len, "-", "-");
    let missing_line = line_for(&lines, &get("/no-such-file.html"));
    assert_log_line(missing_line, &get("/no-such-file.html"), 404, missing.body.len() as u64, "-", "-");
    let page = get("/httptest/dir2/page.html?from=ref");
    let page_len = with_headers.body.len() as u64;
    let ua = "Mozilla/5.0 (X11; Linux x86_64) probe/1.0";
    assert_log_line(line_for(&lines, &page), &page, 200, page_len, "http://example.com/start?a=b", ua);
    let head_req = "HEAD /index.html?head=1 HTTP/1.1";
    assert_log_line(line_for(&lines, head_req), head_req, 200, 0, "-", "-");
    let odd_line = line_for(&lines, &get("/index.html?agent=1"));
    assert_log_line(odd_line, &get("/index.html?agent=1"), 200, index_len, "-", agent);
    assert!(
        odd_line.ends_with(r#" "-" "probe \"quoted\" agent \\ 1.0""#),
        "quotes and backslashes in the User-Agent must be escaped: {odd_line:?}"
    );
}

#[test]
fn access_log_is_flushed_on_graceful_stop() {
    let (mut server, log) = with_access_log(2);
    let mut client = Client::connect(server.addr);
    for i in 0..20 {
        let response = client.roundtrip(get_keepalive(&format!("/index.html?n={i}")).as_bytes());
        assert_eq!(response.status, 200);
    }
    server.signal(libc::SIGTERM);
    expect_eof(client.stream());
    server.expect_exit(0, PROMPTLY);
    let text = std::fs::read_to_string(&log).expect("reading the access log");
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 20, "every line is written before the exit:\n{text}");
    for i in 0..20 {
        line_for(&lines, &format!("GET /index.html?n={i} HTTP/1.1"));
    }
}

/// Rename the log away, send `signal`, and the next line goes to a new file at the old path
/// while the renamed file keeps the earlier lines. One worker, so that once the new file exists
/// every later request is logged to it.
fn access_log_reopens_on(signal: libc::c_int) {
    let (mut server, log) = with_access_log(1);
    assert_eq!(ask(server.addr, &get_request("/index.html?before=1")).status, 200);
    wait_for_lines(&log, 1);
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).expect("renaming the access log");

    server.signal(signal);
    let deadline = Instant::now() + PROMPTLY;
    while !log.exists() {
        assert!(Instant::now() < deadline, "no new {} within {PROMPTLY:?} of the signal", log.display());
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ask(server.addr, &get_request("/index.html?after=1")).status, 200);
    let fresh = wait_for_lines(&log, 1);
    assert_eq!(fresh.len(), 1, "{fresh:#?}");
    line_for(&fresh, "GET /index.html?after=1 HTTP/1.1");
    let old: Vec<String> =
        std::fs::read_to_string(&rotated).expect("rotated log").lines().map(str::to_owned).collect();
    assert_eq!(old.len(), 1, "the rotated file keeps exactly the earlier line: {old:#?}");
    line_for(&old, "GET /index.html?before=1 HTTP/1.1");
}

#[test]
fn access_log_reopens_on_sighup() {
    access_log_reopens_on(libc::SIGHUP);
}

#[test]
fn access_log_reopens_on_sigusr1() {
    access_log_reopens_on(libc::SIGUSR1);
}

#[test]
fn access_log_dash_writes_to_stdout() {
    let server = Server::launch(2).args(["--access-log", "-"]).capture_stdout().start();
    let index_len = server.fixture().read("index.html").len() as u64;
    assert_eq!(ask(server.addr, &get_request("/index.html?stdout=1")).status, 200);
    let lines = wait_for_text_lines(|| server.stdout(), 1, "stdout");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let request = "GET /index.html?stdout=1 HTTP/1.1";
    assert_log_line(&lines[0], request, 200, index_len, "-", "-");
}

// ---------------------------------------------------------------------------------------------
// Start-up errors
// ---------------------------------------------------------------------------------------------

/// A refusal to start: exit 1, nothing on stdout, exactly one stderr line, starting
/// `ringhttpd: error: ` and containing each of `mentions`, and no sign of a panic.
fn assert_startup_error(exit: &Exit, mentions: &[&str]) {
    assert_eq!(exit.code(), Some(1), "exit status of {exit:#?}");
    assert_no_panic(exit);
    assert!(exit.stdout.is_empty(), "nothing on stdout: {exit:#?}");
    let lines = exit.stderr_lines();
    assert_eq!(lines.len(), 1, "one stderr line expected: {exit:#?}");
    assert!(lines[0].starts_with("ringhttpd: error: "), "{exit:#?}");
    let lower = lines[0].to_ascii_lowercase();
    for m in mentions {
        assert!(lower.contains(&m.to_ascii_lowercase()), "the error line should mention {m:?}: {exit:#?}");
    }
}

fn assert_no_panic(exit: &Exit) {
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!exit.stderr.contains(bad), "{bad:?} in {exit:#?}");
    }
}

/// Runs the binary on a free port of 127.0.0.1 with `root` as document root and `extra` flags.
fn run_with_root(root: &Path, extra: &[&str]) -> Exit {
    let mut args: Vec<OsString> =
        ["-a", "127.0.0.1", "-p", "0", "-w", "2", "-r"].map(OsString::from).to_vec();
    args.push(root.as_os_str().to_owned());
    args.extend(extra.iter().map(OsString::from));
    run_to_exit(&args)
}

#[test]
fn missing_document_root_is_refused() {
    let fixture = Fixture::create();
    let missing = fixture.base().join("no-such-root");
    let exit = run_with_root(&missing, &[]);
    assert_startup_error(&exit, &[&missing.display().to_string(), "no such file or directory"]);
}

#[test]
fn document_root_that_is_a_file_is_refused() {
    let fixture = Fixture::create();
    let file = fixture.path("index.html");
    let exit = run_with_root(&file, &[]);
    assert_startup_error(&exit, &[&file.display().to_string(), "not a directory"]);
}

#[test]
fn unreadable_document_root_is_refused() {
    // SAFETY: plain syscall without arguments.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("skipped: running as root, which may open any directory, so chmod 000 proves nothing");
        return;
    }
    let fixture = Fixture::create();
    let locked = fixture.base().join("locked");
    std::fs::create_dir(&locked).expect("mkdir locked");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).expect("chmod 000");
    let exit = run_with_root(&locked, &[]);
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
    assert_startup_error(&exit, &[&locked.display().to_string(), "permission denied"]);
}

#[test]
fn address_not_on_this_machine_is_refused() {
    let fixture = Fixture::create();
    let root = fixture.root().as_os_str().to_owned();
    let exit = run_to_exit(&["-a".into(), "192.0.2.1".into(), "-p".into(), "0".into(), "-r".into(), root]);
    assert_startup_error(&exit, &["192.0.2.1"]);
    let line = exit.stderr_lines()[0].to_ascii_lowercase();
    assert!(
        ["no such address", "cannot assign", "not available"].iter().any(|cause| line.contains(cause)),
        "the error line should say the address is not local: {exit:#?}"
    );
}

#[test]
fn port_in_use_is_refused() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("binding a port");
    let port = taken.local_addr().expect("local_addr").port().to_string();
    let fixture = Fixture::create();
    let root = fixture.root().as_os_str().to_owned();
    let exit =
        run_to_exit(&["-a".into(), "127.0.0.1".into(), "-p".into(), port.clone().into(), "-r".into(), root]);
    assert_startup_error(&exit, &[&format!("127.0.0.1:{port}"), "address already in use"]);
}

#[test]
fn access_log_in_a_missing_directory_is_refused() {
    let fixture = Fixture::create();
    let exit = run_with_root(fixture.root(), &["--access-log", "/nonexistent-dir/x.log"]);
    assert_startup_error(&exit, &["/nonexistent-dir/x.log", "no such file or directory"]);
}

/// A command-line mistake: exit 2, a clap message naming `mentions`, and a pointer to the usage.
fn assert_usage_error(args: &[&str], mentions: &[&str]) {
    let exit = run_to_exit(args);
    assert_eq!(exit.code(), Some(2), "exit status of {exit:#?}");
    assert_no_panic(&exit);
    assert!(exit.stderr.starts_with("error: "), "{exit:#?}");
    assert!(
        exit.stderr.contains("Usage: ringhttpd") || exit.stderr.contains("--help"),
        "no usage hint: {exit:#?}"
    );
    for m in mentions {
        assert!(exit.stderr.contains(m), "the message should mention {m:?}: {exit:#?}");
    }
}

#[test]
fn unknown_flag_is_a_usage_error() {
    assert_usage_error(&["--no-such-flag"], &["--no-such-flag", "Usage: ringhttpd"]);
}

#[test]
fn port_out_of_range_is_a_usage_error() {
    assert_usage_error(&["-p", "70000"], &["70000", "--port"]);
}

#[test]
fn zero_workers_is_a_usage_error() {
    assert_usage_error(&["-w", "0"], &["--workers"]);
}

#[test]
fn clf_parser_accepts_only_the_format() {
    let good =
        r#"127.0.0.1 - - [24/Nov/2026:10:00:00 +0000] "GET /index.html HTTP/1.1" 200 11 "-" "a \"b\"""#;
    let parsed = parse_clf(good).expect("a valid line");
    assert_eq!((parsed.status, parsed.bytes, parsed.agent.as_str()), (200, 11, "a \"b\""));
    assert_eq!(parsed.time, 1_795_514_400);
    for bad in [
        r#"127.0.0.1 - - [24/Nov/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 11 "-" "-""#,
        r#"127.0.0.1 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 -1 "-" "-""#,
        r#"127.0.0.1 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 11 "-" "a "b"""#,
        r#"127.0.0.1 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1"  200 11 "-" "-""#,
        r#"127.0.0.1 - - [24/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 11 "-""#,
    ] {
        assert!(parse_clf(bad).is_err(), "{bad:?} should be rejected");
    }
}
