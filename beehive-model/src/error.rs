//! Encoding and decoding errors.

use std::fmt;

/// Why a message could not be written as JSON. Go's `json.Marshal` fails in
/// the same cases.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A NaN or infinite float in the content (Go: "json: unsupported value").
    #[error("unsupported value: {}", go_float_name(*value))]
    UnsupportedFloat {
        /// The offending value.
        value: f64,
    },
    /// Raw JSON content that is not one valid JSON value (Go: "error calling
    /// MarshalJSON for type json.RawMessage").
    #[error("invalid raw JSON content: {source}")]
    InvalidRawJson {
        /// What is wrong with it, and where.
        source: DecodeError,
    },
}

fn go_float_name(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
}

/// Where in the JSON grammar an unexpected byte was found. The wording is
/// Go's scanner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyntaxContext {
    /// Where a value must start.
    ValueStart,
    /// Where an object key must start.
    ObjectKeyStart,
    /// After an object key, where `:` must follow.
    AfterObjectKey,
    /// After an object member, where `,` or `}` must follow.
    AfterObjectValue,
    /// After an array element, where `,` or `]` must follow.
    AfterArrayElement,
    /// After the top-level value, where only whitespace may follow.
    AfterTopLevelValue,
    /// Inside a string (a raw control character).
    InString,
    /// After a backslash in a string.
    InStringEscape,
    /// Inside a `\u` escape.
    InUnicodeEscape,
    /// Inside a number.
    InNumber,
    /// After the decimal point of a number.
    AfterDecimalPoint,
    /// Inside the exponent of a number.
    InExponent,
    /// Inside `true`, `false` or `null`.
    InLiteral {
        /// The literal being read.
        literal: &'static str,
        /// The byte that was expected.
        expected: u8,
    },
}

impl fmt::Display for SyntaxContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyntaxContext::ValueStart => f.write_str("looking for beginning of value"),
            SyntaxContext::ObjectKeyStart => f.write_str("looking for beginning of object key string"),
            SyntaxContext::AfterObjectKey => f.write_str("after object key"),
            SyntaxContext::AfterObjectValue => f.write_str("after object key:value pair"),
            SyntaxContext::AfterArrayElement => f.write_str("after array element"),
            SyntaxContext::AfterTopLevelValue => f.write_str("after top-level value"),
            SyntaxContext::InString => f.write_str("in string literal"),
            SyntaxContext::InStringEscape => f.write_str("in string escape code"),
            SyntaxContext::InUnicodeEscape => f.write_str("in \\u hexadecimal character escape"),
            SyntaxContext::InNumber => f.write_str("in numeric literal"),
            SyntaxContext::AfterDecimalPoint => f.write_str("after decimal point in numeric literal"),
            SyntaxContext::InExponent => f.write_str("in exponent of numeric literal"),
            SyntaxContext::InLiteral { literal, expected } => {
                write!(f, "in literal {literal} (expecting '{}')", *expected as char)
            }
        }
    }
}

/// The JSON kind of a value found where another was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonKind {
    /// A string.
    String,
    /// A number.
    Number,
    /// `true` or `false`.
    Bool,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::String => "string",
            JsonKind::Number => "number",
            JsonKind::Bool => "bool",
            JsonKind::Array => "array",
            JsonKind::Object => "object",
        })
    }
}

fn describe_byte(b: u8) -> String {
    match b {
        // Go's quoteChar escapes the quote only: `'"'` is written as is.
        b'\'' => "'\\''".to_owned(),
        0x20..=0x7e => format!("'{}'", b as char),
        _ => format!("byte 0x{b:02x}"),
    }
}

/// Why JSON input could not be decoded. Every variant says where (a byte
/// offset into the input) and what.
///
/// Syntax errors ([`UnexpectedEnd`](Self::UnexpectedEnd),
/// [`InvalidCharacter`](Self::InvalidCharacter),
/// [`DepthLimit`](Self::DepthLimit)) reject the whole input, as Go does.
/// Type errors ([`WrongType`](Self::WrongType),
/// [`NumberOutOfRange`](Self::NumberOutOfRange)) are reported after the rest
/// of the document has been read; Go's decoder keeps every other field in
/// that case, which [`decode_into`](crate::decode_into) reproduces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a value (or held no value at all).
    #[error("unexpected end of JSON input at byte {offset}")]
    UnexpectedEnd {
        /// The input length.
        offset: usize,
    },
    /// A byte the JSON grammar does not allow here.
    #[error("invalid character {} {context} at byte {offset}", describe_byte(*byte))]
    InvalidCharacter {
        /// Offset of the byte.
        offset: usize,
        /// The byte.
        byte: u8,
        /// What the parser was looking for.
        context: SyntaxContext,
    },
    /// Arrays and objects nested deeper than Go's limit of 10000.
    #[error("nesting deeper than {limit} levels at byte {offset}")]
    DepthLimit {
        /// Offset of the bracket that went too deep.
        offset: usize,
        /// The limit.
        limit: usize,
    },
    /// A value of the wrong JSON type for a message field.
    #[error("cannot decode a JSON {found} into {field} ({expected}) at byte {offset}")]
    WrongType {
        /// Offset of the value.
        offset: usize,
        /// The field, as `header.timestamp` or `message`.
        field: &'static str,
        /// The type the field holds.
        expected: &'static str,
        /// What was found.
        found: JsonKind,
    },
    /// A number that does not fit the field (an integer field given a
    /// fraction, an exponent or more than 64 bits; a content number beyond
    /// the float64 range).
    #[error("number {literal} does not fit {field} ({expected}) at byte {offset}")]
    NumberOutOfRange {
        /// Offset of the number.
        offset: usize,
        /// The field.
        field: &'static str,
        /// The type the field holds.
        expected: &'static str,
        /// The number as written (cut at 64 bytes).
        literal: String,
    },
}

impl DecodeError {
    /// The byte offset the error refers to.
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::UnexpectedEnd { offset }
            | DecodeError::InvalidCharacter { offset, .. }
            | DecodeError::DepthLimit { offset, .. }
            | DecodeError::WrongType { offset, .. }
            | DecodeError::NumberOutOfRange { offset, .. } => *offset,
        }
    }

    /// True for syntax errors, which Go reports before storing anything.
    pub fn is_syntax(&self) -> bool {
        matches!(
            self,
            DecodeError::UnexpectedEnd { .. } | DecodeError::InvalidCharacter { .. } | DecodeError::DepthLimit { .. }
        )
    }
}
