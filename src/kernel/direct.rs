//! The few syscalls a worker makes directly on the hot path, beside the ring, because they
//! complete at once and a ring round trip would cost more: a closing response's last send, our
//! FIN, a file body's head, `sendfile` of page-cache-resident bodies, and the page-cache probe
//! that decides it.
//! Nothing here may block: every call either returns at once or reports `WouldBlock`.

use std::io;
use std::os::fd::RawFd;

/// Bytes queued on a socket that the peer has not acknowledged yet (SIOCOUTQ).
pub fn unacked_bytes(fd: RawFd) -> Option<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one c_int through the pointer, which refers to a live local.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    (ret == 0).then_some(n as u32)
}

/// The connection's current segment size (`TCP_MAXSEG`: the MSS less the options every
/// segment carries), or None where the socket cannot say.
pub fn segment_size(fd: RawFd) -> Option<u32> {
    let mut n: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes through the pointer, which refers to a
    // live local of that size, and `len` itself is a live local.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&mut n as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (ret == 0 && n > 0).then_some(n as u32)
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
/// (debug builds, `testing::hooks`) makes a kernel that has it look like one that has not.
fn has_cachestat() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        !crate::testing::hooks::cachestat_missing()
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
    if !has_cachestat() || crate::testing::hooks::cachestat_denied() {
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

/// `pread` on the worker thread, for file pages known to be in the page cache (it does not
/// wait for the disk then).
pub fn read_cached(file: RawFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length for the whole (synchronous) call.
    let n = unsafe { libc::pread(file, buf.as_mut_ptr().cast(), buf.len(), offset as libc::off_t) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// Sends as much of `bytes` as the socket takes now, without waiting: the bytes sent, or
/// `WouldBlock` when it takes none.
pub fn send_now(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    send_flagged(fd, bytes, 0)
}

/// `send_now` with `MSG_MORE`: more of the same response follows at once, to share its
/// segment.
pub fn send_more_now(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    send_flagged(fd, bytes, libc::MSG_MORE)
}

fn send_flagged(fd: RawFd, bytes: &[u8], flags: libc::c_int) -> io::Result<usize> {
    let flags = flags | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    // SAFETY: `bytes` is valid for reads of its length for the whole (synchronous) call.
    let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), flags) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}
