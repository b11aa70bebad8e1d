//! Polling before blocking, with the core handed over between polls.

use std::time::{Duration, Instant};

/// One wait's polling phase: `yield_now` between polls until the budget is
/// spent. Yielding rather than busy-waiting matters when another process
/// keeps a core busy: the thread this one waits for may share its core, and
/// a yield lets it run at once instead of after the budget.
pub(crate) struct Poll {
    budget: Duration,
    started: Option<Instant>,
    rounds: u32,
}

impl Poll {
    pub(crate) fn new(budget: Duration) -> Self {
        Poll { budget, started: None, rounds: 0 }
    }

    /// Gives the core away for a moment; false once the budget is spent
    /// (then the caller blocks).
    pub(crate) fn wait(&mut self) -> bool {
        if self.budget.is_zero() {
            return false;
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        self.rounds = self.rounds.wrapping_add(1);
        if self.rounds % 4 == 0 && started.elapsed() >= self.budget {
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
    fn no_budget_never_polls() {
        assert!(!Poll::new(Duration::ZERO).wait());
    }

    #[test]
    fn a_budget_ends() {
        let budget = Duration::from_micros(300);
        let t0 = Instant::now();
        let mut poll = Poll::new(budget);
        let mut rounds = 0u32;
        while poll.wait() {
            rounds += 1;
        }
        let took = t0.elapsed();
        assert!(rounds >= 3, "{rounds}");
        assert!(took >= budget, "{took:?}");
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
}
