//! The hive: the context router (Go's global context) and the module
//! lifecycle (Go's `core` package), as a value instead of a singleton.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use beehive_model::{constants, Message};
use futures_util::FutureExt as _;
use rustc_hash::FxHashMap as HashMap;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, Offer};
use crate::channel::{ChannelContext, DEFAULT_INBOX_CAPACITY};
use crate::inbox::Inbox;
use crate::module::{AsyncModule, Module, ModuleError, Next, Restarts};
use crate::route_cache;
use crate::spin::SpinBudget;
use crate::ContextError;

type BackendMap = HashMap<String, Arc<dyn Backend>>;
type ModuleMap = HashMap<String, Route>;

/// Where one module's messages go, as [`Hive::with_route`] finds it.
enum Target<'a> {
    Inbox(&'a Arc<Inbox>),
    Backend(&'a Arc<dyn Backend>),
}

/// Where a module's messages go. For modules of the built-in channel
/// backend the inbox itself is kept, so the hot path is one table lookup
/// (none when the thread's route cache has the route, see `route_cache`).
#[derive(Clone)]
struct Route {
    backend: Arc<dyn Backend>,
    inbox: Option<Arc<Inbox>>,
}

/// A registered module, blocking or async.
#[derive(Clone)]
enum Kind {
    Blocking(Arc<dyn Module>),
    Async(Arc<dyn AsyncModule>),
}

impl Kind {
    fn name(&self) -> &str {
        match self {
            Kind::Blocking(m) => m.name(),
            Kind::Async(m) => m.name(),
        }
    }

    fn group(&self) -> &str {
        match self {
            Kind::Blocking(m) => m.group(),
            Kind::Async(m) => m.group(),
        }
    }
}

struct Registered {
    module: Kind,
    context_type: String,
}

/// A started module: its thread, or its task on the runtime.
enum Running {
    Thread(JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

impl Running {
    fn is_finished(&self) -> bool {
        match self {
            Running::Thread(h) => h.is_finished(),
            Running::Task(h) => h.is_finished(),
        }
    }
}

#[derive(Default)]
struct Registry {
    modules: Vec<Registered>,
    disabled: Vec<String>,
    running: Vec<(String, Running)>,
}

struct Inner {
    /// Backends by context type.
    backends: ArcSwap<BackendMap>,
    /// The built-in in-process backend.
    channel: Arc<ChannelContext>,
    /// Module name to its route.
    module_backend: ArcSwap<ModuleMap>,
    /// This hive's id in the per-thread route cache.
    id: u64,
    /// Bumped after every change of `module_backend`: a thread's cached
    /// route is good while this is what it was when the route was read.
    generation: AtomicU64,
    /// Group name to its backend.
    group_backend: ArcSwap<BackendMap>,
    write: Mutex<()>,
    cancel: CancellationToken,
    stopped: (Mutex<bool>, Condvar),
    registry: Mutex<Registry>,
    /// Where async modules run (else the runtime `start` is called from).
    runtime: Option<tokio::runtime::Handle>,
}

/// The module bus of one process: backends by context type, the routing of
/// module and group names to them, and the registered modules.
///
/// `Hive` is a cheap handle (`Clone` shares it). Every operation routes to
/// the backend of the named module (`send_resp` by the message's `type`,
/// empty meaning `channel`), so in-process and remote modules are reached
/// the same way.
///
/// ```
/// use beehive_context::Hive;
/// use beehive_model::Message;
/// use std::time::Duration;
///
/// let hive = Hive::new();
/// hive.add_module("echo", "channel").unwrap();
/// let echo = hive.clone();
/// std::thread::spawn(move || {
///     let req = echo.receive("echo").unwrap();
///     echo.send_resp(req.new_response("pong")).unwrap();
/// });
/// let resp = hive.send_sync("echo", Message::new("").fill_body("ping"), Duration::from_secs(5)).unwrap();
/// assert_eq!(resp.content().as_str(), Some("pong"));
/// ```
#[derive(Clone)]
pub struct Hive {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hive")
            .field("backends", &self.inner.backends.load().keys().collect::<Vec<_>>())
            .field("modules", &self.inner.module_backend.load().keys().collect::<Vec<_>>())
            .field("cancelled", &self.inner.cancel.is_cancelled())
            .finish()
    }
}

impl Default for Hive {
    fn default() -> Self {
        Hive::new()
    }
}

/// Settings of a new [`Hive`].
///
/// ```
/// use std::time::Duration;
/// use beehive_context::{Hive, SpinBudget};
///
/// let hive = Hive::builder()
///     .channel_capacity(4096)
///     .spin(SpinBudget::OFF)
///     .build();
/// # drop(hive);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HiveBuilder {
    channel_capacity: usize,
    spin: SpinBudget,
    runtime: Option<tokio::runtime::Handle>,
}

impl Default for HiveBuilder {
    fn default() -> Self {
        HiveBuilder { channel_capacity: DEFAULT_INBOX_CAPACITY, spin: SpinBudget::DEFAULT, runtime: None }
    }
}

impl HiveBuilder {
    /// How many messages each `channel` inbox holds (default 1024, Go's
    /// `ChannelSizeDefault`; at least 1).
    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.channel_capacity = capacity;
        self
    }

    /// How long a waiting receiver, sender or `send_sync` caller polls
    /// before it parks (see [`SpinBudget`]).
    pub fn spin(mut self, spin: SpinBudget) -> Self {
        self.spin = spin;
        self
    }

    /// The tokio runtime that runs the async modules (see
    /// [`AsyncModule`]); without one, [`Hive::start`] uses the runtime it is
    /// called from.
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// The hive, with its `channel` backend installed.
    pub fn build(self) -> Hive {
        Hive::from_builder(self)
    }
}

/// What [`Hive::shutdown`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Modules whose `start` returned before the deadline.
    pub stopped: Vec<String>,
    /// Modules still running at the deadline (their threads are left behind).
    pub not_stopped: Vec<String>,
    /// Modules that had accepted messages nobody received, with the count.
    pub undelivered: Vec<(String, usize)>,
}

/// Counts a failed operation in `beehive_errors_total` (the check is all
/// a success costs).
#[inline(always)]
fn counted<T>(result: Result<T, ContextError>) -> Result<T, ContextError> {
    if let Err(e) = &result {
        crate::metrics::error(e);
    }
    result
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn panic_error(payload: Box<dyn std::any::Any + Send>) -> ModuleError {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "module panicked".to_owned());
    format!("panic: {text}").into()
}

impl Hive {
    /// A hive with the in-process `channel` backend (inboxes of 1024).
    pub fn new() -> Self {
        Hive::with_channel_capacity(DEFAULT_INBOX_CAPACITY)
    }

    /// A hive whose `channel` inboxes hold `capacity` messages.
    pub fn with_channel_capacity(capacity: usize) -> Self {
        Hive::builder().channel_capacity(capacity).build()
    }

    /// A builder for a hive with other settings than [`Hive::new`]'s.
    pub fn builder() -> HiveBuilder {
        HiveBuilder::default()
    }

    fn from_builder(b: HiveBuilder) -> Self {
        let channel = Arc::new(ChannelContext::with_options(b.channel_capacity, b.spin));
        let hive = Hive {
            inner: Arc::new(Inner {
                channel: Arc::clone(&channel),
                backends: ArcSwap::from_pointee(HashMap::default()),
                module_backend: ArcSwap::from_pointee(HashMap::default()),
                id: route_cache::new_hive_id(),
                generation: AtomicU64::new(0),
                group_backend: ArcSwap::from_pointee(HashMap::default()),
                write: Mutex::new(()),
                cancel: CancellationToken::new(),
                stopped: (Mutex::new(false), Condvar::new()),
                registry: Mutex::new(Registry::default()),
                runtime: b.runtime,
            }),
        };
        hive.add_backend(channel);
        hive
    }

    /// Installs a backend under its context type (replacing one of that type).
    pub fn add_backend(&self, backend: Arc<dyn Backend>) {
        let _w = lock(&self.inner.write);
        let mut map = HashMap::clone(&self.inner.backends.load());
        map.insert(backend.context_type().to_owned(), backend);
        self.inner.backends.store(Arc::new(map));
    }

    /// The backend of a context type.
    pub fn backend(&self, context_type: &str) -> Result<Arc<dyn Backend>, ContextError> {
        self.inner
            .backends
            .load()
            .get(context_type)
            .cloned()
            .ok_or_else(|| ContextError::UnknownContextType { context_type: context_type.to_owned() })
    }

    fn route(&self, module: &str) -> Result<Arc<dyn Backend>, ContextError> {
        self.inner
            .module_backend
            .load()
            .get(module)
            .map(|r| Arc::clone(&r.backend))
            .ok_or_else(|| ContextError::UnknownModule { module: module.to_owned() })
    }

    /// Runs `inbox` on the module's inbox when it is an in-process module,
    /// `other` on its backend otherwise; no handle is cloned.
    #[inline]
    fn dispatch<T, R>(
        &self,
        module: &str,
        arg: T,
        inbox: impl FnOnce(&Inbox, T) -> Result<R, ContextError>,
        other: impl FnOnce(&dyn Backend, T) -> Result<R, ContextError>,
    ) -> Result<R, ContextError> {
        // The error is boxed while it travels back through the route
        // cache's closures: a result of a word or two is returned in
        // registers, where a whole `ContextError` would be copied through
        // the stack at every level (and in W1 those copies, 16-byte loads of
        // 8-byte stores the CPU cannot forward, cost more than the queue).
        self.with_route(
            module,
            #[inline(always)]
            |route| match route {
                Some(Target::Inbox(i)) => inbox(i, arg).map_err(Box::new),
                Some(Target::Backend(b)) => other(&**b, arg).map_err(Box::new),
                None => Err(Box::new(ContextError::UnknownModule { module: module.to_owned() })),
            },
        )
        .map_err(|e| *e)
    }

    /// Runs `f` on where `module`'s messages go (`None`: an unknown module).
    /// An in-process module's inbox comes from this thread's route cache
    /// when it holds this hive's current route, else from the table, and is
    /// then remembered.
    #[inline]
    fn with_route<R>(&self, module: &str, f: impl FnOnce(Option<Target<'_>>) -> R) -> R {
        let generation = self.inner.generation.load(Ordering::Acquire);
        let mut f = Some(f);
        let cached = route_cache::with(self.inner.id, generation, module, |i| {
            (f.take().expect("called once"))(Some(Target::Inbox(i)))
        });
        if let Some(done) = cached {
            return done;
        }
        let f = f.take().expect("not called on a miss");
        match self.inner.module_backend.load().get(module) {
            Some(Route { inbox: Some(i), .. }) => {
                route_cache::remember(self.inner.id, generation, module, i);
                f(Some(Target::Inbox(i)))
            }
            Some(r) => f(Some(Target::Backend(&r.backend))),
            None => f(None),
        }
    }

    /// Runs `f` on the backend of `group` without cloning its handle.
    fn dispatch_group<R>(
        &self,
        group: &str,
        f: impl FnOnce(&dyn Backend) -> Result<R, ContextError>,
    ) -> Result<R, ContextError> {
        match self.inner.group_backend.load().get(group) {
            Some(backend) => f(&**backend),
            None => Err(ContextError::UnknownGroup { group: group.to_owned() }),
        }
    }

    fn route_group(&self, group: &str) -> Result<Arc<dyn Backend>, ContextError> {
        self.inner
            .group_backend
            .load()
            .get(group)
            .cloned()
            .ok_or_else(|| ContextError::UnknownGroup { group: group.to_owned() })
    }

    // ----- module management -----

    /// Adds a module with an inbox in the backend of `context_type`.
    pub fn add_module(&self, module: &str, context_type: &str) -> Result<(), ContextError> {
        let backend = self.backend(context_type)?;
        let _w = lock(&self.inner.write);
        backend.add_module(module)?;
        let builtin: Arc<dyn Backend> = self.inner.channel.clone();
        let inbox = if Arc::ptr_eq(&backend, &builtin) { self.inner.channel.inbox_handle(module) } else { None };
        let mut map = HashMap::clone(&self.inner.module_backend.load());
        map.insert(module.to_owned(), Route { backend, inbox });
        self.inner.module_backend.store(Arc::new(map));
        self.inner.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Adds a module to a group; the group is served by the module's backend.
    pub fn add_module_group(&self, module: &str, group: &str) -> Result<(), ContextError> {
        let backend = self.route(module)?;
        let _w = lock(&self.inner.write);
        backend.add_module_group(module, group)?;
        let mut map = HashMap::clone(&self.inner.group_backend.load());
        map.insert(group.to_owned(), backend);
        self.inner.group_backend.store(Arc::new(map));
        Ok(())
    }

    /// Removes a module and closes its inbox; returns how many accepted
    /// messages were never received. Later operations on the module fail
    /// with [`ContextError::Closed`] (until it is added again).
    pub fn cleanup(&self, module: &str) -> Result<usize, ContextError> {
        self.route(module)?.cleanup(module)
    }

    // ----- messaging -----

    /// Delivers `msg` to `module`, waiting for room in its inbox.
    #[inline]
    pub fn send(&self, module: &str, msg: Message) -> Result<(), ContextError> {
        counted(self.dispatch(module, msg, Inbox::send, |b, msg| b.send(module, msg)))
    }

    /// Delivers only if the inbox has room now.
    #[inline]
    pub fn try_send(&self, module: &str, msg: Message) -> Result<(), ContextError> {
        counted(self.dispatch(module, msg, Inbox::try_send, |b, msg| b.try_send(module, msg)))
    }

    /// Delivers only if the inbox has room now; a full inbox of an
    /// in-process module gives the message back ([`Offer::Full`]), so a
    /// relay can hold it and try again when there is room.
    pub fn offer(&self, module: &str, msg: Message) -> Result<(), Offer> {
        let r = self.dispatch(module, msg, |i, msg| Ok(i.offer(msg)), |b, msg| Ok(b.offer(module, msg)));
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Offer::Full(msg))) => Err(Offer::Full(msg)),
            Ok(Err(Offer::Failed(e))) | Err(e) => {
                crate::metrics::error(&e);
                Err(Offer::Failed(e))
            }
        }
    }

    /// Delivers, waiting at most `timeout` for room.
    pub fn send_timeout(&self, module: &str, msg: Message, timeout: Duration) -> Result<(), ContextError> {
        counted(self.route(module).and_then(|b| b.send_timeout(module, msg, timeout)))
    }

    /// [`send`](Self::send) for async code.
    pub async fn send_async(&self, module: &str, msg: Message) -> Result<(), ContextError> {
        counted(async { self.route(module)?.send_async(module, msg).await }.await)
    }

    /// The module's next message.
    #[inline]
    pub fn receive(&self, module: &str) -> Result<Message, ContextError> {
        counted(self.dispatch(module, (), |i, ()| i.recv(), |b, ()| b.receive(module)))
    }

    /// The module's next message, or `Ok(None)` after `timeout`.
    pub fn receive_timeout(&self, module: &str, timeout: Duration) -> Result<Option<Message>, ContextError> {
        counted(self.route(module).and_then(|b| b.receive_timeout(module, timeout)))
    }

    /// [`receive`](Self::receive) for async code.
    pub async fn receive_async(&self, module: &str) -> Result<Message, ContextError> {
        // An in-process module's queued message is taken at once, without
        // cloning a handle or boxing a future; only a wait holds the inbox.
        // The error boxed, as in `dispatch`: the closure's result stays small.
        enum Source {
            Done(Result<Message, Box<ContextError>>),
            Inbox(Arc<Inbox>),
            Backend(Arc<dyn Backend>),
        }
        let source = self.with_route(
            module,
            #[inline(always)]
            |route| match route {
                Some(Target::Inbox(i)) => match i.try_recv() {
                    Some(received) => Source::Done(received.map_err(Box::new)),
                    None => Source::Inbox(Arc::clone(i)),
                },
                Some(Target::Backend(b)) => Source::Backend(Arc::clone(b)),
                None => Source::Done(Err(Box::new(ContextError::UnknownModule { module: module.to_owned() }))),
            },
        );
        counted(match source {
            Source::Done(done) => done.map_err(|e| *e),
            Source::Inbox(inbox) => inbox.recv_async().await,
            Source::Backend(backend) => backend.receive_async(module).await,
        })
    }

    /// Sends with `sync` set and waits for the response (zero timeout = 30 s).
    pub fn send_sync(&self, module: &str, msg: Message, timeout: Duration) -> Result<Message, ContextError> {
        counted(self.route(module).and_then(|b| b.send_sync(module, msg, timeout)))
    }

    /// [`send_sync`](Self::send_sync) for async code.
    pub async fn send_sync_async(
        &self,
        module: &str,
        msg: Message,
        timeout: Duration,
    ) -> Result<Message, ContextError> {
        counted(async { self.route(module)?.send_sync_async(module, msg, timeout).await }.await)
    }

    /// Hands a response to the `send_sync` waiting for it, through the
    /// backend named by the response's `type` (empty = `channel`).
    pub fn send_resp(&self, resp: Message) -> Result<(), ContextError> {
        counted(self.resp_backend(&resp).and_then(|b| b.send_resp(resp)))
    }

    /// The backend a response goes to: the one of its message type (the
    /// request's context type), `channel` when it has none.
    fn resp_backend(&self, resp: &Message) -> Result<Arc<dyn Backend>, ContextError> {
        let ty = if resp.message_type().is_empty() { constants::MSG_CTX_TYPE_CHANNEL } else { resp.message_type() };
        self.backend(ty)
    }

    /// [`send_resp`](Self::send_resp) for async code.
    pub async fn send_resp_async(&self, resp: Message) -> Result<(), ContextError> {
        counted(async { self.resp_backend(&resp)?.send_resp_async(resp).await }.await)
    }

    /// Delivers to every member of `group`, in order per member.
    pub fn send_to_group(&self, group: &str, msg: Message) -> Result<(), ContextError> {
        counted(self.dispatch_group(group, |b| b.send_to_group(group, msg)))
    }

    /// [`send_to_group`](Self::send_to_group) for async code: waits for
    /// room in each member's inbox without blocking the executor.
    pub async fn send_to_group_async(&self, group: &str, msg: Message) -> Result<(), ContextError> {
        counted(async { self.route_group(group)?.send_to_group_async(group, msg).await }.await)
    }

    /// Delivers to every member of `group` and waits for each one's response.
    pub fn send_to_group_sync(
        &self,
        group: &str,
        msg: Message,
        timeout: Duration,
    ) -> Result<Vec<Message>, ContextError> {
        counted(self.dispatch_group(group, |b| b.send_to_group_sync(group, msg, timeout)))
    }

    // ----- lifecycle -----

    /// Registers a module on the `channel` backend (Go `core.Register`).
    /// A disabled module is recorded but never started.
    pub fn register(&self, module: impl Module) -> Result<(), ContextError> {
        self.register_as(module, constants::MSG_CTX_TYPE_CHANNEL)
    }

    /// Registers a module on the backend of `context_type`.
    pub fn register_as(&self, module: impl Module, context_type: &str) -> Result<(), ContextError> {
        let enabled = module.enabled();
        self.add_registered(Kind::Blocking(Arc::new(module)), enabled, context_type)
    }

    /// Registers an async module on the `channel` backend; [`Hive::start`]
    /// runs it as a task (see [`AsyncModule`]).
    pub fn register_async(&self, module: impl AsyncModule) -> Result<(), ContextError> {
        self.register_async_as(module, constants::MSG_CTX_TYPE_CHANNEL)
    }

    /// Registers an async module on the backend of `context_type`.
    pub fn register_async_as(&self, module: impl AsyncModule, context_type: &str) -> Result<(), ContextError> {
        let enabled = module.enabled();
        self.add_registered(Kind::Async(Arc::new(module)), enabled, context_type)
    }

    fn add_registered(&self, module: Kind, enabled: bool, context_type: &str) -> Result<(), ContextError> {
        let mut reg = lock(&self.inner.registry);
        let name = module.name().to_owned();
        if reg.modules.iter().any(|r| r.module.name() == name) || reg.disabled.contains(&name) {
            return Err(ContextError::DuplicateModule { module: name });
        }
        if !enabled {
            tracing::warn!(module = %name, "module is disabled and will not start");
            reg.disabled.push(name);
            return Ok(());
        }
        reg.modules.push(Registered { module, context_type: context_type.to_owned() });
        Ok(())
    }

    /// True when `module` was added to a backend (by registration or with
    /// [`add_module`](Self::add_module)). A module that was
    /// [`cleanup`](Self::cleanup)ed stays known: sending to it fails with
    /// [`ContextError::Closed`] until it is added again.
    pub fn has_module(&self, module: &str) -> bool {
        self.inner.module_backend.load().contains_key(module)
    }

    /// How long this hive's waiting threads poll before they park (set
    /// with [`HiveBuilder::spin`]); the socket backend's blocking
    /// connections of this hive poll as long, unless told otherwise.
    pub fn spin(&self) -> SpinBudget {
        self.inner.channel.spin()
    }

    /// Registered (enabled) modules, in registration order.
    pub fn modules(&self) -> Vec<String> {
        lock(&self.inner.registry).modules.iter().map(|r| r.module.name().to_owned()).collect()
    }

    /// Registered (enabled) modules with their groups, in registration
    /// order: what a socket server answers a module handshake with.
    pub fn module_groups(&self) -> Vec<(String, String)> {
        lock(&self.inner.registry)
            .modules
            .iter()
            .map(|r| (r.module.name().to_owned(), r.module.group().to_owned()))
            .collect()
    }

    /// Registered but disabled modules.
    pub fn disabled_modules(&self) -> Vec<String> {
        lock(&self.inner.registry).disabled.clone()
    }

    /// Starts every registered module (Go `StartModules`): its inbox and
    /// group are created first, then `start` runs under its restart policy,
    /// a blocking module on its own thread, an async module as a task on
    /// the hive's runtime (or the runtime this is called from; without
    /// either, [`ContextError::NoRuntime`] and nothing is started).
    pub fn start(&self) -> Result<(), ContextError> {
        let mut reg = lock(&self.inner.registry);
        let pending: Vec<(Kind, String)> = reg
            .modules
            .iter()
            .filter(|r| !reg.running.iter().any(|(n, _)| n == r.module.name()))
            .map(|r| (r.module.clone(), r.context_type.clone()))
            .collect();
        let runtime = self.inner.runtime.clone().or_else(|| tokio::runtime::Handle::try_current().ok());
        if let Some((first, _)) = pending.iter().find(|(m, _)| matches!(m, Kind::Async(_))) {
            if runtime.is_none() {
                return Err(ContextError::NoRuntime { module: first.name().to_owned() });
            }
        }
        for (module, ty) in &pending {
            self.add_module(module.name(), ty)?;
            self.add_module_group(module.name(), module.group())?;
        }
        for (module, _) in pending {
            let hive = self.clone();
            let name = module.name().to_owned();
            let running = match (module, &runtime) {
                (Kind::Blocking(module), _) => Running::Thread(
                    std::thread::Builder::new()
                        .name(format!("module-{name}"))
                        .spawn(move || hive.keep(module))
                        .map_err(|e| ContextError::Spawn { module: name.clone(), kind: e.kind() })?,
                ),
                (Kind::Async(module), Some(rt)) => Running::Task(rt.spawn(hive.keep_async(module))),
                (Kind::Async(_), None) => unreachable!("checked above"),
            };
            tracing::info!(module = %name, "module started");
            reg.running.push((name, running));
        }
        Ok(())
    }

    fn run_once(&self, module: &dyn Module) -> Result<(), ModuleError> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| module.start(self))) {
            Ok(r) => r,
            Err(payload) => Err(panic_error(payload)),
        }
    }

    /// Runs a module under its restart policy (Go `localModuleKeeper`).
    fn keep(&self, module: Arc<dyn Module>) {
        let mut restarts = Restarts::new(module.restart_policy());
        loop {
            let result = self.run_once(&*module);
            match restarts.after(module.name(), result, self.is_cancelled()) {
                Next::Stop => return,
                Next::RestartAfter(wait) => {
                    if self.wait_cancelled(wait) {
                        return;
                    }
                }
            }
        }
    }

    /// [`keep`](Self::keep) for an async module, as a task.
    async fn keep_async(self, module: Arc<dyn AsyncModule>) {
        let mut restarts = Restarts::new(module.restart_policy());
        let cancel = self.cancellation();
        loop {
            let run = AssertUnwindSafe(Arc::clone(&module).start(self.clone())).catch_unwind().await;
            let result = run.unwrap_or_else(|payload| Err(panic_error(payload)));
            match restarts.after(module.name(), result, self.is_cancelled()) {
                Next::Stop => return,
                Next::RestartAfter(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = cancel.cancelled() => return,
                    }
                }
            }
        }
    }

    /// The hive's cancellation token: cancelled when shutdown begins.
    pub fn cancellation(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    /// True once shutdown has begun.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Begins shutdown: cancels the token and wakes [`run_until_shutdown`](Self::run_until_shutdown).
    pub fn request_shutdown(&self) {
        self.inner.cancel.cancel();
        let (m, cv) = &self.inner.stopped;
        *lock(m) = true;
        cv.notify_all();
    }

    /// Waits up to `d` for cancellation; true if cancelled.
    pub fn wait_cancelled(&self, d: Duration) -> bool {
        let (m, cv) = &self.inner.stopped;
        let guard = lock(m);
        let (guard, _) = cv.wait_timeout_while(guard, d, |stopped| !*stopped).unwrap_or_else(|e| e.into_inner());
        *guard
    }

    /// Graceful shutdown: cancels the token, stops every inbox from
    /// accepting messages (modules still receive what is queued, then
    /// `Closed`), waits up to `deadline` for the modules' threads and tasks,
    /// then cleans up every module and reports what was left.
    ///
    /// This blocks the calling thread; from async code use
    /// [`shutdown_async`](Self::shutdown_async), which lets async modules on
    /// the same runtime finish.
    pub fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let (routes, running) = self.begin_shutdown();
        let end = Instant::now() + deadline;
        while Instant::now() < end && running.iter().any(|(_, h)| !h.is_finished()) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Self::finish_shutdown(routes, running)
    }

    /// [`shutdown`](Self::shutdown) for async code: waits without blocking
    /// the executor.
    pub async fn shutdown_async(&self, deadline: Duration) -> ShutdownReport {
        let (routes, running) = self.begin_shutdown();
        let end = tokio::time::Instant::now() + deadline;
        while tokio::time::Instant::now() < end && running.iter().any(|(_, h)| !h.is_finished()) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Self::finish_shutdown(routes, running)
    }

    /// Cancels, seals every inbox, and takes the running modules.
    fn begin_shutdown(&self) -> (Arc<ModuleMap>, Vec<(String, Running)>) {
        self.request_shutdown();
        let routes = self.inner.module_backend.load_full();
        for (name, route) in routes.iter() {
            let _ = route.backend.seal(name);
        }
        let running = std::mem::take(&mut lock(&self.inner.registry).running);
        (routes, running)
    }

    /// Reports which modules stopped and cleans every module up.
    fn finish_shutdown(routes: Arc<ModuleMap>, running: Vec<(String, Running)>) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        for (name, handle) in running {
            if handle.is_finished() {
                if let Running::Thread(h) = handle {
                    let _ = h.join();
                }
                report.stopped.push(name);
            } else {
                tracing::warn!(module = %name, "module did not stop before the deadline");
                report.not_stopped.push(name);
            }
        }
        let mut names: Vec<&String> = routes.keys().collect();
        names.sort();
        for name in names {
            if let Ok(dropped) = routes[name].backend.cleanup(name) {
                if dropped > 0 {
                    report.undelivered.push((name.clone(), dropped));
                }
            }
        }
        report
    }

    /// Runs until SIGINT, SIGTERM, SIGHUP or SIGQUIT arrives or
    /// [`request_shutdown`](Self::request_shutdown) is called, then shuts
    /// down gracefully with `deadline` (Go `GracefulShutdown`).
    pub fn run_until_shutdown(&self, deadline: Duration) -> std::io::Result<ShutdownReport> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])?;
        let handle = signals.handle();
        let hive = self.clone();
        let watcher = std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(signal = sig, "signal received, shutting down");
                hive.request_shutdown();
            }
        });
        while !self.wait_cancelled(Duration::from_secs(3600)) {}
        handle.close();
        let _ = watcher.join();
        Ok(self.shutdown(deadline))
    }
}

/// A process-wide hive, for Go-style code that expects one global context.
pub fn global() -> &'static Hive {
    static GLOBAL: OnceLock<Hive> = OnceLock::new();
    GLOBAL.get_or_init(Hive::new)
}
