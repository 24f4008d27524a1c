//! What operators see of a running server: Prometheus metrics, the access log (Combined Log
//! Format) and the error log on stderr.

pub(crate) mod access_log;
pub mod log;
pub(crate) mod metrics;
