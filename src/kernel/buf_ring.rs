//! The provided-buffer ring: receive buffers the kernel picks from itself, so an idle
//! connection holds no receive buffer at all. It owns the buffers and the ring of entries the
//! kernel reads, and must never hand a buffer to the kernel twice or free one it may still fill.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// Sizes of the receive buffer ring: `count` buffers of `size` bytes each.
#[derive(Debug, Clone, Copy)]
pub struct RecvBuffers {
    pub count: u16,
    pub size: u32,
}

/// The buffer group every receive picks from.
pub(super) const BUF_GROUP: u16 = 0;

/// The provided-buffer ring: `count` buffers of `size` bytes the kernel picks from for receives.
pub(super) struct BufRing {
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    pub(super) data: Box<[u8]>,
    pub(super) size: usize,
    mask: u16,
    tail: u16,
}

impl BufRing {
    /// Allocates the buffers and registers them with `ring`'s kernel side.
    pub(super) fn new(ring: &IoUring, recv: &RecvBuffers) -> io::Result<BufRing> {
        let mut bufs = BufRing::allocate(recv)?;
        let (entries, count) = (bufs.entries, recv.count);
        // SAFETY: `entries` is page aligned, sized for `count` entries, and lives (with `data`)
        // until this BufRing is dropped, which happens after the ring (field order in `Ring`).
        unsafe { ring.submitter().register_buf_ring_with_flags(entries as u64, count, BUF_GROUP, 0) }?;
        for bid in 0..count {
            bufs.recycle(bid);
        }
        Ok(bufs)
    }

    /// The buffers alone, never shown to a kernel: what the simulated ring receives into, on
    /// any kernel (those before 5.19 have no provided-buffer rings).
    #[cfg(feature = "fuzzing")]
    pub(super) fn unregistered(recv: &RecvBuffers) -> io::Result<BufRing> {
        BufRing::allocate(recv)
    }

    fn allocate(recv: &RecvBuffers) -> io::Result<BufRing> {
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
        Ok(BufRing { entries, entries_layout, data, size: recv.size as usize, mask: count - 1, tail: 0 })
    }

    pub(super) fn slice(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * self.size;
        &self.data[start..start + len.min(self.size)]
    }

    pub(super) fn recycle(&mut self, bid: u16) {
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
