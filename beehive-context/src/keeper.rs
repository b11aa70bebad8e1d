//! The sync keeper: pending requests and the responses they wait for.
//!
//! A waiter is registered *before* its request is sent and keeps every
//! response that arrives for it until it collects them, so a response can
//! never be lost because it came "too early" (Go's unbuffered hand-off drops
//! those and the caller times out). Once the caller gives up (timeout) or
//! is done, its slot is closed in the same step as its last look at the
//! responses: a later response is refused (`NoWaiter`), never accepted and
//! then dropped.
//!
//! # The reply path
//!
//! A request sent in process carries its slot along (see the inbox), and
//! the thread that receives it remembers that slot. When the same thread
//! then sends the response, it is handed to the remembered slot directly,
//! without the keeper's table: the table's lock and entries stay in the
//! requesting thread's cache, and a round trip between two threads moves
//! only the slot between them. Any other response (another thread, another
//! request, another keeper) goes through the table as before.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;
use std::time::Instant;

use beehive_model::Message;

use crate::spin::{Spin, SpinBudget};
use crate::ContextError;

impl std::fmt::Debug for SyncKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncKeeper").field("pending", &self.pending()).finish()
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("id", &self.id)
            .field("expected", &self.expected)
            .field("received", &self.count.load(Ordering::Relaxed))
            .finish()
    }
}

impl std::fmt::Debug for Registration<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("id", &self.slot.id).finish()
    }
}

enum Waiter {
    None,
    Thread(Thread),
    Task(Waker),
}

/// The responses collected so far: the first one inline, so that a
/// request with one response allocates nothing for it.
#[derive(Default)]
struct Responses {
    first: Option<Message>,
    rest: Vec<Message>,
}

impl Responses {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn push(&mut self, msg: Message) {
        match self.first {
            None => self.first = Some(msg),
            Some(_) => self.rest.push(msg),
        }
    }

    fn take(&mut self) -> Vec<Message> {
        let mut all = std::mem::take(&mut self.rest);
        if let Some(first) = self.first.take() {
            all.insert(0, first);
        }
        all
    }
}

struct SlotState {
    responses: Responses,
    waiter: Waiter,
    /// The caller has stopped looking: later responses are refused.
    closed: bool,
}

/// Where the responses to one request are collected.
pub struct Slot {
    /// The keeper the slot is registered with (its address, for the reply
    /// path: a remembered slot serves only its own keeper's responses).
    keeper: usize,
    /// The request's id.
    id: String,
    /// How many responses complete the request.
    expected: usize,
    /// Responses delivered so far (read without the lock while spinning).
    count: AtomicUsize,
    /// How long [`Slot::wait`] polls before it parks.
    spin: SpinBudget,
    state: Mutex<SlotState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slot {
    /// True once every expected response has arrived.
    pub fn is_complete(&self) -> bool {
        self.complete()
    }

    fn complete(&self) -> bool {
        self.count.load(Ordering::Acquire) >= self.expected
    }

    /// Adds a response; gives it back when the slot is closed.
    fn deliver(&self, msg: Message) -> Result<(), Message> {
        let waiter = {
            let mut st = lock(&self.state);
            if st.closed {
                return Err(msg);
            }
            st.responses.push(msg);
            self.count.fetch_add(1, Ordering::Release);
            if st.responses.len() >= self.expected {
                std::mem::replace(&mut st.waiter, Waiter::None)
            } else {
                Waiter::None
            }
        };
        match waiter {
            Waiter::None => {}
            Waiter::Thread(t) => t.unpark(),
            Waiter::Task(w) => w.wake(),
        }
        Ok(())
    }

    fn take(&self) -> Vec<Message> {
        lock(&self.state).responses.take()
    }

    /// Closes the slot and takes what is in it, in one step.
    fn close_then<T>(&self, take: impl FnOnce(&mut Responses) -> T) -> T {
        let mut st = lock(&self.state);
        st.closed = true;
        take(&mut st.responses)
    }

    /// The request's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Blocks until complete or `deadline`: polls for the keeper's spin
    /// budget (a response often arrives within microseconds, faster than a
    /// park/unpark round trip), then parks. Returns what arrived.
    pub fn wait(&self, deadline: Instant) -> Vec<Message> {
        self.wait_then(deadline, Responses::take)
    }

    /// [`wait`](Self::wait) for a request with one response: the response,
    /// or `None` when none arrived by `deadline`.
    pub fn wait_one(&self, deadline: Instant) -> Option<Message> {
        self.wait_then(deadline, |r| r.first.take())
    }

    fn wait_then<T>(&self, deadline: Instant, take: impl FnOnce(&mut Responses) -> T) -> T {
        let mut spin = Spin::new(self.spin).until(Some(deadline));
        while !self.complete() && spin.wait() {}
        if self.complete() {
            return take(&mut lock(&self.state).responses);
        }
        loop {
            {
                let mut st = lock(&self.state);
                if st.responses.len() >= self.expected {
                    return take(&mut st.responses);
                }
                st.waiter = Waiter::Thread(std::thread::current());
            }
            let now = Instant::now();
            if now >= deadline {
                let mut st = lock(&self.state);
                st.waiter = Waiter::None;
                return take(&mut st.responses);
            }
            std::thread::park_timeout(deadline - now);
        }
    }

    /// Waits asynchronously until complete (the caller adds the deadline).
    pub fn wait_async(self: &Arc<Self>) -> SlotFuture {
        SlotFuture { slot: Arc::clone(self) }
    }
}

/// Completes when a [`Slot`] has all its responses.
#[derive(Debug)]
pub struct SlotFuture {
    slot: Arc<Slot>,
}

impl Future for SlotFuture {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = lock(&self.slot.state);
        if st.responses.len() >= self.slot.expected {
            return Poll::Ready(());
        }
        st.waiter = Waiter::Task(cx.waker().clone());
        Poll::Pending
    }
}

/// A pending request's slot in the keeper's set, found by its id.
struct Pending(Arc<Slot>);

impl Borrow<str> for Pending {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

impl Hash for Pending {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.as_str().hash(state);
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Pending {}

/// Pending requests by message id: a waiter is registered before its
/// request is sent and keeps every response that arrives for it, so no
/// response is lost for arriving early. Shared by every backend.
pub struct SyncKeeper {
    /// Looked up by ids a peer chooses, but only our own requests are in it.
    slots: Mutex<HashSet<Pending, rustc_hash::FxBuildHasher>>,
    spin: SpinBudget,
    /// `beehive_sync_round_trip_seconds`, registered once.
    round_trips: metrics::Histogram,
}

impl Default for SyncKeeper {
    fn default() -> Self {
        SyncKeeper::with_spin(SpinBudget::DEFAULT)
    }
}

/// Unregisters its request when dropped (on success, timeout or error).
pub struct Registration<'a> {
    keeper: &'a SyncKeeper,
    /// Where the responses arrive.
    pub slot: Arc<Slot>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(&self.slot.state).closed = true;
        lock(&self.keeper.slots).remove(self.slot.id.as_str());
    }
}

impl Registration<'_> {
    /// The responses that have arrived, without waiting.
    pub fn take(&self) -> Vec<Message> {
        self.slot.take()
    }

    /// The response to a request with one, if it has arrived, without
    /// waiting.
    pub fn take_one(&self) -> Option<Message> {
        lock(&self.slot.state).responses.first.take()
    }

    /// Stops accepting responses and takes those that arrived: a response
    /// that comes later is refused with [`ContextError::NoWaiter`], so none
    /// is accepted and then dropped with the registration.
    pub fn close(&self) -> Vec<Message> {
        self.slot.close_then(Responses::take)
    }

    /// [`close`](Self::close) for a request with one response.
    pub fn close_one(&self) -> Option<Message> {
        self.slot.close_then(|r| r.first.take())
    }
}

thread_local! {
    /// The slot of the last request with a slot that this thread received:
    /// where its response goes if this thread sends it (see the module
    /// docs).
    static REPLY_TO: RefCell<Option<Arc<Slot>>> = const { RefCell::new(None) };
}

/// Remembers `slot` as where this thread's next response to its request
/// goes (called by a receiver when it takes a request out of an inbox).
pub(crate) fn remember_reply(slot: Arc<Slot>) {
    REPLY_TO.set(Some(slot));
}

/// The id of the request whose slot this thread remembers.
#[cfg(test)]
pub(crate) fn remembered() -> Option<String> {
    REPLY_TO.with_borrow(|r| r.as_ref().map(|s| s.id.clone()))
}

impl SyncKeeper {
    /// A keeper whose waiters poll for `spin` before they park.
    pub fn with_spin(spin: SpinBudget) -> Self {
        SyncKeeper { slots: Mutex::default(), spin, round_trips: crate::metrics::round_trips() }
    }

    /// Registers a waiter for `expected` responses to request `id`.
    pub fn register(&self, id: &str, expected: usize) -> Result<Registration<'_>, ContextError> {
        let slot = Arc::new(Slot {
            keeper: self.address(),
            id: id.to_owned(),
            expected: expected.max(1),
            count: AtomicUsize::new(0),
            spin: self.spin,
            state: Mutex::new(SlotState { responses: Responses::default(), waiter: Waiter::None, closed: false }),
        });
        let mut slots = lock(&self.slots);
        if slots.contains(id) {
            return Err(ContextError::DuplicateRequest { msg_id: id.to_owned() });
        }
        slots.insert(Pending(Arc::clone(&slot)));
        Ok(Registration { keeper: self, slot })
    }

    fn address(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Hands a response to the request named by its parent id.
    pub fn deliver(&self, resp: Message) -> Result<(), ContextError> {
        let resp = match self.deliver_to_remembered(resp) {
            Ok(()) => return Ok(()),
            Err(resp) => resp,
        };
        let slot = lock(&self.slots).get(resp.parent_id()).map(|p| Arc::clone(&p.0));
        let refused = match slot {
            Some(slot) => match slot.deliver(resp) {
                Ok(()) => return Ok(()),
                Err(resp) => resp,
            },
            None => resp,
        };
        crate::metrics::response_without_waiter();
        Err(ContextError::NoWaiter { parent_id: refused.parent_id().to_owned() })
    }

    /// The reply path: `resp` answers the request this thread received
    /// last, from this keeper. Gives the response back when it does not,
    /// and when that request's caller has stopped waiting (the table then
    /// has no entry for it either).
    fn deliver_to_remembered(&self, resp: Message) -> Result<(), Message> {
        let Some(slot) = REPLY_TO.take() else { return Err(resp) };
        if slot.keeper == self.address() && slot.id == resp.parent_id() {
            // Used once: a second response from this thread takes the table.
            return slot.deliver(resp);
        }
        REPLY_TO.set(Some(slot));
        Err(resp)
    }

    /// A synchronous request (Go `SendSync`): sets `sync`, registers the
    /// waiter before `send(request, slot, deadline, timeout)` delivers the
    /// request, then `wait(slot, deadline)`s for the response. A zero timeout
    /// means the default (30 s). When the wait ends without a response, the
    /// slot is closed and looked at once more in one step (a response that
    /// came in between is returned, any later one refused).
    pub fn request<E: From<ContextError>>(
        &self,
        msg: Message,
        timeout: std::time::Duration,
        send: impl FnOnce(Message, &Arc<Slot>, Instant, std::time::Duration) -> Result<(), E>,
        wait: impl FnOnce(&Slot, Instant) -> Option<Message>,
    ) -> Result<Message, E> {
        let timeout = crate::backend::effective_timeout(timeout);
        let started = Instant::now();
        let deadline = started + timeout;
        let msg = msg.set_sync(true);
        let reg = self.register(msg.id(), 1)?;
        send(msg, &reg.slot, deadline, timeout)?;
        match wait(&reg.slot, deadline).or_else(|| reg.close_one()) {
            Some(resp) => {
                self.round_trips.record(started.elapsed().as_secs_f64());
                Ok(resp)
            }
            None => Err(ContextError::ResponseTimeout { msg_id: reg.slot.id.clone(), timeout }.into()),
        }
    }

    /// A synchronous broadcast (Go `SendToGroupSync`): registers a waiter for
    /// one response per member of `group`, calls `deliver(member, slot,
    /// deadline)` for each (false: not delivered), then waits until every
    /// response has arrived or `timeout` has passed. Responses that come
    /// later are refused.
    pub fn group_sync(
        &self,
        group: &str,
        msg_id: &str,
        members: &[String],
        timeout: std::time::Duration,
        mut deliver: impl FnMut(&str, &Arc<Slot>, Instant) -> bool,
    ) -> Result<Vec<Message>, ContextError> {
        let deadline = Instant::now() + timeout;
        let reg = self.register(msg_id, members.len())?;
        let undelivered: Vec<String> = members.iter().filter(|m| !deliver(m, &reg.slot, deadline)).cloned().collect();
        let mut responses = if undelivered.is_empty() { reg.slot.wait(deadline) } else { Vec::new() };
        responses.extend(reg.close());
        if responses.len() == members.len() {
            return Ok(responses);
        }
        Err(ContextError::GroupSyncIncomplete {
            group: group.to_owned(),
            msg_id: msg_id.to_owned(),
            expected: members.len(),
            received: responses.len(),
            undelivered,
            timeout,
        })
    }

    /// True when a request with this id is waiting.
    pub fn is_waiting(&self, id: &str) -> bool {
        lock(&self.slots).contains(id)
    }

    /// Number of requests waiting.
    pub fn pending(&self) -> usize {
        lock(&self.slots).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::time::Duration;

    fn response(parent: &str, body: &str) -> Message {
        Message::new(parent).fill_body(body)
    }

    /// The string content of a response, if there is one.
    fn body(m: Option<Message>) -> Option<String> {
        m.and_then(|m| m.content().as_str().map(str::to_owned))
    }

    #[test]
    fn many_pending_requests_each_keep_their_own_slot() {
        // Enough ids that several share a hash table group and tag: a slot
        // taken for another's would be missing from the table.
        let keeper = SyncKeeper::with_spin(SpinBudget::OFF);
        let ids: Vec<String> = (0..2000).map(|i| format!("req-{i}")).collect();
        let regs: Vec<_> = ids.iter().map(|id| keeper.register(id, 1).unwrap()).collect();
        assert_eq!(keeper.pending(), ids.len());
        for id in &ids {
            assert!(keeper.is_waiting(id), "{id} is not waiting");
            keeper.deliver(response(id, id)).unwrap();
        }
        for (reg, id) in regs.iter().zip(&ids) {
            assert_eq!(body(reg.slot.wait_one(Instant::now())).as_deref(), Some(id.as_str()));
        }
        assert!(matches!(keeper.register("req-7", 1), Err(ContextError::DuplicateRequest { .. })));
        drop(regs);
        assert_eq!(keeper.pending(), 0);
    }

    #[test]
    fn responses_come_back_in_the_order_they_arrived() {
        let keeper = SyncKeeper::with_spin(SpinBudget::OFF);
        let reg = keeper.register("req", 3).unwrap();
        for body in ["a", "b", "c"] {
            keeper.deliver(response("req", body)).unwrap();
        }
        let got = reg.slot.wait(Instant::now() + Duration::from_secs(5));
        let bodies: Vec<_> = got.iter().map(|m| m.content().as_str().unwrap().to_owned()).collect();
        assert_eq!(bodies, ["a", "b", "c"]);
        assert_eq!(reg.slot.id(), "req");
    }

    #[test]
    fn one_response_is_waited_for_and_the_slot_goes_with_its_registration() {
        let keeper = SyncKeeper::with_spin(SpinBudget::OFF);
        {
            let reg = keeper.register("one", 1).unwrap();
            assert!(keeper.is_waiting("one"));
            assert!(matches!(keeper.register("one", 1), Err(ContextError::DuplicateRequest { .. })));
            assert!(reg.take_one().is_none(), "nothing arrived yet");
            keeper.deliver(response("one", "r")).unwrap();
            let got = reg.slot.wait_one(Instant::now() + Duration::from_secs(5)).unwrap();
            assert_eq!(got.content().as_str(), Some("r"));
            keeper.deliver(response("one", "again")).unwrap();
            assert_eq!(body(reg.take_one()).as_deref(), Some("again"));
        }
        assert!(!keeper.is_waiting("one"));
        assert_eq!(keeper.pending(), 0);
        assert!(matches!(keeper.deliver(response("one", "late")), Err(ContextError::NoWaiter { .. })));
        let reg = keeper.register("none", 1).unwrap();
        assert!(reg.slot.wait_one(Instant::now()).is_none());
    }

    /// Waits until a thread is parked on `keeper`'s request `id` (or
    /// `gone` is set: the waiting side ended without parking).
    fn until_parked(keeper: &SyncKeeper, id: &str, gone: &std::sync::atomic::AtomicBool) {
        let start = Instant::now();
        loop {
            let slot = lock(&keeper.slots).get(id).map(|p| Arc::clone(&p.0));
            if slot.is_some_and(|s| matches!(lock(&s.state).waiter, Waiter::Thread(_))) {
                return;
            }
            if gone.load(Ordering::SeqCst) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "nobody parked on {id}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_parked_waiter_is_woken_by_the_last_of_its_responses_only() {
        let keeper = Arc::new(SyncKeeper::with_spin(SpinBudget::OFF));
        let reg = keeper.register("two", 2).unwrap();
        assert_eq!(keeper.pending(), 1);
        assert!(!reg.slot.is_complete());
        let slot = Arc::clone(&reg.slot);
        let t0 = Instant::now();
        let waiter = std::thread::spawn(move || slot.wait(Instant::now() + Duration::from_secs(30)));
        let never = std::sync::atomic::AtomicBool::new(false);
        until_parked(&keeper, "two", &never);
        keeper.deliver(response("two", "a")).unwrap();
        // One of two: the waiter stays parked, and registered.
        assert!(!reg.slot.is_complete());
        until_parked(&keeper, "two", &never);
        keeper.deliver(response("two", "b")).unwrap();
        assert!(reg.slot.is_complete());
        let got = waiter.join().unwrap();
        let bodies: Vec<_> = got.iter().map(|m| m.content().as_str().unwrap().to_owned()).collect();
        assert_eq!(bodies, ["a", "b"]);
        assert!(t0.elapsed() < Duration::from_secs(10), "woken only by the deadline");
        assert!(format!("{reg:?}").contains("two"));
        assert!(format!("{:?}", reg.slot).contains("two"));
        assert!(format!("{keeper:?}").contains("pending: 1"));
    }

    #[test]
    fn responses_that_arrived_can_be_taken_without_waiting() {
        let keeper = SyncKeeper::with_spin(SpinBudget::OFF);
        let reg = keeper.register("g", 3).unwrap();
        keeper.deliver(response("g", "x")).unwrap();
        keeper.deliver(response("g", "y")).unwrap();
        let got: Vec<_> = reg.take().iter().map(|m| m.content().as_str().unwrap().to_owned()).collect();
        assert_eq!(got, ["x", "y"]);
        assert!(reg.take().is_empty(), "taken once");
    }

    #[test]
    fn an_async_waiter_completes_with_its_last_response() {
        let keeper = Arc::new(SyncKeeper::with_spin(SpinBudget::OFF));
        let reg = keeper.register("a", 2).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let mut fut = std::pin::pin!(reg.slot.wait_async());
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending(), "nothing arrived");
        keeper.deliver(response("a", "1")).unwrap();
        assert!(fut.as_mut().poll(&mut cx).is_pending(), "one of two");
        let deliverer = {
            let keeper = Arc::clone(&keeper);
            std::thread::spawn(move || keeper.deliver(response("a", "2")).unwrap())
        };
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), fut).await }).unwrap();
        deliverer.join().unwrap();
        assert_eq!(reg.take().len(), 2);
    }

    #[test]
    fn a_request_waits_for_a_response_that_comes_after_its_send() {
        let keeper = Arc::new(SyncKeeper::with_spin(SpinBudget::OFF));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let req = Message::new("").fill_body("q");
        let id = req.id().to_owned();
        let answerer = {
            let (keeper, done, id) = (Arc::clone(&keeper), Arc::clone(&done), id.clone());
            std::thread::spawn(move || {
                // Answers once the caller waits (or gives up).
                until_parked(&keeper, &id, &done);
                let _ = keeper.deliver(response(&id, "late"));
            })
        };
        let r = keeper.request::<ContextError>(
            req,
            Duration::from_secs(30),
            |_, _, _, _| Ok(()),
            |slot, deadline| slot.wait_one(deadline),
        );
        done.store(true, Ordering::SeqCst);
        answerer.join().unwrap();
        assert_eq!(r.unwrap().content().as_str(), Some("late"));
        assert_eq!(keeper.pending(), 0);
    }

    #[test]
    fn a_deadline_shorter_than_the_spin_budget_is_kept() {
        let keeper = SyncKeeper::with_spin(SpinBudget::new(Duration::from_secs(30)));
        let reg = keeper.register("slow", 1).unwrap();
        let t0 = Instant::now();
        assert!(reg.slot.wait_one(t0 + Duration::from_millis(20)).is_none());
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(20) && took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn a_closed_slot_refuses_later_responses_and_keeps_earlier_ones() {
        let keeper = SyncKeeper::with_spin(SpinBudget::OFF);
        let reg = keeper.register("c", 1).unwrap();
        keeper.deliver(response("c", "early")).unwrap();
        assert_eq!(body(reg.close_one()).as_deref(), Some("early"));
        // Still in the table, but closed: refused, not accepted and lost.
        assert!(keeper.is_waiting("c"));
        assert!(matches!(keeper.deliver(response("c", "late")), Err(ContextError::NoWaiter { .. })));
        assert!(reg.close_one().is_none());

        let group = keeper.register("g", 3).unwrap();
        keeper.deliver(response("g", "1")).unwrap();
        let got = group.close();
        assert_eq!(got.len(), 1);
        assert!(matches!(keeper.deliver(response("g", "2")), Err(ContextError::NoWaiter { .. })));
        assert!(group.take().is_empty());
    }

    #[test]
    fn a_registration_dropped_closes_its_slot_for_whoever_still_holds_it() {
        let keeper = SyncKeeper::with_spin(SpinBudget::OFF);
        let slot = Arc::clone(&keeper.register("d", 1).unwrap().slot);
        assert!(slot.deliver(response("d", "x")).is_err());
    }

    #[test]
    fn a_remembered_slot_takes_the_response_to_its_request_once() {
        let keeper = SyncKeeper::with_spin(SpinBudget::OFF);
        let reg = keeper.register("r1", 1).unwrap();
        remember_reply(Arc::clone(&reg.slot));
        assert_eq!(remembered().as_deref(), Some("r1"));
        // Another request's response leaves it remembered.
        assert!(keeper.deliver_to_remembered(response("other", "x")).is_err());
        assert_eq!(remembered().as_deref(), Some("r1"));
        assert!(keeper.deliver_to_remembered(response("r1", "ok")).is_ok());
        assert_eq!(body(reg.take_one()).as_deref(), Some("ok"));
        // Used once.
        assert_eq!(remembered(), None);
        assert!(keeper.deliver_to_remembered(response("r1", "again")).is_err());
        // The table still serves it.
        keeper.deliver(response("r1", "again")).unwrap();
    }

    #[test]
    fn a_remembered_slot_serves_only_its_own_keeper_and_only_while_open() {
        let a = SyncKeeper::with_spin(SpinBudget::OFF);
        let b = SyncKeeper::with_spin(SpinBudget::OFF);
        let in_a = a.register("same", 1).unwrap();
        let in_b = b.register("same", 1).unwrap();
        remember_reply(Arc::clone(&in_a.slot));
        // B's response with the same parent id goes to B's waiter.
        b.deliver(response("same", "for b")).unwrap();
        assert!(in_a.take_one().is_none());
        assert_eq!(body(in_b.take_one()).as_deref(), Some("for b"));
        assert_eq!(remembered().as_deref(), Some("same"), "kept for A's response");
        // A's caller gave up: refused through the reply path, and the
        // table has no other waiter for it.
        assert!(in_a.close_one().is_none());
        assert!(a.deliver_to_remembered(response("same", "late")).is_err());
        drop(in_a);
        assert!(matches!(a.deliver(response("same", "late")), Err(ContextError::NoWaiter { .. })));
    }

    #[test]
    fn a_request_that_timed_out_refuses_its_late_response() {
        let keeper = SyncKeeper::with_spin(SpinBudget::OFF);
        let mut slot = None;
        let r = keeper.request::<ContextError>(
            Message::new("").fill_body("q"),
            Duration::from_millis(1),
            |_, s, _, _| {
                slot = Some(Arc::clone(s));
                Ok(())
            },
            |_, _| None,
        );
        assert!(matches!(r, Err(ContextError::ResponseTimeout { .. })));
        let slot = slot.unwrap();
        assert!(slot.deliver(response(slot.id(), "late")).is_err());
        assert_eq!(keeper.pending(), 0);
    }

    #[test]
    fn a_response_that_came_after_the_wait_gave_up_is_still_returned() {
        let keeper = SyncKeeper::with_spin(SpinBudget::OFF);
        let r = keeper.request::<ContextError>(
            Message::new("").fill_body("q"),
            Duration::from_secs(30),
            |_, _, _, _| Ok(()),
            |slot, _| {
                // The wait ends empty-handed just as the response arrives.
                slot.deliver(response(slot.id(), "just in time")).unwrap();
                None
            },
        );
        assert_eq!(r.unwrap().content().as_str(), Some("just in time"));
    }
}
