//! Support for testing the server from outside: fault hooks the integration tests switch on
//! through the environment (debug builds only), and, with the `fuzzing` feature, the driver
//! that runs one connection against the simulated ring.

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod hooks;
