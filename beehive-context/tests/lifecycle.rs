//! Module lifecycle: registration, restart policies, graceful shutdown.
//!
//! Events are ordered by synchronising on them (channels the modules signal
//! on); where a test waits for something *not* to happen, or for a timeout,
//! the wait is bounded from below and from above.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beehive_context::{ContextError, Hive, RestartPolicy, RestartType, SimpleModule};
use beehive_model::Message;

/// How long a test waits for an event that must happen.
const T: Duration = Duration::from_secs(10);

/// How much later than its nominal time a timed event may come: scheduling
/// delays on a loaded machine, far below the errors the bounds catch.
const SLACK: Duration = Duration::from_millis(400);

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// A channel whose sender a module (a `Fn` shared across threads) can use.
fn event_channel<E>() -> (Arc<Mutex<Sender<E>>>, Receiver<E>) {
    let (tx, rx) = mpsc::channel();
    (Arc::new(Mutex::new(tx)), rx)
}

fn signal<E>(tx: &Mutex<Sender<E>>, event: E) {
    let _ = tx.lock().unwrap().send(event);
}

/// Asserts that nothing arrives on `rx` for `window`, and that the wait
/// took that long and not much longer.
fn assert_quiet<E: std::fmt::Debug>(rx: &Receiver<E>, window: Duration) {
    let t0 = Instant::now();
    match rx.recv_timeout(window) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("expected no event, got {other:?}"),
    }
    let waited = t0.elapsed();
    assert!(waited >= window && waited < window + SLACK, "{waited:?}");
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

#[test]
fn module_groups_lists_enabled_modules_with_their_groups_in_registration_order() {
    let hive = Hive::new();
    assert!(hive.module_groups().is_empty());
    hive.register(SimpleModule::new("b", "g2", |_: &Hive| Ok(()))).unwrap();
    hive.register(SimpleModule::new("off", "g3", |_: &Hive| Ok(())).enabled(false)).unwrap();
    hive.register(SimpleModule::new("a", "g1", |_: &Hive| Ok(()))).unwrap();
    let expected = [("b", "g2"), ("a", "g1")].map(|(m, g)| (m.to_owned(), g.to_owned()));
    assert_eq!(hive.module_groups(), expected);
}

/// A module that reports its start and then receives until its inbox is
/// sealed.
fn receiving_module(name: &'static str, started: Arc<Mutex<Sender<&'static str>>>) -> SimpleModule {
    SimpleModule::new(name, "g", move |hive: &Hive| {
        signal(&started, name);
        while hive.receive(name).is_ok() {}
        Ok(())
    })
}

#[test]
fn starting_again_starts_only_the_modules_registered_since() {
    let hive = Hive::new();
    let (started_tx, started) = event_channel();
    hive.register(receiving_module("a", Arc::clone(&started_tx))).unwrap();
    hive.start().unwrap();
    assert_eq!(started.recv_timeout(T), Ok("a"));
    hive.register(receiving_module("b", started_tx)).unwrap();
    hive.start().unwrap();
    assert_eq!(started.recv_timeout(T), Ok("b"));
    let report = hive.shutdown(T);
    let mut stopped = report.stopped.clone();
    stopped.sort();
    assert_eq!(stopped, ["a", "b"], "each module ran once");
    assert_eq!(started.try_iter().collect::<Vec<_>>(), Vec::<&str>::new());
}

#[test]
fn the_cancellation_token_is_the_hives_own() {
    let hive = Hive::new();
    let token = hive.cancellation();
    assert!(!token.is_cancelled() && !hive.is_cancelled());
    hive.request_shutdown();
    assert!(token.is_cancelled());
    assert!(hive.is_cancelled());
    assert!(hive.cancellation().is_cancelled());
}

/// Runs module "m" under `policy` (its interval set to 1 ms) until the
/// policy gives up; returns how many times it started and what the give-up
/// handler was called with.
fn policy_run(policy: RestartPolicy, fail: bool) -> (usize, Vec<Option<String>>) {
    let hive = Hive::new();
    let (start_tx, starts) = event_channel();
    let (give_up_tx, gave_up) = event_channel();
    let policy = policy.interval(Duration::from_millis(1)).on_give_up(move |e| {
        signal(&give_up_tx, e.map(|e| e.to_string()));
    });
    let n = counter();
    hive.register(
        SimpleModule::new("m", "g", move |_: &Hive| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            signal(&start_tx, i);
            if fail {
                panic!("boom {i}");
            }
            Ok(())
        })
        .restart_policy(policy),
    )
    .unwrap();
    hive.start().unwrap();
    let first = gave_up.recv_timeout(T).expect("the error handler was never called");
    // Once the handler ran, the keeper has returned: shutdown finds the
    // module stopped, and no start can come after it.
    let report = hive.shutdown(T);
    assert_eq!(report.stopped, vec!["m".to_owned()]);
    let mut handled = vec![first];
    handled.extend(gave_up.try_iter());
    let starts: Vec<usize> = starts.try_iter().collect();
    assert_eq!(starts, (0..starts.len()).collect::<Vec<_>>());
    (starts.len(), handled)
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
    let (start_tx, starts) = event_channel();
    hive.register(SimpleModule::new("m", "g", move |_: &Hive| {
        signal(&start_tx, ());
        Err("nope".into())
    }))
    .unwrap();
    hive.start().unwrap();
    starts.recv_timeout(T).expect("the module never started");
    // No restart follows (a default policy would restart after 1 s; watch
    // for longer than that).
    assert_quiet(&starts, Duration::from_millis(1500));
    let report = hive.shutdown(T);
    assert_eq!(report.stopped, vec!["m".to_owned()]);
    assert!(starts.try_recv().is_err());
}

#[test]
fn restart_intervals_grow_up_to_the_limit_and_no_further() {
    const RETRIES: usize = 5;
    let hive = Hive::new();
    let (start_tx, starts) = event_channel();
    let (give_up_tx, gave_up) = event_channel();
    hive.register(
        SimpleModule::new("m", "g", move |_: &Hive| {
            signal(&start_tx, Instant::now());
            Err("again".into())
        })
        .restart_policy(
            RestartPolicy::new(RestartType::OnFailure)
                .retries(RETRIES as u32)
                .interval(Duration::from_millis(20))
                .growth_rate(4.0)
                .interval_limit(Duration::from_millis(50))
                .on_give_up(move |_| signal(&give_up_tx, ())),
        ),
    )
    .unwrap();
    hive.start().unwrap();
    // Each start, as it happens.
    let times: Vec<Instant> = (0..=RETRIES).map(|_| starts.recv_timeout(T).expect("a restart is missing")).collect();
    gave_up.recv_timeout(T).expect("the policy never gave up");
    let report = hive.shutdown(T);
    assert_eq!(report.stopped, vec!["m".to_owned()]);
    // At most `retries` restarts: nothing after the give-up.
    assert!(starts.try_recv().is_err());
    assert!(gave_up.try_recv().is_err());
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // 20 ms, then 80 ms capped at 50 ms, and 50 ms from then on (without
    // the limit: 80, 320, 1280, 5120 ms).
    let want = [20u64, 50, 50, 50, 50].map(Duration::from_millis);
    for (i, (gap, want)) in gaps.iter().zip(want).enumerate() {
        assert!(*gap >= want && *gap < want + SLACK, "gap {i} of {gaps:?}: want {want:?}");
    }
}

#[test]
fn shutdown_delivers_queued_messages_to_a_module_still_receiving() {
    let hive = Hive::new();
    let seen = counter();
    let s = Arc::clone(&seen);
    hive.register(SimpleModule::new("worker", "g", move |hive: &Hive| {
        // One message, then nothing until shutdown has begun: the other
        // messages are all still queued when it does.
        if hive.receive("worker").is_ok() {
            s.fetch_add(1, Ordering::SeqCst);
        }
        if !hive.wait_cancelled(T) {
            return Err("shutdown never began".into());
        }
        while hive.receive("worker").is_ok() {
            s.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }))
    .unwrap();
    hive.start().unwrap();
    for i in 0..200 {
        hive.send("worker", Message::new("").fill_body(i.to_string())).unwrap();
    }
    let report = hive.shutdown(T);
    assert_eq!(seen.load(Ordering::SeqCst), 200);
    assert_eq!(report.stopped, vec!["worker".to_owned()]);
    assert!(report.not_stopped.is_empty() && report.undelivered.is_empty(), "{report:?}");
    assert!(hive.is_cancelled());
    assert!(matches!(hive.send("worker", Message::new("")), Err(ContextError::Closed { .. })));
}

#[test]
fn shutdown_reports_modules_that_do_not_stop_and_messages_nobody_received() {
    let hive = Hive::new();
    let (started_tx, started) = event_channel();
    let (release_tx, release) = mpsc::channel::<()>();
    let release = Mutex::new(release);
    let s = Arc::clone(&started_tx);
    hive.register(SimpleModule::new("stuck", "g", move |_: &Hive| {
        signal(&s, "stuck");
        // Ignores shutdown; stops only when the test lets it.
        let _ = release.lock().unwrap().recv_timeout(T);
        Ok(())
    }))
    .unwrap();
    hive.register(SimpleModule::new("polite", "g", move |hive: &Hive| {
        signal(&started_tx, "polite");
        hive.wait_cancelled(T);
        Ok(())
    }))
    .unwrap();
    hive.start().unwrap();
    let mut up: Vec<&str> = (0..2).map(|_| started.recv_timeout(T).unwrap()).collect();
    up.sort_unstable();
    assert_eq!(up, ["polite", "stuck"]);
    for _ in 0..5 {
        hive.send("stuck", Message::new("")).unwrap();
    }
    let deadline = Duration::from_millis(200);
    let t0 = Instant::now();
    let report = hive.shutdown(deadline);
    let took = t0.elapsed();
    // It waited out the deadline for "stuck", and no longer.
    assert!(took >= deadline && took < deadline + SLACK, "{took:?}");
    assert_eq!(report.not_stopped, vec!["stuck".to_owned()]);
    assert_eq!(report.stopped, vec!["polite".to_owned()]);
    assert_eq!(report.undelivered, vec![("stuck".to_owned(), 5)]);
    release_tx.send(()).unwrap();
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

/// A hive with one module that signals when it has started and then
/// receives until its inbox closes.
fn hive_with_idle_module() -> (Hive, Receiver<()>) {
    let hive = Hive::new();
    let (started_tx, started) = event_channel();
    hive.register(SimpleModule::new("idle", "g", move |hive: &Hive| {
        signal(&started_tx, ());
        while hive.receive("idle").is_ok() {}
        Ok(())
    }))
    .unwrap();
    hive.start().unwrap();
    (hive, started)
}

/// Runs `run_until_shutdown` on its own thread; its result comes on the channel.
fn run_in_background(hive: &Hive) -> Receiver<std::io::Result<beehive_context::ShutdownReport>> {
    let (tx, rx) = mpsc::channel();
    let h = hive.clone();
    std::thread::spawn(move || {
        let _ = tx.send(h.run_until_shutdown(T));
    });
    rx
}

#[test]
fn run_until_shutdown_returns_on_request_and_on_a_signal() {
    let (hive, started) = hive_with_idle_module();
    let result = run_in_background(&hive);
    started.recv_timeout(T).expect("the module never started");
    assert!(!hive.is_cancelled());
    hive.request_shutdown();
    let report = result.recv_timeout(T).expect("run_until_shutdown did not return").unwrap();
    assert_eq!(report.stopped, vec!["idle".to_owned()]);

    // A real SIGTERM. The hive installs its handler inside
    // run_until_shutdown, on the other thread; a handler of our own keeps
    // a signal that comes before it from ending the test process.
    let caught = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&caught)).unwrap();
    let (hive, started) = hive_with_idle_module();
    let result = run_in_background(&hive);
    started.recv_timeout(T).expect("the module never started");
    assert!(!hive.is_cancelled());
    // Raise until the hive has seen one (a signal raised before its handler
    // is installed reaches only ours).
    let t0 = Instant::now();
    loop {
        signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
        if hive.wait_cancelled(Duration::from_millis(100)) {
            break;
        }
        assert!(t0.elapsed() < T, "the hive never saw SIGTERM");
    }
    let report = result.recv_timeout(T).expect("run_until_shutdown did not return").unwrap();
    assert!(caught.load(Ordering::SeqCst));
    assert!(hive.is_cancelled());
    assert_eq!(report.stopped, vec!["idle".to_owned()]);
}
