//! Core-to-core round trip: two threads hand a counter back and forth
//! through one atomic, and the mean round trip is printed in nanoseconds.
//!
//! The in-process workloads (W1–W3) move every message through cache lines
//! that both threads write, so their rates follow this figure. On a VM it
//! depends on where the host places the virtual CPUs, and it can change
//! between runs (on the 2-core VM the figures in the README come from:
//! about 50 ns on some runs, about 400 ns on others). `scripts/bench-vs-go.sh`
//! prints it before every pass so that a run says which case it measured.
//!
//! ```sh
//! cargo run --release -p beehive-bench --example core_rtt
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

const ROUND_TRIPS: u64 = 1_000_000;

fn main() {
    let turn = Arc::new(AtomicU64::new(0));
    let other = Arc::clone(&turn);
    // The other thread answers every odd value with the next even one.
    let echo = std::thread::spawn(move || {
        let mut expect = 1;
        while expect < 2 * ROUND_TRIPS {
            while other.load(Ordering::Acquire) != expect {
                std::hint::spin_loop();
            }
            other.store(expect + 1, Ordering::Release);
            expect += 2;
        }
    });
    let t0 = Instant::now();
    let mut v = 0;
    while v < 2 * ROUND_TRIPS {
        turn.store(v + 1, Ordering::Release);
        while turn.load(Ordering::Acquire) != v + 2 {
            std::hint::spin_loop();
        }
        v += 2;
    }
    let ns = t0.elapsed().as_nanos() as f64 / ROUND_TRIPS as f64;
    echo.join().expect("the echo thread panicked");
    println!("{ns:.1}");
}
