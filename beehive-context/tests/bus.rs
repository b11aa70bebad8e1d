//! Messaging through the hive: every operation, its errors, and concurrency.
//!
//! Events are ordered by synchronising on them (channels, the first
//! `Pending` of a future); where a test waits for a timeout, or for
//! something not to happen, the wait is bounded from below and from above.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use beehive_context::{ContextError, Hive, Offer};
use beehive_model::Message;

/// How long a test waits for an event that must happen.
const T: Duration = Duration::from_secs(10);

/// Joins `h`, failing the test when the thread has not finished within
/// [`T`] (a thread left waiting by a lost wake-up must fail the test, not
/// hang it).
fn join_within<R>(h: std::thread::JoinHandle<R>, what: &str) -> R {
    let t0 = Instant::now();
    while !h.is_finished() {
        assert!(t0.elapsed() < T, "{what} did not finish within {T:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    h.join().unwrap()
}

/// How much later than its nominal time a timed event may come: scheduling
/// delays on a loaded machine, far below the errors the bounds catch (a
/// timeout ignored, or replaced by the 30 s default).
const SLACK: Duration = Duration::from_millis(400);

/// Runs `f`, which must take at least `min` (a timeout) and not much longer.
fn timed<R>(min: Duration, f: impl FnOnce() -> R) -> R {
    let t0 = Instant::now();
    let r = f();
    let took = t0.elapsed();
    assert!(took >= min && took < min + SLACK, "took {took:?}, expected {min:?}");
    r
}

/// Runs `f`, which must return at once (well within [`SLACK`]).
fn prompt<R>(f: impl FnOnce() -> R) -> R {
    timed(Duration::ZERO, f)
}

/// Polls `fut`, reporting on `first_pending` the first time it returns
/// `Pending` (from then on it waits for a wake-up).
async fn signal_when_pending<F: Future>(fut: F, first_pending: tokio::sync::oneshot::Sender<()>) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut tx = Some(first_pending);
    std::future::poll_fn(move |cx| {
        let r = fut.as_mut().poll(cx);
        if r.is_pending() {
            if let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
        }
        r
    })
    .await
}

fn msg(body: &str) -> Message {
    Message::new("").build_router("src", "", "res", "update").fill_body(body)
}

fn hive_with(modules: &[(&str, &str)]) -> Hive {
    let hive = Hive::new();
    for (m, g) in modules {
        hive.add_module(m, "channel").unwrap();
        hive.add_module_group(m, g).unwrap();
    }
    hive
}

/// A thread answering every request to `module` with `reply`.
fn echo(hive: &Hive, module: &'static str, reply: &'static str) -> std::thread::JoinHandle<usize> {
    let h = hive.clone();
    std::thread::spawn(move || {
        let mut n = 0;
        while let Ok(m) = h.receive(module) {
            n += 1;
            if m.is_sync() {
                let _ = h.send_resp(m.new_response(reply));
            }
        }
        n
    })
}

#[test]
fn send_then_receive_in_order() {
    let hive = hive_with(&[("a", "g")]);
    for i in 0..100 {
        hive.send("a", msg(&i.to_string())).unwrap();
    }
    for i in 0..100 {
        assert_eq!(hive.receive("a").unwrap().content().as_str(), Some(i.to_string().as_str()));
    }
}

#[test]
fn unknown_modules_and_groups_are_errors() {
    let hive = hive_with(&[("a", "g")]);
    assert!(matches!(hive.send("nope", msg("x")), Err(ContextError::UnknownModule { .. })));
    assert!(matches!(hive.receive("nope"), Err(ContextError::UnknownModule { .. })));
    assert!(matches!(hive.send_to_group("nogroup", msg("x")), Err(ContextError::UnknownGroup { .. })));
    assert!(matches!(hive.add_module("b", "martian"), Err(ContextError::UnknownContextType { .. })));
    assert!(matches!(hive.add_module("a", "channel"), Err(ContextError::DuplicateModule { .. })));
}

#[test]
fn a_full_inbox_blocks_send_and_fails_try_send_and_send_timeout() {
    let hive = Hive::with_channel_capacity(2);
    hive.add_module("a", "channel").unwrap();
    hive.try_send("a", msg("1")).unwrap();
    hive.try_send("a", msg("2")).unwrap();
    assert!(matches!(hive.try_send("a", msg("3")), Err(ContextError::Full { .. })));
    let r = timed(Duration::from_millis(50), || hive.send_timeout("a", msg("3"), Duration::from_millis(50)));
    assert!(matches!(r, Err(ContextError::SendTimeout { .. })), "{r:?}");
    // A blocked send completes as soon as there is room.
    let (started_tx, started) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let h = hive.clone();
    let sender = std::thread::spawn(move || {
        started_tx.send(()).unwrap();
        done_tx.send(h.send("a", msg("3"))).unwrap();
    });
    started.recv_timeout(T).unwrap();
    // While the inbox is full the send does not complete.
    let r = timed(Duration::from_millis(100), || done.recv_timeout(Duration::from_millis(100)));
    assert!(matches!(r, Err(RecvTimeoutError::Timeout)), "{r:?}");
    assert_eq!(hive.receive("a").unwrap().content().as_str(), Some("1"));
    prompt(|| done.recv_timeout(T)).unwrap().unwrap();
    sender.join().unwrap();
    assert_eq!(hive.receive("a").unwrap().content().as_str(), Some("2"));
    assert_eq!(hive.receive("a").unwrap().content().as_str(), Some("3"));
}

#[test]
fn offer_delivers_when_there_is_room_and_otherwise_gives_the_message_back_or_says_why_not() {
    let hive = Hive::with_channel_capacity(1);
    hive.add_module("m", "channel").unwrap();
    prompt(|| hive.offer("m", msg("first"))).unwrap();
    let second = msg("second");
    match prompt(|| hive.offer("m", second.clone())) {
        Err(Offer::Full(back)) => assert!(Message::ptr_eq(&back, &second), "not the message offered"),
        other => panic!("a full inbox must give the message back, got {other:?}"),
    }
    assert!(matches!(
        hive.offer("nobody", msg("x")),
        Err(Offer::Failed(ContextError::UnknownModule { module })) if module == "nobody"
    ));
    assert_eq!(hive.receive("m").unwrap().content().as_str(), Some("first"));
    hive.offer("m", second).unwrap();
    assert_eq!(hive.receive("m").unwrap().content().as_str(), Some("second"));
    hive.cleanup("m").unwrap();
    assert!(matches!(hive.offer("m", msg("late")), Err(Offer::Failed(_))));
}

#[test]
fn a_module_is_known_once_added_and_stays_known_closed_after_cleanup() {
    let hive = Hive::new();
    assert!(!hive.has_module("m"));
    hive.add_module("m", "channel").unwrap();
    assert!(hive.has_module("m"));
    assert!(!hive.has_module("n"));
    hive.cleanup("m").unwrap();
    assert!(hive.has_module("m"));
    assert!(matches!(hive.send("m", msg("x")), Err(ContextError::Closed { .. })));
}

/// A thread remembers the inboxes it sent to and received from last, per
/// hive and module: two hives with the same module names, and more modules
/// than a thread remembers, used from one thread, never mix their messages.
#[test]
fn one_thread_using_two_hives_and_many_modules_reaches_each_inbox() {
    let names: Vec<String> = (0..7).map(|i| format!("m{i}")).collect();
    let hives = [Hive::new(), Hive::new()];
    for hive in &hives {
        for n in &names {
            hive.add_module(n, "channel").unwrap();
        }
    }
    let (done, result) = mpsc::channel();
    let worker = {
        let (hives, names) = (hives.clone(), names.clone());
        std::thread::spawn(move || {
            for round in 0..3 {
                for (h, hive) in hives.iter().enumerate() {
                    for n in &names {
                        hive.send(n, msg(&format!("{h}/{n}/{round}"))).unwrap();
                    }
                }
            }
            // Each receive pops from the inbox the route leads to: a wrong
            // route shows as a wrong body (or an empty inbox, which the
            // bounded wait below reports).
            for (h, hive) in hives.iter().enumerate() {
                for n in &names {
                    for round in 0..3 {
                        let got = hive.receive(n).unwrap();
                        assert_eq!(got.content().as_str(), Some(format!("{h}/{n}/{round}").as_str()));
                    }
                }
            }
            done.send(()).unwrap();
        })
    };
    match result.recv_timeout(T) {
        Ok(()) => worker.join().unwrap(),
        Err(RecvTimeoutError::Disconnected) => std::panic::resume_unwind(worker.join().unwrap_err()),
        Err(RecvTimeoutError::Timeout) => panic!("a receive found its inbox empty: a message went elsewhere"),
    }
    for hive in &hives {
        for n in &names {
            assert_eq!(hive.cleanup(n).unwrap(), 0, "{n} has messages left");
        }
    }
}

/// A module added again gets a new inbox; a thread that used the old one
/// reaches the new one, and the old one stays closed.
#[test]
fn a_thread_reaches_a_module_added_again_in_its_new_inbox() {
    let hive = hive_with(&[("a", "g")]);
    hive.send("a", msg("1")).unwrap();
    assert_eq!(hive.receive("a").unwrap().content().as_str(), Some("1"));
    let other = hive.clone();
    std::thread::spawn(move || {
        other.cleanup("a").unwrap();
        other.add_module("a", "channel").unwrap();
    })
    .join()
    .unwrap();
    hive.send("a", msg("2")).unwrap();
    assert_eq!(hive.receive_timeout("a", T).unwrap().unwrap().content().as_str(), Some("2"));
    hive.send("a", msg("3")).unwrap();
    assert_eq!(hive.receive("a").unwrap().content().as_str(), Some("3"));
}

#[test]
fn the_global_hive_is_one_hive() {
    let a = beehive_context::global();
    assert!(std::ptr::eq(a, beehive_context::global()));
    a.add_module("bus-test-global", "channel").unwrap();
    assert!(beehive_context::global().has_module("bus-test-global"));
    a.cleanup("bus-test-global").unwrap();
}

#[test]
fn receive_timeout_returns_none_when_idle() {
    let hive = hive_with(&[("a", "g")]);
    let idle = timed(Duration::from_millis(50), || hive.receive_timeout("a", Duration::from_millis(50)));
    assert!(idle.unwrap().is_none());
    hive.send("a", msg("x")).unwrap();
    let got = prompt(|| hive.receive_timeout("a", T));
    assert_eq!(got.unwrap().unwrap().content().as_str(), Some("x"));
}

#[test]
fn cleanup_closes_the_inbox_and_reports_undelivered_messages() {
    let hive = hive_with(&[("a", "g")]);
    hive.send("a", msg("1")).unwrap();
    hive.send("a", msg("2")).unwrap();
    assert_eq!(hive.cleanup("a").unwrap(), 2);
    assert!(matches!(hive.receive("a"), Err(ContextError::Closed { .. })));
    assert!(matches!(hive.send("a", msg("3")), Err(ContextError::Closed { .. })));
    assert!(matches!(hive.send_to_group("g", msg("3")), Err(ContextError::UnknownGroup { .. })));
    // The module can be added again.
    hive.add_module("a", "channel").unwrap();
    hive.send("a", msg("4")).unwrap();
    assert_eq!(hive.receive("a").unwrap().content().as_str(), Some("4"));
}

#[test]
fn a_receiver_blocked_at_cleanup_wakes_with_closed() {
    let hive = hive_with(&[("a", "g")]);
    let (started_tx, started) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let h = hive.clone();
    std::thread::spawn(move || {
        started_tx.send(()).unwrap();
        done_tx.send(h.receive("a")).unwrap();
    });
    started.recv_timeout(T).unwrap();
    // With nothing to receive, the receiver stays blocked...
    let r = timed(Duration::from_millis(100), || done.recv_timeout(Duration::from_millis(100)));
    assert!(matches!(r, Err(RecvTimeoutError::Timeout)), "{r:?}");
    hive.cleanup("a").unwrap();
    // ...until the cleanup wakes it.
    let r = prompt(|| done.recv_timeout(T)).unwrap();
    assert!(matches!(r, Err(ContextError::Closed { .. })), "{r:?}");
}

#[test]
fn send_sync_gets_its_response() {
    let hive = hive_with(&[("echo", "e")]);
    let e = echo(&hive, "echo", "pong");
    let req = msg("ping");
    let resp = hive.send_sync("echo", req.clone(), T).unwrap();
    assert_eq!(resp.parent_id(), req.id());
    assert_eq!(resp.content().as_str(), Some("pong"));
    hive.cleanup("echo").unwrap();
    assert_eq!(e.join().unwrap(), 1);
}

#[test]
fn the_request_carries_the_sync_flag() {
    let hive = hive_with(&[("a", "g")]);
    let h = hive.clone();
    let timeout = Duration::from_millis(300);
    let waiter = std::thread::spawn(move || timed(timeout, || h.send_sync("a", msg("q"), timeout)));
    let got = hive.receive("a").unwrap();
    assert!(got.is_sync());
    let r = waiter.join().unwrap();
    assert!(matches!(r, Err(ContextError::ResponseTimeout { .. })), "{r:?}");
}

#[test]
fn send_sync_distinguishes_enqueue_and_response_timeouts() {
    let hive = Hive::with_channel_capacity(1);
    hive.add_module("slow", "channel").unwrap();
    // Nobody answers: the request is queued, the response never comes.
    let timeout = Duration::from_millis(50);
    let r = timed(timeout, || hive.send_sync("slow", msg("1"), timeout));
    assert!(matches!(r, Err(ContextError::ResponseTimeout { .. })), "{r:?}");
    // The inbox is now full: the request cannot even be queued.
    let r = timed(timeout, || hive.send_sync("slow", msg("2"), timeout));
    assert!(matches!(r, Err(ContextError::SendTimeout { .. })), "{r:?}");
}

#[test]
fn a_zero_timeout_means_the_default() {
    assert_eq!(beehive_context::effective_timeout(Duration::ZERO), Duration::from_secs(30));
    assert_eq!(beehive_context::effective_timeout(Duration::from_millis(5)), Duration::from_millis(5));
    let hive = hive_with(&[("echo", "e")]);
    let _e = echo(&hive, "echo", "ok");
    assert!(hive.send_sync("echo", msg("x"), Duration::ZERO).is_ok());
}

#[test]
fn send_resp_without_a_waiter_is_an_error() {
    let hive = hive_with(&[("a", "g")]);
    let orphan = msg("req").new_response("late");
    assert!(matches!(hive.send_resp(orphan), Err(ContextError::NoWaiter { .. })));
    // A response after the requester gave up is reported the same way.
    let h = hive.clone();
    let timeout = Duration::from_millis(50);
    let waiter = std::thread::spawn(move || timed(timeout, || h.send_sync("a", msg("q"), timeout)));
    let req = hive.receive("a").unwrap();
    let r = waiter.join().unwrap();
    assert!(matches!(r, Err(ContextError::ResponseTimeout { .. })), "{r:?}");
    assert!(matches!(hive.send_resp(req.new_response("late")), Err(ContextError::NoWaiter { .. })));
}

#[test]
fn an_early_response_is_kept_until_the_requester_collects_it() {
    // The echo often answers before the requester starts waiting (Go drops
    // these). Whether it does is up to the scheduler: tests/early_response.rs
    // makes the response arrive inside `send`, every time.
    let hive = hive_with(&[("echo", "e")]);
    let _e = echo(&hive, "echo", "fast");
    for _ in 0..1000 {
        assert!(hive.send_sync("echo", msg("x"), T).is_ok());
    }
}

#[test]
fn concurrent_send_sync_callers_never_see_each_others_responses() {
    let hive = hive_with(&[("echo", "e"), ("echo2", "e")]);
    // Two workers answering on the same module, echoing the request body.
    for _ in 0..2 {
        let h = hive.clone();
        std::thread::spawn(move || {
            while let Ok(m) = h.receive("echo") {
                let body = m.content().as_str().unwrap_or_default().to_owned();
                let _ = h.send_resp(m.new_response(body));
            }
        });
    }
    let callers: Vec<_> = (0..8)
        .map(|t| {
            let h = hive.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    let body = format!("{t}-{i}");
                    let req = msg(&body);
                    let resp = h.send_sync("echo", req.clone(), T).unwrap();
                    assert_eq!(resp.parent_id(), req.id());
                    assert_eq!(resp.content().as_str(), Some(body.as_str()));
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
}

#[test]
fn group_broadcasts_reach_every_member_in_order() {
    let hive = hive_with(&[("m1", "g"), ("m2", "g"), ("m3", "g"), ("other", "h")]);
    for i in 0..200 {
        hive.send_to_group("g", msg(&i.to_string())).unwrap();
    }
    for m in ["m1", "m2", "m3"] {
        for i in 0..200 {
            assert_eq!(hive.receive(m).unwrap().content().as_str(), Some(i.to_string().as_str()), "{m}");
        }
    }
    let other = timed(Duration::from_millis(20), || hive.receive_timeout("other", Duration::from_millis(20)));
    assert!(other.unwrap().is_none());
}

#[test]
fn a_broadcast_names_the_message_and_every_member_it_missed() {
    // Which members refuse (a sealed inbox stays in the group but takes no
    // more messages): the last, the first, both, and all three. The first
    // case is where the last member is handed the message itself.
    for sealed in [&["m3"][..], &["m1"], &["m1", "m3"], &["m1", "m2", "m3"]] {
        let hive = hive_with(&[("m1", "g"), ("m2", "g"), ("m3", "g")]);
        let channel = hive.backend(beehive_model::constants::MSG_CTX_TYPE_CHANNEL).unwrap();
        for m in sealed {
            channel.seal(m).unwrap();
        }
        let sent = msg("x");
        match prompt(|| hive.send_to_group("g", sent.clone())) {
            Err(ContextError::GroupDelivery { group, msg_id, failed }) => {
                assert_eq!(group, "g");
                assert_eq!(msg_id, sent.id(), "sealed {sealed:?}");
                assert_eq!(failed.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(), sealed);
                assert!(failed.iter().all(|(m, why)| why.contains(m.as_str())), "{failed:?}");
            }
            other => panic!("sealed {sealed:?}: {other:?}"),
        }
        for m in ["m1", "m2", "m3"].iter().filter(|m| !sealed.contains(m)) {
            assert_eq!(hive.receive(m).unwrap().id(), sent.id(), "{m}, sealed {sealed:?}");
            assert_eq!(hive.cleanup(m).unwrap(), 0, "{m} got one copy, sealed {sealed:?}");
        }
    }
}

#[test]
fn the_broadcast_helper_tries_every_member_and_names_the_ones_it_missed() {
    let members: Vec<(String, u32)> = ["a", "b", "c"].iter().zip(1..).map(|(m, i)| ((*m).to_owned(), i)).collect();
    let mut tried = Vec::new();
    let ok = beehive_context::broadcast("g", "id-1", &members, |m, n| {
        tried.push((m.to_owned(), *n));
        Ok::<(), String>(())
    });
    assert!(ok.is_ok());
    assert_eq!(tried, members);
    let failed =
        beehive_context::broadcast(
            "g",
            "id-2",
            &members,
            |m, _| {
                if m == "b" {
                    Err(format!("{m} is full"))
                } else {
                    Ok(())
                }
            },
        );
    match failed {
        Err(ContextError::GroupDelivery { group, msg_id, failed }) => {
            assert_eq!((group.as_str(), msg_id.as_str()), ("g", "id-2"));
            assert_eq!(failed, [("b".to_owned(), "b is full".to_owned())]);
        }
        other => panic!("expected a group delivery error, got {other:?}"),
    }
}

#[test]
fn group_members_added_and_removed_while_broadcasting() {
    const N: i64 = 2000;
    let hive = hive_with(&[("stay", "g"), ("leave", "g")]);
    // The broadcaster reports its progress; it joins "late" while
    // broadcasting, and does not go past broadcast 1000 before "late" is
    // a member, so "late" is sure to get the tail.
    let (progress_tx, progress) = mpsc::channel();
    let (joined_tx, joined) = mpsc::channel::<()>();
    let h = hive.clone();
    let broadcaster = std::thread::spawn(move || {
        for i in 0..N {
            if i == 1000 {
                joined.recv_timeout(T).expect("late never joined");
            }
            // A member that left makes the broadcast report it; never a silent loss.
            match h.send_to_group("g", msg(&i.to_string())) {
                Ok(()) | Err(ContextError::GroupDelivery { .. }) => {}
                Err(e) => panic!("{e}"),
            }
            if i == 500 || i == 1200 {
                progress_tx.send(i).unwrap();
            }
        }
    });
    let h = hive.clone();
    let stay = std::thread::spawn(move || {
        let mut last = -1i64;
        for _ in 0..N {
            let m = h.receive_timeout("stay", T).unwrap().expect("a broadcast never reached stay");
            let i: i64 = m.content().as_str().unwrap().parse().unwrap();
            assert!(i > last, "out of order: {i} after {last}");
            last = i;
        }
    });
    assert_eq!(progress.recv_timeout(T), Ok(500));
    hive.add_module("late", "channel").unwrap();
    let late_reader = std::thread::spawn({
        let h = hive.clone();
        move || {
            let mut got = Vec::new();
            loop {
                let m = h.receive_timeout("late", T).unwrap().expect("the last broadcast never reached late");
                let i = m.content().as_str().unwrap().parse::<i64>().unwrap();
                got.push(i);
                if i == N - 1 {
                    return got;
                }
            }
        }
    });
    hive.add_module_group("late", "g").unwrap();
    joined_tx.send(()).unwrap();
    let drained_leave = std::thread::spawn({
        let h = hive.clone();
        move || {
            let mut n = 0;
            while h.receive("leave").is_ok() {
                n += 1;
            }
            n
        }
    });
    assert_eq!(progress.recv_timeout(T), Ok(1200));
    let dropped = hive.cleanup("leave").unwrap();
    join_within(broadcaster, "the broadcaster");
    join_within(stay, "stay's reader");
    let received_by_leave = join_within(drained_leave, "leave's reader");
    assert!(received_by_leave + dropped <= N as usize);
    assert!(received_by_leave + dropped >= 1201, "{received_by_leave} + {dropped}");
    // The late member got a contiguous, ordered tail of the broadcasts,
    // from no later than broadcast 1000.
    let late = join_within(late_reader, "late's reader");
    assert!(late.windows(2).all(|w| w[1] == w[0] + 1), "{late:?}");
    assert!(late.first().is_some_and(|&f| f <= 1000), "{:?}", late.first());
    assert_eq!(late.last().copied(), Some(N - 1));
    assert!(hive.receive_timeout("late", Duration::ZERO).unwrap().is_none());
}

#[test]
fn a_module_cleaned_up_while_others_send_loses_nothing_silently() {
    let hive = Hive::with_channel_capacity(16);
    hive.add_module("victim", "channel").unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let h = hive.clone();
            let a = Arc::clone(&accepted);
            std::thread::spawn(move || {
                for i in 0..5000 {
                    match h.send("victim", msg(&i.to_string())) {
                        Ok(()) => {
                            a.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(ContextError::Closed { .. }) => return,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    let h = hive.clone();
    let receiver = std::thread::spawn(move || {
        let mut n = 0;
        while h.receive_timeout("victim", T).unwrap().is_some() {
            n += 1;
            if n == 3000 {
                break;
            }
        }
        n
    });
    let received = join_within(receiver, "the receiver");
    assert_eq!(received, 3000, "the receiver waited {T:?} for a message");
    // The cleanup waits for the senders in flight, which it wakes.
    let dropped = join_within(
        std::thread::spawn({
            let hive = hive.clone();
            move || hive.cleanup("victim").unwrap()
        }),
        "the cleanup",
    );
    for s in senders {
        join_within(s, "a sender");
    }
    // Every accepted message was either received or reported by cleanup.
    assert_eq!(accepted.load(Ordering::SeqCst), received + dropped);
}

#[test]
fn group_sync_collects_every_response_or_reports_what_is_missing() {
    let hive = hive_with(&[("g1", "grp"), ("g2", "grp")]);
    let _a = echo(&hive, "g1", "a");
    let _b = echo(&hive, "g2", "b");
    let req = msg("all");
    let resps = hive.send_to_group_sync("grp", req.clone(), T).unwrap();
    assert_eq!(resps.len(), 2);
    assert!(resps.iter().all(|r| r.parent_id() == req.id()));
    let bodies: HashSet<_> = resps.iter().map(|r| r.content().as_str().unwrap().to_owned()).collect();
    assert_eq!(bodies, HashSet::from(["a".to_owned(), "b".to_owned()]));

    hive.add_module("mute", "channel").unwrap();
    hive.add_module_group("mute", "grp").unwrap();
    let timeout = Duration::from_millis(100);
    match timed(timeout, || hive.send_to_group_sync("grp", msg("again"), timeout)) {
        Err(ContextError::GroupSyncIncomplete { expected: 3, received: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn send_resp_routes_by_message_type() {
    let hive = hive_with(&[("echo", "e")]);
    let resp = msg("x").set_type("unixpacket").new_response("y");
    assert!(matches!(hive.send_resp(resp), Err(ContextError::UnknownContextType { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_api_send_receive_and_send_sync() {
    let hive = hive_with(&[("a", "g"), ("echo", "e")]);
    let h = hive.clone();
    tokio::spawn(async move {
        while let Ok(m) = h.receive_async("echo").await {
            let _ = h.send_resp(m.new_response("async-pong"));
            // A receive that never waits must not starve the test's
            // timeouts on this one-thread runtime.
            tokio::task::consume_budget().await;
        }
    });
    hive.send_async("a", msg("1")).await.unwrap();
    assert_eq!(hive.receive_async("a").await.unwrap().content().as_str(), Some("1"));
    let resp = hive.send_sync_async("echo", msg("ping"), T).await.unwrap();
    assert_eq!(resp.content().as_str(), Some("async-pong"));
    // An async receiver is woken by a blocking sender on another thread.
    let h = hive.clone();
    let (pending_tx, pending) = tokio::sync::oneshot::channel();
    let waiter = tokio::spawn(async move { signal_when_pending(h.receive_async("a"), pending_tx).await });
    // The receiver is waiting for a wake-up.
    tokio::time::timeout(T, pending).await.unwrap().unwrap();
    let h = hive.clone();
    std::thread::spawn(move || h.send("a", msg("2")).unwrap()).join().unwrap();
    let got = tokio::time::timeout(T, waiter).await.unwrap().unwrap().unwrap();
    assert_eq!(got.content().as_str(), Some("2"));
    let timeout = Duration::from_millis(50);
    let t0 = Instant::now();
    let r = hive.send_sync_async("a", msg("nobody"), timeout).await;
    let took = t0.elapsed();
    assert!(matches!(r, Err(ContextError::ResponseTimeout { .. })), "{r:?}");
    assert!(took >= timeout && took < timeout + SLACK, "{took:?}");
}

#[tokio::test]
async fn async_receive_of_unknown_and_cleaned_up_modules_fails() {
    let hive = hive_with(&[("a", "g")]);
    assert!(matches!(hive.receive_async("nope").await, Err(ContextError::UnknownModule { .. })));
    // A receiver waiting on an empty inbox learns of the cleanup.
    let h = hive.clone();
    let (pending_tx, pending) = tokio::sync::oneshot::channel();
    let waiter = tokio::spawn(async move { signal_when_pending(h.receive_async("a"), pending_tx).await });
    tokio::time::timeout(T, pending).await.unwrap().unwrap();
    hive.cleanup("a").unwrap();
    let r = tokio::time::timeout(T, waiter).await.unwrap().unwrap();
    assert!(matches!(r, Err(ContextError::Closed { .. })), "{r:?}");
    assert!(hive.receive_async("a").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_send_waits_for_room() {
    let hive = Hive::with_channel_capacity(1);
    hive.add_module("a", "channel").unwrap();
    hive.send_async("a", msg("1")).await.unwrap();
    let h = hive.clone();
    let (pending_tx, pending) = tokio::sync::oneshot::channel();
    let sender = tokio::spawn(async move { signal_when_pending(h.send_async("a", msg("2")), pending_tx).await });
    // The sender waits for room (it never got it, so it cannot have finished).
    tokio::time::timeout(T, pending).await.unwrap().unwrap();
    assert!(!sender.is_finished());
    assert_eq!(hive.receive_async("a").await.unwrap().content().as_str(), Some("1"));
    tokio::time::timeout(T, sender).await.unwrap().unwrap().unwrap();
    assert_eq!(hive.receive_async("a").await.unwrap().content().as_str(), Some("2"));
}
