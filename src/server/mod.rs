//! Start-up and lifecycle: validate the environment, bind one listening socket per worker, start
//! the workers, then turn signals into worker wake-ups until every worker has stopped.
//!
//! Every start-up failure becomes one `StartError` line before any worker serves a request.
//! Signals are blocked in all threads and read here from a signalfd; workers learn of them
//! through their own eventfd, which their ring is reading. SIGUSR2 starts a successor that
//! inherits the listening sockets (`handover`); this process stops once the successor serves.

pub mod config;
pub(crate) mod context;
mod handover;
mod listeners;
pub mod placement;
mod start_error;
pub(crate) mod worker;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::kernel::sys;
use crate::tls::config::Tls;
use crate::{log_error, log_info, log_warn};
use config::Config;
use handover::Handover;
use listeners::{Sockets, open_sockets, overlaps};
use placement::Decision;
pub use start_error::StartError;
use start_error::describe;
use worker::{Setup, Shared};

/// Runs the server until it is stopped; returns the process exit code.
pub fn run(cfg: Config) -> Result<i32, StartError> {
    crate::ops::log::set_level(cfg.log_level);
    install_panic_abort();
    if let Some(version) = sys::kernel_version().filter(|v| *v < start_error::MIN_KERNEL) {
        return Err(StartError::OldKernel(version));
    }
    // Before anything opens a descriptor, which could take the number of an inherited one.
    let mut inherited = handover::inherited().map_err(StartError::Inherited)?;
    sys::close_on_exec_above_stdio();
    let nofile = sys::raise_nofile_limit();
    let root = sys::open_dir(&cfg.document_root)
        .map_err(|e| StartError::DocumentRoot(cfg.document_root.clone(), e))?;
    if let Some(path) = &cfg.access_log {
        crate::ops::access_log::open(path).map_err(|e| StartError::AccessLog(path.clone(), e))?;
    }
    let tls = cfg.https.as_ref().map(|h| Tls::new(h.pairs.clone())).transpose().map_err(StartError::Tls)?;
    let Sockets { listeners, tls_listeners, metrics_listener, handover, passed: activated } =
        open_sockets(&cfg, inherited.as_mut())?;
    let bound = sys::local_addr(listeners[0].as_raw_fd()).map_err(|e| StartError::Listen(cfg.addr, e))?;
    let tls_bound = match (&cfg.https, tls_listeners.first()) {
        (Some(https), Some(l)) => {
            Some(sys::local_addr(l.as_raw_fd()).map_err(|e| StartError::Listen(https.addr, e))?)
        }
        (Some(_), None) => Some(bound),
        (None, _) => None,
    };
    let metrics_bound = match (&metrics_listener, cfg.metrics) {
        (Some(l), Some(addr)) => Some(
            sys::local_addr(l.as_raw_fd())
                .map_err(|e| StartError::Metrics(Box::new(StartError::Listen(addr, e))))?,
        ),
        _ => None,
    };
    let signals = sys::handled_signals();
    sys::block_signals(&signals).map_err(StartError::Signals)?;
    let signal_fd = sys::signalfd(&signals).map_err(StartError::Signals)?;
    let done_fd = sys::eventfd().map_err(StartError::Signals)?;

    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared {
        access_log_path: cfg.access_log.clone(),
        tls: tls.map(Arc::new),
        https_port: tls_bound.map(|a| a.port()),
        ..Shared::default()
    });
    let placement =
        placement::decide(cfg.placement, listeners.len(), placement::allowed_cpus(), sys::online_cpus());
    let (workers, features) = start_workers(
        &cfg,
        &placement,
        listeners,
        tls_listeners,
        metrics_listener,
        Arc::new(root),
        &shared,
        &done_fd,
    )?;
    let max_conns = cfg.max_connections * cfg.workers;
    if (max_conns as u64) > nofile {
        log_warn!(
            "--max-connections × workers = {max_conns} exceeds the descriptor limit {nofile}; accepts will pause at the limit"
        );
    }
    if let Some(addr) = metrics_bound {
        log_info!("metrics on http://{addr}/metrics");
    }
    let how = match &inherited {
        Some(from) => format!(", sockets inherited from pid {}", from.from),
        None if activated => ", socket activation".to_owned(),
        None => String::new(),
    };
    let listening = match tls_bound {
        Some(tls) if tls == bound => format!("https://{tls}"),
        Some(tls) => format!("{bound} and https://{tls}"),
        None => bound.to_string(),
    };
    log_info!(
        "listening on {listening} (workers: {}, io_uring: {}{how}), placement: {placement}",
        workers.handles.len(),
        features.join(",")
    );
    if let Some(from) = inherited {
        from.report_ready();
    }
    Ok(supervise(&signal_fd, &done_fd, workers, &shared, handover))
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
        if let Err(e) = crate::ops::access_log::open(path) {
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
    if let Some(version) = sys::kernel_version().filter(|v| *v < start_error::MIN_KERNEL) {
        problems.push(StartError::OldKernel(version).to_string());
    }
    if let Some(https) = &cfg.https {
        if let Err(e) = Tls::new(https.pairs.clone()) {
            problems.push(StartError::Tls(e).to_string());
        }
    }
    if let Err(e) = worker::probe_ring() {
        problems.push(StartError::IoUring(e).to_string());
    }
    // Bound only, never listening: a check must not join (and then reset connections from)
    // the listening group of a server already running on the same port.
    let (public, probe) = match sys::listen_fds() {
        Ok(Some(passed)) => (sys::local_addr(passed[0].as_raw_fd()).ok(), None),
        Ok(None) => match sys::probe_listen_addr(cfg.public_addr()) {
            Ok(socket) => (Some(cfg.public_addr()), Some(socket)),
            Err(e) => {
                problems.push(StartError::Listen(cfg.public_addr(), e).to_string());
                (None, None)
            }
        },
        Err(e) => {
            problems.push(StartError::Activation(e).to_string());
            (None, None)
        }
    };
    let tls_probe = match &cfg.https {
        Some(https) if !https.only => match public.filter(|p| overlaps(https.addr, *p)) {
            Some(public) => {
                problems.push(StartError::TlsOverlap { tls: https.addr, public }.to_string());
                None
            }
            None => sys::probe_listen_addr(https.addr)
                .map_err(|e| problems.push(StartError::Listen(https.addr, e).to_string()))
                .ok(),
        },
        _ => None,
    };
    crate::testing::hooks::hold_check();
    drop(probe);
    drop(tls_probe);
    if let Some(metrics) = cfg.metrics {
        let tls = cfg.https.as_ref().filter(|h| !h.only).map(|h| h.addr);
        let error = match public.into_iter().chain(tls).find(|p| overlaps(metrics, *p)) {
            Some(public) => Some(StartError::MetricsOverlap { metrics, public }),
            None => sys::probe_listen_addr(metrics)
                .err()
                .map(|e| StartError::Metrics(Box::new(StartError::Listen(metrics, e)))),
        };
        problems.extend(error.map(|e| e.to_string()));
    }
    problems
}

struct Running {
    handles: Vec<JoinHandle<()>>,
    wakes: Vec<Arc<OwnedFd>>,
}

#[allow(clippy::too_many_arguments)]
fn start_workers(
    cfg: &Arc<Config>,
    placement: &Decision,
    listeners: Vec<OwnedFd>,
    tls_listeners: Vec<OwnedFd>,
    mut metrics_listener: Option<OwnedFd>,
    root: Arc<OwnedFd>,
    shared: &Arc<Shared>,
    done_fd: &OwnedFd,
) -> Result<(Running, Vec<&'static str>), StartError> {
    let metrics = Arc::new(crate::ops::metrics::Metrics::new(listeners.len(), sys::unix_time()));
    let (ready_tx, ready_rx) = mpsc::channel();
    // No worker accepts before every worker is ready: a start-up that fails half-way then
    // exits without having taken (and so reset) a connection from shared or inherited sockets.
    let go = Arc::new(std::sync::Barrier::new(listeners.len() + 1));
    let listing_jobs = if cfg.autoindex {
        let threads = crate::files::listing::threads_for(listeners.len());
        Some(crate::files::listing::spawn(root.clone(), threads).map_err(StartError::Worker)?)
    } else {
        None
    };
    let mut running = Running { handles: Vec::new(), wakes: Vec::new() };
    let mut tls_listeners = tls_listeners.into_iter();
    for (index, listener) in listeners.into_iter().enumerate() {
        let wake = Arc::new(sys::eventfd().map_err(StartError::Worker)?);
        running.wakes.push(wake.clone());
        let setup = Setup {
            index,
            core: placement.core_for(index),
            listener,
            tls_listener: tls_listeners.next(),
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
        let (ready, go) = (ready_tx.clone(), go.clone());
        let handle = std::thread::Builder::new()
            .name(format!("ringhttpd-w{index}"))
            .spawn(move || worker_thread(setup, ready, &go, done))
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
    go.wait();
    Ok((running, features))
}

/// Prepares a worker, reports how, and once every worker is ready (`go`) runs it. A worker
/// whose preparation failed never reaches `go`; the process then exits without serving.
fn worker_thread(
    setup: Setup,
    ready: mpsc::Sender<io::Result<Vec<&'static str>>>,
    go: &std::sync::Barrier,
    done: i32,
) {
    let index = setup.index;
    match worker::prepare(setup) {
        Ok((run, features)) => {
            let _ = ready.send(Ok(features));
            go.wait();
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

/// Waits for signals, for a successor's readiness and for workers to finish; returns the exit
/// code.
fn supervise(
    signal_fd: &OwnedFd,
    done_fd: &OwnedFd,
    running: Running,
    shared: &Shared,
    mut handover: Handover,
) -> i32 {
    let wake_all = || running.wakes.iter().for_each(|w| sys::eventfd_signal(w.as_raw_fd()));
    let stop = |why: &str, handover: &mut Handover| {
        log_info!("stopping ({why}): no new connections; finishing responses in flight");
        // Unless a successor holds them, the sockets close (and the port refuses) as soon as
        // the workers have closed theirs too.
        handover.close_sockets();
        shared.stop.store(true, Ordering::Release);
        wake_all();
    };
    let mut finished = 0u64;
    let total = running.handles.len() as u64;
    while finished < total {
        let mut fds = vec![signal_fd.as_raw_fd(), done_fd.as_raw_fd()];
        fds.extend(handover.waiting_on());
        let ready = match sys::poll_readable(&fds, handover.time_left()) {
            Ok(r) => r,
            Err(e) => {
                log_error!("poll failed: {e}");
                return 1;
            }
        };
        let stopping = shared.stop.load(Ordering::Acquire);
        if ready[0] {
            match sys::read_signal(signal_fd.as_raw_fd()) {
                Ok(sig @ (libc::SIGHUP | libc::SIGUSR1)) => {
                    log_info!("reopening logs");
                    reopen_access_log(shared);
                    if sig == libc::SIGHUP {
                        reload_certificates(shared);
                    }
                    wake_all();
                }
                Ok(libc::SIGUSR2) if stopping => log_info!("SIGUSR2 ignored: already stopping"),
                Ok(libc::SIGUSR2) => handover.start(),
                Ok(sig) if stopping => {
                    log_info!("{}: second signal, exiting now", signal_name(sig));
                    return 1;
                }
                Ok(sig) => stop(signal_name(sig), &mut handover),
                Err(_) => {}
            }
        }
        // Only once the successor serves do this process's sockets stop accepting.
        if let Some(pid) = handover.check() {
            if !shared.stop.load(Ordering::Acquire) {
                stop(&format!("handed over to pid {pid}"), &mut handover);
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

/// Reads the certificates and keys again (SIGHUP): new handshakes get them, established
/// connections keep what they negotiated; a pair that fails to load keeps the old ones.
fn reload_certificates(shared: &Shared) {
    let Some(tls) = &shared.tls else { return };
    match tls.reload() {
        Ok(()) => log_info!("certificates reloaded ({} pairs)", tls.pairs.len()),
        Err(e) => log_error!("certificate reload failed, keeping the previous ones: {e}"),
    }
}

/// Opens the access log again here, off the workers' rings (an open may block on the disk),
/// and offers the new descriptor to every worker, which switches to it between writes.
fn reopen_access_log(shared: &Shared) {
    let Some(path) = &shared.access_log_path else { return };
    match crate::ops::access_log::open(path) {
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
        libc::SIGUSR2 => "SIGUSR2",
        _ => "signal",
    }
}
