//! A response can arrive before `send` even returns (a peer answering at
//! once, a backend answering from its send path). The waiter must already
//! be registered then: Go registers it after sending and loses such
//! responses. The backend here answers *inside* `send`, synchronously, so
//! a waiter registered after the send misses its response every time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beehive_context::{Backend, BoxFuture, ContextError, Hive, MessageContext, ModuleContext, SyncKeeper};
use beehive_model::Message;

const CONTEXT_TYPE: &str = "instant";
const T: Duration = Duration::from_secs(10);

/// Modules that answer every sync request before `send` returns, with
/// "re: <body>"; group members answer a group request the same way.
#[derive(Default)]
struct InstantBackend {
    keeper: SyncKeeper,
    groups: Mutex<Vec<(String, String)>>,
    /// Requests that reached a module.
    delivered: AtomicUsize,
}

impl InstantBackend {
    fn answer(&self, msg: &Message) -> Result<(), ContextError> {
        self.delivered.fetch_add(1, Ordering::SeqCst);
        if msg.is_sync() {
            let body = msg.content().as_str().unwrap_or_default();
            // No waiter registered yet is an error the requester sees.
            self.keeper.deliver(msg.new_response(format!("re: {body}")))?;
        }
        Ok(())
    }

    fn members(&self, group: &str) -> Vec<String> {
        self.groups.lock().unwrap().iter().filter(|(_, g)| g == group).map(|(m, _)| m.clone()).collect()
    }
}

impl ModuleContext for InstantBackend {
    fn add_module(&self, _module: &str) -> Result<(), ContextError> {
        Ok(())
    }
    fn add_module_group(&self, module: &str, group: &str) -> Result<(), ContextError> {
        self.groups.lock().unwrap().push((module.to_owned(), group.to_owned()));
        Ok(())
    }
    fn seal(&self, _module: &str) -> Result<(), ContextError> {
        Ok(())
    }
    fn cleanup(&self, _module: &str) -> Result<usize, ContextError> {
        Ok(0)
    }
}

impl MessageContext for InstantBackend {
    fn send(&self, _module: &str, msg: Message) -> Result<(), ContextError> {
        self.answer(&msg)
    }
    fn try_send(&self, module: &str, msg: Message) -> Result<(), ContextError> {
        self.send(module, msg)
    }
    fn send_timeout(&self, module: &str, msg: Message, _timeout: Duration) -> Result<(), ContextError> {
        self.send(module, msg)
    }
    fn send_async<'a>(&'a self, module: &'a str, msg: Message) -> BoxFuture<'a, Result<(), ContextError>> {
        Box::pin(async move { self.send(module, msg) })
    }
    fn receive(&self, module: &str) -> Result<Message, ContextError> {
        Err(ContextError::Closed { module: module.to_owned() })
    }
    fn receive_timeout(&self, _module: &str, _timeout: Duration) -> Result<Option<Message>, ContextError> {
        Ok(None)
    }
    fn receive_async<'a>(&'a self, module: &'a str) -> BoxFuture<'a, Result<Message, ContextError>> {
        Box::pin(async move { self.receive(module) })
    }
    fn send_sync(&self, module: &str, msg: Message, timeout: Duration) -> Result<Message, ContextError> {
        self.keeper.request(
            msg,
            timeout,
            |msg, _slot, _deadline, _timeout| self.send(module, msg),
            |slot, deadline| slot.wait_one(deadline),
        )
    }
    fn send_sync_async<'a>(
        &'a self,
        module: &'a str,
        msg: Message,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Message, ContextError>> {
        Box::pin(async move { self.send_sync(module, msg, timeout) })
    }
    fn send_resp(&self, resp: Message) -> Result<(), ContextError> {
        self.keeper.deliver(resp)
    }
    fn send_to_group(&self, group: &str, msg: Message) -> Result<(), ContextError> {
        for m in self.members(group) {
            self.send(&m, msg.clone())?;
        }
        Ok(())
    }
    fn send_to_group_sync(&self, group: &str, msg: Message, timeout: Duration) -> Result<Vec<Message>, ContextError> {
        let members = self.members(group);
        let msg = msg.set_sync(true);
        self.keeper.group_sync(group, msg.id(), &members, timeout, |member, _slot, _deadline| {
            self.send(member, msg.clone()).is_ok()
        })
    }
}

impl Backend for InstantBackend {
    fn context_type(&self) -> &str {
        CONTEXT_TYPE
    }
}

fn hive_with_instant_modules() -> (Hive, Arc<InstantBackend>) {
    let hive = Hive::new();
    let backend = Arc::new(InstantBackend::default());
    hive.add_backend(backend.clone());
    for m in ["i1", "i2", "i3"] {
        hive.add_module(m, CONTEXT_TYPE).unwrap();
        hive.add_module_group(m, "instant-group").unwrap();
    }
    (hive, backend)
}

fn request(body: &str) -> Message {
    Message::new("").build_router("src", "", "res", "query").fill_body(body)
}

#[test]
fn a_response_delivered_inside_send_reaches_send_sync() {
    let (hive, backend) = hive_with_instant_modules();
    for i in 0..5 {
        let req = request(&format!("q{i}"));
        let t0 = Instant::now();
        let resp = hive.send_sync("i1", req.clone(), T).unwrap();
        // Collected at once, not after waiting out the timeout.
        assert!(t0.elapsed() < T / 2, "{:?}", t0.elapsed());
        assert_eq!(resp.parent_id(), req.id());
        assert_eq!(resp.content().as_str(), Some(format!("re: q{i}").as_str()));
    }
    assert_eq!(backend.delivered.load(Ordering::SeqCst), 5);
    // Nothing is left registered.
    assert_eq!(backend.keeper.pending(), 0);
}

#[test]
fn responses_delivered_inside_send_reach_send_to_group_sync() {
    let (hive, backend) = hive_with_instant_modules();
    let req = request("all");
    let t0 = Instant::now();
    let resps = hive.send_to_group_sync("instant-group", req.clone(), T).unwrap();
    assert!(t0.elapsed() < T / 2, "{:?}", t0.elapsed());
    assert_eq!(resps.len(), 3);
    assert!(resps.iter().all(|r| r.parent_id() == req.id() && r.content().as_str() == Some("re: all")));
    assert_eq!(backend.delivered.load(Ordering::SeqCst), 3);
    assert_eq!(backend.keeper.pending(), 0);
}

#[test]
fn a_response_to_a_finished_request_has_no_waiter() {
    // The other side of the contract: once send_sync has returned, its
    // registration is gone and a late duplicate is refused.
    let (hive, backend) = hive_with_instant_modules();
    let req = request("once");
    hive.send_sync("i2", req.clone(), T).unwrap();
    let late = req.set_sync(true).new_response("again");
    assert!(matches!(backend.send_resp(late), Err(ContextError::NoWaiter { .. })));
}

#[test]
fn a_backend_without_its_own_offer_offers_through_try_send() {
    let (hive, backend) = hive_with_instant_modules();
    hive.offer("i1", request("plain")).unwrap();
    assert_eq!(backend.delivered.load(Ordering::SeqCst), 1);
    // The backend's try_send fails (a sync request nobody waits for is
    // answered into the void): the offer reports that failure.
    let refused = hive.offer("i1", request("orphan").set_sync(true));
    assert!(matches!(refused, Err(beehive_context::Offer::Failed(ContextError::NoWaiter { .. }))), "{refused:?}");
    assert_eq!(backend.delivered.load(Ordering::SeqCst), 2);
}
