//! Runs the built `ringhttpd` binary: a guard for a listening server (which the test can also
//! signal, wait for and read the output of) and a bounded one-shot run for command lines that
//! are expected to exit.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::fixture::Fixture;
use super::http;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringhttpd");
/// Bound on start-up and on one-shot runs.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// What precedes the bound address in the start-up log line.
const LISTENING: &str = "listening on ";

/// Bound on how long, after the process exited, the readers of its pipes may take to copy the
/// last bytes.
const PIPE_SETTLE: Duration = Duration::from_secs(2);

/// A running server over its own fixture; killed (SIGKILL) and reaped on Drop.
pub struct Server {
    /// The plain HTTP address the server reported it listens on; with `--https-only`, which
    /// leaves no plain listener, the HTTPS one (also in `https`).
    pub addr: SocketAddr,
    /// The HTTPS address, when the server has a TLS listener (`listening on ... https://ADDR`).
    pub https: Option<SocketAddr>,
    child: Child,
    /// Everything the server wrote to stderr so far, filled by a background thread.
    log: Arc<Mutex<String>>,
    /// Everything it wrote to stdout so far, when stdout is captured ([`Launch::capture_stdout`]).
    stdout: Option<Arc<Mutex<Vec<u8>>>>,
    /// The threads copying the pipes, finished once the process and its pipes are gone.
    readers: Vec<JoinHandle<()>>,
    /// Declared last so the directory goes away after the process.
    fixture: Fixture,
}

/// A server to start with more than [`Server::start_with_env`] takes: a fixture the test
/// prepared, arguments that are paths, stdout captured. Listens on `127.0.0.1:0` over the
/// fixture's document root, like every `start_*`.
///
/// `Server::launch(2).fixture(fixture).arg("--access-log").arg(&path).capture_stdout().start()`
#[must_use = "a Launch does nothing until `start`"]
pub struct Launch {
    workers: usize,
    fixture: Option<Fixture>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    capture_stdout: bool,
}

impl Launch {
    /// Serves `fixture` (prepared by the test) instead of a fresh one.
    pub fn fixture(mut self, fixture: Fixture) -> Launch {
        self.fixture = Some(fixture);
        self
    }

    /// Appends one command-line argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Launch {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends command-line arguments.
    pub fn args<I>(mut self, args: I) -> Launch
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the server process.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Launch {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Captures stdout (otherwise discarded), read with [`Server::stdout`].
    pub fn capture_stdout(mut self) -> Launch {
        self.capture_stdout = true;
        self
    }

    /// Starts the server and waits until it listens; panics if it does not.
    pub fn start(self) -> Server {
        let Launch { workers, fixture, args: extra, env, capture_stdout } = self;
        let fixture = fixture.unwrap_or_else(Fixture::create);
        Server::spawn(fixture, &env, capture_stdout, |root| {
            let mut args: Vec<OsString> =
                ["-a", "127.0.0.1", "-p", "0", "-r"].iter().map(OsString::from).collect();
            args.push(root.as_os_str().to_owned());
            args.push("-w".into());
            args.push(workers.to_string().into());
            args.extend(extra);
            args
        })
    }
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
        env.iter().fold(Server::launch(workers).args(extra), |launch, (k, v)| launch.env(k, v)).start()
    }

    /// A server with `workers` workers, set up further through the returned [`Launch`].
    pub fn launch(workers: usize) -> Launch {
        Launch { workers, fixture: None, args: Vec::new(), env: Vec::new(), capture_stdout: false }
    }

    /// A server whose whole command line is built by `args` from the document root path.
    pub fn start_args(args: impl FnOnce(&Path) -> Vec<OsString>) -> Server {
        Server::spawn(Fixture::create(), &[], false, args)
    }

    fn spawn(
        fixture: Fixture,
        env: &[(OsString, OsString)],
        capture_stdout: bool,
        args: impl FnOnce(&Path) -> Vec<OsString>,
    ) -> Server {
        let args = args(fixture.root());
        let mut child = Command::new(BIN)
            .args(&args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(if capture_stdout { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (lines, stderr_reader) = drain_lines(child.stderr.take().expect("piped stderr"), log.clone());
        let mut readers = vec![stderr_reader];
        let stdout = child.stdout.take().map(|pipe| {
            let (buffer, reader) = collect(pipe);
            readers.push(reader);
            buffer
        });
        match wait_for_address(&lines) {
            Ok(Listening { addr, https }) => Server { addr, https, child, log, stdout, readers, fixture },
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

    /// The HTTPS address; panics if the server reported none.
    pub fn https(&self) -> SocketAddr {
        self.https.unwrap_or_else(|| panic!("the server reported no HTTPS listener:\n{}", self.log()))
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        lock(&self.log).clone()
    }

    /// The server's stdout so far; panics unless it was captured ([`Launch::capture_stdout`]).
    pub fn stdout(&self) -> String {
        let buffer = self.stdout.as_ref().expect("stdout is captured only with Launch::capture_stdout");
        String::from_utf8_lossy(&lock(buffer)).into_owned()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until stderr contains `needle`; panics after `within`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?} on stderr within {within:?}:\n{}", self.log());
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The exit status if the process exits on its own within `within` (checked at least once,
    /// so `Duration::ZERO` asks whether it has exited). Once it has, the captured stderr and
    /// stdout are complete.
    pub fn try_wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.settle_pipes();
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits, at most `limit`, for the process to exit on its own and returns how it ended.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        self.try_wait_exit(limit)
            .unwrap_or_else(|| panic!("server still running after {limit:?}; stderr:\n{}", self.log()))
    }

    /// Waits, at most `within`, for the process to exit and asserts its exit code.
    pub fn expect_exit(&mut self, code: i32, within: Duration) -> ExitStatus {
        let status = self.wait_exit(within);
        assert_eq!(status.code(), Some(code), "exit status {status}; stderr:\n{}", self.log());
        status
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

    /// After the exit: waits (bounded by [`PIPE_SETTLE`]) for the pipe readers to reach EOF, so
    /// that the last bytes the process wrote are in the buffers.
    fn settle_pipes(&self) {
        let deadline = Instant::now() + PIPE_SETTLE;
        while !self.readers.iter().all(JoinHandle::is_finished) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
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

fn lock<T>(buffer: &Mutex<T>) -> MutexGuard<'_, T> {
    buffer.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Copies stderr into `log` line by line until EOF, also sending each line on the channel (for
/// as long as someone listens). Keeps the pipe drained so the server never blocks on it.
fn drain_lines(stderr: ChildStderr, log: Arc<Mutex<String>>) -> (Receiver<String>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
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
    (rx, reader)
}

/// Copies a pipe into a shared buffer until EOF, so the child never blocks on it.
fn collect(mut pipe: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    let reader = thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = pipe.read(&mut chunk) {
            lock(&sink).extend_from_slice(&chunk[..n]);
        }
    });
    (buffer, reader)
}

/// The addresses of the listening line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// The plain HTTP address, or the HTTPS one when there is no plain listener.
    pub addr: SocketAddr,
    /// The HTTPS address, if any.
    pub https: Option<SocketAddr>,
}

/// Waits for the `listening on ADDR ` line and parses its addresses.
fn wait_for_address(lines: &Receiver<String>) -> Result<Listening, String> {
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

/// `Some(result)` if `line` is the listening line: `listening on ADDR (`, `listening on ADDR and
/// https://TLSADDR (` or, without a plain listener, `listening on https://TLSADDR (`.
pub fn parse_listening(line: &str) -> Option<Result<Listening, String>> {
    let rest = &line[line.find(LISTENING)? + LISTENING.len()..];
    let words: Vec<&str> = rest.split_whitespace().collect();
    let parse = |text: &str| -> Result<SocketAddr, String> {
        text.parse().map_err(|e| format!("bad address {text:?} in {line:?}: {e}"))
    };
    let first = words.first().copied().unwrap_or("");
    Some(if let Some(tls) = first.strip_prefix("https://") {
        parse(tls).map(|addr| Listening { addr, https: Some(addr) })
    } else if words.get(1) == Some(&"and") {
        let Some(tls) = words.get(2).and_then(|w| w.strip_prefix("https://")) else {
            return Some(Err(format!("no https://ADDR after \"and\" in {line:?}")));
        };
        parse(first).and_then(|addr| Ok(Listening { addr, https: Some(parse(tls)?) }))
    } else {
        parse(first).map(|addr| Listening { addr, https: None })
    })
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

/// Nothing in a run's output says it panicked (or overflowed on the way).
pub fn assert_no_panic(exit: &Exit) {
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace", "overflow"] {
        assert!(!exit.stderr.contains(bad), "{bad:?} in {exit:#?}");
    }
}

/// A start-up refusal: exit status 1 and exactly one `ringhttpd: error:` line, which mentions
/// every string of `mentions`.
pub fn assert_refused(exit: &Exit, mentions: &[&str]) {
    assert_eq!(exit.code(), Some(1), "exit status of {exit:#?}");
    assert_no_panic(exit);
    let lines = exit.stderr_lines();
    assert_eq!(lines.len(), 1, "one stderr line expected: {exit:#?}");
    assert!(lines[0].starts_with("ringhttpd: error: "), "{exit:#?}");
    for m in mentions {
        assert!(lines[0].contains(m), "the error line should mention {m:?}: {exit:#?}");
    }
}

/// Runs the binary with `args` and waits for it to exit; kills it and panics if it is still
/// running after [`START_TIMEOUT`] (e.g. it started serving when it should have refused).
pub fn run_to_exit<S: AsRef<OsStr>>(args: &[S]) -> Exit {
    run_to_exit_with(args, &[], None)
}

/// [`run_to_exit`] with extra environment variables and, when `fd3` is given, that descriptor
/// passed as descriptor 3 with `LISTEN_PID`/`LISTEN_FDS=1` (the sd_listen_fds protocol).
pub fn run_to_exit_with<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)], fd3: Option<RawFd>) -> Exit {
    let mut command = match fd3 {
        Some(fd) => passing_fd3(BIN, fd),
        None => Command::new(BIN),
    };
    command.args(args).envs(env.iter().copied());
    let output = output_within(&mut command, START_TIMEOUT).unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
    to_exit(output)
}

/// Runs `command` with its output captured and waits for it to exit: its output, or the error
/// that kept it from starting. Kills it and panics if it is still running after `limit`.
pub fn output_within(command: &mut Command, limit: Duration) -> std::io::Result<Output> {
    let child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => Ok(output.expect("waiting for the child")),
        Err(_) => {
            kill(pid);
            let output = rx.recv_timeout(START_TIMEOUT).ok().and_then(Result::ok);
            panic!(
                "{command:?} still running after {limit:?}; stdout: {:?}; stderr: {:?}",
                output.as_ref().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()),
                output.as_ref().map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            );
        }
    }
}

/// A command that runs `program` with `fd` as its descriptor 3 and `LISTEN_PID` naming the
/// program's own pid (a shell sets it, then execs the program with the arguments added later).
fn passing_fd3(program: &str, fd: RawFd) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"").arg(program);
    // SAFETY: dup2 and fcntl are async-signal-safe; they run in the child between fork and exec
    // and only duplicate a descriptor the caller keeps open until the child has exited.
    unsafe {
        command.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec set: clear it explicitly.
            if libc::dup2(fd, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
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

/// Any program a test starts and must see through several generations (a server and the
/// successors it starts share one stderr file), or a program other than the server; killed and
/// reaped on Drop. The common case, one server over its own fixture, is [`Server`].
pub struct Process {
    pub child: Child,
    stderr: PathBuf,
}

impl Process {
    /// Runs `program args` with stderr in `dir/name.err`; `fd3` is handed over as descriptor 3
    /// together with `LISTEN_PID`/`LISTEN_FDS` (the sd_listen_fds protocol) when given.
    pub fn spawn(dir: &Path, name: &str, program: &str, args: &[OsString], fd3: Option<RawFd>) -> Process {
        let stderr = dir.join(format!("{name}.err"));
        let file = std::fs::File::create(&stderr).expect("stderr file");
        let mut command = match fd3 {
            Some(fd) => passing_fd3(program, fd),
            None => Command::new(program),
        };
        command.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(file);
        Process { child: command.spawn().expect("spawn"), stderr }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits (at most 15 s) for the `listening on ADDR` line and returns ADDR.
    pub fn wait_listening(&mut self) -> SocketAddr {
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

    pub fn terminate(&mut self) {
        // SAFETY: plain syscall; the child has not been reaped, so the pid is still ours.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0);
    }

    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
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

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
