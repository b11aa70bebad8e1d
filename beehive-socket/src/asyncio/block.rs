//! Waiting for a future from a thread outside the runtime, with a deadline.
//!
//! The hive's blocking calls (`send`, `send_sync` from a module's own
//! thread) reach connection tasks through the same channels as the async
//! ones. Those channels need no runtime to be waited on, only a waker: here
//! the waker unparks the calling thread, which parks until woken or until
//! its deadline.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` on this thread until it is ready (`Some`) or `deadline`
/// has passed (`None`, the future is dropped).
pub(crate) fn block_on_deadline<F: Future>(future: F, deadline: Instant) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        // Spurious wake-ups only cost another poll.
        thread::park_timeout(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    #[test]
    fn a_ready_future_is_returned_at_once() {
        assert_eq!(block_on_deadline(async { 7 }, Instant::now()), Some(7));
    }

    #[test]
    fn a_value_sent_from_another_thread_wakes_the_waiter() {
        let (tx, rx) = oneshot::channel();
        let sender = thread::spawn(move || tx.send(42).unwrap());
        let got = block_on_deadline(rx, Instant::now() + Duration::from_secs(10));
        sender.join().unwrap();
        assert_eq!(got.map(Result::unwrap), Some(42));
    }

    #[test]
    fn a_future_that_never_finishes_gives_up_at_the_deadline() {
        let (_tx, rx) = oneshot::channel::<()>();
        let started = Instant::now();
        assert!(block_on_deadline(rx, started + Duration::from_millis(50)).is_none());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(50), "gave up after {waited:?}");
    }
}
