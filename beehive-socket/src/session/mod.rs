//! A sans-IO session: one socket-mode connection as a state machine.
//!
//! A [`Session`] owns everything one connection needs except the socket:
//! the module handshake (both roles), the modules and groups reached
//! through the connection, matching of responses to the requests sent on
//! it, every timeout, and a bounded outbound queue. It does no I/O, reads no
//! clock (every input carries `now`) and starts no thread; a driver (tokio,
//! blocking threads, or your own) moves bytes between it and a socket:
//!
//! * **inputs**: [`handle_packet`](Session::handle_packet) (SOCK_SEQPACKET)
//!   or [`handle_bytes`](Session::handle_bytes) (streams, Raw or Package
//!   framing), [`handle_eof`](Session::handle_eof),
//!   [`handle_io_error`](Session::handle_io_error),
//!   [`handle_written`](Session::handle_written) (write progress),
//!   [`handle_timeout`](Session::handle_timeout), the sends
//!   ([`send`](Session::send), [`send_sync`](Session::send_sync),
//!   [`send_resp`](Session::send_resp),
//!   [`send_to_group`](Session::send_to_group),
//!   [`send_message`](Session::send_message)) and [`close`](Session::close);
//! * **outputs**: [`poll_transmit`](Session::poll_transmit) (frames to
//!   write, in order), [`poll_event`](Session::poll_event) (what the hive
//!   must learn) and [`poll_timeout`](Session::poll_timeout) (when to call
//!   `handle_timeout` next).
//!
//! ```
//! use std::time::Instant;
//! use beehive_socket::session::{Event, Session, SessionConfig, TransportKind};
//!
//! let now = Instant::now();
//! let mut server = Session::new(SessionConfig::server("socketserver", TransportKind::Packet), now);
//! let mut client = Session::new(SessionConfig::client("edgeclient", TransportKind::Packet), now);
//! // The client's registration goes to the server, the answer comes back.
//! while let Some(t) = client.poll_transmit() {
//!     client.handle_written(t.frame.len(), now);
//!     server.handle_packet(&t.frame, now);
//! }
//! while let Some(t) = server.poll_transmit() {
//!     server.handle_written(t.frame.len(), now);
//!     client.handle_packet(&t.frame, now);
//! }
//! assert!(client.is_connected() && server.is_connected());
//! assert!(client.serves("socketserver"));
//! assert!(matches!(server.poll_event(), Some(Event::Registered { .. })));
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use beehive_codec::{CodecError, PackageCodec, RawCodec};
use beehive_model::{constants, Content, Message, ModuleExchange};
use bytes::{Bytes, BytesMut};

mod config;
mod error;
mod registry;

pub use config::{
    ModuleDirectory, Role, SessionConfig, StreamFraming, TransportKind, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_PENDING_REQUESTS, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_QUEUED_FRAMES, DEFAULT_WRITE_TIMEOUT,
};
pub use error::{CloseReason, IoDirection, Refusal, SessionError};
pub use registry::{ModuleRegistry, NameTaken, SessionId};

/// Input is taken in slices of this size, so that the receive buffer never
/// holds much more than one maximal frame.
const INPUT_SLICE: usize = 64 * 1024;

/// One frame to write: a whole packet on SOCK_SEQPACKET, a frame of the
/// stream's framing otherwise. Write them in the order they are polled and
/// report progress with [`Session::handle_written`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transmit {
    /// The bytes.
    pub frame: Bytes,
}

/// What a session tells its driver.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The handshake is complete: `module` (the remote module on a server,
    /// our own module on a client) is registered on this connection.
    Connected {
        /// The remote module of the connection.
        module: String,
    },
    /// `module` is reached through this connection (a pipe), member of
    /// `groups`. A server registers the peer's module in a group of its own
    /// name (as Go does); a client registers its own module and every
    /// module and group of the server's answer.
    Registered {
        /// The module.
        module: String,
        /// Its groups on this connection.
        groups: Vec<String>,
    },
    /// A message for the hive (Go's server forwards it to its destination;
    /// a client delivers it to its module).
    Message(Message),
    /// The response to a request sent on this session with
    /// [`Session::send_sync`]: hand it to the waiting caller.
    Response(Message),
    /// A message whose parent id names no request waiting on this session.
    /// It must not be offered to waiters (this connection was not sent that
    /// request); Go would deliver it as an ordinary message.
    UnmatchedResponse(Message),
    /// A request sent with [`Session::send_sync`] got no response in time;
    /// a later response to it is unmatched.
    RequestTimedOut {
        /// The request's id.
        id: String,
    },
    /// A packet (or a complete stream frame) that is not a message: logged
    /// and skipped, the connection stays up (as Go's reader does).
    Malformed {
        /// Byte offset of the error (within the packet, or in the stream).
        offset: u64,
        /// The error.
        error: CodecError,
    },
    /// The session is closed: shut the connection down. The last event.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Connected,
    Closed,
}

#[derive(Debug)]
enum Decoder {
    Packet,
    Raw(RawCodec),
    Package(PackageCodec),
}

/// The module handshake request Go's socket context sends (a client
/// session sends it with `sync` set).
pub fn handshake_request(module: &str) -> Message {
    Message::new("")
        .build_router(module, "", constants::RESOURCE_TYPE_MODULE, constants::OPERATION_TYPE_MODULE)
        .set_type(crate::config::UNIXPACKET)
        .fill_body("")
}

fn is_handshake(msg: &Message) -> bool {
    msg.resource() == constants::RESOURCE_TYPE_MODULE && msg.operation() == constants::OPERATION_TYPE_MODULE
}

/// One connection's protocol state; see the [module documentation](self).
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    config: SessionConfig,
    state: State,
    created: Instant,
    // Inbound.
    decoder: Decoder,
    rx: BytesMut,
    frame_started: Option<Instant>,
    last_rx: Instant,
    // Handshake.
    handshake_id: Option<String>,
    peer_module: Option<String>,
    // Pipes: module -> its groups; group -> members.
    modules: BTreeMap<String, Vec<String>>,
    groups: BTreeMap<String, Vec<String>>,
    // Requests waiting for a response.
    pending: HashMap<String, Instant>,
    deadlines: BTreeSet<(Instant, String)>,
    // Outbound.
    control: VecDeque<Bytes>,
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    inflight: VecDeque<usize>,
    inflight_bytes: usize,
    write_since: Option<Instant>,
    events: VecDeque<Event>,
    /// Messages decoded from the input so far.
    received: u64,
}

impl Session {
    /// A new session of a connection established at `now`. A client queues
    /// its module registration at once.
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        let max = config.max_frame_len;
        let decoder = match config.transport {
            TransportKind::Packet => Decoder::Packet,
            TransportKind::Stream(StreamFraming::Raw) => {
                Decoder::Raw(RawCodec::with_max_line_len(max).unwrap_or_default())
            }
            TransportKind::Stream(StreamFraming::Package) => {
                Decoder::Package(PackageCodec::with_max_frame_len(max).unwrap_or_default())
            }
        };
        let mut session = Session {
            id: SessionId::next(),
            config,
            state: State::Handshaking,
            created: now,
            decoder,
            rx: BytesMut::new(),
            frame_started: None,
            last_rx: now,
            handshake_id: None,
            peer_module: None,
            modules: BTreeMap::new(),
            groups: BTreeMap::new(),
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
            control: VecDeque::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            write_since: None,
            events: VecDeque::new(),
            received: 0,
        };
        if let Role::Client { module } = &session.config.role {
            // Go's exchangeModuleInfo: the registration goes out through
            // SendSyncInternal, which sets sync.
            let request = handshake_request(module).set_type(session.config.message_type.as_str()).set_sync(true);
            session.handshake_id = Some(request.id().to_owned());
            match session.encode(&request) {
                Ok(frame) => session.push_control(frame, now),
                Err(e) => {
                    tracing::warn!(session = %session.id, error = %e, "cannot encode the module registration");
                    session.close_with(CloseReason::HandshakeRefused(Refusal::BadAnswer { reason: e.to_string() }));
                }
            }
        }
        session
    }

    /// This session's id (the owner id in a [`ModuleRegistry`]).
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The options.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// True once the handshake is complete (until closed).
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The remote module of the connection once registered (a server's
    /// peer; a client's own module).
    pub fn peer_module(&self) -> Option<&str> {
        self.peer_module.as_deref()
    }

    /// True when `module` is reached through this session.
    pub fn serves(&self, module: &str) -> bool {
        self.modules.contains_key(module)
    }

    /// The modules reached through this session, sorted.
    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.modules.keys().map(String::as_str)
    }

    /// The members of `group` reached through this session, in order of
    /// registration.
    pub fn group_members(&self, group: &str) -> &[String] {
        self.groups.get(group).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The groups reached through this session, sorted.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    /// Bytes of an incomplete inbound frame held (never much more than the
    /// frame limit).
    pub fn inbound_buffered(&self) -> usize {
        self.rx.len()
    }

    /// Bytes queued or being written.
    pub fn outbound_queued(&self) -> usize {
        self.queued_bytes + self.inflight_bytes
    }

    /// Frames queued or being written.
    pub fn outbound_frames(&self) -> usize {
        self.control.len() + self.queue.len() + self.inflight.len()
    }

    /// True when the outbound queue takes another frame (one that fits in
    /// the bytes left: [`send`](Self::send) still fails with
    /// [`SessionError::QueueFull`] for a frame larger than those).
    pub fn has_room(&self) -> bool {
        self.outbound_frames() < self.config.max_queued_frames && self.outbound_queued() < self.config.max_queued_bytes
    }

    /// Requests waiting for their response.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Messages decoded from the input so far, handshakes included
    /// (malformed packets and frames aside).
    pub fn messages_received(&self) -> u64 {
        self.received
    }

    // ---- inputs -------------------------------------------------------

    /// One packet received on a SOCK_SEQPACKET connection. An empty packet
    /// is the end of the connection (as for Go). A packet that is not a
    /// message, or larger than the frame limit, is reported as
    /// [`Event::Malformed`] and the session stays up.
    pub fn handle_packet(&mut self, packet: &[u8], now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if !matches!(self.decoder, Decoder::Packet) {
            self.handle_bytes(packet, now);
            return;
        }
        if packet.is_empty() {
            self.handle_eof(now);
            return;
        }
        self.last_rx = now;
        let max = self.config.max_frame_len;
        if packet.len() > max {
            self.malformed(max as u64, CodecError::PacketTooLarge { max });
            return;
        }
        match beehive_codec::raw::packet::decode(packet) {
            Ok(msg) => self.on_message(msg, now),
            Err(e) => {
                let offset = error::codec_offset(&e);
                self.malformed(offset, e);
            }
        }
    }

    /// Bytes received on a stream connection (Raw or Package framing). A
    /// frame that is not a message is reported as [`Event::Malformed`]; a
    /// broken framing (bad header, oversized frame or line) closes the
    /// session.
    pub fn handle_bytes(&mut self, bytes: &[u8], now: Instant) {
        if self.state == State::Closed || bytes.is_empty() {
            return;
        }
        if matches!(self.decoder, Decoder::Packet) {
            self.handle_packet(bytes, now);
            return;
        }
        self.last_rx = now;
        for slice in bytes.chunks(INPUT_SLICE) {
            let had_partial = !self.rx.is_empty();
            self.rx.extend_from_slice(slice);
            let completed = self.decode_frames(now, false);
            if self.state == State::Closed {
                return;
            }
            if self.rx.is_empty() {
                self.frame_started = None;
                self.rx = BytesMut::new();
            } else if completed > 0 || !had_partial || self.frame_started.is_none() {
                // A new frame began in these bytes: its clock starts now.
                self.frame_started = Some(now);
            }
        }
    }

    /// The peer closed the connection (a read returned end of stream). A
    /// last raw line without its line feed is still delivered; a client
    /// whose handshake is not complete sees a refusal.
    pub fn handle_eof(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if !matches!(self.decoder, Decoder::Packet) && !self.rx.is_empty() {
            self.decode_frames(now, true);
            if self.state == State::Closed {
                return;
            }
        }
        let reason = match (&self.config.role, self.state) {
            (Role::Client { .. }, State::Handshaking) => CloseReason::HandshakeRefused(Refusal::PeerClosed),
            _ => CloseReason::PeerClosed,
        };
        self.close_with(reason);
    }

    /// Reading from or writing to the connection failed. An error that
    /// means the peer is gone (`ECONNRESET`, `EPIPE`, `ECONNABORTED`) is
    /// the peer closing, as [`handle_eof`](Self::handle_eof); any other
    /// closes the session with [`CloseReason::Io`], which keeps the error.
    pub fn handle_io_error(&mut self, direction: IoDirection, error: std::io::Error, now: Instant) {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        tracing::info!(session = %self.id, error = %error, "{direction}: the connection failed");
        if matches!(error.kind(), BrokenPipe | ConnectionAborted | ConnectionReset) {
            self.handle_eof(now);
        } else {
            self.close_with(CloseReason::Io { direction, error });
        }
    }

    /// The driver wrote `n` more bytes of the transmitted frames (a whole
    /// packet counts its length).
    pub fn handle_written(&mut self, n: usize, now: Instant) {
        if n == 0 {
            return;
        }
        let mut left = n.min(self.inflight_bytes);
        if n > self.inflight_bytes {
            tracing::debug!(session = %self.id, n, inflight = self.inflight_bytes, "more bytes written than transmitted");
        }
        self.inflight_bytes -= left;
        while left > 0 {
            let Some(front) = self.inflight.front_mut() else { break };
            if *front <= left {
                left -= *front;
                self.inflight.pop_front();
            } else {
                *front -= left;
                left = 0;
            }
        }
        self.write_since = if self.has_outbound() { Some(now) } else { None };
    }

    /// Fires every timeout due at `now` (call it at
    /// [`poll_timeout`](Self::poll_timeout) or later).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.state == State::Handshaking && now >= self.created + self.config.handshake_timeout {
            self.close_with(CloseReason::HandshakeTimeout(self.config.handshake_timeout));
            return;
        }
        if let Some(idle) = self.config.idle_timeout {
            if now >= self.last_rx + idle {
                self.close_with(CloseReason::IdleTimeout(idle));
                return;
            }
        }
        if let Some(start) = self.frame_started {
            if now >= start + self.config.stall_timeout {
                let buffered = self.rx.len();
                self.close_with(CloseReason::StallTimeout { timeout: self.config.stall_timeout, buffered });
                return;
            }
        }
        if let (Some(timeout), Some(since)) = (self.config.write_timeout, self.write_since) {
            if now >= since + timeout {
                let pending = self.outbound_queued();
                self.close_with(CloseReason::WriteTimeout { timeout, pending });
                return;
            }
        }
        while let Some((at, _)) = self.deadlines.first() {
            if *at > now {
                break;
            }
            let Some((_, id)) = self.deadlines.pop_first() else { break };
            self.pending.remove(&id);
            self.events.push_back(Event::RequestTimedOut { id });
        }
    }

    /// Closes the session at once: queued frames are dropped, waiting
    /// requests are abandoned, owned names are released.
    pub fn close(&mut self) {
        self.close_with(CloseReason::Local);
    }

    // ---- outputs ------------------------------------------------------

    /// The next frame to write. Handshake frames come first; other frames
    /// are held until the handshake is complete.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.state == State::Closed {
            return None;
        }
        let frame = match self.control.pop_front() {
            Some(f) => f,
            None if self.state == State::Connected => self.queue.pop_front()?,
            None => return None,
        };
        self.queued_bytes -= frame.len();
        self.inflight.push_back(frame.len());
        self.inflight_bytes += frame.len();
        Some(Transmit { frame })
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if self.state == State::Handshaking {
            consider(self.created + self.config.handshake_timeout);
        }
        if let Some(idle) = self.config.idle_timeout {
            consider(self.last_rx + idle);
        }
        if let Some(start) = self.frame_started {
            consider(start + self.config.stall_timeout);
        }
        if let (Some(timeout), Some(since)) = (self.config.write_timeout, self.write_since) {
            consider(since + timeout);
        }
        if let Some((at, _)) = self.deadlines.first() {
            consider(*at);
        }
        next
    }

    // ---- sends --------------------------------------------------------

    /// Go's `Send(module, msg)`: sets the type (`unixpacket`) and the
    /// destination `module`, which must be served through this session.
    pub fn send(&mut self, module: &str, msg: Message, now: Instant) -> Result<(), SessionError> {
        self.check_module(module)?;
        let msg = msg.set_type(self.config.message_type.as_str()).set_destination(module);
        self.send_message(msg, now)
    }

    /// Go's `SendSync(module, msg, timeout)`: like [`send`](Self::send) with
    /// `sync` set; the response is reported as [`Event::Response`], or
    /// [`Event::RequestTimedOut`] at `now + timeout`. Returns the request id.
    pub fn send_sync(
        &mut self,
        module: &str,
        msg: Message,
        timeout: Duration,
        now: Instant,
    ) -> Result<String, SessionError> {
        self.check_module(module)?;
        if self.pending.len() >= self.config.max_pending_requests {
            return Err(SessionError::TooManyRequests { pending: self.pending.len() });
        }
        let id = msg.id().to_owned();
        if self.pending.contains_key(&id) {
            return Err(SessionError::DuplicateRequest { id });
        }
        let msg = msg.set_type(self.config.message_type.as_str()).set_destination(module).set_sync(true);
        self.send_message(msg, now)?;
        let deadline = now + timeout;
        self.pending.insert(id.clone(), deadline);
        self.deadlines.insert((deadline, id.clone()));
        Ok(id)
    }

    /// Go's `SendResp(resp)`: the destination becomes the response's source.
    pub fn send_resp(&mut self, resp: Message, now: Instant) -> Result<(), SessionError> {
        let source = resp.source().to_owned();
        self.send_message(resp.set_destination(source), now)
    }

    /// Go's `SendToGroup(group, msg)`: one copy per member of `group` served
    /// through this session, with the destination set to the member (the
    /// type is left alone, as in Go). Returns how many copies were queued;
    /// stops at the first copy that cannot be queued.
    pub fn send_to_group(&mut self, group: &str, msg: Message, now: Instant) -> Result<usize, SessionError> {
        if self.state == State::Closed {
            return Err(SessionError::Closed);
        }
        let members =
            self.groups.get(group).cloned().ok_or_else(|| SessionError::UnknownGroup { group: group.to_owned() })?;
        for member in &members {
            self.send_message(msg.clone().set_destination(member.as_str()), now)?;
        }
        Ok(members.len())
    }

    /// Queues `msg` exactly as it is.
    pub fn send_message(&mut self, msg: Message, now: Instant) -> Result<(), SessionError> {
        if self.state == State::Closed {
            return Err(SessionError::Closed);
        }
        let frame = self.encode(&msg)?;
        let frames = self.outbound_frames();
        let bytes = self.outbound_queued();
        if frames >= self.config.max_queued_frames || bytes + frame.len() > self.config.max_queued_bytes {
            return Err(SessionError::QueueFull { frames, bytes });
        }
        self.queued_bytes += frame.len();
        self.queue.push_back(frame);
        if self.state == State::Connected && self.write_since.is_none() {
            self.write_since = Some(now);
        }
        Ok(())
    }

    // ---- plumbing -----------------------------------------------------

    fn check_module(&self, module: &str) -> Result<(), SessionError> {
        if self.state == State::Closed {
            return Err(SessionError::Closed);
        }
        if !self.modules.contains_key(module) {
            return Err(SessionError::UnknownModule { module: module.to_owned() });
        }
        Ok(())
    }

    fn has_outbound(&self) -> bool {
        self.inflight_bytes > 0
            || !self.control.is_empty()
            || (self.state == State::Connected && !self.queue.is_empty())
    }

    fn encode(&mut self, msg: &Message) -> Result<Bytes, SessionError> {
        let max = self.config.max_frame_len;
        let mut buf = BytesMut::new();
        match &self.config.transport {
            TransportKind::Packet => {
                beehive_codec::raw::packet::encode(msg, &mut buf).map_err(SessionError::Encode)?;
                let max = self.config.packet_send_limit.map_or(max, |limit| limit.min(max));
                if buf.len() > max {
                    return Err(SessionError::MessageTooLarge { len: buf.len(), max });
                }
            }
            TransportKind::Stream(StreamFraming::Raw) => {
                RawCodec::new().encode_message(msg, &mut buf).map_err(SessionError::Encode)?;
                if buf.len() - 1 > max {
                    return Err(SessionError::MessageTooLarge { len: buf.len() - 1, max });
                }
            }
            TransportKind::Stream(StreamFraming::Package) => {
                let mut codec = PackageCodec::with_max_frame_len(max).unwrap_or_default();
                match codec.encode_message(msg, &mut buf) {
                    Ok(()) => {}
                    Err(CodecError::FrameTooLarge { frame_len, max, .. }) => {
                        return Err(SessionError::MessageTooLarge {
                            len: usize::try_from(frame_len).unwrap_or(usize::MAX),
                            max,
                        })
                    }
                    Err(e) => return Err(SessionError::Encode(e)),
                }
            }
        }
        Ok(buf.freeze())
    }

    fn push_control(&mut self, frame: Bytes, now: Instant) {
        self.queued_bytes += frame.len();
        self.control.push_back(frame);
        if self.write_since.is_none() {
            self.write_since = Some(now);
        }
    }

    /// Decodes every complete frame of the receive buffer; returns how many.
    fn decode_frames(&mut self, now: Instant, eof: bool) -> usize {
        let mut completed = 0;
        while self.state != State::Closed {
            let next = match &mut self.decoder {
                Decoder::Packet => return completed,
                Decoder::Raw(c) => {
                    let r = c.decode_frame(&mut self.rx);
                    match r {
                        Ok(None) if eof => c.decode_frame_eof(&mut self.rx),
                        r => r,
                    }
                    .map(|f| f.map(|f| (f, c.max_line_len(), beehive_codec::Framing::last_frame_offset(c))))
                }
                Decoder::Package(c) => {
                    let r = c.decode_frame(&mut self.rx);
                    match r {
                        Ok(None) if eof => c.decode_frame_eof(&mut self.rx),
                        r => r,
                    }
                    .map(|f| f.map(|f| (f, c.max_frame_len(), beehive_codec::Framing::last_frame_offset(c))))
                }
            };
            match next {
                Ok(None) => break,
                Ok(Some((payload, _, offset))) => {
                    completed += 1;
                    match beehive_model::from_slice(&payload) {
                        Ok(msg) => self.on_message(msg, now),
                        Err(source) => {
                            let e = CodecError::Json { offset, source };
                            let at = error::codec_offset(&e);
                            self.malformed(at, e);
                        }
                    }
                }
                Err(e) => {
                    let offset = error::codec_offset(&e);
                    tracing::warn!(session = %self.id, offset, error = %e, "malformed stream, closing");
                    self.close_with(CloseReason::Malformed { offset, error: e });
                }
            }
        }
        completed
    }

    fn malformed(&mut self, offset: u64, error: CodecError) {
        tracing::warn!(session = %self.id, offset, error = %error, "skipping a malformed frame");
        self.events.push_back(Event::Malformed { offset, error });
    }

    fn on_message(&mut self, msg: Message, now: Instant) {
        self.received += 1;
        match (&self.config.role, self.state) {
            (_, State::Closed) => {}
            (Role::Server { .. }, _) if is_handshake(&msg) => self.register_peer(msg, now),
            (Role::Server { .. }, State::Handshaking) => {
                self.close_with(CloseReason::NotRegistered { id: msg.id().to_owned() });
            }
            (Role::Server { .. }, _) => {
                // A response to a request sent here is taken whatever its
                // source (Go's server would drop the connection instead).
                let answers = !msg.parent_id().is_empty() && self.pending.contains_key(msg.parent_id());
                let allowed = answers || self.config.allowed.as_ref().is_none_or(|a| a.contains(msg.source()));
                if allowed {
                    self.classify(msg);
                } else {
                    let module = msg.source().to_owned();
                    self.close_with(CloseReason::SourceNotAllowed { module });
                }
            }
            (Role::Client { .. }, State::Handshaking)
                if !msg.parent_id().is_empty() && Some(msg.parent_id()) == self.handshake_id.as_deref() =>
            {
                self.complete_client(msg, now)
            }
            (Role::Client { .. }, _) => self.classify(msg),
        }
    }

    fn classify(&mut self, msg: Message) {
        let parent = msg.parent_id();
        if parent.is_empty() {
            self.events.push_back(Event::Message(msg));
        } else if let Some(deadline) = self.pending.remove(parent) {
            self.deadlines.remove(&(deadline, parent.to_owned()));
            self.events.push_back(Event::Response(msg));
        } else {
            self.events.push_back(Event::UnmatchedResponse(msg));
        }
    }

    /// Server side: the peer registers `msg.source()`.
    fn register_peer(&mut self, msg: Message, now: Instant) {
        let Role::Server { module: own } = &self.config.role else { return };
        let module = msg.source().to_owned();
        let allowed = !module.is_empty() && self.config.allowed.as_ref().is_none_or(|a| a.contains(&module));
        if !allowed {
            tracing::warn!(session = %self.id, module = %module, "refusing a module that is not allowed");
            self.close_with(CloseReason::HandshakeRefused(Refusal::NotAllowed { module }));
            return;
        }
        let local = self.local_modules();
        if *own == module || local.iter().any(|(m, _)| *m == module) {
            let taken = NameTaken { module, owner: self.id };
            self.close_with(CloseReason::HandshakeRefused(Refusal::NameTaken(taken)));
            return;
        }
        if let Some(registry) = &self.config.registry {
            if let Err(taken) = registry.claim(&module, self.id) {
                tracing::warn!(session = %self.id, module = %taken.module, owner = %taken.owner, "refusing a module name served by another session");
                self.close_with(CloseReason::HandshakeRefused(Refusal::NameTaken(taken)));
                return;
            }
        }
        // Go's answer: NewRespByMessage(msg, GetModuleExchange()) through
        // SendResp, which sets the destination to the source.
        let answer = msg.new_response(self.exchange(&local)).set_destination(module.as_str());
        match self.encode(&answer) {
            Ok(frame) => {
                // Repeated registrations from a peer that does not read its
                // answers must not grow the queue past its bound.
                let frames = self.control.len() + self.queue.len() + self.inflight.len();
                let bytes = self.outbound_queued();
                if frames >= self.config.max_queued_frames || bytes + frame.len() > self.config.max_queued_bytes {
                    self.close_with(CloseReason::OutboundOverflow { frames, bytes });
                    return;
                }
                self.push_control(frame, now)
            }
            Err(e) => {
                // Our own module list does not fit the peer's frame limit.
                tracing::error!(session = %self.id, error = %e, "cannot send the handshake answer");
                self.close_with(CloseReason::HandshakeRefused(Refusal::BadAnswer { reason: e.to_string() }));
                return;
            }
        }
        // Go: AddModule(module, conn) and AddModuleGroup(module, module).
        self.add_pipe(&module, Some(&module));
        let groups = self.modules.get(&module).cloned().unwrap_or_default();
        self.events.push_back(Event::Registered { module: module.clone(), groups });
        if self.state == State::Handshaking {
            self.state = State::Connected;
            self.peer_module = Some(module.clone());
            self.mark_writable(now);
            self.events.push_back(Event::Connected { module });
        }
    }

    /// The modules of this process: those configured, then the directory's.
    fn local_modules(&self) -> Vec<(String, String)> {
        let mut local = self.config.local_modules.clone();
        if let Some(directory) = &self.config.directory {
            local.extend(directory.list());
        }
        local
    }

    /// The server's module exchange: its own module first, in a group of its
    /// own name, then the other local modules.
    fn exchange(&self, local: &[(String, String)]) -> ModuleExchange {
        let mut modules = Vec::new();
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Role::Server { module } = &self.config.role {
            modules.push(module.clone());
            groups.entry(module.clone()).or_default().push(module.clone());
        }
        for (module, group) in local {
            if modules.contains(module) {
                continue;
            }
            modules.push(module.clone());
            groups.entry(group.clone()).or_default().push(module.clone());
        }
        ModuleExchange { modules: Some(modules), groups: Some(groups) }
    }

    /// Client side: the server answered the registration.
    fn complete_client(&mut self, msg: Message, now: Instant) {
        let Role::Client { module: own } = &self.config.role else { return };
        let own = own.clone();
        let exchange = match msg.content() {
            Content::ModuleExchange(m) => Some(m.clone()),
            Content::Null => Some(ModuleExchange::default()),
            other => other.as_value().and_then(ModuleExchange::from_value),
        };
        let Some(exchange) = exchange else {
            let reason = format!("content {:?}", msg.content());
            self.close_with(CloseReason::HandshakeRefused(Refusal::BadAnswer { reason }));
            return;
        };
        self.handshake_id = None;
        // Go: AddModule(own, conn) before the exchange; every listed module
        // but our own; every group member.
        self.add_pipe(&own, None);
        for name in exchange.modules.iter().flatten().filter(|n| **n != own && !n.is_empty()) {
            self.add_pipe(name, None);
        }
        for (group, members) in exchange.groups.iter().flatten() {
            for member in members {
                self.add_pipe(member, Some(group));
            }
        }
        let registered: Vec<Event> = self
            .modules
            .iter()
            .map(|(module, groups)| Event::Registered { module: module.clone(), groups: groups.clone() })
            .collect();
        self.events.extend(registered);
        self.state = State::Connected;
        self.peer_module = Some(own.clone());
        self.mark_writable(now);
        self.events.push_back(Event::Connected { module: own });
    }

    fn add_pipe(&mut self, module: &str, group: Option<&str>) {
        let groups = self.modules.entry(module.to_owned()).or_default();
        if let Some(group) = group {
            if !groups.iter().any(|g| g == group) {
                groups.push(group.to_owned());
            }
            let members = self.groups.entry(group.to_owned()).or_default();
            if !members.iter().any(|m| m == module) {
                members.push(module.to_owned());
            }
        }
    }

    /// The handshake completed: held frames may go out now.
    fn mark_writable(&mut self, now: Instant) {
        if self.write_since.is_none() && self.has_outbound() {
            self.write_since = Some(now);
        }
    }

    fn close_with(&mut self, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        tracing::debug!(session = %self.id, %reason, "session closed");
        self.state = State::Closed;
        self.rx = BytesMut::new();
        self.frame_started = None;
        self.control.clear();
        self.queue.clear();
        self.queued_bytes = 0;
        self.inflight.clear();
        self.inflight_bytes = 0;
        self.write_since = None;
        self.pending.clear();
        self.deadlines.clear();
        if let Some(registry) = &self.config.registry {
            registry.release_all(self.id);
        }
        self.events.push_back(Event::Closed { reason });
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(registry) = &self.config.registry {
            registry.release_all(self.id);
        }
    }
}
