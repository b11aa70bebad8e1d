//! The language-neutral message description (SPEC) of `encode.jsonl`, turned
//! into a [`Message`].

use base64::Engine as _;
use beehive_model::{Content, Message, MessageHeader, MessageRoute, ModuleExchange, Number, RawJson, Value};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::LoadError;

/// `header` of a SPEC: all six keys.
#[derive(Debug, Deserialize)]
pub struct HeaderSpec {
    msg_id: String,
    parent_msg_id: String,
    timestamp: i64,
    resourceversion: String,
    sync: bool,
    #[serde(rename = "type")]
    message_type: String,
}

/// `route` of a SPEC: all five keys.
#[derive(Debug, Deserialize)]
pub struct RouteSpec {
    source: String,
    destination: String,
    group: String,
    operation: String,
    resource: String,
}

/// A message as `encode.jsonl` describes it.
#[derive(Debug, Deserialize)]
pub struct MessageSpec {
    header: HeaderSpec,
    route: RouteSpec,
    content_kind: String,
    #[serde(default, deserialize_with = "raw_present")]
    content: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    content_b64: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    content_raw: Option<Option<String>>,
    content_f64_bits: Option<String>,
}

/// Distinguishes a key given as `null` (`Some(None)`) from a missing key (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Keeps a `null` content as the JSON text `null` instead of a missing key.
fn raw_present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

fn bad(what: &str) -> LoadError {
    LoadError::Format(what.to_owned())
}

impl MessageSpec {
    /// The header.
    pub fn header(&self) -> MessageHeader {
        let h = &self.header;
        MessageHeader {
            id: h.msg_id.clone(),
            parent_id: h.parent_msg_id.clone(),
            timestamp: h.timestamp,
            resource_version: h.resourceversion.clone(),
            sync: h.sync,
            message_type: h.message_type.clone(),
        }
    }

    /// The route.
    pub fn route(&self) -> MessageRoute {
        let r = &self.route;
        MessageRoute {
            source: r.source.clone(),
            destination: r.destination.clone(),
            group: r.group.clone(),
            operation: r.operation.clone(),
            resource: r.resource.clone(),
        }
    }

    fn content_text(&self) -> Result<&str, LoadError> {
        self.content.as_deref().map(RawValue::get).ok_or_else(|| bad("content missing"))
    }

    /// The content, built the way the Go generator built it.
    pub fn content(&self) -> Result<Content, LoadError> {
        Ok(match self.content_kind.as_str() {
            "null" => Content::Null,
            "string" => Content::String(serde_json::from_str(self.content_text()?).map_err(|e| bad(&e.to_string()))?),
            "bytes" => match self.content_b64.as_ref().ok_or_else(|| bad("content_b64 missing"))? {
                None => Content::Bytes(None),
                Some(b64) => Content::from(
                    base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| bad(&e.to_string()))?,
                ),
            },
            // Go: json.Unmarshal of the text into interface{}; we use our own
            // Go-parity decoder, which the decode category checks separately.
            "json" => Content::from(
                beehive_model::decode_value(self.content_text()?.as_bytes()).map_err(|e| bad(&e.to_string()))?,
            ),
            "raw" => match self.content_raw.as_ref().ok_or_else(|| bad("content_raw missing"))? {
                // A nil json.RawMessage encodes as null, exactly like nil.
                None => Content::Null,
                Some(text) => Content::Raw(RawJson::new(text.clone().into_bytes())),
            },
            "bool" => Content::Value(Value::Bool(
                serde_json::from_str(self.content_text()?).map_err(|e| bad(&e.to_string()))?,
            )),
            "int" => Content::Value(Value::Number(Number::Int(
                serde_json::from_str(self.content_text()?).map_err(|e| bad(&e.to_string()))?,
            ))),
            "float" => {
                let bits = self.content_f64_bits.as_deref().ok_or_else(|| bad("content_f64_bits missing"))?;
                let bits = u64::from_str_radix(bits.trim_start_matches("0x"), 16).map_err(|e| bad(&e.to_string()))?;
                Content::Value(Value::Number(Number::Float(f64::from_bits(bits))))
            }
            "module_exchange" => {
                let v: serde_json::Value =
                    serde_json::from_str(self.content_text()?).map_err(|e| bad(&e.to_string()))?;
                if v.is_null() {
                    // A nil *ModuleExchange encodes as null.
                    Content::Null
                } else {
                    let m: ExchangeSpec = serde_json::from_value(v).map_err(|e| bad(&e.to_string()))?;
                    Content::ModuleExchange(ModuleExchange { modules: m.modules, groups: m.groups })
                }
            }
            other => return Err(bad(&format!("unknown content_kind {other:?}"))),
        })
    }

    /// The whole message.
    pub fn message(&self) -> Result<Message, LoadError> {
        Ok(Message::from_parts(self.header(), self.route(), self.content()?))
    }
}

#[derive(Deserialize)]
struct ExchangeSpec {
    modules: Option<Vec<String>>,
    groups: Option<std::collections::BTreeMap<String, Vec<String>>>,
}
