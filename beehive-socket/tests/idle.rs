//! Idle connections use no CPU: with a connection up and nothing to say,
//! neither the tokio driver's tasks nor the blocking driver's threads poll.
//! One test binary of its own, one test: it measures the CPU time of the
//! whole process.
#![cfg(all(target_os = "linux", feature = "tokio"))]

mod common;

use std::time::{Duration, Instant};

use beehive_socket::session::{SessionConfig, TransportKind};
use beehive_socket::{asyncio, blocking};
use common::temp_dir;

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("procfs");
    // After the command name (in parentheses): utime and stime are fields
    // 14 and 15 of the line, in clock ticks (USER_HZ, 100 on Linux).
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// CPU used in 500 ms of idling, once every spin budget has run out.
fn idle_cpu() -> Duration {
    std::thread::sleep(Duration::from_millis(100));
    let (cpu0, t0) = (cpu_time(), Instant::now());
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu_time() - cpu0;
    assert!(t0.elapsed() >= Duration::from_millis(500));
    used
}

fn server_config() -> SessionConfig {
    SessionConfig::server("socketserver", TransportKind::Packet).local_module("srvmod", "srvgroup")
}

#[test]
fn idle_connections_use_no_cpu() {
    let dir = temp_dir("idle");

    // The tokio driver, on a runtime with two workers, measured on a thread
    // of its own: a task that never yields would keep the runtime from
    // ever finishing, and that must fail the test, not hang it.
    let async_path = dir.join("async.sock");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let endpoint = asyncio::Endpoint::unix_packet(async_path);
        let (server, client) = runtime.block_on(async {
            let mut server =
                asyncio::Server::bind(&endpoint, server_config(), asyncio::ServerOptions::default()).await.unwrap();
            let client =
                asyncio::Client::connect(&endpoint, SessionConfig::client("edgeclient", TransportKind::Packet))
                    .await
                    .unwrap();
            loop {
                match server.events().recv().await {
                    Some(asyncio::ServerEvent::Connected { .. }) => break,
                    Some(_) => {}
                    None => panic!("the server stopped before the registration"),
                }
            }
            (server, client)
        });
        let used = idle_cpu();
        drop((client, server));
        runtime.shutdown_background();
        let _ = done_tx.send(used);
    });
    let used = done_rx.recv_timeout(Duration::from_secs(30)).expect("the tokio driver did not settle within 30 s");
    // A task polling without pause would use the whole 500 ms.
    assert!(used <= Duration::from_millis(50), "tokio driver: {used:?} of CPU in 500 ms of idling");

    // The blocking driver: a connection thread on each side.
    let endpoint = blocking::Endpoint::unix_packet(dir.join("blocking.sock"));
    let server = blocking::Server::bind(&endpoint, server_config(), blocking::ServerOptions::default()).unwrap();
    let client =
        blocking::Client::connect(&endpoint, SessionConfig::client("edgeclient", TransportKind::Packet)).unwrap();
    let used = idle_cpu();
    assert!(used <= Duration::from_millis(50), "blocking driver: {used:?} of CPU in 500 ms of idling");
    drop((client, server));
}
