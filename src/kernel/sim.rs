//! The simulated ring (the `fuzzing` feature only): submissions are recorded instead of
//! submitted, and the connection fuzzer completes them with results of its choosing. Real
//! memory backs everything an operation owns, so ownership bugs still show. It must never be
//! compiled into a server that serves.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::OwnedFd;

use super::ring::{Completion, OpMemory, Ring};

/// What a simulated ring recorded: the user_data of every submission in order, the length
/// each splice asked for, and which receives are multishot (only those may complete with
/// `MORE`).
#[derive(Default)]
pub struct Simulated {
    pub submitted: VecDeque<u64>,
    pub splice_len: HashMap<u64, u32>,
    pub multishot: HashSet<u64>,
    next_bid: u16,
}

/// The simulated ring, for driving connections without a kernel (`crate::testing::fuzzing`).
impl Ring {
    /// A ring whose submissions are recorded instead of submitted (a real, idle io_uring is
    /// still made; receives are simulated into provided buffers the kernel never sees, so the
    /// simulation runs the same on every kernel).
    pub(crate) fn simulated() -> io::Result<Ring> {
        let recv = super::buf_ring::RecvBuffers { count: 16, size: 2048 };
        let mut ring = Ring::new(64, recv, None, super::ring::Compat::Forced)?;
        ring.bufs = Some(super::buf_ring::BufRing::unregistered(&recv)?);
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
        let bufs = self.bufs.as_mut().expect("a simulated ring has provided buffers");
        let start = bid as usize * bufs.size;
        let len = bytes.len().min(bufs.size);
        bufs.data[start..start + len].copy_from_slice(&bytes[..len]);
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
