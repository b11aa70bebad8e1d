//! An idle hive uses no CPU: threads waiting for messages, for room or for
//! responses poll only for the spin budget, then park.
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use beehive_context::{Hive, SpinBudget};
use beehive_model::{constants, Message};

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("procfs");
    // Fields after the command name (which is in parentheses): utime and
    // stime are fields 14 and 15 of the whole line, in clock ticks.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // The kernel reports in USER_HZ, 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn idle_cpu_with(spin: SpinBudget) -> Duration {
    let hive = Hive::builder().channel_capacity(1).spin(spin).build();
    for m in ["quiet", "full", "echo"] {
        hive.add_module(m, constants::MSG_CTX_TYPE_CHANNEL).unwrap();
    }
    hive.try_send("full", Message::new("").fill_body("x")).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut threads = Vec::new();
    // A receiver on an empty inbox.
    let h = hive.clone();
    let tx = ready_tx.clone();
    threads.push(std::thread::spawn(move || {
        tx.send(()).unwrap();
        let _ = h.receive_timeout("quiet", Duration::from_secs(2));
    }));
    // A sender on a full inbox.
    let h = hive.clone();
    let tx = ready_tx.clone();
    threads.push(std::thread::spawn(move || {
        tx.send(()).unwrap();
        let _ = h.send_timeout("full", Message::new("").fill_body("y"), Duration::from_secs(2));
    }));
    // A requester whose response never comes ("echo" never answers).
    let h = hive.clone();
    threads.push(std::thread::spawn(move || {
        ready_tx.send(()).unwrap();
        let _ = h.send_sync("echo", Message::new("").fill_body("z"), Duration::from_secs(2));
    }));
    for _ in 0..3 {
        ready_rx.recv().unwrap();
    }
    // Past every spin budget used here (at most 1 ms), everyone is parked.
    std::thread::sleep(Duration::from_millis(100));
    let (cpu0, t0) = (cpu_time(), Instant::now());
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu_time() - cpu0;
    assert!(t0.elapsed() >= Duration::from_millis(500));
    for t in threads {
        t.join().unwrap();
    }
    used
}

#[test]
fn waiting_threads_park_after_the_default_budget() {
    let used = idle_cpu_with(SpinBudget::DEFAULT);
    // Three spinning threads would use 1.5 s of CPU in the window.
    assert!(used <= Duration::from_millis(50), "{used:?} of CPU in 500 ms of idling");
}

#[test]
fn waiting_threads_park_after_a_long_budget() {
    let used = idle_cpu_with(SpinBudget::new(Duration::from_millis(1)));
    assert!(used <= Duration::from_millis(50), "{used:?} of CPU in 500 ms of idling");
}
