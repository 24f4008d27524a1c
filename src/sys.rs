//! Thin, safe wrappers over the few plain syscalls the server makes outside the ring: listening
//! sockets, pipes, eventfds, the document-root descriptor, signal masks and resource limits.
//!
//! Every raw fd becomes an `OwnedFd` the moment the kernel returns it, so nothing here can leak a
//! descriptor. This module must never block on the network or the disk: it runs at start-up, or
//! on the hot path only for calls that complete immediately (shutdown, getpeername, close).

use std::ffi::CString;
use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// Converts a libc return value into `io::Result`, reading `errno` on -1.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// Wraps a freshly returned descriptor so it is closed exactly once.
fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(fd)?;
    // SAFETY: `fd` was just returned by the kernel, is valid, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the pointer and length describe a live `c_int` for the duration of the call.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zeroes is a valid (unspecified) address.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((storage as *const _ as *const libc::sockaddr_in).cast()) };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((storage as *const _ as *const libc::sockaddr_in6).cast()) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

/// Opens a listening TCP socket with SO_REUSEPORT set before `bind`, so every worker can bind its
/// own socket to the same address and get its own accept queue.
pub fn reuseport_listener(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain syscall with constant arguments.
    let fd = owned(unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    let raw = fd.as_raw_fd();
    set_int_opt(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    set_int_opt(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    // Accepted sockets inherit this: responses are written whole, never worth delaying.
    set_int_opt(raw, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    // Hand a connection over only once its first bytes arrived (as nginx's `deferred`): the
    // first receive then completes at once instead of waiting for another wake-up. A client
    // that stays silent is handed over after about a second, and the header timeout applies.
    set_int_opt(raw, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, 1)?;
    if addr.is_ipv6() {
        // Dual-stack where the address is "::", as most servers do.
        set_int_opt(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0)?;
    }
    let (storage, len) = to_sockaddr(&addr);
    // SAFETY: storage/len describe a valid sockaddr that outlives the call.
    cvt(unsafe { libc::bind(raw, (&storage as *const libc::sockaddr_storage).cast(), len) })?;
    // SAFETY: plain syscall on a descriptor we own.
    cvt(unsafe { libc::listen(raw, backlog) })?;
    Ok(fd)
}

/// Listening sockets passed by a service manager (the sd_listen_fds protocol): descriptors
/// 3 .. 3+LISTEN_FDS when LISTEN_PID names this process. `None` when nothing was passed;
/// an error when something was passed that is not a listening TCP socket.
pub fn listen_fds() -> io::Result<Option<Vec<OwnedFd>>> {
    let pid = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok());
    let count = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<i32>().ok());
    let (Some(pid), Some(count)) = (pid, count) else { return Ok(None) };
    if pid != std::process::id() || count <= 0 {
        return Ok(None);
    }
    (3..3 + count)
        .map(|fd| {
            let mut listening: libc::c_int = 0;
            let mut len = size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: SO_ACCEPTCONN writes one c_int into the live local, `len` is its size.
            let ret = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_ACCEPTCONN,
                    (&mut listening as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            if ret != 0 || listening == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("descriptor {fd} passed in LISTEN_FDS is not a listening socket"),
                ));
            }
            // SAFETY: the service manager handed this descriptor to this process (LISTEN_PID
            // is ours) and nothing else in the process claims it; it is adopted exactly once.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: plain fcntl on the descriptor just adopted.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            Ok(owned)
        })
        .collect::<io::Result<Vec<_>>>()
        .map(Some)
}

/// Whether `path` beneath `root` is a regular file this process can open for reading.
pub fn readable_file_beneath(root: RawFd, path: &[u8]) -> io::Result<()> {
    let file = std::fs::File::from(open_beneath(root, path, libc::O_RDONLY)?);
    if file.metadata()?.is_file() { Ok(()) } else { Err(io::Error::from_raw_os_error(libc::EISDIR)) }
}

/// The address a socket is bound to (resolves port 0 to the port the kernel picked).
pub fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: zeroed sockaddr_storage is valid; the kernel writes at most `len` bytes.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: pointers refer to live locals sized as `len` says.
    cvt(unsafe { libc::getsockname(fd, (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len) })?;
    from_sockaddr(&storage).ok_or_else(|| io::Error::other("unknown address family"))
}

/// The peer of a connected socket; `None` if it has already gone.
pub fn peer_ip(fd: RawFd) -> Option<IpAddr> {
    // SAFETY: as in `local_addr`.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: pointers refer to live locals sized as `len` says.
    let ret =
        unsafe { libc::getpeername(fd, (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len) };
    if ret == -1 {
        return None;
    }
    from_sockaddr(&storage).map(|a| a.ip())
}

/// Bytes queued on a socket that the peer has not acknowledged yet (SIOCOUTQ).
pub fn unacked_bytes(fd: RawFd) -> Option<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one c_int through the pointer, which refers to a live local.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    (ret == 0).then_some(n as u32)
}

/// 64 random bits from the kernel (for multipart boundaries; never blocks once the pool is
/// initialised, which it is long before a server takes requests).
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the live local array.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // Unreachable in practice; a boundary only has to be absent from the parts' bytes,
        // and the clock still makes it unlikely to collide.
        return unix_time() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    }
    u64::from_ne_bytes(bytes)
}

/// Sends as much of `parts` (in order) as the socket takes now, without waiting: the bytes
/// sent, or `WouldBlock` when it takes none. For the last bytes before a `close`: `MSG_MORE`
/// keeps their final partial segment queued, so the close's FIN rides on it (one packet, and
/// one acknowledgement, fewer per connection). When the socket takes only part, the caller
/// hands the rest to the ring's send without `MSG_MORE`, which pushes everything out.
pub fn send_before_close(fd: RawFd, parts: [&[u8]; 2]) -> io::Result<usize> {
    let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 2];
    let mut n = 0;
    for part in parts.iter().filter(|p| !p.is_empty()) {
        iov[n] = libc::iovec { iov_base: part.as_ptr() as *mut libc::c_void, iov_len: part.len() };
        n += 1;
    }
    // SAFETY: msghdr is plain old data; all-zeroes is an empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = n;
    // SAFETY: the iovecs point into `parts`, live for the whole (synchronous) call, and the
    // kernel only reads them.
    let sent = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | libc::MSG_MORE) };
    if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(sent as usize) }
}

/// `cachestat(2)` (Linux 6.5): the same number on every architecture, as syscalls added since
/// 5.1 share one table.
const SYS_CACHESTAT: libc::c_long = 451;

#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// `cachestat(2)` of `file`'s bytes `off..off + len`, or the error it gives.
fn cachestat(file: RawFd, off: u64, len: u64) -> io::Result<Cachestat> {
    let range = CachestatRange { off, len };
    let mut stat = Cachestat::default();
    // SAFETY: both pointers refer to live locals of the layouts the syscall reads and writes.
    let ret = unsafe { libc::syscall(SYS_CACHESTAT, file, &range, &mut stat, 0) };
    if ret != 0 { Err(io::Error::last_os_error()) } else { Ok(stat) }
}

/// Whether the kernel has `cachestat` (Linux 6.5+), asked once per process with a descriptor
/// that cannot be open (EBADF if the call exists, ENOSYS if not). `RINGHTTPD_TEST_CACHESTAT_MISSING`
/// (debug builds, `crate::test_hooks`) makes a kernel that has it look like one that has not.
fn has_cachestat() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        !crate::test_hooks::cachestat_missing()
            && cachestat(-1, 0, 1).err().and_then(|e| e.raw_os_error()) != Some(libc::ENOSYS)
    })
}

/// The page-cache check `pages_cached` uses, as named in the start-up line: `cachestat`, or
/// `nowait-probe` (one-byte `RWF_NOWAIT` reads) on kernels before 6.5.
pub fn page_cache_check() -> &'static str {
    if has_cachestat() { "cachestat" } else { "nowait-probe" }
}

/// Whether every page of `file`'s bytes `offset..offset + len` is in the page cache, so that
/// reading them cannot wait for the disk. With `cachestat` (Linux 6.5+) the kernel counts the
/// pages. Without it, and where it is denied (since about 6.14, for files this process may not
/// write: the usual case for a server running as its own user over a read-only site), the
/// first, middle and last byte are probed instead (`bytes_cached`).
pub fn pages_cached(file: RawFd, offset: u64, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    let probes = [offset, offset + len / 2, offset + len - 1];
    if !has_cachestat() || crate::test_hooks::cachestat_denied() {
        return bytes_cached(file, probes);
    }
    let stat = match cachestat(file, offset, len) {
        Ok(stat) => stat,
        Err(e) => {
            return match e.raw_os_error() {
                // ENOSYS here: a seccomp filter that answers for the call only on real files.
                Some(libc::EPERM | libc::ENOSYS) => bytes_cached(file, probes),
                _ => false,
            };
        }
    };
    // SAFETY: sysconf has no memory arguments.
    let page = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(4096) as u64;
    // Pages the range touches.
    let pages = (offset + len).div_ceil(page) - offset / page;
    stat.nr_cache >= pages
}

/// Whether the bytes of `file` at `offsets` are in the page cache: one-byte reads that may not
/// wait for the disk (`RWF_NOWAIT`), which a reader of the file may always make. A miss also
/// starts readahead there. Pages between the probes are not seen: a hole among them makes one
/// later `sendfile` wait for the disk (as every read of nginx or lighttpd may), where readahead
/// brings a served file in whole, so holes are rare.
fn bytes_cached(file: RawFd, offsets: [u64; 3]) -> bool {
    offsets.iter().all(|&at| {
        let mut byte = 0u8;
        let iov = libc::iovec { iov_base: (&mut byte as *mut u8).cast(), iov_len: 1 };
        // SAFETY: the iovec points at a live local byte, written during this synchronous call.
        let n = unsafe { libc::preadv2(file, &iov, 1, at as libc::off_t, libc::RWF_NOWAIT) };
        n == 1
    })
}

/// Shuts down the sending side of a socket: our FIN, queued behind the bytes already sent.
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: a plain syscall without memory arguments.
    if unsafe { libc::shutdown(fd, libc::SHUT_WR) } < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `sendfile` of up to `len` bytes of `file` from `offset` into a non-blocking socket: the
/// bytes sent (0 at the end of the file), or `WouldBlock` when the socket is full.
pub fn sendfile_now(socket: RawFd, file: RawFd, offset: u64, len: usize) -> io::Result<usize> {
    let mut off = offset as libc::off_t;
    // SAFETY: `off` is a live local the kernel updates; no other memory is involved.
    let sent = unsafe { libc::sendfile(socket, file, &mut off, len) };
    if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(sent as usize) }
}

/// A pipe used to splice file pages into a socket. Both ends are non-blocking so that a full
/// socket makes the pipe-to-socket splice return EAGAIN instead of parking a kernel thread.
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
    pub capacity: usize,
}

impl Pipe {
    pub fn new(wanted: usize) -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: plain fcntl on a descriptor we own. Failure (per-user pipe limits) keeps the default.
        let size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, wanted as libc::c_int) };
        let capacity = if size > 0 {
            size as usize
        } else {
            // SAFETY: as above.
            (unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) }).max(4096) as usize
        };
        Ok(Pipe { read, write, capacity })
    }
}

/// An eventfd used to wake a worker's ring from another thread.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments.
    owned(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })
}

/// Adds one to an eventfd; a full counter still wakes the reader, so errors are irrelevant.
pub fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// Blocks until the eventfd is non-zero and returns (and clears) its counter.
pub fn eventfd_wait(fd: RawFd) -> io::Result<u64> {
    let mut value: u64 = 0;
    loop {
        // SAFETY: reads 8 bytes into a live u64.
        let n = unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) };
        if n == 8 {
            return Ok(value);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Opens the document root as a directory descriptor that every file open is relative to.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let fd = owned(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
    // The directory must be listable/searchable by us, or every request would fail.
    // SAFETY: `c` as above.
    cvt(unsafe { libc::access(c.as_ptr(), libc::R_OK | libc::X_OK) })?;
    Ok(fd)
}

/// Opens the directory `path` (relative, decoded; empty for the root itself) beneath `root`.
pub fn open_dir_beneath(root: RawFd, path: &[u8]) -> io::Result<OwnedFd> {
    let path = if path.is_empty() { b".".as_slice() } else { path };
    open_beneath(root, path, libc::O_RDONLY | libc::O_DIRECTORY)
}

/// `openat2` of `path` beneath `root` with `flags` (plus close-on-exec and non-blocking),
/// refusing any resolution that would leave the root, as the ring's opens do.
fn open_beneath(root: RawFd, path: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain old data; all-zeroes is a valid (empty) value.
    let mut how: libc::open_how = unsafe { mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `c` and `how` are live for the call, and the size passed is `how`'s exact size.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root,
            c.as_ptr(),
            &how as *const libc::open_how,
            size_of::<libc::open_how>(),
        )
    };
    owned(ret as libc::c_int)
}

/// The signals the server handles; they are blocked in every thread and read by `wait_signal`.
pub fn handled_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Blocks the handled signals in the calling thread (threads spawned later inherit the mask).
pub fn block_signals(set: &libc::sigset_t) -> io::Result<()> {
    // SAFETY: `set` is a valid, initialised sigset_t.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, set, std::ptr::null_mut()) };
    if ret != 0 { Err(io::Error::from_raw_os_error(ret)) } else { Ok(()) }
}

/// A signalfd for the handled signals, so the main thread can poll it beside other fds.
pub fn signalfd(set: &libc::sigset_t) -> io::Result<OwnedFd> {
    // SAFETY: `set` is valid; -1 asks for a new descriptor.
    owned(unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC) })
}

/// Reads one pending signal number from a signalfd.
pub fn read_signal(fd: RawFd) -> io::Result<i32> {
    // SAFETY: signalfd_siginfo is plain old data.
    let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
    let size = mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: reads at most `size` bytes into a live struct of that size.
    let n = unsafe { libc::read(fd, (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
    if n as usize != size {
        return Err(io::Error::last_os_error());
    }
    Ok(info.ssi_signo as i32)
}

/// Waits until one of `fds` is readable; returns their readiness as booleans.
pub fn poll_readable(fds: &[RawFd]) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    loop {
        // SAFETY: `pfds` is a live array of `pfds.len()` pollfd structs.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
        if n >= 0 {
            return Ok(pfds.iter().map(|p| p.revents != 0).collect());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit: every connection and cached file is an fd.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: rlimit is plain old data, filled by the kernel.
    let mut lim: libc::rlimit = unsafe { mem::zeroed() };
    // SAFETY: pointer to a live rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: pointer to a live rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return lim.rlim_max;
        }
    }
    lim.rlim_cur
}

/// Opens (creating, appending) a log file.
pub fn open_append(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    owned(unsafe {
        libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC, 0o644)
    })
}

/// Duplicates a descriptor (used to give each worker its own handle on stdout).
pub fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is a new descriptor we own.
    owned(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })
}

/// Writes all of `buf` to `fd`, blocking (used only at exit).
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: writes from a live slice of `buf.len()` bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Current wall-clock time in whole seconds since the epoch.
pub fn unix_time() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Number of CPUs this process may run on.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
