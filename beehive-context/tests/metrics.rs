//! The bus reports through the `metrics` facade: counters per module,
//! round-trip latencies, responses without a waiter, errors by kind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beehive_context::Hive;
use beehive_model::{constants, Message};
use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Records counters and histograms by name and sorted labels.
#[derive(Default)]
struct TestRecorder {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
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
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::clone(self.histograms.lock().unwrap().entry(id(key)).or_default()))
    }
}

impl TestRecorder {
    fn counter(&self, id: &str) -> u64 {
        self.counters.lock().unwrap().get(id).map_or(0, |c| c.load(Ordering::SeqCst))
    }

    fn samples(&self, id: &str) -> Vec<f64> {
        self.histograms.lock().unwrap().get(id).map_or_else(Vec::new, |h| h.0.lock().unwrap().clone())
    }
}

#[test]
fn messages_errors_and_round_trips_are_counted() {
    let recorder = TestRecorder::default();
    metrics::with_local_recorder(&recorder, || {
        let hive = Hive::new();
        hive.add_module("m", constants::MSG_CTX_TYPE_CHANNEL).unwrap();
        for i in 0..3 {
            hive.send("m", Message::new("").fill_body(format!("{i}"))).unwrap();
        }
        for _ in 0..2 {
            hive.receive("m").unwrap();
        }
        assert_eq!(hive.cleanup("m").unwrap(), 1);
        assert!(hive.send("nobody", Message::new("")).is_err());
        assert!(hive.send_resp(Message::new("").new_response("late")).is_err());

        hive.add_module("echo", constants::MSG_CTX_TYPE_CHANNEL).unwrap();
        let echo = hive.clone();
        let responder = std::thread::spawn(move || {
            let req = echo.receive("echo").unwrap();
            echo.send_resp(req.new_response("ok")).unwrap();
        });
        let resp = hive.send_sync("echo", Message::new("").fill_body("ping"), Duration::from_secs(5)).unwrap();
        assert_eq!(resp.content().as_str(), Some("ok"));
        responder.join().unwrap();
    });
    assert_eq!(recorder.counter("beehive_messages_sent_total{module=m}"), 3);
    assert_eq!(recorder.counter("beehive_messages_received_total{module=m}"), 2);
    assert_eq!(recorder.counter("beehive_messages_dropped_total{module=m}"), 1);
    assert_eq!(recorder.counter("beehive_messages_sent_total{module=echo}"), 1);
    assert_eq!(recorder.counter("beehive_messages_received_total{module=echo}"), 1);
    assert_eq!(recorder.counter("beehive_errors_total{kind=unknown_module}"), 1);
    assert_eq!(recorder.counter("beehive_errors_total{kind=no_waiter}"), 1);
    assert_eq!(recorder.counter("beehive_responses_without_waiter_total{}"), 1);
    let rtt = recorder.samples("beehive_sync_round_trip_seconds{}");
    assert_eq!(rtt.len(), 1, "{rtt:?}");
    assert!(rtt[0] > 0.0 && rtt[0] < 5.0, "{rtt:?}");
}
