//! The socket backend of the hive (context type `unixpacket`): the pipe
//! store (module → connection), groups of remote modules, local inboxes for
//! messages arriving from connections, and the sync keeper.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use beehive_context::{
    effective_timeout, Backend, BoxFuture, ChannelContext, ContextError, MessageContext, ModuleContext, SyncKeeper,
};
use beehive_model::Message;

use crate::config::UNIXPACKET;
use crate::conn::Connection;

type Members = Vec<(String, Arc<Connection>)>;

/// Remote modules reached over sockets, behind the same traits as the
/// in-process backend, so `Hive::send("edged", ..)` reaches a module in
/// another process.
///
/// Sends to a remote module set `type` to `unixpacket` and `destination` to
/// the module, as Go does; a broadcast sets only `destination` (Go's
/// `SendToGroup` leaves the type alone). Waiters are registered before a
/// request is written, and responses read from any connection are handed to
/// them first, on servers and clients alike (Go's server never looks at its
/// keeper, so its `SendSync` always times out).
#[derive(Debug, Default)]
pub struct SocketContext {
    local: ChannelContext,
    pipes: RwLock<HashMap<String, Arc<Connection>>>,
    /// Every module ever reached through a connection: while it has no
    /// connection, sends to it fail instead of being queued locally.
    remote: RwLock<std::collections::HashSet<String>>,
    /// Where responses go whose source is not a known remote module (a
    /// client's connection to its server: the request came from there).
    default_pipe: RwLock<Option<Arc<Connection>>>,
    groups: RwLock<HashMap<String, Members>>,
    keeper: SyncKeeper,
}

fn unknown(module: &str) -> ContextError {
    ContextError::UnknownModule { module: module.to_owned() }
}

fn disconnected(module: &str) -> ContextError {
    ContextError::Closed { module: format!("{module} (not connected)") }
}

fn send_error(module: &str, e: crate::SocketError) -> ContextError {
    tracing::warn!(module, error = %e, "socket send failed");
    ContextError::Closed { module: format!("{module} ({e})") }
}

impl SocketContext {
    /// An empty socket context.
    pub fn new() -> Self {
        SocketContext::default()
    }

    fn pipe(&self, module: &str) -> Option<Arc<Connection>> {
        self.pipes.read().unwrap_or_else(|e| e.into_inner()).get(module).cloned()
    }

    /// Routes `module` to `conn` (Go's pipe store `Add`).
    pub(crate) fn register_pipe(&self, module: &str, conn: &Arc<Connection>) {
        self.remote.write().unwrap_or_else(|e| e.into_inner()).insert(module.to_owned());
        self.pipes.write().unwrap_or_else(|e| e.into_inner()).insert(module.to_owned(), Arc::clone(conn));
    }

    /// Adds `module` on `conn` to `group` (Go's pipe store `AddGroup`).
    pub(crate) fn register_pipe_group(&self, module: &str, group: &str, conn: &Arc<Connection>) {
        let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
        let members = groups.entry(group.to_owned()).or_default();
        members.retain(|(m, _)| m != module);
        members.push((module.to_owned(), Arc::clone(conn)));
    }

    /// Sends responses with an unknown source through `conn` (set by a
    /// client for its server connection).
    pub(crate) fn set_default_pipe(&self, conn: Option<&Arc<Connection>>) {
        *self.default_pipe.write().unwrap_or_else(|e| e.into_inner()) = conn.cloned();
    }

    /// Forgets every module reached through connection `id` (it closed).
    pub(crate) fn remove_connection(&self, id: u64) {
        {
            let mut d = self.default_pipe.write().unwrap_or_else(|e| e.into_inner());
            if d.as_ref().is_some_and(|c| c.id() == id) {
                *d = None;
            }
        }
        self.pipes.write().unwrap_or_else(|e| e.into_inner()).retain(|_, c| c.id() != id);
        let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
        for members in groups.values_mut() {
            members.retain(|(_, c)| c.id() != id);
        }
        groups.retain(|_, m| !m.is_empty());
    }

    /// Remote modules currently reachable, sorted.
    pub fn remote_modules(&self) -> Vec<String> {
        let mut v: Vec<String> = self.pipes.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        v.sort();
        v
    }

    #[doc(hidden)]
    pub fn offer_response(&self, msg: Message) -> Option<Message> {
        if msg.parent_id().is_empty() || !self.keeper.is_waiting(msg.parent_id()) {
            return Some(msg);
        }
        match self.keeper.deliver(msg) {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, "late response dropped");
                None
            }
        }
    }

    /// Queues a message read from a connection for local module `module`.
    pub(crate) fn deliver_local(&self, module: &str, msg: Message) -> Result<(), ContextError> {
        self.local.send(module, msg)
    }

    /// Writes a sync request to `conn` after registering its waiter, and
    /// waits for the response (used by the handshake, which Go sends without
    /// a destination).
    #[doc(hidden)]
    pub fn request(&self, conn: &Connection, msg: Message, timeout: Duration) -> Result<Message, crate::SocketError> {
        self.keeper.request(
            msg,
            timeout,
            |msg, _, _| conn.send(&msg),
            |slot, deadline| conn.await_responses(slot, deadline),
        )
    }

    fn is_remote(&self, module: &str) -> bool {
        self.remote.read().unwrap_or_else(|e| e.into_inner()).contains(module)
    }

    fn to_remote(msg: Message, module: &str) -> Message {
        msg.set_type(UNIXPACKET).set_destination(module)
    }
}

impl ModuleContext for SocketContext {
    fn add_module(&self, module: &str) -> Result<(), ContextError> {
        // Every module of this backend gets a local inbox: messages read from
        // its connection are queued there for `receive`.
        match self.local.add_module(module) {
            Ok(()) | Err(ContextError::DuplicateModule { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn add_module_group(&self, module: &str, group: &str) -> Result<(), ContextError> {
        if let Some(conn) = self.pipe(module) {
            self.register_pipe_group(module, group, &conn);
        }
        self.local.add_module_group(module, group)
    }

    fn seal(&self, module: &str) -> Result<(), ContextError> {
        self.local.seal(module)
    }

    fn cleanup(&self, module: &str) -> Result<usize, ContextError> {
        if let Some(conn) = self.pipes.write().unwrap_or_else(|e| e.into_inner()).remove(module) {
            conn.close();
        }
        self.local.cleanup(module)
    }
}

impl MessageContext for SocketContext {
    fn send(&self, module: &str, msg: Message) -> Result<(), ContextError> {
        match self.pipe(module) {
            Some(conn) => conn.send(&Self::to_remote(msg, module)).map_err(|e| send_error(module, e)),
            None if self.is_remote(module) => Err(disconnected(module)),
            None => self.local.send(module, msg),
        }
    }

    fn try_send(&self, module: &str, msg: Message) -> Result<(), ContextError> {
        match self.pipe(module) {
            Some(_) => self.send(module, msg),
            None if self.is_remote(module) => Err(disconnected(module)),
            None => self.local.try_send(module, msg),
        }
    }

    fn send_timeout(&self, module: &str, msg: Message, timeout: Duration) -> Result<(), ContextError> {
        match self.pipe(module) {
            Some(_) => self.send(module, msg),
            None if self.is_remote(module) => Err(disconnected(module)),
            None => self.local.send_timeout(module, msg, timeout),
        }
    }

    fn send_async<'a>(&'a self, module: &'a str, msg: Message) -> BoxFuture<'a, Result<(), ContextError>> {
        match self.pipe(module) {
            Some(_) => Box::pin(async move { self.send(module, msg) }),
            None if self.is_remote(module) => Box::pin(async move { Err(disconnected(module)) }),
            None => self.local.send_async(module, msg),
        }
    }

    fn receive(&self, module: &str) -> Result<Message, ContextError> {
        self.local.receive(module)
    }

    fn receive_timeout(&self, module: &str, timeout: Duration) -> Result<Option<Message>, ContextError> {
        self.local.receive_timeout(module, timeout)
    }

    fn receive_async<'a>(&'a self, module: &'a str) -> BoxFuture<'a, Result<Message, ContextError>> {
        self.local.receive_async(module)
    }

    fn send_sync(&self, module: &str, msg: Message, timeout: Duration) -> Result<Message, ContextError> {
        let Some(conn) = self.pipe(module) else {
            if self.is_remote(module) {
                return Err(disconnected(module));
            }
            return self.local.send_sync(module, msg, timeout);
        };
        self.keeper.request(
            Self::to_remote(msg, module),
            timeout,
            |msg, _, _| conn.send(&msg).map_err(|e| send_error(module, e)),
            |slot, deadline| conn.await_responses(slot, deadline),
        )
    }

    fn send_sync_async<'a>(
        &'a self,
        module: &'a str,
        msg: Message,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Message, ContextError>> {
        match self.pipe(module) {
            // The wait is short in practice; a blocking wait keeps one code path.
            Some(_) => Box::pin(async move { self.send_sync(module, msg, timeout) }),
            None => self.local.send_sync_async(module, msg, timeout),
        }
    }

    fn send_resp(&self, resp: Message) -> Result<(), ContextError> {
        // Go sends a response to the module named by its source (the module
        // that sent the request), with that module as destination.
        let source = resp.source().to_owned();
        if let Some(conn) = self.pipe(&source) {
            let resp = resp.set_destination(source.as_str());
            return conn.send(&resp).map_err(|e| send_error(&source, e));
        }
        if self.keeper.is_waiting(resp.parent_id()) {
            return self.keeper.deliver(resp);
        }
        // A request from a module the peer did not list (Go's client panics
        // here): answer through the connection it came from.
        let fallback = self.default_pipe.read().unwrap_or_else(|e| e.into_inner()).clone();
        match fallback {
            Some(conn) => conn.send(&resp.set_destination(source.as_str())).map_err(|e| send_error(&source, e)),
            None => Err(ContextError::NoWaiter { parent_id: resp.parent_id().to_owned() }),
        }
    }

    fn send_to_group(&self, group: &str, msg: Message) -> Result<(), ContextError> {
        let members = self.groups.read().unwrap_or_else(|e| e.into_inner()).get(group).cloned();
        let Some(members) = members else { return self.local.send_to_group(group, msg) };
        beehive_context::broadcast(group, msg.id(), &members, |module, conn| {
            conn.send(&msg.clone().set_destination(module))
        })
    }

    fn send_to_group_sync(&self, group: &str, msg: Message, timeout: Duration) -> Result<Vec<Message>, ContextError> {
        let members = self.groups.read().unwrap_or_else(|e| e.into_inner()).get(group).cloned();
        let Some(members) = members else { return self.local.send_to_group_sync(group, msg, timeout) };
        if members.is_empty() {
            return Err(unknown(group));
        }
        let timeout = effective_timeout(timeout);
        // Unlike a plain broadcast (Go leaves the type alone), a synchronous
        // one carries the type, so the members' answers route back here.
        let msg = msg.set_sync(true).set_type(UNIXPACKET);
        let names: Vec<String> = members.iter().map(|(m, _)| m.clone()).collect();
        self.keeper.group_sync(group, msg.id(), &names, timeout, |name, _| {
            members
                .iter()
                .find(|(m, _)| m == name)
                .is_some_and(|(m, conn)| conn.send(&msg.clone().set_destination(m.as_str())).is_ok())
        })
    }
}

impl Backend for SocketContext {
    fn context_type(&self) -> &str {
        UNIXPACKET
    }
}
