//! Polling before parking.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long a thread that has to wait (a receiver on an empty inbox, a
/// sender on a full one, a `send_sync` caller waiting for its response)
/// keeps polling before it parks.
///
/// While the budget lasts, the waiting thread checks its condition and
/// gives its core away ([`std::thread::yield_now`]) between checks (while
/// nobody else wants its core, it mostly pauses on the spot instead); once
/// the budget is spent it parks until it is woken. Polling is bounded: it
/// starts only when an operation has to wait and ends after the budget, so
/// an idle hive uses no CPU. [`SpinBudget::OFF`] parks at once.
///
/// An async receiver (`receive_async`) polls an empty inbox on the spot
/// for at most 20 µs of the budget, and only when the inbox's last message
/// came from another thread; the poll holds its executor's thread, and a
/// sender that is a task on that thread could not run meanwhile.
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
///   full inbox, and so on. Runs of W1 with hundreds of parks ran at
///   8–16M messages/s, runs with a handful at 18–20M.
/// - Busy-waiting collapses when another process keeps one core busy:
///   both threads then often share the other core, and a thread that
///   busy-waits holds it while the thread it waits for cannot run. W2 fell
///   to 60–90k round trips/s; with even 1 µs of busy-waiting before the
///   yields, its median round trip there was 6.8 µs instead of 3.6 µs.
/// - Yielding between checks costs about 0.4 µs when nothing else wants
///   the core, and hands it straight to the other side when it does. With
///   a budget of yields, W2 ran at 500–570k round trips/s on an idle
///   machine (p99 3.5 µs; busy-waiting: 440–470k, p99 up to 15 µs) and W1
///   at 14–19M messages/s idle and 12M with a busy loop pinned to one core.
/// - A yield on a core shared with an unrelated busy process can return
///   only at that process's next scheduler tick (4 ms here). Such a yield
///   (one that takes 1 ms or more) ends the wait's polling, and the
///   thread's waits park at once for the next 10 ms: a parked thread is
///   woken promptly, and often onto the other core. Without this pause,
///   W2 with a busy loop on one core ranged from 30k to 190k round trips/s
///   between runs (p50 3.5 µs, the rest lost in 4 ms yields); with it,
///   200–230k (p99 14 µs). A shorter threshold (200 µs) made W3, where
///   four receivers and a sender share two cores, fall from 12M to 4–6M
///   messages/s, since receivers sharing a core hold it that long.
///
/// - A yield costs a system call even when it returns at once (in W2,
///   40 % of the time went to the kernel). While a thread's last yield
///   came back within 2 µs (nobody else wanted its core), 31 rounds in 32
///   pause on the spot (a few spin-loop hints) instead: the median W2
///   round trip fell from 1.6 to 1.1 µs and W2 rose by a fifth (450k to
///   540k round trips/s); with a core busy, where yields hand the core
///   over and take longer, nothing changes (190–200k either way). Such a
///   thread also starts each wait with pauses rather than a yield (W2:
///   610k to 650k round trips/s), and reads the clock once in eight
///   pausing rounds (a clock read costs about as much as the pauses).
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

/// A yield that returns only after this long lost the core to another
/// process for a whole time slice (a yield on a free core takes ~0.4 µs,
/// and threads of the hive that share a core hand it back within
/// microseconds).
const LOST_CORE: Duration = Duration::from_millis(1);

/// For this long after a yield lost the core, the thread's waits park at
/// once instead of polling.
const PARK_AFTER_LOST_CORE: Duration = Duration::from_millis(10);

/// A yield that returns within this found nobody else wanting the core
/// (one that handed it over returns after the other thread ran).
const ALONE_YIELD: Duration = Duration::from_micros(2);

/// While a thread has its core to itself, one round in this many yields;
/// the others pause on the spot.
const YIELD_EVERY: u32 = 32;

/// Spin-loop hints per pausing round (a fraction of a microsecond).
const PAUSES: u32 = 4;

/// Pausing rounds read the clock (for the budget and the deadline) once in
/// this many: a clock read costs as much as the pauses of a round on a VM.
const CLOCK_EVERY: u32 = 8;

thread_local! {
    /// This thread's last yield returned within [`ALONE_YIELD`].
    static ALONE: Cell<bool> = const { Cell::new(false) };
    /// When a yield of this thread last lost the core.
    static LOST_CORE_AT: Cell<Option<Instant>> = const { Cell::new(None) };
}

impl SpinBudget {
    /// One wait's polling under this budget: call [`SpinWait::wait`] before
    /// each check of the condition waited for; once it returns false, park
    /// or block. The socket driver of `beehive-socket` waits this way too,
    /// so one setting governs both.
    pub fn waiter(self) -> SpinWait {
        SpinWait(Spin::new(self))
    }
}

/// One wait's polling phase under a [`SpinBudget`] (from
/// [`SpinBudget::waiter`]): yields the core between checks until the
/// budget is spent, and not at all for a while after a yield lost the core
/// to another process.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use beehive_context::SpinBudget;
///
/// let ready = AtomicBool::new(false);
/// let mut spin = SpinBudget::DEFAULT.waiter();
/// let mut polls = 0;
/// while !ready.load(Ordering::Acquire) {
///     polls += 1;
///     if polls == 3 {
///         ready.store(true, Ordering::Release); // another thread, in real use
///     }
///     if !spin.wait() {
///         break; // the budget is spent: block until woken
///     }
/// }
/// ```
#[derive(Debug)]
pub struct SpinWait(Spin);

impl SpinWait {
    /// Gives the core away for a moment; false once the budget has been
    /// spent (the caller checks its condition after each `true`).
    pub fn wait(&mut self) -> bool {
        self.0.wait()
    }
}

/// One wait's polling: a yield between checks until the budget is spent,
/// or mostly pauses while the thread has its core to itself (see
/// [`SpinBudget`] for why).
#[derive(Debug)]
pub(crate) struct Spin {
    budget: Duration,
    started: Option<Instant>,
    rounds: u32,
    /// Polling ends here too, if the budget lasts longer.
    deadline: Option<Instant>,
}

impl Spin {
    pub(crate) fn new(budget: SpinBudget) -> Self {
        Spin { budget: budget.0, started: None, rounds: 0, deadline: None }
    }

    /// Polling ends at `deadline` at the latest (when set).
    pub(crate) fn until(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    fn before_deadline(&self, now: Instant) -> bool {
        self.deadline.is_none_or(|d| now < d)
    }

    /// Gives the core away for a moment; false once the budget has been
    /// spent (the caller checks its condition after each `true`), and at
    /// once while this thread is parking because a yield lost its core.
    pub(crate) fn wait(&mut self) -> bool {
        self.wait_with(Instant::now, || {
            let t0 = Instant::now();
            std::thread::yield_now();
            t0.elapsed()
        })
    }

    /// [`Spin::wait`] with `now` as the clock and `give_away` giving the
    /// core away (returning how long that took).
    fn wait_with(&mut self, now: impl Fn() -> Instant, give_away: impl FnOnce() -> Duration) -> bool {
        if self.started.is_none() && ALONE.get() {
            // Alone on its core, the thread starts with pauses (a clock
            // read) rather than a yield (a system call).
            if !self.may_poll(now()) {
                return false;
            }
        }
        if self.pauses() {
            for _ in 0..PAUSES {
                std::hint::spin_loop();
            }
            if self.rounds % CLOCK_EVERY != 0 {
                return true;
            }
            return self.may_poll(now());
        }
        self.wait_at(now(), give_away)
    }

    /// True when this round pauses on the spot instead of yielding: while
    /// this thread's last yield found nobody else wanting its core, all
    /// but one round in [`YIELD_EVERY`] do (the yields keep checking).
    fn pauses(&mut self) -> bool {
        self.rounds = self.rounds.wrapping_add(1);
        self.rounds % YIELD_EVERY != 0 && self.started.is_some() && !self.budget.is_zero() && ALONE.get()
    }

    /// Starts the wait at `now` if it has not started; true while it may
    /// still poll at `now`: budget left, deadline not passed.
    fn may_poll(&mut self, now: Instant) -> bool {
        self.begin(now)
            && self.started.is_some_and(|started| now.duration_since(started) < self.budget)
            && self.before_deadline(now)
    }

    /// Starts the budget at `now` on the first round; false when this wait
    /// must not poll at all (no budget, or a yield of this thread lost the
    /// core a moment ago).
    fn begin(&mut self, now: Instant) -> bool {
        if self.budget.is_zero() {
            return false;
        }
        if self.started.is_none() {
            if LOST_CORE_AT.get().is_some_and(|at| now.duration_since(at) < PARK_AFTER_LOST_CORE) {
                self.budget = Duration::ZERO;
                return false;
            }
            self.started = Some(now);
        }
        true
    }

    /// [`Spin::wait`] at `now`, with `give_away` giving the core away and
    /// returning how long that took.
    fn wait_at(&mut self, now: Instant, give_away: impl FnOnce() -> Duration) -> bool {
        if !self.may_poll(now) {
            return false;
        }
        let took = give_away();
        self.yielded(took, now + took);
        true
    }

    /// Notes a yield that took `took` and returned at `now`: one that lost
    /// the core ends this wait's polling and the next ones' for a while.
    fn yielded(&mut self, took: Duration, now: Instant) {
        ALONE.set(took < ALONE_YIELD);
        if took >= LOST_CORE {
            LOST_CORE_AT.set(Some(now));
            self.budget = Duration::ZERO;
        }
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

    #[test]
    fn a_yield_that_lost_the_core_makes_this_threads_waits_park_at_once() {
        // The clock and the yields are stand-ins, so that a loaded machine
        // cannot make a real yield lose the core or a pause run out here.
        let short = || Duration::from_micros(5);
        let t = Instant::now();
        let budget = SpinBudget::new(Duration::from_secs(1));
        let mut spin = Spin::new(budget);
        assert!(spin.wait_at(t, short));
        assert!(spin.wait_at(t, short), "a short yield keeps polling");
        assert!(spin.wait_at(t, || LOST_CORE - Duration::from_nanos(1)), "just under the threshold too");
        assert!(spin.wait_at(t, || LOST_CORE), "the yield that lost the core still returns");
        assert!(!spin.wait_at(t, short), "then the wait that lost the core parks");
        let lost_at = t + LOST_CORE;
        assert!(!Spin::new(budget).wait_at(lost_at, short), "so do this thread's next waits");
        let almost = lost_at + PARK_AFTER_LOST_CORE - Duration::from_nanos(1);
        assert!(!Spin::new(budget).wait_at(almost, short), "for the whole pause");
        // Other threads keep polling.
        assert!(std::thread::spawn(move || Spin::new(budget).wait_at(lost_at, short)).join().unwrap());
        // Until the pause has passed.
        assert!(Spin::new(budget).wait_at(lost_at + PARK_AFTER_LOST_CORE, short));
    }

    #[test]
    fn a_thread_alone_on_its_core_pauses_between_yields() {
        let t = Instant::now();
        let budget = SpinBudget::new(Duration::from_secs(1));
        let mut spin = Spin::new(budget);
        assert!(!spin.pauses(), "a wait that has not started yields");
        // A yield that came back at once: the core is this thread's.
        assert!(spin.wait_at(t, || Duration::from_nanos(300)));
        // Rounds 2 to 65 of this wait: every 32nd yields.
        let pattern: Vec<bool> = (0..64).map(|_| spin.pauses()).collect();
        let yields: Vec<usize> = pattern.iter().enumerate().filter(|(_, p)| !**p).map(|(i, _)| i + 2).collect();
        assert_eq!(yields, vec![32, 64], "one round in {YIELD_EVERY} yields");
        // A yield that took longer: another thread ran; every round yields.
        assert!(spin.wait_at(t, || ALONE_YIELD));
        assert!((0..64).all(|_| !spin.pauses()));
        // Alone again, but without a budget nothing pauses.
        assert!(Spin::new(budget).wait_at(t, || Duration::ZERO));
        let mut off = Spin::new(SpinBudget::OFF);
        assert!((0..8).all(|_| !off.pauses()));
    }

    #[test]
    fn a_waiter_polls_for_its_budget_and_then_stops() {
        assert!(!SpinBudget::OFF.waiter().wait(), "no budget: block at once");
        let mut w = SpinBudget::new(Duration::from_millis(2)).waiter();
        assert!(w.wait(), "a fresh budget polls");
        let t0 = Instant::now();
        while w.wait() {
            assert!(t0.elapsed() < Duration::from_secs(5), "the budget never ended");
        }
    }

    #[test]
    fn a_deadline_before_the_budget_ends_the_polling() {
        // Stand-ins for the clock and the yields (5 µs: another thread ran,
        // so every round yields), so that a loaded machine cannot end the
        // polling early by making a real yield lose the core.
        let t = Instant::now();
        let deadline = t + Duration::from_millis(5);
        let clock = Cell::new(t);
        let mut spin = Spin::new(SpinBudget::new(Duration::from_secs(30))).until(Some(deadline));
        let mut rounds = 0;
        while spin.wait_with(|| clock.get(), || Duration::from_micros(5)) {
            rounds += 1;
            assert!(rounds <= 50, "polled on past the deadline");
            clock.set(clock.get() + Duration::from_micros(100));
        }
        assert_eq!(rounds, 50, "stopped before the deadline");
        assert!(
            !Spin::new(SpinBudget::DEFAULT).until(Some(t)).wait_with(|| t, || Duration::ZERO),
            "a passed deadline does not poll at all"
        );
    }

    /// Makes this thread one whose last yield found its core free.
    fn alone(t: Instant) {
        assert!(Spin::new(SpinBudget::DEFAULT).wait_at(t, || Duration::from_nanos(300)));
    }

    fn no_yield() -> Duration {
        panic!("a thread alone on its core yielded where it should pause")
    }

    #[test]
    fn a_thread_alone_pauses_from_the_first_round_and_reads_its_clock_every_eighth() {
        let t = Instant::now();
        alone(t);
        let budget = SpinBudget::new(Duration::from_micros(100));
        let clock = Cell::new(t);
        let mut spin = Spin::new(budget);
        assert!(spin.wait_with(|| clock.get(), no_yield), "the first round pauses");
        assert_eq!(spin.started, Some(t));
        // The budget is spent: noticed at the next clock read (round 8),
        // not before.
        clock.set(t + budget.duration());
        let polled = (0..CLOCK_EVERY).take_while(|_| spin.wait_with(|| clock.get(), no_yield)).count();
        assert_eq!(polled as u32, CLOCK_EVERY - 2);
    }

    #[test]
    fn a_thread_alone_stops_pausing_at_its_deadline() {
        let t = Instant::now();
        alone(t);
        let budget = SpinBudget::new(Duration::from_secs(1));
        let deadline = t + Duration::from_micros(10);
        let clock = Cell::new(t);
        let mut spin = Spin::new(budget).until(Some(deadline));
        assert!(spin.wait_with(|| clock.get(), no_yield));
        clock.set(deadline);
        let polled = (0..CLOCK_EVERY).take_while(|_| spin.wait_with(|| clock.get(), no_yield)).count();
        assert_eq!(polled as u32, CLOCK_EVERY - 2, "the deadline is noticed at the next clock read");
        // A deadline already passed: not even the first round polls.
        let mut late = Spin::new(budget).until(Some(t));
        assert!(!late.wait_with(|| t + Duration::from_nanos(1), no_yield));
        assert!(!Spin::new(budget).until(Some(t)).wait_with(|| t, no_yield));
    }

    #[test]
    fn the_budget_counts_from_the_first_wait() {
        let t = Instant::now();
        let budget = SpinBudget::new(Duration::from_micros(100));
        let mut spin = Spin::new(budget);
        let short = || Duration::ZERO;
        assert!(spin.wait_at(t, short));
        assert!(spin.wait_at(t + Duration::from_micros(99), short));
        assert!(!spin.wait_at(t + Duration::from_micros(100), short), "spent");
    }
}
