//! The traits every context backend implements (Go's `ModuleContext` and
//! `MessageContext`), so the router reaches channel and socket modules alike.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use beehive_model::Message;

use crate::ContextError;

/// A boxed, sendable future (the async methods of the traits).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Go's default `send_sync` timeout, used when the timeout given is zero.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// A zero timeout means the default, as in Go.
pub fn effective_timeout(timeout: Duration) -> Duration {
    if timeout.is_zero() {
        DEFAULT_SYNC_TIMEOUT
    } else {
        timeout
    }
}

/// Delivers a broadcast to every member with `send` (each member in turn,
/// so successive broadcasts keep their order per member); the members it
/// could not reach make a [`ContextError::GroupDelivery`].
pub fn broadcast<T, E: std::fmt::Display>(
    group: &str,
    msg_id: &str,
    members: &[(String, T)],
    send: impl FnMut(&str, &T) -> Result<(), E>,
) -> Result<(), ContextError> {
    group_delivery(group, msg_id, failures(members, send))
}

/// Sends to every member in turn; the members `send` failed for, each
/// with the reason.
pub(crate) fn failures<T, E: std::fmt::Display>(
    members: &[(String, T)],
    mut send: impl FnMut(&str, &T) -> Result<(), E>,
) -> Vec<(String, String)> {
    members
        .iter()
        .filter_map(|(name, target)| send(name, target).err().map(|e| (name.clone(), e.to_string())))
        .collect()
}

/// The outcome of a broadcast: `Ok` when every member got the message,
/// else [`ContextError::GroupDelivery`] naming the members that did not
/// (`failed`: each member with the reason), for backends whose sends are
/// async and so cannot use [`broadcast`].
pub fn group_delivery(group: &str, msg_id: &str, failed: Vec<(String, String)>) -> Result<(), ContextError> {
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ContextError::GroupDelivery { group: group.to_owned(), msg_id: msg_id.to_owned(), failed })
    }
}

/// Module management (Go `ModuleContext`).
pub trait ModuleContext: Send + Sync {
    /// Registers a module (creates its inbox).
    fn add_module(&self, module: &str) -> Result<(), ContextError>;
    /// Adds a registered module to a group.
    fn add_module_group(&self, module: &str, group: &str) -> Result<(), ContextError>;
    /// Stops accepting messages for the module; its receivers get the
    /// messages already queued, then [`ContextError::Closed`].
    fn seal(&self, module: &str) -> Result<(), ContextError>;
    /// Removes the module and closes its inbox. Returns how many accepted
    /// messages were never received.
    fn cleanup(&self, module: &str) -> Result<usize, ContextError>;
}

/// Why [`MessageContext::offer`] (and [`Hive::offer`](crate::Hive::offer))
/// did not deliver.
#[derive(Debug)]
pub enum Offer {
    /// The inbox is full; here is the message back.
    Full(Message),
    /// Not delivered, for this reason (the message is gone).
    Failed(ContextError),
}

impl From<Offer> for ContextError {
    fn from(offer: Offer) -> Self {
        match offer {
            Offer::Full(msg) => ContextError::Full { module: msg.destination().to_owned() },
            Offer::Failed(e) => e,
        }
    }
}

/// Messaging (Go `MessageContext`), blocking and async.
pub trait MessageContext: Send + Sync {
    /// Delivers to the module's inbox, waiting for room.
    fn send(&self, module: &str, msg: Message) -> Result<(), ContextError>;
    /// Delivers only if there is room now.
    fn try_send(&self, module: &str, msg: Message) -> Result<(), ContextError>;
    /// Delivers, waiting at most `timeout` for room.
    fn send_timeout(&self, module: &str, msg: Message, timeout: Duration) -> Result<(), ContextError>;
    /// Delivers only if there is room now, giving the message back when
    /// the inbox is full (a relay keeps it and tries again later). The
    /// default gives nothing back: it is [`try_send`](Self::try_send).
    fn offer(&self, module: &str, msg: Message) -> Result<(), Offer> {
        self.try_send(module, msg).map_err(Offer::Failed)
    }
    /// [`send`](Self::send) for async code.
    fn send_async<'a>(&'a self, module: &'a str, msg: Message) -> BoxFuture<'a, Result<(), ContextError>>;
    /// The module's next message, waiting for one.
    fn receive(&self, module: &str) -> Result<Message, ContextError>;
    /// The module's next message, waiting at most `timeout` (`Ok(None)` on timeout).
    fn receive_timeout(&self, module: &str, timeout: Duration) -> Result<Option<Message>, ContextError>;
    /// [`receive`](Self::receive) for async code.
    fn receive_async<'a>(&'a self, module: &'a str) -> BoxFuture<'a, Result<Message, ContextError>>;
    /// Sends with `sync` set and waits for the response whose parent id is
    /// the request id. A zero timeout means 30 s.
    fn send_sync(&self, module: &str, msg: Message, timeout: Duration) -> Result<Message, ContextError>;
    /// [`send_sync`](Self::send_sync) for async code.
    fn send_sync_async<'a>(
        &'a self,
        module: &'a str,
        msg: Message,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Message, ContextError>>;
    /// Hands a response to the `send_sync` waiting for it.
    fn send_resp(&self, resp: Message) -> Result<(), ContextError>;
    /// [`send_resp`](Self::send_resp) for async code. The default runs the
    /// blocking call; a backend whose delivery can wait overrides it.
    fn send_resp_async<'a>(&'a self, resp: Message) -> BoxFuture<'a, Result<(), ContextError>> {
        Box::pin(async move { self.send_resp(resp) })
    }
    /// Delivers to every member of the group, in order per member.
    fn send_to_group(&self, group: &str, msg: Message) -> Result<(), ContextError>;
    /// [`send_to_group`](Self::send_to_group) for async code. The default
    /// runs the blocking call; a backend whose delivery can wait overrides
    /// it (the channel backend does).
    fn send_to_group_async<'a>(&'a self, group: &'a str, msg: Message) -> BoxFuture<'a, Result<(), ContextError>> {
        Box::pin(async move { self.send_to_group(group, msg) })
    }
    /// Delivers to every member and waits for one response from each.
    fn send_to_group_sync(&self, group: &str, msg: Message, timeout: Duration) -> Result<Vec<Message>, ContextError>;
}

/// A complete backend.
pub trait Backend: ModuleContext + MessageContext {
    /// Its context type (`channel`, `unixpacket`).
    fn context_type(&self) -> &str;
}
