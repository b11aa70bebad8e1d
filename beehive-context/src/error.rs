//! Errors of the module bus.

use std::time::Duration;

/// Why a bus operation failed. Every failure Go only logs is returned here,
/// so the caller always learns that a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// No module of that name is registered (Go logs "bad module name").
    #[error("unknown module {module:?}")]
    UnknownModule {
        /// The module.
        module: String,
    },
    /// No group of that name exists.
    #[error("unknown group {group:?}")]
    UnknownGroup {
        /// The group.
        group: String,
    },
    /// The module was cleaned up (or the hive shut down): its inbox is closed.
    #[error("module {module:?} is closed")]
    Closed {
        /// The module.
        module: String,
    },
    /// `try_send` found the module's inbox full.
    #[error("inbox of module {module:?} is full")]
    Full {
        /// The module.
        module: String,
    },
    /// The message could not be put into the module's inbox in time.
    #[error("timed out after {timeout:?} sending message {msg_id} to {module:?}")]
    SendTimeout {
        /// The module.
        module: String,
        /// The message id.
        msg_id: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// No response arrived in time.
    #[error("no response to message {msg_id} within {timeout:?}")]
    ResponseTimeout {
        /// The request id.
        msg_id: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// `send_resp` found nobody waiting for this response (late, or an
    /// unknown parent id). Go drops these with a log line.
    #[error("nobody is waiting for a response to {parent_id:?}")]
    NoWaiter {
        /// The response's parent id.
        parent_id: String,
    },
    /// A request with the same id is already waiting for its response.
    #[error("a request with id {msg_id} is already waiting")]
    DuplicateRequest {
        /// The id.
        msg_id: String,
    },
    /// A module of that name is already registered.
    #[error("module {module:?} is already registered")]
    DuplicateModule {
        /// The module.
        module: String,
    },
    /// No backend of that context type is installed.
    #[error("no context of type {context_type:?}")]
    UnknownContextType {
        /// The context type.
        context_type: String,
    },
    /// A broadcast reached only some members.
    #[error("message {msg_id} to group {group:?} not delivered to {failed:?}")]
    GroupDelivery {
        /// The group.
        group: String,
        /// The message id.
        msg_id: String,
        /// Members that did not get it, with the reason.
        failed: Vec<(String, String)>,
    },
    /// A synchronous broadcast did not get every response in time.
    #[error(
        "group {group:?}: {received} of {expected} responses to {msg_id} within {timeout:?}; not delivered to {undelivered:?}"
    )]
    GroupSyncIncomplete {
        /// The group.
        group: String,
        /// The request id.
        msg_id: String,
        /// Members.
        expected: usize,
        /// Responses received.
        received: usize,
        /// Members whose inbox did not take the request in time (or was closed).
        undelivered: Vec<String>,
        /// The time allowed.
        timeout: Duration,
    },
    /// An async module cannot start: the hive has no tokio runtime (none
    /// set with `HiveBuilder::runtime`, and `start` was not called from
    /// one).
    #[error("module {module:?} is async and the hive has no tokio runtime to run it on")]
    NoRuntime {
        /// The module.
        module: String,
    },
    /// The module is reached through a connection that is down now (it
    /// was connected before; nothing is queued for it meanwhile).
    #[error("remote module {module:?} is not connected")]
    NotConnected {
        /// The module.
        module: String,
    },
    /// Sending to a remote module failed on its connection: the
    /// connection closed, its queue stayed full, the message is too large
    /// for it... The source is the transport's own error.
    #[error("cannot send to remote module {module:?}")]
    Remote {
        /// The module.
        module: String,
        /// The transport's error (downcast it with
        /// [`RemoteError::downcast_ref`]).
        #[source]
        source: RemoteError,
    },
    /// The thread of a blocking module could not be created.
    #[error("cannot start a thread for module {module:?}: {kind}")]
    Spawn {
        /// The module.
        module: String,
        /// What the system reported.
        kind: std::io::ErrorKind,
    },
}

impl ContextError {
    /// A short, stable name of the error's kind (`unknown_module`,
    /// `send_timeout`, ...), for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ContextError::UnknownModule { .. } => "unknown_module",
            ContextError::UnknownGroup { .. } => "unknown_group",
            ContextError::Closed { .. } => "closed",
            ContextError::Full { .. } => "full",
            ContextError::SendTimeout { .. } => "send_timeout",
            ContextError::ResponseTimeout { .. } => "response_timeout",
            ContextError::NoWaiter { .. } => "no_waiter",
            ContextError::DuplicateRequest { .. } => "duplicate_request",
            ContextError::DuplicateModule { .. } => "duplicate_module",
            ContextError::UnknownContextType { .. } => "unknown_context_type",
            ContextError::GroupDelivery { .. } => "group_delivery",
            ContextError::GroupSyncIncomplete { .. } => "group_sync_incomplete",
            ContextError::NoRuntime { .. } => "no_runtime",
            ContextError::Spawn { .. } => "spawn",
            ContextError::NotConnected { .. } => "not_connected",
            ContextError::Remote { .. } => "remote",
        }
    }
}

/// A transport's error inside [`ContextError::Remote`], shared so that the
/// error stays cheap to clone. Two are equal when they are the same error.
#[derive(Clone)]
pub struct RemoteError(std::sync::Arc<dyn std::error::Error + Send + Sync>);

impl RemoteError {
    /// Wraps a transport's error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        RemoteError(std::sync::Arc::new(error))
    }

    /// The transport's error as its own type, if it is a `T`.
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl std::fmt::Debug for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for RemoteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for RemoteError {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for RemoteError {}
