//! The socket connection's read loop over an in-process socket pair.
//!
//! Input: three configuration bytes, then the data.
//! * byte 0: the transport (`& 3`: 1 raw stream, 2 package stream, else
//!   SOCK_SEQPACKET packets); with packets, bit 7 adds an empty packet
//!   before packet number `(byte 0 >> 2) & 31`.
//! * byte 1: the maximum frame or packet size, `13 + 16 * byte 1`.
//! * byte 2: below 32, the index of the message the handler refuses.
//!
//! On a packet connection each line of the data (its line feed included,
//! as Go's writer sends it) is one packet; on a stream the data is the byte
//! stream.
//!
//! Invariants: no panic; the loop delivers exactly the messages that the
//! sans-IO decoding of the same packets or stream yields, in order, and
//! stops where the code promises, with the reason naming the typed error:
//! at the first packet that is too large or not a message (reported as
//! `read failed: <CodecError>`), at an empty packet or the end of the stream
//! (`peer closed the connection`), or at the handler's refusal; the
//! connection is closed afterwards.
#![no_main]

use beehive_codec::{CodecError, Framing, PackageCodec, RawCodec, HEADER_LEN};
use beehive_model::Message;
use beehive_socket::fuzz_bridge::{self, ReadOutcome, REJECTED};
use beehive_socket::StreamFraming;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

const CLOSED: &str = "peer closed the connection";

/// What the read loop must have done, worked out without sockets.
struct Expected {
    delivered: Vec<Message>,
    reason: String,
}

impl Expected {
    fn new() -> Self {
        Expected { delivered: Vec::new(), reason: CLOSED.to_owned() }
    }

    /// Hands a decoded message to the model of the handler; false when the
    /// loop stops here.
    fn deliver(&mut self, msg: Message, reject_at: Option<usize>) -> bool {
        if Some(self.delivered.len()) == reject_at {
            self.reason = REJECTED.to_owned();
            return false;
        }
        self.delivered.push(msg);
        true
    }

    fn fail(&mut self, e: CodecError) {
        self.reason = format!("read failed: {e}");
    }
}

fn packets(sent: &[&[u8]], max: usize, reject_at: Option<usize>) -> Expected {
    let mut exp = Expected::new();
    for p in sent {
        if p.is_empty() {
            // A zero-length read is the end of the connection (as in Go).
            break;
        }
        if p.len() > max {
            exp.fail(CodecError::PacketTooLarge { max });
            break;
        }
        match beehive_codec::raw::packet::decode(p) {
            Ok(msg) => {
                if !exp.deliver(msg, reject_at) {
                    break;
                }
            }
            Err(e) => {
                exp.fail(e);
                break;
            }
        }
    }
    exp
}

fn stream(bytes: &[u8], mut codec: Box<dyn Framing>, reject_at: Option<usize>) -> Expected {
    let mut exp = Expected::new();
    let mut buf = BytesMut::from(bytes);
    loop {
        let next = match codec.decode_frame(&mut buf) {
            Ok(None) => codec.decode_frame_eof(&mut buf),
            other => other,
        };
        match next {
            Ok(None) => break,
            Ok(Some(frame)) => match beehive_model::from_slice(&frame) {
                Ok(msg) => {
                    if !exp.deliver(msg, reject_at) {
                        break;
                    }
                }
                Err(source) => {
                    exp.fail(CodecError::Json { offset: codec.last_frame_offset(), source });
                    break;
                }
            },
            Err(e) => {
                exp.fail(e);
                break;
            }
        }
    }
    exp
}

fn compare(got: &ReadOutcome, exp: &Expected) {
    assert!(got.closed, "the connection is closed after its read loop");
    assert_eq!(got.reason, exp.reason);
    let encode = |m: &Message| beehive_model::to_vec(m).ok();
    let got: Vec<_> = got.delivered.iter().map(encode).collect();
    let exp: Vec<_> = exp.delivered.iter().map(encode).collect();
    assert_eq!(got, exp, "delivered messages");
}

fuzz_target!(|data: &[u8]| {
    let Some((&[mode, size, reject], input)) = data.split_first_chunk::<3>() else {
        return;
    };
    // Everything fits in one read of the stream reader (64 KiB).
    let input = &input[..input.len().min(60 * 1024)];
    // The connection raises smaller limits to this.
    let max = (13 + 16 * usize::from(size)).max(HEADER_LEN + 1);
    let reject_at = (reject < 32).then_some(usize::from(reject));
    match mode & 3 {
        1 | 2 => {
            let (framing, codec): (_, Box<dyn Framing>) = if mode & 3 == 1 {
                (StreamFraming::Raw, Box::new(RawCodec::with_max_line_len(max).expect("max > 0")))
            } else {
                (StreamFraming::Package, Box::new(PackageCodec::with_max_frame_len(max).expect("max >= header")))
            };
            let got = fuzz_bridge::read_stream(input, framing, max, reject_at).expect("socket pair");
            compare(&got, &stream(&input[..got.written], codec, reject_at));
        }
        _ => {
            let mut list: Vec<&[u8]> = input.split_inclusive(|&b| b == b'\n').take(256).collect();
            if mode & 0x80 != 0 {
                let at = usize::from((mode >> 2) & 31).min(list.len());
                list.insert(at, b"");
            }
            let got = fuzz_bridge::read_packets(&list, max, reject_at).expect("socket pair");
            compare(&got, &packets(&list[..got.written], max, reject_at));
        }
    }
});
