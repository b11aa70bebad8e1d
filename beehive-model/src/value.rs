//! A dynamic JSON value with the semantics of Go's `interface{}`.
//!
//! Go's `encoding/json` decodes a JSON value of unknown shape into
//! `map[string]interface{}`, `[]interface{}`, `string`, `float64`, `bool` or
//! `nil`. [`Value`] is that model: objects are [`Map`]s (keys kept sorted by
//! their UTF-8 bytes, which is also the order Go writes them in), and every
//! number the decoder reads is a [`Number::Float`], exactly as Go gives a
//! `float64`. Values built in Rust may also hold exact integers
//! ([`Number::Int`], [`Number::Uint`]), which are written as Go writes its
//! integer types.

use std::fmt;

pub use crate::container::{Array, Map};

/// A dynamic JSON value, Go's `interface{}` after `json.Unmarshal`.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    /// JSON `null` (Go `nil`).
    #[default]
    Null,
    /// JSON `true` or `false`.
    Bool(bool),
    /// A JSON number.
    Number(Number),
    /// A JSON string.
    String(String),
    /// A JSON array.
    Array(Array),
    /// A JSON object.
    Object(Map),
}

/// A JSON number.
///
/// The decoder always produces [`Number::Float`] (Go decodes every number
/// into an interface as `float64`). The integer variants let Rust code put
/// exact 64-bit integers into content, which Go would hold as `int64` or
/// `uint64` and write in full.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    /// A 64-bit float, written with Go's `float64` formatting. NaN and
    /// infinities cannot be encoded (Go fails with "unsupported value").
    Float(f64),
    /// A signed integer, written in decimal.
    Int(i64),
    /// An unsigned integer, written in decimal.
    Uint(u64),
}

impl Number {
    /// The number as `f64` (integers are converted, possibly rounding).
    pub fn as_f64(&self) -> f64 {
        match *self {
            Number::Float(f) => f,
            Number::Int(i) => i as f64,
            Number::Uint(u) => u as f64,
        }
    }

    /// The number as `i64` when it is an integer in range (floats included,
    /// when they have no fractional part and fit exactly).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Number::Int(i) => Some(i),
            Number::Uint(u) => i64::try_from(u).ok(),
            Number::Float(f) => {
                // 2^63 is exactly representable; anything at or above it does not fit.
                if f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
                    Some(f as i64)
                } else {
                    None
                }
            }
        }
    }

    /// The number as `u64` when it is a non-negative integer in range.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Number::Int(i) => u64::try_from(i).ok(),
            Number::Uint(u) => Some(u),
            Number::Float(f) => {
                if f.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                    Some(f as u64)
                } else {
                    None
                }
            }
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        match crate::json::write::number(&mut out, self) {
            Ok(()) => f.write_str(&String::from_utf8_lossy(&out)),
            Err(_) => write!(f, "{}", self.as_f64()),
        }
    }
}

impl Value {
    /// True for arrays and objects.
    pub fn is_container(&self) -> bool {
        matches!(self, Value::Array(_) | Value::Object(_))
    }

    /// True for `Value::Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number as `f64`, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(n.as_f64()),
            _ => None,
        }
    }

    /// The number as `i64`, if this is an integral number in range.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The members, if this is an object.
    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// Looks up `key` in an object; `None` for other values or a missing key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object().and_then(|m| m.get(key))
    }

    /// The name Go's `%T` would print for the decoded value: `nil`, `bool`,
    /// `float64`, `string`, `slice` or `map` (integers built in Rust report
    /// `int64` / `uint64`).
    pub fn go_type_name(&self) -> &'static str {
        match self {
            Value::Null => "nil",
            Value::Bool(_) => "bool",
            Value::Number(Number::Float(_)) => "float64",
            Value::Number(Number::Int(_)) => "int64",
            Value::Number(Number::Uint(_)) => "uint64",
            Value::String(_) => "string",
            Value::Array(_) => "slice",
            Value::Object(_) => "map",
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Number(Number::Float(f))
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Number(Number::Int(i))
    }
}

impl From<u64> for Value {
    fn from(u: u64) -> Self {
        Value::Number(Number::Uint(u))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::Array(Array::from(v))
    }
}

impl From<Array> for Value {
    fn from(a: Array) -> Self {
        Value::Array(a)
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Self {
        Value::Object(m)
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Number(if let Some(i) = n.as_i64() {
                Number::Int(i)
            } else if let Some(u) = n.as_u64() {
                Number::Uint(u)
            } else {
                Number::Float(n.as_f64().unwrap_or(f64::NAN))
            }),
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
            serde_json::Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, Value::from(v))).collect()),
        }
    }
}

impl TryFrom<Value> for serde_json::Value {
    type Error = crate::EncodeError;

    /// Converts to a `serde_json::Value`; fails on NaN or infinite floats,
    /// which JSON cannot represent.
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        Ok(match v {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(b),
            Value::Number(Number::Int(i)) => serde_json::Value::from(i),
            Value::Number(Number::Uint(u)) => serde_json::Value::from(u),
            Value::Number(Number::Float(f)) => serde_json::Number::from_f64(f)
                .map(serde_json::Value::Number)
                .ok_or(crate::EncodeError::UnsupportedFloat { value: f })?,
            Value::String(s) => serde_json::Value::String(s),
            Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(serde_json::Value::try_from).collect::<Result<_, _>>()?)
            }
            Value::Object(m) => serde_json::Value::Object(
                m.into_iter()
                    .map(|(k, v)| Ok((k, serde_json::Value::try_from(v)?)))
                    .collect::<Result<_, crate::EncodeError>>()?,
            ),
        })
    }
}
