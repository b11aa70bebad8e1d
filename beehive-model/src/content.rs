//! Message content: everything a Go peer can put into `Message.Content`.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::json;
use crate::value::Value;
use crate::EncodeError;

/// The content of a [`Message`](crate::Message): Go's `interface{}` field.
///
/// Each variant corresponds to a Go type a beehive module puts into a message
/// and is written exactly as Go's `json.Marshal` writes that type.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Content {
    /// Go `nil`: written as `null`. Also what a nil `json.RawMessage` or a nil
    /// pointer amounts to (they encode identically).
    #[default]
    Null,
    /// A Go `string`.
    String(String),
    /// A Go `[]byte`: written as a base64 string. `None` is a nil slice held in
    /// the interface, which Go writes as `null` but whose content data is empty.
    Bytes(Option<Bytes>),
    /// A dynamic JSON value (Go `map[string]interface{}`, `[]interface{}`,
    /// `float64`, `bool`, or integers built in Rust).
    Value(Value),
    /// A Go `json.RawMessage`: JSON text that is validated, compacted and
    /// HTML-escaped when written, otherwise kept verbatim (key order,
    /// duplicate keys, number spelling).
    Raw(RawJson),
    /// The socket handshake answer, Go's `*socket.ModuleExchange`.
    ModuleExchange(ModuleExchange),
}

/// JSON text carried as-is: Go's `json.RawMessage`.
///
/// The bytes are not checked when the value is made; encoding a message whose
/// raw content is not valid JSON fails, as Go's `json.Marshal` does.
///
/// The lazy decoder ([`crate::json::from_bytes_lazy`]) also uses it for
/// content that is already in Go's canonical form; such content is written
/// back by copying its bytes.
#[derive(Clone, Debug, Default)]
pub struct RawJson {
    bytes: Bytes,
    /// Known to be valid and exactly what Go writes for the decoded value.
    canonical: bool,
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for RawJson {}

impl RawJson {
    /// Wraps JSON text without checking it.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        RawJson { bytes: bytes.into(), canonical: false }
    }

    /// Text the decoder found valid and canonical.
    pub(crate) fn canonical(bytes: Bytes) -> Self {
        RawJson { bytes, canonical: true }
    }

    /// True when the text is known to be valid JSON in Go's canonical form
    /// (set by the lazy decoder); writing it is then a plain copy.
    pub fn is_canonical(&self) -> bool {
        self.canonical
    }

    /// The JSON text as given.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The JSON text as a shared buffer.
    pub fn to_bytes(&self) -> Bytes {
        self.bytes.clone()
    }

    /// Parses the text into a dynamic [`Value`] with Go's decoding rules.
    pub fn parse(&self) -> Result<Value, crate::DecodeError> {
        json::decode_value(&self.bytes)
    }
}

/// The module-exchange body of the socket handshake:
/// `{"modules":[...],"groups":{group:[module,...]}}`.
///
/// `None` stands for a Go nil slice or nil map, written as `null`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleExchange {
    /// The modules registered on the answering side.
    pub modules: Option<Vec<String>>,
    /// Group name to member modules.
    pub groups: Option<BTreeMap<String, Vec<String>>>,
}

impl ModuleExchange {
    /// Reads a module exchange from decoded content, as Go does with
    /// `json.Marshal` then `json.Unmarshal` into the struct: keys match
    /// case-insensitively and are taken in Go's (sorted) order, unknown keys
    /// are ignored, `null` clears a field, a later `groups` object adds to
    /// the map of an earlier one, and a `null` list item leaves its slot as
    /// it was (empty, or a name from an earlier `modules` list, whose
    /// storage Go reuses). Returns `None` when the value does not have that
    /// shape.
    pub fn from_value(value: &Value) -> Option<Self> {
        let obj = match value {
            Value::Null => return Some(ModuleExchange::default()),
            Value::Object(obj) => obj,
            _ => return None,
        };
        let mut out = ModuleExchange::default();
        // The storage of Go's `modules` slice: it outlives a shorter list.
        let mut slots: Vec<String> = Vec::new();
        for (key, v) in obj {
            match json::fold::match_field(key.as_bytes(), &["modules", "groups"]) {
                Some(0) => match v {
                    Value::Null => {
                        slots.clear();
                        out.modules = None;
                    }
                    Value::Array(items) => {
                        if items.is_empty() {
                            slots.clear();
                        }
                        for (i, item) in items.iter().enumerate() {
                            if slots.len() == i {
                                slots.push(String::new());
                            }
                            match item {
                                Value::String(s) => slots[i].clone_from(s),
                                Value::Null => {}
                                _ => return None,
                            }
                        }
                        out.modules = Some(slots[..items.len()].to_vec());
                    }
                    _ => return None,
                },
                Some(1) => match v {
                    Value::Null => out.groups = None,
                    Value::Object(groups) => {
                        let map = out.groups.get_or_insert_with(BTreeMap::new);
                        for (g, members) in groups {
                            let members = match members {
                                Value::Null => Vec::new(),
                                Value::Array(items) => items
                                    .iter()
                                    .map(|i| match i {
                                        Value::String(s) => Some(s.clone()),
                                        Value::Null => Some(String::new()),
                                        _ => None,
                                    })
                                    .collect::<Option<Vec<_>>>()?,
                                _ => return None,
                            };
                            map.insert(g.clone(), members);
                        }
                    }
                    _ => return None,
                },
                _ => {}
            }
        }
        Some(out)
    }
}

impl Content {
    /// Go's `GetContentData()`: the bytes of `[]byte` content, the bytes of a
    /// string, and otherwise the Go JSON encoding of the content.
    pub fn data(&self) -> Result<Bytes, EncodeError> {
        match self {
            Content::String(s) => Ok(Bytes::copy_from_slice(s.as_bytes())),
            Content::Value(Value::String(s)) => Ok(Bytes::copy_from_slice(s.as_bytes())),
            Content::Bytes(Some(b)) => Ok(b.clone()),
            Content::Bytes(None) => Ok(Bytes::new()),
            other => {
                let mut out = Vec::new();
                json::write::content(&mut out, other)?;
                Ok(Bytes::from(out))
            }
        }
    }

    /// True for [`Content::Null`] and for values that Go would hold as nil.
    pub fn is_null(&self) -> bool {
        matches!(self, Content::Null | Content::Value(Value::Null))
    }

    /// The string, if the content is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Content::String(s) => Some(s),
            Content::Value(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The dynamic value, if the content is one.
    pub fn as_value(&self) -> Option<&Value> {
        match self {
            Content::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The Go type name of the content as `%T` would name the decoded value
    /// (`nil`, `string`, `float64`, `bool`, `map`, `slice`, or `[]uint8`,
    /// `json.RawMessage`, `*socket.ModuleExchange` for the other kinds).
    pub fn go_type_name(&self) -> &'static str {
        match self {
            Content::Null => "nil",
            Content::String(_) => "string",
            Content::Bytes(_) => "[]uint8",
            Content::Value(v) => v.go_type_name(),
            Content::Raw(_) => "json.RawMessage",
            Content::ModuleExchange(_) => "*socket.ModuleExchange",
        }
    }
}

impl From<&str> for Content {
    fn from(s: &str) -> Self {
        Content::String(s.to_owned())
    }
}

impl From<String> for Content {
    fn from(s: String) -> Self {
        Content::String(s)
    }
}

impl From<Bytes> for Content {
    fn from(b: Bytes) -> Self {
        Content::Bytes(Some(b))
    }
}

impl From<Vec<u8>> for Content {
    fn from(b: Vec<u8>) -> Self {
        Content::Bytes(Some(Bytes::from(b)))
    }
}

impl From<Value> for Content {
    /// `Value::Null` becomes [`Content::Null`] and a string value becomes
    /// [`Content::String`], as Go holds them in the interface.
    fn from(v: Value) -> Self {
        match v {
            Value::Null => Content::Null,
            Value::String(s) => Content::String(s),
            v => Content::Value(v),
        }
    }
}

impl From<RawJson> for Content {
    fn from(r: RawJson) -> Self {
        Content::Raw(r)
    }
}

impl From<ModuleExchange> for Content {
    fn from(m: ModuleExchange) -> Self {
        Content::ModuleExchange(m)
    }
}

impl From<serde_json::Value> for Content {
    fn from(v: serde_json::Value) -> Self {
        Content::from(Value::from(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(json: &str) -> Option<ModuleExchange> {
        ModuleExchange::from_value(&json::decode_value(json.as_bytes()).unwrap())
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    // Found by the module_exchange fuzz target: a later null kept the list.
    #[test]
    fn module_exchange_later_null_clears_the_field_as_in_go() {
        assert_eq!(exchange(r#"{"Modules":["a","b"],"modules":null}"#), Some(ModuleExchange::default()));
        assert_eq!(exchange(r#"{"Groups":{"g":[]},"groups":null}"#), Some(ModuleExchange::default()));
    }

    #[test]
    fn module_exchange_repeated_groups_add_to_one_map_as_in_go() {
        let m = exchange(r#"{"Groups":{"g":["a"],"h":["x"]},"groups":{"h":["b"]}}"#).unwrap();
        let want = BTreeMap::from([("g".to_owned(), names(&["a"])), ("h".to_owned(), names(&["b"]))]);
        assert_eq!(m.groups, Some(want));
    }

    #[test]
    fn module_exchange_null_items_keep_their_slot_as_in_go() {
        let m = exchange(r#"{"modules":["a",null],"groups":{"g":[null,"b"],"n":null}}"#).unwrap();
        assert_eq!(m.modules, Some(names(&["a", ""])));
        let want = BTreeMap::from([("g".to_owned(), names(&["", "b"])), ("n".to_owned(), Vec::new())]);
        assert_eq!(m.groups, Some(want));
        // Go decodes a later list into the storage of the earlier one.
        let m = exchange(r#"{"MODULES":["x","y","z"],"Modules":["p"],"modules":["q",null,null]}"#).unwrap();
        assert_eq!(m.modules, Some(names(&["q", "y", "z"])));
        let m = exchange(r#"{"MODULES":["x","y"],"Modules":[],"modules":[null,null]}"#).unwrap();
        assert_eq!(m.modules, Some(names(&["", ""])));
        assert_eq!(exchange(r#"{"modules":["a",1]}"#), None);
    }
}
