//! The sans-IO session driven with byte sequences and a fake clock: no
//! sockets, no threads, no sleeping.

use std::time::{Duration, Instant};

use beehive_codec::CodecError;
use beehive_model::{Content, Message};
use beehive_socket::session::{
    CloseReason, Event, IoDirection, ModuleDirectory, ModuleRegistry, Refusal, Session, SessionConfig, SessionError,
    TransportKind,
};
use beehive_socket::StreamFraming;

/// Go's registration, as captured (conformance `sessions/handshake.jsonl`, seq 1).
const GO_REGISTRATION: &str = "{\"header\":{\"msg_id\":\"00000000-0000-4000-8000-000000000001\",\"timestamp\":1600000000001,\"sync\":true,\"type\":\"unixpacket\"},\"route\":{\"source\":\"edgeclient\",\"operation\":\"add\",\"resource\":\"module\"},\"content\":\"\"}\n";
/// Go's handshake answer, as captured (conformance `sessions/handshake.jsonl`, seq 2).
const GO_ANSWER: &str = "{\"header\":{\"msg_id\":\"00000000-0000-4000-8000-000000000002\",\"parent_msg_id\":\"00000000-0000-4000-8000-000000000001\",\"timestamp\":1600000000002,\"type\":\"unixpacket\"},\"route\":{\"source\":\"edgeclient\",\"destination\":\"edgeclient\",\"operation\":\"response\",\"resource\":\"module\"},\"content\":{\"modules\":[\"socketserver\"],\"groups\":{\"socketserver\":[\"socketserver\"]}}}\n";

const SERVER: &str = "socketserver";
const CLIENT: &str = "edgeclient";
const NS: Duration = Duration::from_nanos(1);

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

fn server_config(transport: TransportKind) -> SessionConfig {
    SessionConfig::server(SERVER, transport).allow_module(CLIENT).max_frame_len(4096)
}

fn client_config(transport: TransportKind) -> SessionConfig {
    SessionConfig::client(CLIENT, transport).max_frame_len(4096)
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn frames(s: &mut Session, now: Instant) -> Vec<bytes::Bytes> {
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit() {
        s.handle_written(t.frame.len(), now);
        out.push(t.frame);
    }
    out
}

/// Feeds what `from` transmits to `to` (whole packets, or the stream bytes).
fn flow(from: &mut Session, to: &mut Session, now: Instant) -> usize {
    let fs = frames(from, now);
    for f in &fs {
        match to.config().get_transport() {
            TransportKind::Packet => to.handle_packet(f, now),
            _ => to.handle_bytes(f, now),
        }
    }
    fs.len()
}

fn pump(a: &mut Session, b: &mut Session, now: Instant) {
    while flow(a, b, now) + flow(b, a, now) > 0 {}
}

/// A server and a client session after the handshake (events drained).
fn connected(transport: TransportKind, now: Instant) -> (Session, Session) {
    let mut server = Session::new(server_config(transport), now);
    let mut client = Session::new(client_config(transport), now);
    pump(&mut client, &mut server, now);
    assert!(server.is_connected() && client.is_connected());
    events(&mut server);
    events(&mut client);
    (server, client)
}

/// Go's answer, made the answer to `registration` (its parent id).
fn go_answer_to(registration: &Message) -> String {
    GO_ANSWER.replace("00000000-0000-4000-8000-000000000001", registration.id())
}

/// A packet client that has sent its registration, and that registration.
fn awaiting_answer(now: Instant) -> (Session, Message) {
    let mut client = Session::new(client_config(TransportKind::Packet), now);
    let req = decode(&frames(&mut client, now)[0]);
    (client, req)
}

fn closed_reason(evs: Vec<Event>) -> Option<CloseReason> {
    evs.into_iter().find_map(|e| match e {
        Event::Closed { reason } => Some(reason),
        _ => None,
    })
}

fn decode(frame: &[u8]) -> Message {
    beehive_model::from_slice(frame).expect("a message")
}

fn msg(id: &str, content: &str) -> Message {
    Message::raw()
        .build_header(id, "", 1_700_000_000_000)
        .build_router("srvdriver", "grp", "res/a", "update")
        .fill_body(content)
}

// ---- handshake ----------------------------------------------------------

#[test]
fn server_answers_like_go_field_by_field() {
    // Case `handshake` of conformance/captures/sessions.
    let now = Instant::now();
    let mut server = Session::new(server_config(TransportKind::Packet), now);
    server.handle_packet(GO_REGISTRATION.as_bytes(), now);
    let sent = frames(&mut server, now);
    assert_eq!(sent.len(), 1, "one answer");
    let (ours, go) = (decode(&sent[0]), decode(GO_ANSWER.as_bytes()));
    assert_eq!(ours.parent_id(), go.parent_id(), "parent id is the registration's id");
    assert_ne!(ours.id(), go.parent_id(), "a new id");
    assert_eq!(ours.message_type(), go.message_type());
    assert_eq!(ours.is_sync(), go.is_sync());
    assert_eq!(ours.source(), go.source());
    assert_eq!(ours.destination(), go.destination(), "destination is the registering module");
    assert_eq!(ours.group(), go.group());
    assert_eq!(ours.operation(), go.operation());
    assert_eq!(ours.resource(), go.resource());
    assert_eq!(ours.resource_version(), go.resource_version());
    // The content: the server's own module, in a group of its own name.
    assert_eq!(
        beehive_model::to_vec(&Message::raw().fill_body(ours.content().clone())).unwrap(),
        beehive_model::to_vec(&Message::raw().fill_body(go.content().clone())).unwrap(),
    );
    // And the whole packet once id and timestamp are put in Go's place.
    let mut text = String::from_utf8(sent[0].to_vec()).unwrap();
    text = text.replace(ours.id(), go.id()).replace(&ours.header().timestamp.to_string(), "1600000000002");
    assert_eq!(text, GO_ANSWER);
    let evs = events(&mut server);
    assert!(matches!(&evs[0], Event::Registered { module, groups } if module == CLIENT && groups == &[CLIENT]));
    assert!(matches!(&evs[1], Event::Connected { module } if module == CLIENT));
    assert!(server.serves(CLIENT));
    assert_eq!(server.group_members(CLIENT), [CLIENT]);
}

#[test]
fn server_lists_its_local_modules_after_its_own() {
    let now = Instant::now();
    let config = server_config(TransportKind::Packet).local_module("edged", "edged").local_module("meta", "edged");
    let mut server = Session::new(config, now);
    server.handle_packet(GO_REGISTRATION.as_bytes(), now);
    let json = String::from_utf8(frames(&mut server, now)[0].to_vec()).unwrap();
    assert!(
        json.contains(r#""content":{"modules":["socketserver","edged","meta"],"groups":{"edged":["edged","meta"],"socketserver":["socketserver"]}}}"#),
        "{json}"
    );
}

#[test]
fn client_registers_like_go_and_learns_modules_and_groups() {
    let now = Instant::now();
    let mut client = Session::new(client_config(TransportKind::Packet), now);
    let sent = frames(&mut client, now);
    assert_eq!(sent.len(), 1);
    let (ours, go) = (decode(&sent[0]), decode(GO_REGISTRATION.as_bytes()));
    for (a, b) in [
        (ours.source(), go.source()),
        (ours.resource(), go.resource()),
        (ours.operation(), go.operation()),
        (ours.message_type(), go.message_type()),
        (ours.destination(), go.destination()),
        (ours.parent_id(), go.parent_id()),
    ] {
        assert_eq!(a, b);
    }
    assert!(ours.is_sync());
    assert!(matches!(ours.content(), Content::String(s) if s.is_empty()));
    assert!(!client.is_connected());
    // Go's answer, with the parent id of our registration.
    let answer = go_answer_to(&ours);
    client.handle_packet(answer.as_bytes(), now);
    assert!(client.is_connected());
    assert_eq!(client.modules().collect::<Vec<_>>(), [CLIENT, SERVER]);
    assert_eq!(client.group_members(SERVER), [SERVER]);
    let evs = events(&mut client);
    assert!(evs
        .iter()
        .any(|e| matches!(e, Event::Registered { module, groups } if module == SERVER && groups == &[SERVER])));
    assert!(matches!(evs.last(), Some(Event::Connected { module }) if module == CLIENT));
}

#[test]
fn client_refuses_an_answer_that_is_not_a_module_exchange() {
    let now = Instant::now();
    let (mut client, req) = awaiting_answer(now);
    let bad = req.new_response("no").set_destination(CLIENT);
    client.handle_packet(&beehive_model::to_vec_line(&bad).unwrap(), now);
    assert!(matches!(
        closed_reason(events(&mut client)),
        Some(CloseReason::HandshakeRefused(Refusal::BadAnswer { .. }))
    ));
}

#[test]
fn refused_registration_is_typed_and_the_client_sees_it_at_once() {
    let t0 = Instant::now();
    let config = SessionConfig::server(SERVER, TransportKind::Packet).allow_module("someoneelse");
    let mut server = Session::new(config, t0);
    let mut client = Session::new(client_config(TransportKind::Packet), t0);
    let t1 = secs(t0, 1);
    flow(&mut client, &mut server, t1);
    assert!(server.is_closed());
    assert_eq!(server.poll_transmit(), None, "no answer to a refused module");
    match closed_reason(events(&mut server)) {
        Some(CloseReason::HandshakeRefused(Refusal::NotAllowed { module })) => assert_eq!(module, CLIENT),
        other => panic!("{other:?}"),
    }
    // The server's driver closes the socket; the client reads the end of
    // the connection at once, long before its handshake timeout.
    client.handle_packet(b"", t1);
    assert!(client.is_closed());
    assert!(matches!(closed_reason(events(&mut client)), Some(CloseReason::HandshakeRefused(Refusal::PeerClosed))));
    assert_eq!(client.poll_timeout(), None);
}

#[test]
fn name_takeover_is_refused_until_the_owner_closes() {
    let now = Instant::now();
    let registry = ModuleRegistry::new();
    let config = server_config(TransportKind::Packet).registry(registry.clone());
    let mut first = Session::new(config.clone(), now);
    first.handle_packet(GO_REGISTRATION.as_bytes(), now);
    assert!(first.is_connected());
    assert_eq!(registry.owner(CLIENT), Some(first.id()));

    let mut second = Session::new(config.clone(), now);
    second.handle_packet(GO_REGISTRATION.as_bytes(), now);
    assert!(second.is_closed());
    assert_eq!(second.poll_transmit(), None);
    match closed_reason(events(&mut second)) {
        Some(CloseReason::HandshakeRefused(Refusal::NameTaken(taken))) => {
            assert_eq!(taken.module, CLIENT);
            assert_eq!(taken.owner, first.id());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(registry.owner(CLIENT), Some(first.id()), "the route stays with the first session");

    first.close();
    assert!(registry.is_empty());
    let mut third = Session::new(config, now);
    third.handle_packet(GO_REGISTRATION.as_bytes(), now);
    assert!(third.is_connected());
    drop(third);
    assert!(registry.is_empty(), "a dropped session releases its names");
}

#[test]
fn a_peer_cannot_register_the_servers_own_module() {
    let now = Instant::now();
    let mut server = Session::new(SessionConfig::server(SERVER, TransportKind::Packet), now);
    server.handle_packet(GO_REGISTRATION.replace(CLIENT, SERVER).as_bytes(), now);
    assert!(matches!(closed_reason(events(&mut server)), Some(CloseReason::HandshakeRefused(Refusal::NameTaken(_)))));
}

#[test]
fn server_closes_on_a_message_before_the_registration() {
    let now = Instant::now();
    let mut server = Session::new(server_config(TransportKind::Packet), now);
    server.handle_packet(&beehive_model::to_vec_line(&msg("m1", "x")).unwrap(), now);
    assert!(matches!(closed_reason(events(&mut server)), Some(CloseReason::NotRegistered { .. })));
    // The registration is resource `module` *and* operation `add`: half of
    // it is an ordinary message, and just as early.
    for half in [
        GO_REGISTRATION.replace("\"operation\":\"add\"", "\"operation\":\"update\""),
        GO_REGISTRATION.replace("\"resource\":\"module\"", "\"resource\":\"res/a\""),
    ] {
        let mut server = Session::new(server_config(TransportKind::Packet), now);
        server.handle_packet(half.as_bytes(), now);
        assert!(!server.is_connected(), "{half}");
        assert!(matches!(closed_reason(events(&mut server)), Some(CloseReason::NotRegistered { .. })), "{half}");
    }
}

// ---- back to back -------------------------------------------------------

fn back_to_back(transport: TransportKind) {
    let now = Instant::now();
    let (mut server, mut client) = connected(transport, now);

    // Server Send: type and destination set, as Go's socket context does.
    server.send(CLIENT, msg("s1", "hello"), now).unwrap();
    pump(&mut server, &mut client, now);
    match events(&mut client).as_slice() {
        [Event::Message(m)] => {
            assert_eq!((m.id(), m.destination(), m.message_type()), ("s1", CLIENT, "unixpacket"));
        }
        other => panic!("{other:?}"),
    }

    // Server SendSync, client SendResp, matched on the server.
    let id = server.send_sync(CLIENT, msg("s2", "ping"), Duration::from_secs(5), now).unwrap();
    assert_eq!(server.pending_requests(), 1);
    pump(&mut server, &mut client, now);
    let req = match events(&mut client).pop() {
        Some(Event::Message(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(req.is_sync());
    client.send_resp(req.new_response("pong"), now).unwrap();
    pump(&mut server, &mut client, now);
    match events(&mut server).as_slice() {
        [Event::Response(r)] => {
            assert_eq!(r.parent_id(), id);
            assert!(matches!(r.content(), Content::String(s) if s == "pong"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.pending_requests(), 0);

    // Client SendSync to the server's module, answered by the server.
    let id = client.send_sync(SERVER, msg("c1", "q").set_route(CLIENT, ""), Duration::from_secs(5), now).unwrap();
    pump(&mut server, &mut client, now);
    let req = match events(&mut server).pop() {
        Some(Event::Message(m)) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(req.destination(), SERVER);
    server.send_resp(req.new_response("a"), now).unwrap();
    pump(&mut server, &mut client, now);
    assert!(matches!(events(&mut client).as_slice(), [Event::Response(r)] if r.parent_id() == id));

    // Group sends through the groups learned from the handshake.
    assert_eq!(client.send_to_group(SERVER, msg("g1", "to group").set_route(CLIENT, ""), now).unwrap(), 1);
    assert_eq!(server.send_to_group(CLIENT, msg("g2", "to group"), now).unwrap(), 1);
    pump(&mut server, &mut client, now);
    assert!(
        matches!(events(&mut server).as_slice(), [Event::Message(m)] if m.destination() == SERVER && m.id() == "g1")
    );
    assert!(
        matches!(events(&mut client).as_slice(), [Event::Message(m)] if m.destination() == CLIENT && m.id() == "g2")
    );
    assert!(matches!(client.send_to_group("nogroup", msg("g3", ""), now), Err(SessionError::UnknownGroup { .. })));
    assert!(matches!(client.send("nomodule", msg("x", ""), now), Err(SessionError::UnknownModule { .. })));
}

#[test]
fn back_to_back_packets() {
    back_to_back(TransportKind::Packet);
}

#[test]
fn back_to_back_raw_stream() {
    back_to_back(TransportKind::Stream(StreamFraming::Raw));
}

#[test]
fn back_to_back_package_stream() {
    back_to_back(TransportKind::Stream(StreamFraming::Package));
}

#[test]
fn frames_sent_before_the_handshake_wait_for_it() {
    let now = Instant::now();
    let mut server = Session::new(server_config(TransportKind::Packet), now);
    let mut client = Session::new(client_config(TransportKind::Packet), now);
    // Nothing is registered yet: only raw sends can be queued.
    client.send_message(msg("early", "x").set_destination(CLIENT), now).unwrap();
    let first = frames(&mut client, now);
    assert_eq!(first.len(), 1, "only the registration goes out");
    for f in &first {
        server.handle_packet(f, now);
    }
    flow(&mut server, &mut client, now);
    assert!(client.is_connected());
    let rest = frames(&mut client, now);
    assert_eq!(rest.len(), 1);
    assert_eq!(decode(&rest[0]).id(), "early");
}

// ---- responses ----------------------------------------------------------

#[test]
fn a_response_to_a_request_never_sent_is_unmatched() {
    let now = Instant::now();
    let (mut server, mut client) = connected(TransportKind::Packet, now);
    let forged = msg("r1", "x").build_header("r1", "never-sent", 1);
    server.send(CLIENT, forged, now).unwrap();
    pump(&mut server, &mut client, now);
    assert!(matches!(events(&mut client).as_slice(), [Event::UnmatchedResponse(m)] if m.parent_id() == "never-sent"));
}

#[test]
fn request_times_out_at_its_deadline_and_a_late_answer_is_unmatched() {
    let t0 = Instant::now();
    let (mut server, mut client) = connected(TransportKind::Packet, t0);
    let id = server.send_sync(CLIENT, msg("s9", "ping"), Duration::from_secs(5), t0).unwrap();
    pump(&mut server, &mut client, t0);
    let req = match events(&mut client).pop() {
        Some(Event::Message(m)) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(server.poll_timeout(), Some(secs(t0, 5)));
    server.handle_timeout(secs(t0, 5) - NS);
    assert!(events(&mut server).is_empty());
    server.handle_timeout(secs(t0, 5));
    assert!(matches!(events(&mut server).as_slice(), [Event::RequestTimedOut { id: i }] if *i == id));
    // (From an allowed module: an unmatched message from any other closes.)
    client.send_resp(req.new_response("late").set_route(CLIENT, ""), secs(t0, 6)).unwrap();
    pump(&mut server, &mut client, secs(t0, 6));
    assert!(matches!(events(&mut server).as_slice(), [Event::UnmatchedResponse(_)]));
    assert!(server.is_connected());
}

// ---- timeouts -----------------------------------------------------------

#[test]
fn handshake_timeout_fires_at_the_deadline_in_both_roles() {
    let t0 = Instant::now();
    for config in [
        server_config(TransportKind::Packet).handshake_timeout(Duration::from_secs(7)),
        client_config(TransportKind::Packet).handshake_timeout(Duration::from_secs(7)).write_timeout(None),
    ] {
        let mut s = Session::new(config, t0);
        frames(&mut s, t0);
        assert_eq!(s.poll_timeout(), Some(secs(t0, 7)));
        s.handle_timeout(secs(t0, 7) - NS);
        assert!(!s.is_closed());
        s.handle_timeout(secs(t0, 7));
        assert!(matches!(closed_reason(events(&mut s)), Some(CloseReason::HandshakeTimeout(_))));
    }
}

#[test]
fn silent_peer_is_cut_at_the_idle_timeout() {
    let t0 = Instant::now();
    let idle = Some(Duration::from_secs(3));
    let mut server = Session::new(server_config(TransportKind::Packet).idle_timeout(idle), t0);
    assert_eq!(server.poll_timeout(), Some(secs(t0, 3)), "before the handshake timeout of 10 s");
    server.handle_timeout(secs(t0, 3) - NS);
    assert!(!server.is_closed());
    server.handle_timeout(secs(t0, 3));
    assert!(matches!(closed_reason(events(&mut server)), Some(CloseReason::IdleTimeout(_))));

    // After the handshake every received byte restarts the count.
    let mut server = Session::new(server_config(TransportKind::Packet).idle_timeout(idle), t0);
    server.handle_packet(GO_REGISTRATION.as_bytes(), secs(t0, 2));
    frames(&mut server, secs(t0, 2));
    assert_eq!(server.poll_timeout(), Some(secs(t0, 5)));
    server.handle_timeout(secs(t0, 5) - NS);
    assert!(server.is_connected());
    server.handle_timeout(secs(t0, 5));
    assert!(matches!(closed_reason(events(&mut server)), Some(CloseReason::IdleTimeout(_))));
}

#[test]
fn stall_cuts_a_frame_trickled_one_byte_every_three_seconds() {
    let t0 = Instant::now();
    let config = server_config(TransportKind::Stream(StreamFraming::Raw))
        .stall_timeout(Duration::from_secs(10))
        .handshake_timeout(Duration::from_secs(3600));
    let mut server = Session::new(config, t0);
    let bytes = GO_REGISTRATION.as_bytes();
    let mut now = t0;
    for (i, b) in bytes.iter().enumerate().take(4) {
        now = secs(t0, 3 * i as u64);
        server.handle_bytes(std::slice::from_ref(b), now);
        server.handle_timeout(now);
        assert!(!server.is_closed(), "alive at {} s", 3 * i);
    }
    // Bytes keep coming, but the frame began at 0 s: the deadline stays.
    assert_eq!(now, secs(t0, 9));
    assert_eq!(server.poll_timeout(), Some(secs(t0, 10)));
    server.handle_timeout(secs(t0, 10) - NS);
    assert!(!server.is_closed());
    server.handle_timeout(secs(t0, 10));
    match closed_reason(events(&mut server)) {
        Some(CloseReason::StallTimeout { buffered, .. }) => assert_eq!(buffered, 4),
        other => panic!("{other:?}"),
    }
}

#[test]
fn stall_clock_is_per_frame() {
    let t0 = Instant::now();
    let config = server_config(TransportKind::Stream(StreamFraming::Raw)).stall_timeout(Duration::from_secs(10));
    let mut server = Session::new(config, t0);
    let reg = GO_REGISTRATION.as_bytes();
    // The first frame completes at 8 s and the next frame starts at 8 s.
    server.handle_bytes(&reg[..10], t0);
    let mut rest = reg[10..].to_vec();
    rest.extend_from_slice(b"{\"hea");
    server.handle_bytes(&rest, secs(t0, 8));
    assert!(server.is_connected());
    frames(&mut server, secs(t0, 8));
    assert_eq!(server.poll_timeout(), Some(secs(t0, 18)));
    // A complete frame leaves no deadline behind.
    let m = beehive_model::to_vec_line(&msg("x", "y").set_route(CLIENT, "")).unwrap();
    server.handle_bytes(&m[5..], secs(t0, 9));
    assert_eq!(server.poll_timeout(), None);
    assert!(matches!(events(&mut server).last(), Some(Event::Message(_))));
}

#[test]
fn write_timeout_cuts_a_peer_that_does_not_drain() {
    let t0 = Instant::now();
    let config = server_config(TransportKind::Packet).write_timeout(Some(Duration::from_secs(30)));
    let mut server = Session::new(config, t0);
    server.handle_packet(GO_REGISTRATION.as_bytes(), secs(t0, 1));
    // The answer is handed to the driver, which cannot write it.
    let answer = server.poll_transmit().expect("the answer");
    assert_eq!(server.poll_timeout(), Some(secs(t0, 31)));
    // Progress (part of the bytes) moves the deadline.
    server.handle_written(10, secs(t0, 20));
    assert_eq!(server.poll_timeout(), Some(secs(t0, 50)));
    server.handle_timeout(secs(t0, 50) - NS);
    assert!(server.is_connected());
    server.handle_timeout(secs(t0, 50));
    match closed_reason(events(&mut server)) {
        Some(CloseReason::WriteTimeout { pending, .. }) => assert_eq!(pending, answer.frame.len() - 10),
        other => panic!("{other:?}"),
    }

    // Everything written: no deadline.
    let mut server = Session::new(server_config(TransportKind::Packet), t0);
    server.handle_packet(GO_REGISTRATION.as_bytes(), t0);
    frames(&mut server, t0);
    assert_eq!(server.poll_timeout(), None);
}

// ---- limits -------------------------------------------------------------

#[test]
fn full_outbound_queue_is_a_typed_error() {
    let now = Instant::now();
    let mut server = Session::new(server_config(TransportKind::Packet).max_queued_frames(3), now);
    server.handle_packet(GO_REGISTRATION.as_bytes(), now);
    // The answer takes one place until written.
    server.send(CLIENT, msg("q1", ""), now).unwrap();
    server.send(CLIENT, msg("q2", ""), now).unwrap();
    match server.send(CLIENT, msg("q3", ""), now) {
        Err(SessionError::QueueFull { frames, .. }) => assert_eq!(frames, 3),
        other => panic!("{other:?}"),
    }
    assert!(server.is_connected());
    // Transmitted but unwritten frames still count; written ones free room.
    let t = server.poll_transmit().unwrap();
    assert!(matches!(server.send(CLIENT, msg("q3", ""), now), Err(SessionError::QueueFull { .. })));
    server.handle_written(t.frame.len(), now);
    server.send(CLIENT, msg("q3", ""), now).unwrap();
    let ids: Vec<_> = frames(&mut server, now).iter().map(|f| decode(f).id().to_owned()).collect();
    assert_eq!(ids, ["q1", "q2", "q3"]);
}

#[test]
fn oversized_message_is_refused_and_the_session_stays_up() {
    let now = Instant::now();
    for transport in [
        TransportKind::Packet,
        TransportKind::Stream(StreamFraming::Raw),
        TransportKind::Stream(StreamFraming::Package),
    ] {
        let (mut server, mut client) = connected(transport, now);
        let big = msg("big", &"x".repeat(5000));
        match client.send(CLIENT, big, now) {
            Err(SessionError::MessageTooLarge { len, max }) => assert!(len > 4096 && max == 4096),
            other => panic!("{other:?}"),
        }
        assert!(client.is_connected());
        client.send(SERVER, msg("small", "x").set_route(CLIENT, ""), now).unwrap();
        pump(&mut server, &mut client, now);
        assert!(matches!(events(&mut server).as_slice(), [Event::Message(m)] if m.id() == "small"));
    }
}

#[test]
fn malformed_packets_are_reported_and_the_connection_stays_up() {
    let now = Instant::now();
    let (mut server, mut client) = connected(TransportKind::Packet, now);
    server.handle_packet(b"{\"header\":{\"msg_id\":1x}}\n", now);
    server.handle_packet(&vec![b' '; 5000], now);
    match events(&mut server).as_slice() {
        [Event::Malformed { offset, error: beehive_codec::CodecError::Json { .. } }, Event::Malformed { error: beehive_codec::CodecError::PacketTooLarge { max: 4096 }, .. }] =>
        {
            assert_eq!(*offset, 21, "offset of the bad byte in the packet")
        }
        other => panic!("{other:?}"),
    }
    assert!(server.is_connected());
    client.send(SERVER, msg("after", "x").set_route(CLIENT, ""), now).unwrap();
    pump(&mut server, &mut client, now);
    assert!(matches!(events(&mut server).as_slice(), [Event::Message(m)] if m.id() == "after"));
}

#[test]
fn broken_stream_framing_closes_with_the_offset() {
    let now = Instant::now();
    let mut server = Session::new(server_config(TransportKind::Stream(StreamFraming::Package)), now);
    server.handle_bytes(b"beex", now);
    match closed_reason(events(&mut server)) {
        Some(CloseReason::Malformed { offset: 0, error: beehive_codec::CodecError::BadMagic { .. } }) => {}
        other => panic!("{other:?}"),
    }
    // A raw line longer than the limit.
    let mut server = Session::new(server_config(TransportKind::Stream(StreamFraming::Raw)), now);
    server.handle_bytes(&vec![b'{'; 5000], now);
    assert!(server.inbound_buffered() <= 4096 + 1);
    assert!(matches!(
        closed_reason(events(&mut server)),
        Some(CloseReason::Malformed { error: beehive_codec::CodecError::LineTooLong { .. }, .. })
    ));
}

#[test]
fn end_of_stream_delivers_a_last_raw_line_then_closes() {
    let now = Instant::now();
    let mut server = Session::new(server_config(TransportKind::Stream(StreamFraming::Raw)), now);
    let reg = GO_REGISTRATION.trim_end_matches('\n');
    server.handle_bytes(reg.as_bytes(), now);
    assert!(!server.is_connected());
    server.handle_eof(now);
    let evs = events(&mut server);
    assert!(matches!(evs.first(), Some(Event::Registered { .. })));
    assert!(matches!(evs.last(), Some(Event::Closed { reason: CloseReason::PeerClosed })));
}

#[test]
fn an_io_error_that_means_the_peer_is_gone_is_a_peer_close_and_any_other_is_kept() {
    use std::io::{Error, ErrorKind};
    let now = Instant::now();
    // A reset, a broken pipe or an aborted connection: the peer closed.
    for kind in [ErrorKind::ConnectionReset, ErrorKind::BrokenPipe, ErrorKind::ConnectionAborted] {
        let (mut server, _client) = connected(TransportKind::Stream(StreamFraming::Raw), now);
        server.handle_io_error(IoDirection::Write, Error::from(kind), now);
        let reason = closed_reason(events(&mut server));
        assert!(matches!(reason, Some(CloseReason::PeerClosed)), "{kind:?}: {reason:?}");
    }
    // A client whose server reset the connection before answering was refused.
    let (mut client, _) = awaiting_answer(now);
    client.handle_io_error(IoDirection::Read, Error::from(ErrorKind::ConnectionReset), now);
    let reason = closed_reason(events(&mut client));
    assert!(matches!(reason, Some(CloseReason::HandshakeRefused(Refusal::PeerClosed))), "{reason:?}");
    // Anything else closes with the error and its direction, and drops
    // what is queued.
    let (mut server, _client) = connected(TransportKind::Packet, now);
    server.send(CLIENT, msg("queued", "x"), now).unwrap();
    server.handle_io_error(IoDirection::Read, Error::new(ErrorKind::InvalidData, "bad record mac"), now);
    let Some(reason) = closed_reason(events(&mut server)) else { panic!("not closed") };
    assert_eq!(reason.kind(), "io_error");
    assert_eq!(reason.to_string(), "reading failed: bad record mac");
    match &reason {
        CloseReason::Io { direction: IoDirection::Read, error } => assert_eq!(error.kind(), ErrorKind::InvalidData),
        other => panic!("{other:?}"),
    }
    assert!(server.poll_transmit().is_none());
    assert!(matches!(server.send(CLIENT, msg("n", ""), now), Err(SessionError::Closed)));
    // Once closed, a later error changes nothing.
    server.handle_io_error(IoDirection::Write, Error::from(ErrorKind::WriteZero), now);
    assert!(events(&mut server).is_empty());
    let (mut server, _client) = connected(TransportKind::Packet, now);
    server.handle_io_error(IoDirection::Write, Error::from(ErrorKind::WriteZero), now);
    assert_eq!(
        closed_reason(events(&mut server)).map(|r| r.to_string()).as_deref(),
        Some("writing failed: write zero")
    );
}

#[test]
fn server_refuses_messages_from_modules_that_are_not_allowed() {
    let now = Instant::now();
    let (mut server, _client) = connected(TransportKind::Packet, now);
    let m = msg("m", "x").set_route("intruder", "");
    server.handle_packet(&beehive_model::to_vec_line(&m).unwrap(), now);
    assert!(matches!(closed_reason(events(&mut server)), Some(CloseReason::SourceNotAllowed { .. })));
    assert!(matches!(server.send(CLIENT, msg("n", ""), now), Err(SessionError::Closed)));
}

#[test]
fn a_handshake_answer_as_a_plain_value_is_read_like_go() {
    let now = Instant::now();
    let (mut client, req) = awaiting_answer(now);
    let content = beehive_model::decode_value(br#"{"Modules":["a","b"],"GROUPS":{"g":["a","b"]}}"#).unwrap();
    let answer = req.new_response(content).set_destination(CLIENT);
    client.handle_packet(&beehive_model::to_vec_line(&answer).unwrap(), now);
    assert!(client.is_connected());
    assert_eq!(client.group_members("g"), ["a", "b"]);
}

#[test]
fn repeated_registrations_cannot_grow_the_queue_past_its_bound() {
    let now = Instant::now();
    let mut server = Session::new(server_config(TransportKind::Packet).max_queued_frames(4), now);
    for _ in 0..4 {
        server.handle_packet(GO_REGISTRATION.as_bytes(), now);
    }
    assert!(server.is_connected(), "Go answers every registration");
    server.handle_packet(GO_REGISTRATION.as_bytes(), now);
    assert!(matches!(closed_reason(events(&mut server)), Some(CloseReason::OutboundOverflow { frames: 4, .. })));
}

// ---- what a session tells its driver -------------------------------------

/// A message from the client's module (the only one the test server allows).
fn from_client(id: &str) -> Message {
    Message::raw().build_header(id, "", 1_700_000_000_000).build_router(CLIENT, "", "res/a", "update").fill_body("x")
}

#[test]
fn a_session_names_its_peer_and_what_it_reaches_once_registered() {
    let now = Instant::now();
    let mut server = Session::new(server_config(TransportKind::Packet).local_module("echo", "echo-group"), now);
    let mut client = Session::new(client_config(TransportKind::Packet), now);
    assert_eq!((server.peer_module(), client.peer_module()), (None, None));
    assert!(!client.serves("echo"));
    assert_eq!(client.groups().count(), 0);
    pump(&mut client, &mut server, now);
    assert_eq!(server.peer_module(), Some(CLIENT));
    assert!(server.serves(CLIENT) && !server.serves("echo"));
    assert_eq!(client.peer_module(), Some(CLIENT), "a client's own module");
    assert!(client.serves("echo") && client.serves(SERVER) && !client.serves("nobody"));
    assert_eq!(client.groups().collect::<Vec<_>>(), ["echo-group", SERVER]);
    assert_eq!(client.group_members("echo-group"), ["echo"]);
}

#[test]
fn a_session_counts_the_messages_it_decoded() {
    let now = Instant::now();
    let (mut server, mut client) = connected(TransportKind::Packet, now);
    // The handshake request and its answer.
    assert_eq!((server.messages_received(), client.messages_received()), (1, 1));
    client.send(SERVER, from_client("m1"), now).unwrap();
    client.send(SERVER, from_client("m2"), now).unwrap();
    flow(&mut client, &mut server, now);
    assert!(server.is_connected());
    server.handle_packet(b"not json", now);
    assert_eq!(server.messages_received(), 3, "malformed packets aside");
}

#[test]
fn a_packet_of_exactly_the_frame_limit_is_taken() {
    let now = Instant::now();
    let (mut server, _client) = connected(TransportKind::Packet, now);
    let mut packet = beehive_model::to_vec(&from_client("m1")).unwrap();
    packet.resize(4096, b' ');
    server.handle_packet(&packet, now);
    assert!(events(&mut server).iter().any(|e| matches!(e, Event::Message(_))));
    packet.push(b' ');
    server.handle_packet(&packet, now);
    assert!(events(&mut server).iter().any(|e| matches!(e, Event::Malformed { .. })));
    assert!(server.is_connected());
}

#[test]
fn an_empty_slice_of_bytes_is_no_input_not_an_end_of_connection() {
    let now = Instant::now();
    for transport in [TransportKind::Packet, TransportKind::Stream(StreamFraming::Raw)] {
        let (mut server, _client) = connected(transport, now);
        server.handle_bytes(b"", now);
        assert!(server.is_connected(), "{transport:?}");
    }
}

#[test]
fn a_stream_session_holds_a_partial_frame_until_it_completes() {
    let now = Instant::now();
    let (mut server, _client) = connected(TransportKind::Stream(StreamFraming::Raw), now);
    let mut line = beehive_model::to_vec(&from_client("m1")).unwrap();
    line.push(b'\n');
    let (head, tail) = line.split_at(10);
    server.handle_bytes(head, now);
    assert_eq!(server.inbound_buffered(), 10);
    server.handle_bytes(tail, now);
    assert_eq!(server.inbound_buffered(), 0);
    assert!(events(&mut server).iter().any(|e| matches!(e, Event::Message(_))));
}

#[test]
fn room_in_the_outbound_queue_ends_at_either_limit() {
    let now = Instant::now();
    let frame_len =
        beehive_model::to_vec_line(&msg("m1", "x").set_type("unixpacket").set_destination(SERVER)).unwrap().len();
    // By frames: two fit.
    let mut server = Session::new(server_config(TransportKind::Packet), now);
    let mut client = Session::new(client_config(TransportKind::Packet).max_queued_frames(2), now);
    pump(&mut client, &mut server, now);
    assert!(client.has_room());
    client.send(SERVER, msg("m1", "x"), now).unwrap();
    assert!(client.has_room());
    client.send(SERVER, msg("m2", "x"), now).unwrap();
    assert!(!client.has_room(), "{} frames queued", client.outbound_frames());
    // By bytes: room while below the limit, none once at it.
    let mut server = Session::new(server_config(TransportKind::Packet), now);
    let mut client = Session::new(client_config(TransportKind::Packet).max_queued_bytes(2 * frame_len), now);
    pump(&mut client, &mut server, now);
    client.send(SERVER, msg("m1", "x"), now).unwrap();
    assert_eq!(client.outbound_queued(), frame_len);
    assert!(client.has_room());
    client.send(SERVER, msg("m2", "x"), now).unwrap();
    assert!(!client.has_room(), "{} bytes queued", client.outbound_queued());
    frames(&mut client, now);
    assert!(client.has_room(), "written frames make room");
}

#[test]
fn partial_writes_across_frames_are_accounted_frame_by_frame() {
    let now = Instant::now();
    let (_server, mut client) = connected(TransportKind::Stream(StreamFraming::Raw), now);
    client.send(SERVER, from_client("m1"), now).unwrap();
    client.send(SERVER, from_client("m2"), now).unwrap();
    let a = client.poll_transmit().expect("the first frame").frame.len();
    let b = client.poll_transmit().expect("the second frame").frame.len();
    assert_eq!((client.outbound_frames(), client.outbound_queued()), (2, a + b));
    // The first frame and three bytes of the second.
    client.handle_written(a + 3, now);
    assert_eq!((client.outbound_frames(), client.outbound_queued()), (1, b - 3));
    client.handle_written(b - 5, now);
    assert_eq!((client.outbound_frames(), client.outbound_queued()), (1, 2));
    client.handle_written(2, now);
    assert_eq!((client.outbound_frames(), client.outbound_queued()), (0, 0));
}

#[test]
fn the_write_clock_runs_from_the_oldest_unwritten_frame() {
    let t0 = Instant::now();
    let config = server_config(TransportKind::Packet).write_timeout(Some(Duration::from_secs(30)));
    let mut server = Session::new(config, t0);
    server.handle_packet(GO_REGISTRATION.as_bytes(), t0);
    frames(&mut server, t0);
    // Queued at 1 s and never written: a later message does not restart
    // the clock.
    server.send_message(from_client("m1"), secs(t0, 1)).unwrap();
    server.send_message(from_client("m2"), secs(t0, 20)).unwrap();
    assert_eq!(server.poll_timeout(), Some(secs(t0, 31)));
    // The first one written at 25 s, the second still waiting (not even
    // handed to the driver): the clock restarts from that progress.
    let first = server.poll_transmit().expect("m1");
    server.handle_written(first.frame.len(), secs(t0, 25));
    assert_eq!(server.poll_timeout(), Some(secs(t0, 55)));
    server.handle_timeout(secs(t0, 55));
    match closed_reason(events(&mut server)) {
        Some(CloseReason::WriteTimeout { pending, .. }) => assert!(pending > 0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_message_of_exactly_the_frame_limit_is_sent() {
    let now = Instant::now();
    // Larger than the client's own handshake request, which must fit too.
    let m = from_client("m1").set_type("unixpacket").set_destination(SERVER).fill_body("x".repeat(1000));
    let line = beehive_model::to_vec_line(&m).unwrap().len();
    // A packet is the JSON and its line feed; a raw frame's limit is on the
    // JSON alone (as the reader's is on the line without its feed).
    for (transport, len) in [(TransportKind::Packet, line), (TransportKind::Stream(StreamFraming::Raw), line - 1)] {
        let mut client = Session::new(client_config(transport).max_frame_len(len), now);
        client.send_message(m.clone(), now).unwrap();
        let mut client = Session::new(client_config(transport).max_frame_len(len - 1), now);
        match client.send_message(m.clone(), now) {
            Err(SessionError::MessageTooLarge { len: l, max }) => assert_eq!((l, max), (len, len - 1), "{transport:?}"),
            other => panic!("{transport:?}: {other:?}"),
        }
    }
}

#[test]
fn a_client_is_connected_only_by_the_answer_to_its_own_registration() {
    let now = Instant::now();
    let (mut client, req) = awaiting_answer(now);
    let exchange = decode(GO_ANSWER.as_bytes()).content().clone();
    // A module list answering something else, and one answering nothing.
    let other = Message::raw().build_header("x1", "another-request", 1).build_router(SERVER, "", "module", "response");
    let plain = Message::raw().build_header("x2", "", 1).build_router(SERVER, "", "module", "response");
    for m in [other, plain] {
        let m = m.set_destination(CLIENT).fill_body(exchange.clone());
        client.handle_packet(&beehive_model::to_vec_line(&m).unwrap(), now);
        assert!(!client.is_connected(), "{m:?}");
    }
    let answer = req.new_response(exchange).set_destination(CLIENT);
    client.handle_packet(&beehive_model::to_vec_line(&answer).unwrap(), now);
    assert!(client.is_connected());
}

#[test]
fn only_a_response_to_a_pending_request_gets_past_the_allowed_modules() {
    let now = Instant::now();
    let (mut server, _client) = connected(TransportKind::Packet, now);
    // Any parent id is not enough: it must be a request sent here.
    let intruder =
        Message::raw().build_header("i1", "not-a-request-of-ours", 1).build_router("intruder", "", "res/a", "response");
    server.handle_packet(&beehive_model::to_vec_line(&intruder).unwrap(), now);
    match closed_reason(events(&mut server)) {
        Some(CloseReason::SourceNotAllowed { module }) => assert_eq!(module, "intruder"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_package_stream_waits_for_a_split_frame_and_reports_one_cut_by_the_end() {
    let now = Instant::now();
    let (mut server, mut client) = connected(TransportKind::Stream(StreamFraming::Package), now);
    client.send(SERVER, from_client("m1"), now).unwrap();
    let frame = frames(&mut client, now).pop().expect("a frame");
    let (head, tail) = frame.split_at(20);
    server.handle_bytes(head, now);
    assert!(server.is_connected(), "half a frame is not an error");
    server.handle_bytes(tail, now);
    assert!(events(&mut server).iter().any(|e| matches!(e, Event::Message(m) if m.id() == "m1")));
    server.handle_bytes(head, now);
    server.handle_eof(now);
    match closed_reason(events(&mut server)) {
        Some(CloseReason::Malformed { error: CodecError::Truncated { needed, available, .. }, .. }) => {
            assert_eq!((needed, available), (frame.len() as u64, 20));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn registration_answers_count_every_frame_queued_or_in_flight() {
    let now = Instant::now();
    let mut server = Session::new(server_config(TransportKind::Packet).max_queued_frames(2), now);
    server.handle_packet(GO_REGISTRATION.as_bytes(), now);
    assert!(server.poll_transmit().is_some(), "the answer, handed out and not yet written");
    server.send_message(from_client("m1"), now).unwrap();
    // One frame in flight and one queued: no room for another answer.
    server.handle_packet(GO_REGISTRATION.as_bytes(), now);
    assert!(matches!(closed_reason(events(&mut server)), Some(CloseReason::OutboundOverflow { frames: 2, .. })));
}

#[test]
fn registration_answers_stop_at_the_byte_limit_too() {
    let now = Instant::now();
    let mut probe = Session::new(server_config(TransportKind::Packet), now);
    probe.handle_packet(GO_REGISTRATION.as_bytes(), now);
    let answer = probe.outbound_queued();
    // Room for exactly two answers.
    let mut server = Session::new(server_config(TransportKind::Packet).max_queued_bytes(2 * answer), now);
    server.handle_packet(GO_REGISTRATION.as_bytes(), now);
    server.handle_packet(GO_REGISTRATION.as_bytes(), now);
    assert!(server.is_connected());
    server.handle_packet(GO_REGISTRATION.as_bytes(), now);
    match closed_reason(events(&mut server)) {
        Some(CloseReason::OutboundOverflow { frames: 2, bytes }) => assert_eq!(bytes, 2 * answer),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_client_learns_each_module_and_group_of_the_answer_once() {
    let now = Instant::now();
    let (mut client, req) = awaiting_answer(now);
    // Our own module, an empty name and a repeated member are Go's to send.
    let content = beehive_model::decode_value(
        format!(r#"{{"modules":["{CLIENT}","","a"],"groups":{{"g":["b","b"],"h":["b"]}}}}"#).as_bytes(),
    )
    .unwrap();
    client.handle_packet(&beehive_model::to_vec_line(&req.new_response(content).set_destination(CLIENT)).unwrap(), now);
    assert!(client.is_connected());
    assert_eq!(client.modules().collect::<Vec<_>>(), ["a", "b", CLIENT], "sorted");
    assert_eq!(client.group_members("g"), ["b"]);
    let registered: Vec<(String, Vec<String>)> = events(&mut client)
        .into_iter()
        .filter_map(|e| match e {
            Event::Registered { module, groups } => Some((module, groups)),
            _ => None,
        })
        .collect();
    assert!(registered.contains(&("b".to_owned(), vec!["g".to_owned(), "h".to_owned()])), "{registered:?}");
}

#[test]
fn frames_held_until_the_handshake_start_the_write_clock_when_it_completes() {
    let t0 = Instant::now();
    let config = client_config(TransportKind::Packet).write_timeout(Some(Duration::from_secs(30)));
    // Nothing held: connecting starts no clock.
    let mut client = Session::new(config.clone(), t0);
    let req = decode(&frames(&mut client, t0)[0]);
    let answer = go_answer_to(&req);
    client.handle_packet(answer.as_bytes(), secs(t0, 5));
    assert!(client.is_connected());
    assert_eq!(client.poll_timeout(), None);
    // A message held during the handshake: the clock starts at connection.
    let mut client = Session::new(config, t0);
    let req = decode(&frames(&mut client, t0)[0]);
    client.send_message(from_client("m1"), t0).unwrap();
    let answer = go_answer_to(&req);
    client.handle_packet(answer.as_bytes(), secs(t0, 5));
    assert!(client.is_connected());
    assert_eq!(client.poll_timeout(), Some(secs(t0, 35)));
}

#[test]
fn a_server_answers_with_the_modules_its_directory_lists_at_registration() {
    let now = Instant::now();
    let listed = std::sync::Arc::new(std::sync::Mutex::new(vec![("first".to_owned(), "g1".to_owned())]));
    let l = listed.clone();
    let directory = ModuleDirectory::new(move || l.lock().unwrap().clone());
    let config = server_config(TransportKind::Packet).module_directory(directory);
    let mut server = Session::new(config.clone(), now);
    let mut client = Session::new(client_config(TransportKind::Packet), now);
    pump(&mut client, &mut server, now);
    assert!(client.serves("first") && !client.serves("second"));
    assert_eq!(client.group_members("g1"), ["first"]);
    // Looked up at each registration, not when the config was made.
    listed.lock().unwrap().push(("second".to_owned(), "g2".to_owned()));
    let mut server = Session::new(config, now);
    let mut client = Session::new(client_config(TransportKind::Packet), now);
    pump(&mut client, &mut server, now);
    assert!(client.serves("first") && client.serves("second"));
}

#[test]
fn the_frame_limit_holds_at_least_a_package_header_and_one_byte() {
    for (asked, got) in [(0, 13), (12, 13), (13, 13), (14, 14), (10_240, 10_240)] {
        assert_eq!(client_config(TransportKind::Packet).max_frame_len(asked).get_max_frame_len(), got, "{asked}");
    }
    let directory = ModuleDirectory::new(Vec::new);
    assert!(format!("{directory:?}").starts_with("ModuleDirectory"));
}

#[test]
fn a_config_reports_what_it_was_given() {
    let c = client_config(TransportKind::Packet)
        .handshake_timeout(Duration::from_secs(7))
        .stall_timeout(Duration::from_secs(8))
        .idle_timeout(Some(Duration::from_secs(9)))
        .write_timeout(Some(Duration::from_secs(10)))
        .packet_send_limit(Some(2048));
    assert_eq!(c.get_handshake_timeout(), Duration::from_secs(7));
    assert_eq!(c.get_stall_timeout(), Duration::from_secs(8));
    assert_eq!(c.get_idle_timeout(), Some(Duration::from_secs(9)));
    assert_eq!(c.get_write_timeout(), Some(Duration::from_secs(10)));
    assert_eq!(c.get_packet_send_limit(), Some(2048));
    let c = c.idle_timeout(None).write_timeout(None).packet_send_limit(None);
    assert_eq!((c.get_idle_timeout(), c.get_write_timeout(), c.get_packet_send_limit()), (None, None, None));
}
