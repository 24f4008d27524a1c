//! Where worker threads run: pinned one per core, or left to the scheduler.
//!
//! Pinning pays when the workers own their cores; when the workers already cover every CPU the
//! process may use, other busy processes on the same cores (a load generator on a small box)
//! can only run where a pinned worker is runnable too, and the scheduler places both better.
//! This module only decides; it never changes a thread's affinity itself.

use std::fmt;

use core_affinity::CoreId;

/// What the command line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Pin only when the workers are fewer than the CPUs the process may use.
    Auto,
    /// `--pin`: worker *i* on allowed CPU *i mod n*, always.
    Pin,
    /// `--no-pin`: never pin.
    Unpinned,
}

/// The placement in effect: the CPUs the workers are pinned to (empty when unpinned), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub cores: Vec<CoreId>,
    reason: Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Forced,
    FewerWorkersThanCpus {
        workers: usize,
        cpus: usize,
    },
    WorkersCoverCpus {
        workers: usize,
        cpus: usize,
    },
    /// A cgroup CPU quota lets the process use fewer CPUs than its affinity mask names: every
    /// instance pinned to the first few would pile onto the same ones.
    Quota {
        quota: usize,
        cpus: usize,
    },
    CpusUnknown,
}

impl Decision {
    /// The CPU for worker `index`, if pinned.
    pub fn core_for(&self, index: usize) -> Option<CoreId> {
        (!self.cores.is_empty()).then(|| self.cores[index % self.cores.len()])
    }
}

/// Decides for `workers` workers, given the CPUs this process may run on (its affinity mask)
/// and how many it may use at once (`quota`: fewer under a cgroup CPU quota).
pub fn decide(asked: Placement, workers: usize, allowed: Vec<CoreId>, quota: usize) -> Decision {
    let cpus = allowed.len();
    let (pin, reason) = match asked {
        Placement::Pin if cpus == 0 => (false, Reason::CpusUnknown),
        Placement::Pin | Placement::Unpinned => (asked == Placement::Pin, Reason::Forced),
        Placement::Auto if cpus == 0 => (false, Reason::CpusUnknown),
        Placement::Auto if quota < cpus => (false, Reason::Quota { quota, cpus }),
        Placement::Auto if workers < cpus => (true, Reason::FewerWorkersThanCpus { workers, cpus }),
        Placement::Auto => (false, Reason::WorkersCoverCpus { workers, cpus }),
    };
    Decision { cores: if pin { allowed } else { Vec::new() }, reason }
}

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<CoreId> {
    core_affinity::get_core_ids().unwrap_or_default()
}

/// For the start-up line, e.g. `pinned (auto: workers 2 < CPUs 4)`.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.cores.is_empty() { "unpinned" } else { "pinned" })?;
        match self.reason {
            Reason::Forced => f.write_str(if self.cores.is_empty() { " (--no-pin)" } else { " (--pin)" }),
            Reason::FewerWorkersThanCpus { workers, cpus } => {
                write!(f, " (auto: workers {workers} < CPUs {cpus})")
            }
            Reason::WorkersCoverCpus { workers, cpus } => {
                write!(f, " (auto: workers {workers} >= CPUs {cpus})")
            }
            Reason::Quota { quota, cpus } => write!(f, " (auto: a CPU quota of {quota} of CPUs {cpus})"),
            Reason::CpusUnknown => f.write_str(" (the allowed CPUs are unknown)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(n: usize) -> Vec<CoreId> {
        (0..n).map(|id| CoreId { id }).collect()
    }

    #[test]
    fn auto_pins_only_when_workers_leave_cpus_free() {
        assert_eq!(decide(Placement::Auto, 1, cpus(2), 2).cores.len(), 2);
        assert_eq!(decide(Placement::Auto, 4, cpus(16), 16).core_for(5), Some(CoreId { id: 5 }));
        assert!(decide(Placement::Auto, 2, cpus(2), 2).cores.is_empty());
        assert!(decide(Placement::Auto, 8, cpus(2), 2).cores.is_empty());
    }

    #[test]
    fn auto_never_pins_under_a_cpu_quota() {
        let under_quota = decide(Placement::Auto, 2, cpus(64), 2);
        assert!(under_quota.cores.is_empty());
        assert_eq!(under_quota.to_string(), "unpinned (auto: a CPU quota of 2 of CPUs 64)");
    }

    #[test]
    fn forced_placements_ignore_the_counts() {
        assert_eq!(decide(Placement::Pin, 2, cpus(2), 2).core_for(3), Some(CoreId { id: 1 }));
        assert_eq!(decide(Placement::Unpinned, 1, cpus(16), 16).core_for(0), None);
        assert_eq!(decide(Placement::Pin, 2, Vec::new(), 2).core_for(0), None);
    }

    #[test]
    fn the_startup_words_say_what_and_why() {
        assert_eq!(
            decide(Placement::Auto, 2, cpus(2), 2).to_string(),
            "unpinned (auto: workers 2 >= CPUs 2)"
        );
        assert_eq!(decide(Placement::Auto, 1, cpus(2), 2).to_string(), "pinned (auto: workers 1 < CPUs 2)");
        assert_eq!(decide(Placement::Pin, 2, cpus(2), 2).to_string(), "pinned (--pin)");
        assert_eq!(decide(Placement::Unpinned, 2, cpus(2), 2).to_string(), "unpinned (--no-pin)");
    }
}
