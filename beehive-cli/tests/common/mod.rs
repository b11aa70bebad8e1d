//! Helpers shared by the integration tests: the binary, the vendored Go
//! captures, and the records of `decode --json`.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use beehive_model::Message;
use beehive_socket::asyncio::{
    DriverOptions, Endpoint, IncomingMessages, Server, ServerEvent, ServerEvents, ServerHandle, ServerOptions,
};
use beehive_socket::session::{SessionConfig, TransportKind};
use tokio::runtime::Runtime;
use tokio::sync::mpsc::UnboundedSender;

use assert_cmd::Command;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The `beehive` binary, with the colour environment cleared.
pub fn beehive() -> Command {
    let mut cmd = assert_cmd::cargo::cargo_bin_cmd!("beehive");
    for var in ["NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE", "CI"] {
        cmd.env_remove(var);
    }
    cmd
}

/// The vendored Go capture set.
pub fn captures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conformance/captures")
}

/// One line of `decode --json`; `message` is kept as the exact bytes printed.
#[derive(Debug, Deserialize)]
pub struct Record<'a> {
    pub offset: u64,
    pub length: Option<u64>,
    pub framing: String,
    #[serde(borrow, default)]
    pub message: Option<&'a RawValue>,
    #[serde(default)]
    pub error: Option<serde_json::Value>,
    #[serde(default)]
    pub skipped: Option<u64>,
    #[serde(default)]
    pub resumed_at: Option<u64>,
}

impl Record<'_> {
    /// The message's JSON bytes, panicking when the record is not a message.
    pub fn message(&self) -> &str {
        self.message.unwrap_or_else(|| panic!("not a message: {self:?}")).get()
    }

    /// The error's `kind`, or `""`.
    pub fn error_kind(&self) -> &str {
        self.error.as_ref().and_then(|e| e["kind"].as_str()).unwrap_or("")
    }
}

/// Parses every line of `decode --json` output.
pub fn records(out: &str) -> Vec<Record<'_>> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// A Package frame: `beehv1rv`, the big-endian length, the payload.
pub fn package_frame(payload: &[u8]) -> Vec<u8> {
    let mut v = b"beehv1rv".to_vec();
    v.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Go's `String()` of a message as `decode` prints it: control characters escaped.
pub fn escape_controls(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The longest any single step of a test with processes may take.
pub const STEP: Duration = Duration::from_secs(20);
const T: Duration = STEP;

/// A socket module configuration in `dir`: a server entry `socketserver`
/// on `dir/beehive.sock` and client entries for `clients` with the same
/// address, all with `buffersize`. Returns the file and the socket path.
pub fn socket_module_config(dir: &Path, buffersize: usize, clients: &[&str]) -> (PathBuf, String) {
    let socket = dir.join("beehive.sock");
    let mut yaml = format!(
        "- module: socketserver\n  server: true\n  address: {}\n  sockettype: unixpacket\n  buffersize: {buffersize}\n",
        socket.display()
    );
    for c in clients {
        yaml.push_str(&format!(
            "- module: {c}\n  server: false\n  address: {}\n  sockettype: unixpacket\n  buffersize: {buffersize}\n",
            socket.display()
        ));
    }
    let path = dir.join("socket_module.yaml");
    std::fs::write(&path, yaml).unwrap();
    (path, socket.to_str().unwrap().to_owned())
}

/// A CA and a server certificate for 127.0.0.1, as PEM files in `dir`.
pub fn server_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert =
        CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &ca_cert, &ca_key).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// A running `beehive` process, its stdout read line by line.
pub struct Running {
    child: Option<Child>,
    lines: Receiver<String>,
    /// Its stderr, passed on to the test's as it comes.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    stderr_reader: Option<thread::JoinHandle<()>>,
    what: &'static str,
}

impl Running {
    pub fn start(what: &'static str, args: &[&str]) -> Running {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_beehive"))
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("beehive runs");
        let stdout = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let kept = std::sync::Arc::clone(&stderr);
        let stderr_reader = thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { return };
                eprintln!("{line}");
                let mut kept = kept.lock().unwrap();
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running { child: Some(child), lines, stderr, stderr_reader: Some(stderr_reader), what }
    }

    pub fn line(&mut self, waiting_for: &str) -> String {
        match self.lines.recv_timeout(T) {
            Ok(line) => line,
            Err(e) => {
                self.kill();
                panic!("{waiting_for}: no line from beehive {} within {T:?} ({e})", self.what);
            }
        }
    }

    /// The next line containing `needle` (other lines are skipped).
    pub fn line_with(&mut self, needle: &str) -> String {
        loop {
            let line = self.line(needle);
            if line.contains(needle) {
                return line;
            }
        }
    }

    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGINT and waits for the process to end.
    pub fn interrupt(self) -> ExitStatus {
        self.sigint();
        self.wait()
    }

    /// Sends SIGINT; the exit status and all the process wrote to stderr.
    pub fn interrupt_with_stderr(self) -> (ExitStatus, String) {
        self.sigint();
        self.wait_with_stderr()
    }

    fn sigint(&self) {
        let pid = self.child.as_ref().unwrap().id();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    }

    /// Waits for the process to end; its exit status and all it wrote to stderr.
    pub fn wait_with_stderr(mut self) -> (ExitStatus, String) {
        let reader = self.stderr_reader.take();
        let stderr = std::sync::Arc::clone(&self.stderr);
        let status = self.wait();
        // The process has ended: its stderr is at its end.
        if let Some(reader) = reader {
            let _ = reader.join();
        }
        let text = stderr.lock().unwrap().clone();
        (status, text)
    }

    pub fn wait(mut self) -> ExitStatus {
        let (tx, rx) = mpsc::channel();
        let mut child = self.child.take().unwrap();
        let pid = child.id();
        thread::spawn(move || tx.send(child.wait()));
        match rx.recv_timeout(T) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!("beehive {} did not end within {T:?}", self.what);
            }
        }
    }
}

impl Drop for Running {
    /// A test that fails leaves no process behind.
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// An async socket server run by the test

/// A server with the local module `srvmod` that lets the module `cli` in.
pub struct Hive {
    pub rt: Runtime,
    pub handle: ServerHandle,
    pub events: ServerEvents,
    /// The messages that are not sync requests.
    pub others: tokio::sync::mpsc::UnboundedReceiver<Message>,
    pub socket: String,
    /// A deaf server's messages, never read.
    _unread: Option<IncomingMessages>,
    _dir: tempfile::TempDir,
}

impl Hive {
    /// Starts the server; sync requests are answered with `re: BODY`.
    pub fn start() -> Hive {
        Hive::start_with(true)
    }

    /// Starts a server that never takes a message: once its inbox and the
    /// socket's buffer are full, a client cannot write to it.
    pub fn start_deaf() -> Hive {
        Hive::start_with(false)
    }

    fn start_with(reading: bool) -> Hive {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("beehive.sock");
        let config = SessionConfig::server("socketserver", TransportKind::Packet)
            .local_module("srvmod", "srvgroup")
            .allow_module("cli");
        let mut driver = DriverOptions::default();
        if !reading {
            driver.inbox_capacity = 1;
        }
        let server = rt
            .block_on(Server::bind(&Endpoint::unix_packet(&socket), config, ServerOptions::default().driver(driver)))
            .expect("the server binds");
        let (handle, incoming, events) = server.into_parts();
        let (tx, others) = tokio::sync::mpsc::unbounded_channel();
        let unread = if reading {
            rt.spawn(respond(handle.clone(), incoming, tx));
            None
        } else {
            Some(incoming)
        };
        Hive { rt, handle, events, others, socket: socket.to_str().unwrap().to_owned(), _unread: unread, _dir: dir }
    }

    /// Waits until `cli` is registered with the server.
    pub fn registered(&mut self) {
        let events = &mut self.events;
        self.rt.block_on(async {
            tokio::time::timeout(STEP, async {
                loop {
                    match events.recv().await {
                        Some(ServerEvent::Connected { module, .. }) if module == "cli" => return,
                        Some(_) => {}
                        None => panic!("the server's events ended"),
                    }
                }
            })
            .await
            .expect("cli registers with the server")
        });
    }
}

async fn respond(handle: ServerHandle, mut incoming: IncomingMessages, others: UnboundedSender<Message>) {
    while let Some(i) = incoming.recv().await {
        if i.message.is_sync() {
            let body = format!("re: {}", i.message.content().as_str().unwrap_or_default());
            let _ = handle.send_resp(i.message.new_response(body)).await;
        } else {
            let _ = others.send(i.message);
        }
    }
}

/// A message from `srvmod` with `body`.
pub fn msg(body: &str) -> Message {
    Message::new("").build_router("srvmod", "srvgroup", "default/pod/nginx", "update").fill_body(body)
}
