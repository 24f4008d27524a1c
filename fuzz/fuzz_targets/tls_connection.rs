//! Fuzzes an HTTPS connection, `ringhttpd::testing::fuzzing::drive_tls_connection`: the same
//! simulated ring and events as the `connection` target, with a real rustls client (trusting
//! the driver's test certificate) on the other side. The input chooses what the client offers
//! (TLS 1.3 or 1.2, cipher suites, ALPN, a session to resume), cuts the client's flights and
//! records where it likes, corrupts, drops or makes up bytes on their way, decides when the
//! client reads the server's flights and writes its requests (a piece at a time), and completes
//! the server's operations with results of its choosing. Findings are panics: the connection
//! driver's (an unreachable transition, in-flight accounting, an aborted connection that
//! cannot finish, an operation left in flight), plus a client that rejects what the server sent
//! although nothing was tampered with, decrypted bytes that are not well-formed HTTP/1.1
//! responses (or more responses than requests), a handshake counted twice, and an untampered
//! exchange that, let run to completion, does not finish its handshake or answer its requests.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringhttpd::testing::fuzzing::drive_tls_connection(data);
});
