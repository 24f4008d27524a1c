//! Running it in production: Prometheus metrics on a listener of their own (`--metrics`).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{Client, get, get_keepalive, head, request};
use common::metrics::{metrics_addr, sample, scrape};
use common::server::Server;

/// Parses the exposition with Prometheus's own Python client parser, when it is installed.
fn validate_with_prometheus_parser(text: &str) {
    const CHECK: &str = "import sys\n\
        try:\n    from prometheus_client.parser import text_string_to_metric_families\n\
        except ImportError:\n    print('SKIP'); sys.exit(0)\n\
        families = list(text_string_to_metric_families(sys.stdin.read()))\n\
        print(len(families), 'families')\n";
    let child = Command::new("python3")
        .args(["-c", CHECK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("metrics format check skipped: python3 is not available");
        return;
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Prometheus parser rejected the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    if stdout.trim() == "SKIP" {
        eprintln!(
            "metrics format check skipped: prometheus_client is not installed (pip install prometheus_client)"
        );
    } else {
        assert!(stdout.contains("families"), "{stdout}");
    }
}

#[test]
fn metrics_count_requests_connections_and_durations() {
    let server = Server::start_with(2, &["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    assert_ne!(metrics.port(), server.addr.port());
    let index_len = server.fixture().read("index.html").len() as f64;
    for _ in 0..3 {
        assert_eq!(get(server.addr, "/index.html").status, 200);
    }
    let missing = get(server.addr, "/no-such-file");
    assert_eq!(get(server.addr, "/no-such-file").status, 404);
    assert_eq!(head(server.addr, "/index.html").status, 200);
    let text = scrape(metrics);
    validate_with_prometheus_parser(&text);
    assert_eq!(sample(&text, "ringhttpd_requests_total{code=\"200\"}"), 4.0);
    assert_eq!(sample(&text, "ringhttpd_requests_total{code=\"404\"}"), 2.0);
    assert_eq!(
        sample(&text, "ringhttpd_response_body_bytes_total"),
        3.0 * index_len + 2.0 * missing.body.len() as f64
    );
    // Six client connections, closed at the client's request, and the scrape's own, open.
    assert_eq!(sample(&text, "ringhttpd_connections_accepted_total"), 7.0);
    assert_eq!(sample(&text, "ringhttpd_connections_closed_total{reason=\"client\"}"), 6.0);
    assert_eq!(sample(&text, "ringhttpd_connections_open"), 1.0);
    assert_eq!(sample(&text, "ringhttpd_request_duration_seconds_count"), 6.0);
    assert_eq!(sample(&text, "ringhttpd_request_duration_seconds_bucket{le=\"+Inf\"}"), 6.0);
    assert_eq!(
        sample(&text, "ringhttpd_file_cache_hits_total") + sample(&text, "ringhttpd_file_cache_misses_total"),
        6.0
    );
    assert_eq!(sample(&text, "ringhttpd_workers"), 2.0);
    assert_eq!(
        sample(&text, &format!("ringhttpd_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))),
        1.0
    );
    assert!(sample(&text, "process_start_time_seconds") > 1.6e9);
    // The next scrape counts the previous one.
    let again = scrape(metrics);
    assert_eq!(sample(&again, "ringhttpd_requests_total{code=\"200\"}"), 5.0);
}

#[test]
fn metrics_listener_serves_only_metrics_and_the_public_port_never_does() {
    let server = Server::start_with(1, &["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    assert_eq!(get(metrics, "/").status, 404);
    assert_eq!(get(metrics, "/index.html").status, 404);
    let post = request(
        metrics,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(post.status, 405);
    assert_eq!(get(server.addr, "/metrics").status, 404);
    let mut client = Client::connect(metrics);
    let first = client.roundtrip(get_keepalive("/metrics").as_bytes());
    let second = client.roundtrip(get_keepalive("/metrics").as_bytes());
    assert_eq!((first.status, second.status), (200, 200), "scrapes over one keep-alive connection");
}

#[test]
fn metrics_name_why_connections_closed() {
    let server = Server::start_with(
        1,
        &["--metrics", "127.0.0.1:0", "--keepalive-timeout", "1", "--header-timeout", "1"],
    );
    let metrics = metrics_addr(&server);
    let mut idle = Client::connect(server.addr);
    assert_eq!(idle.roundtrip(get_keepalive("/index.html").as_bytes()).status, 200);
    let mut partial = Client::connect(server.addr);
    partial.send(b"GET /index.html HTTP/1.1\r\n");
    idle.expect_closed();
    let timed_out = partial.read_response(false);
    assert_eq!(timed_out.status, 408);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(metrics);
        let keepalive = sample(&text, "ringhttpd_connections_closed_total{reason=\"keepalive_timeout\"}");
        let header = sample(&text, "ringhttpd_connections_closed_total{reason=\"header_timeout\"}");
        if keepalive == 1.0 && header == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "closes not counted by reason within 10 s:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// File bodies whose pages are in the page cache go out with `sendfile` from the worker, the
/// others through the ring's splices, and the metrics say which way took how much. The same
/// holds where the kernel denies `cachestat` (files the server may not write, as under the
/// shipped systemd unit; played here with a debug-build hook, since the tests may run as
/// root): one-byte reads that may not wait then tell. Every body arrives byte-exact.
#[test]
fn cached_file_bodies_go_out_by_sendfile_with_or_without_cachestat() {
    const SIZE: usize = 3 * 1024 * 1024 + 17;
    if let Err(why) = page_cache_is_observable(&std::env::temp_dir()) {
        eprintln!(
            "skipped: the test directory's filesystem {why} (tmpfs?); byte-exactness is in tests/get.rs"
        );
        return;
    }
    // The kernel's own way (cachestat on 6.5+, byte probes before), cachestat denied (a file
    // the server may not write, 6.14+), and cachestat missing (a kernel before 6.5).
    let cases: [(&str, &[(&str, &str)]); 3] = [
        ("as the kernel allows", &[]),
        ("cachestat denied", &[("RINGHTTPD_TEST_CACHESTAT_DENIED", "1")]),
        ("cachestat missing", &[("RINGHTTPD_TEST_CACHESTAT_MISSING", "1")]),
    ];
    for (case, env) in cases {
        let server = Server::start_with_env(1, &["--metrics", "127.0.0.1:0"], env);
        let log = server.log();
        let listening = log.lines().find(|l| l.contains("listening on")).expect("a listening line");
        let check = if listening.contains("cachestat") {
            "cachestat"
        } else {
            assert!(listening.contains("nowait-probe"), "{case}: no page-cache check named in {listening:?}");
            "nowait-probe"
        };
        if case == "cachestat missing" {
            assert_eq!(check, "nowait-probe", "{case}: {listening:?}");
        }
        let metrics = metrics_addr(&server);
        let routes = || {
            let text = scrape(metrics);
            let via = |how: &str| sample(&text, &format!("ringhttpd_file_body_bytes_total{{via=\"{how}\"}}"));
            (via("sendfile") as usize, via("splice") as usize)
        };
        let cached = common::fixture::pseudo_random(5, SIZE);
        std::fs::write(server.fixture().path("cached.bin"), &cached).expect("writing the file");
        let r = get(server.addr, "/cached.bin");
        assert_eq!(r.status, 200);
        assert!(r.body == cached, "{case} ({check}): the cached body differs");
        assert_eq!(routes(), (SIZE, 0), "{case} ({check}): a cached file took the splices");

        let evicted = common::fixture::pseudo_random(3, SIZE);
        let path = server.fixture().path("evicted.bin");
        std::fs::write(&path, &evicted).expect("writing the file");
        evict(&std::fs::File::open(&path).expect("opening the file"));
        let r = get(server.addr, "/evicted.bin");
        assert_eq!(r.status, 200);
        assert!(r.body == evicted, "{case} ({check}): the evicted body differs");
        let (sendfile, splice) = routes();
        assert_eq!(sendfile + splice, 2 * SIZE, "{case} ({check})");
        assert!(splice > 0, "{case} ({check}): a file out of the page cache was sendfile'd whole");
    }
}

/// Drops a file's pages from the page cache: `fsync`, then `POSIX_FADV_DONTNEED`.
fn evict(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    file.sync_all().expect("fsync");
    // SAFETY: a plain syscall on a descriptor the File keeps open.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise");
}

/// One byte of `file` at offset 0, read only if it is in the page cache (`RWF_NOWAIT`).
fn read_if_cached(file: &std::fs::File) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    let iov = libc::iovec { iov_base: (&mut byte as *mut u8).cast(), iov_len: 1 };
    // SAFETY: the iovec points at a live local byte, written during this synchronous call.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, 0, libc::RWF_NOWAIT) };
    if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// Whether files in `dir` can be dropped from the page cache and probed without waiting, as
/// the route test needs (tmpfs can do neither): a scratch file is written, probed, evicted and
/// probed again.
fn page_cache_is_observable(dir: &std::path::Path) -> Result<(), String> {
    let path = dir.join(format!("ringhttpd-probe-{}", std::process::id()));
    std::fs::write(&path, vec![7u8; 65536]).map_err(|e| format!("cannot be written: {e}"))?;
    let file = std::fs::File::open(&path).expect("opening the scratch file");
    let _ = std::fs::remove_file(&path);
    match read_if_cached(&file) {
        Ok(1) => {}
        other => return Err(format!("does not answer RWF_NOWAIT reads ({other:?})")),
    }
    evict(&file);
    match read_if_cached(&file) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        other => Err(format!("keeps evicted pages ({other:?})")),
    }
}
