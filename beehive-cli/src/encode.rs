//! `beehive encode`: one message, in Go's exact bytes, to stdout.

use std::io::{self, Read, Write};

use anyhow::Context as _;
use beehive_codec::{PackageCodec, RawCodec};
use beehive_model::{Content, Message};
use bytes::BytesMut;

use crate::cli::{EncodeArgs, EncodeFraming};
use crate::EXIT_OK;

/// Why the arguments do not make a message.
#[derive(Debug, thiserror::Error)]
pub enum EncodeArgError {
    /// `--content` is not one JSON document.
    #[error("--content {origin} is not valid JSON: {source}")]
    ContentNotJson {
        /// `text` or the file it came from.
        origin: String,
        /// Where and what.
        source: beehive_model::DecodeError,
    },
}

/// Runs `encode`.
pub fn run(args: &EncodeArgs) -> anyhow::Result<u8> {
    let msg = build(args)?;
    let mut buf = BytesMut::new();
    match args.framing {
        EncodeFraming::Raw => RawCodec::new().encode_message(&msg, &mut buf),
        EncodeFraming::Package => {
            // Any length the header can carry (the encoder refuses a payload
            // over its int32 field): the limit is the reader's business.
            PackageCodec::with_max_frame_len(usize::MAX).and_then(|mut c| c.encode_message(&msg, &mut buf))
        }
    }
    .context("cannot encode the message")?;
    let mut out = io::stdout().lock();
    out.write_all(&buf).and_then(|()| out.flush()).context("cannot write to stdout")?;
    Ok(EXIT_OK)
}

/// The message the arguments describe.
pub fn build(args: &EncodeArgs) -> anyhow::Result<Message> {
    let content = content(args)?;
    let mut msg = Message::new(args.parent.as_str());
    if let Some(id) = &args.msg_id {
        msg.header_mut().id.clone_from(id);
    }
    if let Some(ts) = args.timestamp {
        msg.header_mut().timestamp = ts;
    }
    Ok(msg
        .build_router(args.source.as_str(), args.group.as_str(), args.resource.as_str(), args.operation.as_str())
        .set_destination(args.destination.as_str())
        .set_type(args.message_type.as_str())
        .set_resource_version(args.resource_version.as_str())
        .set_sync(args.sync)
        .fill_body(content))
}

fn content(args: &EncodeArgs) -> anyhow::Result<Content> {
    if let Some(s) = &args.content_string {
        return Ok(Content::String(s.clone()));
    }
    let Some(text) = &args.content else {
        return Ok(Content::Null);
    };
    let (bytes, origin) = match text.strip_prefix('@') {
        Some("-") => {
            let mut b = Vec::new();
            io::stdin().lock().read_to_end(&mut b).context("cannot read --content from stdin")?;
            (b, "from stdin".to_owned())
        }
        Some(path) => {
            let b = std::fs::read(path).with_context(|| format!("cannot read --content file {path}"))?;
            (b, format!("file {path}"))
        }
        None => (text.as_bytes().to_vec(), "text".to_owned()),
    };
    // Go's json.Unmarshal into an interface{}: a string stays a string,
    // null is nil, numbers are float64, objects are maps.
    let value =
        beehive_model::decode_value(&bytes).map_err(|source| EncodeArgError::ContentNotJson { origin, source })?;
    Ok(Content::from(value))
}
