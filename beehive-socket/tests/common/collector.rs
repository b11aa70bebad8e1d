//! A `tracing` subscriber that keeps the message events
//! (`beehive_socket::message`) for the tests to look at.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One captured event: its text and fields.
#[derive(Debug, Clone)]
pub struct Captured {
    pub level: tracing::Level,
    pub fields: HashMap<String, String>,
}

impl Captured {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }
}

/// A subscriber keeping the events of target `beehive_socket::message`
/// (and enabling nothing else).
#[derive(Clone, Default)]
pub struct Collector {
    pub events: Arc<Mutex<Vec<Captured>>>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl tracing::Subscriber for Collector {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "beehive_socket::message"
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        self.events.lock().unwrap().push(Captured { level: *event.metadata().level(), fields });
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

impl Collector {
    /// The captured events with text `message` whose fields include
    /// `fields`.
    pub fn find(&self, message: &str, fields: &[(&str, &str)]) -> Vec<Captured> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.get("message") == Some(message))
            .filter(|e| fields.iter().all(|(k, v)| e.get(k) == Some(*v)))
            .cloned()
            .collect()
    }

    /// The one event with text `message` and `fields`.
    pub fn one(&self, message: &str, fields: &[(&str, &str)]) -> Captured {
        let found = self.find(message, fields);
        assert_eq!(found.len(), 1, "{message} {fields:?}: {found:?}\nall: {:?}", self.events.lock().unwrap());
        found.into_iter().next().unwrap()
    }
}

impl Collector {
    /// The one event `message` with `fields`, from the connection `session`
    /// in `role`.
    pub fn one_from(&self, message: &str, fields: &[(&str, &str)], role: &str, session: &str) -> Captured {
        let event = self.one(message, fields);
        assert_eq!((event.get("role"), event.get("session")), (Some(role), Some(session)), "{message}: {event:?}");
        event
    }

    /// `answer` (to request `request_id`) was queued by the server's
    /// connection and read by the client's.
    pub fn assert_answer_traced(
        &self,
        answer: &beehive_model::Message,
        request_id: &str,
        server_session: &str,
        client_session: &str,
    ) {
        let fields = [
            ("msg_id", answer.id()),
            ("parent_msg_id", request_id),
            ("source", answer.source()),
            ("destination", "edge"),
            ("operation", answer.operation()),
        ];
        self.one_from("queued for writing", &fields, "server", server_session);
        self.one_from("read from a connection", &fields, "client", client_session);
    }
}
