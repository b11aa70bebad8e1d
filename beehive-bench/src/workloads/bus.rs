//! W1 (send/receive), W2 (send_sync round trips) and W3 (group fan-out)
//! through the public bus API of `beehive-context`.

use std::time::{Duration, Instant};

use beehive_context::Hive;
use beehive_model::{constants, Message};

use crate::output::RunResult;
use crate::workloads::socket::small_message;

fn is_small(m: &Message) -> bool {
    m.content().as_str().is_some_and(|s| s.len() == 100)
}

/// W1: one sender, one receiver, N sends of the same message to `dst`.
pub fn w1(n: u64) -> Result<RunResult, String> {
    one_to_one("W1", n, |rx| {
        Ok(std::thread::spawn(move || {
            let mut errors = 0u64;
            for _ in 0..n {
                match rx.receive("dst") {
                    Ok(m) if is_small(&m) => {}
                    _ => errors += 1,
                }
            }
            errors
        }))
    })
}

/// W1-async: W1 with the receiver on a current-thread tokio runtime,
/// taking each message with `receive_async`.
pub fn w1_async(n: u64) -> Result<RunResult, String> {
    one_to_one("W1-async", n, |rx| {
        let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| e.to_string())?;
        Ok(std::thread::spawn(move || {
            runtime.block_on(async move {
                let mut errors = 0u64;
                for _ in 0..n {
                    match rx.receive_async("dst").await {
                        Ok(m) if is_small(&m) => {}
                        _ => errors += 1,
                    }
                }
                errors
            })
        }))
    })
}

/// W1-floor: W1's message hand-over alone. The same clone of the small
/// message per send goes through a bare lock-free queue of W1's capacity
/// (crossbeam's `ArrayQueue`), with no hive, no lookup and no inbox
/// bookkeeping; both sides spin (then yield, crossbeam's `Backoff`) instead
/// of parking. It bounds any W1 whose
/// messages share one reference count: the sender's clone and the
/// receiver's drop write the same count for every message.
pub fn w1_floor(n: u64) -> Result<RunResult, String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let queue = Arc::new(crossbeam_queue::ArrayQueue::new(1024));
    let started = Arc::new(AtomicBool::new(false));
    let msg = small_message();
    let receiver = {
        let (queue, started) = (Arc::clone(&queue), Arc::clone(&started));
        std::thread::spawn(move || {
            started.store(true, Ordering::Release);
            let mut errors = 0u64;
            for _ in 0..n {
                let backoff = crossbeam_utils::Backoff::new();
                let m = loop {
                    match queue.pop() {
                        Some(m) => break m,
                        None => backoff.snooze(),
                    }
                };
                if !is_small(&m) {
                    errors += 1;
                }
            }
            errors
        })
    };
    // As W1's receiver, this one is running before the clock starts.
    while !started.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    let t0 = Instant::now();
    for _ in 0..n {
        let mut m = msg.clone();
        let backoff = crossbeam_utils::Backoff::new();
        while let Err(back) = queue.push(m) {
            m = back;
            backoff.snooze();
        }
    }
    let errors = receiver.join().map_err(|_| "receiver panicked")?;
    let secs = t0.elapsed().as_secs_f64();
    Ok(RunResult { workload: "W1-floor".into(), n, ops: n, secs, bytes: None, lat: None, errors, err_secs: 0.0 })
}

/// The timed part of W1 and W1-async: N sends of the same message to
/// `dst` while the receiver `spawn` started takes them (it returns how many
/// were not the message sent).
fn one_to_one(
    workload: &str,
    n: u64,
    spawn: impl FnOnce(Hive) -> Result<std::thread::JoinHandle<u64>, String>,
) -> Result<RunResult, String> {
    let hive = Hive::new();
    hive.add_module("dst", constants::MSG_CTX_TYPE_CHANNEL).map_err(|e| e.to_string())?;
    hive.add_module_group("dst", "g").map_err(|e| e.to_string())?;
    let msg = small_message();
    let receiver = spawn(hive.clone())?;
    let t0 = Instant::now();
    for _ in 0..n {
        hive.send("dst", msg.clone()).map_err(|e| e.to_string())?;
    }
    let errors = receiver.join().map_err(|_| "receiver panicked")?;
    let secs = t0.elapsed().as_secs_f64();
    Ok(RunResult { workload: workload.into(), n, ops: n, secs, bytes: None, lat: None, errors, err_secs: 0.0 })
}

/// W2: N send_sync round trips to an echo module answering with
/// `new_response(m, "ok")`; a fresh request each time.
pub fn w2(n: u64, timeout: Duration) -> Result<RunResult, String> {
    let hive = Hive::new();
    hive.add_module("echo", constants::MSG_CTX_TYPE_CHANNEL).map_err(|e| e.to_string())?;
    hive.add_module_group("echo", "echo-group").map_err(|e| e.to_string())?;
    let echo = hive.clone();
    std::thread::spawn(move || {
        while let Ok(m) = echo.receive("echo") {
            let _ = echo.send_resp(m.new_response("ok"));
        }
    });
    let result = super::round_trips("W2", n, |req| hive.send_sync("echo", req, timeout).ok());
    let _ = hive.cleanup("echo");
    Ok(result)
}

/// W2-async: W2 with the echo module and the requester as tasks on one
/// current-thread tokio runtime (`receive_async`, `send_sync_async`): each
/// hand-over between them is a task switch, not a thread wake-up.
pub fn w2_async(n: u64, timeout: Duration) -> Result<RunResult, String> {
    let hive = Hive::new();
    hive.add_module("echo", constants::MSG_CTX_TYPE_CHANNEL).map_err(|e| e.to_string())?;
    hive.add_module_group("echo", "echo-group").map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(|e| e.to_string())?;
    let result = runtime.block_on(async {
        let echo = hive.clone();
        let echo_task = tokio::spawn(async move {
            while let Ok(m) = echo.receive_async("echo").await {
                let _ = echo.send_resp(m.new_response("ok"));
            }
        });
        let mut trips = super::RoundTrips::start("W2-async", n);
        for _ in 0..n {
            let req = small_message();
            let ts = Instant::now();
            let resp = hive.send_sync_async("echo", req.clone(), timeout).await.ok();
            trips.record(&req, resp, ts.elapsed().as_secs_f64());
        }
        let _ = hive.cleanup("echo");
        let _ = echo_task.await;
        trips.finish()
    });
    Ok(result)
}

/// W3: N broadcasts of the same message to a group of four receivers.
pub fn w3(n: u64) -> Result<RunResult, String> {
    let hive = Hive::new();
    let mut receivers = Vec::new();
    for i in 0..4 {
        let name = format!("fan{i}");
        hive.add_module(&name, constants::MSG_CTX_TYPE_CHANNEL).map_err(|e| e.to_string())?;
        hive.add_module_group(&name, "fan").map_err(|e| e.to_string())?;
        let rx = hive.clone();
        receivers.push(std::thread::spawn(move || {
            let mut errors = 0u64;
            for _ in 0..n {
                match rx.receive(&name) {
                    Ok(m) if is_small(&m) => {}
                    _ => errors += 1,
                }
            }
            errors
        }));
    }
    let msg = small_message();
    let t0 = Instant::now();
    for _ in 0..n {
        hive.send_to_group("fan", msg.clone()).map_err(|e| e.to_string())?;
    }
    let mut errors = 0;
    for r in receivers {
        errors += r.join().map_err(|_| "receiver panicked")?;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(RunResult { workload: "W3".into(), n, ops: 4 * n, secs, bytes: None, lat: None, errors, err_secs: 0.0 })
}
