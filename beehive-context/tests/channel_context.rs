//! `ChannelContext` used on its own, without a hive: what it reports about
//! its modules, groups, inboxes and pending requests.

use std::sync::mpsc;
use std::time::Duration;

use beehive_context::{ChannelContext, ContextError, MessageContext, ModuleContext, SpinBudget};
use beehive_model::Message;

/// How long a test waits for an event that must happen.
const T: Duration = Duration::from_secs(10);

fn msg(body: &str) -> Message {
    Message::new("").fill_body(body)
}

#[test]
fn it_reports_its_modules_groups_and_queues() {
    let ctx = ChannelContext::with_options(3, SpinBudget::OFF);
    assert_eq!(ctx.spin(), SpinBudget::OFF);
    assert_eq!(ChannelContext::new().spin(), SpinBudget::DEFAULT);
    for m in ["zeta", "alpha", "mid"] {
        ctx.add_module(m).unwrap();
    }
    ctx.add_module_group("zeta", "g").unwrap();
    ctx.add_module_group("alpha", "g").unwrap();
    assert_eq!(ctx.modules(), ["alpha", "mid", "zeta"], "sorted");
    assert_eq!(ctx.group_members("g"), ["zeta", "alpha"], "in the order added");
    assert!(ctx.group_members("nope").is_empty());
    let debug = format!("{ctx:?}");
    assert!(debug.contains("ChannelContext") && debug.contains("alpha") && debug.contains("\"g\""), "{debug}");

    // The capacity asked for, and what is queued.
    for i in 0..3 {
        ctx.try_send("mid", msg(&i.to_string())).unwrap();
    }
    assert_eq!(ctx.queued("mid").unwrap(), 3);
    assert!(matches!(ctx.try_send("mid", msg("3")), Err(ContextError::Full { .. })));
    ctx.receive("mid").unwrap();
    assert_eq!(ctx.queued("mid").unwrap(), 2);
    assert!(matches!(ChannelContext::with_capacity(5).queued("mid"), Err(ContextError::UnknownModule { .. })));
    let five = ChannelContext::with_capacity(5);
    five.add_module("m").unwrap();
    for i in 0..5 {
        five.try_send("m", msg(&i.to_string())).unwrap();
    }
    assert!(matches!(five.try_send("m", msg("5")), Err(ContextError::Full { .. })));
}

#[test]
fn it_knows_which_requests_wait_for_a_response() {
    let ctx = std::sync::Arc::new(ChannelContext::new());
    ctx.add_module("echo").unwrap();
    assert_eq!(ctx.pending_requests(), 0);
    let (seen_tx, seen) = mpsc::channel();
    let (go_tx, go) = mpsc::channel::<()>();
    let c = ctx.clone();
    let echo = std::thread::spawn(move || {
        let req = c.receive("echo").unwrap();
        seen_tx.send((c.pending_requests(), c.is_waiting(req.id()), c.is_waiting("another"))).unwrap();
        go.recv_timeout(T).unwrap();
        c.send_resp(req.new_response("ok")).unwrap();
    });
    let c = ctx.clone();
    let requester = std::thread::spawn(move || c.send_sync("echo", msg("ping"), T));
    let waiting = seen.recv_timeout(T).unwrap();
    assert_eq!(waiting, (1, true, false));
    go_tx.send(()).unwrap();
    assert_eq!(requester.join().unwrap().unwrap().content().as_str(), Some("ok"));
    echo.join().unwrap();
    assert_eq!(ctx.pending_requests(), 0);
}

#[test]
fn a_group_whose_members_were_all_cleaned_up_is_unknown_to_a_sync_broadcast() {
    let ctx = ChannelContext::new();
    ctx.add_module("a").unwrap();
    ctx.add_module_group("a", "g").unwrap();
    ctx.cleanup("a").unwrap();
    match ctx.send_to_group_sync("g", msg("x"), Duration::from_millis(50)) {
        Err(ContextError::UnknownGroup { group }) => assert_eq!(group, "g"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(ctx.send_to_group("g", msg("x")), Err(ContextError::UnknownGroup { .. })));
}

#[test]
fn its_own_send_offer_and_receive_deliver_and_refuse() {
    let ctx = ChannelContext::with_options(1, SpinBudget::OFF);
    ctx.add_module("m").unwrap();
    ctx.send("m", msg("a")).unwrap();
    match ctx.offer("m", msg("b")) {
        Err(beehive_context::Offer::Full(back)) => assert_eq!(back.content().as_str(), Some("b")),
        other => panic!("{other:?}"),
    }
    assert_eq!(ctx.receive("m").unwrap().content().as_str(), Some("a"));
    ctx.offer("m", msg("c")).unwrap();
    assert_eq!(ctx.receive("m").unwrap().content().as_str(), Some("c"));
    assert!(matches!(ctx.send("nope", msg("x")), Err(ContextError::UnknownModule { .. })));
    assert!(matches!(ctx.receive("nope"), Err(ContextError::UnknownModule { .. })));
}

#[test]
fn a_hive_built_with_a_spin_budget_uses_it_and_names_its_modules() {
    let hive = beehive_context::Hive::builder().spin(SpinBudget::OFF).build();
    assert_eq!(hive.spin(), SpinBudget::OFF);
    assert_eq!(beehive_context::Hive::builder().build().spin(), SpinBudget::DEFAULT);
    hive.add_module("visible", "channel").unwrap();
    let debug = format!("{hive:?}");
    assert!(debug.contains("Hive") && debug.contains("visible"), "{debug}");
}
