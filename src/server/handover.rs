//! Restart without losing a connection and without systemd: on SIGUSR2 the running process
//! starts its successor (the binary at the path it was started from, with the same arguments)
//! and hands it its listening sockets as inherited descriptors. The successor serves them as it
//! would sockets passed by systemd, then reports through a pipe that it is ready; only then does
//! the old process stop gracefully. The sockets, with every connection queued on them, never
//! close: the successor holds them before the old process lets go of its descriptors.
//!
//! Owns: the duplicates of the listening sockets kept for a successor, starting the successor
//! and waiting (bounded) for its readiness; in a successor, taking the inherited descriptors
//! back from the environment and reporting readiness.
//!
//! Must never: close or shut down a listening socket (it only drops its own duplicates), let
//! any descriptor but the sockets and the readiness pipe cross `exec` (everything else in the
//! process is close-on-exec; the inheritable duplicates made here live only across one spawn),
//! or block the supervisor (it polls the readiness pipe with its signals).

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::kernel::sys;
use crate::server::start_error::describe;
use crate::{log_error, log_info};

/// The public listening sockets, as a comma-separated list of descriptor numbers.
const LISTEN_VAR: &str = "RINGHTTPD_LISTEN_FDS";
/// The HTTPS listening sockets beside the plain ones, as a comma-separated list.
const TLS_VAR: &str = "RINGHTTPD_TLS_FDS";
/// The `--metrics` listening socket, when there is one.
const METRICS_VAR: &str = "RINGHTTPD_METRICS_FD";
/// The pipe the successor writes one byte to once it serves.
const READY_VAR: &str = "RINGHTTPD_READY_FD";
/// The process that handed the sockets over (for the start-up line).
const FROM_VAR: &str = "RINGHTTPD_HANDED_OVER_BY";

/// How long a successor may take from `exec` to serving before it is killed.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a successor inherited from the process that started it.
pub struct Inherited {
    pub listeners: Vec<OwnedFd>,
    /// The HTTPS listeners beside plain ones (with `--https-only`, `listeners` are HTTPS).
    pub tls: Vec<OwnedFd>,
    pub metrics: Option<OwnedFd>,
    /// The process that handed the sockets over.
    pub from: String,
    /// Write end of the readiness pipe; `None` once used.
    ready: Option<OwnedFd>,
}

impl Inherited {
    /// Tells the old process that this one serves, so it may stop.
    pub fn report_ready(mut self) {
        if let Some(ready) = self.ready.take() {
            // A predecessor that is gone no longer needs to know (the write fails with EPIPE).
            let _ = std::fs::File::from(ready).write_all(b"1");
        }
    }
}

impl Drop for Inherited {
    /// Start-up failed: the pipe stays open until the process exits, after its error line, so
    /// the predecessor's end-of-file means "exited" and the status it reaps is the real one.
    fn drop(&mut self) {
        if let Some(ready) = self.ready.take() {
            std::mem::forget(ready);
        }
    }
}

/// The sockets handed over by a predecessor; `None` when this process was not started by one.
/// Must run before the process opens any descriptor of its own.
pub fn inherited() -> io::Result<Option<Inherited>> {
    let Some(list) = std::env::var_os(LISTEN_VAR) else { return Ok(None) };
    let listeners = parse_fds(LISTEN_VAR, &list)?;
    let tls = match std::env::var_os(TLS_VAR) {
        Some(list) => parse_fds(TLS_VAR, &list)?,
        None => Vec::new(),
    };
    let metrics = parse_one(METRICS_VAR)?;
    let ready =
        parse_one(READY_VAR)?.ok_or_else(|| invalid(format!("{LISTEN_VAR} is set without {READY_VAR}")))?;
    let all: Vec<RawFd> =
        listeners.iter().copied().chain(tls.iter().copied()).chain(metrics).chain([ready]).collect();
    let mut fds = sys::adopt_inherited(&all)?;
    // In the order of `all`: the readiness pipe last, the metrics socket before it, the HTTPS
    // listeners before that.
    let ready = fds.pop();
    let metrics = if metrics.is_some() { fds.pop() } else { None };
    let tls = fds.split_off(listeners.len());
    let from = std::env::var(FROM_VAR).unwrap_or_else(|_| "?".to_owned());
    // Built before the checks, so that on failure its Drop keeps the pipe open (see there).
    let inherited = Inherited { listeners: fds, tls, metrics, from, ready };
    inherited.validate()?;
    Ok(Some(inherited))
}

impl Inherited {
    fn validate(&self) -> io::Result<()> {
        if !self.ready.as_ref().is_some_and(|fd| sys::is_pipe(fd.as_raw_fd())) {
            return Err(invalid(format!("{READY_VAR} does not name a pipe")));
        }
        match self
            .listeners
            .iter()
            .chain(&self.tls)
            .chain(&self.metrics)
            .find(|fd| !sys::is_listening(fd.as_raw_fd()))
        {
            Some(fd) => Err(invalid(format!("descriptor {} is not a listening socket", fd.as_raw_fd()))),
            None => Ok(()),
        }
    }
}

/// A comma-separated list of descriptor numbers (at least one).
fn parse_fds(var: &str, value: &std::ffi::OsStr) -> io::Result<Vec<RawFd>> {
    let text = value.to_str().unwrap_or("");
    text.split(',')
        .map(|n| {
            n.trim().parse::<RawFd>().map_err(|_| invalid(format!("{var}={text:?} is not a descriptor list")))
        })
        .collect()
}

/// The one descriptor number in `var`, if it is set.
fn parse_one(var: &str) -> io::Result<Option<RawFd>> {
    let Some(value) = std::env::var_os(var) else { return Ok(None) };
    match parse_fds(var, &value)?.as_slice() {
        [fd] => Ok(Some(*fd)),
        _ => Err(invalid(format!("{var} names more than one descriptor"))),
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// The old process's side: what a successor gets, and the successor while it starts.
pub struct Handover {
    /// This binary's path, read at start-up, so that an upgrade installed at the same path is
    /// what the successor runs (the running image itself may be deleted by then).
    program: io::Result<PathBuf>,
    arg0: OsString,
    args: Vec<OsString>,
    /// One descriptor per distinct listening socket (duplicates of the workers' ones).
    listeners: Vec<OwnedFd>,
    tls: Vec<OwnedFd>,
    metrics: Option<OwnedFd>,
    starting: Option<Successor>,
}

/// A successor started and not yet ready.
struct Successor {
    child: Child,
    /// Read end of its readiness pipe: one byte when it serves, end-of-file if it exits first.
    ready: std::fs::File,
    deadline: Instant,
}

impl Handover {
    pub fn new(listeners: Vec<OwnedFd>, tls: Vec<OwnedFd>, metrics: Option<OwnedFd>) -> Handover {
        let mut argv = std::env::args_os();
        let arg0 = argv.next().unwrap_or_else(|| "ringhttpd".into());
        Handover {
            program: program_path(&arg0),
            arg0,
            args: argv.collect(),
            listeners,
            tls,
            metrics,
            starting: None,
        }
    }

    /// SIGUSR2: start a successor, unless one is starting already or it could not work here.
    pub fn start(&mut self) {
        if let Some(s) = &self.starting {
            log_info!("SIGUSR2: a hand-over to pid {} is already under way", s.child.id());
            return;
        }
        if let Some(why) = refusal() {
            log_error!("hand-over refused: {why}; still serving");
            return;
        }
        match self.spawn() {
            Ok(successor) => {
                log_info!("handing the listening sockets over to pid {}", successor.child.id());
                self.starting = Some(successor);
            }
            Err(e) => log_error!(
                "hand-over failed: cannot start {}: {}; still serving",
                self.program_name(),
                describe(&e)
            ),
        }
    }

    fn program_name(&self) -> String {
        self.program.as_ref().map_or_else(|_| "this binary".to_owned(), |p| p.display().to_string())
    }

    /// Starts the successor with inheritable duplicates of the sockets; they and the write end
    /// of its readiness pipe are closed here as soon as it has been started (or failed to).
    fn spawn(&self) -> io::Result<Successor> {
        let program = self.program.as_ref().map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
        let (ready_read, ready_write) = sys::pipe()?;
        let listeners = self
            .listeners
            .iter()
            .map(|l| sys::dup_inheritable(l.as_raw_fd()))
            .collect::<io::Result<Vec<_>>>()?;
        let tls =
            self.tls.iter().map(|l| sys::dup_inheritable(l.as_raw_fd())).collect::<io::Result<Vec<_>>>()?;
        let metrics = self.metrics.as_ref().map(|m| sys::dup_inheritable(m.as_raw_fd())).transpose()?;
        let ready = sys::dup_inheritable(ready_write.as_raw_fd())?;
        let mut command = Command::new(program);
        command
            .arg0(&self.arg0)
            .args(&self.args)
            .env(LISTEN_VAR, fd_list(&listeners))
            .env(READY_VAR, ready.as_raw_fd().to_string())
            .env(FROM_VAR, std::process::id().to_string())
            // Sockets from a service manager reach the successor through LISTEN_VAR instead.
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES");
        match tls.is_empty() {
            false => command.env(TLS_VAR, fd_list(&tls)),
            true => command.env_remove(TLS_VAR),
        };
        match &metrics {
            Some(m) => command.env(METRICS_VAR, m.as_raw_fd().to_string()),
            None => command.env_remove(METRICS_VAR),
        };
        let child = command.spawn()?;
        Ok(Successor { child, ready: ready_read.into(), deadline: Instant::now() + READY_TIMEOUT })
    }

    /// Stopping: drops the descriptors kept for a successor (the sockets themselves close only
    /// once nothing else holds them), and stops a successor still starting, which would
    /// otherwise serve on with nobody having asked for it.
    pub fn close_sockets(&mut self) {
        self.abandon();
        self.listeners.clear();
        self.tls.clear();
        self.metrics = None;
    }

    /// Stops and reaps a successor that has not reported ready, if there is one.
    fn abandon(&mut self) {
        let Some(mut successor) = self.starting.take() else { return };
        let pid = successor.child.id();
        let _ = successor.child.kill();
        let status = successor.child.wait().map_or_else(|e| e.to_string(), |s| s.to_string());
        log_error!(
            "hand-over abandoned: pid {pid} stopped before it served ({status}): this process is stopping"
        );
    }

    /// The readiness pipe to poll while a successor starts.
    pub fn waiting_on(&self) -> Option<RawFd> {
        self.starting.as_ref().map(|s| s.ready.as_raw_fd())
    }

    /// How long the supervisor may wait before `check` must run again.
    pub fn time_left(&self) -> Option<Duration> {
        self.starting.as_ref().map(|s| s.deadline.saturating_duration_since(Instant::now()))
    }

    /// Called at every wake-up of the supervisor; never blocks. The successor's pid once it
    /// serves (the caller then stops this process). A successor that exited, closed the pipe
    /// without reporting, or took too long is killed and reaped, with one line.
    pub fn check(&mut self) -> Option<u32> {
        let successor = self.starting.as_mut()?;
        let mut byte = [0u8; 1];
        let failure = match successor.ready.read(&mut byte) {
            Ok(1) => {
                let pid = successor.child.id();
                // Not waited for: it outlives this process, and whoever adopts it reaps it.
                self.starting = None;
                log_info!("pid {pid} serves the listening sockets");
                return Some(pid);
            }
            Ok(_) => "exited before serving".to_owned(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return None,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() < successor.deadline {
                    return None;
                }
                format!("did not report ready within {} s", READY_TIMEOUT.as_secs())
            }
            Err(e) => format!("left its readiness pipe unreadable ({})", describe(&e)),
        };
        self.fail(&failure);
        None
    }

    fn fail(&mut self, what: &str) {
        let Some(mut successor) = self.starting.take() else { return };
        let pid = successor.child.id();
        // A successor that already exited keeps its status; one that still runs is stopped.
        let _ = successor.child.kill();
        let status = successor.child.wait().map_or_else(|e| e.to_string(), |s| s.to_string());
        log_error!("hand-over failed: pid {pid} {what} ({status}); still serving");
    }
}

/// Whatever ends the supervision (a second signal, a worker that died) ends a successor that
/// has not taken over yet too.
impl Drop for Handover {
    fn drop(&mut self) {
        self.abandon();
    }
}

fn fd_list(fds: &[OwnedFd]) -> String {
    fds.iter().map(|fd| fd.as_raw_fd().to_string()).collect::<Vec<_>>().join(",")
}

/// The binary a successor runs: the path this one was started by, as given (made absolute,
/// or found on PATH, now: the working directory and PATH may change), so that a symlink
/// flipped to a new release, or a binary replaced at that path, is what runs. `/proc/self/exe`
/// would name the old release's file. It is only the fallback.
fn program_path(arg0: &std::ffi::OsStr) -> io::Result<PathBuf> {
    let given = std::path::Path::new(arg0);
    let found = if given.components().count() > 1 {
        std::env::current_dir().ok().map(|dir| dir.join(given))
    } else {
        std::env::var_os("PATH")
            .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join(given)).find(|p| p.is_file()))
    };
    found.filter(|p| p.is_file()).map_or_else(std::env::current_exe, Ok)
}

/// Parents that end (or restart the service) when their one child exits: a hand-over under
/// them would end in an outage or in two servers.
const SINGLE_CHILD_PARENTS: &[&str] =
    &["tini", "dumb-init", "docker-init", "catatonit", "runsv", "s6-supervise", "supervisord"];

/// Why a hand-over cannot work where this process runs: its successor would be killed with it.
fn refusal() -> Option<String> {
    let me = std::process::id();
    if me == 1 {
        return Some("this is process 1 (a container's init); the container would end with it".into());
    }
    let parent = std::os::unix::process::parent_id();
    let parent_name = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default();
    let parent_name = parent_name.trim();
    if SINGLE_CHILD_PARENTS.contains(&parent_name) {
        return Some(format!(
            "the parent process ({parent_name}, pid {parent}) stops or restarts the service when this process exits"
        ));
    }
    let exec_pid = std::env::var("SYSTEMD_EXEC_PID").ok().and_then(|p| p.parse::<u32>().ok());
    let systemd_service = match exec_pid {
        Some(pid) => pid == me,
        // systemd before 248 sets no SYSTEMD_EXEC_PID.
        None => std::env::var_os("INVOCATION_ID").is_some() && std::os::unix::process::parent_id() == 1,
    };
    systemd_service.then(|| {
        "this is a systemd service's main process, and systemd stops the service when it exits; use socket activation (deploy/ringhttpd.socket) and systemctl restart".into()
    })
}
