//! The blocking readers and writers and the tokio codecs over real sockets.

use std::io::Write;
use std::os::unix::net::UnixStream;

use beehive_codec::{
    CodecError, MessageCodec, PackageCodec, PackageReader, PackageWriter, PacketReader, PacketWriter, RawCodec,
    RawReader, RawWriter,
};
use beehive_model::{constants, Message};
use futures_util::{SinkExt, StreamExt};
use socket2::{Domain, Socket, Type};
use tokio_util::codec::{FramedRead, FramedWrite};

/// Asserts that `r` is an I/O error of `kind`.
fn expect_io_error<T: std::fmt::Debug>(r: Result<T, CodecError>, kind: std::io::ErrorKind) {
    match r {
        Err(CodecError::Io(e)) => assert_eq!(e.kind(), kind),
        other => panic!("expected an I/O error ({kind:?}), got {other:?}"),
    }
}

fn sample(i: usize) -> Message {
    Message::new("")
        .build_router("bench-src", "", constants::RESOURCE_TYPE_POD, constants::UPDATE_OPERATION)
        .fill_body(format!("payload {i} {}", "x".repeat(i % 300)))
}

#[test]
fn package_stream_carries_messages_in_order() {
    let (a, b) = UnixStream::pair().unwrap();
    let msgs: Vec<Message> = (0..500).map(sample).collect();
    let sent = msgs.clone();
    let writer = std::thread::spawn(move || {
        let mut w = PackageWriter::package(a);
        for m in &sent[..250] {
            w.write_message(m).unwrap();
        }
        w.write_messages(&sent[250..]).unwrap();
    });
    let mut r = PackageReader::package(b);
    let mut got = Vec::new();
    while let Some(m) = r.read_message().unwrap() {
        got.push(m);
    }
    writer.join().unwrap();
    assert_eq!(got, msgs);
}

#[test]
fn raw_stream_carries_messages_in_order() {
    let (a, b) = UnixStream::pair().unwrap();
    let msgs: Vec<Message> = (0..200).map(sample).collect();
    let sent = msgs.clone();
    let writer = std::thread::spawn(move || {
        let mut w = RawWriter::raw(a);
        for m in &sent {
            w.write_message(m).unwrap();
        }
    });
    let mut r = RawReader::raw(b);
    let mut got = Vec::new();
    while let Some(m) = r.read_message().unwrap() {
        got.push(m);
    }
    writer.join().unwrap();
    assert_eq!(got, msgs);
}

#[test]
fn a_peer_closing_mid_frame_is_a_truncation_error() {
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"beehv1rv\x00\x00\x00\x10only-part").unwrap();
    drop(a);
    let mut r = PackageReader::package(b);
    assert!(matches!(r.read_frame(), Err(CodecError::Truncated { offset: 0, needed: 28, available: 21 })));
}

#[test]
fn seqpacket_carries_one_message_per_packet_and_detects_oversize() {
    let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    let mut w = PacketWriter::new(a);
    let msgs: Vec<Message> = (0..50).map(sample).collect();
    for m in &msgs {
        w.write_message(m).unwrap();
    }
    w.write_packet(&vec![b' '; 2000]).unwrap();
    let mut r = PacketReader::with_max_packet_len(b, 1024);
    for m in &msgs {
        assert_eq!(&r.read_message().unwrap().unwrap(), m);
    }
    assert!(matches!(r.read_packet(), Err(CodecError::PacketTooLarge { max: 1024 })));
    drop(w);
    assert!(r.read_packet().unwrap().is_none());
}

#[tokio::test]
async fn tokio_framed_package_and_raw_streams() {
    for package in [true, false] {
        let (a, b) = tokio::io::duplex(64);
        let msgs: Vec<Message> = (0..100).map(sample).collect();
        let sent = msgs.clone();
        let writer = tokio::spawn(async move {
            if package {
                let mut sink = FramedWrite::new(a, MessageCodec::new(PackageCodec::new()));
                for m in sent {
                    sink.send(m).await.unwrap();
                }
            } else {
                let mut sink = FramedWrite::new(a, MessageCodec::new(RawCodec::new()));
                for m in sent {
                    sink.send(m).await.unwrap();
                }
            }
        });
        let got: Vec<Message> = if package {
            FramedRead::new(b, MessageCodec::new(PackageCodec::new())).map(|r| r.unwrap()).collect().await
        } else {
            FramedRead::new(b, MessageCodec::new(RawCodec::new())).map(|r| r.unwrap()).collect().await
        };
        writer.await.unwrap();
        assert_eq!(got, msgs);
    }
}

#[tokio::test]
async fn tokio_framed_read_reports_a_bad_frame_with_its_offset() {
    let input: &[u8] = b"beehv1rv\x00\x00\x00\x02{}beehv1rv\x00\x00\x00\x03{x}";
    let mut frames = FramedRead::new(input, MessageCodec::new(PackageCodec::new()));
    assert!(frames.next().await.unwrap().is_ok());
    match frames.next().await.unwrap() {
        Err(CodecError::Json { offset: 26, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[cfg(target_os = "linux")]
#[test]
fn batched_seqpacket_reader_takes_queued_packets_and_flags_truncation() {
    use beehive_codec::SeqpacketReader;
    let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    let mut w = PacketWriter::new(a);
    let msgs: Vec<Message> = (0..40).map(sample).collect();
    for m in &msgs[..20] {
        w.write_message(m).unwrap();
    }
    w.write_packet(&vec![b' '; 3000]).unwrap();
    for m in &msgs[20..] {
        w.write_message(m).unwrap();
    }
    let mut r = SeqpacketReader::with_batch(b, 1024, 8);
    for m in &msgs[..20] {
        assert_eq!(&r.read_message().unwrap().unwrap(), m);
    }
    assert!(matches!(r.read_packet(), Err(CodecError::PacketTooLarge { max: 1024 })));
    for m in &msgs[20..] {
        assert_eq!(&r.read_message().unwrap().unwrap(), m);
    }
    drop(w);
    assert!(r.read_packet().unwrap().is_none());
}

#[tokio::test]
async fn tokio_framed_read_takes_a_last_raw_message_without_its_line_feed_and_rejects_a_cut_package() {
    // The stream ends right after the last JSON document: only `decode_eof`
    // can hand it out.
    let (first, last) = (sample(1), sample(2));
    let mut input = beehive_model::to_vec(&first).unwrap();
    input.push(b'\n');
    input.extend(beehive_model::to_vec(&last).unwrap());
    let got: Vec<Message> =
        FramedRead::new(&input[..], MessageCodec::new(RawCodec::new())).map(|r| r.unwrap()).collect().await;
    assert_eq!(got, [first.clone(), last]);

    // A Package frame cut short by the end of the stream is an error, not
    // a clean end.
    let mut frame = bytes::BytesMut::new();
    tokio_util::codec::Encoder::encode(&mut MessageCodec::new(PackageCodec::new()), &first, &mut frame).unwrap();
    let cut = &frame[..frame.len() - 1];
    let mut frames = FramedRead::new(cut, MessageCodec::new(PackageCodec::new()));
    match frames.next().await {
        Some(Err(e)) => assert!(matches!(e, CodecError::Truncated { .. }) && e.is_protocol_error(), "{e:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_errors_caused_by_the_bytes_received_are_protocol_errors() {
    let io = CodecError::Io(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
    assert!(!io.is_protocol_error());
    let mut out = bytes::BytesMut::new();
    let nan = Message::new("").fill_body(beehive_model::Value::from(f64::NAN));
    let encode =
        tokio_util::codec::Encoder::encode(&mut MessageCodec::new(RawCodec::new()), &nan, &mut out).unwrap_err();
    assert!(matches!(encode, CodecError::Encode(_)) && !encode.is_protocol_error(), "{encode:?}");
    let config = PackageCodec::with_max_frame_len(11).unwrap_err();
    assert!(matches!(config, CodecError::InvalidConfig(_)) && !config.is_protocol_error(), "{config:?}");
    let bad = PackageReader::package(&b"beehv9rv\x00\x00\x00\x02{}"[..]).read_message().unwrap_err();
    assert!(bad.is_protocol_error(), "{bad:?}");
}

#[test]
fn a_blocking_reader_reads_64_kib_at_a_time_by_default() {
    /// Records the size of every read asked of it.
    struct Recording<'a>(&'a [u8], Vec<usize>);
    impl std::io::Read for Recording<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1.push(buf.len());
            self.0.read(buf)
        }
    }
    let mut line = beehive_model::to_vec(&sample(3)).unwrap();
    line.push(b'\n');
    let mut r = RawReader::raw(Recording(&line, Vec::new()));
    assert!(r.read_message().unwrap().is_some());
    assert_eq!(r.get_ref().1, [64 * 1024]);
}

#[test]
fn a_blocking_reader_retries_an_interrupted_read_and_reports_any_other_failure() {
    /// Fails its first read with the kind given, then reads from the bytes.
    struct FailingOnce<'a>(Option<std::io::ErrorKind>, &'a [u8]);
    impl std::io::Read for FailingOnce<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.take() {
                Some(kind) => Err(kind.into()),
                None => self.1.read(buf),
            }
        }
    }
    let mut line = beehive_model::to_vec(&sample(4)).unwrap();
    line.push(b'\n');
    let mut r = RawReader::raw(FailingOnce(Some(std::io::ErrorKind::Interrupted), &line));
    assert_eq!(r.read_message().unwrap().map(|m| m.content().clone()), Some(sample(4).content().clone()));
    let mut r = RawReader::raw(FailingOnce(Some(std::io::ErrorKind::ConnectionReset), &line));
    expect_io_error(r.read_message(), std::io::ErrorKind::ConnectionReset);
}

#[cfg(target_os = "linux")]
#[test]
fn a_seqpacket_reader_polls_without_blocking_and_tells_empty_from_closed() {
    use beehive_codec::{Received, SeqpacketReader};
    use std::time::{Duration, Instant};
    let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    // Were the poll to block, it would sit here until this timeout.
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = SeqpacketReader::with_batch(b, 100, 2);
    let t0 = Instant::now();
    assert!(matches!(r.try_read_packet().unwrap(), Received::Empty));
    assert!(t0.elapsed() < Duration::from_secs(1), "the poll blocked for {:?}", t0.elapsed());
    let mut w = PacketWriter::new(a);
    // Three packets over a batch of two: the third needs a second call.
    for p in [&b"one"[..], b"two", b"three"] {
        w.write_packet(p).unwrap();
    }
    let mut got = Vec::new();
    loop {
        match r.try_read_packet().unwrap() {
            Received::Packet(p) => got.push(p.to_vec()),
            Received::Empty => break,
            Received::Closed => panic!("closed after {got:?}"),
        }
    }
    assert_eq!(got, [&b"one"[..], b"two", b"three"]);
    drop(w);
    assert!(matches!(r.try_read_packet().unwrap(), Received::Closed));
}

#[cfg(target_os = "linux")]
#[test]
fn a_blocking_seqpacket_read_that_times_out_is_an_error_not_a_close() {
    use beehive_codec::SeqpacketReader;
    let (_a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    b.set_read_timeout(Some(std::time::Duration::from_millis(20))).unwrap();
    let mut r = SeqpacketReader::new(b, 100);
    expect_io_error(r.read_packet(), std::io::ErrorKind::WouldBlock);
}

#[cfg(target_os = "linux")]
#[test]
fn a_packet_reader_takes_a_packet_of_exactly_its_maximum() {
    let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    let mut w = PacketWriter::new(a);
    w.write_packet(&[b' '; 100]).unwrap();
    w.write_packet(&[b' '; 101]).unwrap();
    let mut r = PacketReader::with_max_packet_len(b, 100);
    assert_eq!(r.read_packet().unwrap().map(<[u8]>::len), Some(100));
    assert!(matches!(r.read_packet(), Err(CodecError::PacketTooLarge { max: 100 })));

    // By default, up to 64 KiB.
    let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    a.set_send_buffer_size(1 << 20).unwrap();
    let mut w = PacketWriter::new(a);
    w.write_packet(&vec![b' '; 65_536]).unwrap();
    w.write_packet(&vec![b' '; 65_537]).unwrap();
    let mut r = PacketReader::new(b);
    assert_eq!(r.read_packet().unwrap().map(<[u8]>::len), Some(65_536));
    assert!(matches!(r.read_packet(), Err(CodecError::PacketTooLarge { max: 65_536 })));
}

/// A writer that fails its first write with `fail`, then keeps everything,
/// and counts its flushes.
struct Sink {
    fail: Option<std::io::ErrorKind>,
    written: Vec<u8>,
    writes: usize,
    flushes: usize,
}

impl Sink {
    fn failing_once(fail: Option<std::io::ErrorKind>) -> Self {
        Sink { fail, written: Vec::new(), writes: 0, flushes: 0 }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(kind) = self.fail.take() {
            return Err(kind.into());
        }
        self.writes += 1;
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.flushes += 1;
        Ok(())
    }
}

#[test]
fn a_packet_writer_retries_an_interrupted_write_and_reports_any_other_failure() {
    let mut w = PacketWriter::new(Sink::failing_once(Some(std::io::ErrorKind::Interrupted)));
    w.write_packet(b"hello").unwrap();
    assert_eq!((w.get_ref().written.as_slice(), w.get_ref().writes), (&b"hello"[..], 1));
    let mut w = PacketWriter::new(Sink::failing_once(Some(std::io::ErrorKind::BrokenPipe)));
    expect_io_error(w.write_packet(b"hello"), std::io::ErrorKind::BrokenPipe);
    assert!(w.get_ref().written.is_empty());
}

#[test]
fn frame_writers_write_payloads_as_frames_and_flush_their_writer() {
    let mut w = PackageWriter::package(Sink::failing_once(None));
    w.write_frame(b"{}").unwrap();
    w.flush().unwrap();
    assert_eq!(w.get_ref().written, b"beehv1rv\x00\x00\x00\x02{}");
    assert_eq!(w.get_ref().flushes, 1);
    // Go's raw `Write`: the payload verbatim, no line feed added.
    let mut w = RawWriter::raw(Sink::failing_once(None));
    w.write_frame(b"{}").unwrap();
    assert_eq!(w.get_ref().written, b"{}");
}

#[test]
fn a_reader_stopped_by_a_read_error_tells_how_much_of_a_frame_it_holds() {
    /// Hands out its bytes, then fails.
    struct ThenFail<'a>(&'a [u8]);
    impl std::io::Read for ThenFail<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            self.0.read(buf)
        }
    }
    let mut r = PackageReader::package(ThenFail(b"beehv1rv\x00\x00\x00\x05{\"a\""));
    assert!(matches!(r.read_message(), Err(CodecError::Io(_))));
    assert_eq!(r.buffered(), 16);
}
