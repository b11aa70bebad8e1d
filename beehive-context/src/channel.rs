//! The in-process backend (Go's channel context).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use beehive_model::{constants, Message};
use rustc_hash::FxHashMap as HashMap;

use crate::backend::{effective_timeout, Backend, BoxFuture, MessageContext, ModuleContext, Offer};
use crate::inbox::Inbox;
use crate::keeper::SyncKeeper;
use crate::spin::SpinBudget;
use crate::ContextError;

/// Default inbox capacity (Go's `ChannelSizeDefault`).
pub const DEFAULT_INBOX_CAPACITY: usize = 1024;

type Members = Arc<Vec<(String, Arc<Inbox>)>>;

/// In-process modules: one bounded inbox per module, groups of modules, and
/// a sync keeper for request/response.
///
/// Lookups by name read an immutable snapshot of the module and group
/// tables (swapped atomically when a module is added or removed), so
/// senders and receivers never contend on a lock.
pub struct ChannelContext {
    capacity: usize,
    spin: SpinBudget,
    modules: ArcSwap<HashMap<String, Arc<Inbox>>>,
    groups: ArcSwap<HashMap<String, Members>>,
    /// Modules that were cleaned up, so their names report `Closed`.
    closed: ArcSwap<HashMap<String, ()>>,
    keeper: SyncKeeper,
    /// Serialises changes to the tables.
    write: Mutex<()>,
}

impl std::fmt::Debug for ChannelContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelContext")
            .field("capacity", &self.capacity)
            .field("modules", &self.modules.load().keys().collect::<Vec<_>>())
            .field("groups", &self.groups.load().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for ChannelContext {
    fn default() -> Self {
        ChannelContext::new()
    }
}

impl ChannelContext {
    /// A context whose inboxes hold [`DEFAULT_INBOX_CAPACITY`] messages.
    pub fn new() -> Self {
        ChannelContext::with_capacity(DEFAULT_INBOX_CAPACITY)
    }

    /// A context whose inboxes hold `capacity` messages.
    pub fn with_capacity(capacity: usize) -> Self {
        ChannelContext::with_options(capacity, SpinBudget::DEFAULT)
    }

    /// A context whose inboxes hold `capacity` messages and whose waiting
    /// receivers, senders and requesters poll for `spin` before parking.
    pub fn with_options(capacity: usize, spin: SpinBudget) -> Self {
        ChannelContext {
            capacity: capacity.max(1),
            spin,
            modules: ArcSwap::from_pointee(HashMap::default()),
            groups: ArcSwap::from_pointee(HashMap::default()),
            closed: ArcSwap::from_pointee(HashMap::default()),
            keeper: SyncKeeper::with_spin(spin),
            write: Mutex::new(()),
        }
    }

    /// How long a waiting thread polls before it parks.
    pub fn spin(&self) -> SpinBudget {
        self.spin
    }

    fn missing(&self, module: &str) -> ContextError {
        if self.closed.load().contains_key(module) {
            ContextError::Closed { module: module.to_owned() }
        } else {
            ContextError::UnknownModule { module: module.to_owned() }
        }
    }

    fn inbox(&self, module: &str) -> Result<Arc<Inbox>, ContextError> {
        match self.modules.load().get(module) {
            Some(inbox) => Ok(Arc::clone(inbox)),
            None => Err(self.missing(module)),
        }
    }

    /// The module's inbox, for the router's fast path.
    pub(crate) fn inbox_handle(&self, module: &str) -> Option<Arc<Inbox>> {
        self.modules.load().get(module).cloned()
    }

    /// Runs `f` on the module's inbox without cloning its handle (no shared
    /// reference count is touched on the hot path).
    fn with_inbox<R>(&self, module: &str, f: impl FnOnce(&Inbox) -> R) -> Result<R, ContextError> {
        match self.modules.load().get(module) {
            Some(inbox) => Ok(f(inbox)),
            None => Err(self.missing(module)),
        }
    }

    fn members(&self, group: &str) -> Result<Members, ContextError> {
        match self.groups.load().get(group) {
            Some(m) if !m.is_empty() => Ok(Arc::clone(m)),
            _ => Err(ContextError::UnknownGroup { group: group.to_owned() }),
        }
    }

    /// Runs `f` on the members of a group without cloning the list's
    /// handle; a group whose members were all cleaned up is empty.
    fn with_members<R>(
        &self,
        group: &str,
        f: impl FnOnce(&[(String, Arc<Inbox>)]) -> Result<R, ContextError>,
    ) -> Result<R, ContextError> {
        match self.groups.load().get(group) {
            Some(m) => f(m),
            None => Err(ContextError::UnknownGroup { group: group.to_owned() }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The modules registered, sorted.
    pub fn modules(&self) -> Vec<String> {
        let mut v: Vec<String> = self.modules.load().keys().cloned().collect();
        v.sort();
        v
    }

    /// The members of a group, in the order they were added.
    pub fn group_members(&self, group: &str) -> Vec<String> {
        self.groups.load().get(group).map(|m| m.iter().map(|(n, _)| n.clone()).collect()).unwrap_or_default()
    }

    /// Messages waiting in a module's inbox.
    pub fn queued(&self, module: &str) -> Result<usize, ContextError> {
        Ok(self.inbox(module)?.len())
    }

    /// Requests waiting for a response.
    pub fn pending_requests(&self) -> usize {
        self.keeper.pending()
    }

    /// True when a request with this id waits for its response here.
    pub fn is_waiting(&self, msg_id: &str) -> bool {
        self.keeper.is_waiting(msg_id)
    }

    fn sync_request(msg: Message) -> Message {
        msg.set_sync(true)
    }
}

impl ModuleContext for ChannelContext {
    fn add_module(&self, module: &str) -> Result<(), ContextError> {
        let _w = self.lock();
        let current = self.modules.load();
        if current.contains_key(module) {
            return Err(ContextError::DuplicateModule { module: module.to_owned() });
        }
        let mut next = HashMap::clone(&current);
        next.insert(module.to_owned(), Arc::new(Inbox::new(module, self.capacity, self.spin)));
        self.modules.store(Arc::new(next));
        let closed = self.closed.load();
        if closed.contains_key(module) {
            let mut c = HashMap::clone(&closed);
            c.remove(module);
            self.closed.store(Arc::new(c));
        }
        Ok(())
    }

    fn add_module_group(&self, module: &str, group: &str) -> Result<(), ContextError> {
        let _w = self.lock();
        let inbox = self.inbox(module)?;
        let mut groups = HashMap::clone(&self.groups.load());
        let members = groups.entry(group.to_owned()).or_default();
        if !members.iter().any(|(n, _)| n == module) {
            let mut m = Vec::clone(members);
            m.push((module.to_owned(), inbox));
            *members = Arc::new(m);
        }
        self.groups.store(Arc::new(groups));
        Ok(())
    }

    fn seal(&self, module: &str) -> Result<(), ContextError> {
        self.inbox(module)?.seal();
        Ok(())
    }

    fn cleanup(&self, module: &str) -> Result<usize, ContextError> {
        let inbox = {
            let _w = self.lock();
            let inbox = self.inbox(module)?;
            let mut modules = HashMap::clone(&self.modules.load());
            modules.remove(module);
            self.modules.store(Arc::new(modules));
            let mut groups = HashMap::clone(&self.groups.load());
            for members in groups.values_mut() {
                if members.iter().any(|(n, _)| n == module) {
                    *members = Arc::new(members.iter().filter(|(n, _)| n != module).cloned().collect());
                }
            }
            groups.retain(|_, m| !m.is_empty());
            self.groups.store(Arc::new(groups));
            let mut closed = HashMap::clone(&self.closed.load());
            closed.insert(module.to_owned(), ());
            self.closed.store(Arc::new(closed));
            inbox
        };
        let dropped = inbox.close();
        if dropped > 0 {
            tracing::warn!(module, dropped, "module cleaned up with undelivered messages");
        }
        Ok(dropped)
    }
}

impl MessageContext for ChannelContext {
    fn send(&self, module: &str, msg: Message) -> Result<(), ContextError> {
        self.with_inbox(module, |inbox| inbox.send(msg))?
    }

    fn try_send(&self, module: &str, msg: Message) -> Result<(), ContextError> {
        self.with_inbox(module, |inbox| inbox.try_send(msg))?
    }

    fn offer(&self, module: &str, msg: Message) -> Result<(), Offer> {
        match self.with_inbox(module, |inbox| inbox.offer(msg)) {
            Ok(r) => r,
            Err(e) => Err(Offer::Failed(e)),
        }
    }

    fn send_timeout(&self, module: &str, msg: Message, timeout: Duration) -> Result<(), ContextError> {
        self.inbox(module)?.send_deadline(msg, None, Instant::now() + timeout, timeout)
    }

    fn send_async<'a>(&'a self, module: &'a str, msg: Message) -> BoxFuture<'a, Result<(), ContextError>> {
        Box::pin(async move { self.inbox(module)?.send_async(msg, None).await })
    }

    fn receive(&self, module: &str) -> Result<Message, ContextError> {
        self.with_inbox(module, Inbox::recv)?
    }

    fn receive_timeout(&self, module: &str, timeout: Duration) -> Result<Option<Message>, ContextError> {
        self.inbox(module)?.recv_deadline(Instant::now() + timeout)
    }

    fn receive_async<'a>(&'a self, module: &'a str) -> BoxFuture<'a, Result<Message, ContextError>> {
        Box::pin(async move { self.inbox(module)?.recv_async().await })
    }

    fn send_sync(&self, module: &str, msg: Message, timeout: Duration) -> Result<Message, ContextError> {
        let inbox = self.inbox(module)?;
        self.keeper.request(
            msg,
            timeout,
            |msg, slot, deadline, timeout| inbox.send_deadline(msg, Some(slot), deadline, timeout),
            |slot, deadline| slot.wait_one(deadline),
        )
    }

    fn send_sync_async<'a>(
        &'a self,
        module: &'a str,
        msg: Message,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Message, ContextError>> {
        Box::pin(async move {
            let timeout = effective_timeout(timeout);
            let deadline = tokio::time::Instant::now() + timeout;
            let inbox = self.inbox(module)?;
            let msg = Self::sync_request(msg);
            let reg = self.keeper.register(msg.id(), 1)?;
            let msg_id = || reg.slot.id().to_owned();
            match tokio::time::timeout_at(deadline, inbox.send_async(msg, Some(&reg.slot))).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(ContextError::SendTimeout { module: module.to_owned(), msg_id: msg_id(), timeout })
                }
            }
            let _ = tokio::time::timeout_at(deadline, reg.slot.wait_async()).await;
            reg.close_one().ok_or_else(|| ContextError::ResponseTimeout { msg_id: msg_id(), timeout })
        })
    }

    fn send_resp(&self, resp: Message) -> Result<(), ContextError> {
        self.keeper.deliver(resp)
    }

    fn send_to_group(&self, group: &str, msg: Message) -> Result<(), ContextError> {
        self.with_members(group, |members| {
            let Some(((last_name, last), rest)) = members.split_last() else {
                // Every member was cleaned up: as for a group never made.
                return Err(ContextError::UnknownGroup { group: group.to_owned() });
            };
            let mut failed = crate::backend::failures(rest, |_, inbox| inbox.send(msg.clone()));
            if !failed.is_empty() {
                if let Err(e) = last.send(msg.clone()) {
                    failed.push((last_name.clone(), e.to_string()));
                }
                return crate::backend::group_delivery(group, msg.id(), failed);
            }
            // Every member so far has its copy: the last one gets the
            // message itself, a clone and a drop less on the reference
            // count that every receiver writes too. Refused, it comes back
            // to name the message in the error.
            match last.send_or_return(msg) {
                Ok(()) => Ok(()),
                Err((e, msg)) => {
                    crate::backend::group_delivery(group, msg.id(), vec![(last_name.clone(), e.to_string())])
                }
            }
        })
    }

    fn send_to_group_async<'a>(&'a self, group: &'a str, msg: Message) -> BoxFuture<'a, Result<(), ContextError>> {
        Box::pin(async move {
            let members = self.members(group)?;
            let mut failed = Vec::new();
            for (name, inbox) in members.iter() {
                if let Err(e) = inbox.send_async(msg.clone(), None).await {
                    failed.push((name.clone(), e.to_string()));
                }
            }
            crate::backend::group_delivery(group, msg.id(), failed)
        })
    }

    fn send_to_group_sync(&self, group: &str, msg: Message, timeout: Duration) -> Result<Vec<Message>, ContextError> {
        let timeout = effective_timeout(timeout);
        let members = self.members(group)?;
        let msg = Self::sync_request(msg);
        let names: Vec<String> = members.iter().map(|(n, _)| n.clone()).collect();
        self.keeper.group_sync(group, msg.id(), &names, timeout, |name, slot, deadline| {
            members
                .iter()
                .find(|(n, _)| n == name)
                .is_some_and(|(_, inbox)| inbox.send_deadline(msg.clone(), Some(slot), deadline, timeout).is_ok())
        })
    }
}

impl Backend for ChannelContext {
    fn context_type(&self) -> &str {
        constants::MSG_CTX_TYPE_CHANNEL
    }
}
