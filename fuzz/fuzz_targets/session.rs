//! The sans-IO session fed arbitrary packets, stream bytes, clock advances,
//! sends and write progress, in the server and the client role.
//!
//! Input: two configuration bytes, then operations.
//! * byte 0: bit 0 the role (0 server, 1 client); bits 1-2 the transport
//!   (1 raw stream, 2 package stream, else SOCK_SEQPACKET); bit 3 gives the
//!   server an allow list and a shared registry (with a second session
//!   holding `other`).
//! * byte 1: the frame limit, `13 + 16 * byte 1`.
//! * operations, one byte each, some followed by arguments:
//!   `0` + 2-byte little-endian length + data: received (one packet, or
//!   stream bytes); `1` + n: the clock advances by `n * 50` ms and timeouts
//!   fire; `2`: one frame is transmitted and written; `3` + n: one frame is
//!   transmitted and `n` bytes of it written; `4` + k: a send (`send`,
//!   `send_sync`, `send_to_group`, `send_resp` or `send_message`, by `k`);
//!   `5`: end of stream; `6`: close; `7`: a valid handshake input (a
//!   server gets a registration, a client the answer to its registration).
//!
//! Invariants: no panic; every transmitted frame is one well-formed frame
//! of the transport within the frame limit, carrying a message; the receive
//! buffer never holds more than one frame limit and the outbound queue
//! never more than its bound; `Closed` is the last event and a closed
//! session transmits nothing and sets no timer; `poll_timeout` never lies
//! in the past after `handle_timeout`.
#![no_main]

use std::time::{Duration, Instant};

use beehive_codec::{PackageCodec, HEADER_LEN};
use beehive_model::{Message, ModuleExchange};
use beehive_socket::session::{Event, ModuleRegistry, Session, SessionConfig, TransportKind};
use beehive_socket::StreamFraming;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

const QUEUE_BYTES: usize = 64 * 1024;

fn check_frame(transport: TransportKind, max: usize, frame: &[u8]) {
    assert!(!frame.is_empty());
    match transport {
        TransportKind::Packet => {
            assert!(frame.len() <= max, "packet of {} bytes over {max}", frame.len());
            assert_eq!(frame.last(), Some(&b'\n'));
            beehive_model::from_slice(frame).expect("a transmitted packet is a message");
        }
        TransportKind::Stream(StreamFraming::Raw) => {
            assert_eq!(frame.last(), Some(&b'\n'));
            assert!(frame.len() - 1 <= max);
            assert_eq!(memchr_count(frame), 1, "one line per frame");
            beehive_model::from_slice(frame).expect("a transmitted line is a message");
        }
        _ => {
            let mut codec = PackageCodec::with_max_frame_len(max).expect("limit");
            let mut buf = BytesMut::from(frame);
            let payload = codec.decode_frame(&mut buf).expect("a valid frame").expect("a whole frame");
            assert!(buf.is_empty(), "exactly one frame");
            beehive_model::from_slice(&payload).expect("a transmitted frame is a message");
        }
    }
}

fn memchr_count(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

fuzz_target!(|data: &[u8]| {
    let Some((&[mode, size], mut ops)) = data.split_first_chunk::<2>() else { return };
    let max = (13 + 16 * usize::from(size)).max(HEADER_LEN + 1);
    let transport = match (mode >> 1) & 3 {
        1 => TransportKind::Stream(StreamFraming::Raw),
        2 => TransportKind::Stream(StreamFraming::Package),
        _ => TransportKind::Packet,
    };
    let client = mode & 1 == 1;
    let t0 = Instant::now();
    let mut now = t0;
    let registry = ModuleRegistry::new();
    let mut config = if client {
        SessionConfig::client("edgeclient", transport)
    } else {
        SessionConfig::server("socketserver", transport).local_module("edged", "core")
    };
    config = config
        .max_frame_len(max)
        .max_queued_bytes(QUEUE_BYTES)
        .max_queued_frames(64)
        .max_pending_requests(16)
        .idle_timeout(if mode & 0x10 != 0 { Some(Duration::from_secs(5)) } else { None })
        .stall_timeout(Duration::from_secs(2))
        .handshake_timeout(Duration::from_secs(8))
        .write_timeout(Some(Duration::from_secs(4)));
    let mut other = None;
    if mode & 8 != 0 && !client {
        config = config.allow_module("edgeclient").allow_module("other").registry(registry.clone());
        let mut o = Session::new(config.clone(), t0);
        let reg = beehive_socket::handshake_request("other").set_sync(true);
        match transport {
            TransportKind::Packet => o.handle_packet(&beehive_model::to_vec_line(&reg).unwrap(), t0),
            _ => {
                let mut buf = BytesMut::new();
                if transport == TransportKind::Stream(StreamFraming::Package) {
                    let _ = PackageCodec::new().encode_message(&reg, &mut buf);
                } else {
                    buf.extend_from_slice(&beehive_model::to_vec_line(&reg).unwrap());
                }
                o.handle_bytes(&buf, t0);
            }
        }
        other = Some(o);
    }
    let max = config.get_max_frame_len();
    let mut s = Session::new(config, t0);
    let mut registration: Option<Message> = None;
    let mut last_received: Option<Message> = None;
    let mut closed = false;
    let mut steps = 0;
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        steps += 1;
        if steps > 512 {
            break;
        }
        match op % 8 {
            0 => {
                let Some((&[a, b], rest)) = ops.split_first_chunk::<2>() else { break };
                let len = usize::from(u16::from_le_bytes([a, b])).min(rest.len());
                let (input, rest) = rest.split_at(len);
                ops = rest;
                match transport {
                    TransportKind::Packet => s.handle_packet(input, now),
                    _ => s.handle_bytes(input, now),
                }
            }
            1 => {
                let Some((&n, rest)) = ops.split_first() else { break };
                ops = rest;
                now += Duration::from_millis(50 * u64::from(n));
                s.handle_timeout(now);
                if let Some(t) = s.poll_timeout() {
                    assert!(t > now, "a timer left in the past");
                }
            }
            2 | 3 => {
                let partial = if op % 8 == 3 {
                    let Some((&n, rest)) = ops.split_first() else { break };
                    ops = rest;
                    Some(usize::from(n))
                } else {
                    None
                };
                if let Some(t) = s.poll_transmit() {
                    assert!(!closed, "a closed session transmits");
                    check_frame(transport, max, &t.frame);
                    if let Ok(m) = beehive_model::from_slice(&t.frame[..]) {
                        if m.resource() == "module" && m.operation() == "add" {
                            registration = Some(m);
                        }
                    }
                    let n = partial.map_or(t.frame.len(), |n| n.min(t.frame.len()));
                    s.handle_written(n, now);
                }
            }
            4 => {
                let Some((&k, rest)) = ops.split_first() else { break };
                ops = rest;
                let peer = if client { "socketserver" } else { "edgeclient" };
                let msg = Message::new("")
                    .build_router(if client { "edgeclient" } else { "srvdriver" }, "grp", "res", "update")
                    .fill_body("x".repeat(usize::from(k) * 8));
                let _ = match k % 5 {
                    0 => s.send(peer, msg, now).map(drop),
                    1 => s.send_sync(peer, msg, Duration::from_millis(100 * u64::from(k)), now).map(drop),
                    2 => s.send_to_group(peer, msg, now).map(drop),
                    3 => match &last_received {
                        Some(m) => s.send_resp(m.new_response("ok"), now),
                        None => s.send_message(msg, now),
                    },
                    _ => s.send_message(msg, now),
                };
            }
            5 => s.handle_eof(now),
            6 => s.close(),
            _ => {
                let input = if client {
                    let Some(reg) = &registration else { continue };
                    let exchange = ModuleExchange {
                        modules: Some(vec!["socketserver".into(), "edged".into()]),
                        groups: Some([("socketserver".to_owned(), vec!["socketserver".to_owned()])].into()),
                    };
                    reg.new_response(exchange).set_destination("edgeclient")
                } else {
                    beehive_socket::handshake_request("edgeclient").set_sync(true)
                };
                let mut buf = BytesMut::new();
                match transport {
                    TransportKind::Stream(StreamFraming::Package) => {
                        let _ = PackageCodec::new().encode_message(&input, &mut buf);
                        s.handle_bytes(&buf, now);
                    }
                    TransportKind::Packet => s.handle_packet(&beehive_model::to_vec_line(&input).unwrap(), now),
                    _ => s.handle_bytes(&beehive_model::to_vec_line(&input).unwrap(), now),
                }
            }
        }
        assert!(s.inbound_buffered() <= max + 1, "receive buffer {} over {max}", s.inbound_buffered());
        assert!(s.outbound_queued() <= QUEUE_BYTES + 64 * 1024, "outbound {}", s.outbound_queued());
        while let Some(e) = s.poll_event() {
            assert!(!closed, "an event after Closed: {e:?}");
            match e {
                Event::Closed { .. } => closed = true,
                Event::Message(m) | Event::UnmatchedResponse(m) => last_received = Some(m),
                _ => {}
            }
        }
        assert_eq!(closed, s.is_closed());
        if closed {
            assert!(s.poll_transmit().is_none());
            assert!(s.poll_timeout().is_none());
        }
    }
    drop(s);
    if let Some(o) = &other {
        // Only the other session still owns a name (if its registration fit
        // the frame limit).
        assert!(registry.len() <= 1);
        assert_eq!(registry.owner("other"), o.is_connected().then(|| o.id()));
    }
});
