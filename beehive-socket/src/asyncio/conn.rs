//! The connection task: one session, one socket, one task.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use beehive_model::Message;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::block::block_on_deadline;
use super::io::{Io, Read};
use super::DriverError;
use crate::metrics::{ConnMetrics, ConnRole, Queued};
use crate::session::{CloseReason, Event, IoDirection, Session, SessionError, SessionId, TransportKind};

/// Packets (or stream reads) taken per wake-up before the task looks at its
/// other inputs again.
const READ_BUDGET: usize = 32;
/// Messages held for delivery before the task stops reading.
const DELIVERY_HIGH: usize = 256;
/// Bytes pulled from the session for one round of writes.
const WRITE_BATCH: usize = 256 * 1024;

/// The runtime's clock as the session's.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// What a handle asks the connection task to do.
#[derive(Debug)]
pub(crate) enum Command {
    Send {
        module: String,
        msg: Message,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    SendSync {
        module: String,
        msg: Message,
        deadline: Instant,
        reply: oneshot::Sender<Result<Message, DriverError>>,
    },
    SendResp {
        msg: Message,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    SendToGroup {
        group: String,
        msg: Message,
        reply: oneshot::Sender<Result<usize, DriverError>>,
    },
    SendMessage {
        msg: Message,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    /// Answers once everything queued before it is written.
    Flush {
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
}

/// The state of a connection as the handles see it.
#[derive(Debug, Clone)]
pub(crate) enum State {
    Handshaking,
    Connected,
    Closed(Arc<CloseReason>),
}

/// What a connection task shares with its handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) session: SessionId,
    pub(crate) state: watch::Sender<State>,
    /// The modules reached through the connection and their groups.
    pub(crate) modules: Mutex<BTreeMap<String, Vec<String>>>,
    /// The remote module (server side), or our own (client side).
    pub(crate) peer: Mutex<Option<String>>,
    /// Set to ask the task to close (never waits, even when the command
    /// channel is full); `close_waker` wakes the task.
    close: AtomicBool,
    close_waker: AtomicWaker,
}

impl Shared {
    pub(crate) fn new(session: SessionId) -> Arc<Self> {
        Arc::new(Shared {
            session,
            state: watch::Sender::new(State::Handshaking),
            modules: Mutex::new(BTreeMap::new()),
            peer: Mutex::new(None),
            close: AtomicBool::new(false),
            close_waker: AtomicWaker::new(),
        })
    }

    pub(crate) fn close_reason(&self) -> Option<Arc<CloseReason>> {
        match &*self.state.borrow() {
            State::Closed(r) => Some(Arc::clone(r)),
            _ => None,
        }
    }

    pub(crate) fn closed_error(&self) -> DriverError {
        DriverError::Closed(self.close_reason().unwrap_or_else(|| Arc::new(CloseReason::Local)))
    }

    pub(crate) fn peer(&self) -> Option<String> {
        self.peer.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn modules(&self) -> BTreeMap<String, Vec<String>> {
        self.modules.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves once a close was asked for.
    fn close_asked(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            if self.close.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            self.close_waker.register(cx.waker());
            if self.close.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    fn set_closed(&self, reason: Arc<CloseReason>) {
        self.state.send_if_modified(|s| {
            if matches!(s, State::Closed(_)) {
                false
            } else {
                *s = State::Closed(reason);
                true
            }
        });
    }
}

/// A handle's side of a connection.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) send_wait: Duration,
}

impl Link {
    async fn call<T>(
        &self,
        wait: Duration,
        make: impl FnOnce(oneshot::Sender<Result<T, DriverError>>) -> Command,
    ) -> Result<T, DriverError> {
        if let Some(reason) = self.shared.close_reason() {
            return Err(DriverError::Closed(reason));
        }
        let (reply, answer) = oneshot::channel();
        match self.tx.send_timeout(make(reply), wait).await {
            Ok(()) => {}
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => return Err(DriverError::Busy(wait)),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => return Err(self.shared.closed_error()),
        }
        answer.await.unwrap_or_else(|_| Err(self.shared.closed_error()))
    }

    pub(crate) async fn send(&self, module: &str, msg: Message) -> Result<(), DriverError> {
        self.send_within(module, msg, self.send_wait).await
    }

    pub(crate) async fn send_sync(
        &self,
        module: &str,
        msg: Message,
        timeout: Duration,
    ) -> Result<Message, DriverError> {
        let deadline = now() + timeout;
        let module = module.to_owned();
        let call = self.call(timeout, |reply| Command::SendSync { module, msg, deadline, reply });
        // The session times the request out at its deadline; this bound only
        // guards against a task that is gone without answering.
        let bound = tokio::time::Instant::from_std(deadline) + Duration::from_secs(1);
        match tokio::time::timeout_at(bound, call).await {
            Ok(r) => r,
            Err(_) => Err(DriverError::Timeout(timeout)),
        }
    }

    pub(crate) async fn send_resp(&self, msg: Message) -> Result<(), DriverError> {
        self.call(self.send_wait, |reply| Command::SendResp { msg, reply }).await
    }

    pub(crate) async fn send_to_group(&self, group: &str, msg: Message) -> Result<usize, DriverError> {
        let group = group.to_owned();
        self.call(self.send_wait, |reply| Command::SendToGroup { group, msg, reply }).await
    }

    pub(crate) async fn send_message(&self, msg: Message) -> Result<(), DriverError> {
        self.send_message_within(msg, self.send_wait).await
    }

    /// [`call`](Self::call) from a thread outside the runtime: waits up to
    /// `wait` for room in the command channel (not at all when zero), then
    /// until `reply_by` for the answer.
    fn call_blocking<T>(
        &self,
        wait: Duration,
        reply_by: Instant,
        make: impl FnOnce(oneshot::Sender<Result<T, DriverError>>) -> Command,
    ) -> Result<T, DriverError> {
        if let Some(reason) = self.shared.close_reason() {
            return Err(DriverError::Closed(reason));
        }
        let (reply, answer) = oneshot::channel();
        match self.tx.try_send(make(reply)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                match block_on_deadline(self.tx.send(cmd), Instant::now() + wait) {
                    Some(Ok(())) => {}
                    Some(Err(_)) => return Err(self.shared.closed_error()),
                    None => return Err(DriverError::Busy(wait)),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(self.shared.closed_error()),
        }
        match block_on_deadline(answer, reply_by) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(self.shared.closed_error()),
            None => Err(DriverError::Busy(wait)),
        }
    }

    /// [`send`](Self::send), blocking; `wait` bounds the wait for room.
    pub(crate) fn send_blocking(&self, module: &str, msg: Message, wait: Duration) -> Result<(), DriverError> {
        let module = module.to_owned();
        let reply_by = Instant::now() + wait + self.send_wait;
        self.call_blocking(wait, reply_by, |reply| Command::Send { module, msg, reply })
    }

    /// [`send_sync`](Self::send_sync), blocking.
    pub(crate) fn send_sync_blocking(
        &self,
        module: &str,
        msg: Message,
        timeout: Duration,
    ) -> Result<Message, DriverError> {
        let deadline = Instant::now() + timeout;
        let module = module.to_owned();
        // The session times the request out at its deadline; the extra
        // second only guards against a task gone without answering.
        let r = self.call_blocking(timeout, deadline + Duration::from_secs(1), |reply| Command::SendSync {
            module,
            msg,
            deadline,
            reply,
        });
        match r {
            Err(DriverError::Busy(_)) if Instant::now() >= deadline => Err(DriverError::Timeout(timeout)),
            r => r,
        }
    }

    /// [`send_resp`](Self::send_resp), blocking.
    pub(crate) fn send_resp_blocking(&self, msg: Message) -> Result<(), DriverError> {
        let reply_by = Instant::now() + 2 * self.send_wait;
        self.call_blocking(self.send_wait, reply_by, |reply| Command::SendResp { msg, reply })
    }

    /// [`send_message`](Self::send_message), blocking; `wait` bounds the
    /// wait for room.
    pub(crate) fn send_message_blocking(&self, msg: Message, wait: Duration) -> Result<(), DriverError> {
        let reply_by = Instant::now() + wait + self.send_wait;
        self.call_blocking(wait, reply_by, |reply| Command::SendMessage { msg, reply })
    }

    /// [`send`](Self::send) waiting at most `wait` for room.
    pub(crate) async fn send_within(&self, module: &str, msg: Message, wait: Duration) -> Result<(), DriverError> {
        let module = module.to_owned();
        self.call(wait, |reply| Command::Send { module, msg, reply }).await
    }

    /// [`send_message`](Self::send_message) waiting at most `wait` for room.
    pub(crate) async fn send_message_within(&self, msg: Message, wait: Duration) -> Result<(), DriverError> {
        self.call(wait, |reply| Command::SendMessage { msg, reply }).await
    }

    /// Waits until every message queued before the call is written to the
    /// socket, at most `timeout` in all.
    pub(crate) async fn flush(&self, timeout: Duration) -> Result<(), DriverError> {
        match tokio::time::timeout(timeout, self.call(timeout, |reply| Command::Flush { reply })).await {
            Ok(Err(DriverError::Busy(_))) | Err(_) => Err(DriverError::Timeout(timeout)),
            Ok(r) => r,
        }
    }

    /// Asks the task to close; returns at once.
    pub(crate) fn close(&self) {
        self.shared.close.store(true, Ordering::Release);
        self.shared.close_waker.wake();
    }

    /// Waits until the connection is closed; its reason.
    pub(crate) async fn closed(&self) -> Arc<CloseReason> {
        let mut rx = self.shared.state.subscribe();
        loop {
            if let State::Closed(r) = &*rx.borrow_and_update() {
                return Arc::clone(r);
            }
            if rx.changed().await.is_err() {
                return self.shared.close_reason().unwrap_or_else(|| Arc::new(CloseReason::Local));
            }
        }
    }
}

pub(crate) use crate::driver::ConnEvent;

/// Where a connection's messages and events go (a client's channels, or
/// the server's).
pub(crate) trait Sink: Send + 'static {
    /// Delivers a message; gives it back when the receiver is full. A gone
    /// receiver drops it.
    fn try_deliver(&mut self, msg: Message) -> Result<(), Message>;
    /// Delivers a message the receiver had no room for: the future
    /// resolves once it is delivered or given up (the sink reports that).
    /// The connection reads nothing meanwhile.
    fn deliver_later(&mut self, msg: Message) -> Stalled;
    /// Reports an event.
    fn event(&mut self, shared: &Shared, event: ConnEvent);
}

/// Delivers into a bounded channel.
pub(crate) fn try_deliver<T>(tx: &mpsc::Sender<T>, item: T) -> Result<(), T> {
    match tx.try_send(item) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(item)) => Err(item),
        Err(mpsc::error::TrySendError::Closed(_)) => {
            tracing::debug!("no receiver for a message, dropped");
            Ok(())
        }
    }
}

/// Reports an event into a bounded channel, dropping it when full.
pub(crate) fn report<T: std::fmt::Debug>(tx: &mpsc::Sender<T>, event: T) {
    if let Err(mpsc::error::TrySendError::Full(event)) = tx.try_send(event) {
        tracing::warn!(?event, "event channel full, event dropped");
    }
}

/// A delivery waiting for room.
pub(crate) type Stalled = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Delivers into a bounded channel once it has room (a closed channel
/// drops the item).
pub(crate) fn deliver_later<T: Send + 'static>(tx: &mpsc::Sender<T>, item: T) -> Stalled {
    let tx = tx.clone();
    Box::pin(async move {
        let _ = tx.send(item).await;
    })
}

/// A `send_sync` caller: its reply channel and its timeout.
type Waiter = (oneshot::Sender<Result<Message, DriverError>>, Duration);

/// One connection task.
pub(crate) struct Conn<S: Sink> {
    session: Session,
    io: Io,
    rbuf: Vec<u8>,
    out: VecDeque<Bytes>,
    out_offset: usize,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    /// Closing when every handle is gone (a client); a server's
    /// connections live until they or the server close.
    close_when_orphaned: bool,
    waiters: HashMap<String, Waiter>,
    /// Callers waiting until everything queued is written.
    flushes: Vec<oneshot::Sender<Result<(), DriverError>>>,
    deliveries: VecDeque<Message>,
    /// A delivery waiting for room; nothing is read meanwhile.
    stalled: Option<Stalled>,
    sink: S,
    shared: Arc<Shared>,
    /// Registered when the connection starts: the hot path increments.
    metrics: ConnMetrics,
    /// The session's next timeout, armed at `armed`: moved only to an
    /// earlier deadline (a later one is taken up once it fires), so that
    /// the timer is not re-registered on every turn of the loop.
    timer: Pin<Box<tokio::time::Sleep>>,
    armed: Option<tokio::time::Instant>,
}

impl<S: Sink> Conn<S> {
    pub(crate) fn new(
        session: Session,
        io: Io,
        commands: mpsc::Receiver<Command>,
        close_when_orphaned: bool,
        sink: S,
        shared: Arc<Shared>,
    ) -> Self {
        let metrics = ConnMetrics::open(ConnRole::of(session.config().get_role()));
        Conn {
            session,
            io,
            rbuf: Vec::new(),
            out: VecDeque::new(),
            out_offset: 0,
            commands,
            commands_open: true,
            close_when_orphaned,
            waiters: HashMap::new(),
            flushes: Vec::new(),
            deliveries: VecDeque::new(),
            stalled: None,
            sink,
            shared,
            metrics,
            timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            armed: None,
        }
    }

    /// Runs the connection until its session closes.
    pub(crate) async fn run(mut self) {
        let id = self.session.id();
        loop {
            self.dispatch();
            self.deliver();
            if self.session.is_closed() {
                break;
            }
            self.pull_frames();
            let want_write = !self.out.is_empty() || self.io.wants_write();
            if !want_write && !self.flushes.is_empty() && self.session.outbound_queued() == 0 {
                for flush in self.flushes.drain(..) {
                    let _ = flush.send(Ok(()));
                }
            }
            let want_read = self.deliveries.is_empty() && self.stalled.is_none();
            self.arm_timer();
            tokio::select! {
                r = self.io.writable(), if want_write => match r {
                    Ok(()) => self.write(),
                    Err(e) => self.io_failed(IoDirection::Write, e),
                },
                r = self.io.readable(), if want_read => match r {
                    Ok(()) => self.read(),
                    Err(e) => self.io_failed(IoDirection::Read, e),
                },
                cmd = self.commands.recv(), if self.commands_open => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => {
                        self.commands_open = false;
                        if self.close_when_orphaned {
                            tracing::debug!(session = %id, "every handle is gone, closing");
                            self.session.close();
                        }
                    }
                },
                () = wait_stalled(&mut self.stalled), if self.stalled.is_some() => self.stalled = None,
                () = self.shared.close_asked() => self.session.close(),
                () = self.timer.as_mut(), if self.armed.is_some() => {
                    self.armed = None;
                    self.session.handle_timeout(now());
                }
            }
        }
        self.io.finish();
        for (_, (waiter, _)) in self.waiters.drain() {
            let _ = waiter.send(Err(self.shared.closed_error()));
        }
        // No more commands: senders learn at once that the connection is
        // closed, and none waits on this task while it delivers below.
        self.commands.close();
        while let Ok(cmd) = self.commands.try_recv() {
            self.refuse(cmd);
        }
        // What was read before the end still reaches its receiver (a
        // delivery that waits for room is bounded by its sink).
        loop {
            if let Some(stalled) = self.stalled.take() {
                stalled.await;
            }
            self.deliver();
            if self.stalled.is_none() && self.deliveries.is_empty() {
                break;
            }
        }
        for flush in self.flushes.drain(..) {
            let _ = flush.send(Err(self.shared.closed_error()));
        }
        tracing::debug!(session = %id, "connection task ends");
    }

    /// Arms the timer for the session's next timeout when it is earlier
    /// than the armed one (a timer that fires early only makes the session
    /// look at its clock once more).
    fn arm_timer(&mut self) {
        let Some(at) = self.session.poll_timeout().map(tokio::time::Instant::from_std) else { return };
        if self.armed.is_none_or(|armed| at < armed) {
            self.timer.as_mut().reset(at);
            self.armed = Some(at);
        }
    }

    fn io_failed(&mut self, direction: IoDirection, e: io::Error) {
        self.session.handle_io_error(direction, e, now());
    }

    /// Hands the session's events to waiters, the sink and the handles.
    fn dispatch(&mut self) {
        self.metrics.decoded(self.session.messages_received());
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Message(msg) => {
                    self.trace_read(&msg);
                    self.deliveries.push_back(msg);
                }
                Event::UnmatchedResponse(msg) => {
                    self.trace_read(&msg);
                    tracing::debug!(session = %self.session.id(), parent = msg.parent_id(), "a response to no request of this connection, delivered as a message");
                    self.deliveries.push_back(msg);
                }
                Event::Response(msg) => match self.waiters.remove(msg.parent_id()) {
                    Some((waiter, _)) => {
                        self.trace_read(&msg);
                        let _ = waiter.send(Ok(msg));
                    }
                    None => tracing::debug!(session = %self.session.id(), "a response whose caller is gone"),
                },
                Event::RequestTimedOut { id } => {
                    if let Some((waiter, timeout)) = self.waiters.remove(&id) {
                        let _ = waiter.send(Err(DriverError::Timeout(timeout)));
                    }
                }
                Event::Connected { module } => {
                    *self.shared.peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(module.clone());
                    self.shared.state.send_replace(State::Connected);
                    self.sink.event(&self.shared, ConnEvent::Connected { module });
                }
                Event::Registered { module, groups } => {
                    self.shared
                        .modules
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(module.clone(), groups.clone());
                    self.sink.event(&self.shared, ConnEvent::Registered { module, groups });
                }
                Event::Malformed { offset, error } => {
                    self.metrics.malformed.increment(1);
                    self.sink.event(&self.shared, ConnEvent::Malformed { offset, error });
                }
                Event::Closed { reason } => {
                    self.metrics.closed(&reason);
                    let reason = Arc::new(reason);
                    tracing::info!(session = %self.session.id(), reason = %reason, "connection closed");
                    self.shared.set_closed(Arc::clone(&reason));
                    for (_, (waiter, _)) in self.waiters.drain() {
                        let _ = waiter.send(Err(DriverError::Closed(Arc::clone(&reason))));
                    }
                    self.sink.event(&self.shared, ConnEvent::Closed { reason });
                }
            }
        }
    }

    /// The message event of a message read from the connection.
    #[inline]
    fn trace_read(&self, msg: &Message) {
        crate::metrics::trace_read(msg, self.session.id(), self.metrics.role());
    }

    fn deliver(&mut self) {
        while self.stalled.is_none() {
            let Some(msg) = self.deliveries.pop_front() else { break };
            if let Err(msg) = self.sink.try_deliver(msg) {
                self.stalled = Some(self.sink.deliver_later(msg));
            }
        }
    }

    fn pull_frames(&mut self) {
        let mut bytes: usize = self.out.iter().map(Bytes::len).sum::<usize>() - self.out_offset;
        while bytes < WRITE_BATCH {
            let Some(t) = self.session.poll_transmit() else { break };
            bytes += t.frame.len();
            self.out.push_back(t.frame);
        }
    }

    fn write(&mut self) {
        if let Err(e) = self.io.flush() {
            self.io_failed(IoDirection::Write, e);
            return;
        }
        let packet = matches!(self.session.config().get_transport(), TransportKind::Packet);
        while !self.out.is_empty() {
            let (front, _) = self.out.as_slices();
            match self.io.try_write(front, self.out_offset) {
                Ok(0) if !packet => {
                    self.io_failed(IoDirection::Write, io::Error::from(io::ErrorKind::WriteZero));
                    return;
                }
                Ok(mut n) => {
                    self.session.handle_written(n, now());
                    self.metrics.bytes_written.increment(n as u64);
                    if packet {
                        self.out.pop_front();
                        self.metrics.messages_written.increment(1);
                        continue;
                    }
                    while n > 0 {
                        let Some(first) = self.out.front() else { break };
                        let left = first.len() - self.out_offset;
                        if n >= left {
                            n -= left;
                            self.out.pop_front();
                            self.out_offset = 0;
                            self.metrics.messages_written.increment(1);
                        } else {
                            self.out_offset += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if packet && e.raw_os_error() == Some(nix::errno::Errno::EMSGSIZE as i32) => {
                    // The session's limit is the socket's, so sends larger
                    // than it already failed; a kernel that still refuses a
                    // packet leaves it nothing to do but drop the frame
                    // (logged); the connection stays up.
                    let len = self.out.pop_front().map_or(0, |f| f.len());
                    tracing::warn!(session = %self.session.id(), len, "packet too large for the socket, dropped");
                    self.session.handle_written(len, now());
                }
                Err(e) => {
                    self.io_failed(IoDirection::Write, e);
                    return;
                }
            }
        }
        self.pull_frames();
    }

    fn read(&mut self) {
        let max = self.session.config().get_max_frame_len();
        for _ in 0..READ_BUDGET {
            let (session, metrics) = (&mut self.session, &self.metrics);
            let read = self.io.try_read(&mut self.rbuf, max, |read, bytes| match read {
                Read::Packet(len) => {
                    metrics.bytes_read.increment(len as u64);
                    session.handle_packet(bytes, now());
                }
                Read::Bytes(0) => session.handle_eof(now()),
                Read::Bytes(n) => {
                    metrics.bytes_read.increment(n as u64);
                    session.handle_bytes(bytes, now());
                }
            });
            match read {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.io_failed(IoDirection::Read, e);
                    return;
                }
            }
            if self.session.is_closed() {
                return;
            }
            self.dispatch();
            self.deliver();
            if self.deliveries.len() >= DELIVERY_HIGH {
                return;
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = now();
        let closed = |shared: &Shared, e: SessionError| match e {
            SessionError::Closed => shared.closed_error(),
            e => DriverError::Session(e),
        };
        match cmd {
            Command::Send { module, msg, reply } => {
                let queued = Queued::to(&msg, &module);
                let r = self.session.send(&module, msg, now).map_err(|e| closed(&self.shared, e));
                queued.report(self.session.id(), self.metrics.role(), r.as_ref().map(drop));
                let _ = reply.send(r);
            }
            Command::SendSync { module, msg, deadline, reply } => {
                let timeout = deadline.saturating_duration_since(now);
                let queued = Queued::to(&msg, &module);
                match self.session.send_sync(&module, msg, timeout, now) {
                    Ok(id) => {
                        queued.report(self.session.id(), self.metrics.role(), Ok(()));
                        self.waiters.insert(id, (reply, timeout));
                    }
                    Err(e) => {
                        let e = closed(&self.shared, e);
                        queued.report(self.session.id(), self.metrics.role(), Err(&e));
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::SendResp { msg, reply } => {
                let queued = Queued::response(&msg);
                let r = self.session.send_resp(msg, now).map_err(|e| closed(&self.shared, e));
                queued.report(self.session.id(), self.metrics.role(), r.as_ref().map(drop));
                let _ = reply.send(r);
            }
            Command::SendToGroup { group, msg, reply } => {
                let queued = Queued::group(&msg, &group);
                let r = self.session.send_to_group(&group, msg, now).map_err(|e| closed(&self.shared, e));
                queued.report(self.session.id(), self.metrics.role(), r.as_ref().map(drop));
                let _ = reply.send(r);
            }
            Command::SendMessage { msg, reply } => {
                let queued = Queued::message(&msg);
                let r = self.session.send_message(msg, now).map_err(|e| closed(&self.shared, e));
                queued.report(self.session.id(), self.metrics.role(), r.as_ref().map(drop));
                let _ = reply.send(r);
            }
            Command::Flush { reply } => self.flushes.push(reply),
        }
    }

    /// Answers a command that comes after the close.
    fn refuse(&self, cmd: Command) {
        let closed = |shared: &Shared| shared.closed_error();
        match cmd {
            Command::Send { reply, .. }
            | Command::SendResp { reply, .. }
            | Command::SendMessage { reply, .. }
            | Command::Flush { reply } => {
                let _ = reply.send(Err(closed(&self.shared)));
            }
            Command::SendSync { reply, .. } => {
                let _ = reply.send(Err(closed(&self.shared)));
            }
            Command::SendToGroup { reply, .. } => {
                let _ = reply.send(Err(closed(&self.shared)));
            }
        }
    }
}

async fn wait_stalled(stalled: &mut Option<Stalled>) {
    match stalled {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link whose command channel (of one) is full, and the channel's
    /// receiving end, read by the test instead of a connection task.
    fn full_link() -> (Link, mpsc::Receiver<Command>) {
        let (link, rx) = answered_link(Duration::ZERO);
        let (reply, _) = oneshot::channel();
        assert!(link.tx.try_send(Command::Flush { reply }).is_ok());
        (link, rx)
    }

    #[test]
    fn a_blocking_request_that_finds_no_room_before_its_deadline_times_out() {
        let (link, _rx) = full_link();
        let timeout = Duration::from_millis(200);
        let start = Instant::now();
        let r = link.send_sync_blocking("m", msg(), timeout);
        assert!(matches!(r, Err(DriverError::Timeout(t)) if t == timeout), "{r:?}");
        assert!(start.elapsed() >= timeout, "gave up after {:?}", start.elapsed());
    }

    #[test]
    fn a_blocking_request_gets_the_answer_the_task_gives_it() {
        let (link, mut rx) = answered_link(Duration::ZERO);
        let request = msg();
        let response = request.new_response("ok");
        // Shorter than the one-second guard, so that an answer wait
        // ending before the request's deadline would give up at once.
        let timeout = Duration::from_millis(500);
        let requester = std::thread::spawn(move || link.send_sync_blocking("m", request, timeout));
        match rx.blocking_recv() {
            Some(Command::SendSync { module, reply, .. }) => {
                assert_eq!(module, "m");
                assert!(reply.send(Ok(response.clone())).is_ok());
            }
            _ => panic!("not the request"),
        }
        let r = requester.join().expect("requester panicked");
        assert_eq!(r.expect("no answer").id(), response.id());
    }

    /// A link with room in its command channel, whose blocking calls the
    /// test answers as the connection task would.
    fn answered_link(send_wait: Duration) -> (Link, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(1);
        (Link { tx, shared: Shared::new(SessionId::next()), send_wait }, rx)
    }

    /// Answers the next command with `Ok(())`; its kind, for the test.
    fn answer_ok(rx: &mut mpsc::Receiver<Command>) -> &'static str {
        match rx.blocking_recv() {
            Some(Command::Send { reply, .. }) => reply.send(Ok(())).map(|_| "send"),
            Some(Command::SendResp { reply, .. }) => reply.send(Ok(())).map(|_| "send_resp"),
            Some(Command::SendMessage { reply, .. }) => reply.send(Ok(())).map(|_| "send_message"),
            _ => panic!("not a command answered with ()"),
        }
        .unwrap_or("caller gone")
    }

    #[test]
    fn blocking_calls_without_a_wait_for_room_still_wait_for_their_answer() {
        // No wait for room: the answer is awaited for the link's send wait
        // (twice that for a response).
        let (link, mut rx) = answered_link(Duration::from_millis(500));
        let l = link.clone();
        let caller = std::thread::spawn(move || l.send_message_blocking(msg().set_destination("m"), Duration::ZERO));
        assert_eq!(answer_ok(&mut rx), "send_message");
        assert!(caller.join().expect("caller panicked").is_ok());
        let caller = std::thread::spawn(move || link.send_resp_blocking(msg().new_response("ok")));
        assert_eq!(answer_ok(&mut rx), "send_resp");
        assert!(caller.join().expect("caller panicked").is_ok());
    }

    #[test]
    fn an_unanswered_blocking_call_gives_up_only_after_its_answer_wait() {
        let send_wait = Duration::from_millis(150);
        let (link, _rx) = answered_link(send_wait);
        let start = Instant::now();
        let r = link.send_message_blocking(msg().set_destination("m"), Duration::ZERO);
        assert!(matches!(r, Err(DriverError::Busy(_))), "{r:?}");
        assert!(start.elapsed() >= send_wait, "gave up after {:?}", start.elapsed());
        let (link, _rx) = answered_link(send_wait);
        let start = Instant::now();
        let r = link.send_resp_blocking(msg().new_response("ok"));
        assert!(matches!(r, Err(DriverError::Busy(_))), "{r:?}");
        assert!(start.elapsed() >= 2 * send_wait, "gave up after {:?}", start.elapsed());
    }

    #[test]
    fn an_unanswered_blocking_request_times_out_after_the_guard() {
        // The session answers a request at its deadline; a task that does
        // not is waited for one second more, then the request times out.
        let (link, _rx) = answered_link(Duration::ZERO);
        let timeout = Duration::from_millis(200);
        let start = Instant::now();
        let r = link.send_sync_blocking("m", msg(), timeout);
        assert!(matches!(r, Err(DriverError::Timeout(t)) if t == timeout), "{r:?}");
        assert!(start.elapsed() >= timeout + Duration::from_secs(1), "gave up after {:?}", start.elapsed());
    }

    fn msg() -> Message {
        Message::new("").build_router("src", "grp", "res", "update")
    }

    #[test]
    fn a_blocking_send_waits_for_room_as_long_as_it_is_told() {
        let (link, _rx) = full_link();
        let wait = Duration::from_millis(200);
        let start = Instant::now();
        let r = link.send_blocking("m", msg(), wait);
        assert!(matches!(r, Err(DriverError::Busy(w)) if w == wait), "{r:?}");
        assert!(start.elapsed() >= wait, "gave up after {:?}", start.elapsed());
    }

    #[test]
    fn a_blocking_send_goes_through_once_the_channel_has_room() {
        let (link, mut rx) = full_link();
        let sender = std::thread::spawn(move || link.send_blocking("m", msg(), Duration::from_secs(10)));
        // The command that filled the channel, then the send, answered as
        // the connection task would.
        assert!(matches!(rx.blocking_recv(), Some(Command::Flush { .. })));
        match rx.blocking_recv() {
            Some(Command::Send { module, reply, .. }) => {
                assert_eq!(module, "m");
                assert!(reply.send(Ok(())).is_ok());
            }
            _ => panic!("not the send"),
        }
        let r = sender.join().expect("sender panicked");
        assert!(r.is_ok(), "{r:?}");
    }
}
