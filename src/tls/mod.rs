//! HTTPS: the certificates (`certs`), the rustls configuration every connection shares
//! (`config`), and one connection's TLS state in user space (`session`). The handshake runs in
//! user space, driven by the ring's receives and sends like any other bytes; once it is done
//! the connection hands the record layer to the kernel (`kernel::ktls`) where it can, so file
//! bodies still go out with sendfile and splice, and otherwise seals its records here.
//! Nothing in this layer touches a socket.

pub mod certs;
pub mod config;
pub mod session;
