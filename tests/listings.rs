//! Directory listings (`--autoindex`) under load: listings are built off the rings, so these
//! tests check what waits for them and what never does: a missing directory or a fallback
//! route, an abandoned request, a full queue, a deadline, a graceful stop.
//! `RINGHTTPD_TEST_SLOW_LISTING` plays the huge directory (or slow storage) that keeps the
//! listing threads busy.

mod common;

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::check::assert_error;
use common::http::{
    Client, Response, connect, get, get_keepalive, get_request, parse_responses, read_to_close,
};
use common::server::Server;

/// How long the slow directory takes to read.
const SLOW_MS: u64 = 4000;

/// Slow directories besides `slow/`, for requests to abandon (one job each).
const GONE: usize = 5;

/// A server with one worker (so requests reach it in the order sent) over a fixture holding
/// `fast/`, `slow/` and `gone0/` to `gone4/`, where reading each but `fast/` takes `slow_ms`.
fn listing_server(slow_ms: u64, extra: &[&str]) -> Server {
    let mut args = vec!["--autoindex"];
    args.extend_from_slice(extra);
    let slow_dirs: Vec<String> =
        std::iter::once("slow".to_owned()).chain((0..GONE).map(|i| format!("gone{i}"))).collect();
    let delays: Vec<String> = slow_dirs.iter().map(|dir| format!("{dir}/={slow_ms}")).collect();
    let delays = delays.join(",");
    let server = Server::start_with_env(1, &args, &[("RINGHTTPD_TEST_SLOW_LISTING", delays.as_str())]);
    for dir in slow_dirs.iter().map(String::as_str).chain(["fast"]) {
        let path = server.fixture().path(dir);
        fs::create_dir_all(&path).expect("a fixture directory");
        fs::write(path.join("entry.txt"), b"e").expect("a fixture file");
    }
    server
}

/// Sends a request for each slow `goneN/` directory, each closed at once without reading.
fn abandon_slow_listings(server: &Server) {
    for i in 0..GONE {
        drop(send_waiting(server, &format!("/gone{i}/"), 1));
    }
}

/// Sends `GET path` on `count` fresh connections, left open so the requests stay wanted.
fn send_waiting(server: &Server, path: &str, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = connect(server.addr);
            stream.write_all(get_request(path).as_bytes()).expect("sending a request");
            stream
        })
        .collect()
}

#[test]
fn a_missing_directory_or_fallback_route_never_waits_for_listings() {
    let server = listing_server(SLOW_MS, &["--fallback", "/index.html"]);
    let _busy = send_waiting(&server, "/slow/", 3);
    let started = Instant::now();
    let r = get(server.addr, "/no/such/route/");
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.body, server.fixture().read("index.html"));
    assert!(took < Duration::from_millis(SLOW_MS / 2), "the fallback route took {took:?}");

    let server = listing_server(SLOW_MS, &[]);
    let _busy = send_waiting(&server, "/slow/", 3);
    let started = Instant::now();
    let r = get(server.addr, "/no/such/dir/");
    let took = started.elapsed();
    assert_error(&r, 404);
    assert!(took < Duration::from_millis(SLOW_MS / 2), "the 404 took {took:?}");
}

/// Reads each stream's response to its close, all at once; returns each with when it came.
fn responses(streams: Vec<TcpStream>, since: Instant) -> Vec<(Response, Duration)> {
    std::thread::scope(|scope| {
        let readers: Vec<_> = streams
            .into_iter()
            .map(|mut stream| {
                scope.spawn(move || {
                    let bytes = read_to_close(&mut stream);
                    let mut parsed = parse_responses(&bytes, &[false]);
                    assert_eq!(parsed.len(), 1, "one response expected: {parsed:#?}");
                    (parsed.remove(0), since.elapsed())
                })
            })
            .collect();
        readers.into_iter().map(|r| r.join().expect("a reader thread")).collect()
    })
}

fn assert_retry_later(r: &Response) {
    assert_error(r, 503);
    assert_eq!(r.header("retry-after"), Some("1"), "{r:#?}");
}

#[test]
fn abandoned_listings_are_dropped_unbuilt() {
    let server = listing_server(SLOW_MS, &[]);
    let _waiting = send_waiting(&server, "/slow/", 1);
    abandon_slow_listings(&server);
    let started = Instant::now();
    let r = get(server.addr, "/fast/");
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(r.body_text().contains("entry.txt"), "{r:#?}");
    // Behind at most the one listing someone waits for, never behind the abandoned ones.
    assert!(took < Duration::from_millis(SLOW_MS + 2000), "the listing took {took:?}");
}

#[test]
fn a_full_queue_is_answered_503_with_retry_after_at_once() {
    let server = listing_server(SLOW_MS, &[]);
    let _busy = send_waiting(&server, "/slow/", 1);
    // More directories than the queue holds jobs (32 per listing thread; one worker has one
    // thread), each asked for once: requests for one directory would share a job.
    let dirs: Vec<String> = (0..48).map(|i| format!("many/d{i:02}")).collect();
    for dir in &dirs {
        fs::create_dir_all(server.fixture().path(dir)).expect("a fixture directory");
        fs::write(server.fixture().path(&format!("{dir}/entry.txt")), b"e").expect("a fixture file");
    }
    let started = Instant::now();
    let queued: Vec<TcpStream> =
        dirs.iter().flat_map(|dir| send_waiting(&server, &format!("/{dir}/"), 1)).collect();
    let answers = responses(queued, started);
    let mut refused = 0;
    for (r, came) in &answers {
        if r.status == 503 {
            refused += 1;
            assert_retry_later(r);
            assert!(*came < Duration::from_millis(SLOW_MS / 2), "a refusal came after {came:?}");
        } else {
            assert_eq!(r.status, 200, "{r:#?}");
            assert!(r.body_text().contains("entry.txt"), "{r:#?}");
        }
    }
    let statuses: Vec<u16> = answers.iter().map(|(r, _)| r.status).collect();
    assert!(refused > 0, "no request was refused: {statuses:?}");
}

#[test]
fn a_listing_not_built_within_the_send_timeout_is_answered_503() {
    let server = listing_server(2 * SLOW_MS, &["--send-timeout", "1"]);
    let started = Instant::now();
    let r = get(server.addr, "/slow/");
    let took = started.elapsed();
    assert_retry_later(&r);
    assert!(took < Duration::from_millis(SLOW_MS), "the 503 took {took:?}");
    // The abandoned build no longer holds the listing thread.
    let fast = get(server.addr, "/fast/");
    assert_eq!(fast.status, 200, "{fast:#?}");
    assert!(started.elapsed() < Duration::from_millis(2 * SLOW_MS), "took {:?}", started.elapsed());
}

#[test]
fn a_graceful_stop_does_not_wait_for_listings() {
    let mut server = listing_server(SLOW_MS, &[]);
    let waiting = send_waiting(&server, "/slow/", 1);
    abandon_slow_listings(&server);
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    // The client still waiting is told to come back (and closes once it has read that).
    let answers = responses(waiting, started);
    assert_retry_later(&answers[0].0);
    server.expect_exit(0, Duration::from_millis(SLOW_MS / 2));
    assert!(started.elapsed() < Duration::from_millis(SLOW_MS / 2), "took {:?}", started.elapsed());
}

#[test]
fn a_listing_is_reused_for_as_long_as_a_cached_file() {
    let server = listing_server(0, &[]);
    let mut client = Client::connect(server.addr);
    let request = get_keepalive("/fast/");
    let first = client.roundtrip(request.as_bytes());
    assert_eq!(first.status, 200, "{first:#?}");
    fs::write(server.fixture().path("fast/new.txt"), b"n").expect("a new file");
    // Within the second a cached file is trusted, the page is reused as it was.
    let again = client.roundtrip(request.as_bytes());
    assert_eq!(again.body_text(), first.body_text());
    // Then the directory is read again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let page = client.roundtrip(request.as_bytes()).body_text();
        if page.contains("new.txt") {
            break;
        }
        assert!(Instant::now() < deadline, "the new file never showed: {page}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_burst_for_one_directory_waits_for_one_listing() {
    let server = listing_server(SLOW_MS, &[]);
    let started = Instant::now();
    // More than the queue holds, all for the same directory.
    let waiting = send_waiting(&server, "/slow/", 48);
    for (r, came) in responses(waiting, started) {
        assert_eq!(r.status, 200, "{r:#?}");
        assert!(r.body_text().contains("entry.txt"), "{r:#?}");
        assert!(came < Duration::from_millis(2 * SLOW_MS), "a listing came after {came:?}");
    }
}
