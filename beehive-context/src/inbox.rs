//! A module's inbox: a bounded FIFO that can be closed without losing
//! track of what was in it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use beehive_model::Message;

use crate::ContextError;

pub(crate) enum Envelope {
    Msg(Message),
    /// Wakes receivers after the inbox is closed; each passes it on.
    Close,
}

/// How often a receiver polls before it parks: a parked thread costs tens
/// of microseconds to wake on this kind of machine, so a short spin catches
/// the common case of a message arriving right away.
const SPIN_ROUNDS: u32 = 10;

fn backoff(round: u32) {
    if round < 6 {
        for _ in 0..(1u32 << round) {
            std::hint::spin_loop();
        }
    } else {
        std::thread::yield_now();
    }
}

/// A bounded inbox. Senders register themselves (`in_flight`) before they
/// check the closed flag, so [`Inbox::close`] can wait for every send that
/// got past the check and count everything that was accepted but never
/// received: no accepted message disappears silently.
pub(crate) struct Inbox {
    module: String,
    tx: flume::Sender<Envelope>,
    rx: flume::Receiver<Envelope>,
    closed: AtomicBool,
    in_flight: AtomicUsize,
}

struct Entered<'a>(&'a AtomicUsize);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Inbox {
    pub(crate) fn new(module: &str, capacity: usize) -> Self {
        let (tx, rx) = flume::bounded(capacity.max(1));
        Inbox {
            module: module.to_owned(),
            tx,
            rx,
            closed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn closed_error(&self) -> ContextError {
        ContextError::Closed {
            module: self.module.clone(),
        }
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

    /// Waits for room (as Go's `Send` does).
    pub(crate) fn send(&self, msg: Message) -> Result<(), ContextError> {
        let _entered = self.enter()?;
        self.tx
            .send(Envelope::Msg(msg))
            .map_err(|_| self.closed_error())
    }

    pub(crate) fn try_send(&self, msg: Message) -> Result<(), ContextError> {
        let _entered = self.enter()?;
        self.tx.try_send(Envelope::Msg(msg)).map_err(|e| match e {
            flume::TrySendError::Full(_) => ContextError::Full {
                module: self.module.clone(),
            },
            flume::TrySendError::Disconnected(_) => self.closed_error(),
        })
    }

    pub(crate) fn send_deadline(
        &self,
        msg: Message,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), ContextError> {
        let _entered = self.enter()?;
        let id = msg.id().to_owned();
        self.tx
            .send_deadline(Envelope::Msg(msg), deadline)
            .map_err(|e| match e {
                flume::SendTimeoutError::Timeout(_) => ContextError::SendTimeout {
                    module: self.module.clone(),
                    msg_id: id,
                    timeout,
                },
                flume::SendTimeoutError::Disconnected(_) => self.closed_error(),
            })
    }

    pub(crate) async fn send_async(&self, msg: Message) -> Result<(), ContextError> {
        let _entered = self.enter()?;
        self.tx
            .send_async(Envelope::Msg(msg))
            .await
            .map_err(|_| self.closed_error())
    }

    fn open(&self, env: Envelope) -> Result<Message, ContextError> {
        match env {
            Envelope::Msg(m) => Ok(m),
            Envelope::Close => {
                let _ = self.tx.try_send(Envelope::Close);
                Err(self.closed_error())
            }
        }
    }

    /// The next message, spinning briefly before parking. Once the inbox is
    /// sealed, the messages already in it are still returned, then
    /// [`ContextError::Closed`].
    pub(crate) fn recv(&self) -> Result<Message, ContextError> {
        for round in 0..SPIN_ROUNDS {
            match self.rx.try_recv() {
                Ok(env) => return self.open(env),
                Err(flume::TryRecvError::Empty) if self.is_closed() => {
                    return Err(self.closed_error())
                }
                Err(flume::TryRecvError::Empty) => backoff(round),
                Err(flume::TryRecvError::Disconnected) => return Err(self.closed_error()),
            }
        }
        match self.rx.recv() {
            Ok(env) => self.open(env),
            Err(_) => Err(self.closed_error()),
        }
    }

    pub(crate) fn recv_deadline(&self, deadline: Instant) -> Result<Option<Message>, ContextError> {
        match self.rx.try_recv() {
            Ok(env) => return self.open(env).map(Some),
            Err(flume::TryRecvError::Empty) if self.is_closed() => return Err(self.closed_error()),
            Err(_) => {}
        }
        match self.rx.recv_deadline(deadline) {
            Ok(env) => self.open(env).map(Some),
            Err(flume::RecvTimeoutError::Timeout) => Ok(None),
            Err(flume::RecvTimeoutError::Disconnected) => Err(self.closed_error()),
        }
    }

    pub(crate) async fn recv_async(&self) -> Result<Message, ContextError> {
        match self.rx.try_recv() {
            Ok(env) => return self.open(env),
            Err(flume::TryRecvError::Empty) if self.is_closed() => return Err(self.closed_error()),
            Err(_) => {}
        }
        match self.rx.recv_async().await {
            Ok(env) => self.open(env),
            Err(_) => Err(self.closed_error()),
        }
    }

    /// Seals the inbox: later sends fail; receivers get the messages already
    /// in it, then [`ContextError::Closed`].
    pub(crate) fn seal(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Wakes a receiver parked on an empty inbox. If the inbox is full the
        // receiver is not parked, and it sees the flag once it has drained.
        let _ = self.tx.try_send(Envelope::Close);
    }

    /// Seals the inbox and drops what is left in it. Returns how many
    /// accepted messages will never be received.
    pub(crate) fn close(&self) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        let mut dropped = 0;
        loop {
            while let Ok(env) = self.rx.try_recv() {
                if let Envelope::Msg(_) = env {
                    dropped += 1;
                }
            }
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
            // A sender is between its check and the queue (or waiting for the
            // room we just made): let it finish, then drain again.
            std::thread::yield_now();
        }
        while let Ok(env) = self.rx.try_recv() {
            if let Envelope::Msg(_) = env {
                dropped += 1;
            }
        }
        let _ = self.tx.try_send(Envelope::Close);
        dropped
    }

    pub(crate) fn len(&self) -> usize {
        self.rx.len()
    }
}
