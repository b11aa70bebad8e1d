//! A module's inbox: a bounded FIFO, usable from threads and async tasks,
//! that can be closed without losing track of what was in it.
//!
//! # Waiting
//!
//! The queue itself is lock-free (crossbeam's `ArrayQueue`); only a side
//! that has to wait takes a lock, and only then does the other side pay for
//! waking it. Otherwise a sender learns that nobody waits from the one
//! read-modify-write it makes anyway when it leaves (it counts itself in
//! flight for the closing, see [`Inbox`]), and a receiver from one atomic
//! load.
//!
//! - An empty inbox: a receiving thread polls for the spin budget, yielding
//!   its core between polls (see [`SpinBudget`]), then parks. An async
//!   receiver polls too, for at most 20 µs, but only when the last message
//!   came from another thread (a sender on this thread cannot run while its
//!   receiver polls); then it registers its waker. Each send wakes the
//!   waiting receivers.
//! - A full inbox: a sender polls for the spin budget, then parks, and is
//!   woken only once receivers have taken the inbox down to half its
//!   capacity. Waking a sender for every freed slot would make sender and
//!   receiver take turns at the speed of a futex round trip, one message
//!   per turn; waking it at half lets it refill half the inbox in one go
//!   while the receiver drains the other half.
//!
//! # Requests carry their slot
//!
//! A `send_sync` request travels with the slot its response is awaited in;
//! the thread that receives it remembers the slot, so that its response can
//! skip the keeper's table (see the keeper's reply path).

use std::future::poll_fn;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use beehive_model::Message;
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

use crate::backend::Offer;
use crate::keeper::Slot;
use crate::metrics::InboxMetrics;
use crate::spin::{Spin, SpinBudget};
use crate::ContextError;

/// The most an async receiver polls an empty inbox before it registers
/// its waker (less when the spin budget is smaller). The poll holds the
/// executor's thread, so it is kept short: a wake-up through the waker
/// costs the sender a system call and the receiver's thread 20–25 µs to
/// come back on an idle vCPU, and W1-async, whose receiver found the inbox
/// empty every few dozen messages, ran at half the rate without it.
const ASYNC_SPIN: Duration = Duration::from_micros(20);

/// A number that tells the calling thread from every other live thread
/// (the address of a thread-local), cheaper than a `ThreadId`.
fn thread_token() -> usize {
    thread_local! {
        static TOKEN: u8 = const { 0 };
    }
    TOKEN.with(|t| std::ptr::from_ref(t) as usize)
}

/// A thread or a task waiting on one side of the inbox.
enum Waiting {
    Thread(std::thread::Thread),
    Task(Waker),
}

/// Set in a [`Waiters`]' word while its list is not empty.
const LISTED: usize = 1;

/// One sender in flight, as counted in the receivers' word (see
/// [`Inbox::enter`]).
const SENDER: usize = 2;

/// Threads and tasks waiting on one side of the inbox (for a message, or
/// for room). Waking takes every one of them off the list; a waiter whose
/// condition still does not hold puts itself back.
#[derive(Default)]
struct Waiters {
    /// [`LISTED`] while anyone is on the list: the only bit the other side
    /// reads on its fast path. The bits above it belong to the inbox: on
    /// the receivers' side they count the senders in flight, so that the
    /// one read-modify-write a sender makes when it leaves also tells it
    /// whether a receiver is waiting.
    word: AtomicUsize,
    list: Mutex<Vec<Waiting>>,
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, Vec<Waiting>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether anyone is on the list, without ordering.
    #[inline]
    fn is_listed(&self) -> bool {
        self.word.load(Ordering::Relaxed) & LISTED != 0
    }

    /// Wakes every waiter; one fence and one atomic load when there is none.
    #[inline]
    fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.is_listed() {
            self.wake_all();
        }
    }

    /// Takes every waiter off the list and wakes it.
    #[inline(never)]
    fn wake_all(&self) {
        let mut list = self.lock();
        self.word.fetch_and(!LISTED, Ordering::SeqCst);
        for w in list.drain(..) {
            match w {
                Waiting::Thread(t) => t.unpark(),
                Waiting::Task(w) => w.wake(),
            }
        }
    }

    /// Puts a waiter on the list (once). The caller re-checks its condition
    /// afterwards, so a wake between its last check and this call is not
    /// lost: against a side that checks with [`wake`](Self::wake), the
    /// fences order the two; against a sender leaving the receivers' side
    /// (see [`Entered`]), the read-modify-writes of the word do.
    fn register(&self, waiting: Waiting) {
        let mut list = self.lock();
        let present = list.iter().any(|w| match (w, &waiting) {
            (Waiting::Thread(a), Waiting::Thread(b)) => a.id() == b.id(),
            (Waiting::Task(a), Waiting::Task(b)) => a.will_wake(b),
            _ => false,
        });
        if !present {
            list.push(waiting);
        }
        // Every time, not only when the waiter is new: this is what orders
        // the caller's re-check after the senders that left before it.
        self.word.fetch_or(LISTED, Ordering::SeqCst);
        drop(list);
        fence(Ordering::SeqCst);
    }

    /// Takes the calling thread off the list, if it is still on it.
    fn unregister_current(&self) {
        if self.word.load(Ordering::SeqCst) & LISTED == 0 {
            return;
        }
        let me = std::thread::current().id();
        let mut list = self.lock();
        list.retain(|w| !matches!(w, Waiting::Thread(t) if t.id() == me));
        if list.is_empty() {
            self.word.fetch_and(!LISTED, Ordering::SeqCst);
        }
    }

    /// Parks the calling thread until `ready` gives a value, or `None` once
    /// `deadline` has passed.
    fn park_until<T>(&self, deadline: Option<Instant>, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
        let out = loop {
            self.register(Waiting::Thread(std::thread::current()));
            if let Some(v) = ready() {
                break Some(v);
            }
            match deadline {
                None => std::thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break None;
                    }
                    std::thread::park_timeout(d - now);
                }
            }
            if let Some(v) = ready() {
                break Some(v);
            }
        };
        self.unregister_current();
        out
    }
}

/// What a receive attempt found.
enum Step<T> {
    Done(T),
    Closed,
}

/// What one push attempt did with the message.
enum Push {
    Done,
    Full(Envelope),
    Closed(Envelope),
}

/// A message in an inbox, with the slot of the request it is, if any.
struct Envelope {
    msg: Message,
    reply: Option<Arc<Slot>>,
}

/// A bounded inbox on a lock-free array queue, with poll-then-park waiting
/// on both sides. Senders count themselves in flight (in the receivers'
/// word) before they check the closed flag, so [`Inbox::close`] can wait
/// for every send that got past the check and count everything that was
/// accepted but never received: no accepted message disappears silently.
pub(crate) struct Inbox {
    module: String,
    queue: ArrayQueue<Envelope>,
    /// Wake parked senders once the inbox is down to this many messages.
    low_water: usize,
    spin: SpinBudget,
    closed: AtomicBool,
    // The three fields below each sit on a cache line of their own:
    // every send writes the receivers' word (its in-flight count), so
    // nothing either side only reads may share that line.
    /// The thread that sent last (see [`thread_token`]): an async receiver
    /// that finds the inbox empty polls for a moment only when messages
    /// come from another thread. Written only when the sending thread
    /// changes.
    last_sender: CachePadded<AtomicUsize>,
    receivers: CachePadded<Waiters>,
    senders: CachePadded<Waiters>,
    metrics: InboxMetrics,
}

/// A sender in flight (see [`Inbox::enter`]). Leaving is what wakes the
/// receivers for whatever the sender queued.
///
/// A receiver about to wait puts itself on the list, sets [`LISTED`] with
/// a read-modify-write of the same word, then looks at the queue again.
/// The two read-modify-writes are ordered: if the sender's comes first,
/// the receiver's reads from it, so the message queued before is visible
/// to the receiver's second look; if the receiver's comes first, the
/// sender reads [`LISTED`] and wakes it. Either way no wake-up is lost,
/// and a send pays no fence of its own (one fewer draining of the store
/// buffer per message than a fence after the push and a separate count).
struct Entered<'a>(&'a Waiters);

impl Drop for Entered<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.0.word.fetch_sub(SENDER, Ordering::SeqCst) & LISTED != 0 {
            self.0.wake_all();
        }
    }
}

impl Inbox {
    pub(crate) fn new(module: &str, capacity: usize, spin: SpinBudget) -> Self {
        let capacity = capacity.max(1);
        Inbox {
            module: module.to_owned(),
            queue: ArrayQueue::new(capacity),
            low_water: capacity / 2,
            spin,
            closed: AtomicBool::new(false),
            last_sender: CachePadded::new(AtomicUsize::new(0)),
            receivers: CachePadded::new(Waiters::default()),
            senders: CachePadded::new(Waiters::default()),
            metrics: InboxMetrics::new(module),
        }
    }

    fn closed_error(&self) -> ContextError {
        ContextError::Closed { module: self.module.clone() }
    }

    /// Counts the calling sender in flight until the guard is dropped, and
    /// checks the closed flag. Every push happens under such a guard.
    #[inline]
    fn enter(&self) -> Result<Entered<'_>, ContextError> {
        self.receivers.word.fetch_add(SENDER, Ordering::SeqCst);
        let guard = Entered(&self.receivers);
        let me = thread_token();
        if self.last_sender.load(Ordering::Relaxed) != me {
            self.last_sender.store(me, Ordering::Relaxed);
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(self.closed_error());
        }
        Ok(guard)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// One push attempt; a message that was not queued comes back. Called
    /// under an [`Entered`] guard, whose drop wakes the receivers.
    #[inline]
    fn push(&self, env: Envelope) -> Push {
        if self.is_closed() {
            return Push::Closed(env);
        }
        #[cfg(test)]
        race::at(race::Point::BeforeQueue, self);
        if let Err(env) = self.queue.push(env) {
            return Push::Full(env);
        }
        self.metrics.sent.increment(1);
        Push::Done
    }

    /// One pop attempt: a message, the closed state once drained, or `None`.
    #[inline]
    fn pop(&self) -> Option<Step<Message>> {
        match self.queue.pop() {
            Some(Envelope { msg, reply }) => {
                self.metrics.received.increment(1);
                if self.senders.is_listed() && self.queue.len() <= self.low_water {
                    self.senders.wake();
                }
                if let Some(slot) = reply {
                    crate::keeper::remember_reply(slot);
                }
                Some(Step::Done(msg))
            }
            None if self.is_closed() => Some(Step::Closed),
            None => {
                // About to wait or to report empty: a sender parked on a
                // full inbox that has drained since must not be left asleep.
                self.senders.wake();
                None
            }
        }
    }

    #[inline]
    fn received(&self, step: Step<Message>) -> Result<Message, ContextError> {
        match step {
            Step::Done(m) => Ok(m),
            Step::Closed => Err(self.closed_error()),
        }
    }

    /// Sends, waiting for room until `deadline` (forever when `None`). A
    /// message that was not queued comes back: as `Ok(Some(_))` when the
    /// deadline passed, with the error when the inbox is closed.
    #[inline]
    fn send_until(
        &self,
        env: Envelope,
        deadline: Option<Instant>,
    ) -> Result<Option<Envelope>, (ContextError, Envelope)> {
        let entered = match self.enter() {
            Ok(entered) => entered,
            Err(e) => return Err((e, env)),
        };
        match self.push(env) {
            Push::Done => Ok(None),
            Push::Closed(env) => Err((self.closed_error(), env)),
            Push::Full(env) => self.wait_for_room(entered, env, deadline),
        }
    }

    /// [`send_until`](Self::send_until) once the inbox was full: polls for
    /// room for the spin budget, then parks. Kept out of line so that the
    /// first attempt stays small enough to inline.
    #[inline(never)]
    fn wait_for_room(
        &self,
        _entered: Entered<'_>,
        mut pending: Envelope,
        deadline: Option<Instant>,
    ) -> Result<Option<Envelope>, (ContextError, Envelope)> {
        let mut spin = Spin::new(self.spin).until(deadline);
        while spin.wait() {
            pending = match self.push(pending) {
                Push::Done => return Ok(None),
                Push::Closed(env) => return Err((self.closed_error(), env)),
                Push::Full(env) => env,
            };
        }
        let mut slot = Some(pending);
        let done = self.senders.park_until(deadline, || match self.push(slot.take()?) {
            Push::Done => Some(Ok(())),
            Push::Closed(env) => Some(Err(env)),
            Push::Full(env) => {
                slot = Some(env);
                #[cfg(test)]
                race::at(race::Point::BeforePark, self);
                None
            }
        });
        match done {
            Some(Ok(())) => Ok(None),
            Some(Err(env)) => Err((self.closed_error(), env)),
            None => Ok(slot),
        }
    }

    /// Sends, waiting for room as long as it takes.
    #[inline]
    pub(crate) fn send(&self, msg: Message) -> Result<(), ContextError> {
        self.send_or_return(msg).map_err(|(e, _)| e)
    }

    /// [`send`](Self::send), giving the message back with the error when
    /// it was not queued (the inbox is closed).
    #[inline]
    pub(crate) fn send_or_return(&self, msg: Message) -> Result<(), (ContextError, Message)> {
        self.send_until(Envelope { msg, reply: None }, None).map(drop).map_err(|(e, env)| (e, env.msg))
    }

    pub(crate) fn try_send(&self, msg: Message) -> Result<(), ContextError> {
        let _entered = self.enter()?;
        match self.push(Envelope { msg, reply: None }) {
            Push::Done => Ok(()),
            Push::Closed(_) => Err(self.closed_error()),
            Push::Full(_) => Err(ContextError::Full { module: self.module.clone() }),
        }
    }

    /// Like [`try_send`](Self::try_send), but a full inbox gives the
    /// message back.
    pub(crate) fn offer(&self, msg: Message) -> Result<(), Offer> {
        let _entered = self.enter().map_err(Offer::Failed)?;
        match self.push(Envelope { msg, reply: None }) {
            Push::Done => Ok(()),
            Push::Closed(_) => Err(Offer::Failed(self.closed_error())),
            Push::Full(env) => Err(Offer::Full(env.msg)),
        }
    }

    /// Sends, waiting for room until `deadline`; `reply` is the slot of the
    /// request `msg` is, if it is one.
    pub(crate) fn send_deadline(
        &self,
        msg: Message,
        reply: Option<&Arc<Slot>>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), ContextError> {
        let reply = reply.map(Arc::clone);
        match self.send_until(Envelope { msg, reply }, Some(deadline)).map_err(|(e, _)| e)? {
            None => Ok(()),
            Some(env) => {
                Err(ContextError::SendTimeout { module: self.module.clone(), msg_id: env.msg.id().to_owned(), timeout })
            }
        }
    }

    /// Sends, waiting for room without blocking the executor; `reply` as
    /// for [`send_deadline`](Self::send_deadline).
    pub(crate) async fn send_async(&self, msg: Message, reply: Option<&Arc<Slot>>) -> Result<(), ContextError> {
        let _entered = self.enter()?;
        let mut pending = Some(Envelope { msg, reply: reply.map(Arc::clone) });
        poll_fn(|cx| {
            let Some(msg) = pending.take() else { return Poll::Ready(Ok(())) };
            let msg = match self.push(msg) {
                Push::Done => return Poll::Ready(Ok(())),
                Push::Closed(_) => return Poll::Ready(Err(self.closed_error())),
                Push::Full(env) => env,
            };
            self.senders.register(Waiting::Task(cx.waker().clone()));
            match self.push(msg) {
                Push::Done => Poll::Ready(Ok(())),
                Push::Closed(_) => Poll::Ready(Err(self.closed_error())),
                Push::Full(m) => {
                    pending = Some(m);
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The next message. An empty inbox is polled for the spin budget
    /// before the thread parks: waking a parked thread costs tens of
    /// microseconds on a small VM, far more than the gap between two
    /// messages of a busy sender. Once the inbox is sealed, the messages
    /// already in it are still returned, then [`ContextError::Closed`].
    #[inline]
    pub(crate) fn recv(&self) -> Result<Message, ContextError> {
        self.recv_until(None).map(|m| m.expect("no deadline"))
    }

    pub(crate) fn recv_deadline(&self, deadline: Instant) -> Result<Option<Message>, ContextError> {
        self.recv_until(Some(deadline))
    }

    #[inline]
    fn recv_until(&self, deadline: Option<Instant>) -> Result<Option<Message>, ContextError> {
        match self.pop() {
            Some(step) => self.received(step).map(Some),
            None => self.wait_for_message(deadline),
        }
    }

    /// [`recv_until`](Self::recv_until) once the inbox was empty: polls for
    /// the spin budget, then parks.
    #[inline(never)]
    fn wait_for_message(&self, deadline: Option<Instant>) -> Result<Option<Message>, ContextError> {
        let mut spin = Spin::new(self.spin).until(deadline);
        while spin.wait() {
            if let Some(step) = self.pop() {
                return self.received(step).map(Some);
            }
        }
        match self.receivers.park_until(deadline, || self.pop()) {
            Some(step) => self.received(step).map(Some),
            None => Ok(None),
        }
    }

    /// The next message if there is one (or the closed state once drained),
    /// without waiting.
    pub(crate) fn try_recv(&self) -> Option<Result<Message, ContextError>> {
        self.pop().map(|step| self.received(step))
    }

    /// The next message, for async receivers. When the last message came
    /// from another thread, an empty inbox is polled for up to
    /// [`ASYNC_SPIN`] on the spot: that sender is likely about to send
    /// again. Otherwise the task registers at once: its sender may be a task
    /// of the same executor, which cannot run until this one returns, and
    /// polling by waking itself would keep the executor busy and delay the
    /// very task that is about to send (W2-async ran at a third of the rate
    /// with it).
    pub(crate) async fn recv_async(&self) -> Result<Message, ContextError> {
        poll_fn(|cx| {
            if let Some(step) = self.pop() {
                return Poll::Ready(self.received(step));
            }
            if self.last_sender.load(Ordering::Relaxed) != thread_token() {
                let mut spin = Spin::new(SpinBudget::new(self.spin.duration().min(ASYNC_SPIN)));
                while spin.wait() {
                    #[cfg(test)]
                    race::at(race::Point::AsyncPoll, self);
                    if let Some(step) = self.pop() {
                        return Poll::Ready(self.received(step));
                    }
                }
            }
            self.receivers.register(Waiting::Task(cx.waker().clone()));
            match self.pop() {
                Some(step) => Poll::Ready(self.received(step)),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Seals the inbox: later sends fail; receivers get the messages already
    /// in it, then [`ContextError::Closed`].
    pub(crate) fn seal(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.receivers.wake();
        self.senders.wake();
    }

    /// Seals the inbox and drops what is left in it. Returns how many
    /// accepted messages will never be received.
    pub(crate) fn close(&self) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        let mut dropped = 0;
        loop {
            while self.queue.pop().is_some() {
                dropped += 1;
            }
            self.senders.wake();
            #[cfg(test)]
            race::at(race::Point::AfterDrain, self);
            if self.in_flight() == 0 {
                break;
            }
            // A sender is between its check and the queue (or waiting for the
            // room just made): let it finish, then drain again.
            std::thread::yield_now();
        }
        while self.queue.pop().is_some() {
            dropped += 1;
        }
        self.receivers.wake();
        crate::metrics::dropped(&self.module, dropped);
        dropped
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// How many senders are between [`enter`](Self::enter) and leaving.
    fn in_flight(&self) -> usize {
        self.receivers.word.load(Ordering::SeqCst) / SENDER
    }
}

/// Test-only hooks at the points of the race between a send and
/// [`Inbox::close`], and where a sender is about to park, so a test can
/// stop a thread exactly there.
#[cfg(test)]
mod race {
    use std::cell::RefCell;

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub(super) enum Point {
        /// A sender passed the closed check and is about to queue.
        BeforeQueue,
        /// `close` drained the queue and is about to look for senders.
        AfterDrain,
        /// A sender on the senders' list found the inbox full and is about
        /// to park.
        BeforePark,
        /// An async receiver polling an empty inbox on the spot is about to
        /// look again.
        AsyncPoll,
    }

    type Hook = Box<dyn FnMut(Point, &super::Inbox)>;

    thread_local! {
        static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    /// Runs `hook` at every point the calling thread reaches.
    pub(super) fn install(hook: impl FnMut(Point, &super::Inbox) + 'static) {
        HOOK.set(Some(Box::new(hook)));
    }

    pub(super) fn at(point: Point, inbox: &super::Inbox) {
        HOOK.with_borrow_mut(|h| {
            if let Some(h) = h {
                h(point, inbox);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(sender: usize, seq: usize) -> Message {
        Message::new("").fill_body(format!("{sender}:{seq}"))
    }

    fn parse(m: &Message) -> (usize, usize) {
        let s = m.content().as_str().unwrap();
        let (a, b) = s.split_once(':').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    }

    /// Two senders and one receiver through a tiny inbox: every wait ends
    /// in a park when the budget is off, so a lost wake-up hangs the test
    /// (bounded by the harness, and by the receive deadline below).
    fn pump(spin: SpinBudget) {
        const N: usize = 20_000;
        let inbox = Arc::new(Inbox::new("m", 4, spin));
        let senders: Vec<_> = (0..2)
            .map(|s| {
                let inbox = Arc::clone(&inbox);
                std::thread::spawn(move || {
                    for i in 0..N {
                        inbox.send(msg(s, i)).unwrap();
                    }
                })
            })
            .collect();
        let mut next = [0usize; 2];
        let deadline = Instant::now() + Duration::from_secs(15);
        for _ in 0..2 * N {
            let m = inbox.recv_deadline(deadline).unwrap().expect("a message before the deadline");
            let (s, i) = parse(&m);
            assert_eq!(i, next[s], "sender {s} out of order");
            next[s] += 1;
        }
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(next, [N, N]);
        assert_eq!(inbox.len(), 0);
    }

    #[test]
    fn parked_senders_and_receivers_are_always_woken() {
        pump(SpinBudget::OFF);
    }

    #[test]
    fn spinning_senders_and_receivers_lose_nothing() {
        pump(SpinBudget::DEFAULT);
    }

    #[test]
    fn a_full_inbox_times_a_send_out_within_bounds() {
        let inbox = Inbox::new("m", 1, SpinBudget::DEFAULT);
        inbox.try_send(msg(0, 0)).unwrap();
        assert!(matches!(inbox.try_send(msg(0, 1)), Err(ContextError::Full { .. })));
        let timeout = Duration::from_millis(50);
        let t0 = Instant::now();
        let err = inbox.send_deadline(msg(0, 1), None, t0 + timeout, timeout).unwrap_err();
        let took = t0.elapsed();
        assert!(matches!(err, ContextError::SendTimeout { .. }), "{err:?}");
        assert!(took >= timeout && took < timeout + Duration::from_millis(400), "{took:?}");
        assert_eq!(inbox.len(), 1);
    }

    #[test]
    fn an_empty_inbox_times_a_receive_out_within_bounds() {
        let inbox = Inbox::new("m", 1, SpinBudget::OFF);
        let timeout = Duration::from_millis(50);
        let t0 = Instant::now();
        assert!(inbox.recv_deadline(t0 + timeout).unwrap().is_none());
        let took = t0.elapsed();
        assert!(took >= timeout && took < timeout + Duration::from_millis(400), "{took:?}");
    }

    #[test]
    fn a_deadline_shorter_than_the_spin_budget_is_kept() {
        let inbox = Inbox::new("m", 1, SpinBudget::new(Duration::from_secs(30)));
        let timeout = Duration::from_millis(20);
        let t0 = Instant::now();
        assert!(inbox.recv_deadline(t0 + timeout).unwrap().is_none());
        inbox.try_send(msg(0, 0)).unwrap();
        let t1 = Instant::now();
        assert!(inbox.send_deadline(msg(0, 1), None, t1 + timeout, timeout).is_err());
        let took = (t1 - t0, t1.elapsed());
        assert!(took.0 >= timeout && took.0 < Duration::from_secs(5), "{took:?}");
        assert!(took.1 >= timeout && took.1 < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn a_parked_sender_is_released_by_receives() {
        let inbox = Arc::new(Inbox::new("m", 2, SpinBudget::OFF));
        for i in 0..2 {
            inbox.try_send(msg(0, i)).unwrap();
        }
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let sender = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || {
                started_tx.send(()).unwrap();
                inbox.send(msg(0, 2))
            })
        };
        started_rx.recv().unwrap();
        let t0 = Instant::now();
        for i in 0..3 {
            let m = inbox.recv_deadline(t0 + Duration::from_secs(10)).unwrap().unwrap();
            assert_eq!(parse(&m), (0, i));
        }
        // Woken, not found by the receiver's last look at its deadline.
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        sender.join().unwrap().unwrap();
    }

    #[test]
    fn sealing_wakes_a_parked_receiver_after_the_queued_messages() {
        let inbox = Arc::new(Inbox::new("m", 4, SpinBudget::OFF));
        inbox.try_send(msg(0, 0)).unwrap();
        let receiver = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || (inbox.recv(), inbox.recv()))
        };
        // The receiver takes the queued message, then parks (or finds the
        // seal): either way it must end with Closed, not hang. (Bounded: a
        // receiver that failed would never take it.)
        let bound = Instant::now() + Duration::from_secs(10);
        while inbox.len() > 0 && !receiver.is_finished() {
            assert!(Instant::now() < bound, "the receiver did not take the queued message within 10 s");
            std::thread::yield_now();
        }
        inbox.seal();
        let (first, second) = join_within(receiver, "the seal did not wake the receiver");
        assert_eq!(parse(&first.unwrap()), (0, 0));
        assert!(matches!(second, Err(ContextError::Closed { .. })));
        assert!(matches!(inbox.try_send(msg(0, 1)), Err(ContextError::Closed { .. })));
    }

    #[test]
    fn async_receivers_and_senders_are_woken() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let inbox = Arc::new(Inbox::new("m", 2, SpinBudget::OFF));
        let bound = Duration::from_secs(10);
        let producer = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || {
                for i in 0..1000 {
                    inbox.send(msg(0, i)).unwrap();
                }
            })
        };
        let received = rt.block_on(async {
            tokio::time::timeout(bound, async {
                for i in 0..1000 {
                    let m = inbox.recv_async().await.unwrap();
                    assert_eq!(parse(&m), (0, i));
                }
            })
            .await
        });
        assert!(received.is_ok(), "1000 async receives did not end within {bound:?}");
        producer.join().unwrap();
        let consumer = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || (0..1000).map(|_| parse(&inbox.recv().unwrap()).1).collect::<Vec<_>>())
        };
        let sent = rt.block_on(async {
            tokio::time::timeout(bound, async {
                for i in 0..1000 {
                    inbox.send_async(msg(0, i), None).await.unwrap();
                }
            })
            .await
        });
        assert!(sent.is_ok(), "1000 async sends did not end within {bound:?}");
        assert_eq!(consumer.join().unwrap(), (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn the_thread_that_receives_a_request_remembers_its_slot() {
        let keeper = crate::keeper::SyncKeeper::with_spin(SpinBudget::OFF);
        let inbox = Inbox::new("m", 4, SpinBudget::OFF);
        let deadline = Instant::now() + Duration::from_secs(10);
        let req = msg(0, 1);
        let reg = keeper.register(req.id(), 1).unwrap();
        inbox.send_deadline(req.clone(), Some(&reg.slot), deadline, Duration::from_secs(10)).unwrap();
        inbox.send(msg(0, 2)).unwrap();
        assert_eq!(crate::keeper::remembered(), None);
        assert_eq!(parse(&inbox.try_recv().unwrap().unwrap()), (0, 1));
        assert_eq!(crate::keeper::remembered().as_deref(), Some(req.id()));
        // A plain message leaves it: the response may follow later.
        assert_eq!(parse(&inbox.try_recv().unwrap().unwrap()), (0, 2));
        assert_eq!(crate::keeper::remembered().as_deref(), Some(req.id()));
        // Another thread does not see it.
        std::thread::scope(|s| s.spawn(|| assert_eq!(crate::keeper::remembered(), None)).join().unwrap());
        // Async sends carry the slot too.
        let req2 = msg(0, 3);
        let reg2 = keeper.register(req2.id(), 1).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(inbox.send_async(req2.clone(), Some(&reg2.slot))).unwrap();
        assert_eq!(parse(&inbox.recv_deadline(deadline).unwrap().unwrap()), (0, 3));
        assert_eq!(crate::keeper::remembered().as_deref(), Some(req2.id()));
    }

    /// Joins `h`, failing the test with `what` when the thread has not
    /// finished within 10 s (a thread left parked by a lost wake-up must
    /// fail the test, not hang it).
    fn join_within<R>(h: std::thread::JoinHandle<R>, what: &str) -> R {
        let t0 = Instant::now();
        while !h.is_finished() {
            assert!(t0.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(1));
        }
        h.join().unwrap()
    }

    /// Starts a thread that sends `m` and stops it after every closed check,
    /// just before the queue; returns once it is there. Sending on the
    /// returned channel lets it go on.
    fn sender_held_before_queue(
        inbox: &Arc<Inbox>,
        m: Message,
    ) -> (std::thread::JoinHandle<Result<(), ContextError>>, std::sync::mpsc::Sender<()>) {
        let (at_window, sender_waits) = std::sync::mpsc::channel();
        let (go, sender_goes) = std::sync::mpsc::channel::<()>();
        let sender = {
            let inbox = Arc::clone(inbox);
            std::thread::spawn(move || {
                race::install(move |point, _| {
                    if point == race::Point::BeforeQueue {
                        at_window.send(()).unwrap();
                        sender_goes.recv().unwrap();
                    }
                });
                inbox.send(m)
            })
        };
        sender_waits.recv_timeout(Duration::from_secs(10)).unwrap();
        (sender, go)
    }

    /// A receiver that parks while a sender is between its checks and the
    /// queue is woken by that sender's leaving, the only wake-up the send
    /// makes.
    #[test]
    fn a_receiver_that_parks_during_a_send_is_woken_when_the_sender_leaves() {
        let inbox = Arc::new(Inbox::new("m", 4, SpinBudget::OFF));
        let (sender, go) = sender_held_before_queue(&inbox, msg(0, 0));
        assert_eq!(inbox.in_flight(), 1);
        let receiver = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || inbox.recv_deadline(Instant::now() + Duration::from_secs(10)))
        };
        // The receiver found the inbox empty and is on the list.
        let t0 = Instant::now();
        while listed(&inbox.receivers) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(10), "the receiver never waited");
            std::thread::yield_now();
        }
        go.send(()).unwrap();
        sender.join().unwrap().unwrap();
        let t1 = Instant::now();
        let got = receiver.join().unwrap().unwrap().expect("woken with the message, not at the deadline");
        assert_eq!(parse(&got), (0, 0));
        assert!(t1.elapsed() < Duration::from_secs(5), "{:?}", t1.elapsed());
        assert_eq!((inbox.in_flight(), listed(&inbox.receivers)), (0, 0));
    }

    #[test]
    fn a_message_queued_while_the_inbox_closes_is_counted_as_dropped() {
        let inbox = Arc::new(Inbox::new("m", 4, SpinBudget::OFF));
        // One message already waiting: the first drain finds it.
        inbox.send(msg(0, 0)).unwrap();
        // The sender has passed every closed check and not queued yet.
        let (sender, go) = sender_held_before_queue(&inbox, msg(0, 1));
        let closer = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || {
                let mut go = Some(go);
                race::install(move |point, inbox| {
                    // After the first drain: let the sender queue and leave,
                    // so that only the last drain can find its message.
                    if let (race::Point::AfterDrain, Some(go)) = (point, go.take()) {
                        go.send(()).unwrap();
                        let t0 = Instant::now();
                        while inbox.in_flight() != 0 {
                            assert!(t0.elapsed() < Duration::from_secs(10), "the sender never left");
                            std::thread::yield_now();
                        }
                    }
                });
                inbox.close()
            })
        };
        // Accepted, and reported by the close rather than lost.
        assert!(sender.join().unwrap().is_ok());
        assert_eq!(closer.join().unwrap(), 2);
        assert_eq!(inbox.len(), 0);
        assert!(matches!(inbox.try_recv(), Some(Err(ContextError::Closed { .. }))));
    }

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// How many are on the list; checks that the word says whether
    /// anyone is.
    fn listed(w: &Waiters) -> usize {
        let n = w.lock().len();
        assert_eq!(w.word.load(Ordering::SeqCst) & LISTED != 0, n > 0, "LISTED disagrees with the list");
        n
    }

    #[test]
    fn a_waiter_is_listed_once_however_often_it_registers() {
        let waiters = Waiters::default();
        waiters.register(Waiting::Thread(std::thread::current()));
        waiters.register(Waiting::Thread(std::thread::current()));
        assert_eq!(listed(&waiters), 1);
        let other = std::thread::spawn(std::thread::current).join().unwrap();
        waiters.register(Waiting::Thread(other));
        assert_eq!(listed(&waiters), 2);
        let (a, b) = (Arc::new(CountingWaker::default()), Arc::new(CountingWaker::default()));
        let waker_a = Waker::from(Arc::clone(&a));
        waiters.register(Waiting::Task(waker_a.clone()));
        waiters.register(Waiting::Task(waker_a));
        waiters.register(Waiting::Task(Waker::from(Arc::clone(&b))));
        assert_eq!(listed(&waiters), 4);
        // Only the calling thread leaves.
        waiters.unregister_current();
        assert_eq!(listed(&waiters), 3);
        waiters.wake();
        assert_eq!(listed(&waiters), 0);
        // The last one to leave clears the flag.
        waiters.register(Waiting::Thread(std::thread::current()));
        assert_eq!(listed(&waiters), 1);
        waiters.unregister_current();
        assert_eq!(listed(&waiters), 0);
        assert_eq!((a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)), (1, 1));
    }

    #[test]
    fn an_async_receiver_polled_again_and_again_is_listed_once() {
        let inbox = Inbox::new("m", 2, SpinBudget::OFF);
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut fut = std::pin::pin!(inbox.recv_async());
        for _ in 0..3 {
            assert!(std::future::Future::poll(fut.as_mut(), &mut cx).is_pending());
        }
        assert_eq!(listed(&inbox.receivers), 1);
        inbox.try_send(msg(0, 0)).unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        match std::future::Future::poll(fut.as_mut(), &mut cx) {
            Poll::Ready(Ok(m)) => assert_eq!(parse(&m), (0, 0)),
            other => panic!("expected the message, got {:?}", other.map(|r| r.map(|m| parse(&m)))),
        }
    }

    #[test]
    fn thread_tokens_tell_threads_apart() {
        let here = thread_token();
        assert_eq!(thread_token(), here);
        let there = std::thread::spawn(thread_token).join().unwrap();
        assert_ne!(there, here);
    }

    /// Polls `inbox.recv_async()` once on this thread, with a hook at its
    /// on-the-spot polls that sends `(9, 9)` from another thread the first
    /// time; whether it was ready, and how many on-the-spot polls it made.
    fn poll_once_with_a_late_sender(inbox: &Arc<Inbox>) -> (bool, usize) {
        let polls = Arc::new(AtomicUsize::new(0));
        let (seen, other) = (Arc::clone(&polls), Arc::clone(inbox));
        race::install(move |point, _| {
            if point == race::Point::AsyncPoll && seen.fetch_add(1, Ordering::SeqCst) == 0 {
                let other = Arc::clone(&other);
                std::thread::spawn(move || other.try_send(msg(9, 9)).unwrap()).join().unwrap();
            }
        });
        let waker = Waker::from(Arc::new(CountingWaker::default()));
        let mut cx = std::task::Context::from_waker(&waker);
        let ready = match std::future::Future::poll(std::pin::pin!(inbox.recv_async()), &mut cx) {
            Poll::Ready(m) => {
                assert_eq!(parse(&m.unwrap()), (9, 9));
                true
            }
            Poll::Pending => false,
        };
        race::install(|_, _| {});
        (ready, polls.load(Ordering::SeqCst))
    }

    #[test]
    fn an_async_receiver_polls_on_the_spot_only_for_a_sender_on_another_thread() {
        let inbox = Arc::new(Inbox::new("m", 4, SpinBudget::DEFAULT));
        // The last message came from another thread: the receiver keeps
        // looking, and takes the message sent meanwhile in the same poll.
        let other = Arc::clone(&inbox);
        std::thread::spawn(move || other.try_send(msg(1, 0)).unwrap()).join().unwrap();
        assert_eq!(parse(&inbox.try_recv().unwrap().unwrap()), (1, 0));
        assert_eq!(poll_once_with_a_late_sender(&inbox), (true, 1));
        // The last message came from this thread (a task of this executor,
        // say): it registers at once.
        inbox.try_send(msg(0, 0)).unwrap();
        assert_eq!(parse(&inbox.try_recv().unwrap().unwrap()), (0, 0));
        assert_eq!(poll_once_with_a_late_sender(&inbox), (false, 0));
        // No budget, no polling on the spot.
        let off = Arc::new(Inbox::new("m", 4, SpinBudget::OFF));
        let other = Arc::clone(&off);
        std::thread::spawn(move || other.try_send(msg(1, 0)).unwrap()).join().unwrap();
        assert_eq!(parse(&off.try_recv().unwrap().unwrap()), (1, 0));
        assert_eq!(poll_once_with_a_late_sender(&off), (false, 0));
    }

    #[test]
    fn a_thread_that_parked_leaves_the_list_when_it_stops_waiting() {
        let inbox = Arc::new(Inbox::new("m", 1, SpinBudget::OFF));
        // A receive that times out.
        assert!(inbox.recv_deadline(Instant::now() + Duration::from_millis(20)).unwrap().is_none());
        assert_eq!(listed(&inbox.receivers), 0);
        // A send that times out on a full inbox.
        inbox.try_send(msg(0, 0)).unwrap();
        let d = Instant::now() + Duration::from_millis(20);
        let timed_out = inbox.send_deadline(msg(0, 1), None, d, Duration::from_millis(20));
        assert!(matches!(timed_out, Err(ContextError::SendTimeout { .. })));
        assert_eq!(listed(&inbox.senders), 0);
    }

    #[test]
    fn a_parked_sender_is_woken_once_the_inbox_is_down_to_half() {
        let inbox = Arc::new(Inbox::new("m", 4, SpinBudget::OFF));
        for i in 0..4 {
            inbox.try_send(msg(0, i)).unwrap();
        }
        let (parking_tx, parking) = std::sync::mpsc::channel();
        let sender = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || {
                race::install(move |point, _| {
                    if point == race::Point::BeforePark {
                        let _ = parking_tx.send(());
                    }
                });
                inbox.send(msg(0, 4))
            })
        };
        // Listed, found the inbox full, about to park.
        parking.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(listed(&inbox.senders), 1);
        assert_eq!(parse(&inbox.try_recv().unwrap().unwrap()), (0, 0));
        assert_eq!(listed(&inbox.senders), 1, "woken with the inbox above half");
        assert_eq!(parse(&inbox.try_recv().unwrap().unwrap()), (0, 1));
        join_within(sender, "the sender was never woken").unwrap();
        let rest: Vec<_> = (0..3).map(|_| parse(&inbox.try_recv().unwrap().unwrap())).collect();
        assert_eq!(rest, [(0, 2), (0, 3), (0, 4)]);
    }
}
