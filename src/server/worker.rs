//! One worker thread (pinned to a core or placed by the scheduler, as `placement` decides): it
//! owns an io_uring ring, a SO_REUSEPORT listening socket and a slab of connections, and runs
//! the loop: submit and wait once, drain every completion, dispatch each to its owner.
//!
//! Worker-wide operations (multishot accept, the one-second timer, the wake-up eventfd, access
//! log writes) are handled here; everything per connection is in `conn`. A connection is removed
//! from the slab only when it has nothing in flight. This module must never block outside
//! `submit_and_wait`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::conn::{Conn, Followup};
use crate::files::cache::FileCache;
use crate::files::listing::Lister;
use crate::http::response;
use crate::kernel::buf_ring::RecvBuffers;
use crate::kernel::pipe_pool::PipePool;
use crate::kernel::ring::{Compat, Completion, Ring};
use crate::kernel::sys;
use crate::kernel::token::{Op, Token, WORKER_KEY};
use crate::ops::access_log::AccessLog;
use crate::ops::metrics::{CloseReason, Metrics, PauseReason};
use crate::server::config::Config;
use crate::server::context::{Ctx, TlsCtx};

const RING_ENTRIES: u32 = 1024;
const RECV_BUFFERS: RecvBuffers = RecvBuffers { count: 2048, size: 2048 };
const TICK: Duration = Duration::from_secs(1);
/// Pause before accepting again after the process ran out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(500);
/// Open connections on the `--metrics` listener, counted apart from `--max-connections`: a
/// few scrapers need no more, and the public port never waits for them.
const METRICS_MAX_CONNECTIONS: usize = 16;

/// State shared between the main thread and the workers.
#[derive(Default)]
pub struct Shared {
    /// A graceful stop was requested.
    pub stop: AtomicBool,
    /// Incremented when `access_log_fd` holds a newly opened access log for the workers.
    pub reopen: AtomicU64,
    /// The access log reopened by the main thread (SIGHUP/SIGUSR1), shared by all workers.
    pub access_log_fd: std::sync::Mutex<Option<Arc<OwnedFd>>>,
    pub access_log_path: Option<std::path::PathBuf>,
    /// The TLS configuration and certificates (SIGHUP reloads them), with HTTPS.
    pub tls: Option<Arc<crate::tls::config::Tls>>,
    /// The HTTPS listener's port, for redirects to it.
    pub https_port: Option<u16>,
}

/// Everything a worker is started with.
pub struct Setup {
    pub index: usize,
    pub core: Option<core_affinity::CoreId>,
    pub listener: OwnedFd,
    /// The HTTPS listener beside the plain one.
    pub tls_listener: Option<OwnedFd>,
    pub wake: Arc<OwnedFd>,
    pub root: Arc<OwnedFd>,
    pub cfg: Arc<Config>,
    pub shared: Arc<Shared>,
    /// The listing threads' queue, with `--autoindex`.
    pub listing_jobs: Option<std::sync::mpsc::SyncSender<crate::files::listing::Job>>,
    /// The `--metrics` listener, for the one worker that serves it.
    pub metrics_listener: Option<OwnedFd>,
    pub metrics: Arc<Metrics>,
}

/// Which listener a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The public listener: plain HTTP, or HTTPS with `--https-only`.
    Public,
    /// The HTTPS listener beside the plain one.
    Tls,
    /// The `--metrics` listener.
    Metrics,
}

/// What a worker's HTTPS connections share, with HTTPS.
fn tls_ctx(cfg: &Config, shared: &Shared) -> Option<TlsCtx> {
    let (https, tls) = (cfg.https.as_ref()?, shared.tls.as_ref()?);
    Some(TlsCtx {
        config: tls.config.clone(),
        kernel: https.ktls,
        hsts: https.hsts.map(|secs| format!("Strict-Transport-Security: max-age={secs}\r\n").into_bytes()),
        port: shared.https_port.unwrap_or(https.addr.port()),
    })
}

/// A listening socket and the multishot accept armed on it.
struct Listener {
    socket: Option<OwnedFd>,
    /// The multishot accept is armed (its final completion has not arrived).
    accepting: bool,
    /// The operation its completions come back as.
    op: Op,
}

impl Listener {
    fn new(socket: Option<OwnedFd>, op: Op) -> Listener {
        Listener { socket, accepting: false, op }
    }

    /// Arms the accept if it is not armed; true if it was armed now.
    fn arm(&mut self, ring: &mut Ring) -> bool {
        let Some(socket) = &self.socket else { return false };
        if self.accepting {
            return false;
        }
        self.accepting = true;
        ring.accept_multi(socket.as_raw_fd(), Token::worker(self.op));
        true
    }

    /// An accept completion arrived: the accept ended unless `more`; once stopping and ended,
    /// nothing holds the socket open any longer, and closing it stops the port accepting.
    fn completed(&mut self, more: bool, stopping: bool) {
        if !more {
            self.accepting = false;
        }
        if stopping && !self.accepting {
            self.socket = None;
        }
    }

    /// Cancels the armed accept (its final completion still arrives).
    fn cancel(&self, ring: &mut Ring) {
        // By user_data, not by descriptor: that works on every kernel, and the socket itself
        // (shared with other workers, or a successor) must never be shut down.
        if self.socket.is_some() && self.accepting {
            ring.cancel_op(Token::worker(self.op), Token::worker(Op::Cancel));
        }
    }

    /// Graceful stop: cancel the accept, or close the socket at once if none is armed.
    fn stop(&mut self, ring: &mut Ring) {
        if self.accepting { self.cancel(ring) } else { self.socket = None }
    }

    fn is_closed(&self) -> bool {
        self.socket.is_none()
    }
}

struct Worker {
    ctx: Ctx,
    conns: Slab<Conn>,
    listener: Listener,
    /// The HTTPS listener beside the plain one (with `--https-only`, `listener` is HTTPS).
    tls_listener: Listener,
    /// The `--metrics` listener (worker 0 only).
    metrics_listener: Listener,
    /// Connections in `conns` accepted on the metrics listener.
    metrics_conns: usize,
    /// The public listener serves HTTPS (`--https-only`).
    secure_public: bool,
    accept_paused_until: Option<Instant>,
    wake: Arc<OwnedFd>,
    shared: Arc<Shared>,
    reopen_seen: u64,
    next_generation: u32,
    stop_deadline: Option<Instant>,
    _root: Arc<OwnedFd>,
}

/// Sets up (and drops) a ring of the size workers use, to tell whether io_uring is usable.
pub fn probe_ring() -> std::io::Result<()> {
    Ring::new(RING_ENTRIES, RECV_BUFFERS, None, Compat::detect()).map(drop)
}

/// Builds the worker's ring (on this thread: the ring is single-issuer) and reports the
/// io_uring features in use, or why it could not.
pub fn prepare(
    setup: Setup,
) -> Result<(impl FnOnce() -> std::io::Result<()>, Vec<&'static str>), std::io::Error> {
    if let Some(core) = setup.core {
        core_affinity::set_for_current(core);
    }
    let ring = Ring::new(RING_ENTRIES, RECV_BUFFERS, setup.core.map(|c| c.id), Compat::detect())?;
    let features = ring.features().to_vec();
    let log = match &setup.cfg.access_log {
        Some(path) => Some(AccessLog::new(path.clone())?),
        None => None,
    };
    let unix_now = sys::unix_time();
    let tls = tls_ctx(&setup.cfg, &setup.shared);
    let secure_public = setup.cfg.https.as_ref().is_some_and(|h| h.only);
    let ctx = Ctx {
        ring,
        root: setup.root.as_raw_fd(),
        cfg: setup.cfg,
        cache: FileCache::default(),
        pipes: PipePool::default(),
        log,
        now: Instant::now(),
        unix_now,
        date_line: response::date_line(unix_now),
        stopping: false,
        head_buffers: Vec::new(),
        requests: Vec::new(),
        file_path: Vec::new(),
        lister: setup.listing_jobs.map(|jobs| Lister::new(jobs, setup.wake.clone())),
        metrics: setup.metrics.worker(setup.index),
        registry: setup.metrics,
        tls,
    };
    let reopen_seen = setup.shared.reopen.load(Ordering::Relaxed);
    let worker = Worker {
        ctx,
        conns: Slab::new(),
        listener: Listener::new(Some(setup.listener), Op::Accept),
        tls_listener: Listener::new(setup.tls_listener, Op::AcceptTls),
        metrics_listener: Listener::new(setup.metrics_listener, Op::AcceptMetrics),
        metrics_conns: 0,
        secure_public,
        accept_paused_until: None,
        wake: setup.wake,
        shared: setup.shared,
        reopen_seen,
        next_generation: 0,
        stop_deadline: None,
        _root: setup.root,
    };
    Ok((move || worker.run(), features))
}

impl Worker {
    fn run(mut self) -> std::io::Result<()> {
        self.arm_accept();
        self.arm_metrics_accept();
        self.ctx.ring.arm_timer(TICK, Token::worker(Op::Timer));
        self.ctx.ring.read_eventfd(self.wake.as_raw_fd(), Token::worker(Op::Wake));
        let mut completions = Vec::with_capacity(1024);
        let mut rearm_recv = Vec::new();
        while !self.finished() {
            self.ctx.ring.submit_and_wait()?;
            self.update_clock();
            self.ctx.ring.drain(&mut completions);
            for mut c in completions.drain(..) {
                if let Some(key) = self.dispatch(&mut c) {
                    rearm_recv.push(key);
                }
            }
            // After the whole batch, which returned its receive buffers to the ring.
            for key in rearm_recv.drain(..) {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.arm_recv(&mut self.ctx);
                }
            }
            if let Some(log) = &mut self.ctx.log {
                if log.wants_flush() {
                    log.flush(&mut self.ctx.ring);
                }
            }
        }
        // The timer and the wake-up read still point at memory the ring owns: cancel them and
        // wait for the cancellation (with the last closes) before the ring and that memory go.
        self.ctx.ring.quiesce(&[Token::worker(Op::Timer), Token::worker(Op::Wake)])?;
        if let Some(log) = &mut self.ctx.log {
            log.flush_blocking();
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        self.ctx.stopping
            && self.listener.is_closed()
            && self.tls_listener.is_closed()
            && self.metrics_listener.is_closed()
            && self.conns.is_empty()
            && self.ctx.log.as_ref().is_none_or(|l| l.is_quiet())
    }

    fn update_clock(&mut self) {
        self.ctx.now = Instant::now();
        let unix = sys::unix_time();
        if unix != self.ctx.unix_now {
            self.ctx.unix_now = unix;
            self.ctx.date_line = response::date_line(unix);
        }
    }

    /// Routes a completion to its owner; returns a connection whose receive must be re-armed
    /// after this batch.
    fn dispatch(&mut self, c: &mut Completion) -> Option<usize> {
        let token = Token::decode(c.user_data)?;
        if token.key == WORKER_KEY {
            self.on_worker_op(token.op, c);
            return None;
        }
        let key = token.key as usize;
        let Some(conn) = self.conns.get_mut(key).filter(|conn| conn.generation() == token.generation) else {
            // A completion for a connection already gone: only its receive buffer matters
            // (anything else it owned is released with the Completion).
            if let Some(bid) = c.buffer_id() {
                self.ctx.ring.recycle(bid);
            }
            return None;
        };
        let followup = conn.on_completion(token.op, c, &mut self.ctx);
        if conn.is_finished() {
            self.release(key);
            return None;
        }
        (followup == Followup::RearmRecvLater).then_some(key)
    }

    fn on_worker_op(&mut self, op: Op, c: &mut Completion) {
        match op {
            Op::Accept => self.on_accept(c, Side::Public),
            Op::AcceptTls => self.on_accept(c, Side::Tls),
            Op::AcceptMetrics => self.on_accept(c, Side::Metrics),
            Op::Timer => self.on_tick(),
            Op::Wake => self.on_wake(),
            Op::LogWrite => {
                if let (Some(log), Some(buf)) = (&mut self.ctx.log, c.take_buffer()) {
                    log.on_written(c.result, buf, &mut self.ctx.ring);
                }
            }
            _ => {}
        }
    }

    /// Frees a finished connection; the ring closes its socket with the next submission
    /// (unless it was closed already, right after its last response).
    /// Room was made on the connection's listener: its accept is armed again if it was paused.
    fn release(&mut self, key: usize) {
        let conn = self.conns.remove(key);
        let (reason, serves_metrics) = (conn.close_reason(), conn.serves_metrics());
        // A socket closed right behind its last response was counted then.
        if let Some(socket) = conn.into_socket() {
            self.ctx.metrics.closed(reason);
            self.ctx.ring.close(socket, Token::worker(Op::Close));
        }
        if serves_metrics {
            self.metrics_conns -= 1;
            self.arm_metrics_accept();
        } else {
            self.arm_accept();
        }
    }

    /// Open connections that count against `--max-connections`.
    fn public_conns(&self) -> usize {
        self.conns.len() - self.metrics_conns
    }

    // ---- accepting ----

    fn arm_accept(&mut self) {
        let paused = self.accept_paused_until.is_some_and(|t| t > self.ctx.now);
        if self.ctx.stopping || paused || self.public_conns() >= self.ctx.cfg.max_connections {
            return;
        }
        let armed = self.listener.arm(&mut self.ctx.ring);
        if self.tls_listener.arm(&mut self.ctx.ring) || armed {
            self.accept_paused_until = None;
        }
    }

    /// Worker 0's accept on the `--metrics` listener, below its own connection limit.
    fn arm_metrics_accept(&mut self) {
        if !self.ctx.stopping && self.metrics_conns < METRICS_MAX_CONNECTIONS {
            self.metrics_listener.arm(&mut self.ctx.ring);
        }
    }

    fn on_accept(&mut self, c: &mut Completion, side: Side) {
        let listener = match side {
            Side::Public => &mut self.listener,
            Side::Tls => &mut self.tls_listener,
            Side::Metrics => &mut self.metrics_listener,
        };
        listener.completed(c.more(), self.ctx.stopping);
        match c.take_fd() {
            Some(socket) => self.add_conn(socket, side),
            None => self.on_accept_error(-c.result),
        }
        if side == Side::Metrics { self.arm_metrics_accept() } else { self.arm_accept() }
    }

    fn on_accept_error(&mut self, errno: i32) {
        match errno {
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                self.ctx.metrics.accept_paused(PauseReason::Emfile);
                crate::log_warn!(
                    "accept: {}; pausing accepts for {:?}",
                    std::io::Error::from_raw_os_error(errno),
                    ACCEPT_BACKOFF
                );
                self.accept_paused_until = Some(self.ctx.now + ACCEPT_BACKOFF);
            }
            libc::ECANCELED | libc::ECONNABORTED | libc::EINTR | libc::EAGAIN => {}
            _ => crate::log_warn!("accept: {}", std::io::Error::from_raw_os_error(errno)),
        }
    }

    /// Starts serving an accepted connection. One accepted while stopping (before the accept's
    /// cancellation took effect) is served too: dropping it would reset a client whose request
    /// is already on its way.
    fn add_conn(&mut self, socket: OwnedFd, side: Side) {
        self.ctx.metrics.accepted();
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.next_generation = Token::next_generation(self.next_generation);
        let serves_metrics = side == Side::Metrics;
        let secure = side == Side::Tls || (side == Side::Public && self.secure_public);
        let conn =
            entry.insert(Conn::new(socket, key, self.next_generation, serves_metrics, secure, &mut self.ctx));
        conn.arm_recv(&mut self.ctx);
        if self.ctx.stopping {
            conn.on_stop(&mut self.ctx);
        }
        // At a limit: stop that listener's multishot accept; it is re-armed when one of its
        // connections closes.
        if serves_metrics {
            self.metrics_conns += 1;
            if self.metrics_conns >= METRICS_MAX_CONNECTIONS && self.metrics_listener.accepting {
                self.metrics_listener.cancel(&mut self.ctx.ring);
            }
        } else if self.public_conns() >= self.ctx.cfg.max_connections
            && (self.listener.accepting || self.tls_listener.accepting)
        {
            self.ctx.metrics.accept_paused(PauseReason::MaxConnections);
            self.listener.cancel(&mut self.ctx.ring);
            self.tls_listener.cancel(&mut self.ctx.ring);
        }
    }

    // ---- timer, wake-ups, stopping ----

    fn on_tick(&mut self) {
        let now = self.ctx.now;
        let force = self.stop_deadline.is_some_and(|d| now >= d);
        let mut finished = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            if force {
                conn.abort_for(CloseReason::Shutdown, &mut self.ctx);
            } else if conn.deadline <= now {
                conn.on_timeout(&mut self.ctx);
            }
            if conn.is_finished() {
                finished.push(key);
            }
        }
        for key in finished {
            self.release(key);
        }
        self.ctx.cache.drop_idle(now);
        if let Some(lister) = &mut self.ctx.lister {
            lister.drop_stale(now);
        }
        if let Some(log) = &mut self.ctx.log {
            log.flush(&mut self.ctx.ring);
        }
        self.arm_accept();
        self.ctx.ring.arm_timer(TICK, Token::worker(Op::Timer));
    }

    fn on_wake(&mut self) {
        let reopen = self.shared.reopen.load(Ordering::Acquire);
        if reopen != self.reopen_seen {
            self.reopen_seen = reopen;
            let fd =
                self.shared.access_log_fd.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            if let (Some(log), Some(fd)) = (&mut self.ctx.log, fd) {
                log.switch_to(fd);
                log.flush(&mut self.ctx.ring);
            }
        }
        self.deliver_listings();
        if self.shared.stop.load(Ordering::Acquire) && !self.ctx.stopping {
            self.begin_stop();
        }
        self.ctx.ring.read_eventfd(self.wake.as_raw_fd(), Token::worker(Op::Wake));
    }

    /// Hands finished directory listings to the connections still waiting for them.
    fn deliver_listings(&mut self) {
        let Some(lister) = &mut self.ctx.lister else { return };
        for (listing, conns) in lister.finished() {
            for (key, generation) in conns {
                let Some(conn) = self.conns.get_mut(key).filter(|c| c.generation() == generation) else {
                    continue;
                };
                conn.on_listing(&listing, &mut self.ctx);
                if conn.is_finished() {
                    self.release(key);
                }
            }
        }
    }

    /// Stop accepting now; close idle connections; busy ones close after their response.
    fn begin_stop(&mut self) {
        self.ctx.stopping = true;
        self.stop_deadline = Some(self.ctx.now + self.ctx.cfg.shutdown_timeout);
        self.listener.stop(&mut self.ctx.ring);
        self.tls_listener.stop(&mut self.ctx.ring);
        self.metrics_listener.stop(&mut self.ctx.ring);
        let mut finished = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            conn.on_stop(&mut self.ctx);
            if conn.is_finished() {
                finished.push(key);
            }
        }
        for key in finished {
            self.release(key);
        }
    }
}
