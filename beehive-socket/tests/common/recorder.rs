//! A metrics recorder for the tests: counters and gauges by name and
//! sorted labels, `name{label=value,...}`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Counters and gauges by name and sorted labels:
/// `name{label=value,...}`.
#[derive(Default, Clone)]
pub struct TestRecorder {
    counters: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
    /// f64 bits (the facade's `GaugeFn` for `AtomicU64`).
    gauges: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
}

fn id(key: &Key) -> String {
    let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::clone(self.counters.lock().unwrap().entry(id(key)).or_default()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::clone(self.gauges.lock().unwrap().entry(id(key)).or_default()))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

impl TestRecorder {
    pub fn counter(&self, id: &str) -> u64 {
        self.counters.lock().unwrap().get(id).map_or(0, |c| c.load(Ordering::SeqCst))
    }

    pub fn gauge(&self, id: &str) -> f64 {
        self.gauges.lock().unwrap().get(id).map_or(0.0, |g| f64::from_bits(g.load(Ordering::SeqCst)))
    }

    /// Every counter whose name starts with `prefix`, sorted.
    pub fn counters(&self, prefix: &str) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .counters
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, c)| (k.clone(), c.load(Ordering::SeqCst)))
            .collect();
        v.sort();
        v
    }
}

/// The per-role figures of one side of the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub messages_read: u64,
    pub messages_written: u64,
    pub malformed: u64,
}

pub fn side(r: &TestRecorder, role: &str) -> Side {
    let c = |name: &str| r.counter(&format!("beehive_socket_{name}_total{{role={role}}}"));
    Side {
        bytes_read: c("bytes_read"),
        bytes_written: c("bytes_written"),
        messages_read: c("messages_read"),
        messages_written: c("messages_written"),
        malformed: c("malformed"),
    }
}

/// Checks the figures of a client and a server just connected: one
/// connection opened and open on each side, the registration one way and
/// the answer the other, as many bytes read as written; the figures now,
/// server side first.
pub fn assert_connected(r: &TestRecorder) -> (Side, Side) {
    for role in ["server", "client"] {
        assert_eq!(r.counter(&format!("beehive_socket_connections_opened_total{{role={role}}}")), 1, "{role}");
        assert_eq!(r.gauge(&format!("beehive_socket_connections_open{{role={role}}}")), 1.0, "{role}");
    }
    let (srv, cli) = (side(r, "server"), side(r, "client"));
    assert_eq!((cli.messages_written, srv.messages_read), (1, 1));
    assert_eq!((srv.messages_written, cli.messages_read), (1, 1));
    assert!(cli.bytes_written > 0 && srv.bytes_written > 0);
    assert_eq!(srv.bytes_read, cli.bytes_written);
    assert_eq!(cli.bytes_read, srv.bytes_written);
    (srv, cli)
}

/// Checks that since `before` (server side, client side) the client wrote
/// and the server read `messages.0` messages in all, and the server wrote
/// and the client read `messages.1`, with `bytes.0` more bytes up and
/// `bytes.1` down, nothing malformed; the figures now, server side first.
pub fn assert_exchanged(
    r: &TestRecorder,
    before: (Side, Side),
    messages: (u64, u64),
    bytes: (u64, u64),
) -> (Side, Side) {
    let ((srv, cli), (srv2, cli2)) = (before, (side(r, "server"), side(r, "client")));
    assert_eq!((cli2.messages_written, srv2.messages_read), (messages.0, messages.0), "messages up");
    assert_eq!((srv2.messages_written, cli2.messages_read), (messages.1, messages.1), "messages down");
    assert_eq!(cli2.bytes_written - cli.bytes_written, bytes.0, "bytes written up");
    assert_eq!(srv2.bytes_read - srv.bytes_read, bytes.0, "bytes read up");
    assert_eq!(srv2.bytes_written - srv.bytes_written, bytes.1, "bytes written down");
    assert_eq!(cli2.bytes_read - cli.bytes_read, bytes.1, "bytes read down");
    assert_eq!((srv2.malformed, cli2.malformed), (0, 0));
    (srv2, cli2)
}
