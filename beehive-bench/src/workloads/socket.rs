//! W6 (package framing over a unix stream socket), W7 (raw framing over a
//! unix SOCK_SEQPACKET socket), W8 (`send_sync` between two brokers over
//! SOCK_SEQPACKET) and its tokio-driver variant W8-async.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use beehive_codec::{CodecError, PackageCodec, PackageReader, PackageWriter, PacketWriter, SeqpacketReader};
use beehive_model::{constants, Message};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::output::RunResult;

/// How long the reader may lag behind the writer before missing messages
/// count as errors.
const READER_GRACE: Duration = Duration::from_secs(10);

/// The "small" message of `WORKLOADS.md` ("Messages"): 268 bytes encoded.
pub fn small_message() -> Message {
    Message::new("")
        .build_router("bench-src", "", constants::RESOURCE_TYPE_POD, constants::UPDATE_OPERATION)
        .fill_body("x".repeat(100))
}

fn is_small(m: &Message) -> bool {
    m.content().as_str().is_some_and(|s| s.len() == 100)
}

/// Reads up to `n` messages; counts those with the small message's content.
fn count_small(n: u64, mut read: impl FnMut() -> Result<Option<Message>, CodecError>) -> u64 {
    let mut ok = 0;
    for _ in 0..n {
        match read() {
            Ok(Some(m)) if is_small(&m) => ok += 1,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    ok
}

/// A fresh temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, String> {
        let base = std::env::temp_dir();
        for i in 0..1000u32 {
            let p = base.join(format!("beehive-bench-{}-{i}", std::process::id()));
            if std::fs::create_dir(&p).is_ok() {
                return Ok(TempDir(p));
            }
        }
        Err("cannot create a temporary directory".to_owned())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the reader on its own thread, the writer on this one; returns the
/// timed seconds and the error count.
fn run_pair(
    n: u64,
    reader: impl FnOnce(mpsc::Sender<u64>) + Send + 'static,
    writer: impl FnOnce() -> Result<(), String>,
) -> Result<(f64, u64), String> {
    let (done_tx, done_rx) = mpsc::channel();
    let handle = std::thread::spawn(move || reader(done_tx));
    let t0 = Instant::now();
    writer()?;
    let (ok, secs) = match done_rx.recv_timeout(READER_GRACE) {
        Ok(ok) => (ok, t0.elapsed().as_secs_f64()),
        Err(_) => (0, t0.elapsed().as_secs_f64()),
    };
    drop(handle);
    Ok((secs, n - ok))
}

/// W6: package framing over SOCK_STREAM, reader buffer 1 MiB.
pub fn w6(n: u64) -> Result<RunResult, String> {
    let dir = TempDir::new()?;
    let path = dir.0.join("w6.sock");
    let listener = UnixListener::bind(&path).map_err(|e| e.to_string())?;
    let client = UnixStream::connect(&path).map_err(|e| e.to_string())?;
    let (server, _) = listener.accept().map_err(|e| e.to_string())?;
    let msg = small_message();
    let reader = move |done: mpsc::Sender<u64>| {
        let mut r = PackageReader::with_read_size(server, PackageCodec::new(), 1 << 20);
        let _ = done.send(count_small(n, || r.read_message()));
    };
    let mut w = PackageWriter::package(client);
    let (secs, errors) = run_pair(n, reader, || {
        for _ in 0..n {
            w.write_message(&msg).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    Ok(RunResult { workload: "W6".into(), n, ops: n, secs, bytes: None, lat: None, errors, err_secs: 0.0 })
}

/// A connected SOCK_SEQPACKET pair through a listener at `path`.
pub fn seqpacket_pair(path: &std::path::Path) -> Result<(Socket, Socket), String> {
    let addr = SockAddr::unix(path).map_err(|e| e.to_string())?;
    let listener = Socket::new(Domain::UNIX, Type::SEQPACKET, None).map_err(|e| e.to_string())?;
    listener.bind(&addr).map_err(|e| e.to_string())?;
    listener.listen(1).map_err(|e| e.to_string())?;
    let client = Socket::new(Domain::UNIX, Type::SEQPACKET, None).map_err(|e| e.to_string())?;
    client.connect(&addr).map_err(|e| e.to_string())?;
    let (server, _) = listener.accept().map_err(|e| e.to_string())?;
    Ok((client, server))
}

/// W7: raw framing over SOCK_SEQPACKET, reader buffer 10,240 bytes.
pub fn w7(n: u64) -> Result<RunResult, String> {
    let dir = TempDir::new()?;
    let (client, server) = seqpacket_pair(&dir.0.join("w7.sock"))?;
    let msg = small_message();
    let reader = move |done: mpsc::Sender<u64>| {
        let mut r = SeqpacketReader::new(server, 10_240);
        let _ = done.send(count_small(n, || r.read_message()));
    };
    let mut w = PacketWriter::new(client);
    let (secs, errors) = run_pair(n, reader, || {
        for _ in 0..n {
            w.write_message(&msg).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    Ok(RunResult { workload: "W7".into(), n, ops: n, secs, bytes: None, lat: None, errors, err_secs: 0.0 })
}

/// W7-floor (extra, not W7): W7's system calls with none of its
/// encoding or decoding. The small message is encoded once; the writer
/// sends those 269 bytes N times, one packet per `send`, and the reader
/// takes packets with W7's `recvmmsg` reader and compares each with the
/// bytes sent. This is what W7 costs when only the kernel works: a bound
/// on any W7 that writes one packet per message.
pub fn w7_floor(n: u64) -> Result<RunResult, String> {
    let dir = TempDir::new()?;
    let (client, server) = seqpacket_pair(&dir.0.join("w7-floor.sock"))?;
    let mut packet = beehive_model::json::to_vec(&small_message()).map_err(|e| e.to_string())?;
    packet.push(b'\n');
    let expected = packet.clone();
    let reader = move |done: mpsc::Sender<u64>| {
        let mut r = SeqpacketReader::new(server, 10_240);
        let mut ok = 0;
        for _ in 0..n {
            match r.read_packet() {
                Ok(Some(p)) if p == expected.as_slice() => ok += 1,
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let _ = done.send(ok);
    };
    let (secs, errors) = run_pair(n, reader, || {
        for _ in 0..n {
            let sent = client.send(&packet).map_err(|e| e.to_string())?;
            if sent != packet.len() {
                return Err(format!("short send: {sent} of {} bytes", packet.len()));
            }
        }
        Ok(())
    })?;
    Ok(RunResult { workload: "W7-floor".into(), n, ops: n, secs, bytes: None, lat: None, errors, err_secs: 0.0 })
}

/// W8: send_sync round trips between two brokers over SOCK_SEQPACKET, raw
/// framing, frames limited to W8's 10,240-byte read buffers on both ends,
/// through beehive-socket's blocking driver. The server actor answers every
/// message with `new_response("ok")` on its connection's thread; the
/// client's connection has its own thread too (the receive actor), and the
/// requester reads its response itself while that thread stands aside.
pub fn w8(n: u64, timeout: Duration) -> Result<RunResult, String> {
    use beehive_socket::blocking::{Client, Endpoint, Server, ServerOptions};
    use beehive_socket::session::{SessionConfig, TransportKind};

    let dir = TempDir::new()?;
    let endpoint = Endpoint::unix_packet(dir.0.join("w8.sock"));
    let server_config = SessionConfig::server("socketserver", TransportKind::Packet)
        .local_module("echo", "echo-group")
        .max_frame_len(10_240);
    let client_config = SessionConfig::client("bench-src", TransportKind::Packet).max_frame_len(10_240);
    let mut server = Server::bind_with_handler(&endpoint, server_config, ServerOptions::default(), |conn, incoming| {
        let _ = conn.send_resp(incoming.message.new_response("ok"));
    })
    .map_err(|e| e.to_string())?;
    let client = Client::connect(&endpoint, client_config).map_err(|e| e.to_string())?;
    let result = super::round_trips("W8", n, |req| client.send_sync("echo", req, timeout).ok());
    drop(client);
    server.shutdown();
    Ok(result)
}

/// W8-async: W8's round trips through the tokio driver of beehive-socket.
/// A `Server` bound on SOCK_SEQPACKET answers every message with
/// `new_response("ok")`; a `Client` registered as module `bench-src` (the
/// small message's source, where `send_resp` routes the answer) calls
/// `send_sync("echo", ..)`. Frames are limited to 10,240 bytes on both
/// ends, W8's read buffers.
///
/// Runtime: one multi-thread runtime with two workers, the echo loop and
/// the requester each a task on it. On two cores this did about twice the
/// round trips per second of the alternative tried, a current-thread
/// runtime per side on its own thread (server, client).
pub fn w8_async(n: u64, timeout: Duration) -> Result<RunResult, String> {
    use beehive_socket::asyncio::{Client, Endpoint, Server, ServerOptions};
    use beehive_socket::session::{SessionConfig, TransportKind};

    let dir = TempDir::new()?;
    let endpoint = Endpoint::unix_packet(dir.0.join("w8-async.sock"));
    let server_config = SessionConfig::server("socketserver", TransportKind::Packet)
        .local_module("echo", "echo-group")
        .max_frame_len(10_240);
    let client_config = SessionConfig::client("bench-src", TransportKind::Packet).max_frame_len(10_240);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let mut server =
            Server::bind(&endpoint, server_config, ServerOptions::default()).await.map_err(|e| e.to_string())?;
        let stop = server.handle().clone();
        let echo = tokio::spawn(async move {
            while let Some(incoming) = server.recv().await {
                let _ = server.handle().send_resp(incoming.message.new_response("ok")).await;
            }
        });
        let client = Client::connect(&endpoint, client_config).await.map_err(|e| e.to_string())?;
        let requester = tokio::spawn(async move {
            let mut trips = super::RoundTrips::start("W8-async", n);
            for _ in 0..n {
                let req = small_message();
                let ts = Instant::now();
                let resp = client.send_sync("echo", req.clone(), timeout).await.ok();
                trips.record(&req, resp, ts.elapsed().as_secs_f64());
            }
            let result = trips.finish();
            client.close();
            result
        });
        let result = requester.await.map_err(|e| e.to_string())?;
        stop.shutdown();
        let _ = echo.await;
        Ok(result)
    })
}

/// W8 between thread modules of two hives, through the hive's socket
/// backend on the blocking driver (no runtime): the requester is a plain
/// thread calling `Hive::send_sync` (it writes the request and reads the
/// response itself), the answering module a thread module of the other
/// hive calling `Hive::send_resp`, fed by the connection's thread. The path
/// a program without a runtime takes.
pub fn w8_hive(n: u64, timeout: Duration) -> Result<RunResult, String> {
    use beehive_context::{Hive, SimpleModule};
    use beehive_socket::asyncio::SocketBackend;
    use beehive_socket::blocking::{ConnectOptions, Endpoint, ServerOptions};
    use beehive_socket::session::{SessionConfig, TransportKind};

    let dir = TempDir::new()?;
    let endpoint = Endpoint::unix_packet(dir.0.join("w8-hive.sock"));
    let hub = Hive::new();
    let hub_backend = SocketBackend::new();
    hub.add_backend(hub_backend.clone());
    hub.register(SimpleModule::new("echo", "echo-group", |hive: &Hive| {
        while let Ok(m) = hive.receive("echo") {
            hive.send_resp(m.new_response("ok"))?;
        }
        Ok(())
    }))
    .map_err(|e| e.to_string())?;
    hub.start().map_err(|e| e.to_string())?;
    let server_config = SessionConfig::server("socketserver", TransportKind::Packet).max_frame_len(10_240);
    let mut server = hub_backend
        .serve_blocking(&hub, &endpoint, server_config, ServerOptions::default())
        .map_err(|e| e.to_string())?;
    let edge = Hive::new();
    let edge_backend = SocketBackend::new();
    edge.add_backend(edge_backend.clone());
    let client_config = SessionConfig::client("bench-src", TransportKind::Packet).max_frame_len(10_240);
    let mut client = edge_backend
        .connect_blocking(&edge, &endpoint, client_config, ConnectOptions::default())
        .map_err(|e| e.to_string())?;
    let mut trips = super::RoundTrips::start("W8-hive", n);
    for _ in 0..n {
        let req = small_message();
        let ts = Instant::now();
        let resp = edge.send_sync("echo", req.clone(), timeout).ok();
        trips.record(&req, resp, ts.elapsed().as_secs_f64());
    }
    let result = trips.finish();
    client.shutdown();
    server.shutdown();
    hub.shutdown(Duration::from_secs(5));
    edge.shutdown(Duration::from_secs(5));
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w7_floor_delivers_every_packet_intact() {
        let r = w7_floor(500).unwrap();
        assert_eq!((r.workload.as_str(), r.n, r.ops, r.errors), ("W7-floor", 500, 500, 0));
    }

    #[test]
    fn w8_hive_answers_every_request() {
        let r = w8_hive(200, Duration::from_secs(5)).unwrap();
        assert_eq!((r.workload.as_str(), r.n, r.errors), ("W8-hive", 200, 0));
        assert!(r.lat.is_some());
    }

    #[test]
    fn w8_async_answers_every_request() {
        let r = w8_async(200, Duration::from_secs(5)).unwrap();
        assert_eq!((r.workload.as_str(), r.n, r.errors), ("W8-async", 200, 0));
        assert!(r.lat.is_some());
    }
}
