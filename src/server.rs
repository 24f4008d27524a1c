//! Start-up and lifecycle: validate the environment, bind one listening socket per worker, start
//! the workers, then turn signals into worker wake-ups until every worker has stopped.
//!
//! Every start-up failure becomes one `StartError` line before any worker serves a request.
//! Signals are blocked in all threads and read here from a signalfd; workers learn of them
//! through their own eventfd, which their ring is reading.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::config::Config;
use crate::sys;
use crate::worker::{self, Setup, Shared};
use crate::{log_error, log_info, log_warn};

const LISTEN_BACKLOG: i32 = 4096;

/// Why the server could not start; printed as one line.
#[derive(Debug)]
pub enum StartError {
    DocumentRoot(std::path::PathBuf, io::Error),
    AccessLog(std::path::PathBuf, io::Error),
    Listen(SocketAddr, io::Error),
    IoUring(io::Error),
    Worker(io::Error),
    Signals(io::Error),
    Activation(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::DocumentRoot(p, e) => {
                write!(f, "document root {}: {}", p.display(), describe(e))
            }
            StartError::AccessLog(p, e) => write!(f, "access log {}: {}", p.display(), describe(e)),
            StartError::Listen(a, e) => match e.raw_os_error() {
                Some(libc::EADDRINUSE) => write!(f, "cannot listen on {a}: address already in use"),
                Some(libc::EADDRNOTAVAIL) => {
                    write!(f, "cannot listen on {a}: no such address on this machine")
                }
                Some(libc::EACCES) => write!(
                    f,
                    "cannot listen on {a}: permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"
                ),
                _ => write!(f, "cannot listen on {a}: {}", describe(e)),
            },
            StartError::IoUring(e) => f.write_str(&io_uring_refusal(e)),
            StartError::Worker(e) => write!(f, "cannot start a worker: {}", describe(e)),
            StartError::Signals(e) => write!(f, "cannot set up signal handling: {}", describe(e)),
            StartError::Activation(e) => write!(f, "socket activation: {}", describe(e)),
        }
    }
}

/// `io::Error`'s Display without the "(os error N)" noise.
fn describe(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Names the likely cause when the kernel refuses io_uring.
fn io_uring_refusal(e: &io::Error) -> String {
    let sysctl =
        std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok().map(|s| s.trim().to_owned());
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES | libc::ENOSYS) if sysctl.as_deref().is_some_and(|v| v != "0") => {
            format!(
                "io_uring is disabled on this host (sysctl kernel.io_uring_disabled={}); enable it with: sysctl -w kernel.io_uring_disabled=0",
                sysctl.unwrap_or_default()
            )
        }
        Some(libc::EPERM | libc::ENOSYS) => format!(
            "io_uring is blocked ({}): a seccomp profile forbids io_uring_setup; Docker's default profile does — run the container with --security-opt seccomp=deploy/seccomp-io_uring.json",
            describe(e)
        ),
        Some(libc::ENOMEM) => format!(
            "cannot set up io_uring: out of locked memory ({}); raise it: ulimit -l, systemd LimitMEMLOCK=, docker --ulimit memlock=-1",
            memlock_limit()
        ),
        _ => format!(
            "cannot set up io_uring: {} (kernel 5.19+ with provided buffer rings is required)",
            describe(e)
        ),
    }
}

fn memlock_limit() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max locked memory"))
                .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_owned())
        })
        .map_or_else(|| "unknown".to_owned(), |soft| format!("RLIMIT_MEMLOCK soft limit {soft} bytes"))
}

/// Runs the server until it is stopped; returns the process exit code.
pub fn run(cfg: Config) -> Result<i32, StartError> {
    crate::log::set_level(cfg.log_level);
    install_panic_abort();
    let nofile = sys::raise_nofile_limit();
    let root = sys::open_dir(&cfg.document_root)
        .map_err(|e| StartError::DocumentRoot(cfg.document_root.clone(), e))?;
    if let Some(path) = &cfg.access_log {
        crate::access_log::open(path).map_err(|e| StartError::AccessLog(path.clone(), e))?;
    }
    let passed = sys::listen_fds().map_err(StartError::Activation)?;
    let activated = passed.is_some();
    let listeners = match passed {
        Some(sockets) => share_passed(sockets, cfg.workers).map_err(StartError::Activation)?,
        None => bind_listeners(cfg.addr, cfg.workers)?,
    };
    let bound = sys::local_addr(listeners[0].as_raw_fd()).map_err(|e| StartError::Listen(cfg.addr, e))?;
    let metrics_listener = match cfg.metrics {
        Some(addr) => Some(bind_listeners(addr, 1)?.remove(0)),
        None => None,
    };
    let metrics_bound = match &metrics_listener {
        Some(l) => Some(sys::local_addr(l.as_raw_fd()).map_err(|e| StartError::Listen(cfg.addr, e))?),
        None => None,
    };
    let signals = sys::handled_signals();
    sys::block_signals(&signals).map_err(StartError::Signals)?;
    let signal_fd = sys::signalfd(&signals).map_err(StartError::Signals)?;
    let done_fd = sys::eventfd().map_err(StartError::Signals)?;

    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared { access_log_path: cfg.access_log.clone(), ..Shared::default() });
    let (workers, features) =
        start_workers(&cfg, listeners, metrics_listener, Arc::new(root), &shared, &done_fd)?;
    let max_conns = cfg.max_connections * cfg.workers;
    if (max_conns as u64) > nofile {
        log_warn!(
            "--max-connections × workers = {max_conns} exceeds the descriptor limit {nofile}; accepts will pause at the limit"
        );
    }
    if let Some(addr) = metrics_bound {
        log_info!("metrics on http://{addr}/metrics");
    }
    let how = if activated { ", socket activation" } else { "" };
    log_info!(
        "listening on {bound} (workers: {}, io_uring: {}{how})",
        workers.handles.len(),
        features.join(",")
    );
    Ok(supervise(&signal_fd, &done_fd, workers, &shared))
}

/// A panic would leave a ring with operations pointing at memory the unwinding frees, and a
/// worker silently gone: abort the whole process instead, so its supervisor restarts it.
fn install_panic_abort() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let place = info.location().map_or_else(String::new, |l| format!(" at {l}"));
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
        let message = message.unwrap_or("(non-string payload)").replace('\n', " ");
        log_error!("fatal: panic{place}: {message}; aborting");
        std::process::abort();
    }));
}

/// Checks everything `run` would need, without serving: one message per problem.
pub fn check(cfg: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let root = sys::open_dir(&cfg.document_root)
        .map_err(|e| problems.push(StartError::DocumentRoot(cfg.document_root.clone(), e).to_string()))
        .ok();
    if let Some(path) = &cfg.access_log {
        if let Err(e) = crate::access_log::open(path) {
            problems.push(StartError::AccessLog(path.clone(), e).to_string());
        }
    }
    if let Some(root) = &root {
        let pages =
            cfg.error_pages.iter().map(|(code, page)| (format!("--error-page {code}={}", page.text), page));
        let fallback = cfg.fallback.iter().map(|page| (format!("--fallback {}", page.text), page));
        for (flag, page) in pages.chain(fallback) {
            if let Err(e) = sys::readable_file_beneath(root.as_raw_fd(), &page.file) {
                problems.push(format!(
                    "{flag}: not a readable file beneath the document root ({})",
                    describe(&e)
                ));
            }
        }
    }
    if let Err(e) = worker::probe_ring() {
        problems.push(StartError::IoUring(e).to_string());
    }
    match sys::listen_fds() {
        Ok(Some(_)) => {}
        Ok(None) => {
            if let Err(e) = bind_listeners(cfg.addr, 1) {
                problems.push(e.to_string());
            }
        }
        Err(e) => problems.push(StartError::Activation(e).to_string()),
    }
    if let Some(addr) = cfg.metrics {
        if let Err(e) = bind_listeners(addr, 1) {
            problems.push(format!("--metrics: {e}"));
        }
    }
    problems
}

/// Listening sockets passed by a service manager, spread over the workers: each worker gets
/// its own descriptor (a duplicate) of one of them, so every worker's ring accepts from a
/// passed socket, and there are at least as many workers as sockets.
fn share_passed(sockets: Vec<OwnedFd>, workers: usize) -> io::Result<Vec<OwnedFd>> {
    (0..workers.max(sockets.len())).map(|i| sys::dup(sockets[i % sockets.len()].as_raw_fd())).collect()
}

/// Binds one SO_REUSEPORT socket per worker; with port 0 the first picks the port for all.
fn bind_listeners(addr: SocketAddr, count: usize) -> Result<Vec<OwnedFd>, StartError> {
    let first = sys::reuseport_listener(addr, LISTEN_BACKLOG).map_err(|e| StartError::Listen(addr, e))?;
    let actual = sys::local_addr(first.as_raw_fd()).map_err(|e| StartError::Listen(addr, e))?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(
            sys::reuseport_listener(actual, LISTEN_BACKLOG).map_err(|e| StartError::Listen(actual, e))?,
        );
    }
    Ok(listeners)
}

struct Running {
    handles: Vec<JoinHandle<()>>,
    wakes: Vec<Arc<OwnedFd>>,
}

fn start_workers(
    cfg: &Arc<Config>,
    listeners: Vec<OwnedFd>,
    mut metrics_listener: Option<OwnedFd>,
    root: Arc<OwnedFd>,
    shared: &Arc<Shared>,
    done_fd: &OwnedFd,
) -> Result<(Running, Vec<&'static str>), StartError> {
    let metrics = Arc::new(crate::metrics::Metrics::new(listeners.len(), sys::unix_time()));
    let cores = if cfg.pin_workers { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
    let (ready_tx, ready_rx) = mpsc::channel();
    let listing_jobs = if cfg.autoindex {
        let threads = crate::listing::threads_for(listeners.len());
        Some(crate::listing::spawn(root.clone(), threads).map_err(StartError::Worker)?)
    } else {
        None
    };
    let mut running = Running { handles: Vec::new(), wakes: Vec::new() };
    for (index, listener) in listeners.into_iter().enumerate() {
        let wake = Arc::new(sys::eventfd().map_err(StartError::Worker)?);
        running.wakes.push(wake.clone());
        let setup = Setup {
            index,
            core: (!cores.is_empty()).then(|| cores[index % cores.len()]),
            listener,
            wake,
            root: root.clone(),
            cfg: cfg.clone(),
            shared: shared.clone(),
            listing_jobs: listing_jobs.clone(),
            // Worker 0 serves the metrics listener; every worker keeps its own counters.
            metrics_listener: metrics_listener.take(),
            metrics: metrics.clone(),
        };
        let done = done_fd.as_raw_fd();
        let ready = ready_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("ringhttpd-w{index}"))
            .spawn(move || worker_thread(setup, ready, done))
            .map_err(StartError::Worker)?;
        running.handles.push(handle);
    }
    drop(ready_tx);
    let mut features = Vec::new();
    for _ in 0..running.handles.len() {
        match ready_rx.recv() {
            Ok(Ok(f)) => features = f,
            Ok(Err(e)) => return Err(StartError::IoUring(e)),
            Err(_) => {
                return Err(StartError::Worker(io::Error::other("a worker exited during start-up")));
            }
        }
    }
    Ok((running, features))
}

fn worker_thread(setup: Setup, ready: mpsc::Sender<io::Result<Vec<&'static str>>>, done: i32) {
    let index = setup.index;
    match worker::prepare(setup) {
        Ok((run, features)) => {
            let _ = ready.send(Ok(features));
            if let Err(e) = run() {
                log_error!("worker {index}: io_uring failed: {}", describe(&e));
            }
        }
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
    sys::eventfd_signal(done);
}

/// Waits for signals and for workers to finish; returns the exit code.
fn supervise(signal_fd: &OwnedFd, done_fd: &OwnedFd, running: Running, shared: &Shared) -> i32 {
    let wake_all = || running.wakes.iter().for_each(|w| sys::eventfd_signal(w.as_raw_fd()));
    let mut finished = 0u64;
    let total = running.handles.len() as u64;
    while finished < total {
        let ready = match sys::poll_readable(&[signal_fd.as_raw_fd(), done_fd.as_raw_fd()]) {
            Ok(r) => r,
            Err(e) => {
                log_error!("poll failed: {e}");
                return 1;
            }
        };
        if ready[0] {
            match sys::read_signal(signal_fd.as_raw_fd()) {
                Ok(libc::SIGHUP | libc::SIGUSR1) => {
                    log_info!("reopening logs");
                    reopen_access_log(shared);
                    wake_all();
                }
                Ok(sig) if shared.stop.load(Ordering::Acquire) => {
                    log_info!("{}: second signal, exiting now", signal_name(sig));
                    return 1;
                }
                Ok(sig) => {
                    log_info!(
                        "stopping ({}): no new connections; finishing responses in flight",
                        signal_name(sig)
                    );
                    shared.stop.store(true, Ordering::Release);
                    wake_all();
                }
                Err(_) => {}
            }
        }
        if ready[1] {
            finished += sys::eventfd_wait(done_fd.as_raw_fd()).unwrap_or(0);
            if !shared.stop.load(Ordering::Acquire) && finished > 0 {
                log_error!("a worker stopped unexpectedly; exiting");
                return 1;
            }
        }
    }
    for handle in running.handles {
        let _ = handle.join();
    }
    log_info!("stopped");
    0
}

/// Opens the access log again here, off the workers' rings (an open may block on the disk),
/// and offers the new descriptor to every worker, which switches to it between writes.
fn reopen_access_log(shared: &Shared) {
    let Some(path) = &shared.access_log_path else { return };
    match crate::access_log::open(path) {
        Ok(fd) => {
            *shared.access_log_fd.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(Arc::new(fd));
            shared.reopen.fetch_add(1, Ordering::AcqRel);
        }
        Err(e) => log_error!("cannot reopen access log {}: {}", path.display(), describe(&e)),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGUSR1 => "SIGUSR1",
        _ => "signal",
    }
}
