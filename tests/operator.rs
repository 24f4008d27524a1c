//! What a careless operator may do must end in a clear refusal or in nothing at all: `-t`
//! beside a running server, the metrics on the public port, passed descriptors of the wrong
//! kind, flag values at their extremes, and paths that are FIFOs, directories or unreadable.

mod common;

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::fixture::Fixture;
use common::http::{Parsed, exchange, get, parse_response, request};
use common::server::{Server, assert_no_panic, assert_refused, run_to_exit, run_to_exit_with};
use proptest::prelude::*;

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// `-a 127.0.0.1 -p PORT -r ROOT` followed by `extra`.
fn serve_args(fixture: &Fixture, port: u16, extra: &[&str]) -> Vec<OsString> {
    let mut list = args(&["-a", "127.0.0.1", "-p", &port.to_string(), "-r"]);
    list.push(fixture.root().into());
    list.extend(extra.iter().map(OsString::from));
    list
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Requests `/index.html` on a new connection each, until `stop`; counts answers and failures.
fn hammer(addr: SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<(usize, Vec<String>)> {
    thread::spawn(move || {
        let (mut ok, mut failures) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let raw = exchange(addr, b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            match parse_response(&raw, false) {
                Ok(Parsed::Complete(response, _)) if response.status == 200 => ok += 1,
                other => failures.push(format!("{other:?}")),
            }
        }
        (ok, failures)
    })
}

#[test]
fn check_beside_a_running_server_takes_none_of_its_connections() {
    let server = Server::start_with(1, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let client = hammer(server.addr, stop.clone());
    // Each check holds its probe of the port for 300 ms: a probe that listened would be handed
    // some of the connections arriving meanwhile, and reset them when it exits.
    let check_args = serve_args(server.fixture(), server.addr.port(), &["-t"]);
    for _ in 0..3 {
        let exit = run_to_exit_with(&check_args, &[("RINGHTTPD_TEST_CHECK_HOLD_MS", "300")], None);
        assert_eq!(exit.code(), Some(0), "{exit:#?}");
        assert_eq!(exit.stdout.trim(), "configuration ok");
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failures) = client.join().expect("client thread");
    assert!(ok > 0, "the client made no request during the checks");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        ok + failures.len(),
        failures
    );
}

#[test]
fn metrics_on_the_public_port_is_refused_at_start_and_by_check() {
    let fixture = Fixture::create();
    let port = free_port();
    for (address, metrics) in [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("127.0.0.1", "0.0.0.0")]
    {
        let metrics = format!("{metrics}:{port}");
        let mut list = args(&["-a", address, "-p", &port.to_string(), "--metrics", &metrics, "-r"]);
        list.push(fixture.root().into());
        assert_refused(&run_to_exit(&list), &["--metrics", &metrics, "overlaps"]);
        list.push("-t".into());
        assert_refused(&run_to_exit(&list), &["--metrics", &metrics, "overlaps"]);
    }
}

#[test]
fn a_metrics_address_that_cannot_be_bound_is_named() {
    let fixture = Fixture::create();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = taken.local_addr().unwrap().to_string();
    let exit = run_to_exit(&serve_args(&fixture, 0, &["--metrics", &metrics]));
    assert_refused(&exit, &["--metrics", &metrics, "address already in use"]);
}

#[test]
fn passed_descriptors_that_are_no_tcp_listener_are_refused_by_name() {
    let fixture = Fixture::create();
    let unix = UnixListener::bind(fixture.base().join("passed.sock")).expect("unix listener");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    let file = std::fs::File::open(fixture.path("index.html")).unwrap();
    let cases = [
        (unix.as_raw_fd(), "a Unix socket"),
        (udp.as_raw_fd(), "a UDP socket"),
        (file.as_raw_fd(), "not a socket"),
    ];
    for (fd, kind) in cases {
        for check in [false, true] {
            let mut list = serve_args(&fixture, 0, &[]);
            if check {
                list.push("-t".into());
            }
            let exit = run_to_exit_with(&list, &[], Some(fd));
            assert_refused(&exit, &["descriptor 3", kind]);
            assert!(!exit.stderr.contains("0.0.0.0:0"), "names an address it never tried: {exit:#?}");
        }
    }
}

#[test]
fn duration_flags_beyond_a_day_are_usage_errors() {
    let fixture = Fixture::create();
    for flag in ["--shutdown-timeout", "--header-timeout", "--keepalive-timeout", "--send-timeout"] {
        for value in ["86401", "18446744073709551615", "18446744073709551616", "-1", "1e3", "ten"] {
            let exit = run_to_exit(&serve_args(&fixture, 0, &[&format!("{flag}={value}")]));
            assert_eq!(exit.code(), Some(2), "{flag} {value}: {exit:#?}");
            assert!(exit.stderr.contains(flag), "{flag} {value}: {exit:#?}");
            assert_no_panic(&exit);
        }
    }
}

#[test]
fn sendfile_max_chunk_outside_its_range_is_a_usage_error() {
    let fixture = Fixture::create();
    for value in ["0", "65535", "1073741825", "2m", "-1"] {
        let exit = run_to_exit(&serve_args(&fixture, 0, &[&format!("--sendfile-max-chunk={value}")]));
        assert_eq!(exit.code(), Some(2), "{value}: {exit:#?}");
        assert!(exit.stderr.contains("--sendfile-max-chunk"), "{value}: {exit:#?}");
        assert_no_panic(&exit);
    }
    let check = run_to_exit(&serve_args(&fixture, 0, &["--sendfile-max-chunk=65536", "-t"]));
    assert_eq!(check.code(), Some(0), "{check:#?}");
}

#[test]
fn the_longest_shutdown_timeout_still_stops_cleanly() {
    let mut server = Server::start_with(1, &["--shutdown-timeout", "86400"]);
    assert_eq!(get(server.addr, "/index.html").status, 200);
    server.signal(libc::SIGTERM);
    server.expect_exit(0, Duration::from_secs(10));
    assert!(!server.log().contains("panic"), "{}", server.log());
}

/// One flag and a value for it, drawn from the extremes and from everywhere in between.
fn flag_and_value() -> impl Strategy<Value = (&'static str, String)> {
    let flag = prop::sample::select(vec![
        "--header-timeout",
        "--keepalive-timeout",
        "--send-timeout",
        "--shutdown-timeout",
        "--max-header-size",
        "--max-connections",
        "--sendfile-max-chunk",
        "--workers",
    ]);
    let value = prop_oneof![
        prop::sample::select(vec!["0", "1", "255", "256", "1024", "1025", "86400", "1048576", "1048577"])
            .prop_map(String::from),
        prop::sample::select(vec!["4294967296", "18446744073709551615", "-1", "-0", "+5", " 7", "0x10", ""])
            .prop_map(String::from),
        any::<u64>().prop_map(|v| v.to_string()),
        (0u64..100_000).prop_map(|v| v.to_string()),
    ];
    (flag, value)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any value of a duration or count flag is refused as a usage error, refused with one
    /// line, or served and then stopped cleanly by SIGTERM: never a panic.
    #[test]
    fn no_flag_value_reaches_a_panic((flag, value) in flag_and_value()) {
        // Many workers would only measure thread start-up: keep the count small unless the
        // flag under test is the count itself.
        let workers = if flag == "--workers" { Vec::new() } else { vec!["-w", "1"] };
        let fixture = Fixture::create();
        let mut list = serve_args(&fixture, 0, &workers);
        list.push(format!("{flag}={value}").into());
        let check = run_to_exit(&[list.clone(), vec!["-t".into()]].concat());
        assert_no_panic(&check);
        prop_assert!(matches!(check.code(), Some(0..=2)), "{check:#?}");
        if check.code() != Some(0) {
            return Ok(());
        }
        // Large worker counts are accepted by -t; serving them here would only test the host.
        if flag == "--workers" && value.parse::<u64>().is_ok_and(|w| w > 8) {
            return Ok(());
        }
        let mut server = Server::start_args(|_| list.clone());
        server.signal(libc::SIGTERM);
        let status = server.wait_exit(Duration::from_secs(15));
        prop_assert_eq!(status.code(), Some(0), "{} {}: {}", flag, value, server.log());
        prop_assert!(!server.log().contains("panic"), "{}", server.log());
    }
}

#[test]
fn paths_of_the_wrong_kind_are_refused_clearly() {
    let fixture = Fixture::create();
    let fifo = fixture.base().join("fifo");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let fifo = fifo.to_str().unwrap();
    // A FIFO nobody reads as the access log: refused at once, not a start-up that hangs.
    for check in [false, true] {
        let mut list = serve_args(&fixture, 0, &["--access-log", fifo]);
        if check {
            list.push("-t".into());
        }
        assert_refused(&run_to_exit(&list), &["access log", fifo, "FIFO"]);
    }
    let dir = fixture.root().to_str().unwrap();
    assert_refused(&run_to_exit(&serve_args(&fixture, 0, &["--access-log", dir])), &["access log", dir]);
    let mut as_root = args(&["-a", "127.0.0.1", "-p", "0", "-r", fifo]);
    assert_refused(&run_to_exit(&as_root), &["document root", fifo]);
    as_root.push("-t".into());
    assert_refused(&run_to_exit(&as_root), &["document root", fifo]);
}

#[test]
fn check_judges_fallback_and_error_pages_by_the_servers_own_rule() {
    let fixture = Fixture::create();
    let root = fixture.root();
    let status = std::process::Command::new("mkfifo").arg(root.join("pipe.html")).status().expect("mkfifo");
    assert!(status.success());
    std::fs::write(root.join("secret.html"), "hidden").unwrap();
    std::fs::set_permissions(root.join("secret.html"), std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::create_dir(root.join("dir.html")).unwrap();
    let cases =
        [("/pipe.html", "a FIFO"), ("/secret.html", "readable by nobody"), ("/dir.html", "a directory")];
    for (page, why) in cases {
        let error_page = format!("404={page}");
        for flag in [["--fallback", page], ["--error-page", &error_page]] {
            let exit = run_to_exit(&serve_args(&fixture, 0, &[flag[0], flag[1], "-t"]));
            assert_refused(&exit, &[page, why]);
        }
    }
    // The server answers that file 403 whoever runs it; -t said so above, even as root.
    let server = Server::launch(1).fixture(fixture).start();
    assert_eq!(get(server.addr, "/secret.html").status, 403);
}

#[test]
fn metrics_connections_never_hold_the_public_port() {
    let server = Server::start_with(1, &["--max-connections", "20", "--metrics", "127.0.0.1:0"]);
    let log = server.log();
    let line = log.lines().find(|l| l.contains("metrics on http://")).expect("metrics line");
    let metrics: SocketAddr =
        line[line.find("http://").unwrap() + 7..].split('/').next().unwrap().parse().unwrap();
    // More idle, half-sent requests on the metrics port than the public limit allows.
    let parked: Vec<_> = (0..40)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(metrics).expect("connect to metrics");
            std::io::Write::write_all(&mut s, b"GET /metr").unwrap();
            s
        })
        .collect();
    let answered = AtomicUsize::new(0);
    thread::scope(|scope| {
        for _ in 0..20 {
            scope.spawn(|| {
                if get(server.addr, "/index.html").status == 200 {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(
        answered.load(Ordering::Relaxed),
        20,
        "public requests answered beside parked metrics connections"
    );
    drop(parked);
    // A scrape in absolute form (RFC 9112 §3.2.2) is a scrape too.
    let scrape = request(
        metrics,
        b"GET http://localhost/metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(scrape.status, 200, "{scrape:#?}");
    assert!(scrape.body_text().contains("ringhttpd_requests_total"));
}
