//! What `beehive record` adds to a round trip: `send_sync` round trips
//! between hives of thread modules (the socket backend on the blocking
//! driver, a client hive to a module of the serving hive) over unixpacket, directly and through `beehive record` (two clients of the
//! same server, in alternating batches), with the median (p50), p90 and
//! p99 of each.
//!
//! ```sh
//! cargo build --release -p beehive-cli --bin beehive --example relay_latency
//! target/release/examples/relay_latency [ROUND_TRIPS] [PATH_TO_BEEHIVE]
//! ```
//!
//! The `beehive` binary defaults to the one next to the examples directory
//! (`target/release/beehive`). The recording goes to a temporary directory.

use std::io::Read as _;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use beehive_context::{Hive, SimpleModule};
use beehive_model::Message;
use beehive_socket::blocking::{ConnectOptions, Endpoint, HiveClient, ServerOptions};
use beehive_socket::{SocketBackend, SocketModuleConfig, StreamFraming};
use socket2::{Domain, SockAddr, Socket, Type};

const T: Duration = Duration::from_secs(10);

/// The server on `server`, the client module `direct` connecting to it
/// and the client module `relayed` connecting to `relay`.
fn config(server: &Path, relay: &Path) -> SocketModuleConfig {
    let client = |name: &str, address: &Path| {
        format!(
            "- module: {name}\n  server: false\n  address: {}\n  sockettype: unixpacket\n  buffersize: 65536\n",
            address.display()
        )
    };
    SocketModuleConfig::from_yaml(&format!(
        "- module: socketserver\n  server: true\n  address: {}\n  sockettype: unixpacket\n  connmax: 4\n  \
         buffersize: 65536\n{}{}",
        server.display(),
        client("direct", server),
        client("relayed", relay),
    ))
    .expect("a valid configuration")
}

/// A client hive connected through `cfg`'s client address.
struct Client {
    hive: Hive,
    module: &'static str,
    _client: HiveClient,
}

impl Client {
    fn connect(cfg: &SocketModuleConfig, module: &'static str) -> Client {
        let hive = Hive::new();
        let backend = SocketBackend::new();
        hive.add_backend(backend.clone());
        let entry = cfg.client(module).unwrap();
        let endpoint = Endpoint::from_config(entry).expect("an endpoint");
        let client = backend
            .connect_blocking(&hive, &endpoint, entry.client_session(StreamFraming::Raw), ConnectOptions::default())
            .expect("the client joins");
        Client { hive, module, _client: client }
    }

    /// `n` round trips, their latencies appended to `lat`.
    fn round_trips(&self, n: usize, lat: &mut Vec<Duration>) {
        for _ in 0..n {
            let m = Message::new("").build_router(self.module, "grp", "res", "query").fill_body("ping");
            let t = Instant::now();
            self.hive.send_sync("srvmod", m, T).expect("round trip");
            lat.push(t.elapsed());
        }
    }
}

/// A plain packet echo on `path` (one thread per connection), for the relay's cost alone.
fn echo_server(path: &Path) {
    let listener = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    listener.bind(&SockAddr::unix(path).unwrap()).unwrap();
    listener.listen(8).unwrap();
    std::thread::spawn(move || {
        while let Ok((s, _)) = listener.accept() {
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                let mut r = &s;
                while let Ok(n @ 1..) = r.read(&mut buf) {
                    if s.send(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// `n` packet round trips on `s`, their latencies appended to `lat`.
fn echoes(s: &Socket, n: usize, lat: &mut Vec<Duration>) {
    let packet = beehive_model::to_vec_line(
        &Message::new("").build_router("edgeclient", "grp", "res", "query").fill_body("ping"),
    )
    .unwrap();
    let mut buf = vec![0u8; 65536];
    for _ in 0..n {
        let t = Instant::now();
        s.send(&packet).unwrap();
        let mut r = s;
        assert_eq!(r.read(&mut buf).unwrap(), packet.len());
        lat.push(t.elapsed());
    }
}

fn connect(path: &Path) -> Socket {
    let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    s.connect(&SockAddr::unix(path).unwrap()).unwrap();
    s
}

/// Alternating batches of `run(direct)` and `run(relayed)`; both sorted.
fn alternate<C>(n: usize, direct: &C, relayed: &C, run: impl Fn(&C, usize, &mut Vec<Duration>)) -> [Vec<Duration>; 2] {
    let mut warm = Vec::new();
    run(direct, n / 10, &mut warm);
    run(relayed, n / 10, &mut warm);
    let (mut d, mut r) = (Vec::with_capacity(n), Vec::with_capacity(n));
    while d.len() < n {
        run(direct, BATCH.min(n - d.len()), &mut d);
        run(relayed, BATCH.min(n - r.len()), &mut r);
    }
    d.sort();
    r.sort();
    [d, r]
}

const BATCH: usize = 500;

fn table(title: &str, [d, r]: &[Vec<Duration>; 2]) {
    println!("{title}");
    println!("  {:<24} {:>9} {:>9} {:>9} {:>9}", "", "p10 µs", "p50 µs", "p90 µs", "p99 µs");
    for (name, lat) in [("direct", d), ("through beehive record", r)] {
        println!(
            "  {name:<24} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            pct(lat, 0.1),
            pct(lat, 0.5),
            pct(lat, 0.9),
            pct(lat, 0.99)
        );
    }
    println!("  added at p50: {:.1} µs", pct(r, 0.5) - pct(d, 0.5));
}

fn pct(lat: &[Duration], p: f64) -> f64 {
    lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e6
}

/// Starts `beehive record` and waits until it listens.
fn start_record(beehive: &Path, listen: &Path, upstream: &Path, out: &Path) -> Child {
    let mut child = Command::new(beehive)
        .args(["record", "--listen", listen.to_str().unwrap(), "--upstream", upstream.to_str().unwrap(), "--out"])
        .arg(out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", beehive.display()));
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("beehive: recording"), "{line}");
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    child
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map_or(20_000, |a| a.parse().expect("ROUND_TRIPS is a number"));
    let beehive = args.get(1).map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.parent().and_then(Path::parent).unwrap().join("beehive")
    });
    let dir = std::env::temp_dir().join(format!("beehive-relay-latency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (up, relay) = (dir.join("server.sock"), dir.join("relay.sock"));

    let server_hive = Hive::new();
    let backend = SocketBackend::new();
    server_hive.add_backend(backend.clone());
    server_hive
        .register(SimpleModule::new("srvmod", "srvgroup", |hive: &Hive| {
            while let Ok(m) = hive.receive("srvmod") {
                if m.is_sync() {
                    hive.send_resp(m.new_response("pong"))?;
                }
            }
            Ok(())
        }))
        .unwrap();
    server_hive.start().unwrap();
    let cfg = config(&up, &relay);
    let entry = cfg.servers().next().unwrap();
    let session = cfg.server_session(entry, StreamFraming::Raw);
    let _server = backend
        .serve_blocking(&server_hive, &Endpoint::from_config(entry).unwrap(), session, ServerOptions::default())
        .unwrap();

    let (echo, echo_relay) = (dir.join("echo.sock"), dir.join("echo-relay.sock"));
    let record = start_record(&beehive, &relay, &up, &dir.join("rec"));
    let record_echo = start_record(&beehive, &echo_relay, &echo, &dir.join("rec-echo"));

    // Both clients stay connected; batches alternate between them, so that
    // load from elsewhere on the machine falls on both alike.
    let clients = (Client::connect(&cfg, "direct"), Client::connect(&cfg, "relayed"));
    let hive = alternate(n, &clients.0, &clients.1, |c, k, lat| c.round_trips(k, lat));
    drop(clients);
    echo_server(&echo);
    let sockets = (connect(&echo), connect(&echo_relay));
    let raw = alternate(n, &sockets.0, &sockets.1, echoes);
    drop(sockets);
    for mut child in [record, record_echo] {
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        let _ = child.wait();
    }

    println!("{n} round trips each over unixpacket, in alternating batches of {BATCH} (after {} warm-up)", n / 10);
    table("send_sync, a client hive to a module of the serving hive:", &hive);
    table("one packet echoed by a plain socket server (the relay's own cost):", &raw);
    let _ = std::fs::remove_dir_all(&dir);
}
