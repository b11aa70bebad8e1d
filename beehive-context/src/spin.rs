//! Polling before parking.

use std::time::{Duration, Instant};

/// How long a thread that has to wait (a receiver on an empty inbox, a
/// sender on a full one, a `send_sync` caller waiting for its response)
/// keeps polling before it parks.
///
/// While the budget lasts, the waiting thread checks its condition and
/// gives its core away ([`std::thread::yield_now`]) between checks; once
/// the budget is spent it parks until it is woken. Polling is bounded: it
/// starts only when an operation has to wait and ends after the budget, so
/// an idle hive uses no CPU. [`SpinBudget::OFF`] parks at once.
///
/// # Why poll, and why yield
///
/// Measured on a 2-core VM (Linux 6.18), with a sender and a receiver
/// thread (W1) and a `send_sync` caller and an echo module (W2):
///
/// - Waking a parked thread costs 20–25 µs when its core is idle. A budget
///   shorter than that (10 µs of busy-waiting, the previous default) makes
///   the two sides take turns parking: the receiver parks on an empty
///   inbox, the sender fills the inbox while it wakes up, parks on the
///   full inbox, and so on. W1 then ran at 8–13M messages/s instead of
///   18–20M, depending on how early in a run the first park happened.
/// - Busy-waiting collapses when another process keeps one core busy:
///   both threads then often share the other core, and a thread that
///   busy-waits holds it while the thread it waits for cannot run. W2 fell
///   to 60–90k round trips/s; with even 1 µs of busy-waiting before the
///   yields, W2's median round trip was 6.8 µs instead of 3.6 µs.
/// - Yielding between checks costs about 0.4 µs when nothing else wants
///   the core, and hands it straight to the other side when it does. With
///   this budget of yields, W2 ran at 520–550k round trips/s on an idle
///   machine (p99 3.6 µs; busy-waiting: 440–470k, p99 up to 15 µs) and at
///   210–240k with a busy loop pinned to one core (p99 3.8 µs); W1 at
///   15–19M messages/s idle and 12M with the busy loop.
/// - A yield on a core shared with an unrelated busy process can return
///   only at that process's next scheduler tick (4 ms here). Such a yield
///   spends the whole budget at once, so the thread parks right after it,
///   and a wake-up (which the scheduler serves promptly) takes over.
///
/// On a machine whose cores are all busy with other work, a smaller budget
/// (or [`SpinBudget::OFF`]) leaves more of the CPU to them.
///
/// ```
/// use std::time::Duration;
/// use beehive_context::{Hive, SpinBudget};
///
/// let hive = Hive::builder().spin(SpinBudget::new(Duration::from_micros(50))).build();
/// # drop(hive);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpinBudget(Duration);

impl SpinBudget {
    /// The default: 100 µs, several times the cost of waking a parked
    /// thread on an idle core, so that neither side of a busy exchange
    /// parks while the other is about to act.
    pub const DEFAULT: SpinBudget = SpinBudget(Duration::from_micros(100));
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

/// One wait's polling: a yield between checks until the budget is spent
/// (see [`SpinBudget`] for why there is no busy-waiting).
pub(crate) struct Spin {
    budget: Duration,
    started: Option<Instant>,
}

impl Spin {
    pub(crate) fn new(budget: SpinBudget) -> Self {
        Spin { budget: budget.0, started: None }
    }

    /// Gives the core away for a moment; false once the budget has been
    /// spent (the caller checks its condition after each `true`).
    pub(crate) fn wait(&mut self) -> bool {
        if self.budget.is_zero() {
            return false;
        }
        let now = Instant::now();
        if now.duration_since(*self.started.get_or_insert(now)) >= self.budget {
            return false;
        }
        std::thread::yield_now();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_never_polls() {
        assert!(!Spin::new(SpinBudget::OFF).wait());
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
