//! Thread hand-off round trip: two threads take turns through one atomic,
//! each waiting for its turn by yielding its core (`yield`) or by parking
//! until the other unparks it (`park`); the mean round trip is printed in
//! microseconds.
//!
//! Run on one core, it is the floor of a request/response between two OS
//! threads that share a core (W2 when another process keeps the other core
//! busy): every round trip needs two switches between the threads, whatever
//! the bus does. On the 2-core VM of the README: about 2.2 µs with yields
//! and 3.4 µs with parks.
//!
//! ```sh
//! cargo build --release -p beehive-bench --example handoff
//! taskset -c 1 target/release/examples/handoff yield
//! taskset -c 1 target/release/examples/handoff park
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::Instant;

const ROUND_TRIPS: u64 = 200_000;

#[derive(Clone, Copy, PartialEq)]
enum Wait {
    Yield,
    Park,
}

impl Wait {
    /// Waits until `turn` holds `value`; `Park` relies on the other thread
    /// unparking this one after each store.
    fn until(self, turn: &AtomicU64, value: u64) {
        while turn.load(Ordering::Acquire) != value {
            match self {
                Wait::Yield => std::thread::yield_now(),
                Wait::Park => std::thread::park(),
            }
        }
    }

    /// Passes the turn: stores `value` and, for `Park`, wakes `other`.
    fn pass(self, turn: &AtomicU64, value: u64, other: &Thread) {
        turn.store(value, Ordering::Release);
        if self == Wait::Park {
            other.unpark();
        }
    }
}

fn main() {
    let wait = match std::env::args().nth(1).as_deref() {
        None | Some("yield") => Wait::Yield,
        Some("park") => Wait::Park,
        Some(other) => {
            eprintln!("usage: handoff [yield|park] (got {other:?})");
            std::process::exit(2);
        }
    };
    let turn = Arc::new(AtomicU64::new(0));
    let main_thread = std::thread::current();
    let echo = {
        let turn = Arc::clone(&turn);
        std::thread::spawn(move || {
            for i in 0..ROUND_TRIPS {
                wait.until(&turn, 2 * i + 1);
                wait.pass(&turn, 2 * i + 2, &main_thread);
            }
        })
    };
    let echo_thread = echo.thread().clone();
    let t0 = Instant::now();
    for i in 0..ROUND_TRIPS {
        wait.pass(&turn, 2 * i + 1, &echo_thread);
        wait.until(&turn, 2 * i + 2);
    }
    let us = t0.elapsed().as_secs_f64() * 1e6 / ROUND_TRIPS as f64;
    echo.join().expect("the echo thread panicked");
    println!("{us:.2}");
}
