//! `beehive record` between real sockets in temporary directories: bytes
//! and packet boundaries arrive unchanged both ways, the recording holds
//! exactly what was sent, and `beehive conformance` checks it.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use base64::Engine as _;
use beehive_model::Message;
use common::beehive;
use serde_json::Value;
use socket2::{Domain, SockAddr, Socket, Type};

/// The escape codes of the summary's colours.
const RED: &str = "\x1b[1m\x1b[31m";
const DIM: &str = "\x1b[2m";

/// The longest any single step may take.
const T: Duration = Duration::from_secs(20);

/// A running `beehive record` (killed if the test fails before it ends).
struct Record {
    child: Option<Child>,
    lines: Receiver<String>,
    /// The address it listens on, as it printed it.
    listen: String,
}

impl Record {
    /// Starts `beehive record --out OUT ARGS…` and waits until it listens.
    fn start(out: &Path, args: &[&str]) -> Record {
        Record::spawn(&mut Record::command(out, args))
    }

    /// The command [`Record::start`] runs.
    fn command(out: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_beehive"));
        command.arg("record").arg("--out").arg(out).args(args);
        command
    }

    /// [`Record::start`] with at most `files` open file descriptors.
    fn start_limited(out: &Path, args: &[&str], files: u32) -> Record {
        let mut command = Command::new("sh");
        command.arg("-c").arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""));
        command.arg(env!("CARGO_BIN_EXE_beehive")).arg("record").arg("--out").arg(out).args(args);
        Record::spawn(&mut command)
    }

    fn spawn(command: &mut Command) -> Record {
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("beehive runs");
        let lines = lines_of(child.stderr.take().unwrap());
        let first = lines.recv_timeout(T).expect("beehive record announces itself");
        let listen = first
            .strip_prefix("beehive: recording ")
            .and_then(|r| r.split(" (").next())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Record { child: Some(child), lines, listen }
    }

    /// Ends the recording as Ctrl-C does; returns the exit status and the rest of stderr.
    fn stop(self) -> (ExitStatus, String) {
        let pid = self.pid().to_string();
        let killed = Command::new("kill").args(["-INT", &pid]).status().expect("kill runs");
        assert!(killed.success());
        self.finish()
    }

    /// Waits for a line on stderr that holds `needle` (skipping others).
    fn line_with(&self, needle: &str) -> String {
        loop {
            let line = self.lines.recv_timeout(T).unwrap_or_else(|e| panic!("waiting for {needle:?}: {e}"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits for the recording to end by itself (`--duration`).
    fn finish(mut self) -> (ExitStatus, String) {
        let mut rest = Vec::new();
        // stderr closes when the process exits.
        while let Ok(line) = self.lines.recv_timeout(T) {
            rest.push(line);
        }
        let (tx, rx) = mpsc::channel();
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        thread::spawn(move || tx.send(child.wait()));
        let Ok(status) = rx.recv_timeout(T) else {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            panic!("beehive record did not end within {T:?}");
        };
        (status.unwrap(), rest.join("\n"))
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn lines_of(stderr: ChildStderr) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A message as Go writes it on a socket: its JSON and a line feed.
fn packet(msg: &Message) -> Vec<u8> {
    beehive_model::to_vec_line(msg).unwrap()
}

fn message(id: &str, content: impl Into<beehive_model::Content>) -> Message {
    Message::raw()
        .build_header(id, "", 1_700_000_000_000)
        .build_router("edgeclient", "grp", "res", "update")
        .fill_body(content)
}

fn seqpacket_listener(path: &Path) -> Socket {
    let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    s.bind(&SockAddr::unix(path).unwrap()).unwrap();
    s.listen(8).unwrap();
    // Bounds `accept` too.
    s.set_read_timeout(Some(T)).unwrap();
    s
}

fn seqpacket_connect(path: &str) -> Socket {
    let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    s.connect(&SockAddr::unix(path).unwrap()).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

/// One packet; `None` at the end of the connection. Fails on truncation.
fn recv_packet(s: &Socket) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 1 << 20];
    let mut reader = s;
    let n = reader.read(&mut buf).expect("a packet within the time limit");
    assert!(n < buf.len(), "packet as large as the buffer");
    (n > 0).then(|| buf[..n].to_vec())
}

/// An upstream answering each packet that holds a message with the
/// response Go's `NewRespByMessage` would make (echoing the content), and
/// anything else with a fixed message. Returns what it received and sent,
/// per connection, once every client has closed.
/// The packets an upstream received and sent on one connection.
type Exchange = (Vec<Vec<u8>>, Vec<Vec<u8>>);

fn packet_server(listener: Socket, conns: usize) -> JoinHandle<Vec<Exchange>> {
    thread::spawn(move || {
        let mut handles = Vec::new();
        for _ in 0..conns {
            let (s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(T)).unwrap();
            handles.push(thread::spawn(move || {
                let (mut got, mut sent) = (Vec::new(), Vec::new());
                while let Some(p) = recv_packet(&s) {
                    let answer = match beehive_model::from_slice(&p) {
                        Ok(m) => m.new_response(m.content().clone()),
                        Err(_) => message("bad-input", "not a message"),
                    };
                    let answer = packet(&answer.build_header("answer", "", 1_700_000_000_001));
                    s.send(&answer).unwrap();
                    got.push(p);
                    sent.push(answer);
                }
                (got, sent)
            }));
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The recorded lines of connection `conn`, as (direction, bytes).
fn recorded(out: &Path, conn: u64) -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(out.join(format!("recorded/conn-{conn:06}.jsonl"))).unwrap();
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["conn"], conn);
            assert_eq!(v["seq"], i as u64 + 1);
            assert!(v["t_ns"].is_u64());
            let data = base64::engine::general_purpose::STANDARD.decode(v["data_b64"].as_str().unwrap()).unwrap();
            assert_eq!(v["len"], data.len() as u64);
            (v["dir"].as_str().unwrap().to_owned(), data)
        })
        .collect()
}

fn direction(lines: &[(String, Vec<u8>)], dir: &str) -> Vec<Vec<u8>> {
    lines.iter().filter(|(d, _)| d == dir).map(|(_, b)| b.clone()).collect()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn index(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("recorded/index.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `beehive conformance DIR`: the exit code and stdout.
fn conformance(out: &Path) -> (i32, String) {
    let o = beehive().arg("conformance").arg(out).output().unwrap();
    (o.status.code().unwrap(), String::from_utf8(o.stdout).unwrap())
}

fn assert_passes(out: &Path, cases: usize) {
    let (code, stdout) = conformance(out);
    assert_eq!(code, 0, "{stdout}");
    // The first line names what made the recording, from its manifest.
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(out.join("MANIFEST.json")).unwrap()).unwrap();
    let started = manifest["started"].as_str().expect("the manifest's start time");
    let origin = format!("(recorded by beehive record {} at {started})", env!("CARGO_PKG_VERSION"));
    let first = stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("captures: ") && first.ends_with(&origin), "{first}");
    let row = stdout.lines().find(|l| l.starts_with("recorded")).unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["recorded", &cases.to_string(), "0"], "{stdout}");
    for other in ["encode", "decode", "frames", "malformed", "sessions", "floats"] {
        let line = stdout.lines().find(|l| l.starts_with(other)).unwrap();
        assert!(line.contains("skipped: no "), "{line}");
    }
}

#[test]
fn unixpacket_packets_pass_unchanged_both_ways_and_the_recording_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    let server = packet_server(seqpacket_listener(&up), 1);
    let out = dir.path().join("rec");
    let listen = dir.path().join("relay.sock");
    let rec = Record::start(&out, &["--listen", listen.to_str().unwrap(), "--upstream", up.to_str().unwrap()]);

    let client = seqpacket_connect(&rec.listen);
    let big = "x".repeat(150_000);
    let sent: Vec<Vec<u8>> = vec![
        packet(&message("m1", "hello")),
        packet(&message("m2", "<b>ünïcode &\u{2028}</b>")),
        packet(&message("m3", serde_json::json!({"spec": {"replicas": 1.5, "b": [true, null]}}))),
        packet(&message("m4", big.as_str())),
        packet(&message("m5", Vec::<u8>::from(&b"\x00\xffbytes"[..]))),
    ];
    let mut answers = Vec::new();
    for p in &sent {
        client.send(p).unwrap();
        answers.push(recv_packet(&client).expect("an answer"));
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(recv_packet(&client), None, "the server's close passes through");
    let conns = server.join().unwrap();
    assert_eq!(conns.len(), 1);
    // Every packet arrived whole and unchanged, in both directions.
    assert_eq!(conns[0].0, sent);
    assert_eq!(answers, conns[0].1);
    assert!(answers[3].len() > 150_000);

    let (status, stderr) = rec.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("recorded 1 connection, 10 packets"), "{stderr}");
    assert!(!listen.exists(), "the listening socket is removed");
    let lines = recorded(&out, 1);
    assert_eq!(direction(&lines, "client_to_server"), sent);
    assert_eq!(direction(&lines, "server_to_client"), answers);
    let idx = index(&out);
    assert_eq!(idx.len(), 1);
    assert_eq!(idx[0]["transport"], "unixpacket");
    assert_eq!(idx[0]["lines"], 10);
    assert_eq!(idx[0]["client_to_server"]["end"], "closed by the client");
    assert_eq!(idx[0]["server_to_client"]["end"], "closed by the server");
    assert_eq!(idx[0]["error"], Value::Null);
    // Each direction's own counts.
    let bytes = |packets: &[Vec<u8>]| packets.iter().map(Vec::len).sum::<usize>();
    assert_eq!(idx[0]["client_to_server"]["lines"], 5);
    assert_eq!(idx[0]["client_to_server"]["bytes"], bytes(&sent));
    assert_eq!(idx[0]["server_to_client"]["lines"], 5);
    assert_eq!(idx[0]["server_to_client"]["bytes"], bytes(&answers));
    let (opened, closed) = (idx[0]["opened_ns"].as_u64().unwrap(), idx[0]["closed_ns"].as_u64().unwrap());
    assert!(opened < closed, "{idx:?}");
    let manifest = json(&out.join("MANIFEST.json"));
    assert_eq!(manifest["format"], "beehive-captures/1");
    assert_eq!(manifest["transport"], "unixpacket");
    assert_eq!(manifest["counts"]["recorded/index.jsonl"], 1);
    assert_eq!(manifest["counts"]["recorded/conn-000001.jsonl"], 10);
    assert_passes(&out, 10);
}

#[test]
fn a_message_go_could_not_have_written_fails_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    let server = packet_server(seqpacket_listener(&up), 1);
    let out = dir.path().join("rec");
    let listen = dir.path().join("relay.sock");
    let rec = Record::start(&out, &["--listen", listen.to_str().unwrap(), "--upstream", up.to_str().unwrap()]);
    let client = seqpacket_connect(&rec.listen);
    let good = packet(&message("m1", "hello"));
    let spaced = String::from_utf8(good.clone()).unwrap().replacen("\"header\":", "\"header\": ", 1).into_bytes();
    let broken = b"{\"header\":{\"msg_id\":\"x\",\"timestamp\":1},\"route\":{},\"content\":\"unterminated}\n".to_vec();
    for p in [&good, &spaced, &broken] {
        client.send(p).unwrap();
        recv_packet(&client).expect("an answer");
    }
    drop(client);
    assert_eq!(server.join().unwrap()[0].0, [good.clone(), spaced.clone(), broken.clone()]);
    let (status, stderr) = rec.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");

    let (code, stdout) = conformance(&out);
    assert_eq!(code, 1, "{stdout}");
    let spaced_at = good.len();
    let broken_at = good.len() + spaced.len();
    assert!(stdout.contains(&format!("FAIL conn-000001 client_to_server #2 @{spaced_at} [reencode]")), "{stdout}");
    assert!(stdout.contains(&format!("FAIL conn-000001 client_to_server #3 @{broken_at} [decode: ")), "{stdout}");
    assert!(stdout.contains("first difference at byte 10"), "the space after \"header\": {stdout}");
    assert!(stdout.contains("FAILED: 2 cases failed"), "{stdout}");
}

#[test]
fn a_packet_over_the_limit_is_refused_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    let server = packet_server(seqpacket_listener(&up), 1);
    let out = dir.path().join("rec");
    let listen = dir.path().join("relay.sock");
    let rec = Record::start(
        &out,
        &["--listen", listen.to_str().unwrap(), "--upstream", up.to_str().unwrap(), "--max-packet", "1000"],
    );
    let client = seqpacket_connect(&rec.listen);
    // A packet of exactly --max-packet passes: the server's answer here.
    let answer_len =
        |m: &Message| packet(&m.new_response(m.content().clone()).build_header("answer", "", 1_700_000_000_001)).len();
    let short = answer_len(&message("m1", ""));
    let m1 = message("m1", "s".repeat(1000 - short).as_str());
    let small = packet(&m1);
    client.send(&small).unwrap();
    assert_eq!(recv_packet(&client).map(|a| a.len()), Some(1000));
    client.send(&packet(&message("m2", "y".repeat(2000).as_str()))).unwrap();
    assert_eq!(recv_packet(&client), None, "the relay closes the connection");
    assert_eq!(server.join().unwrap()[0].0, [small], "nothing cut was forwarded");
    let (status, stderr) = rec.stop();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("exceeds --max-packet 1000"), "{stderr}");
    let idx = index(&out);
    assert!(idx[0]["error"].as_str().unwrap().contains("packet from the client exceeds"), "{idx:?}");
    let (code, stdout) = conformance(&out);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL conn-000001 [relay]"), "{stdout}");
}

#[test]
fn a_slow_peer_stalls_only_its_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    let listener = seqpacket_listener(&up);
    let out = dir.path().join("rec");
    let listen = dir.path().join("relay.sock");
    let rec = Record::start(&out, &["--listen", listen.to_str().unwrap(), "--upstream", up.to_str().unwrap()]);

    // Connection 1: the server floods a client that does not read.
    let stalled = seqpacket_connect(&rec.listen);
    let (flood, _) = listener.accept().unwrap();
    let p = packet(&message("flood", "z".repeat(4000).as_str()));
    flood.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut queued = 0;
    // Until every buffer on the way (relay included) is full.
    while flood.send(&p).is_ok() {
        queued += 1;
    }
    assert!(queued > 2, "{queued}");

    // Connection 2 still round-trips.
    let client = seqpacket_connect(&rec.listen);
    let (server, _) = listener.accept().unwrap();
    server.set_read_timeout(Some(T)).unwrap();
    let m = packet(&message("ping", "ping"));
    client.send(&m).unwrap();
    assert_eq!(recv_packet(&server).as_deref(), Some(&m[..]));
    server.send(&m).unwrap();
    assert_eq!(recv_packet(&client).as_deref(), Some(&m[..]));

    // The stalled client reads everything in the end.
    let mut got = 0;
    while got < queued {
        assert_eq!(recv_packet(&stalled).as_deref(), Some(&p[..]));
        got += 1;
    }
    drop((stalled, client, server, flood));
    let (status, stderr) = rec.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_passes(&out, queued + 2);
}

/// A stream upstream: reads until the client closes, then writes back
/// everything it got in one write and closes. Returns what it received.
fn stream_echo(listener: UnixListener) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        s.write_all(&got).unwrap();
        got
    })
}

fn stream_session(framed: &[u8], splits: &[usize]) -> (PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    let server = stream_echo(UnixListener::bind(&up).unwrap());
    let out = dir.path().join("rec");
    let listen = dir.path().join("relay.sock");
    let rec = Record::start(
        &out,
        &["--transport", "unix", "--listen", listen.to_str().unwrap(), "--upstream", up.to_str().unwrap()],
    );
    let mut client = UnixStream::connect(&rec.listen).unwrap();
    client.set_read_timeout(Some(T)).unwrap();
    let mut at = 0;
    for &cut in splits.iter().chain([framed.len()].iter()) {
        client.write_all(&framed[at..cut]).unwrap();
        at = cut;
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert_eq!(server.join().unwrap(), framed);
    assert_eq!(back, framed);
    let (status, stderr) = rec.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let lines = recorded(&out, 1);
    assert_eq!(direction(&lines, "client_to_server").concat(), framed);
    assert_eq!(direction(&lines, "server_to_client").concat(), framed);
    assert_eq!(index(&out)[0]["transport"], "unix");
    (out, dir)
}

fn four_messages() -> Vec<Message> {
    vec![
        message("s1", "one"),
        message("s2", serde_json::json!({"k": [1, 2, 3]})),
        message("s3", "x".repeat(100_000).as_str()),
        message("s4", "four"),
    ]
}

#[test]
fn unix_stream_with_raw_framing_is_reassembled_and_conforms() {
    let framed: Vec<u8> = four_messages().iter().flat_map(packet).collect();
    // Two messages in one write, a message split across writes, a long one.
    let first = packet(&four_messages()[0]).len();
    let splits = [first + packet(&four_messages()[1]).len() + 5, framed.len() - 7];
    let (out, _dir) = stream_session(&framed, &splits);
    assert_passes(&out, 8);
}

#[test]
fn unix_stream_with_package_framing_is_reassembled_and_conforms() {
    let mut framed = Vec::new();
    for m in four_messages() {
        let json = beehive_model::to_vec(&m).unwrap();
        framed.extend_from_slice(&common::package_frame(&json));
    }
    let (out, _dir) = stream_session(&framed, &[5, 12, 40]);
    assert_passes(&out, 8);

    // A stream cut inside a frame fails at that frame.
    let cut = framed.len() - 3;
    let (out, _dir) = stream_session(&framed[..cut], &[]);
    let (code, stdout) = conformance(&out);
    assert_eq!(code, 1, "{stdout}");
    let last = framed.len() - common::package_frame(&beehive_model::to_vec(&four_messages()[3]).unwrap()).len();
    assert!(stdout.contains(&format!("FAIL conn-000001 client_to_server #4 @{last} [framing: ")), "{stdout}");
}

#[test]
fn tcp_is_relayed_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = upstream.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let (mut s, _) = upstream.accept().unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        s.write_all(&got).unwrap();
        got
    });
    let out = dir.path().join("rec");
    let rec = Record::start(&out, &["--transport", "tcp", "--listen", "127.0.0.1:0", "--upstream", &up]);
    let mut client = std::net::TcpStream::connect(&rec.listen).unwrap();
    client.set_read_timeout(Some(T)).unwrap();
    let framed: Vec<u8> = four_messages().iter().flat_map(packet).collect();
    client.write_all(&framed).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert_eq!(server.join().unwrap(), framed);
    assert_eq!(back, framed);
    let (status, stderr) = rec.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(json(&out.join("MANIFEST.json"))["transport"], "tcp");
    assert_passes(&out, 8);
}

#[test]
fn the_project_socket_server_and_client_through_the_relay() {
    use beehive_context::{Hive, SimpleModule};
    use beehive_socket::blocking::{ConnectOptions, Endpoint, ServerOptions};
    use beehive_socket::{SocketBackend, SocketModuleConfig, StreamFraming};

    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("server.sock");
    let listen = dir.path().join("relay.sock");
    let yaml = |server: &Path, client: &Path| {
        format!(
            "- module: socketserver\n  server: true\n  address: {}\n  sockettype: unixpacket\n  connmax: 4\n  \
             buffersize: 65536\n- module: edgeclient\n  server: false\n  address: {}\n  sockettype: unixpacket\n  \
             buffersize: 65536\n",
            server.display(),
            client.display()
        )
    };
    let cfg = SocketModuleConfig::from_yaml(&yaml(&up, &listen)).unwrap();
    let server_hive = Hive::new();
    let server_backend = SocketBackend::new();
    server_hive.add_backend(server_backend.clone());
    server_hive
        .register(SimpleModule::new("srvmod", "srvgroup", |hive: &Hive| {
            while let Ok(m) = hive.receive("srvmod") {
                if m.is_sync() {
                    let body = format!("re: {}", m.content().as_str().unwrap_or_default());
                    hive.send_resp(m.new_response(body))?;
                }
            }
            Ok(())
        }))
        .unwrap();
    server_hive.start().unwrap();
    let entry = cfg.servers().next().unwrap();
    let server = server_backend
        .serve_blocking(
            &server_hive,
            &Endpoint::from_config(entry).unwrap(),
            cfg.server_session(entry, StreamFraming::Raw),
            ServerOptions::default(),
        )
        .unwrap();

    let out = dir.path().join("rec");
    let rec = Record::start(&out, &["--listen", listen.to_str().unwrap(), "--upstream", up.to_str().unwrap()]);
    let client_hive = Hive::new();
    let client_backend = SocketBackend::new();
    client_hive.add_backend(client_backend.clone());
    let entry = cfg.client("edgeclient").unwrap();
    // Returns once the handshake through the relay is complete.
    let client = client_backend
        .connect_blocking(
            &client_hive,
            &Endpoint::from_config(entry).unwrap(),
            entry.client_session(StreamFraming::Raw),
            ConnectOptions::default(),
        )
        .unwrap();
    for i in 0..5 {
        let m = Message::new("").build_router("edgeclient", "grp", "res", "update").fill_body(format!("ping {i}"));
        let resp = client_hive.send_sync("srvmod", m, T).unwrap();
        assert_eq!(resp.content().as_str(), Some(format!("re: ping {i}").as_str()));
    }
    drop(client);
    drop(server);
    let (status, stderr) = rec.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
    // The handshake (2 packets) and five requests with their responses.
    let lines = recorded(&out, 1);
    assert!(lines.len() >= 12, "{lines:?}");
    assert_passes(&out, lines.len());
}

#[test]
fn go_server_and_go_client_through_the_relay_conform() {
    let Some(gopeer) = std::env::var_os("GOPEER") else {
        eprintln!("skipped: set GOPEER to the Go peer binary (gopeer) to record a Go server and a Go client");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("server.sock");
    let l = dir.path().join("relay.sock");
    let report = dir.path().join("server-report.jsonl");
    let mut server = Command::new(&gopeer)
        .args(["server", "--socket", s.to_str().unwrap(), "--server-module", "socketserver"])
        .args(["--allow", "edgeclient", "--duration", "9s", "--report", report.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("GOPEER runs");
    // The Go server listens once its report says it started (bounded wait).
    let ready = std::time::Instant::now();
    while !std::fs::read_to_string(&report).is_ok_and(|r| r.contains("srv.start")) || !s.exists() {
        assert!(ready.elapsed() < T, "the Go server did not start");
        thread::sleep(Duration::from_millis(20));
    }
    let out = dir.path().join("rec");
    let rec = Record::start(&out, &["--listen", l.to_str().unwrap(), "--upstream", s.to_str().unwrap()]);
    let client_report = dir.path().join("client-report.jsonl");
    let client = Command::new(&gopeer)
        .args(["client", "--socket", l.to_str().unwrap(), "--module", "edgeclient", "--duration", "5s"])
        .args(["--report", client_report.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("GOPEER runs");
    assert!(client.success(), "Go client: {client}");
    let (status, stderr) = rec.stop();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let idx = index(&out);
    assert_eq!(idx.len(), 1, "{idx:?}");
    assert!(idx[0]["lines"].as_u64().unwrap() >= 10, "{idx:?}");
    let (code, stdout) = conformance(&out);
    eprintln!("{stdout}");
    assert_eq!(code, 0, "{stdout}");
    // The Go client saw its scenarios pass through the relay as directly:
    // the only failure is Go's own (answering the server's SendSync panics).
    let text = std::fs::read_to_string(&client_report).unwrap();
    let failed: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["result"] == "fail")
        .map(|v| v["scenario"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(failed.iter().all(|s| s == "cli.answer:srv-sync-0001"), "{failed:?}\n{text}");
}

#[test]
fn bad_output_directories_and_listen_paths_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("MANIFEST.json"), "{}").unwrap();
    let l = dir.path().join("l.sock");
    let out = beehive()
        .args(["record", "--listen", l.to_str().unwrap(), "--upstream", "/nonexistent/s.sock", "--out"])
        .arg(dir.path())
        .assert()
        .code(2);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(stderr.contains("already holds MANIFEST.json"), "{stderr}");

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let out = beehive()
        .args(["record", "--listen", file.to_str().unwrap(), "--upstream", "/nonexistent/s.sock", "--out"])
        .arg(dir.path().join("rec"))
        .assert()
        .code(2);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(stderr.contains("exists and is not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn an_unreachable_upstream_closes_the_client_and_ends_with_1_after_the_duration() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let listen = dir.path().join("relay.sock");
    let gone = dir.path().join("nobody.sock");
    let mut command = Record::command(
        &out,
        &["--listen", listen.to_str().unwrap(), "--upstream", gone.to_str().unwrap(), "--duration", "3s"],
    );
    let rec = Record::spawn(command.env("CLICOLOR_FORCE", "1"));
    let client = seqpacket_connect(&rec.listen);
    assert_eq!(recv_packet(&client), None);
    let (status, stderr) = rec.finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--duration reached"), "{stderr}");
    // The summary is red when a connection failed.
    let summary = stderr.lines().last().unwrap_or_default();
    assert!(summary.starts_with(&format!("{}beehive: --duration reached", RED)), "{summary:?}");
    let idx = index(&out);
    assert_eq!(
        idx[0]["error"].as_str().unwrap(),
        "cannot connect to the upstream: No such file or directory (os error 2)",
        "{idx:?}"
    );
}

#[test]
fn a_refused_tcp_upstream_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on any more.
    let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let out = dir.path().join("rec");
    let rec =
        Record::start(&out, &["--log", "info", "--transport", "tcp", "--listen", "127.0.0.1:0", "--upstream", &up]);
    let mut client = std::net::TcpStream::connect(&rec.listen).unwrap();
    client.set_read_timeout(Some(T)).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    rec.line_with("connection closed");
    let (status, stderr) = rec.stop();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let idx = index(&out);
    assert_eq!(idx[0]["error"], "cannot connect to the upstream: Connection refused (os error 111)", "{idx:?}");
}

#[test]
fn a_stale_socket_file_at_the_listen_path_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let listen = dir.path().join("relay.sock");
    // A socket file left behind by a process that is gone.
    drop(UnixListener::bind(&listen).unwrap());
    assert!(listen.exists());
    let up = dir.path().join("up.sock");
    echo_upstream(seqpacket_listener(&up));
    let out = dir.path().join("rec");
    let rec = Record::start(&out, &["--listen", listen.to_str().unwrap(), "--upstream", up.to_str().unwrap()]);
    round_trip(&rec.listen, "through the new socket");
    let (status, stderr) = rec.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
}

/// A unixpacket server at `path` that never accepts, with its backlog full:
/// a connect to it waits. Returns the listener and the waiting connections.
fn full_upstream(path: &Path) -> (Socket, Vec<Socket>) {
    let listener = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    listener.bind(&SockAddr::unix(path).unwrap()).unwrap();
    listener.listen(0).unwrap();
    let mut waiting = Vec::new();
    loop {
        let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        s.set_nonblocking(true).unwrap();
        match s.connect(&SockAddr::unix(path).unwrap()) {
            Ok(()) => waiting.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return (listener, waiting),
            Err(e) => panic!("connecting to the upstream: {e}"),
        }
        assert!(waiting.len() < 64, "the backlog never fills");
    }
}

/// The parts of [`record_to_full_upstream`] to keep until the test ends.
type Kept = (tempfile::TempDir, (Socket, Vec<Socket>));

/// A recording into `DIR/rec` (returned) whose upstream never accepts,
/// started with `extra` arguments.
fn record_to_full_upstream(extra: &[&str]) -> (Record, PathBuf, Kept) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let listen = dir.path().join("relay.sock");
    let upstream = dir.path().join("full.sock");
    let full = full_upstream(&upstream);
    let mut args = vec!["--listen", listen.to_str().unwrap(), "--upstream", upstream.to_str().unwrap()];
    args.extend_from_slice(extra);
    let rec = Record::start(&out, &args);
    (rec, out, (dir, full))
}

#[test]
fn an_upstream_that_does_not_accept_does_not_hold_up_the_end_of_the_recording() {
    let (rec, out, _kept) = record_to_full_upstream(&["--log", "info"]);
    let client = seqpacket_connect(&rec.listen);
    rec.line_with("connection accepted");
    // Its relay now waits to connect upstream; Ctrl-C ends it all the same.
    let (status, stderr) = rec.stop();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(recv_packet(&client), None);
    let idx = index(&out);
    assert_eq!(idx.len(), 1, "{idx:?}");
    assert_eq!(idx[0]["error"], "cannot connect to the upstream: the recording ended", "{idx:?}");
    assert_eq!(idx[0]["client_to_server"]["end"], "not relayed", "{idx:?}");
}

#[test]
fn connecting_upstream_gives_up_after_the_connect_timeout_and_closes_the_client() {
    let (rec, out, _kept) = record_to_full_upstream(&["--connect-timeout", "300ms"]);
    let client = seqpacket_connect(&rec.listen);
    let started = std::time::Instant::now();
    // The relay closes the client once connecting has taken 300 ms.
    assert_eq!(recv_packet(&client), None);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    let failed = rec.line_with("cannot connect to the upstream");
    assert!(failed.contains("no connection within --connect-timeout 300ms"), "{failed}");
    let (status, stderr) = rec.stop();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let idx = index(&out);
    assert!(idx[0]["error"].as_str().unwrap().ends_with("--connect-timeout 300ms"), "{idx:?}");
}

/// An upstream that answers every packet with the packet itself, on any
/// number of connections, until no client has come for [`T`].
fn echo_upstream(listener: Socket) {
    thread::spawn(move || {
        while let Ok((s, _)) = listener.accept() {
            s.set_read_timeout(Some(T)).unwrap();
            s.set_send_buffer_size(1 << 20).unwrap();
            thread::spawn(move || {
                while let Some(p) = recv_packet(&s) {
                    if s.send(&p).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// One packet there and back through the relay on a new connection.
fn round_trip(relay: &str, body: &str) {
    relayed_client(relay, body);
}

/// A new connection through the relay, after one packet there and back.
fn relayed_client(relay: &str, body: &str) -> Socket {
    let client = seqpacket_connect(relay);
    let p = packet(&message("m", body));
    client.send(&p).unwrap();
    assert_eq!(recv_packet(&client).as_deref(), Some(&*p), "{body}: the answer through the relay");
    client
}

#[test]
fn closed_connections_give_their_descriptors_back() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    echo_upstream(seqpacket_listener(&up));
    let out = dir.path().join("rec");
    let listen = dir.path().join("relay.sock");
    let args = ["--log", "info", "--listen", listen.to_str().unwrap(), "--upstream", up.to_str().unwrap()];
    // About 20 descriptors are left for connections, which take 3 each
    // while they are open.
    let rec = Record::start_limited(&out, &args, 32);
    for i in 0..60 {
        round_trip(&rec.listen, &format!("call {i}"));
        // The relay has let go of the connection before the next comes.
        rec.line_with("connection closed");
    }
    let (status, stderr) = rec.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("recorded 60 connections, 120 packets"), "{stderr}");
    assert!(!stderr.contains("accept failed"), "{stderr}");
}

/// The descriptors process `pid` has open below `limit` (one inherited
/// from the test's parent may be above it).
fn open_descriptors(pid: u32, limit: u32) -> usize {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap();
    fds.filter(|fd| fd.as_ref().unwrap().file_name().to_str().unwrap().parse::<u32>().unwrap() < limit).count()
}

#[test]
fn out_of_descriptors_accepting_pauses_and_resumes_when_connections_close() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    echo_upstream(seqpacket_listener(&up));
    // A relayed connection takes 3 descriptors: the client, its file and
    // the upstream. With none left, accepting fails; with one left, the
    // file cannot be created. The limit picks the case.
    for left in [0, 1] {
        let (rec, fit, out) = (24..27)
            .find_map(|limit| {
                let out = dir.path().join(format!("rec-{left}-{limit}"));
                let listen = dir.path().join(format!("relay-{left}-{limit}.sock"));
                let args = ["--listen", listen.to_str().unwrap(), "--upstream", up.to_str().unwrap()];
                let rec = Record::start_limited(&out, &args, limit);
                let free = limit as usize - open_descriptors(rec.pid(), limit);
                if free % 3 == left {
                    Some((rec, free / 3, out))
                } else {
                    let _ = rec.stop();
                    None
                }
            })
            .unwrap();
        // As many connections as fit, relayed and held open.
        let mut held: Vec<Socket> = (0..fit).map(|i| relayed_client(&rec.listen, &format!("held {i}"))).collect();
        // The next ones do not fit.
        held.extend((0..3).map(|_| seqpacket_connect(&rec.listen)));
        let first = rec.line_with("accepting again in");
        let cause = if left == 0 { "accept failed: Too many open files" } else { "closed unrecorded: cannot create" };
        assert!(first.contains(cause) && first.ends_with("accepting again in 20ms"), "{left}: {first}");
        // Each failure doubles the pause.
        let second = rec.line_with("accepting again in");
        assert!(second.ends_with("accepting again in 40ms"), "{left}: {second}");
        if left == 0 {
            // The connection waits to be accepted, and the retries are a
            // handful in half a second, not a busy loop.
            thread::sleep(Duration::from_millis(500));
            let failures: Vec<String> = rec.lines.try_iter().filter(|l| l.contains("accepting again")).collect();
            assert!(failures.len() <= 5, "{failures:#?}");
        }
        drop(held);
        // With descriptors back, the relay accepts again.
        round_trip(&rec.listen, "after");
        let (status, stderr) = rec.stop();
        // Each of the three that did not fit is either in the index or
        // counted as closed unrecorded (the third may come after the
        // descriptors are back).
        let unrecorded: usize = stderr
            .split("; ")
            .find_map(|part| part.strip_suffix(" closed unrecorded (their recording file could not be created)"))
            .map_or(0, |n| n.parse().unwrap());
        if left == 0 {
            assert_eq!((status.code(), unrecorded), (Some(0), 0), "{stderr}");
        } else {
            assert!((2..=3).contains(&unrecorded), "{stderr}");
            assert_eq!(status.code(), Some(1), "{stderr}");
        }
        assert_eq!(index(&out).len(), fit + 3 - unrecorded + 1, "{left}: {stderr}");
    }
}

/// The lines of `out`'s connection `conn` file as it is on disk now.
fn lines_on_disk(out: &Path, conn: u64) -> usize {
    let path = out.join(format!("recorded/conn-{conn:06}.jsonl"));
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn a_recording_reaches_the_disk_while_it_runs_and_open_connections_end_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    echo_upstream(seqpacket_listener(&up));
    let out = dir.path().join("rec");
    let listen = dir.path().join("relay.sock");
    let mut command =
        Record::command(&out, &["--listen", listen.to_str().unwrap(), "--upstream", up.to_str().unwrap()]);
    let rec = Record::spawn(command.env("CLICOLOR_FORCE", "1"));
    let client = seqpacket_connect(&rec.listen);
    let p = packet(&message("m1", "kept open"));
    client.send(&p).unwrap();
    assert_eq!(recv_packet(&client).as_deref(), Some(&*p));
    // Written out within a second or so, while the connection is open.
    let deadline = std::time::Instant::now() + T;
    while lines_on_disk(&out, 1) < 2 {
        assert!(std::time::Instant::now() < deadline, "the lines never reached the disk");
        thread::sleep(Duration::from_millis(50));
    }
    let (status, stderr) = rec.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
    // Dim when every connection was relayed.
    let summary = stderr.lines().last().unwrap_or_default();
    assert!(summary.starts_with(&format!("{DIM}beehive: stopped: recorded 1 connection, 2 packets")), "{summary:?}");
    assert_eq!(recv_packet(&client), None, "the end of the recording closes the client");
    let idx = index(&out);
    assert_eq!(idx[0]["client_to_server"]["end"], "recording ended", "{idx:?}");
    assert_eq!(idx[0]["server_to_client"]["end"], "recording ended", "{idx:?}");
    assert_eq!(idx[0]["error"], Value::Null, "{idx:?}");
}

/// An upstream on `path` (unixpacket or unix stream) that takes one
/// connection and closes it: at once when `wait_for_data` is false, else
/// once something has arrived, unread (which resets the connection).
fn closing_upstream(path: &Path, ty: Type, wait_for_data: bool) -> JoinHandle<()> {
    let listener = Socket::new(Domain::UNIX, ty, None).unwrap();
    listener.bind(&SockAddr::unix(path).unwrap()).unwrap();
    listener.listen(1).unwrap();
    listener.set_read_timeout(Some(T)).unwrap();
    thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        if wait_for_data {
            s.set_read_timeout(Some(T)).unwrap();
            let mut byte = [std::mem::MaybeUninit::uninit()];
            assert!(s.peek(&mut byte).unwrap() > 0, "something arrives");
        }
    })
}

/// Runs a relay of `transport` to [`closing_upstream`], and `client` on a
/// connection to it; returns the connection's line of the index.
fn relay_to_closing_upstream(transport: &str, wait_for_data: bool, client: impl FnOnce(&Path)) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    let ty = if transport == "unix" { Type::STREAM } else { Type::SEQPACKET };
    let upstream = closing_upstream(&up, ty, wait_for_data);
    let out = dir.path().join("rec");
    let listen = dir.path().join("relay.sock");
    let rec = Record::start(
        &out,
        &[
            "--log",
            "info",
            "--transport",
            transport,
            "--listen",
            listen.to_str().unwrap(),
            "--upstream",
            up.to_str().unwrap(),
        ],
    );
    client(Path::new(&rec.listen));
    upstream.join().unwrap();
    // Both directions have ended before the recording does.
    rec.line_with("connection closed");
    let (status, stderr) = rec.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
    index(&out).remove(0)
}

/// A client of the relay on a unix transport.
enum UnixClient {
    Stream(UnixStream),
    Packet(Socket),
}

impl UnixClient {
    fn connect(transport: &str, relay: &Path) -> UnixClient {
        let relay = relay.to_str().unwrap();
        if transport == "unix" {
            let client = UnixStream::connect(relay).unwrap();
            client.set_read_timeout(Some(T)).unwrap();
            UnixClient::Stream(client)
        } else {
            UnixClient::Packet(seqpacket_connect(relay))
        }
    }

    /// Sends `text` as a packet, or as a line on a stream.
    fn send(&mut self, text: &str) {
        match self {
            UnixClient::Stream(s) => s.write_all(format!("{text}\n").as_bytes()).unwrap(),
            UnixClient::Packet(s) => assert_eq!(s.send(text.as_bytes()).unwrap(), text.len()),
        }
    }

    /// Waits for the end of the connection, with nothing before it.
    fn closed(&mut self) {
        match self {
            UnixClient::Stream(s) => {
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).unwrap();
                assert!(rest.is_empty(), "{rest:?}");
            }
            UnixClient::Packet(s) => assert_eq!(recv_packet(s), None),
        }
    }
}

#[test]
fn an_upstream_reset_ends_its_direction_and_the_relay_shuts_the_other() {
    for transport in ["unixpacket", "unix"] {
        let conn = relay_to_closing_upstream(transport, true, |relay| {
            let mut client = UnixClient::connect(transport, relay);
            client.send("unread");
            client.closed();
        });
        let end = |dir: &str| conn[dir]["end"].as_str().unwrap().to_owned();
        assert!(end("server_to_client").starts_with("read failed: Connection reset by peer"), "{transport}: {conn}");
        assert_eq!(end("client_to_server"), "shut down: the other direction failed", "{transport}: {conn}");
    }
}

#[test]
fn writing_to_an_upstream_that_closed_fails_that_direction() {
    for transport in ["unixpacket", "unix"] {
        let conn = relay_to_closing_upstream(transport, false, |relay| {
            let mut client = UnixClient::connect(transport, relay);
            // The upstream's close passes through.
            client.closed();
            client.send("too late");
        });
        let end = |dir: &str| conn[dir]["end"].as_str().unwrap().to_owned();
        assert_eq!(end("server_to_client"), "closed by the server", "{transport}: {conn}");
        let failed = end("client_to_server");
        assert!(failed.starts_with("write failed"), "{transport}: {conn}");
        if transport == "unix" {
            // What was read is recorded all the same.
            assert!(failed.starts_with("write failed after 0 of 9 bytes"), "{conn}");
            assert_eq!(conn["client_to_server"]["bytes"], 9, "{conn}");
        }
    }
}

#[test]
fn a_packet_over_the_default_send_buffer_is_relayed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    echo_upstream(seqpacket_listener(&up));
    let out = dir.path().join("rec");
    let listen = dir.path().join("relay.sock");
    let rec = Record::start(&out, &["--listen", listen.to_str().unwrap(), "--upstream", up.to_str().unwrap()]);
    let client = seqpacket_connect(&rec.listen);
    let default = client.send_buffer_size().unwrap();
    client.set_send_buffer_size(1 << 20).unwrap();
    let size = 600_000.min(client.send_buffer_size().unwrap() - 4096);
    if size <= default {
        eprintln!("skipped: a packet over the default send buffer ({default} bytes) cannot be sent here");
        return;
    }
    let big = vec![b'b'; size];
    client.send(&big).unwrap();
    assert_eq!(recv_packet(&client).map(|p| p.len()), Some(size));
    drop(client);
    let (status, stderr) = rec.stop();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let lines = recorded(&out, 1);
    assert_eq!(direction(&lines, "client_to_server"), std::slice::from_ref(&big));
    assert_eq!(direction(&lines, "server_to_client"), [big]);
}
