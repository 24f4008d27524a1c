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
use common::http::{connect, get, get_request};
use common::server::Server;

/// How long the slow directory takes to read.
const SLOW_MS: u64 = 3000;

/// A server with one worker (so requests reach it in the order sent) over a fixture holding
/// `slow/` and `fast/`, where reading `slow/` takes `slow_ms`.
fn listing_server(slow_ms: u64, extra: &[&str]) -> Server {
    let mut args = vec!["--autoindex"];
    args.extend_from_slice(extra);
    let slow = format!("slow/={slow_ms}");
    let server = Server::start_with_env(1, &args, &[("RINGHTTPD_TEST_SLOW_LISTING", slow.as_str())]);
    for dir in ["slow", "fast"] {
        let path = server.fixture().path(dir);
        fs::create_dir_all(&path).expect("a fixture directory");
        fs::write(path.join("entry.txt"), b"e").expect("a fixture file");
    }
    server
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
