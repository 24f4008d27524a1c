//! Deployment operations: `--check`, systemd socket activation, and restarts that lose no
//! connection (a new process on the same port, then SIGTERM to the old one, which drains).

mod common;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::fixture::Fixture;
use common::server::{BIN, run_to_exit};

/// A server process started by a test, its stderr going to a file; killed on Drop.
struct Proc {
    child: Child,
    stderr: PathBuf,
}

impl Proc {
    /// Runs `program args` with stderr in `dir/name.err`; `fd3` is handed over as descriptor 3
    /// together with `LISTEN_PID`/`LISTEN_FDS` (the sd_listen_fds protocol) when given.
    fn spawn(dir: &Path, name: &str, program: &str, args: &[OsString], fd3: Option<RawFd>) -> Proc {
        let stderr = dir.join(format!("{name}.err"));
        let file = std::fs::File::create(&stderr).expect("stderr file");
        let mut command = if fd3.is_some() {
            // LISTEN_PID must be the server's own pid: a shell sets it and execs the server.
            let mut c = Command::new("sh");
            c.arg("-c").arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"").arg(program).args(args);
            c
        } else {
            let mut c = Command::new(program);
            c.args(args);
            c
        };
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file);
        if let Some(fd) = fd3 {
            // SAFETY: dup2 is async-signal-safe; it runs in the child between fork and exec and
            // only duplicates a descriptor the parent keeps open for the child's whole start.
            unsafe {
                command.pre_exec(move || {
                    // dup2 onto itself keeps close-on-exec set: clear it explicitly.
                    if libc::dup2(fd, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        Proc { child: command.spawn().expect("spawn"), stderr }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits (at most 15 s) for the `listening on ADDR` line and returns ADDR.
    fn wait_listening(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains("listening on ")) {
                let rest = &line[line.find("listening on ").unwrap() + 13..];
                return rest.split_whitespace().next().unwrap().parse().expect("address");
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("exited with {status} before listening:\n{log}");
            }
            assert!(Instant::now() < deadline, "no listening line within 15 s:\n{log}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn terminate(&mut self) {
        // SAFETY: plain syscall; the child has not been reaped, so the pid is still ours.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0);
    }

    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "still running after {limit:?}:\n{}", self.log());
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_args(root: &Path, port: u16) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-a", "127.0.0.1", "-p", &port.to_string(), "-w", "2", "--no-pin", "-r"]
        .iter()
        .map(OsString::from)
        .collect();
    args.push(root.as_os_str().to_owned());
    args
}

/// One GET on a new connection; an error names what went wrong (refused, reset, bad answer).
fn one_request(addr: SocketAddr, expected: &[u8]) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(|e| format!("receive: {e}"))?;
    if response.starts_with(b"HTTP/1.1 200 ") && response.ends_with(expected) {
        Ok(())
    } else {
        Err(format!("bad response: {:?}", String::from_utf8_lossy(&response[..response.len().min(200)])))
    }
}

/// Requests in a loop from two threads until `stop`; returns (successes, failures).
fn client_loop(
    addr: SocketAddr,
    expected: Vec<u8>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<(usize, Vec<String>)> {
    thread::spawn(move || {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (expected, stop) = (expected.clone(), stop.clone());
                thread::spawn(move || {
                    let (mut ok, mut failures) = (0, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        match one_request(addr, &expected) {
                            Ok(()) => ok += 1,
                            Err(e) => failures.push(e),
                        }
                    }
                    (ok, failures)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).fold((0, Vec::new()), |(n, mut f), (ok, fails)| {
            f.extend(fails);
            (n + ok, f)
        })
    })
}

/// Runs the client loop through a switch from `old` to `new` (started by `start_new`) and
/// asserts that no request failed.
fn switch_without_loss(addr: SocketAddr, expected: Vec<u8>, mut old: Proc, start_new: impl FnOnce() -> Proc) {
    let stop = Arc::new(AtomicBool::new(false));
    let clients = client_loop(addr, expected.clone(), stop.clone());
    let settle = |n: u32| {
        // A few hundred requests of traffic between steps, so each step overlaps real load.
        for _ in 0..n {
            one_request(addr, &expected).expect("a request between steps");
        }
    };
    settle(50);
    let mut new = start_new();
    new.wait_listening();
    settle(50);
    old.terminate();
    let status = old.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "the old server's stop: {status:?}\n{}", old.log());
    settle(50);
    stop.store(true, Ordering::Relaxed);
    let (ok, failures) = clients.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the switch: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 100, "only {ok} requests went through during the switch");
    drop(new);
}

/// With a socket passed in (socket activation), the socket itself outlives both processes:
/// nothing queued on it is ever reset.
#[test]
fn restart_with_a_passed_socket_loses_nothing() {
    let fixture = Fixture::create();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let args = server_args(fixture.root(), 0);
    let mut old = Proc::spawn(fixture.base(), "old", BIN, &args, Some(fd));
    assert_eq!(old.wait_listening(), addr);
    assert!(old.log().contains("socket activation"), "{}", old.log());
    let expected = fixture.read("index.html");
    switch_without_loss(addr, expected, old, || Proc::spawn(fixture.base(), "new", BIN, &args, Some(fd)));
}

/// Two processes in one SO_REUSEPORT group: the old one's queued connections would be reset
/// when it closes its sockets unless the kernel migrates them (`net.ipv4.tcp_migrate_req=1`,
/// which the README's restart procedure sets). Skipped when that cannot be set here.
#[test]
fn restart_on_the_same_port_loses_nothing_with_tcp_migrate_req() {
    const SYSCTL: &str = "/proc/sys/net/ipv4/tcp_migrate_req";
    let Ok(before) = std::fs::read_to_string(SYSCTL) else {
        eprintln!("restart test skipped: {SYSCTL} does not exist (Linux 5.14+ is needed)");
        return;
    };
    if std::fs::write(SYSCTL, "1").is_err() {
        eprintln!("restart test skipped: cannot set {SYSCTL}=1 (needs root in this network namespace)");
        return;
    }
    /// Puts the sysctl back however the test ends.
    struct Restore(String);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = std::fs::write(SYSCTL, self.0.trim());
        }
    }
    let _restore = Restore(before);
    let fixture = Fixture::create();
    let mut old = Proc::spawn(fixture.base(), "old", BIN, &server_args(fixture.root(), 0), None);
    let addr = old.wait_listening();
    let expected = fixture.read("index.html");
    let args = server_args(fixture.root(), addr.port());
    switch_without_loss(addr, expected, old, || Proc::spawn(fixture.base(), "new", BIN, &args, None));
}

/// systemd-socket-activate (from Debian's systemd package) binds the socket and starts the
/// server with it on the first connection, as systemd does with `ringhttpd.socket`.
#[test]
fn serves_a_socket_passed_by_systemd_socket_activate() {
    let Some(tool) = ["/usr/bin/systemd-socket-activate", "/bin/systemd-socket-activate"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!(
            "socket activation test skipped: systemd-socket-activate is not installed (Debian package systemd)"
        );
        return;
    };
    let fixture = Fixture::create();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut args: Vec<OsString> = vec!["-l".into(), format!("127.0.0.1:{port}").into(), BIN.into()];
    args.extend(server_args(fixture.root(), 1).into_iter().skip(4));
    let mut proc = Proc::spawn(fixture.base(), "activated", tool, &args, None);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let expected = fixture.read("index.html");
    // The tool listens first and starts the server on the first connection.
    loop {
        match one_request(addr, &expected) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline && e.starts_with("connect") => {
                thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("{e}\n{}", proc.log()),
        }
    }
    assert_eq!(proc.wait_listening(), addr);
    assert!(proc.log().contains("socket activation"), "{}", proc.log());
    for _ in 0..20 {
        one_request(addr, &expected).unwrap();
    }
    proc.terminate();
    assert!(proc.wait_exit(Duration::from_secs(10)).success());
}

// ---- --check ----

#[test]
fn check_passes_a_good_configuration_without_serving() {
    let fixture = Fixture::create();
    let root = fixture.root().to_str().unwrap().to_owned();
    let exit =
        run_to_exit(&["-t", "-a", "127.0.0.1", "-p", "0", "-r", &root, "--error-page", "404=/index.html"]);
    assert_eq!(exit.code(), Some(0), "{exit:#?}");
    assert_eq!(exit.stdout.trim(), "configuration ok", "{exit:#?}");
    let long =
        run_to_exit(&["--check", "-a", "127.0.0.1", "-p", "0", "-r", &root, "--fallback", "/index.html"]);
    assert_eq!(long.code(), Some(0), "{long:#?}");
}

#[test]
fn check_lists_every_problem() {
    let fixture = Fixture::create();
    let root = fixture.root().to_str().unwrap().to_owned();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let log = fixture.base().join("no-such-dir/access.log");
    let exit = run_to_exit(&[
        "-t",
        "-a",
        "127.0.0.1",
        "-p",
        &port,
        "-r",
        &root,
        "--error-page",
        "404=/missing.html",
        "--fallback",
        "/httptest/",
        "--access-log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(exit.code(), Some(1), "{exit:#?}");
    let lines = exit.stderr_lines();
    for needle in
        ["--error-page 404=/missing.html", "--fallback /httptest/", "access log", "address already in use"]
    {
        assert_eq!(
            lines.iter().filter(|l| l.contains(needle)).count(),
            1,
            "one line about {needle:?}: {exit:#?}"
        );
    }
    assert!(lines.iter().all(|l| l.starts_with("ringhttpd: error: ")), "{exit:#?}");
    assert!(exit.stdout.is_empty(), "{exit:#?}");
    let missing_root = run_to_exit(&["-t", "-p", "0", "-r", "/no/such/root"]);
    assert_eq!(missing_root.code(), Some(1));
    assert!(missing_root.stderr.contains("document root"), "{missing_root:#?}");
    drop(taken);
}
