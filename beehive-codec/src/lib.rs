//! # beehive-codec
//!
//! The two framings of the beehive socket protocol, wire-compatible with
//! Go's `wrapper/reader`, `wrapper/writer` and `wrapper/packer` packages:
//!
//! * **Package** ([`PackageCodec`]): a 12-byte header (`beeh`, `v1`, `rv`,
//!   big-endian `i32` length) then the payload.
//! * **Raw** ([`RawCodec`], [`raw::packet`]): one JSON document per write,
//!   ending with `\n`; one per packet on SOCK_SEQPACKET, one per line on
//!   stream sockets.
//!
//! The codecs are I/O-free state machines over `BytesMut`, usable as
//! `tokio_util::codec` decoders and encoders; [`MessageCodec`] puts Go-exact
//! message JSON on top of either. [`FrameReader`]/[`FrameWriter`] and
//! [`PacketReader`]/[`PacketWriter`] do the same over blocking
//! `std::io::{Read, Write}`; on Linux [`SeqpacketReader`] reads a batch of
//! queued packets per system call.
//!
//! Every limit is enforced before allocation: a length field is checked
//! against the configured maximum before any of its payload is buffered.
//! Every failure is a [`CodecError`] naming the cause and the byte offset.
#![deny(missing_docs)]

mod error;
mod framing;
mod io;
pub mod package;
pub mod raw;
#[cfg(target_os = "linux")]
mod seqpacket;

pub use error::CodecError;
pub use framing::{Framing, MessageCodec};
pub use io::{
    FrameReader, FrameWriter, PackageReader, PackageWriter, PacketReader, PacketWriter, RawReader, RawWriter,
    DEFAULT_READ_SIZE,
};
pub use package::{PackageCodec, PackageHeader, DEFAULT_MAX_FRAME_LEN, HEADER_LEN};
pub use raw::RawCodec;
#[cfg(target_os = "linux")]
pub use seqpacket::{Received, SeqpacketReader, DEFAULT_BATCH};

/// The crate README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
