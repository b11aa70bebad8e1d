//! The handshake answer: `ModuleExchange::from_value` on arbitrary JSON,
//! read both as a whole answer message (as the socket client reads it) and
//! as the content alone.
//!
//! Invariants: no panic; an accepted exchange, written with the Go-exact
//! encoder (as content and inside an answer message) and with serde, reads
//! back as the same exchange; and the result is what Go's `json.Unmarshal`
//! into `socket.ModuleExchange` gives for the re-marshalled content (a model
//! of Go's rules below: keys in sorted order, a later `null` clears a
//! field, a later `groups` object adds to the map, a later `modules` list
//! reuses the storage of the earlier one, where a `null` item leaves the
//! old name in place).
#![no_main]

use std::collections::BTreeMap;

use beehive_model::json::key_matches;
use beehive_model::{Content, Message, ModuleExchange, Value};
use libfuzzer_sys::fuzz_target;

/// What the socket client accepts as the content of a handshake answer.
fn from_answer(content: &Content) -> Option<ModuleExchange> {
    match content {
        Content::ModuleExchange(m) => Some(m.clone()),
        Content::Value(v) => ModuleExchange::from_value(v),
        Content::Null => ModuleExchange::from_value(&Value::Null),
        _ => None,
    }
}

/// A Go `[]string` as `encoding/json` decodes into it through `reflect`:
/// a backing array (its length is the capacity), a length, nil or not.
struct GoSlice {
    backing: Vec<String>,
    len: usize,
    nil: bool,
}

impl GoSlice {
    fn nil() -> Self {
        GoSlice { backing: Vec::new(), len: 0, nil: true }
    }

    /// `null`: the slice is set to nil.
    fn set_null(&mut self) {
        *self = GoSlice::nil();
    }

    /// Decodes an array into the slice (Go's `decodeState.array`): grow
    /// when full (copying the first `len` elements), extend the length, decode
    /// each item in place (`null` leaves the element alone), then cut the
    /// length; an empty array makes a new empty slice. `false` on a type
    /// error.
    fn decode(&mut self, items: &[Value]) -> bool {
        for (i, item) in items.iter().enumerate() {
            if i >= self.backing.len() {
                let cap = (2 * self.backing.len()).max(i + 1);
                let mut grown = self.backing[..self.len].to_vec();
                grown.resize(cap, String::new());
                self.backing = grown;
            }
            if i >= self.len {
                self.len = i + 1;
            }
            match item {
                Value::String(s) => self.backing[i] = s.clone(),
                Value::Null => {}
                _ => return false,
            }
        }
        self.len = self.len.min(items.len());
        if items.is_empty() {
            self.backing = Vec::new();
            self.len = 0;
        }
        self.nil = false;
        true
    }

    fn value(&self) -> Option<Vec<String>> {
        (!self.nil).then(|| self.backing[..self.len].to_vec())
    }
}

/// Go's `json.Unmarshal` of the (re-marshalled, so key-sorted and
/// duplicate-free) content into `socket.ModuleExchange`; `None` where Go
/// reports an error.
fn go_unmarshal(v: &Value) -> Option<ModuleExchange> {
    let obj = match v {
        Value::Null => return Some(ModuleExchange::default()),
        Value::Object(obj) => obj,
        _ => return None,
    };
    let mut modules = GoSlice::nil();
    let mut groups: Option<BTreeMap<String, Vec<String>>> = None;
    for (k, v) in obj.iter() {
        if key_matches(k, "modules") {
            match v {
                Value::Null => modules.set_null(),
                Value::Array(items) => {
                    if !modules.decode(items) {
                        return None;
                    }
                }
                _ => return None,
            }
        } else if key_matches(k, "groups") {
            match v {
                Value::Null => groups = None,
                Value::Object(entries) => {
                    // A map already there is reused: entries are added.
                    let map = groups.get_or_insert_with(BTreeMap::new);
                    for (g, members) in entries.iter() {
                        // Each map element is decoded into a zero slice.
                        let mut slice = GoSlice::nil();
                        match members {
                            Value::Null => {}
                            Value::Array(items) => {
                                if !slice.decode(items) {
                                    return None;
                                }
                            }
                            _ => return None,
                        }
                        // A nil member list is written as `[]` by us.
                        map.insert(g.clone(), slice.value().unwrap_or_default());
                    }
                }
                _ => return None,
            }
        }
    }
    Some(ModuleExchange { modules: modules.value(), groups })
}

fn check(m: &ModuleExchange) {
    let content = Content::ModuleExchange(m.clone());
    let text = beehive_model::json::content_to_vec(&content).expect("an exchange always encodes");
    let value = beehive_model::decode_value(&text).expect("our output decodes");
    assert_eq!(ModuleExchange::from_value(&value).as_ref(), Some(m), "content {}", String::from_utf8_lossy(&text));

    let answer = Message::raw().build_header("answer", "request", 1).fill_body(content.clone());
    let wire = beehive_model::to_vec(&answer).expect("an answer always encodes");
    let back = beehive_model::from_slice(&wire).expect("our answer decodes");
    assert_eq!(from_answer(back.content()).as_ref(), Some(m), "answer {}", String::from_utf8_lossy(&wire));

    let serde = serde_json::to_vec(&content).expect("serde encodes an exchange");
    let value = beehive_model::decode_value(&serde).expect("serde output decodes");
    assert_eq!(ModuleExchange::from_value(&value).as_ref(), Some(m), "serde {}", String::from_utf8_lossy(&serde));
}

fn check_value(v: &Value) {
    let ours = ModuleExchange::from_value(v);
    assert_eq!(ours, go_unmarshal(v), "Go reads {v:?} differently");
    if let Some(m) = ours {
        check(&m);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = beehive_model::from_slice(data) {
        if let Some(m) = from_answer(msg.content()) {
            check(&m);
        }
        if let Content::Value(v) = msg.content() {
            check_value(v);
        }
    }
    if let Ok(v) = beehive_model::decode_value(data) {
        check_value(&v);
    }
});
