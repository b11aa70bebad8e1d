//! Polling before parking.

use std::time::{Duration, Instant};

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
    /// The default: 10 µs, long enough for a peer running on another core
    /// to answer (a round trip through the bus takes 2–3 µs), short enough
    /// to cost little when it is not running.
    pub const DEFAULT: SpinBudget = SpinBudget(Duration::from_micros(10));
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

/// One wait's polling: busy-waiting until the budget is spent.
///
/// There is deliberately no `yield_now` phase. Polling pays off when the
/// other side is running on another core and about to act; if it is not
/// running, the quickest way to let it run is to park. A yield on a core
/// shared with an unrelated busy process hands that process the rest of a
/// time slice (milliseconds) and turns request/response traffic into
/// convoys.
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
        for _ in 0..32 {
            std::hint::spin_loop();
        }
        true
    }

    /// True while the budget lasts (the clock is read every 16th call).
    pub(crate) fn poll(&mut self) -> bool {
        if self.budget.is_zero() {
            return false;
        }
        self.rounds = self.rounds.wrapping_add(1);
        let started = *self.started.get_or_insert_with(Instant::now);
        self.rounds % 16 != 0 || started.elapsed() < self.budget
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
