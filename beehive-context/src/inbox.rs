//! A module's inbox: a bounded FIFO, usable from threads and async tasks,
//! that can be closed without losing track of what was in it.

use std::future::poll_fn;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use beehive_model::Message;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use crossbeam_utils::CachePadded;

use crate::ContextError;

/// How long an idle receiver polls before it parks.
pub(crate) const SPIN: Duration = Duration::from_micros(20);

/// Polling before parking: a few microseconds of busy-waiting, then
/// `yield_now` so that a producer sharing this core gets to run, until the
/// budget is spent.
pub(crate) struct Spin {
    round: u32,
    started: Option<Instant>,
}

impl Spin {
    pub(crate) fn new() -> Self {
        Spin { round: 0, started: None }
    }

    /// Waits a little; false once `budget` has been spent.
    pub(crate) fn wait(&mut self, budget: Duration) -> bool {
        self.round += 1;
        if self.round <= 64 {
            for _ in 0..32 {
                std::hint::spin_loop();
            }
            return true;
        }
        let t0 = *self.started.get_or_insert_with(Instant::now);
        if t0.elapsed() >= budget {
            return false;
        }
        std::thread::yield_now();
        true
    }
}

pub(crate) enum Envelope {
    Msg(Message),
    /// Wakes receivers after the inbox is sealed; each passes it on.
    Close,
}

/// Async tasks waiting for a message (or for room).
#[derive(Default)]
struct Wakers {
    count: AtomicUsize,
    list: Mutex<Vec<Waker>>,
}

impl Wakers {
    fn register(&self, w: &Waker) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if !list.iter().any(|x| x.will_wake(w)) {
            list.push(w.clone());
        }
        self.count.store(list.len(), Ordering::SeqCst);
    }

    /// Wakes every registered task; costs one load when nobody waits.
    fn wake_all(&self) {
        fence(Ordering::SeqCst);
        if self.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let woken = {
            let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
            self.count.store(0, Ordering::SeqCst);
            std::mem::take(&mut *list)
        };
        for w in woken {
            w.wake();
        }
    }
}

/// A bounded inbox on a lock-free array queue (crossbeam), which spins
/// briefly before parking a blocked thread. Senders register themselves
/// (`in_flight`) before they check the closed flag, so [`Inbox::close`] can
/// wait for every send that got past the check and count everything that
/// was accepted but never received: no accepted message disappears silently.
pub(crate) struct Inbox {
    module: String,
    tx: Sender<Envelope>,
    rx: Receiver<Envelope>,
    closed: AtomicBool,
    // Each on its own cache line: senders write `in_flight` on every send,
    // and the receiver must not pay a cache miss on the fields it reads.
    in_flight: CachePadded<AtomicUsize>,
    receivers: CachePadded<Wakers>,
    senders: CachePadded<Wakers>,
}

struct Entered<'a>(&'a AtomicUsize);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Inbox {
    pub(crate) fn new(module: &str, capacity: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        Inbox {
            module: module.to_owned(),
            tx,
            rx,
            closed: AtomicBool::new(false),
            in_flight: CachePadded::new(AtomicUsize::new(0)),
            receivers: CachePadded::new(Wakers::default()),
            senders: CachePadded::new(Wakers::default()),
        }
    }

    fn closed_error(&self) -> ContextError {
        ContextError::Closed { module: self.module.clone() }
    }

    fn enter(&self) -> Result<Entered<'_>, ContextError> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = Entered(&self.in_flight);
        if self.closed.load(Ordering::SeqCst) {
            return Err(self.closed_error());
        }
        Ok(guard)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn sent(&self) {
        self.receivers.wake_all();
    }

    fn taken(&self, env: Envelope) -> Result<Message, ContextError> {
        self.senders.wake_all();
        match env {
            Envelope::Msg(m) => Ok(m),
            Envelope::Close => {
                let _ = self.tx.try_send(Envelope::Close);
                Err(self.closed_error())
            }
        }
    }

    /// Waits for room (as Go's `Send` does).
    pub(crate) fn send(&self, msg: Message) -> Result<(), ContextError> {
        let _entered = self.enter()?;
        self.tx.send(Envelope::Msg(msg)).map_err(|_| self.closed_error())?;
        self.sent();
        Ok(())
    }

    pub(crate) fn try_send(&self, msg: Message) -> Result<(), ContextError> {
        let _entered = self.enter()?;
        self.tx.try_send(Envelope::Msg(msg)).map_err(|e| match e {
            TrySendError::Full(_) => ContextError::Full { module: self.module.clone() },
            TrySendError::Disconnected(_) => self.closed_error(),
        })?;
        self.sent();
        Ok(())
    }

    pub(crate) fn send_deadline(&self, msg: Message, deadline: Instant, timeout: Duration) -> Result<(), ContextError> {
        let _entered = self.enter()?;
        let id = msg.id().to_owned();
        self.tx.send_deadline(Envelope::Msg(msg), deadline).map_err(|e| match e {
            crossbeam_channel::SendTimeoutError::Timeout(_) => {
                ContextError::SendTimeout { module: self.module.clone(), msg_id: id, timeout }
            }
            crossbeam_channel::SendTimeoutError::Disconnected(_) => self.closed_error(),
        })?;
        self.sent();
        Ok(())
    }

    pub(crate) async fn send_async(&self, msg: Message) -> Result<(), ContextError> {
        let _entered = self.enter()?;
        let mut pending = Some(Envelope::Msg(msg));
        poll_fn(|cx| {
            let Some(env) = pending.take() else { return Poll::Ready(Ok(())) };
            let env = match self.tx.try_send(env) {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(TrySendError::Disconnected(_)) => return Poll::Ready(Err(self.closed_error())),
                Err(TrySendError::Full(env)) => env,
            };
            self.senders.register(cx.waker());
            fence(Ordering::SeqCst);
            match self.tx.try_send(env) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(TrySendError::Disconnected(_)) => Poll::Ready(Err(self.closed_error())),
                Err(TrySendError::Full(env)) => {
                    pending = Some(env);
                    Poll::Pending
                }
            }
        })
        .await?;
        self.sent();
        Ok(())
    }

    /// The next message. An empty inbox is polled for up to [`SPIN`] before
    /// the thread parks: waking a parked thread costs tens of microseconds
    /// on a small VM, far more than the gap between two messages of a busy
    /// sender. Once the inbox is sealed, the messages already in it are still
    /// returned, then [`ContextError::Closed`].
    pub(crate) fn recv(&self) -> Result<Message, ContextError> {
        let mut spin = Spin::new();
        loop {
            match self.rx.try_recv() {
                Ok(env) => return self.taken(env),
                Err(TryRecvError::Empty) if self.is_closed() => return Err(self.closed_error()),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Err(self.closed_error()),
            }
            if !spin.wait(SPIN) {
                break;
            }
        }
        match self.rx.recv() {
            Ok(env) => self.taken(env),
            Err(_) => Err(self.closed_error()),
        }
    }

    pub(crate) fn recv_deadline(&self, deadline: Instant) -> Result<Option<Message>, ContextError> {
        match self.rx.try_recv() {
            Ok(env) => return self.taken(env).map(Some),
            Err(TryRecvError::Empty) if self.is_closed() => return Err(self.closed_error()),
            Err(_) => {}
        }
        match self.rx.recv_deadline(deadline) {
            Ok(env) => self.taken(env).map(Some),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Ok(None),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(self.closed_error()),
        }
    }

    pub(crate) async fn recv_async(&self) -> Result<Message, ContextError> {
        poll_fn(|cx| {
            match self.rx.try_recv() {
                Ok(env) => return Poll::Ready(self.taken(env)),
                Err(TryRecvError::Empty) if self.is_closed() => return Poll::Ready(Err(self.closed_error())),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Poll::Ready(Err(self.closed_error())),
            }
            self.receivers.register(cx.waker());
            fence(Ordering::SeqCst);
            match self.rx.try_recv() {
                Ok(env) => Poll::Ready(self.taken(env)),
                Err(TryRecvError::Empty) => Poll::Pending,
                Err(TryRecvError::Disconnected) => Poll::Ready(Err(self.closed_error())),
            }
        })
        .await
    }

    /// Seals the inbox: later sends fail; receivers get the messages already
    /// in it, then [`ContextError::Closed`].
    pub(crate) fn seal(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Wakes a receiver parked on an empty inbox. If the inbox is full the
        // receiver is not parked, and it sees the flag once it has drained.
        let _ = self.tx.try_send(Envelope::Close);
        self.receivers.wake_all();
    }

    /// Seals the inbox and drops what is left in it. Returns how many
    /// accepted messages will never be received.
    pub(crate) fn close(&self) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        let mut dropped = 0;
        let mut drain = |rx: &Receiver<Envelope>| {
            while let Ok(env) = rx.try_recv() {
                if let Envelope::Msg(_) = env {
                    dropped += 1;
                }
            }
        };
        loop {
            drain(&self.rx);
            self.senders.wake_all();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
            // A sender is between its check and the queue (or waiting for the
            // room just made): let it finish, then drain again.
            std::thread::yield_now();
        }
        drain(&self.rx);
        let _ = self.tx.try_send(Envelope::Close);
        self.receivers.wake_all();
        dropped
    }

    pub(crate) fn len(&self) -> usize {
        self.rx.len()
    }
}
