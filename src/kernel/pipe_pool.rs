//! A per-worker pool of pipes for splicing file bodies. A pipe is taken only while a body is in
//! flight and returned empty, so idle connections hold no pipe pages (the per-user pipe page
//! limit would otherwise shrink new pipes after about a thousand connections).

use crate::kernel::sys::Pipe;

/// Bytes each pipe is asked to hold: fewer, larger splices per body.
const PIPE_SIZE: usize = 1024 * 1024;
/// Empty pipes kept for reuse; more are closed when returned.
const MAX_IDLE: usize = 64;

#[derive(Default)]
pub struct PipePool {
    idle: Vec<Pipe>,
}

impl PipePool {
    /// An empty pipe, reused or new; `None` if the process is out of descriptors.
    pub fn take(&mut self) -> Option<Pipe> {
        self.idle.pop().or_else(|| match Pipe::new(PIPE_SIZE) {
            Ok(p) => Some(p),
            Err(e) => {
                crate::log_warn!("cannot create a pipe: {e}");
                None
            }
        })
    }

    /// Returns a pipe that holds no data (a pipe with leftover bytes must be dropped instead).
    pub fn give_back(&mut self, pipe: Pipe) {
        if self.idle.len() < MAX_IDLE {
            self.idle.push(pipe);
        }
    }
}
