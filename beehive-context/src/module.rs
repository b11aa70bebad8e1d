//! Modules: the `Module` trait, a closure-based module, restart policies.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{BoxFuture, Hive};

/// What a module's `start` returns on failure.
pub type ModuleError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// When a stopped module is started again (Go `RestartType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartType {
    /// Restart whenever `start` returns, successfully or not.
    Always,
    /// Restart only when `start` fails (returns an error or panics).
    OnFailure,
}

/// Default first interval between restarts (Go `DefaultIntervalSecond`).
pub const DEFAULT_RESTART_INTERVAL: Duration = Duration::from_secs(1);
/// Default longest interval between restarts (Go `DefaultRestartIntervalLimit`).
pub const DEFAULT_RESTART_INTERVAL_LIMIT: Duration = Duration::from_secs(30);

/// Called once when a module has used up its retries, with its last error.
pub type ErrorHandler = Arc<dyn Fn(Option<&ModuleError>) + Send + Sync>;

/// How a failed or stopped module is restarted (Go `ModuleRestartPolicy`).
#[derive(Clone)]
pub struct RestartPolicy {
    /// When to restart.
    pub restart_type: RestartType,
    /// Restarts allowed; 0 means unlimited.
    pub retries: u32,
    /// First interval between restarts; zero means [`DEFAULT_RESTART_INTERVAL`].
    pub interval: Duration,
    /// Each interval is the previous one times this; values <= 1 keep it constant.
    pub growth_rate: f64,
    /// Longest interval; zero means [`DEFAULT_RESTART_INTERVAL_LIMIT`].
    pub interval_limit: Duration,
    /// Called when the retries run out.
    pub error_handler: Option<ErrorHandler>,
}

impl fmt::Debug for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestartPolicy")
            .field("restart_type", &self.restart_type)
            .field("retries", &self.retries)
            .field("interval", &self.interval)
            .field("growth_rate", &self.growth_rate)
            .field("interval_limit", &self.interval_limit)
            .field("error_handler", &self.error_handler.is_some())
            .finish()
    }
}

impl RestartPolicy {
    /// A policy of the given type with Go's defaults (unlimited retries,
    /// 1 s interval, no growth, 30 s limit).
    pub fn new(restart_type: RestartType) -> Self {
        RestartPolicy {
            restart_type,
            retries: 0,
            interval: DEFAULT_RESTART_INTERVAL,
            growth_rate: 1.0,
            interval_limit: DEFAULT_RESTART_INTERVAL_LIMIT,
            error_handler: None,
        }
    }

    /// Sets the number of restarts (0 = unlimited).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets the first interval.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the growth rate of the interval.
    pub fn growth_rate(mut self, rate: f64) -> Self {
        self.growth_rate = rate;
        self
    }

    /// Sets the longest interval.
    pub fn interval_limit(mut self, limit: Duration) -> Self {
        self.interval_limit = limit;
        self
    }

    /// Sets the handler called when the retries run out.
    pub fn on_give_up(mut self, handler: impl Fn(Option<&ModuleError>) + Send + Sync + 'static) -> Self {
        self.error_handler = Some(Arc::new(handler));
        self
    }

    /// The first interval, with the default applied.
    pub fn first_interval(&self) -> Duration {
        if self.interval.is_zero() {
            DEFAULT_RESTART_INTERVAL
        } else {
            self.interval
        }
    }
}

/// The next restart interval, Go's `calculateIntervalTime`: unchanged when
/// the growth rate is at most 1 or the limit is reached, otherwise
/// `current * rate` capped at the limit (zero limit = 30 s).
pub fn next_interval(current: Duration, limit: Duration, growth_rate: f64) -> Duration {
    if growth_rate <= 1.0 {
        return current;
    }
    let limit = if limit.is_zero() { DEFAULT_RESTART_INTERVAL_LIMIT } else { limit };
    if current == limit {
        return current;
    }
    let next = Duration::try_from_secs_f64(current.as_secs_f64() * growth_rate).unwrap_or(limit);
    next.min(limit)
}

/// A module of the hive (Go `core.Module`).
///
/// `start` runs the module (usually a receive loop) on its own thread and
/// returns when the module stops; an error or a panic is a failure for the
/// restart policy. Modules watch [`Hive::cancellation`] to stop on shutdown.
pub trait Module: Send + Sync + 'static {
    /// The module name (its address on the bus).
    fn name(&self) -> &str;
    /// The module's group.
    fn group(&self) -> &str;
    /// Disabled modules are registered but never started.
    fn enabled(&self) -> bool {
        true
    }
    /// Runs the module.
    fn start(&self, hive: &Hive) -> Result<(), ModuleError>;
    /// How to restart the module; `None` runs it once.
    fn restart_policy(&self) -> Option<RestartPolicy> {
        None
    }
}

type StartFn = Arc<dyn Fn(&Hive) -> Result<(), ModuleError> + Send + Sync>;

/// A module made of a name, a group and a start closure (Go `SimpleModule`).
///
/// ```
/// use beehive_context::{Hive, SimpleModule};
///
/// let hive = Hive::new();
/// hive.register(SimpleModule::new("printer", "demo", |hive: &Hive| {
///     while let Ok(msg) = hive.receive("printer") {
///         println!("{msg}");
///     }
///     Ok(())
/// }))
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct SimpleModule {
    name: String,
    group: String,
    enabled: bool,
    policy: Option<RestartPolicy>,
    start: StartFn,
}

impl fmt::Debug for SimpleModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleModule")
            .field("name", &self.name)
            .field("group", &self.group)
            .field("enabled", &self.enabled)
            .field("policy", &self.policy)
            .finish()
    }
}

impl SimpleModule {
    /// An enabled module without restart policy.
    pub fn new(
        name: impl Into<String>,
        group: impl Into<String>,
        start: impl Fn(&Hive) -> Result<(), ModuleError> + Send + Sync + 'static,
    ) -> Self {
        SimpleModule { name: name.into(), group: group.into(), enabled: true, policy: None, start: Arc::new(start) }
    }

    /// Enables or disables the module.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets the restart policy.
    pub fn restart_policy(mut self, policy: RestartPolicy) -> Self {
        self.policy = Some(policy);
        self
    }
}

impl Module for SimpleModule {
    fn name(&self) -> &str {
        &self.name
    }
    fn group(&self) -> &str {
        &self.group
    }
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn start(&self, hive: &Hive) -> Result<(), ModuleError> {
        (self.start)(hive)
    }
    fn restart_policy(&self) -> Option<RestartPolicy> {
        self.policy.clone()
    }
}

/// A module whose `start` is async (the async counterpart of [`Module`]).
///
/// [`Hive::start`] runs it as a task on the hive's tokio runtime (set with
/// [`HiveBuilder::runtime`](crate::HiveBuilder::runtime), or the runtime
/// `start` is called from), under its restart policy like a blocking
/// module: an error or a panic is a failure. Many async modules share the
/// runtime's threads, and a message between two of them on one runtime is
/// handed over by a task switch, not a thread wake-up. `start` must not
/// block: use the hive's async operations (`receive_async`,
/// `send_sync_async`, `send_to_group_async`, ...).
pub trait AsyncModule: Send + Sync + 'static {
    /// The module name (its address on the bus).
    fn name(&self) -> &str;
    /// The module's group.
    fn group(&self) -> &str;
    /// Disabled modules are registered but never started.
    fn enabled(&self) -> bool {
        true
    }
    /// Runs the module until it stops.
    fn start(self: Arc<Self>, hive: Hive) -> BoxFuture<'static, Result<(), ModuleError>>;
    /// How to restart the module; `None` runs it once.
    fn restart_policy(&self) -> Option<RestartPolicy> {
        None
    }
}

type AsyncStartFn = Arc<dyn Fn(Hive) -> BoxFuture<'static, Result<(), ModuleError>> + Send + Sync>;

/// An async module made of a name, a group and a start closure returning a
/// future.
///
/// ```
/// use beehive_context::{Hive, SimpleAsyncModule};
///
/// let hive = Hive::new();
/// hive.register_async(SimpleAsyncModule::new("echo", "demo", |hive: Hive| async move {
///     while let Ok(req) = hive.receive_async("echo").await {
///         hive.send_resp(req.new_response("pong"))?;
///     }
///     Ok(())
/// }))
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct SimpleAsyncModule {
    name: String,
    group: String,
    enabled: bool,
    policy: Option<RestartPolicy>,
    start: AsyncStartFn,
}

impl fmt::Debug for SimpleAsyncModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleAsyncModule")
            .field("name", &self.name)
            .field("group", &self.group)
            .field("enabled", &self.enabled)
            .field("policy", &self.policy)
            .finish()
    }
}

impl SimpleAsyncModule {
    /// An enabled module without restart policy.
    pub fn new<F, Fut>(name: impl Into<String>, group: impl Into<String>, start: F) -> Self
    where
        F: Fn(Hive) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ModuleError>> + Send + 'static,
    {
        SimpleAsyncModule {
            name: name.into(),
            group: group.into(),
            enabled: true,
            policy: None,
            start: Arc::new(move |hive| Box::pin(start(hive))),
        }
    }

    /// Enables or disables the module.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets the restart policy.
    pub fn restart_policy(mut self, policy: RestartPolicy) -> Self {
        self.policy = Some(policy);
        self
    }
}

impl AsyncModule for SimpleAsyncModule {
    fn name(&self) -> &str {
        &self.name
    }
    fn group(&self) -> &str {
        &self.group
    }
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn start(self: Arc<Self>, hive: Hive) -> BoxFuture<'static, Result<(), ModuleError>> {
        (self.start)(hive)
    }
    fn restart_policy(&self) -> Option<RestartPolicy> {
        self.policy.clone()
    }
}

/// What to do after a run of a module under its restart policy (Go
/// `localModuleKeeper`), shared by blocking and async modules.
pub(crate) struct Restarts {
    policy: Option<RestartPolicy>,
    interval: Duration,
    restarts: u32,
}

/// The keeper's decision after a run.
pub(crate) enum Next {
    /// Stop keeping the module.
    Stop,
    /// Start it again after this interval (unless the hive shuts down first).
    RestartAfter(Duration),
}

impl Restarts {
    pub(crate) fn new(policy: Option<RestartPolicy>) -> Self {
        let interval = policy.as_ref().map_or(DEFAULT_RESTART_INTERVAL, RestartPolicy::first_interval);
        Restarts { policy, interval, restarts: 0 }
    }

    /// Logs the run's outcome and decides what comes next.
    pub(crate) fn after(&mut self, name: &str, result: Result<(), ModuleError>, cancelled: bool) -> Next {
        if let Err(e) = &result {
            tracing::error!(module = %name, error = %e, "module failed");
        }
        let Some(policy) = &self.policy else { return Next::Stop };
        if cancelled || (result.is_ok() && policy.restart_type == RestartType::OnFailure) {
            return Next::Stop;
        }
        self.restarts += 1;
        if policy.retries > 0 && self.restarts > policy.retries {
            tracing::info!(module = %name, retries = policy.retries, "module restart limit reached");
            if let Some(handler) = &policy.error_handler {
                handler(result.as_ref().err());
            }
            return Next::Stop;
        }
        let wait = self.interval;
        self.interval = next_interval(self.interval, policy.interval_limit, policy.growth_rate);
        Next::RestartAfter(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_arithmetic_is_go_calculate_interval_time() {
        let s = Duration::from_secs;
        assert_eq!(next_interval(s(1), s(30), 1.0), s(1));
        assert_eq!(next_interval(s(1), s(30), 0.5), s(1));
        assert_eq!(next_interval(s(1), s(30), 2.0), s(2));
        assert_eq!(next_interval(s(20), s(30), 2.0), s(30));
        assert_eq!(next_interval(s(30), s(30), 2.0), s(30));
        assert_eq!(next_interval(s(16), Duration::ZERO, 3.0), s(30));
        assert_eq!(next_interval(Duration::from_millis(1500), s(10), 1.5), Duration::from_millis(2250));
    }

    fn failed() -> Result<(), ModuleError> {
        Err("boom".into())
    }

    #[test]
    fn a_cancelled_hive_stops_a_module_whatever_its_policy_says() {
        let gave_up = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let g = Arc::clone(&gave_up);
        let policy = RestartPolicy::new(RestartType::Always).retries(1).on_give_up(move |_| {
            g.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let mut restarts = Restarts::new(Some(policy));
        assert!(matches!(restarts.after("m", failed(), false), Next::RestartAfter(_)));
        // The next run ends because the hive shuts down: no restart, and
        // no retries counted against the policy (its handler is not called).
        assert!(matches!(restarts.after("m", failed(), true), Next::Stop));
        assert!(matches!(restarts.after("m", Ok(()), true), Next::Stop));
        assert_eq!(gave_up.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    struct Plain;

    impl Module for Plain {
        fn name(&self) -> &str {
            "plain"
        }
        fn group(&self) -> &str {
            "g"
        }
        fn start(&self, _hive: &Hive) -> Result<(), ModuleError> {
            Ok(())
        }
    }

    impl AsyncModule for Plain {
        fn name(&self) -> &str {
            "plain"
        }
        fn group(&self) -> &str {
            "g"
        }
        fn start(self: Arc<Self>, _hive: Hive) -> BoxFuture<'static, Result<(), ModuleError>> {
            Box::pin(async { Ok(()) })
        }
    }

    #[test]
    fn modules_are_enabled_unless_they_say_otherwise() {
        assert!(Module::enabled(&Plain));
        assert!(AsyncModule::enabled(&Plain));
        let off = SimpleAsyncModule::new("a", "g", |_| async { Ok(()) }).enabled(false);
        assert!(!AsyncModule::enabled(&off));
        assert!(AsyncModule::enabled(&SimpleAsyncModule::new("a", "g", |_| async { Ok(()) })));
        assert!(!Module::enabled(&SimpleModule::new("m", "g", |_: &Hive| Ok(())).enabled(false)));
    }

    #[test]
    fn debug_output_names_the_module_and_its_policy() {
        let policy = RestartPolicy::new(RestartType::OnFailure).retries(3);
        let text = format!("{policy:?}");
        assert!(text.starts_with("RestartPolicy {") && text.contains("retries: 3"), "{text}");
        let m = SimpleModule::new("edged", "grp", |_: &Hive| Ok(())).restart_policy(policy.clone());
        let text = format!("{m:?}");
        assert!(text.contains("\"edged\"") && text.contains("\"grp\"") && text.contains("OnFailure"), "{text}");
        let a = SimpleAsyncModule::new("meta", "grp2", |_| async { Ok(()) }).enabled(false);
        let text = format!("{a:?}");
        assert!(text.contains("\"meta\"") && text.contains("enabled: false"), "{text}");
    }
}
