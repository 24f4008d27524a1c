//! Fuzzes the connection state machine itself, `ringhttpd::testing::fuzzing::drive_connection`: the
//! input is read as events (request bytes split at arbitrary boundaries and pipelined, FIN and
//! resets, and a made-up result for each operation in flight: short and failed sends, short or
//! failed splices and reads, missing files, cancellations, timeouts, a graceful stop) over a
//! simulated ring, without a kernel. Findings are panics: an unreachable transition, in-flight
//! accounting that overflows (debug assertions are on), two operations under one token, or an
//! aborted connection that cannot finish once everything in flight has completed.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringhttpd::testing::fuzzing::drive_connection(data);
});
