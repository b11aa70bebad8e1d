//! One connection of the blocking driver: a session, a socket, and the
//! threads that use them.
//!
//! Writes happen on the calling thread: a send locks the session, queues
//! the frame and writes what the socket takes at once. Reading is a baton
//! (the `reader` lock) held by one thread at a time: a requester waiting in
//! `send_sync` takes it and reads its own response, so a round trip costs no
//! hand-over between threads; the connection's own thread holds it when no
//! requester does, delivers messages, answers timeouts and writes what a
//! full socket left queued. Whoever holds the baton polls for a moment
//! (yielding the core between polls) before it blocks in `poll(2)`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use beehive_model::Message;
use bytes::Bytes;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use socket2::Socket;

use super::io::{self as sock, Read};
use super::{DriverError, Options};
use crate::metrics::{ConnMetrics, ConnRole, Queued};
use crate::session::{CloseReason, Event, IoDirection, Session, SessionError, SessionId, TransportKind};
use crate::tlsio::TlsIo;

/// Messages read but not yet taken by the application, beyond which the
/// connection stops reading (its peer is slowed down; responses behind them
/// wait).
const HELD_HIGH: usize = 256;
/// Reads taken in one go before the reader looks at timeouts again.
const READ_BUDGET: usize = 64;
/// After a requester gave the baton back, the connection's thread leaves it
/// alone for this long: a requester that sends again soon takes it again
/// without waking anybody.
const LINGER: Duration = Duration::from_millis(1);
/// How often a sender waiting for room in the outbound queue tries the
/// socket itself.
const ROOM_POLL: Duration = Duration::from_millis(2);

pub(crate) use crate::driver::ConnEvent;

/// Where a connection's messages and events go.
pub(crate) trait Sink: Send + Sync + 'static {
    /// Delivers a message; gives it back when there is no room.
    fn try_deliver(&self, conn: &Arc<Conn>, msg: Message) -> Result<(), Message>;
    /// Delivers a message, waiting for room until `deadline` (or until the
    /// receiver is gone); gives it back when it could not.
    fn deliver_until(&self, conn: &Arc<Conn>, msg: Message, deadline: Instant) -> Result<(), Message>;
    /// Reports an event.
    fn event(&self, conn: &Arc<Conn>, event: ConnEvent);
}

/// A `send_sync` caller waiting for its response: a thread (unparked) or
/// a task (woken).
pub(crate) struct Waiter {
    result: Mutex<Option<Result<Message, DriverError>>>,
    done: AtomicBool,
    thread: Thread,
    waker: Mutex<Option<std::task::Waker>>,
    timeout: Duration,
}

impl Waiter {
    fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Waiter {
            result: Mutex::new(None),
            done: AtomicBool::new(false),
            thread: std::thread::current(),
            waker: Mutex::new(None),
            timeout,
        })
    }

    fn complete(&self, r: Result<Message, DriverError>) {
        *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        self.done.store(true, Ordering::Release);
        self.thread.unpark();
        if let Some(w) = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    fn take(&self) -> Option<Result<Message, DriverError>> {
        self.result.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
/// The response to a request, as a future: it completes when the
/// connection's thread reads the response, or with a timeout when the
/// session gives the request up (or a close).
pub(crate) struct Response {
    conn: Arc<Conn>,
    waiter: Arc<Waiter>,
}

impl std::future::Future for Response {
    type Output = Result<Message, DriverError>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        if !self.waiter.is_done() {
            *self.waiter.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            if !self.waiter.is_done() {
                return std::task::Poll::Pending;
            }
        }
        std::task::Poll::Ready(self.waiter.take().unwrap_or_else(|| Err(self.conn.closed_error())))
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        if !self.waiter.is_done() {
            self.conn.abandon(&self.waiter);
        }
    }
}

pub(crate) struct Inner {
    session: Session,
    /// TLS over the socket (TCP only): records are read and written under
    /// this lock.
    tls: Option<TlsIo<Arc<Socket>>>,
    /// The frame being written and how much of it is written.
    partial: Option<(Bytes, usize)>,
    waiters: HashMap<String, Arc<Waiter>>,
    /// Senders waiting for room in the outbound queue.
    room_waiters: usize,
    /// The connection's figures (see the crate's `metrics` module).
    metrics: ConnMetrics,
}

impl Inner {
    pub(crate) fn session(&mut self) -> &mut Session {
        &mut self.session
    }
}

/// What the connection knows of itself, for the handles.
#[derive(Debug, Default)]
pub(crate) struct Status {
    pub(crate) connected: bool,
    pub(crate) peer: Option<String>,
    pub(crate) modules: BTreeMap<String, Vec<String>>,
    pub(crate) closed: Option<Arc<CloseReason>>,
}

/// What a write round did.
struct Flushed {
    /// The socket is full: frames wait for it to drain.
    blocked: bool,
    /// A frame the kernel refused (too large for the socket), dropped.
    rejected: Option<io::Error>,
}

enum Action {
    Complete(Arc<Waiter>, Result<Message, DriverError>),
    Connected(String),
    Deliver(Message),
    Event(ConnEvent),
}

/// One connection; see the [module documentation](self).
pub(crate) struct Conn {
    id: SessionId,
    role: ConnRole,
    socket: Arc<Socket>,
    packet: bool,
    max_frame: usize,
    inner: Mutex<Inner>,
    /// Signalled when outbound frames are written (or the session closes).
    room: Condvar,
    /// The reading baton, with the read buffer.
    reader: Mutex<Vec<u8>>,
    /// Messages read and not yet delivered, in order.
    held: Mutex<VecDeque<Message>>,
    /// Interrupts a `poll` (a write that found the socket full, a close, a
    /// requester that wants the baton).
    wake_rx: UnixStream,
    wake_tx: UnixStream,
    /// The connection's thread holds the baton.
    thread_reading: AtomicBool,
    /// A requester asks the connection's thread for the baton.
    wanted: AtomicBool,
    /// When a requester last gave the baton back (µs since `epoch`).
    released_at: AtomicU64,
    epoch: Instant,
    closed: AtomicBool,
    status: Mutex<Status>,
    status_changed: Condvar,
    thread: OnceLock<Thread>,
    /// Serialises deliveries of held messages (their order).
    delivering: Mutex<()>,
    me: std::sync::Weak<Conn>,
    options: Options,
    sink: Box<dyn Sink>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("session", &self.id).field("closed", &self.is_closed()).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Conn {
    /// A connection over a nonblocking `socket`; its thread is started and
    /// the session's first frames (a client's registration) are written.
    pub(crate) fn start(
        socket: Socket,
        session: Session,
        options: Options,
        sink: Box<dyn Sink>,
        tls: Option<crate::tlsio::TlsSession>,
    ) -> io::Result<Arc<Self>> {
        let socket = Arc::new(socket);
        let tls = tls.map(|t| TlsIo::new(Arc::clone(&socket), t));
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let id = session.id();
        let packet = matches!(session.config().get_transport(), TransportKind::Packet);
        let max_frame = session.config().get_max_frame_len();
        let role = ConnRole::of(session.config().get_role());
        let conn = Arc::new_cyclic(|me| Conn {
            id,
            role,
            socket,
            packet,
            max_frame,
            inner: Mutex::new(Inner {
                metrics: ConnMetrics::open(role),
                session,
                tls,
                partial: None,
                waiters: HashMap::new(),
                room_waiters: 0,
            }),
            room: Condvar::new(),
            reader: Mutex::new(Vec::new()),
            held: Mutex::new(VecDeque::new()),
            wake_rx,
            wake_tx,
            thread_reading: AtomicBool::new(false),
            wanted: AtomicBool::new(false),
            released_at: AtomicU64::new(0),
            epoch: Instant::now(),
            closed: AtomicBool::new(false),
            status: Mutex::new(Status::default()),
            status_changed: Condvar::new(),
            thread: OnceLock::new(),
            delivering: Mutex::new(()),
            me: me.clone(),
            options,
            sink,
        });
        {
            let inner = lock(&conn.inner);
            conn.settle(inner);
        }
        let run = Arc::clone(&conn);
        let handle = std::thread::Builder::new().name(format!("beehive-conn-{id}")).spawn(move || {
            run.run();
            crate::memory::trim_thread_arena();
        })?;
        let _ = conn.thread.set(handle.thread().clone());
        Ok(conn)
    }

    pub(crate) fn options(&self) -> &Options {
        &self.options
    }

    pub(crate) fn id(&self) -> SessionId {
        self.id
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn status(&self) -> MutexGuard<'_, Status> {
        lock(&self.status)
    }

    pub(crate) fn close_reason(&self) -> Option<Arc<CloseReason>> {
        self.status().closed.clone()
    }

    pub(crate) fn closed_error(&self) -> DriverError {
        DriverError::Closed(self.close_reason().unwrap_or_else(|| Arc::new(CloseReason::Local)))
    }

    /// Waits until the handshake completes or the connection closes, at
    /// most until `deadline`; true when connected.
    pub(crate) fn wait_connected(&self, deadline: Instant) -> bool {
        let mut status = self.status();
        loop {
            if status.connected {
                return true;
            }
            if status.closed.is_some() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            status = self.status_changed.wait_timeout(status, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Waits until the connection is closed (and its last messages are
    /// delivered), at most until `deadline`.
    pub(crate) fn wait_closed(&self, deadline: Option<Instant>) -> Option<Arc<CloseReason>> {
        let mut status = self.status();
        loop {
            if let Some(r) = &status.closed {
                return Some(Arc::clone(r));
            }
            status = match deadline {
                None => self.status_changed.wait(status).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    self.status_changed.wait_timeout(status, d - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }

    // ---- sends ------------------------------------------------------------

    /// Runs `send` on the session once the outbound queue has room (waiting
    /// until `deadline`), then writes what the socket takes; `queued` is the
    /// message's event.
    pub(crate) fn send_with<T>(
        &self,
        deadline: Instant,
        queued: Queued<'_>,
        send: impl FnOnce(&mut Inner, Instant) -> Result<T, SessionError>,
    ) -> Result<T, DriverError> {
        let r = self.send_within(deadline, send);
        queued.report(self.id, self.role, r.as_ref().map(drop));
        r
    }

    fn send_within<T>(
        &self,
        deadline: Instant,
        send: impl FnOnce(&mut Inner, Instant) -> Result<T, SessionError>,
    ) -> Result<T, DriverError> {
        let mut inner = lock(&self.inner);
        loop {
            if inner.session.is_closed() {
                drop(inner);
                return Err(self.closed_error());
            }
            if inner.session.has_room() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                let (frames, bytes) = (inner.session.outbound_frames(), inner.session.outbound_queued());
                return Err(DriverError::Session(SessionError::QueueFull { frames, bytes }));
            }
            // The thread that would write or time the peer out may be this
            // one's caller (a handler answering on the connection's thread):
            // while it waits, it writes what the socket takes and fires the
            // session's timeouts itself (the write timeout ends the wait).
            self.flush(&mut inner, now);
            if inner.session.poll_timeout().is_some_and(|t| t <= now) {
                inner.session.handle_timeout(now);
                self.settle(inner);
                inner = lock(&self.inner);
                continue;
            }
            if inner.session.has_room() {
                break;
            }
            let next = inner.session.poll_timeout().map_or(deadline, |t| t.min(deadline));
            let wait = next.saturating_duration_since(now).min(ROOM_POLL);
            inner.room_waiters += 1;
            inner = self.room.wait_timeout(inner, wait).unwrap_or_else(|e| e.into_inner()).0;
            inner.room_waiters -= 1;
        }
        let first = inner.partial.is_none() && inner.session.outbound_queued() == 0;
        let now = Instant::now();
        let r = send(&mut inner, now).map_err(|e| match e {
            SessionError::Closed => DriverError::Closed(Arc::new(CloseReason::Local)),
            e => DriverError::Session(e),
        });
        let value = match r {
            Ok(v) => v,
            Err(DriverError::Closed(_)) => {
                drop(inner);
                return Err(self.closed_error());
            }
            Err(e) => return Err(e),
        };
        let flushed = self.flush(&mut inner, now);
        let single = first && !flushed.blocked;
        self.settle(inner);
        match flushed.rejected {
            // The only frame of this write: the caller learns.
            Some(e) if single => Err(DriverError::Io(e)),
            _ => Ok(value),
        }
    }

    /// Sends a request and registers its waiter (under one lock: nobody can
    /// take the response before the waiter is there).
    fn start_request(&self, module: &str, msg: Message, timeout: Duration) -> Result<Arc<Waiter>, DriverError> {
        let deadline = Instant::now() + timeout;
        let waiter = Waiter::new(timeout);
        let registered = Arc::clone(&waiter);
        self.send_with(deadline, Queued::to(&msg, module), |inner, now| {
            let id = inner.session.send_sync(module, msg, timeout, now)?;
            inner.waiters.insert(id, registered);
            Ok(())
        })
        .map_err(|e| match e {
            DriverError::Session(SessionError::QueueFull { .. }) => DriverError::Timeout(timeout),
            e => e,
        })?;
        Ok(waiter)
    }

    /// `send_sync`: sends, then waits for the response until the timeout,
    /// reading it itself when nobody else reads.
    pub(crate) fn request(&self, module: &str, msg: Message, timeout: Duration) -> Result<Message, DriverError> {
        let deadline = Instant::now() + timeout;
        let waiter = self.start_request(module, msg, timeout)?;
        self.wait_response(&waiter, deadline)
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    /// `send_sync` for async callers: the request is sent when this
    /// returns; the future never blocks (the connection's thread reads the
    /// response). The session ends the wait at the timeout.
    pub(crate) fn request_async(
        self: &Arc<Self>,
        module: &str,
        msg: Message,
        timeout: Duration,
    ) -> Result<Response, DriverError> {
        let waiter = self.start_request(module, msg, timeout)?;
        Ok(Response { conn: Arc::clone(self), waiter })
    }

    /// Forgets a waiter that no longer waits.
    fn abandon(&self, waiter: &Arc<Waiter>) {
        Self::forget(&mut lock(&self.inner), waiter);
    }

    /// Removes `waiter`; false when it was gone already (completed).
    fn forget(inner: &mut Inner, waiter: &Arc<Waiter>) -> bool {
        let before = inner.waiters.len();
        inner.waiters.retain(|_, w| !Arc::ptr_eq(w, waiter));
        inner.waiters.len() < before
    }

    fn wait_response(&self, waiter: &Arc<Waiter>, deadline: Instant) -> Result<Message, DriverError> {
        let mut poll = self.options.spin_budget().waiter();
        loop {
            if waiter.is_done() {
                return waiter.take().unwrap_or_else(|| Err(self.closed_error()));
            }
            let now = Instant::now();
            if now >= deadline {
                // The session times the request out at the same moment; the
                // waiter may be completed meanwhile.
                let mut inner = lock(&self.inner);
                if Self::forget(&mut inner, waiter) {
                    inner.session.handle_timeout(now);
                    self.settle(inner);
                    return Err(DriverError::Timeout(waiter.timeout));
                }
                drop(inner);
                continue;
            }
            if self.held_full() {
                // Nothing more is read until the application takes messages.
                std::thread::park_timeout((deadline - now).min(LINGER));
                continue;
            }
            if let Ok(mut buf) = self.reader.try_lock() {
                self.pump(&mut buf, Some(deadline), &|| waiter.is_done(), false);
                drop(buf);
                self.released();
                continue;
            }
            // The connection's thread reads: ask it for the baton; the
            // response may come through it meanwhile.
            if self.thread_reading.load(Ordering::Acquire) && !self.wanted.swap(true, Ordering::AcqRel) {
                self.nudge();
            }
            if !poll.wait() {
                std::thread::park_timeout((deadline - now).min(LINGER));
                poll = self.options.spin_budget().waiter();
            }
        }
    }

    /// Waits until every frame queued before the call is written, at most
    /// `timeout`.
    pub(crate) fn wait_flushed(&self, timeout: Duration) -> Result<(), DriverError> {
        let deadline = Instant::now() + timeout;
        let mut inner = lock(&self.inner);
        loop {
            if inner.session.is_closed() {
                drop(inner);
                return Err(self.closed_error());
            }
            if inner.partial.is_none() && inner.session.outbound_queued() == 0 {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(DriverError::Timeout(timeout));
            }
            self.nudge();
            inner.room_waiters += 1;
            inner =
                self.room.wait_timeout(inner, (deadline - now).min(LINGER * 10)).unwrap_or_else(|e| e.into_inner()).0;
            inner.room_waiters -= 1;
        }
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    /// True when the outbound queue takes another frame now.
    pub(crate) fn has_room(&self) -> bool {
        let inner = lock(&self.inner);
        inner.session.has_room() || inner.session.is_closed()
    }

    /// Closes the session (queued frames are dropped) and the socket.
    pub(crate) fn close(&self) {
        let mut inner = lock(&self.inner);
        inner.session.close();
        self.settle(inner);
    }

    // ---- plumbing -----------------------------------------------------------

    /// Writes queued frames until the socket is full or nothing is left.
    fn flush(&self, inner: &mut Inner, now: Instant) -> Flushed {
        if inner.tls.is_some() {
            return self.flush_tls(inner, now);
        }
        let mut out = Flushed { blocked: false, rejected: None };
        let mut wrote = false;
        loop {
            if inner.partial.is_none() {
                match inner.session.poll_transmit() {
                    Some(t) => inner.partial = Some((t.frame, 0)),
                    None => break,
                }
            }
            let Some((frame, offset)) = inner.partial.as_mut() else { break };
            match sock::write(&self.socket, &frame[*offset..]) {
                Ok(0) if !self.packet => {
                    inner.partial = None;
                    inner.session.handle_io_error(IoDirection::Write, io::ErrorKind::WriteZero.into(), now);
                    break;
                }
                Ok(n) => {
                    wrote = true;
                    inner.session.handle_written(n, now);
                    inner.metrics.bytes_written.increment(n as u64);
                    *offset += n;
                    if self.packet || *offset >= frame.len() {
                        inner.partial = None;
                        inner.metrics.messages_written.increment(1);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    out.blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.packet && e.raw_os_error() == Some(nix::errno::Errno::EMSGSIZE as i32) => {
                    // The kernel's packet limit is below the session's: the
                    // frame cannot go out, the connection stays up (as Go's).
                    let len = frame.len();
                    tracing::warn!(session = %self.id, len, "packet too large for the socket, dropped");
                    inner.partial = None;
                    inner.session.handle_written(len, now);
                    out.rejected.get_or_insert(e);
                }
                Err(e) => {
                    inner.partial = None;
                    inner.session.handle_io_error(IoDirection::Write, e, now);
                    break;
                }
            }
        }
        if wrote && inner.room_waiters > 0 {
            self.room.notify_all();
        }
        out
    }

    /// [`flush`](Self::flush) through TLS: the records rustls holds go out
    /// first, then plaintext of the queued frames (a bounded amount at a
    /// time, so the write timeout still sees a peer that does not read).
    fn flush_tls(&self, inner: &mut Inner, now: Instant) -> Flushed {
        let mut out = Flushed { blocked: false, rejected: None };
        let mut wrote = false;
        let Inner { session, tls, partial, metrics, .. } = inner;
        let Some(tls) = tls.as_mut() else { return out };
        loop {
            if partial.is_none() {
                match session.poll_transmit() {
                    Some(t) => *partial = Some((t.frame, 0)),
                    None => {
                        // Handshake records and alerts.
                        match tls.flush() {
                            Ok(()) => out.blocked = tls.tls.wants_write(),
                            Err(e) => session.handle_io_error(IoDirection::Write, e, now),
                        }
                        break;
                    }
                }
            }
            let Some((frame, offset)) = partial.as_mut() else { break };
            match tls.write(std::slice::from_ref(frame), *offset) {
                Ok(n) => {
                    wrote |= n > 0;
                    session.handle_written(n, now);
                    metrics.bytes_written.increment(n as u64);
                    *offset += n;
                    if *offset >= frame.len() {
                        *partial = None;
                        metrics.messages_written.increment(1);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    out.blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    *partial = None;
                    session.handle_io_error(IoDirection::Write, e, now);
                    break;
                }
            }
        }
        if wrote && inner.room_waiters > 0 {
            self.room.notify_all();
        }
        out
    }

    /// True when bytes wait to be written: a frame, or TLS records.
    fn wants_write(inner: &Inner) -> bool {
        inner.partial.is_some()
            || inner.session.outbound_queued() > 0
            || inner.tls.as_ref().is_some_and(|t| t.tls.wants_write())
    }

    /// Takes the session's events after an input, with the lock held; acts
    /// on them once it is released.
    fn settle(&self, mut inner: MutexGuard<'_, Inner>) {
        let mut actions = Vec::new();
        let mut closed = None;
        let decoded = inner.session.messages_received();
        inner.metrics.decoded(decoded);
        while let Some(event) = inner.session.poll_event() {
            match event {
                Event::Message(msg) => {
                    crate::metrics::trace_read(&msg, self.id, self.role);
                    actions.push(Action::Deliver(msg));
                }
                Event::UnmatchedResponse(msg) => {
                    crate::metrics::trace_read(&msg, self.id, self.role);
                    tracing::debug!(session = %self.id, parent = msg.parent_id(), "a response to no request of this connection, delivered as a message");
                    actions.push(Action::Deliver(msg));
                }
                Event::Response(msg) => match inner.waiters.remove(msg.parent_id()) {
                    Some(w) => {
                        crate::metrics::trace_read(&msg, self.id, self.role);
                        actions.push(Action::Complete(w, Ok(msg)));
                    }
                    None => tracing::debug!(session = %self.id, "a response whose caller is gone"),
                },
                Event::RequestTimedOut { id } => {
                    if let Some(w) = inner.waiters.remove(&id) {
                        let timeout = w.timeout;
                        actions.push(Action::Complete(w, Err(DriverError::Timeout(timeout))));
                    }
                }
                // The connection counts as connected once the actions before
                // it ran (the registrations of the handshake answer, which
                // the hive's routes are made of).
                Event::Connected { module } => actions.push(Action::Connected(module)),
                Event::Registered { module, groups } => {
                    self.status().modules.insert(module.clone(), groups.clone());
                    actions.push(Action::Event(ConnEvent::Registered { module, groups }));
                }
                Event::Malformed { offset, error } => {
                    inner.metrics.malformed.increment(1);
                    tracing::debug!(session = %self.id, offset, error = %error, "a malformed frame, skipped");
                    actions.push(Action::Event(ConnEvent::Malformed { offset, error }));
                }
                Event::Closed { reason } => {
                    inner.metrics.closed(&reason);
                    let reason = Arc::new(reason);
                    tracing::info!(session = %self.id, reason = %reason, "connection closed");
                    for (_, w) in inner.waiters.drain() {
                        actions.push(Action::Complete(w, Err(DriverError::Closed(Arc::clone(&reason)))));
                    }
                    inner.partial = None;
                    if let Some(tls) = inner.tls.as_mut() {
                        tls.finish();
                    }
                    closed = Some(reason);
                }
            }
        }
        // A server's handshake answer goes out only once the hive can route
        // to the modules it registers: a peer that has read its answer may
        // be sent to at once (the registrations run outside the lock).
        let registers =
            actions.iter().any(|a| matches!(a, Action::Connected(_) | Action::Event(ConnEvent::Registered { .. })));
        if !registers {
            self.flush_queued(&mut inner);
        }
        if inner.session.is_closed() && inner.room_waiters > 0 {
            self.room.notify_all();
        }
        drop(inner);
        if let Some(reason) = closed {
            // The reason is known at once; the Closed event comes from the
            // connection's thread after the last messages are delivered.
            self.status().closed.get_or_insert(Arc::clone(&reason));
            self.status_changed.notify_all();
            self.closed.store(true, Ordering::Release);
            let _ = self.socket.shutdown(std::net::Shutdown::Both);
            self.nudge();
        }
        self.act(actions);
        if registers {
            self.flush_queued(&mut lock(&self.inner));
        }
    }

    /// Writes what the session has queued, as far as the socket takes it
    /// (the connection's thread is nudged to write the rest).
    fn flush_queued(&self, inner: &mut Inner) {
        if !inner.session.is_closed() && Self::wants_write(inner) && self.flush(inner, Instant::now()).blocked {
            self.nudge();
        }
    }

    fn act(&self, actions: Vec<Action>) {
        if actions.is_empty() {
            return;
        }
        let me = self.me();
        for action in actions {
            match action {
                Action::Complete(w, r) => w.complete(r),
                Action::Connected(module) => {
                    let mut status = self.status();
                    status.connected = true;
                    status.peer = Some(module.clone());
                    drop(status);
                    self.status_changed.notify_all();
                    if let Some(me) = &me {
                        self.sink.event(me, ConnEvent::Connected { module });
                    }
                }
                Action::Deliver(msg) => self.hold(msg),
                Action::Event(e) => {
                    if let Some(me) = &me {
                        self.sink.event(me, e);
                    }
                }
            }
        }
        if let Some(me) = &me {
            self.deliver_held(me);
        }
    }

    /// The connection as an `Arc` (for the sink), while it lives.
    fn me(&self) -> Option<Arc<Conn>> {
        self.me.upgrade()
    }

    fn hold(&self, msg: Message) {
        lock(&self.held).push_back(msg);
    }

    fn held_full(&self) -> bool {
        lock(&self.held).len() >= HELD_HIGH
    }

    /// Delivers held messages while the sink takes them.
    fn deliver_held(&self, me: &Arc<Conn>) {
        let Ok(_turn) = self.delivering.try_lock() else { return };
        // The held lock is not kept while the sink runs: a handler may
        // read from this connection (a `send_sync`) and hold more.
        loop {
            let Some(msg) = lock(&self.held).pop_front() else { break };
            if let Err(msg) = self.sink.try_deliver(me, msg) {
                lock(&self.held).push_front(msg);
                break;
            }
        }
    }

    /// Wakes whoever blocks in `poll` on this connection, and its thread.
    fn nudge(&self) {
        let _ = io::Write::write(&mut &self.wake_tx, &[1]);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    // ---- reading ------------------------------------------------------------

    /// Holding the baton: reads and handles input until `stop()` holds,
    /// `deadline` passes, the connection closes, too many messages wait for
    /// delivery, or (on the connection's thread) a requester wants the baton.
    fn pump(&self, buf: &mut Vec<u8>, deadline: Option<Instant>, stop: &dyn Fn() -> bool, thread: bool) {
        let mut poll = self.options.spin_budget().waiter();
        loop {
            if self.is_closed() || stop() || self.held_full() {
                return;
            }
            // The connection's thread stops reading to wait for room for what
            // it holds (requesters may still read their responses), or to
            // give the baton to a requester.
            if thread && (self.wanted.load(Ordering::Acquire) || !lock(&self.held).is_empty()) {
                return;
            }
            if self.read_some(buf, stop) {
                poll = self.options.spin_budget().waiter();
                continue;
            }
            let now = Instant::now();
            self.timeouts(now);
            if stop() || deadline.is_some_and(|d| now >= d) {
                return;
            }
            if poll.wait() {
                continue;
            }
            self.block(deadline);
            poll = self.options.spin_budget().waiter();
        }
    }

    /// Reads what the socket has (up to a budget); true when it read.
    fn read_some(&self, buf: &mut Vec<u8>, stop: &dyn Fn() -> bool) -> bool {
        let mut got = false;
        for _ in 0..READ_BUDGET {
            let mut inner = lock(&self.inner);
            let r = match inner.tls.as_mut() {
                // Decrypted bytes may wait in rustls: read under the lock.
                Some(tls) => tls.read(buf).map(Read::Bytes),
                None => {
                    drop(inner);
                    let r = sock::read(&self.socket, self.packet, buf, self.max_frame);
                    inner = lock(&self.inner);
                    r
                }
            };
            let now = Instant::now();
            match r {
                Ok(Read::Packet(len)) => {
                    inner.metrics.bytes_read.increment(len as u64);
                    inner.session.handle_packet(&buf[..len.min(buf.len())], now)
                }
                Ok(Read::Bytes(0)) => inner.session.handle_eof(now),
                Ok(Read::Bytes(n)) => {
                    inner.metrics.bytes_read.increment(n as u64);
                    inner.session.handle_bytes(&buf[..n], now)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => inner.session.handle_io_error(IoDirection::Read, e, now),
            }
            got = true;
            self.settle(inner);
            if self.is_closed() || stop() || self.held_full() {
                break;
            }
        }
        got
    }

    /// Fires the session's timeouts that are due.
    fn timeouts(&self, now: Instant) {
        let mut inner = lock(&self.inner);
        if inner.session.poll_timeout().is_some_and(|t| t <= now) {
            inner.session.handle_timeout(now);
            self.settle(inner);
        }
    }

    /// Blocks in `poll` until the socket is readable (or writable while
    /// frames wait), a nudge, the session's next timeout or `deadline`.
    fn block(&self, deadline: Option<Instant>) {
        let (timeout, want_write) = {
            let inner = lock(&self.inner);
            (inner.session.poll_timeout(), Self::wants_write(&inner))
        };
        let until = match (timeout, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let wait = match until {
            None => PollTimeout::NONE,
            Some(t) => {
                let d = t.saturating_duration_since(Instant::now());
                // Rounded up: waking before the deadline only polls again.
                let ms = d.as_micros().div_ceil(1000);
                PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut interest = PollFlags::POLLIN;
        if want_write {
            interest |= PollFlags::POLLOUT;
        }
        let mut fds =
            [PollFd::new(self.socket.as_fd(), interest), PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN)];
        if nix::poll::poll(&mut fds, wait).is_err() {
            return;
        }
        let ready = |fd: &PollFd<'_>, flag: PollFlags| fd.revents().is_some_and(|r| r.intersects(flag));
        if ready(&fds[1], PollFlags::POLLIN) {
            let mut drain = [0u8; 64];
            while matches!(io::Read::read(&mut &self.wake_rx, &mut drain), Ok(n) if n > 0) {}
        }
        if want_write && ready(&fds[0], PollFlags::POLLOUT | PollFlags::POLLERR | PollFlags::POLLHUP) {
            let mut inner = lock(&self.inner);
            let now = Instant::now();
            self.flush(&mut inner, now);
            self.settle(inner);
        }
    }

    /// A requester gave the baton back: the connection's thread leaves it
    /// alone for a moment, other requesters may take it at once.
    fn released(&self) {
        self.released_at.store(self.epoch.elapsed().as_micros() as u64, Ordering::Release);
        let inner = lock(&self.inner);
        for w in inner.waiters.values() {
            w.thread.unpark();
        }
    }

    fn since_release(&self) -> Duration {
        let at = Duration::from_micros(self.released_at.load(Ordering::Acquire));
        self.epoch.elapsed().saturating_sub(at)
    }

    /// Delivers held messages, waiting for room (until `deadline`, without
    /// one as long as the connection lives); false when one could not be
    /// delivered by then.
    fn deliver_waiting(&self, me: &Arc<Conn>, deadline: Option<Instant>) -> bool {
        let _turn = lock(&self.delivering);
        loop {
            let Some(msg) = lock(&self.held).pop_front() else { return true };
            let until = deadline.unwrap_or_else(|| Instant::now() + LINGER * 100);
            if let Err(msg) = self.sink.deliver_until(me, msg, until) {
                lock(&self.held).push_front(msg);
                return false;
            }
        }
    }

    /// The connection's thread: reads while no requester does, delivers
    /// what readers could not, and reports the end.
    fn run(self: Arc<Self>) {
        loop {
            if self.is_closed() {
                break;
            }
            if !lock(&self.held).is_empty() && !self.deliver_waiting(&self, None) {
                continue;
            }
            let since = self.since_release();
            if since < LINGER {
                std::thread::park_timeout(LINGER - since);
                continue;
            }
            match self.reader.try_lock() {
                Ok(mut buf) => {
                    self.wanted.store(false, Ordering::Release);
                    self.thread_reading.store(true, Ordering::Release);
                    self.pump(&mut buf, None, &|| false, true);
                    self.thread_reading.store(false, Ordering::Release);
                    drop(buf);
                    if self.wanted.swap(false, Ordering::AcqRel) {
                        self.released();
                    }
                }
                Err(_) => std::thread::park_timeout(LINGER),
            }
        }
        // What was read before the end still reaches its receiver, within
        // the send wait.
        let deadline = Instant::now() + self.options.send_wait;
        if !self.deliver_waiting(&self, Some(deadline)) {
            let lost = std::mem::take(&mut *lock(&self.held)).len();
            tracing::warn!(session = %self.id, lost, "messages read before the close could not be delivered");
        }
        let reason = self.close_reason().unwrap_or_else(|| Arc::new(CloseReason::Local));
        self.status_changed.notify_all();
        self.sink.event(&self, ConnEvent::Closed { reason });
    }
}
