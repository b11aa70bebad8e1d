//! What the bus reports through the [`metrics`] facade.
//!
//! The crate depends on the facade only: a program that wants the figures
//! installs a recorder (a Prometheus exporter, say) **before** it builds its
//! hives, since each inbox registers its counters when it is created.
//! Without a recorder every handle is a no-op and a message costs one
//! branch per counter.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `beehive_messages_sent_total` | counter | `module` | messages accepted into a channel module's inbox |
//! | `beehive_messages_received_total` | counter | `module` | messages taken from it |
//! | `beehive_messages_dropped_total` | counter | `module` | accepted messages never received (cleanup, shutdown) |
//! | `beehive_sync_round_trip_seconds` | histogram | | `send_sync` calls that got their response, request to response |
//! | `beehive_responses_without_waiter_total` | counter | | responses nobody was waiting for (late, or for another hive) |
//! | `beehive_errors_total` | counter | `kind` | failed bus operations by [`ContextError::kind`](crate::ContextError::kind) |

use metrics::Counter;

/// The counters of one inbox, registered when it is created.
pub(crate) struct InboxMetrics {
    pub(crate) sent: Counter,
    pub(crate) received: Counter,
}

impl InboxMetrics {
    pub(crate) fn new(module: &str) -> Self {
        InboxMetrics {
            sent: metrics::counter!("beehive_messages_sent_total", "module" => module.to_owned()),
            received: metrics::counter!("beehive_messages_received_total", "module" => module.to_owned()),
        }
    }
}

pub(crate) fn dropped(module: &str, count: usize) {
    if count > 0 {
        metrics::counter!("beehive_messages_dropped_total", "module" => module.to_owned()).increment(count as u64);
    }
}

/// The round-trip histogram, registered by each sync keeper when it is
/// created.
pub(crate) fn round_trips() -> metrics::Histogram {
    metrics::histogram!("beehive_sync_round_trip_seconds")
}

pub(crate) fn response_without_waiter() {
    metrics::counter!("beehive_responses_without_waiter_total").increment(1);
}

#[cold]
pub(crate) fn error(e: &crate::ContextError) {
    metrics::counter!("beehive_errors_total", "kind" => e.kind()).increment(1);
}
