//! The command line: help and version, flag aliases, the start-up line, and clean refusals (one
//! error line, an exit code, no panic) for configurations that cannot work.

mod common;

use std::ffi::OsString;
use std::net::TcpListener;

use common::check::assert_serves;
use common::fixture::Fixture;
use common::http::get;
use common::server::{Server, assert_no_panic, assert_refused, run_to_exit};

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

#[test]
fn help_lists_the_flags() {
    let exit = run_to_exit(&["--help"]);
    assert_eq!(exit.code(), Some(0), "{exit:#?}");
    for flag in ["--address", "--port", "--document-root", "--workers"] {
        assert!(exit.stdout.contains(flag), "--help should mention {flag}: {exit:#?}");
    }
    let short = run_to_exit(&["-h"]);
    assert_eq!(short.code(), Some(0), "{short:#?}");
    assert!(short.stdout.contains("--port"));
}

#[test]
fn version_names_the_program() {
    let exit = run_to_exit(&["--version"]);
    assert_eq!(exit.code(), Some(0), "{exit:#?}");
    assert!(exit.stdout.contains("ringhttpd"), "{exit:#?}");
    assert!(exit.stdout.contains(env!("CARGO_PKG_VERSION")), "{exit:#?}");
}

#[test]
fn long_flags_and_underscore_alias_work() {
    for root_flag in ["--document-root", "--document_root"] {
        let server = Server::start_args(|root| {
            let mut list = args(&["--address", "127.0.0.1", "--port", "0", "--workers", "1"]);
            list.push(root_flag.into());
            list.push(root.as_os_str().to_owned());
            list
        });
        assert_serves(&get(server.addr, "/"), server.fixture(), "index.html");
    }
}

#[test]
fn startup_line_reports_address_and_workers() {
    let server = Server::start_with(3, &[]);
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    assert_ne!(server.addr.port(), 0, "the real port, not 0");
    let log = server.log();
    let line = log.lines().find(|l| l.contains("listening on ")).expect("listening line");
    assert!(line.starts_with("ringhttpd: info: listening on "), "{line:?}");
    assert!(line.contains(&format!("{} (workers: 3,", server.addr)), "{line:?}");
    assert!(line.contains("io_uring"), "{line:?}");
}

#[test]
fn missing_document_root_is_refused() {
    let fixture = Fixture::create();
    let missing = fixture.base().join("does-not-exist");
    let mut list = args(&["-a", "127.0.0.1", "-p", "0", "-r"]);
    list.push(missing.clone().into());
    let exit = run_to_exit(&list);
    assert_refused(&exit, &[missing.to_str().unwrap()]);
}

#[test]
fn document_root_that_is_a_file_is_refused() {
    let fixture = Fixture::create();
    let file = fixture.path("index.html");
    let mut list = args(&["-a", "127.0.0.1", "-p", "0", "-r"]);
    list.push(file.clone().into());
    let exit = run_to_exit(&list);
    assert_refused(&exit, &[file.to_str().unwrap()]);
}

#[test]
fn invalid_address_is_refused() {
    let fixture = Fixture::create();
    let mut list = args(&["-a", "999.1.1.1", "-p", "0", "-r"]);
    list.push(fixture.root().into());
    let exit = run_to_exit(&list);
    assert!(matches!(exit.code(), Some(1 | 2)), "{exit:#?}");
    assert_no_panic(&exit);
    assert!(exit.stderr.contains("999.1.1.1"), "{exit:#?}");
}

#[test]
fn port_out_of_range_is_refused() {
    let fixture = Fixture::create();
    let mut list = args(&["-a", "127.0.0.1", "-p", "70000", "-r"]);
    list.push(fixture.root().into());
    let exit = run_to_exit(&list);
    assert!(matches!(exit.code(), Some(1 | 2)), "{exit:#?}");
    assert_no_panic(&exit);
    assert!(exit.stderr.contains("70000"), "{exit:#?}");
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let exit = run_to_exit(&["--no-such-flag"]);
    assert_eq!(exit.code(), Some(2), "{exit:#?}");
    assert!(exit.stderr.contains("--no-such-flag"), "{exit:#?}");
    assert_no_panic(&exit);
}

#[test]
fn port_in_use_is_refused() {
    let fixture = Fixture::create();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to occupy");
    let port = taken.local_addr().unwrap().port().to_string();
    let mut list = args(&["-a", "127.0.0.1", "-p", &port, "-r"]);
    list.push(fixture.root().into());
    let exit = run_to_exit(&list);
    assert_refused(&exit, &[&port]);
    drop(taken);
}

/// The CPUs a thread of `pid` may run on, from `/proc` (`Cpus_allowed_list`, e.g. `0-3,8`).
fn allowed_cpus(pid: u32, tid: Option<&str>) -> Vec<usize> {
    let path = match tid {
        Some(tid) => format!("/proc/{pid}/task/{tid}/status"),
        None => format!("/proc/{pid}/status"),
    };
    let status = std::fs::read_to_string(&path).expect("read the thread's status");
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).expect("Cpus_allowed_list");
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(lo.parse::<usize>().unwrap()..=hi.parse::<usize>().unwrap());
    }
    cpus
}

/// The CPU sets of the server's worker threads (named `ringhttpd-wN`), by worker index.
fn worker_cpus(server: &Server) -> Vec<Vec<usize>> {
    let pid = server.pid();
    let mut workers = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the server's threads") {
        let tid = task.expect("thread entry").file_name().into_string().expect("numeric tid");
        let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
        if let Some(index) = comm.trim().strip_prefix("ringhttpd-w") {
            workers.push((index.parse::<usize>().expect("worker index"), allowed_cpus(pid, Some(&tid))));
        }
    }
    workers.sort();
    workers.into_iter().map(|(_, cpus)| cpus).collect()
}

fn startup_line(server: &Server) -> String {
    server.log().lines().find(|l| l.contains("listening on ")).expect("listening line").to_owned()
}

#[test]
fn workers_that_cover_every_cpu_are_left_to_the_scheduler() {
    let probe = Server::start_with(1, &[]);
    let cpus = allowed_cpus(probe.pid(), None);
    drop(probe);
    let server = Server::start_with(cpus.len(), &[]);
    let line = startup_line(&server);
    assert!(line.contains("placement: unpinned (auto:"), "{line:?}");
    let workers = worker_cpus(&server);
    assert_eq!(workers.len(), cpus.len(), "one thread per worker: {workers:?}");
    assert!(workers.iter().all(|w| *w == cpus), "every worker may run on every CPU {cpus:?}: {workers:?}");
}

#[test]
fn fewer_workers_than_cpus_are_pinned_one_per_cpu() {
    let server = Server::start_with(1, &[]);
    let cpus = allowed_cpus(server.pid(), None);
    if cpus.len() < 2 {
        println!("skipped: one CPU allowed, so one worker covers it");
        return;
    }
    let line = startup_line(&server);
    // Under a cgroup CPU quota below the mask, auto never pins (every instance would pile onto
    // the same first CPUs).
    let usable = std::thread::available_parallelism().map_or(1, |n| n.get());
    if usable < cpus.len() {
        assert!(line.contains("placement: unpinned (auto: a CPU quota of"), "{line:?}");
        assert_eq!(worker_cpus(&server), vec![cpus]);
        return;
    }
    assert!(line.contains("placement: pinned (auto:"), "{line:?}");
    assert_eq!(worker_cpus(&server), vec![vec![cpus[0]]]);
}

#[test]
fn pin_and_no_pin_force_the_placement() {
    let probe = Server::start_with(1, &[]);
    let cpus = allowed_cpus(probe.pid(), None);
    drop(probe);
    let pinned = Server::start_with(cpus.len() + 1, &["--pin"]);
    assert!(startup_line(&pinned).contains("placement: pinned (--pin)"), "{}", startup_line(&pinned));
    let expected: Vec<Vec<usize>> = (0..=cpus.len()).map(|i| vec![cpus[i % cpus.len()]]).collect();
    assert_eq!(worker_cpus(&pinned), expected);
    let free = Server::start_with(1, &["--no-pin"]);
    assert!(startup_line(&free).contains("placement: unpinned (--no-pin)"), "{}", startup_line(&free));
    assert_eq!(worker_cpus(&free), vec![cpus]);
    let both = run_to_exit(&["--pin", "--no-pin"]);
    assert_eq!(both.code(), Some(2), "{both:#?}");
    assert_no_panic(&both);
}

/// The compat mode kernels before 6.0 run (single-shot accepts and receives), forced by its
/// variable: the start-up line names it, and it serves.
#[test]
fn compat_mode_is_named_at_start_up_and_serves() {
    let server = Server::start_with_env(2, &[], &[("RINGHTTPD_IO_URING_COMPAT", "1")]);
    let line = startup_line(&server);
    assert!(line.contains("compat:single-shot-accept,compat:single-shot-recv"), "{line}");
    assert!(!line.contains("provided-buffer-ring"), "{line}");
    assert_serves(&get(server.addr, "/"), server.fixture(), "index.html");
    // Not forced: the kernel's version decides (multishot receives arrived in 6.0).
    let modern = Server::start_with_env(1, &[], &[("RINGHTTPD_IO_URING_COMPAT", "0")]);
    let line = startup_line(&modern);
    if kernel_version() >= (6, 0) {
        assert!(line.contains("multishot-recv") && line.contains("provided-buffer-ring"), "{line}");
        assert!(!line.contains("compat:"), "{line}");
    } else {
        assert!(line.contains("compat:single-shot-recv"), "{line}");
    }
}

/// This kernel's (major, minor) version.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("kernel release");
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse().expect("a number"));
    (numbers.next().expect("major"), numbers.next().expect("minor"))
}
