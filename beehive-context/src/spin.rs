//! Polling before parking.

use std::time::{Duration, Instant};

/// Busy-waiting rounds before a poll starts yielding (about 2 µs).
const BUSY_ROUNDS: u32 = 64;

/// How long a thread that has to wait (a receiver on an empty inbox, a
/// sender on a full one, a `send_sync` caller waiting for its response)
/// keeps polling before it parks.
///
/// Waking a parked thread costs a system call on the waking side and
/// several microseconds of scheduler latency on the woken one, far more
/// than the gap between two messages of a busy sender; a short poll avoids
/// both. Polling is bounded: it starts only when an operation has to wait
/// and ends after the budget, so an idle hive uses no CPU. On a machine
/// whose cores are all busy with other work, a smaller budget (or
/// [`SpinBudget::OFF`]) leaves more of the CPU to them.
///
/// ```
/// use std::time::Duration;
/// use beehive_context::{Hive, SpinBudget};
///
/// let hive = Hive::builder().spin(SpinBudget::new(Duration::from_micros(5))).build();
/// # drop(hive);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpinBudget(Duration);

impl SpinBudget {
    /// The default: 20 µs.
    pub const DEFAULT: SpinBudget = SpinBudget(Duration::from_micros(20));
    /// No polling: a thread that has to wait parks at once.
    pub const OFF: SpinBudget = SpinBudget(Duration::ZERO);

    /// A budget of `duration`.
    pub const fn new(duration: Duration) -> Self {
        SpinBudget(duration)
    }

    /// The budget.
    pub const fn duration(&self) -> Duration {
        self.0
    }
}

impl Default for SpinBudget {
    fn default() -> Self {
        SpinBudget::DEFAULT
    }
}

/// One wait's polling: a few rounds of busy-waiting (the other side is
/// usually running on another core and about to act), then `yield_now`
/// between polls so that a peer waiting for this core gets to run, until
/// the budget is spent.
pub(crate) struct Spin {
    budget: Duration,
    started: Option<Instant>,
    rounds: u32,
}

impl Spin {
    pub(crate) fn new(budget: SpinBudget) -> Self {
        Spin { budget: budget.0, started: None, rounds: 0 }
    }

    /// Waits a moment; false once the budget has been spent.
    pub(crate) fn wait(&mut self) -> bool {
        if !self.poll() {
            return false;
        }
        if self.rounds <= BUSY_ROUNDS {
            for _ in 0..32 {
                std::hint::spin_loop();
            }
        } else {
            std::thread::yield_now();
        }
        true
    }

    /// True while the budget lasts (the clock is read every 16th call
    /// during the busy rounds, then at every call).
    pub(crate) fn poll(&mut self) -> bool {
        if self.budget.is_zero() {
            return false;
        }
        self.rounds = self.rounds.saturating_add(1);
        let started = *self.started.get_or_insert_with(Instant::now);
        (self.rounds <= BUSY_ROUNDS && self.rounds % 16 != 0) || started.elapsed() < self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_never_polls() {
        assert!(!Spin::new(SpinBudget::OFF).wait());
        assert!(!Spin::new(SpinBudget::OFF).poll());
    }

    #[test]
    fn a_budget_ends() {
        let budget = SpinBudget::new(Duration::from_micros(200));
        let t0 = Instant::now();
        let mut spin = Spin::new(budget);
        let mut rounds = 0u64;
        while spin.wait() {
            rounds += 1;
        }
        let took = t0.elapsed();
        assert!(rounds > 0);
        assert!(took >= budget.duration(), "{took:?}");
        // Generous upper bound: a descheduled thread may overshoot.
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
}
