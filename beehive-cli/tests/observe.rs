//! Logs and metrics of the real `beehive` binary: `record --metrics` and
//! `listen --metrics` serve Prometheus text whose counters follow the
//! traffic pushed through them, scraped over HTTP; `--log-format json`
//! writes JSON lines on stderr, and `--log` / `RUST_LOG` choose which.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use beehive_model::Message;
use common::{msg, Hive};
use serde_json::Value;
use socket2::{Domain, SockAddr, Socket, Type};

/// The longest any single step may take.
const T: Duration = Duration::from_secs(20);
/// How long the metrics endpoint may take to answer, or a counter to reach its value.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// A running `beehive`, its stdout and stderr read line by line.

struct Beehive {
    /// `None` once it has ended; killed on drop while it runs (a failed test).
    child: Option<Child>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Drop for Beehive {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn lines_of(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Beehive {
    fn start(args: &[&str]) -> Beehive {
        let mut child = Command::new(env!("CARGO_BIN_EXE_beehive"))
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("beehive runs");
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        Beehive { child: Some(child), stdout, stderr }
    }

    fn line(rx: &Receiver<String>, what: &str) -> String {
        rx.recv_timeout(T).unwrap_or_else(|e| panic!("{what}: no line within {T:?} ({e})"))
    }

    fn stderr_line(&mut self, what: &str) -> String {
        Self::line(&self.stderr, what)
    }

    fn stdout_line(&mut self, what: &str) -> String {
        Self::line(&self.stdout, what)
    }

    /// The address of `beehive: metrics: http://ADDR/metrics` on stderr,
    /// which comes once the endpoint listens.
    fn metrics_addr(&mut self) -> SocketAddr {
        let line = self.stderr_line("the metrics address");
        line.strip_prefix("beehive: metrics: http://")
            .and_then(|r| r.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    /// Ends the process as Ctrl-C does; returns its exit status and the rest of stderr.
    fn interrupt(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("beehive runs");
        let pid = child.id().to_string();
        assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill runs").success());
        let mut rest = Vec::new();
        // stderr closes when the process exits.
        while let Ok(line) = self.stderr.recv_timeout(T) {
            rest.push(line);
        }
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || tx.send(child.wait()));
        match rx.recv_timeout(T) {
            Ok(status) => (status.unwrap(), rest.join("\n")),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("beehive did not end within {T:?} of SIGINT");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Scraping: an HTTP/1.1 GET over a plain TcpStream.

/// One GET of `http://ADDR/metrics`: the body of a 200 response, or why not.
fn get_metrics(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no end of headers in {text:?}"))?;
    let mut head_lines = head.split("\r\n");
    let status = head_lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200 ") {
        return Err(format!("status {status:?}"));
    }
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let content_type = header("content-type").unwrap_or_default();
    if !content_type.starts_with("text/plain") {
        return Err(format!("content type {content_type:?}"));
    }
    if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| format!("content-length {len:?}"))?;
        if body.len() != len {
            return Err(format!("{} body bytes, content-length {len}", body.len()));
        }
        return Ok(body.to_owned());
    }
    if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        return dechunk(body);
    }
    Ok(body.to_owned())
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").ok_or("unterminated chunk size")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|_| format!("chunk size {size:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("short chunk")?;
        out.push_str(chunk);
        body = rest[size..].strip_prefix("\r\n").ok_or("chunk without its line end")?;
    }
}

/// The metrics text, connecting again until the endpoint answers (within
/// [`SCRAPE_DEADLINE`]).
fn scrape(addr: SocketAddr) -> String {
    let start = Instant::now();
    loop {
        match get_metrics(addr) {
            Ok(text) => return text,
            Err(e) if start.elapsed() > SCRAPE_DEADLINE => {
                panic!("http://{addr}/metrics did not answer within {SCRAPE_DEADLINE:?}: {e}")
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The value of the sample `series` (`name` or `name{label="value"}`, as
/// the exporter writes it) in Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        (key == series).then(|| value.parse().unwrap_or_else(|e| panic!("{e}: {l:?}")))
    })
}

/// Scrapes until every `(series, value)` holds (within [`SCRAPE_DEADLINE`]);
/// returns the last text.
fn await_samples(addr: SocketAddr, want: &[(&str, f64)]) -> String {
    let start = Instant::now();
    loop {
        let text = scrape(addr);
        if want.iter().all(|(series, v)| sample(&text, series) == Some(*v)) {
            return text;
        }
        if start.elapsed() > SCRAPE_DEADLINE {
            let got: Vec<_> = want.iter().map(|(s, _)| (s, sample(&text, s))).collect();
            panic!("wanted {want:?} within {SCRAPE_DEADLINE:?}, got {got:?} in\n{text}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// record

const C2S_PACKETS: &str = "beehive_record_packets_total{direction=\"client_to_server\"}";
const S2C_PACKETS: &str = "beehive_record_packets_total{direction=\"server_to_client\"}";
const C2S_BYTES: &str = "beehive_record_bytes_total{direction=\"client_to_server\"}";
const S2C_BYTES: &str = "beehive_record_bytes_total{direction=\"server_to_client\"}";
const CONNECTIONS: &str = "beehive_record_connections_total";
const OPEN: &str = "beehive_record_connections_open";
const FAILURES: &str = "beehive_record_relay_failures_total";

fn seqpacket_listener(path: &Path) -> Socket {
    let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    s.bind(&SockAddr::unix(path).unwrap()).unwrap();
    s.listen(8).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

fn seqpacket_connect(path: &Path) -> Socket {
    let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    s.connect(&SockAddr::unix(path).unwrap()).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

/// One packet; `None` at the end of the connection.
fn recv_packet(s: &Socket) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 1 << 16];
    let n = (&*s).read(&mut buf).expect("a packet within the time limit");
    (n > 0).then(|| buf[..n].to_vec())
}

/// An upstream that answers every packet on one connection with the
/// packet and `!`, and closes when the client does.
fn echo_server(listener: Socket) -> JoinHandle<usize> {
    thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let mut n = 0;
        while let Some(mut p) = recv_packet(&s) {
            p.push(b'!');
            s.send(&p).unwrap();
            n += 1;
        }
        n
    })
}

fn packet(id: &str, body: &str) -> Vec<u8> {
    let m = Message::raw()
        .build_header(id, "", 1_700_000_000_000)
        .build_router("edgeclient", "grp", "res", "update")
        .fill_body(body);
    beehive_model::to_vec_line(&m).unwrap()
}

/// `beehive record --metrics 127.0.0.1:0 …`, once it listens and records.
fn record(out: &Path, listen: &Path, upstream: &Path) -> (Beehive, SocketAddr) {
    let mut rec = Beehive::start(&[
        "record",
        "--listen",
        listen.to_str().unwrap(),
        "--upstream",
        upstream.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let addr = rec.metrics_addr();
    let next = rec.stderr_line("the recording line");
    assert!(next.starts_with("beehive: recording "), "{next}");
    (rec, addr)
}

#[test]
fn record_metrics_count_the_packets_and_bytes_relayed() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.sock");
    let server = echo_server(seqpacket_listener(&up));
    let listen = dir.path().join("relay.sock");
    let (rec, addr) = record(&dir.path().join("rec"), &listen, &up);

    // Registered at the start, all zero before any traffic.
    let before = scrape(addr);
    for series in [C2S_PACKETS, S2C_PACKETS, C2S_BYTES, S2C_BYTES, CONNECTIONS, OPEN, FAILURES] {
        assert_eq!(sample(&before, series), Some(0.0), "{series} in\n{before}");
    }
    assert!(before.contains("# TYPE beehive_record_packets_total counter"), "{before}");
    assert!(before.contains("# TYPE beehive_record_connections_open gauge"), "{before}");

    let client = seqpacket_connect(&listen);
    let sent: Vec<Vec<u8>> = (0..4).map(|i| packet(&format!("m{i}"), &"x".repeat(10 * i))).collect();
    let mut answers = Vec::new();
    for p in &sent {
        client.send(p).unwrap();
        answers.push(recv_packet(&client).expect("the echo"));
    }
    let bytes = |ps: &[Vec<u8>]| ps.iter().map(Vec::len).sum::<usize>() as f64;
    // Each packet is counted once it was forwarded, so the counts may lag
    // the answers by a moment: scrape until they arrive, then they must be exact.
    let during = await_samples(
        addr,
        &[
            (C2S_PACKETS, 4.0),
            (S2C_PACKETS, 4.0),
            (C2S_BYTES, bytes(&sent)),
            (S2C_BYTES, bytes(&answers)),
            (CONNECTIONS, 1.0),
            (OPEN, 1.0),
        ],
    );
    assert_eq!(sample(&during, FAILURES), Some(0.0), "{during}");

    drop(client);
    assert_eq!(server.join().unwrap(), 4);
    await_samples(addr, &[(OPEN, 0.0), (CONNECTIONS, 1.0), (C2S_PACKETS, 4.0), (S2C_PACKETS, 4.0)]);

    let (status, stderr) = rec.interrupt();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("recorded 1 connection, 8 packets"), "{stderr}");
}

#[test]
fn record_metrics_count_a_connection_that_could_not_be_relayed() {
    let dir = tempfile::tempdir().unwrap();
    let listen = dir.path().join("relay.sock");
    let (rec, addr) = record(&dir.path().join("rec"), &listen, &dir.path().join("nobody.sock"));
    let client = seqpacket_connect(&listen);
    assert_eq!(recv_packet(&client), None, "the relay closes the client");
    await_samples(addr, &[(CONNECTIONS, 1.0), (FAILURES, 1.0), (OPEN, 0.0), (C2S_PACKETS, 0.0)]);
    let (status, stderr) = rec.interrupt();
    assert_eq!(status.code(), Some(1), "{stderr}");
}

#[test]
fn a_metrics_address_in_use_is_an_error_before_recording() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let listen = dir.path().join("relay.sock");
    let out = common::beehive()
        .args(["record", "--listen", listen.to_str().unwrap(), "--upstream", "/nonexistent/s.sock", "--out"])
        .arg(dir.path().join("rec"))
        .args(["--metrics", &port])
        .timeout(T)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cannot serve metrics on {port}")), "{stderr}");
    assert!(!listen.exists(), "the listening socket is removed");
}

// ---------------------------------------------------------------------------
// listen, against an async socket server run by the test

const MESSAGES: &str = "beehive_listen_messages_total";
const ANSWERS: &str = "beehive_listen_answers_total";
const MALFORMED: &str = "beehive_listen_malformed_total";

#[test]
fn listen_metrics_count_messages_and_answers() {
    let mut hive = Hive::start();
    let mut listener = Beehive::start(&[
        "listen",
        "--socket",
        &hive.socket,
        "--module",
        "cli",
        "--answer",
        "pong",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let addr = listener.metrics_addr();
    let registered = listener.stdout_line("the registered line");
    assert!(registered.starts_with("registered as cli on "), "{registered}");
    hive.registered();

    let before = scrape(addr);
    for series in [MESSAGES, ANSWERS, MALFORMED] {
        assert_eq!(sample(&before, series), Some(0.0), "{series} in\n{before}");
    }

    for body in ["one", "two"] {
        hive.rt.block_on(hive.handle.send("cli", msg(body))).expect("the server sends");
    }
    let answer = hive.rt.block_on(hive.handle.send_sync("cli", msg("ping"), T)).expect("the listener answers");
    assert_eq!(answer.content().as_str(), Some("pong"));
    for _ in 0..3 {
        listener.stdout_line("a message");
    }
    let after = await_samples(addr, &[(MESSAGES, 3.0), (ANSWERS, 1.0)]);
    assert_eq!(sample(&after, MALFORMED), Some(0.0), "{after}");

    let (status, stderr) = listener.interrupt();
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[test]
fn serve_metrics_show_the_socket_library_counting_a_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = common::socket_module_config(dir.path(), 4096, &["cli"]);
    let mut server =
        Beehive::start(&["serve", "--config", config.to_str().unwrap(), "--echo", "--metrics", "127.0.0.1:0"]);
    let addr = server.metrics_addr();
    let listening = server.stdout_line("the listening line");
    assert!(listening.starts_with("serving socketserver on "), "{listening}");
    let out = common::beehive()
        .args(["send", "--socket", &socket, "--module", "cli", "--to", "echo", "--sync", "--content", "ping"])
        .timeout(T)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // One connection, opened and closed; read: the handshake and the
    // request; written: the handshake answer and the response.
    let opened = r#"beehive_socket_connections_opened_total{role="server"}"#;
    let open = r#"beehive_socket_connections_open{role="server"}"#;
    let read = r#"beehive_socket_messages_read_total{role="server"}"#;
    let written = r#"beehive_socket_messages_written_total{role="server"}"#;
    let text = await_samples(addr, &[(opened, 1.0), (open, 0.0), (read, 2.0), (written, 2.0)]);
    let bytes = sample(&text, r#"beehive_socket_bytes_read_total{role="server"}"#).unwrap_or_default();
    assert!(bytes > 100.0, "{text}");
    let (status, stderr) = server.interrupt();
    assert_eq!(status.code(), Some(0), "{stderr}");
}

// ---------------------------------------------------------------------------
// Logs

/// `beehive [FLAGS] listen … --timeout 300ms` against `hive`, with
/// `RUST_LOG` set to `rust_log` (or unset); ends by itself once registered.
fn listen_briefly(hive: &Hive, flags: &[&str], rust_log: Option<&str>) -> Output {
    let mut cmd = common::beehive();
    cmd.args(flags).args(["listen", "--socket", &hive.socket, "--module", "cli", "--timeout", "300ms"]);
    match rust_log {
        Some(v) => cmd.env("RUST_LOG", v),
        None => cmd.env_remove("RUST_LOG"),
    };
    let out = cmd.timeout(T).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("registered as cli on "), "stdout holds the command's output only: {stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    out
}

/// The client's `connected` event, as the JSON object of a log line.
fn is_connected_event(v: &Value) -> bool {
    v["fields"]["message"] == "connected"
        && v["level"] == "INFO"
        && v["target"].as_str().is_some_and(|t| t.starts_with("beehive_socket::"))
}

#[test]
fn json_logs_go_to_stderr_as_one_object_per_line_filtered_by_rust_log() {
    let hive = Hive::start();

    let out = listen_briefly(&hive, &["--log-format", "json"], Some("beehive_socket=info"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let events: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not a JSON line: {l:?}\n{stderr}")))
        .collect();
    let connected = events.iter().find(|v| is_connected_event(v)).unwrap_or_else(|| panic!("{stderr}"));
    assert!(connected["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{connected}");
    assert!(connected["fields"]["endpoint"].as_str().is_some_and(|e| e.contains("beehive.sock")), "{connected}");
    // RUST_LOG=beehive_socket=info lets nothing of other targets through below warn.
    for v in &events {
        let target = v["target"].as_str().unwrap_or_default();
        assert!(
            target.starts_with("beehive_socket") || ["WARN", "ERROR"].contains(&v["level"].as_str().unwrap()),
            "{v}"
        );
    }

    // The default filter is warn: the info event is not written.
    let out = listen_briefly(&hive, &["--log-format", "json"], None);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("\"connected\""), "{stderr}");

    // --log overrides RUST_LOG.
    let out = listen_briefly(&hive, &["--log-format", "json", "--log", "warn"], Some("beehive_socket=info"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("\"connected\""), "{stderr}");
    let out = listen_briefly(&hive, &["--log-format", "json", "--log", "beehive_socket=info"], Some("off"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.lines().any(|l| serde_json::from_str(l).is_ok_and(|v: Value| is_connected_event(&v))), "{stderr}");
}

#[test]
fn text_logs_are_plain_lines_on_stderr() {
    let hive = Hive::start();
    let out = listen_briefly(&hive, &[], Some("info"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let line = stderr.lines().find(|l| l.contains(" connected")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains(" INFO beehive_socket::"), "{line}");
    assert!(!stderr.contains('\x1b'), "no colour when stderr is not a terminal: {stderr:?}");
    assert!(serde_json::from_str::<Value>(line).is_err(), "{line}");
}

#[test]
fn a_bad_log_filter_is_a_usage_error_and_a_bad_rust_log_a_warning() {
    let out = common::beehive().args(["--log", "beehive=loud", "decode", "-"]).write_stdin("").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'beehive=loud' for '--log <FILTER>'"));

    let out = common::beehive()
        .args(["--log-format", "json", "decode", "-"])
        .env("RUST_LOG", "beehive=loud")
        .write_stdin("")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let warning: Value = serde_json::from_str(stderr.lines().next().unwrap_or_default()).unwrap();
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert!(warning["fields"]["message"].as_str().unwrap().starts_with("ignoring RUST_LOG=\"beehive=loud\""));
}
