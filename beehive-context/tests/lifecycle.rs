//! Module lifecycle: registration, restart policies, graceful shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beehive_context::{ContextError, Hive, RestartPolicy, RestartType, SimpleModule};
use beehive_model::Message;

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// Waits until `f` holds or 10 s pass.
fn eventually(f: impl Fn() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn disabled_modules_are_listed_separately_and_never_started() {
    let hive = Hive::new();
    let runs = counter();
    let r = Arc::clone(&runs);
    hive.register(
        SimpleModule::new("off", "g", move |_: &Hive| {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .enabled(false),
    )
    .unwrap();
    hive.register(SimpleModule::new("on", "g", |_: &Hive| Ok(()))).unwrap();
    assert_eq!(hive.modules(), vec!["on".to_owned()]);
    assert_eq!(hive.disabled_modules(), vec!["off".to_owned()]);
    assert!(matches!(
        hive.register(SimpleModule::new("on", "g", |_: &Hive| Ok(()))),
        Err(ContextError::DuplicateModule { .. })
    ));
    hive.start().unwrap();
    assert!(matches!(hive.send("off", Message::new("")), Err(ContextError::UnknownModule { .. })));
    hive.shutdown(Duration::from_secs(5));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

fn policy_run(policy: RestartPolicy, fail: bool) -> (usize, Vec<Option<String>>) {
    let hive = Hive::new();
    let starts = counter();
    let handled: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let s = Arc::clone(&starts);
    let h = Arc::clone(&handled);
    let policy = policy.interval(Duration::from_millis(1)).on_give_up(move |e| {
        h.lock().unwrap().push(e.map(|e| e.to_string()));
    });
    hive.register(
        SimpleModule::new("m", "g", move |_: &Hive| {
            let n = s.fetch_add(1, Ordering::SeqCst);
            if fail {
                panic!("boom {n}");
            }
            Ok(())
        })
        .restart_policy(policy),
    )
    .unwrap();
    hive.start().unwrap();
    assert!(eventually(|| !handled.lock().unwrap().is_empty()), "the error handler was never called");
    hive.shutdown(Duration::from_secs(5));
    let handled = handled.lock().unwrap().clone();
    (starts.load(Ordering::SeqCst), handled)
}

#[test]
fn a_panicking_module_is_restarted_until_its_retries_run_out() {
    let (starts, handled) = policy_run(RestartPolicy::new(RestartType::OnFailure).retries(2), true);
    assert_eq!(starts, 3);
    assert_eq!(handled.len(), 1);
    assert!(handled[0].as_deref().is_some_and(|e| e.contains("boom 2")), "{handled:?}");
}

#[test]
fn always_restarts_a_module_that_returns_successfully() {
    let (starts, handled) = policy_run(RestartPolicy::new(RestartType::Always).retries(3), false);
    assert_eq!(starts, 4);
    assert_eq!(handled, vec![None]);
}

#[test]
fn always_restarts_a_panicking_module_too() {
    let (starts, handled) = policy_run(RestartPolicy::new(RestartType::Always).retries(2), true);
    assert_eq!(starts, 3);
    assert!(handled.len() == 1 && handled[0].as_deref().is_some_and(|e| e.contains("panic")), "{handled:?}");
}

#[test]
fn on_failure_does_not_restart_a_successful_module() {
    let hive = Hive::new();
    let starts = counter();
    let s = Arc::clone(&starts);
    hive.register(
        SimpleModule::new("m", "g", move |_: &Hive| {
            s.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .restart_policy(RestartPolicy::new(RestartType::OnFailure).interval(Duration::from_millis(1))),
    )
    .unwrap();
    hive.start().unwrap();
    let report = hive.shutdown(Duration::from_secs(5));
    assert_eq!(starts.load(Ordering::SeqCst), 1);
    assert_eq!(report.stopped, vec!["m".to_owned()]);
}

#[test]
fn without_a_policy_a_failing_module_runs_once() {
    let hive = Hive::new();
    let starts = counter();
    let s = Arc::clone(&starts);
    hive.register(SimpleModule::new("m", "g", move |_: &Hive| {
        s.fetch_add(1, Ordering::SeqCst);
        Err("nope".into())
    }))
    .unwrap();
    hive.start().unwrap();
    assert!(eventually(|| starts.load(Ordering::SeqCst) == 1));
    std::thread::sleep(Duration::from_millis(20));
    hive.shutdown(Duration::from_secs(5));
    assert_eq!(starts.load(Ordering::SeqCst), 1);
}

#[test]
fn restart_intervals_grow_up_to_the_limit() {
    let hive = Hive::new();
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let t = Arc::clone(&times);
    let done = counter();
    let d = Arc::clone(&done);
    hive.register(
        SimpleModule::new("m", "g", move |_: &Hive| {
            t.lock().unwrap().push(Instant::now());
            Err("again".into())
        })
        .restart_policy(
            RestartPolicy::new(RestartType::OnFailure)
                .retries(4)
                .interval(Duration::from_millis(20))
                .growth_rate(2.0)
                .interval_limit(Duration::from_millis(50))
                .on_give_up(move |_| {
                    d.fetch_add(1, Ordering::SeqCst);
                }),
        ),
    )
    .unwrap();
    hive.start().unwrap();
    assert!(eventually(|| done.load(Ordering::SeqCst) == 1));
    let times = times.lock().unwrap().clone();
    assert_eq!(times.len(), 5);
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // 20 ms, 40 ms, then capped at 50 ms.
    for (gap, min) in gaps.iter().zip([20u64, 40, 50, 50]) {
        assert!(*gap >= Duration::from_millis(min), "{gaps:?}");
    }
    hive.shutdown(Duration::from_secs(5));
}

#[test]
fn shutdown_delivers_queued_messages_to_a_module_still_receiving() {
    let hive = Hive::new();
    let seen = counter();
    let s = Arc::clone(&seen);
    hive.register(SimpleModule::new("worker", "g", move |hive: &Hive| {
        while hive.receive("worker").is_ok() {
            std::thread::sleep(Duration::from_micros(200));
            s.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }))
    .unwrap();
    hive.start().unwrap();
    for i in 0..200 {
        hive.send("worker", Message::new("").fill_body(i.to_string())).unwrap();
    }
    let report = hive.shutdown(Duration::from_secs(10));
    assert_eq!(seen.load(Ordering::SeqCst), 200);
    assert_eq!(report.stopped, vec!["worker".to_owned()]);
    assert!(report.not_stopped.is_empty() && report.undelivered.is_empty(), "{report:?}");
    assert!(hive.is_cancelled());
    assert!(matches!(hive.send("worker", Message::new("")), Err(ContextError::Closed { .. })));
}

#[test]
fn shutdown_reports_modules_that_do_not_stop_and_messages_nobody_received() {
    let hive = Hive::new();
    hive.register(SimpleModule::new("stuck", "g", |_: &Hive| {
        std::thread::sleep(Duration::from_secs(3));
        Ok(())
    }))
    .unwrap();
    hive.register(SimpleModule::new("polite", "g", |hive: &Hive| {
        hive.wait_cancelled(Duration::from_secs(30));
        Ok(())
    }))
    .unwrap();
    hive.start().unwrap();
    for _ in 0..5 {
        hive.send("stuck", Message::new("")).unwrap();
    }
    let t0 = Instant::now();
    let report = hive.shutdown(Duration::from_millis(200));
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(report.not_stopped, vec!["stuck".to_owned()]);
    assert_eq!(report.stopped, vec!["polite".to_owned()]);
    assert_eq!(report.undelivered, vec![("stuck".to_owned(), 5)]);
}

#[test]
fn modules_talk_through_the_hive_they_are_given() {
    let hive = Hive::new();
    hive.register(SimpleModule::new("dst", "dst-group", |hive: &Hive| {
        while let Ok(m) = hive.receive("dst") {
            if m.is_sync() {
                hive.send_resp(m.new_response(format!("re: {}", m.content().as_str().unwrap_or_default())))?;
            }
        }
        Ok(())
    }))
    .unwrap();
    hive.start().unwrap();
    let resp = hive.send_sync("dst", Message::new("").fill_body("hi"), Duration::from_secs(10)).unwrap();
    assert_eq!(resp.content().as_str(), Some("re: hi"));
    let report = hive.shutdown(Duration::from_secs(5));
    assert_eq!(report.stopped, vec!["dst".to_owned()]);
}

#[test]
fn run_until_shutdown_returns_on_request_and_on_a_signal() {
    let hive = Hive::new();
    hive.register(SimpleModule::new("idle", "g", |hive: &Hive| {
        while hive.receive("idle").is_ok() {}
        Ok(())
    }))
    .unwrap();
    hive.start().unwrap();
    let h = hive.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        h.request_shutdown();
    });
    let report = hive.run_until_shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(report.stopped, vec!["idle".to_owned()]);

    // A real SIGTERM, delivered once the handler is installed.
    let hive = Hive::new();
    let h = hive.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        assert!(!h.is_cancelled());
        signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
    });
    hive.run_until_shutdown(Duration::from_secs(5)).unwrap();
    assert!(hive.is_cancelled());
}
