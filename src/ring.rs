//! The io_uring wrapper: ring setup with feature fallbacks, submission, completion draining, and
//! the provided-buffer ring that multishot receives fill.
//!
//! This module owns all memory the kernel reads or writes: the receive buffers, the timer's
//! timespec and the wake-up counter for as long as the ring lives, and, for each operation that
//! points at memory (open's path and `open_how`, the `statx` buffer, read and write buffers,
//! send buffers with their iovecs), that memory from submission until the operation's
//! completion is reaped, when `drain` hands it back inside the `Completion`. A caller therefore
//! cannot free or move memory the kernel still uses: every operation here is a safe call.
//! Descriptors a completion creates (accept, open) become `OwnedFd` here too. It must never block
//! except in `submit_and_wait`.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::HashMap;
use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::os::fd::RawFd;
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, Fd, OpenHow, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue, types};

use crate::token::{Op, Token};

/// One completion, copied out of the CQ so the ring can be borrowed again while handling it,
/// with what the operation owned while it was in flight.
#[derive(Debug)]
pub struct Completion {
    pub user_data: u64,
    pub result: i32,
    pub flags: u32,
    memory: Option<OpMemory>,
    fd: Option<OwnedFd>,
}

/// Memory the kernel reads or writes for one operation, owned by the ring while it is in flight.
#[derive(Debug)]
enum OpMemory {
    Open {
        _path: CString,
        _how: Box<OpenHow>,
    },
    Delay(#[allow(dead_code)] Box<Timespec>),
    Statx(Box<libc::statx>),
    /// A read's or a write's buffer; the kernel uses it from `at` on.
    Buffer {
        buf: Vec<u8>,
        at: usize,
    },
    Send {
        out: Outgoing,
        _vectors: Option<Box<SendVectors>>,
    },
}

/// A `sendmsg`'s header and the iovecs it points to, in one allocation: the header points into
/// the same heap block, which does not move while the ring holds it.
#[derive(Debug)]
struct SendVectors {
    iov: [libc::iovec; 2],
    msg: libc::msghdr,
}

/// Hashes `inflight`'s keys, user_data values the server made itself: a multiply and a fold
/// spread every bit of them over the bits the map indexes and tags with. SipHash's defence
/// against keys chosen by an attacker buys nothing here and cost two hashes per operation.
#[derive(Default)]
struct UserDataHasher(u64);

impl Hasher for UserDataHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let p = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = p ^ (p >> 32);
    }
}

/// Bytes shared with the file cache: `len` bytes of `data` from `start`.
#[derive(Debug, Clone)]
pub struct SharedBytes {
    pub data: Rc<[u8]>,
    pub start: usize,
    pub len: usize,
}

impl SharedBytes {
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.start + self.len]
    }
}

/// A response piece being sent: a head, then optionally bytes shared with the cache; `sent`
/// counts bytes of both already taken by the kernel.
#[derive(Debug)]
pub struct Outgoing {
    pub head: Vec<u8>,
    pub body: Option<SharedBytes>,
    pub sent: usize,
}

impl Outgoing {
    /// Bytes of head and body together.
    pub fn total(&self) -> usize {
        self.head.len() + self.body.as_ref().map_or(0, |b| b.len)
    }

    /// What is left to send: the rest of the head, then the rest of the body.
    pub fn unsent(&self) -> [&[u8]; 2] {
        let head = &self.head[self.sent.min(self.head.len())..];
        let body =
            self.body.as_ref().map_or(&[][..], |b| &b.bytes()[self.sent.saturating_sub(self.head.len())..]);
        [head, body]
    }
}

impl Completion {
    /// The descriptor an accept or open created (taken once).
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fd.take()
    }

    /// The buffer a read filled or a write sent.
    pub fn take_buffer(&mut self) -> Option<Vec<u8>> {
        match self.memory.take() {
            Some(OpMemory::Buffer { buf, .. }) => Some(buf),
            _ => None,
        }
    }

    /// What a `statx` wrote.
    pub fn statx(&self) -> Option<&libc::statx> {
        match &self.memory {
            Some(OpMemory::Statx(out)) => Some(out),
            _ => None,
        }
    }

    /// The response piece a send took bytes from.
    pub fn take_outgoing(&mut self) -> Option<Outgoing> {
        match self.memory.take() {
            Some(OpMemory::Send { out, .. }) => Some(out),
            _ => None,
        }
    }

    /// More completions will follow for this (multishot) submission.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    /// A receive left bytes in the socket (`IORING_CQE_F_SOCK_NONEMPTY`).
    pub fn input_left(&self) -> bool {
        cqueue::sock_nonempty(self.flags)
    }

    /// The provided buffer this completion filled, if any.
    pub fn buffer_id(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

/// One splice: `len` bytes from `from` (at `from_offset`, or -1 for a pipe) into `to`.
pub struct SpliceLeg {
    pub from: RawFd,
    pub from_offset: i64,
    pub to: RawFd,
    pub len: u32,
    pub token: Token,
}

impl SpliceLeg {
    fn entry(&self) -> squeue::Entry {
        let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
        opcode::Splice::new(Fd(self.from), self.from_offset, Fd(self.to), -1, self.len)
            .flags(flags)
            .build()
            .user_data(self.token.encode())
    }
}

/// Sizes of the receive buffer ring: `count` buffers of `size` bytes each.
pub struct RecvBuffers {
    pub count: u16,
    pub size: u32,
}

const BUF_GROUP: u16 = 0;

pub struct Ring {
    // Declared first so it is dropped (and the kernel stops using our memory) before the buffers.
    ring: IoUring,
    bufs: BufRing,
    timer: Box<Timespec>,
    wake_counter: Box<u64>,
    /// Groups of entries waiting for room in the SQ, oldest first (see `push_group`).
    backlog: VecDeque<Box<[squeue::Entry]>>,
    /// Memory of the operations in flight, by user_data (see `submit_owned`).
    inflight: HashMap<u64, OpMemory, BuildHasherDefault<UserDataHasher>>,
    /// Set only for a simulated ring (`crate::fuzzing`): submissions are recorded, not submitted.
    sim: Option<Box<Simulated>>,
    features: Vec<&'static str>,
}

/// What a simulated ring recorded: the user_data of every submission in order, and the length
/// each splice asked for.
#[derive(Default)]
pub(crate) struct Simulated {
    pub submitted: VecDeque<u64>,
    pub splice_len: HashMap<u64, u32>,
    next_bid: u16,
}

impl Ring {
    /// Builds a ring with the best task-running mode the kernel accepts, falling back on EINVAL.
    /// Under a small RLIMIT_MEMLOCK (ring memory is accounted to it for unprivileged users)
    /// smaller rings are tried before giving up; a full SQ only means an extra submit.
    pub fn new(entries: u32, recv: RecvBuffers, cpu: Option<usize>) -> io::Result<Ring> {
        let mut entries = entries;
        let (ring, mut features, bufs) = loop {
            let attempt =
                build_ring(entries).and_then(|(ring, f)| Ok((BufRing::new(&ring, &recv)?, ring, f)));
            match attempt {
                Ok((bufs, ring, f)) => break (ring, f, bufs),
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && entries > 64 => entries /= 4,
                Err(e) => return Err(e),
            }
        };
        features.push("multishot-accept");
        features.push("multishot-recv");
        features.push("provided-buffer-ring");
        // Not io_uring, but the other kernel-dependent choice on the start-up line.
        features.push(crate::sys::page_cache_check());
        bound_kernel_workers(&ring, cpu);
        Ok(Ring {
            ring,
            bufs,
            timer: Box::new(Timespec::new()),
            wake_counter: Box::new(0),
            backlog: VecDeque::new(),
            inflight: HashMap::default(),
            sim: None,
            features,
        })
    }

    pub fn features(&self) -> &[&'static str] {
        &self.features
    }

    /// Queues an entry; never drops an operation (see `push_group`).
    ///
    /// # Safety
    /// Every pointer inside `entry` must stay valid and unmoved until its completion is reaped.
    unsafe fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.push_group(&[entry]) }
    }

    /// Queues entries that must reach the kernel in one submission (a linked chain). When the
    /// SQ has no room for all of them, or older entries are already waiting, the group waits
    /// in the backlog, in order, for the next `submit_and_wait`: nothing is submitted here, so
    /// a chain is never split across two submissions and a failing submit cannot spin.
    ///
    /// # Safety
    /// Every pointer inside the entries must stay valid and unmoved until their completions
    /// are reaped.
    unsafe fn push_group(&mut self, group: &[squeue::Entry]) {
        if let Some(sim) = &mut self.sim {
            sim.submitted.extend(group.iter().map(squeue::Entry::get_user_data));
            return;
        }
        // SAFETY: forwarded from this function's contract; `push_multiple` queues all or none.
        if self.backlog.is_empty() && unsafe { self.ring.submission().push_multiple(group) }.is_ok() {
            return;
        }
        self.backlog.push_back(group.into());
    }

    /// Moves backlogged groups into the SQ, submitting whenever it fills. Stops early (leaving
    /// the rest for the next round) when the kernel cannot take more until completions are
    /// reaped.
    fn flush_backlog(&mut self) -> io::Result<()> {
        while let Some(group) = self.backlog.front() {
            // SAFETY: the entries were queued under `push_group`'s contract, which still holds.
            if unsafe { self.ring.submission().push_multiple(group) }.is_ok() {
                self.backlog.pop_front();
                continue;
            }
            match self.ring.submit() {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if is_transient(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Submits everything queued and waits for at least one completion.
    pub fn submit_and_wait(&mut self) -> io::Result<()> {
        self.flush_backlog()?;
        match self.ring.submit_and_wait(1) {
            Ok(_) => Ok(()),
            Err(e) if is_transient(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Cancels every operation still in flight and waits until the cancellation has completed
    /// and every operation that owned memory has completed, so nothing the kernel holds points
    /// at this Ring's memory when it is dropped.
    pub fn quiesce(&mut self) -> io::Result<()> {
        const QUIESCE: u64 = u64::MAX;
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::any()).build();
        // SAFETY: no memory is referenced.
        unsafe { self.push(e.user_data(QUIESCE)) };
        let mut done = Vec::new();
        let mut cancelled = false;
        while !cancelled || !self.inflight.is_empty() {
            self.submit_and_wait()?;
            self.drain(&mut done);
            cancelled |= done.iter().any(|c| c.user_data == QUIESCE);
        }
        Ok(())
    }

    /// Moves all available completions into `out` (which is cleared first), each with the
    /// memory its operation owned and the descriptor it created.
    pub fn drain(&mut self, out: &mut Vec<Completion>) {
        out.clear();
        let inflight = &mut self.inflight;
        out.extend(self.ring.completion().map(|c| {
            let (user_data, result, flags) = (c.user_data(), c.result(), c.flags());
            let op = Token::decode(user_data).map(|t| t.op);
            let memory = match op {
                Some(Op::Open | Op::Delay | Op::Statx | Op::Read | Op::Send | Op::LogWrite) => {
                    inflight.remove(&user_data)
                }
                _ => None,
            };
            let creates_fd = matches!(op, Some(Op::Accept | Op::AcceptMetrics | Op::Open));
            // SAFETY: a non-negative result of an accept or an open is a new descriptor that
            // nothing else owns; it is adopted here, once.
            let fd = (creates_fd && result >= 0).then(|| unsafe { OwnedFd::from_raw_fd(result) });
            Completion { user_data, result, flags, memory, fd }
        }));
    }

    pub fn accept_multi(&mut self, listener: RawFd, token: Token) {
        let e =
            opcode::AcceptMulti::new(Fd(listener)).flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK).build();
        // SAFETY: no memory is referenced.
        unsafe { self.push(e.user_data(token.encode())) }
    }

    /// Multishot receive into the provided-buffer ring (which this `Ring` owns).
    pub fn recv_multi(&mut self, fd: RawFd, token: Token) {
        let e = opcode::RecvMulti::new(Fd(fd), BUF_GROUP).build();
        // SAFETY: the kernel writes only into provided buffers, which live as long as the ring.
        unsafe { self.push(e.user_data(token.encode())) }
    }

    /// One receive into a provided buffer.
    pub fn recv_once(&mut self, fd: RawFd, token: Token) {
        let e = opcode::Recv::new(Fd(fd), std::ptr::null_mut(), 0).buf_group(BUF_GROUP).build();
        let e = e.flags(squeue::Flags::BUFFER_SELECT);
        // SAFETY: the kernel writes only into provided buffers, which live as long as the ring.
        unsafe { self.push(e.user_data(token.encode())) }
    }

    /// The bytes a receive completion delivered into buffer `bid`.
    pub fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        self.bufs.slice(bid, len)
    }

    /// Hands a provided buffer back to the kernel once its bytes have been consumed.
    pub fn recycle(&mut self, bid: u16) {
        self.bufs.recycle(bid);
    }

    /// Splices up to `leg.len` bytes (both ends non-blocking).
    pub fn splice(&mut self, leg: SpliceLeg) {
        self.note_splice(&leg);
        // SAFETY: no memory is referenced.
        unsafe { self.push(leg.entry()) }
    }

    /// Splices `first`, then `then` only if `first` moved all its bytes (otherwise `then`
    /// completes with ECANCELED). Both go to the kernel in the same submission.
    pub fn splice_linked(&mut self, first: SpliceLeg, then: SpliceLeg) {
        self.note_splice(&first);
        self.note_splice(&then);
        let first = first.entry().flags(squeue::Flags::IO_LINK);
        // SAFETY: no memory is referenced.
        unsafe { self.push_group(&[first, then.entry()]) }
    }

    fn note_splice(&mut self, leg: &SpliceLeg) {
        if let Some(sim) = &mut self.sim {
            sim.splice_len.insert(leg.token.encode(), leg.len);
        }
    }

    /// Completes once `fd` is writable (after a splice found the socket full).
    pub fn poll_writable(&mut self, fd: RawFd, token: Token) {
        let e = opcode::PollAdd::new(Fd(fd), libc::POLLOUT as u32).build();
        // SAFETY: no memory is referenced.
        unsafe { self.push(e.user_data(token.encode())) }
    }

    /// Closes a descriptor the caller has given up (nothing else may use the number afterwards).
    pub fn close(&mut self, fd: std::os::fd::OwnedFd, token: Token) {
        use std::os::fd::IntoRawFd;
        let e = opcode::Close::new(Fd(fd.into_raw_fd())).build();
        // SAFETY: no memory is referenced; ownership of the descriptor passed to the kernel.
        unsafe { self.push(e.user_data(token.encode())) }
    }

    /// Cancels the operation submitted with `target`'s user_data.
    pub fn cancel_op(&mut self, target: Token, token: Token) {
        let e = opcode::AsyncCancel::new(target.encode()).build();
        // SAFETY: no memory is referenced.
        unsafe { self.push(e.user_data(token.encode())) }
    }

    /// Cancels every operation in flight on `fd`.
    pub fn cancel_fd(&mut self, fd: RawFd, token: Token) {
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::fd(Fd(fd)).all()).build();
        // SAFETY: no memory is referenced.
        unsafe { self.push(e.user_data(token.encode())) }
    }

    /// Arms the single periodic timer (the worker re-arms it on every expiry).
    pub fn arm_timer(&mut self, after: Duration, token: Token) {
        *self.timer = Timespec::new().sec(after.as_secs()).nsec(after.subsec_nanos());
        let e = opcode::Timeout::new(&*self.timer).build();
        // SAFETY: the timespec is a Box owned by this Ring, alive as long as the ring.
        unsafe { self.push(e.user_data(token.encode())) }
    }

    /// Reads an eventfd's counter into memory owned by this Ring.
    pub fn read_eventfd(&mut self, fd: RawFd, token: Token) {
        let e = opcode::Read::new(Fd(fd), (&mut *self.wake_counter as *mut u64).cast(), 8).build();
        // SAFETY: the counter is a Box owned by this Ring, alive as long as the ring.
        unsafe { self.push(e.user_data(token.encode())) }
    }

    /// Opens `path` beneath `dir` (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`),
    /// after `delay` if one is given (the debug builds' slow-storage hook for tests: a timeout
    /// hard-linked in front, completing with `delay_token`). The completion carries the new
    /// descriptor (`Completion::take_fd`).
    pub fn open_beneath(
        &mut self,
        dir: RawFd,
        path: CString,
        flags: u64,
        delay: Option<(Duration, Token)>,
        token: Token,
    ) {
        let how = Box::new(
            OpenHow::new().flags(flags).resolve(libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS),
        );
        let open = opcode::OpenAt2::new(Fd(dir), path.as_ptr(), &*how).build().user_data(token.encode());
        let memory = OpMemory::Open { _path: path, _how: how };
        match delay {
            None => self.submit_owned(open, token, memory),
            Some((after, delay_token)) => {
                let spec = Box::new(Timespec::new().sec(after.as_secs()).nsec(after.subsec_nanos()));
                // A hard link runs the open even though the timeout "fails" with ETIME.
                let wait = opcode::Timeout::new(&*spec)
                    .build()
                    .flags(squeue::Flags::IO_HARDLINK)
                    .user_data(delay_token.encode());
                self.inflight.insert(delay_token.encode(), OpMemory::Delay(spec));
                self.inflight.insert(token.encode(), memory);
                // SAFETY: the path, open_how and timespec are owned by `inflight` until the
                // completions of their operations are reaped (`drain`).
                unsafe { self.push_group(&[wait, open]) }
            }
        }
    }

    /// `statx` of an open descriptor; the completion carries the result (`Completion::statx`).
    pub fn statx_fd(&mut self, fd: RawFd, token: Token) {
        const EMPTY: &CStr = c"";
        // SAFETY: statx is plain old data for which all-zeroes is a valid value.
        let mut out: Box<libc::statx> = Box::new(unsafe { std::mem::zeroed() });
        let e = opcode::Statx::new(
            Fd(fd),
            EMPTY.as_ptr(),
            (&mut *out as *mut libc::statx).cast::<types::statx>(),
        )
        .flags(libc::AT_EMPTY_PATH)
        .mask(libc::STATX_TYPE | libc::STATX_MODE | libc::STATX_SIZE | libc::STATX_MTIME | libc::STATX_INO)
        .build()
        .user_data(token.encode());
        self.submit_owned(e, token, OpMemory::Statx(out));
    }

    /// Reads into `buf[at..]` from file offset `offset`; the completion hands `buf` back
    /// (`Completion::take_buffer`).
    pub fn read_at(&mut self, fd: RawFd, mut buf: Vec<u8>, at: usize, offset: u64, token: Token) {
        let room = &mut buf[at..];
        let e = opcode::Read::new(Fd(fd), room.as_mut_ptr(), room.len() as u32)
            .offset(offset)
            .build()
            .user_data(token.encode());
        self.submit_owned(e, token, OpMemory::Buffer { buf, at });
    }

    /// Sends what is left of `out` (head, then body) on a socket: one `send` for a head alone,
    /// one `sendmsg` with two iovecs when body bytes follow (no copy of the body). `more` says
    /// more of the response follows, so the kernel may hold a partial segment. The completion
    /// hands `out` back (`Completion::take_outgoing`).
    pub fn send(&mut self, fd: RawFd, out: Outgoing, more: bool, token: Token) {
        let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
        let [head_left, body_left] = out.unsent();
        if body_left.is_empty() {
            let e = opcode::Send::new(Fd(fd), head_left.as_ptr(), head_left.len() as u32)
                .flags(flags)
                .build()
                .user_data(token.encode());
            return self.submit_owned(e, token, OpMemory::Send { out, _vectors: None });
        }
        // SAFETY: iovecs and msghdr are plain old data; all-zeroes is an empty message.
        let mut v: Box<SendVectors> = Box::new(unsafe { std::mem::zeroed() });
        let mut n = 0;
        for part in [head_left, body_left] {
            if !part.is_empty() {
                v.iov[n] = libc::iovec { iov_base: part.as_ptr() as *mut libc::c_void, iov_len: part.len() };
                n += 1;
            }
        }
        v.msg.msg_iov = v.iov.as_mut_ptr();
        v.msg.msg_iovlen = n;
        let e = opcode::SendMsg::new(Fd(fd), &v.msg).flags(flags as u32).build().user_data(token.encode());
        self.submit_owned(e, token, OpMemory::Send { out, _vectors: Some(v) });
    }

    /// Appends `buf` to a file (the access log; offset -1 means "current position", O_APPEND);
    /// the completion hands `buf` back (`Completion::take_buffer`).
    pub fn write(&mut self, fd: RawFd, buf: Vec<u8>, token: Token) {
        let e = opcode::Write::new(Fd(fd), buf.as_ptr(), buf.len() as u32)
            .offset(u64::MAX)
            .build()
            .user_data(token.encode());
        self.submit_owned(e, token, OpMemory::Buffer { buf, at: 0 });
    }

    /// Queues `entry`, whose pointers all lead into `memory`, and keeps `memory` until the
    /// entry's completion is reaped. Heap memory does not move when its owner (a `Vec`, a
    /// `Box`, a `CString`) moves into the map, so the pointers stay valid.
    fn submit_owned(&mut self, entry: squeue::Entry, token: Token, memory: OpMemory) {
        let previous = self.inflight.insert(token.encode(), memory);
        assert!(previous.is_none(), "two operations in flight under one token: {token:?}");
        // SAFETY: every pointer in `entry` leads into `memory`, which `inflight` owns until
        // `drain` reaps this entry's completion and hands it back.
        unsafe { self.push(entry) }
    }
}

/// The simulated ring, for driving connections without a kernel (`crate::fuzzing`).
impl Ring {
    /// A ring whose submissions are recorded instead of submitted (a real, idle io_uring still
    /// backs the provided-buffer ring, whose memory receives are simulated into).
    pub(crate) fn simulated() -> io::Result<Ring> {
        let mut ring = Ring::new(64, RecvBuffers { count: 16, size: 2048 }, None)?;
        ring.sim = Some(Box::default());
        Ok(ring)
    }

    /// Forgets everything a previous simulated run left (recorded submissions, owned memory),
    /// so one simulated ring can serve many runs.
    pub(crate) fn sim_reset(&mut self) {
        self.inflight.clear();
        *self.sim() = Simulated::default();
    }

    pub(crate) fn sim(&mut self) -> &mut Simulated {
        self.sim.as_mut().expect("a simulated ring")
    }

    /// A completion for `user_data` with `result`, handing back what the operation owned;
    /// `fd` stands for the descriptor an open or accept would have created.
    pub(crate) fn sim_complete(
        &mut self,
        user_data: u64,
        result: i32,
        flags: u32,
        fd: Option<OwnedFd>,
    ) -> Completion {
        let memory = self.inflight.remove(&user_data);
        Completion { user_data, result, flags, memory, fd }
    }

    /// Puts `bytes` (at most one buffer's worth) into the next provided buffer, as a receive
    /// would; returns the completion flags that name it.
    pub(crate) fn sim_receive(&mut self, bytes: &[u8]) -> u32 {
        let bid = self.sim().next_bid;
        self.sim().next_bid = (bid + 1) % 16;
        let start = bid as usize * self.bufs.size;
        let len = bytes.len().min(self.bufs.size);
        self.bufs.data[start..start + len].copy_from_slice(&bytes[..len]);
        cqueue_flags::BUFFER | (u32::from(bid) << cqueue_flags::BUFFER_SHIFT)
    }

    /// Lets `fill` write what a `statx` or a read in flight under `user_data` would have written.
    pub(crate) fn sim_statx(&mut self, user_data: u64, fill: impl FnOnce(&mut libc::statx)) {
        if let Some(OpMemory::Statx(out)) = self.inflight.get_mut(&user_data) {
            fill(out);
        }
    }

    /// The bytes a send in flight under `user_data` would take first (`n` at most).
    pub(crate) fn sim_send_bytes(&self, user_data: u64, n: usize) -> Vec<u8> {
        let Some(OpMemory::Send { out, .. }) = self.inflight.get(&user_data) else { return Vec::new() };
        let head = &out.head[out.sent.min(out.head.len())..];
        let body =
            out.body.as_ref().map_or(&[][..], |b| &b.bytes()[out.sent.saturating_sub(out.head.len())..]);
        head.iter().chain(body).copied().take(n).collect()
    }

    /// Bytes left to send in the send in flight under `user_data`.
    pub(crate) fn sim_send_left(&self, user_data: u64) -> usize {
        match self.inflight.get(&user_data) {
            Some(OpMemory::Send { out, .. }) => out.total() - out.sent,
            _ => 0,
        }
    }

    /// Room left in the read in flight under `user_data`.
    pub(crate) fn sim_read_room(&self, user_data: u64) -> usize {
        match self.inflight.get(&user_data) {
            Some(OpMemory::Buffer { buf, at }) => buf.len() - at,
            _ => 0,
        }
    }
}

/// CQE flag bits the simulation sets (as the kernel's `IORING_CQE_F_*`).
pub(crate) mod cqueue_flags {
    pub const BUFFER: u32 = 1;
    pub const MORE: u32 = 2;
    pub const BUFFER_SHIFT: u32 = 16;
}

/// A submit error that only means "reap completions first, then try again".
fn is_transient(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN))
}

/// A task-running mode to try: its feature names and how it configures the builder.
type Mode = (&'static [&'static str], fn(&mut io_uring::Builder));

fn build_ring(entries: u32) -> io::Result<(IoUring, Vec<&'static str>)> {
    let cq = entries * 4;
    let attempts: [Mode; 3] = [
        (&["single-issuer", "defer-taskrun"], |b| {
            b.setup_single_issuer().setup_defer_taskrun();
        }),
        (&["coop-taskrun"], |b| {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }),
        (&[], |_| {}),
    ];
    let mut last = io::Error::from_raw_os_error(libc::EINVAL);
    for (names, configure) in attempts {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(cq).setup_submit_all();
        configure(&mut builder);
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, names.to_vec())),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Keeps io_uring's kernel helper threads on this worker's core and few in number: on a small
/// machine they would otherwise compete with the workers themselves.
fn bound_kernel_workers(ring: &IoUring, cpu: Option<usize>) {
    let submitter = ring.submitter();
    if let Some(cpu) = cpu {
        // SAFETY: cpu_set_t is plain old data; CPU_SET writes inside it.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `cpu` comes from core_affinity's list of this machine's CPUs, inside the set.
        unsafe { libc::CPU_SET(cpu, &mut set) };
        let _ = submitter.register_iowq_aff(&set);
    }
    let mut max = [4u32, 16u32];
    let _ = submitter.register_iowq_max_workers(&mut max);
}

/// The provided-buffer ring: `count` buffers of `size` bytes the kernel picks from for receives.
struct BufRing {
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    data: Box<[u8]>,
    size: usize,
    mask: u16,
    tail: u16,
}

impl BufRing {
    fn new(ring: &IoUring, recv: &RecvBuffers) -> io::Result<BufRing> {
        let count = recv.count;
        assert!(count.is_power_of_two(), "buffer ring size must be a power of two");
        let entries_layout =
            Layout::from_size_align(count as usize * std::mem::size_of::<BufRingEntry>(), 4096)
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: the layout has a non-zero size.
        let entries = unsafe { alloc_zeroed(entries_layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        let mut data = vec![0u8; count as usize * recv.size as usize].into_boxed_slice();
        // The kernel cycles through every buffer in turn, so all of them become resident within
        // the first few thousand receives; fault them in now, as the fixed per-worker cost they
        // are, rather than have them show up later as if connections cost them.
        for page in data.chunks_mut(4096) {
            // SAFETY: `page` is a valid, exclusive reference into `data`.
            unsafe { std::ptr::write_volatile(page.as_mut_ptr(), 0) };
        }
        let mut bufs =
            BufRing { entries, entries_layout, data, size: recv.size as usize, mask: count - 1, tail: 0 };
        // SAFETY: `entries` is page aligned, sized for `count` entries, and lives (with `data`)
        // until this BufRing is dropped, which happens after the ring (field order in `Ring`).
        unsafe { ring.submitter().register_buf_ring_with_flags(entries as u64, count, BUF_GROUP, 0) }?;
        for bid in 0..count {
            bufs.recycle(bid);
        }
        Ok(bufs)
    }

    fn slice(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * self.size;
        &self.data[start..start + len.min(self.size)]
    }

    fn recycle(&mut self, bid: u16) {
        let addr = self.data.as_ptr() as u64 + (bid as u64 * self.size as u64);
        let index = (self.tail & self.mask) as usize;
        // SAFETY: `index` is masked below `count`, so the entry lies inside the allocation; the
        // kernel only reads entries between head and the published tail, and this one is past it.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(addr);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field overlays entry 0's reserved field, inside the allocation; the
        // kernel reads it concurrently, hence the atomic release store that publishes the entry.
        let tail = unsafe { &*(BufRingEntry::tail(self.entries).cast::<AtomicU16>()) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout; the ring is already gone.
        unsafe { dealloc(self.entries.cast(), self.entries_layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// A linked file → pipe → socket splice pair must reach the kernel in one submission even
    /// when the SQ has room for only one of them: split, the second would run on its own after
    /// a short first splice instead of being cancelled.
    #[test]
    fn linked_pair_is_not_split_by_a_full_submission_queue() {
        let mut ring = Ring::new(8, RecvBuffers { count: 8, size: 64 }, None).expect("ring");
        let capacity = ring.ring.submission().capacity();
        for i in 1..capacity {
            // SAFETY: a no-op references no memory.
            unsafe { ring.push(opcode::Nop::new().build().user_data(1000 + i as u64)) };
        }
        let path = std::env::temp_dir().join(format!("ringhttpd-ring-test-{}", std::process::id()));
        std::fs::write(&path, b"ten bytes!").expect("temp file");
        let file = std::fs::File::open(&path).expect("open");
        std::fs::remove_file(&path).expect("unlink");
        let first = crate::sys::Pipe::new(4096).expect("pipe");
        let second = crate::sys::Pipe::new(4096).expect("pipe");
        let (tok_in, tok_out) =
            (Token::conn(1, 1, crate::token::Op::SpliceIn), Token::conn(1, 1, crate::token::Op::SpliceOut));
        // Asks for more than the file holds: the first splice comes up short and breaks the link.
        let fill = SpliceLeg {
            from: file.as_raw_fd(),
            from_offset: 0,
            to: first.write.as_raw_fd(),
            len: 100,
            token: tok_in,
        };
        let drain = SpliceLeg {
            from: first.read.as_raw_fd(),
            from_offset: -1,
            to: second.write.as_raw_fd(),
            len: 100,
            token: tok_out,
        };
        ring.splice_linked(fill, drain);
        let mut seen = Vec::new();
        let mut batch = Vec::new();
        while !seen.iter().any(|c: &Completion| c.user_data == tok_out.encode()) {
            ring.submit_and_wait().expect("submit");
            ring.drain(&mut batch);
            seen.append(&mut batch);
        }
        let result = |t: Token| seen.iter().find(|c| c.user_data == t.encode()).map(|c| c.result);
        assert_eq!(result(tok_in), Some(10));
        assert_eq!(result(tok_out), Some(-libc::ECANCELED), "the link was split");
    }
}
