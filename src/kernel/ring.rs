//! The io_uring wrapper: ring setup with feature fallbacks, submission, and completion draining;
//! the provided-buffer ring that receives fill is `buf_ring`'s.
//!
//! This module owns all memory the kernel reads or writes: the receive buffers, the timer's
//! timespec and the wake-up counter for as long as the ring lives, and, for each operation that
//! points at memory (open's path and `open_how`, the `statx` buffer, read and write buffers,
//! send buffers with their iovecs), that memory from submission until the operation's
//! completion is reaped, when `drain` hands it back inside the `Completion`. A caller therefore
//! cannot free or move memory the kernel still uses: every operation here is a safe call.
//! Descriptors a completion creates (accept, open) become `OwnedFd` here too. It must never block
//! except in `submit_and_wait`.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::os::fd::RawFd;
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use io_uring::types::{Fd, OpenHow, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::buf_ring::{BUF_GROUP, BufRing, RecvBuffers};
use crate::kernel::token::{Op, Token};

/// One completion, copied out of the CQ so the ring can be borrowed again while handling it,
/// with what the operation owned while it was in flight.
#[derive(Debug)]
pub struct Completion {
    pub user_data: u64,
    pub result: i32,
    pub flags: u32,
    pub(super) memory: Option<OpMemory>,
    pub(super) fd: Option<OwnedFd>,
}

/// Memory the kernel reads or writes for one operation, owned by the ring while it is in flight.
#[derive(Debug)]
pub(super) enum OpMemory {
    Open {
        _path: CString,
        _how: Box<OpenHow>,
    },
    Delay(#[allow(dead_code)] Box<Timespec>),
    Statx(Box<libc::statx>),
    /// A read's or a write's buffer; the kernel uses it from `at` on.
    Buffer {
        buf: Vec<u8>,
        // Read back only by the simulated ring.
        #[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
        at: usize,
    },
    Send {
        out: Outgoing,
        /// For a `sendmsg`; back to `Ring::spare_vectors` once the completion arrives.
        vectors: Option<Box<SendVectors>>,
    },
}

/// A `sendmsg`'s header and the iovecs it points to, in one allocation: the header points into
/// the same heap block, which does not move while the ring holds it.
#[derive(Debug)]
pub(super) struct SendVectors {
    iov: [libc::iovec; 2],
    msg: libc::msghdr,
}

/// `sendmsg` headers kept for reuse per ring.
const MAX_SPARE_VECTORS: usize = 256;

/// Hashes `inflight`'s keys, user_data values the server made itself: a multiply and a fold
/// spread every bit of them over the bits the map indexes and tags with. SipHash's defence
/// against keys chosen by an attacker buys nothing here and cost two hashes per operation.
#[derive(Default)]
pub(super) struct UserDataHasher(u64);

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

pub struct Ring {
    // Declared first so it is dropped (and the kernel stops using our memory) before the buffers.
    ring: IoUring,
    /// The provided-buffer ring; `None` in compat mode (`Compat`), where each receive reads
    /// into a buffer of its own.
    pub(super) bufs: Option<BufRing>,
    /// Receive buffers' size, for compat mode's own buffers.
    recv_size: usize,
    timer: Box<Timespec>,
    wake_counter: Box<u64>,
    /// Groups of entries waiting for room in the SQ, oldest first (see `push_group`).
    backlog: VecDeque<Box<[squeue::Entry]>>,
    /// Memory of the operations in flight, by user_data (see `submit_owned`).
    pub(super) inflight: HashMap<u64, OpMemory, BuildHasherDefault<UserDataHasher>>,
    /// `sendmsg` headers whose operations completed, for reuse (a send costs no allocation).
    /// Boxed as the operations hold them: the kernel is given pointers into the box.
    #[allow(clippy::vec_box)]
    spare_vectors: Vec<Box<SendVectors>>,
    /// Set only for a simulated ring (`kernel::sim`): submissions are recorded, not submitted.
    #[cfg(feature = "fuzzing")]
    pub(super) sim: Option<Box<super::sim::Simulated>>,
    features: Vec<&'static str>,
}

impl Ring {
    /// Builds a ring with the best task-running mode the kernel accepts, falling back on EINVAL.
    /// Under a small RLIMIT_MEMLOCK (ring memory is accounted to it for unprivileged users)
    /// smaller rings are tried before giving up; a full SQ only means an extra submit.
    ///
    /// Where the kernel predates multishot receives (6.0) or provided-buffer rings, or
    /// `compat` asks for it, the ring runs in compat mode (see `Compat`).
    pub fn new(entries: u32, recv: RecvBuffers, cpu: Option<usize>, compat: Compat) -> io::Result<Ring> {
        let mut entries = entries;
        let (ring, mut features, bufs) = loop {
            let attempt = build_ring(entries).and_then(|(ring, f)| {
                let bufs = match compat {
                    Compat::Forced | Compat::OldKernel => None,
                    Compat::No => {
                        BufRing::new(&ring, &recv).map(Some).or_else(|e| match e.raw_os_error() {
                            // A kernel without provided-buffer rings (before 5.19).
                            Some(libc::EINVAL) => Ok(None),
                            _ => Err(e),
                        })?
                    }
                };
                Ok((ring, f, bufs))
            });
            match attempt {
                Ok(built) => break built,
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) && entries > 64 => entries /= 4,
                Err(e) => return Err(e),
            }
        };
        match bufs {
            Some(_) => features.extend(["multishot-accept", "multishot-recv", "provided-buffer-ring"]),
            None => features.extend(["compat:single-shot-accept", "compat:single-shot-recv"]),
        }
        // Not io_uring, but the other kernel-dependent choice on the start-up line.
        features.push(crate::kernel::direct::page_cache_check());
        bound_kernel_workers(&ring, cpu);
        Ok(Ring {
            ring,
            bufs,
            recv_size: recv.size as usize,
            timer: Box::new(Timespec::new()),
            wake_counter: Box::new(0),
            backlog: VecDeque::new(),
            inflight: HashMap::default(),
            spare_vectors: Vec::new(),
            #[cfg(feature = "fuzzing")]
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
        #[cfg(feature = "fuzzing")]
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
    /// In compat mode (no "cancel any" before 5.19) the operations the caller names in
    /// `leftovers` are cancelled one by one instead.
    pub fn quiesce(&mut self, leftovers: &[Token]) -> io::Result<()> {
        const QUIESCE: u64 = u64::MAX;
        let cancels: Vec<squeue::Entry> = match self.bufs {
            Some(_) => vec![opcode::AsyncCancel2::new(types::CancelBuilder::any()).build()],
            None => leftovers.iter().map(|t| opcode::AsyncCancel::new(t.encode()).build()).collect(),
        };
        let mut waiting = cancels.len();
        for e in cancels {
            // SAFETY: no memory is referenced.
            unsafe { self.push(e.user_data(QUIESCE)) };
        }
        let mut done = Vec::new();
        while waiting > 0 || !self.inflight.is_empty() {
            self.submit_and_wait()?;
            self.drain(&mut done);
            waiting -= done.iter().filter(|c| c.user_data == QUIESCE).count().min(waiting);
        }
        Ok(())
    }

    /// Moves all available completions into `out` (which is cleared first), each with the
    /// memory its operation owned and the descriptor it created.
    pub fn drain(&mut self, out: &mut Vec<Completion>) {
        out.clear();
        let inflight = &mut self.inflight;
        let spare_vectors = &mut self.spare_vectors;
        let own_recv_buffers = self.bufs.is_none();
        out.extend(self.ring.completion().map(|c| {
            let (user_data, result, mut flags) = (c.user_data(), c.result(), c.flags());
            let op = Token::decode(user_data).map(|t| t.op);
            let memory = match op {
                Some(Op::Send) => {
                    let mut memory = inflight.remove(&user_data);
                    // The kernel is done with the header: its completion has arrived.
                    if let Some(OpMemory::Send { vectors, .. }) = &mut memory {
                        if let Some(v) = vectors.take().filter(|_| spare_vectors.len() < MAX_SPARE_VECTORS) {
                            spare_vectors.push(v);
                        }
                    }
                    memory
                }
                Some(Op::Open | Op::Delay | Op::Statx | Op::Read | Op::LogWrite) => {
                    inflight.remove(&user_data)
                }
                Some(Op::Recv) if own_recv_buffers => {
                    let memory = inflight.remove(&user_data);
                    // No IORING_CQE_F_SOCK_NONEMPTY before 5.19: a receive that filled its
                    // buffer probably left more behind.
                    if let Some(OpMemory::Buffer { buf, .. }) = &memory {
                        if result > 0 && result as usize == buf.len() {
                            flags |= CQE_F_SOCK_NONEMPTY;
                        }
                    }
                    memory
                }
                _ => None,
            };
            let creates_fd = matches!(op, Some(Op::Accept | Op::AcceptTls | Op::AcceptMetrics | Op::Open));
            // SAFETY: a non-negative result of an accept or an open is a new descriptor that
            // nothing else owns; it is adopted here, once.
            let fd = (creates_fd && result >= 0).then(|| unsafe { OwnedFd::from_raw_fd(result) });
            Completion { user_data, result, flags, memory, fd }
        }));
    }

    /// Accepts connections on `listener`: multishot, or one at a time in compat mode (the
    /// completion then comes without `more`, and the caller arms it again).
    pub fn accept_multi(&mut self, listener: RawFd, token: Token) {
        let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        let e = match self.bufs {
            Some(_) => opcode::AcceptMulti::new(Fd(listener)).flags(flags).build(),
            None => opcode::Accept::new(Fd(listener), std::ptr::null_mut(), std::ptr::null_mut())
                .flags(flags)
                .build(),
        };
        // SAFETY: no memory is referenced (the peer address is not asked for).
        unsafe { self.push(e.user_data(token.encode())) }
    }

    /// Multishot receive into the provided-buffer ring (which this `Ring` owns); one receive
    /// into a buffer of its own in compat mode.
    pub fn recv_multi(&mut self, fd: RawFd, token: Token) {
        if self.bufs.is_none() {
            return self.recv_into_own_buffer(fd, token);
        }
        #[cfg(feature = "fuzzing")]
        if let Some(sim) = &mut self.sim {
            sim.multishot.insert(token.encode());
        }
        let e = opcode::RecvMulti::new(Fd(fd), BUF_GROUP).build();
        // SAFETY: the kernel writes only into provided buffers, which live as long as the ring.
        unsafe { self.push(e.user_data(token.encode())) }
    }

    /// One receive into a provided buffer (into a buffer of its own in compat mode).
    pub fn recv_once(&mut self, fd: RawFd, token: Token) {
        if self.bufs.is_none() {
            return self.recv_into_own_buffer(fd, token);
        }
        #[cfg(feature = "fuzzing")]
        if let Some(sim) = &mut self.sim {
            sim.multishot.remove(&token.encode());
        }
        let e = opcode::Recv::new(Fd(fd), std::ptr::null_mut(), 0).buf_group(BUF_GROUP).build();
        let e = e.flags(squeue::Flags::BUFFER_SELECT);
        // SAFETY: the kernel writes only into provided buffers, which live as long as the ring.
        unsafe { self.push(e.user_data(token.encode())) }
    }

    /// Compat mode's receive: into a buffer the ring owns until the completion hands it back.
    fn recv_into_own_buffer(&mut self, fd: RawFd, token: Token) {
        let mut buf = vec![0u8; self.recv_size];
        let e =
            opcode::Recv::new(Fd(fd), buf.as_mut_ptr(), buf.len() as u32).build().user_data(token.encode());
        self.submit_owned(e, token, OpMemory::Buffer { buf, at: 0 });
    }

    /// Hands the bytes a receive completion delivered to `consume`, from a provided buffer
    /// (which goes back to the kernel afterwards) or from the receive's own buffer.
    pub fn received(&mut self, c: &mut Completion, consume: impl FnOnce(&[u8])) {
        let len = c.result.max(0) as usize;
        if let (Some(bid), Some(bufs)) = (c.buffer_id(), self.bufs.as_mut()) {
            consume(bufs.slice(bid, len));
            bufs.recycle(bid);
        } else if let Some(buf) = c.take_buffer() {
            consume(&buf[..len.min(buf.len())]);
        }
    }

    /// Hands a provided buffer back to the kernel once its bytes have been consumed.
    pub fn recycle(&mut self, bid: u16) {
        if let Some(bufs) = &mut self.bufs {
            bufs.recycle(bid);
        }
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

    fn note_splice(&mut self, _leg: &SpliceLeg) {
        #[cfg(feature = "fuzzing")]
        if let Some(sim) = &mut self.sim {
            sim.splice_len.insert(_leg.token.encode(), _leg.len);
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

    /// Ends every operation in flight on the connected socket `fd`: cancelled, or in compat
    /// mode (no cancellation by descriptor before 5.19) woken by shutting the socket down,
    /// which completes its receives, sends and polls at once.
    pub fn cancel_socket(&mut self, fd: RawFd, token: Token) {
        if self.bufs.is_none() {
            // SAFETY: a plain syscall without memory arguments, on a socket the caller owns.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            return;
        }
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
            return self.submit_owned(e, token, OpMemory::Send { out, vectors: None });
        }
        let mut v = self.spare_vectors.pop().unwrap_or_else(|| {
            // SAFETY: iovecs and msghdr are plain old data; all-zeroes is an empty message.
            Box::new(unsafe { std::mem::zeroed() })
        });
        // SAFETY: as above; a reused header is emptied before it is filled again.
        v.msg = unsafe { std::mem::zeroed() };
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
        self.submit_owned(e, token, OpMemory::Send { out, vectors: Some(v) });
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

/// `IORING_CQE_F_SOCK_NONEMPTY` (not exported by the io-uring crate; the same on every
/// architecture): set by compat mode itself when a receive filled its buffer.
const CQE_F_SOCK_NONEMPTY: u32 = 1 << 2;

/// A submit error that only means "reap completions first, then try again".
fn is_transient(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN))
}

/// A task-running mode to try: its feature names and how it configures the builder.
type Mode = (&'static [&'static str], fn(&mut io_uring::Builder));

/// Whether the ring runs in compat mode: single-shot accepts and receives into buffers of their
/// own, cancellation by user_data or by shutting the socket down, and no
/// `IORING_CQE_F_SOCK_NONEMPTY` (a full buffer stands for it). What kernels before 6.0 need,
/// down to 5.10; forced on newer ones so the tests run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compat {
    /// The kernel has everything; use it (provided-buffer rings are still probed).
    No,
    /// The kernel predates multishot receives (6.0).
    OldKernel,
    /// Asked for (`RINGHTTPD_IO_URING_COMPAT=1`).
    Forced,
}

impl Compat {
    /// The variable that forces compat mode on any kernel.
    pub const VARIABLE: &'static str = "RINGHTTPD_IO_URING_COMPAT";

    /// What this process should use: forced by `VARIABLE=1`, else decided by the kernel's
    /// version (multishot receives arrived in 6.0).
    pub fn detect() -> Compat {
        if std::env::var_os(Compat::VARIABLE).is_some_and(|v| v == "1") {
            Compat::Forced
        } else if crate::kernel::sys::kernel_version().is_some_and(|v| v < (6, 0)) {
            Compat::OldKernel
        } else {
            Compat::No
        }
    }
}

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
    // SUBMIT_ALL arrived in 5.18; before it a failing entry stops the rest of a submission,
    // which the backlog then submits again.
    for (names, configure) in attempts {
        for submit_all in [true, false] {
            let mut builder = IoUring::builder();
            builder.setup_cqsize(cq);
            if submit_all {
                builder.setup_submit_all();
            }
            configure(&mut builder);
            match builder.build(entries) {
                Ok(ring) => return Ok((ring, names.to_vec())),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
                Err(e) => return Err(e),
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// A linked file → pipe → socket splice pair must reach the kernel in one submission even
    /// when the SQ has room for only one of them: split, the second would run on its own after
    /// a short first splice instead of being cancelled.
    #[test]
    fn linked_pair_is_not_split_by_a_full_submission_queue() {
        let mut ring = Ring::new(8, RecvBuffers { count: 8, size: 64 }, None, Compat::No).expect("ring");
        let capacity = ring.ring.submission().capacity();
        for i in 1..capacity {
            // SAFETY: a no-op references no memory.
            unsafe { ring.push(opcode::Nop::new().build().user_data(1000 + i as u64)) };
        }
        let path = std::env::temp_dir().join(format!("ringhttpd-ring-test-{}", std::process::id()));
        std::fs::write(&path, b"ten bytes!").expect("temp file");
        let file = std::fs::File::open(&path).expect("open");
        std::fs::remove_file(&path).expect("unlink");
        let first = crate::kernel::sys::Pipe::new(4096).expect("pipe");
        let second = crate::kernel::sys::Pipe::new(4096).expect("pipe");
        let (tok_in, tok_out) = (
            Token::conn(1, 1, crate::kernel::token::Op::SpliceIn),
            Token::conn(1, 1, crate::kernel::token::Op::SpliceOut),
        );
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
