//! Messaging through the hive: every operation, its errors, and concurrency.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use beehive_context::{ContextError, Hive};
use beehive_model::Message;

const T: Duration = Duration::from_secs(10);

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
    let t0 = Instant::now();
    let r = hive.send_timeout("a", msg("3"), Duration::from_millis(50));
    assert!(matches!(r, Err(ContextError::SendTimeout { .. })), "{r:?}");
    assert!(t0.elapsed() >= Duration::from_millis(50));
    // A blocked send completes as soon as there is room.
    let h = hive.clone();
    let sender = std::thread::spawn(move || h.send("a", msg("3")));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(hive.receive("a").unwrap().content().as_str(), Some("1"));
    sender.join().unwrap().unwrap();
    assert_eq!(hive.receive("a").unwrap().content().as_str(), Some("2"));
    assert_eq!(hive.receive("a").unwrap().content().as_str(), Some("3"));
}

#[test]
fn receive_timeout_returns_none_when_idle() {
    let hive = hive_with(&[("a", "g")]);
    assert!(hive.receive_timeout("a", Duration::from_millis(20)).unwrap().is_none());
    hive.send("a", msg("x")).unwrap();
    assert!(hive.receive_timeout("a", Duration::from_millis(20)).unwrap().is_some());
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
    let h = hive.clone();
    let receiver = std::thread::spawn(move || h.receive("a"));
    std::thread::sleep(Duration::from_millis(50));
    hive.cleanup("a").unwrap();
    assert!(matches!(receiver.join().unwrap(), Err(ContextError::Closed { .. })));
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
    let waiter = std::thread::spawn(move || h.send_sync("a", msg("q"), Duration::from_millis(300)));
    let got = hive.receive("a").unwrap();
    assert!(got.is_sync());
    assert!(matches!(waiter.join().unwrap(), Err(ContextError::ResponseTimeout { .. })));
}

#[test]
fn send_sync_distinguishes_enqueue_and_response_timeouts() {
    let hive = Hive::with_channel_capacity(1);
    hive.add_module("slow", "channel").unwrap();
    // Nobody answers: the request is queued, the response never comes.
    let r = hive.send_sync("slow", msg("1"), Duration::from_millis(30));
    assert!(matches!(r, Err(ContextError::ResponseTimeout { .. })), "{r:?}");
    // The inbox is now full: the request cannot even be queued.
    let r = hive.send_sync("slow", msg("2"), Duration::from_millis(30));
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
    let waiter = std::thread::spawn(move || h.send_sync("a", msg("q"), Duration::from_millis(20)));
    let req = hive.receive("a").unwrap();
    assert!(waiter.join().unwrap().is_err());
    assert!(matches!(hive.send_resp(req.new_response("late")), Err(ContextError::NoWaiter { .. })));
}

#[test]
fn an_early_response_is_kept_until_the_requester_collects_it() {
    // The echo answers before the requester starts waiting (Go drops these).
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
    assert!(hive.receive_timeout("other", Duration::from_millis(5)).unwrap().is_none());
}

#[test]
fn group_members_added_and_removed_while_broadcasting() {
    let hive = hive_with(&[("stay", "g"), ("leave", "g")]);
    let h = hive.clone();
    let sent = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&sent);
    let broadcaster = std::thread::spawn(move || {
        for i in 0..2000 {
            // A member that left makes the broadcast report it; never a silent loss.
            match h.send_to_group("g", msg(&i.to_string())) {
                Ok(()) | Err(ContextError::GroupDelivery { .. }) => {}
                Err(e) => panic!("{e}"),
            }
            s.fetch_add(1, Ordering::SeqCst);
        }
    });
    let h = hive.clone();
    let stay = std::thread::spawn(move || {
        let mut last = -1i64;
        for _ in 0..2000 {
            let m = h.receive("stay").unwrap();
            let i: i64 = m.content().as_str().unwrap().parse().unwrap();
            assert!(i > last, "out of order: {i} after {last}");
            last = i;
        }
    });
    std::thread::sleep(Duration::from_millis(2));
    hive.add_module("late", "channel").unwrap();
    let late_reader = std::thread::spawn({
        let h = hive.clone();
        move || {
            let mut got = Vec::new();
            while let Some(m) = h.receive_timeout("late", Duration::from_millis(500)).unwrap() {
                got.push(m.content().as_str().unwrap().parse::<i64>().unwrap());
            }
            got
        }
    });
    hive.add_module_group("late", "g").unwrap();
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
    std::thread::sleep(Duration::from_millis(2));
    let dropped = hive.cleanup("leave").unwrap();
    broadcaster.join().unwrap();
    stay.join().unwrap();
    let received_by_leave = drained_leave.join().unwrap();
    assert!(received_by_leave + dropped <= 2000);
    // The late member got a contiguous, ordered tail of the broadcasts.
    let late = late_reader.join().unwrap();
    assert!(late.windows(2).all(|w| w[1] == w[0] + 1), "{late:?}");
    assert_eq!(late.last().copied(), Some(1999));
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
        while h.receive("victim").is_ok() {
            n += 1;
            if n == 3000 {
                break;
            }
        }
        n
    });
    let received = receiver.join().unwrap();
    let dropped = hive.cleanup("victim").unwrap();
    for s in senders {
        s.join().unwrap();
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
    match hive.send_to_group_sync("grp", msg("again"), Duration::from_millis(100)) {
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
        }
    });
    hive.send_async("a", msg("1")).await.unwrap();
    assert_eq!(hive.receive_async("a").await.unwrap().content().as_str(), Some("1"));
    let resp = hive.send_sync_async("echo", msg("ping"), T).await.unwrap();
    assert_eq!(resp.content().as_str(), Some("async-pong"));
    // An async receiver is woken by a blocking sender on another thread.
    let h = hive.clone();
    let waiter = tokio::spawn(async move { h.receive_async("a").await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let h = hive.clone();
    std::thread::spawn(move || h.send("a", msg("2")).unwrap()).join().unwrap();
    assert_eq!(waiter.await.unwrap().unwrap().content().as_str(), Some("2"));
    let r = hive.send_sync_async("a", msg("nobody"), Duration::from_millis(30)).await;
    assert!(matches!(r, Err(ContextError::ResponseTimeout { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_send_waits_for_room() {
    let hive = Hive::with_channel_capacity(1);
    hive.add_module("a", "channel").unwrap();
    hive.send_async("a", msg("1")).await.unwrap();
    let h = hive.clone();
    let sender = tokio::spawn(async move { h.send_async("a", msg("2")).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!sender.is_finished());
    assert_eq!(hive.receive_async("a").await.unwrap().content().as_str(), Some("1"));
    sender.await.unwrap().unwrap();
    assert_eq!(hive.receive_async("a").await.unwrap().content().as_str(), Some("2"));
}
