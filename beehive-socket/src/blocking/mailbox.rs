//! A bounded queue with blocking, timed and non-blocking ends.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use beehive_context::SpinBudget;

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Threads blocked in `push_until`.
    senders: usize,
    /// Threads blocked in `pop_until`.
    receivers: usize,
}

/// A bounded multi-producer, multi-consumer queue. Closing it refuses new
/// items; those already queued can still be taken.
#[derive(Debug)]
pub(crate) struct Mailbox<T> {
    state: Mutex<State<T>>,
    len: AtomicUsize,
    not_empty: Condvar,
    not_full: Condvar,
    capacity: usize,
    spin: SpinBudget,
}

/// Why an item was not queued; the item comes back.
#[derive(Debug)]
pub(crate) enum Refused<T> {
    Full(T),
    Closed(T),
}

impl<T> Mailbox<T> {
    pub(crate) fn new(capacity: usize, spin: SpinBudget) -> Self {
        Mailbox {
            state: Mutex::new(State { items: VecDeque::new(), closed: false, senders: 0, receivers: 0 }),
            len: AtomicUsize::new(0),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            capacity: capacity.max(1),
            spin,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pushed(&self, mut state: MutexGuard<'_, State<T>>, item: T) {
        state.items.push_back(item);
        self.len.store(state.items.len(), Ordering::Release);
        let wake = state.receivers > 0;
        drop(state);
        if wake {
            self.not_empty.notify_one();
        }
    }

    /// Queues `item` if there is room.
    pub(crate) fn try_push(&self, item: T) -> Result<(), Refused<T>> {
        let state = self.lock();
        if state.closed {
            return Err(Refused::Closed(item));
        }
        if state.items.len() >= self.capacity {
            return Err(Refused::Full(item));
        }
        self.pushed(state, item);
        Ok(())
    }

    /// Queues `item`, waiting for room until `deadline` (without one: until
    /// there is room or the mailbox is closed).
    pub(crate) fn push_until(&self, item: T, deadline: Option<Instant>) -> Result<(), Refused<T>> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return Err(Refused::Closed(item));
            }
            if state.items.len() < self.capacity {
                self.pushed(state, item);
                return Ok(());
            }
            state.senders += 1;
            state = match deadline {
                None => self.not_full.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        state.senders -= 1;
                        return Err(Refused::Full(item));
                    }
                    self.not_full.wait_timeout(state, d - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
            state.senders -= 1;
        }
    }

    fn popped(&self, mut state: MutexGuard<'_, State<T>>) -> Option<T> {
        let item = state.items.pop_front()?;
        self.len.store(state.items.len(), Ordering::Release);
        let wake = state.senders > 0;
        drop(state);
        if wake {
            self.not_full.notify_one();
        }
        Some(item)
    }

    /// The next item, if one is queued.
    pub(crate) fn try_pop(&self) -> Option<T> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.popped(self.lock())
    }

    /// The next item, waiting until `deadline` (without one: until an item
    /// comes or the mailbox is closed and empty). `None`: nothing came.
    pub(crate) fn pop_until(&self, deadline: Option<Instant>) -> Option<T> {
        let mut poll = self.spin.waiter();
        while self.len.load(Ordering::Acquire) == 0 && poll.wait() {}
        let mut state = self.lock();
        loop {
            if !state.items.is_empty() {
                return self.popped(state);
            }
            if state.closed {
                return None;
            }
            state.receivers += 1;
            state = match deadline {
                None => self.not_empty.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        state.receivers -= 1;
                        return None;
                    }
                    self.not_empty.wait_timeout(state, d - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
            state.receivers -= 1;
        }
    }

    /// Refuses further items and wakes every waiting thread.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn bounded_in_order_and_closable() {
        let m = Mailbox::new(2, SpinBudget::OFF);
        m.try_push(1).unwrap();
        m.try_push(2).unwrap();
        assert!(matches!(m.try_push(3), Err(Refused::Full(3))));
        assert!(matches!(m.push_until(3, Some(Instant::now())), Err(Refused::Full(3))));
        assert_eq!(m.try_pop(), Some(1));
        m.close();
        assert!(matches!(m.try_push(4), Err(Refused::Closed(4))));
        assert_eq!(m.pop_until(None), Some(2));
        assert_eq!(m.pop_until(None), None);
    }

    #[test]
    fn a_blocked_sender_is_released_by_a_receive() {
        let m = Arc::new(Mailbox::new(1, SpinBudget::OFF));
        m.try_push(1).unwrap();
        let sender = {
            let m = Arc::clone(&m);
            std::thread::spawn(move || m.push_until(2, None).is_ok())
        };
        // The sender waits for room; a receive makes it.
        while m.lock().senders == 0 {
            std::thread::yield_now();
        }
        assert_eq!(m.pop_until(None), Some(1));
        assert!(sender.join().unwrap());
        assert_eq!(m.lock().senders, 0, "the sender no longer counts as waiting");
        assert_eq!(m.pop_until(None), Some(2));
    }

    #[test]
    fn a_blocked_receiver_is_released_by_close() {
        let m = Arc::new(Mailbox::<u32>::new(1, SpinBudget::new(Duration::from_micros(50))));
        let receiver = {
            let m = Arc::clone(&m);
            std::thread::spawn(move || m.pop_until(None))
        };
        while m.lock().receivers == 0 {
            std::thread::yield_now();
        }
        m.close();
        assert_eq!(receiver.join().unwrap(), None);
        assert_eq!(m.lock().receivers, 0, "the receiver no longer counts as waiting");
    }

    #[test]
    fn timed_waits_end_at_their_deadline() {
        let m = Mailbox::<u32>::new(1, SpinBudget::OFF);
        let t0 = Instant::now();
        assert_eq!(m.pop_until(Some(t0 + Duration::from_millis(20))), None);
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(20) && took < Duration::from_secs(2), "{took:?}");
        assert_eq!(m.lock().receivers, 0);
        m.try_push(1).unwrap();
        let t0 = Instant::now();
        assert!(matches!(m.push_until(2, Some(t0 + Duration::from_millis(20))), Err(Refused::Full(2))));
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(20) && took < Duration::from_secs(2), "{took:?}");
        assert_eq!(m.lock().senders, 0);
    }
}
