//! # beehive-context
//!
//! The module bus of KubeEdge's beehive, in process: modules register by
//! name and group, then `send`, `receive`, `send_sync` / `send_resp`,
//! `send_to_group` and `send_to_group_sync`, with the semantics of Go's
//! beehive and without its defects:
//!
//! * every undeliverable message is an error the caller sees (unknown or
//!   cleaned-up module, full inbox with `try_send`, timeouts, a response
//!   nobody waits for) — Go only logs these;
//! * a response is never lost for arriving "too early": waiters register
//!   before the request is sent and keep what arrives;
//! * broadcasts reach each member in the order they were sent, without a
//!   goroutine (here: a task) per delivery;
//! * `receive` on a cleaned-up module is [`ContextError::Closed`];
//! * shutdown counts and reports accepted messages nobody received.
//!
//! [`Hive`] is the router (Go's global context) and the module lifecycle
//! (registration, restart policies, graceful shutdown on signals). It is a
//! value, so tests and programs can run several; [`global`] gives a
//! process-wide one for Go-style code. Operations come blocking (for module
//! threads) and async (on tokio).
#![deny(missing_docs)]

mod backend;
mod channel;
mod error;
mod hive;
mod inbox;
mod keeper;
pub mod metrics;
mod module;
mod route_cache;
mod spin;

pub use backend::{
    broadcast, effective_timeout, group_delivery, Backend, BoxFuture, MessageContext, ModuleContext, Offer,
    DEFAULT_SYNC_TIMEOUT,
};
pub use channel::{ChannelContext, DEFAULT_INBOX_CAPACITY};
pub use error::{ContextError, RemoteError};
pub use hive::{global, Hive, HiveBuilder, ShutdownReport};
// The keeper of pending requests: shared with the socket backends of the
// beehive-socket crate, not part of the API.
#[doc(hidden)]
pub use keeper::{Registration, Slot, SlotFuture, SyncKeeper};
pub use module::{
    next_interval, AsyncModule, ErrorHandler, Module, ModuleError, RestartPolicy, RestartType, SimpleAsyncModule,
    SimpleModule, DEFAULT_RESTART_INTERVAL, DEFAULT_RESTART_INTERVAL_LIMIT,
};
pub use spin::{SpinBudget, SpinWait};

/// The crate README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
