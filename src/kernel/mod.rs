//! The kernel interface: the io_uring ring (submission, completion, and the memory every
//! operation in flight owns), the provided-buffer ring, the `user_data` encoding, pipes, and
//! the plain syscalls made beside the ring.
//!
//! This is the only layer with `unsafe`; every block carries a `// SAFETY:` note. Nothing above
//! it touches a raw pointer or a raw descriptor's lifetime.

pub mod buf_ring;
pub mod direct;
pub mod ktls;
pub mod pipe_pool;
pub mod ring;
#[cfg(feature = "fuzzing")]
pub mod sim;
pub mod sys;
pub mod token;
