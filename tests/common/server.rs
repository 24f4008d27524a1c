//! Runs the built `ringhttpd` binary: a guard for a listening server and a bounded one-shot run
//! for command lines that are expected to exit.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStderr, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::fixture::Fixture;
use super::http;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringhttpd");
/// Bound on start-up and on one-shot runs.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// What precedes the bound address in the start-up log line.
const LISTENING: &str = "listening on ";

/// A running server over its own fixture; killed (SIGKILL) and reaped on Drop.
pub struct Server {
    /// The address the server reported it listens on.
    pub addr: SocketAddr,
    child: Child,
    /// Everything the server wrote to stderr so far, filled by a background thread.
    log: Arc<Mutex<String>>,
    /// Declared last so the directory goes away after the process.
    fixture: Fixture,
}

impl Server {
    /// A server with two workers on a fresh fixture.
    pub fn start() -> Server {
        Server::start_with(2, &[])
    }

    /// A server with `workers` workers and extra command-line arguments.
    pub fn start_with(workers: usize, extra: &[&str]) -> Server {
        Server::start_with_env(workers, extra, &[])
    }

    /// Like `start_with`, with extra environment variables for the server process.
    pub fn start_with_env(workers: usize, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn(env, |root| {
            let mut args: Vec<OsString> =
                ["-a", "127.0.0.1", "-p", "0", "-r"].iter().map(OsString::from).collect();
            args.push(root.as_os_str().to_owned());
            args.push("-w".into());
            args.push(workers.to_string().into());
            args.extend(extra.iter().map(OsString::from));
            args
        })
    }

    /// A server whose whole command line is built by `args` from the document root path.
    pub fn start_args(args: impl FnOnce(&std::path::Path) -> Vec<OsString>) -> Server {
        Server::spawn(&[], args)
    }

    fn spawn(env: &[(&str, &str)], args: impl FnOnce(&std::path::Path) -> Vec<OsString>) -> Server {
        let fixture = Fixture::create();
        let args = args(fixture.root());
        let mut child = Command::new(BIN)
            .args(&args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let lines = drain_lines(child.stderr.take().expect("piped stderr"), log.clone());
        match wait_for_address(&lines) {
            Ok(addr) => Server { addr, child, log, fixture },
            Err(why) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("server {args:?} did not start: {why}; exit: {status:?}; stderr:\n{}", lock(&log));
            }
        }
    }

    pub fn fixture(&self) -> &Fixture {
        &self.fixture
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        lock(&self.log).clone()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits, at most `limit`, for the process to exit on its own and returns how it ended.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server still running after {limit:?}; stderr:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` to the (still running) server process.
    pub fn signal(&mut self, sig: libc::c_int) {
        self.assert_running();
        // SAFETY: a plain syscall without memory arguments. The pid is our child, and it has not
        // been reaped (`assert_running` just saw it running), so it names no unrelated process.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig}): {}", std::io::Error::last_os_error());
    }

    /// Asserts that the process has not exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("server exited with {status}; stderr:\n{}", self.log());
        }
    }

    /// Asserts that the process still runs and serves `/index.html` byte-exact.
    pub fn assert_alive(&mut self) {
        self.assert_running();
        let response = http::get(self.addr, "/index.html");
        assert_eq!(response.status, 200, "after the previous step: {response:#?}");
        assert_eq!(response.body, self.fixture.read("index.html"));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- ringhttpd stderr ---\n{}--- end ---", self.log());
        }
    }
}

fn lock(log: &Mutex<String>) -> std::sync::MutexGuard<'_, String> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Copies stderr into `log` line by line until EOF, also sending each line on the channel (for
/// as long as someone listens). Keeps the pipe drained so the server never blocks on it.
fn drain_lines(stderr: ChildStderr, log: Arc<Mutex<String>>) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    lock(&log).push_str(&text);
                    let _ = tx.send(text);
                }
            }
        }
    });
    rx
}

/// Waits for the `listening on ADDR ` line and parses ADDR.
fn wait_for_address(lines: &Receiver<String>) -> Result<SocketAddr, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(addr) = parse_listening(&line) {
                    return addr;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!("no {LISTENING:?} line within {START_TIMEOUT:?}"));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err("stderr closed before the listening line".into());
            }
        }
    }
}

/// `Some(result)` if `line` is the listening line.
pub fn parse_listening(line: &str) -> Option<Result<SocketAddr, String>> {
    let rest = &line[line.find(LISTENING)? + LISTENING.len()..];
    let text = rest.split_whitespace().next().unwrap_or("");
    Some(text.parse().map_err(|e| format!("bad address {text:?} in {line:?}: {e}")))
}

/// How a one-shot run ended.
#[derive(Debug)]
pub struct Exit {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Exit {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Non-empty stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    }
}

/// Runs the binary with `args` and waits for it to exit; kills it and panics if it is still
/// running after [`START_TIMEOUT`] (e.g. it started serving when it should have refused).
pub fn run_to_exit<S: AsRef<OsStr>>(args: &[S]) -> Exit {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(output) => to_exit(output.expect("waiting for the child")),
        Err(_) => {
            kill(pid);
            let output = rx.recv_timeout(START_TIMEOUT).ok().and_then(Result::ok);
            panic!(
                "{BIN} still running after {START_TIMEOUT:?}; stderr: {:?}",
                output.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            );
        }
    }
}

fn to_exit(output: Output) -> Exit {
    Exit {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn kill(pid: u32) {
    // SAFETY: a plain syscall with no memory arguments. The pid is our child, which the waiting
    // thread had not reaped when the timeout fired, so it does not name an unrelated process.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}
