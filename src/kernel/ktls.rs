//! Kernel TLS: the `tls` upper-layer protocol on a TCP socket, and the traffic keys of each
//! direction, after which the kernel seals what is sent (send, sendfile, splice alike) and
//! opens what is received. Records other than application data (alerts, key updates) are not
//! returned by a plain receive (it fails with EIO); `read_control_record` takes one.
//! This module never decides whether to use kTLS, only performs what it is asked.

use std::io;
use std::os::fd::RawFd;

/// The AEADs the kernel's `tls` module implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

const TLS_CIPHER_AES_GCM_128: u16 = 51;
const TLS_CIPHER_AES_GCM_256: u16 = 52;
const TLS_CIPHER_CHACHA20_POLY1305: u16 = 54;
const TLS_TX: libc::c_int = 1;
const TLS_RX: libc::c_int = 2;
/// cmsg types on SOL_TLS: set a sent record's type, read a received one's.
const TLS_SET_RECORD_TYPE: libc::c_int = 1;
const TLS_GET_RECORD_TYPE: libc::c_int = 2;

/// `struct tls12_crypto_info_*` of linux/tls.h: one layout covers the three ciphers (the
/// salt+iv of GCM is 4+8 bytes, ChaCha20's iv 12 and its salt none), the key is 16 or 32.
#[repr(C)]
struct CryptoInfo<const KEY: usize, const IV: usize, const SALT: usize> {
    version: u16,
    cipher_type: u16,
    iv: [u8; IV],
    key: [u8; KEY],
    salt: [u8; SALT],
    rec_seq: [u8; 8],
}

/// One direction's keys, as the kernel takes them.
pub struct Direction {
    cipher: Cipher,
    key: [u8; 32],
    /// The 12-byte nonce base rustls calls the IV (GCM splits it into salt and IV).
    iv: [u8; 12],
    seq: u64,
}

impl Drop for Direction {
    fn drop(&mut self) {
        // Best effort (the compiler may drop stores to memory about to be freed): the keys are
        // not left on purpose where the allocator hands memory out again.
        self.key = [0; 32];
        self.iv = [0; 12];
    }
}

impl Direction {
    /// `None` where the lengths do not fit the cipher.
    pub fn new(cipher: Cipher, key: &[u8], iv: &[u8], seq: u64) -> Option<Direction> {
        let key_len = if cipher == Cipher::Aes128Gcm { 16 } else { 32 };
        if key.len() != key_len || iv.len() != 12 {
            return None;
        }
        let mut d = Direction { cipher, key: [0; 32], iv: [0; 12], seq };
        d.key[..key_len].copy_from_slice(key);
        d.iv.copy_from_slice(iv);
        Some(d)
    }
}

/// Attaches the `tls` ULP. ENOENT: the kernel has no `tls` module (and cannot load one).
pub fn attach(fd: RawFd) -> io::Result<()> {
    let name = b"tls";
    // SAFETY: the option value is a valid buffer of the given length for the call's duration.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_TCP,
            libc::TCP_ULP,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Installs the keys of both directions on a socket with the ULP attached; from here on the
/// kernel seals and opens every record.
pub fn install(fd: RawFd, version: u16, tx: &Direction, rx: &Direction) -> io::Result<()> {
    set_keys(fd, TLS_TX, version, tx)?;
    set_keys(fd, TLS_RX, version, rx)
}

fn set_keys(fd: RawFd, which: libc::c_int, version: u16, d: &Direction) -> io::Result<()> {
    let seq = d.seq.to_be_bytes();
    match d.cipher {
        Cipher::Aes128Gcm => set(fd, which, &gcm::<16>(version, TLS_CIPHER_AES_GCM_128, d, seq)),
        Cipher::Aes256Gcm => set(fd, which, &gcm::<32>(version, TLS_CIPHER_AES_GCM_256, d, seq)),
        Cipher::Chacha20Poly1305 => {
            let info = CryptoInfo::<32, 12, 0> {
                version,
                cipher_type: TLS_CIPHER_CHACHA20_POLY1305,
                iv: d.iv,
                key: d.key,
                salt: [],
                rec_seq: seq,
            };
            set(fd, which, &info)
        }
    }
}

fn gcm<const KEY: usize>(
    version: u16,
    cipher_type: u16,
    d: &Direction,
    seq: [u8; 8],
) -> CryptoInfo<KEY, 8, 4> {
    let mut info = CryptoInfo { version, cipher_type, iv: [0; 8], key: [0; KEY], salt: [0; 4], rec_seq: seq };
    info.salt.copy_from_slice(&d.iv[..4]);
    info.iv.copy_from_slice(&d.iv[4..]);
    info.key.copy_from_slice(&d.key[..KEY]);
    info
}

fn set<T>(fd: RawFd, which: libc::c_int, info: &T) -> io::Result<()> {
    // SAFETY: `info` is a `repr(C)` struct laid out as linux/tls.h's crypto info for its
    // cipher, valid for reads of its size for the call's duration.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_TLS,
            which,
            (info as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The content type of an alert record.
pub const ALERT: u8 = 21;

/// Reads the next record, which a receive refused because it is not application data; its
/// content type and length in `buf`. Never blocks (EAGAIN if it is not all there).
pub fn read_control_record(fd: RawFd, buf: &mut [u8]) -> io::Result<(u8, usize)> {
    // Room for one cmsg with a one-byte payload, aligned as cmsghdr needs.
    let mut control = [0u64; 4];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: an all-zero msghdr is valid; its pointers are set just below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `msg` points at `iov` (into `buf`) and `control`, all alive and writable for the
    // call's duration.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `msg` was filled by the kernel; CMSG_FIRSTHDR/CMSG_DATA stay within `control`.
    let record_type = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() || (*cmsg).cmsg_level != libc::SOL_TLS || (*cmsg).cmsg_type != TLS_GET_RECORD_TYPE {
            return Err(io::Error::from(io::ErrorKind::InvalidData));
        }
        *libc::CMSG_DATA(cmsg)
    };
    Ok((record_type, n as usize))
}

/// Sends a warning-level close_notify alert, if the socket takes it at once.
pub fn send_close_notify(fd: RawFd) {
    send_alert(fd, [1, 0]);
}

/// Sends a fatal unexpected_message alert, if the socket takes it at once: the peer sent a
/// record the connection cannot follow.
pub fn send_unexpected_message(fd: RawFd) {
    send_alert(fd, [2, 10]);
}

/// Sends an alert record (level, description) if the socket takes it at once.
fn send_alert(fd: RawFd, alert: [u8; 2]) {
    let mut control = [0u64; 4];
    let mut iov = libc::iovec { iov_base: alert.as_ptr() as *mut libc::c_void, iov_len: alert.len() };
    // SAFETY: an all-zero msghdr is valid; its pointers are set just below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(1) } as usize;
    // SAFETY: `control` is aligned and large enough for one cmsg with a one-byte payload; the
    // kernel only reads `alert` through `iov`. All stay alive for the call's duration.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_TLS;
        (*cmsg).cmsg_type = TLS_SET_RECORD_TYPE;
        (*cmsg).cmsg_len = libc::CMSG_LEN(1) as usize;
        *libc::CMSG_DATA(cmsg) = ALERT;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
    }
}
