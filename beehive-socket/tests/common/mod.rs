//! Test helpers shared by the integration tests: temporary directories,
//! bounded waits, a throwaway PKI, TLS configurations, a free port and raw
//! peers.
#![allow(dead_code)]

pub mod collector;
pub mod recorder;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// An empty directory of its own for test `tag` (of this process),
/// removed with everything in it when the returned guard drops.
pub fn temp_dir(tag: &str) -> TestDir {
    let dir = std::env::temp_dir().join(format!("beehive-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TestDir(dir)
}

/// A test's directory; it dereferences to its path and is removed on drop.
#[derive(Debug)]
pub struct TestDir(PathBuf);

impl std::ops::Deref for TestDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TestDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `f`'s output; a panic naming `what` when it takes longer than `limit`.
pub async fn within<F: Future>(what: &str, limit: Duration, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {limit:?}"),
    }
}

/// Polls `done` every millisecond; a panic naming `what` when it is not
/// true within `limit`.
pub fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `f` to completion on a current-thread runtime on this thread.
pub fn on_this_thread<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Runs the ignored test `name` of this test binary alone in a child
/// process with `env` set (for tests that change process-wide limits);
/// fails unless it ran, passed and printed `CHILD-OK`.
pub fn run_in_child(name: &str, env: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the child test did not run:\n{stdout}\n{stderr}");
    assert!(stdout.contains("CHILD-OK"), "{stdout}\n{stderr}");
}

/// Fails unless this process is the child [`run_in_child`] started with
/// `env` set (an ignored test run on its own would change process-wide
/// limits of the test binary).
pub fn child_only(env: &str, parent: &str) {
    assert!(std::env::var_os(env).is_some(), "run by {parent} only");
}

/// Lowers this process's descriptor limit to at most 256 and opens
/// descriptors until none is left (`EMFILE`); drop them to recover.
pub fn exhaust_descriptors() -> Vec<std::fs::File> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 256.min(soft), hard).unwrap();
    let mut filler = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => filler.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(nix::errno::Errno::EMFILE as i32), "{e}");
                return filler;
            }
        }
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as
/// PEM files in a temporary directory; plus a second, unrelated CA.
pub struct Pki {
    dir: TestDir,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate,
    /// as PEM files; plus a second, unrelated CA.
    pub fn new(tag: &str) -> Pki {
        let dir = temp_dir(&format!("tls-{tag}"));
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        write("ca.pem", ca_cert.pem());
        for (name, usage) in
            [("server", ExtendedKeyUsagePurpose::ServerAuth), ("client", ExtendedKeyUsagePurpose::ClientAuth)]
        {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        let other_key = KeyPair::generate().unwrap();
        let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        write("other-ca.pem", other.self_signed(&other_key).unwrap().pem());
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

pub fn free_address() -> String {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

// ---- raw peers ------------------------------------------------------------------

/// A raw SOCK_SEQPACKET connection to `path` (reads time out after 10 s).
pub fn raw_packet(path: &std::path::Path) -> socket2::Socket {
    use socket2::{Domain, SockAddr, Socket, Type};
    let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    s.connect(&SockAddr::unix(path).unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A SOCK_SEQPACKET listener at `path` that never accepts: a client's
/// connect completes in its backlog, and nothing ever answers it.
pub fn silent_listener(path: &std::path::Path) -> socket2::Socket {
    use socket2::{Domain, SockAddr, Socket, Type};
    let s = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    s.bind(&SockAddr::unix(path).unwrap()).unwrap();
    s.listen(8).unwrap();
    s
}

/// The next packet; `None` at the end of the connection or after the read
/// timeout.
pub fn raw_read(s: &socket2::Socket) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0u8; 65536];
    match (&*s).read(&mut buf) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(buf[..n].to_vec()),
    }
}

/// Registers `module` on a raw connection and checks the answer's parent.
pub fn raw_handshake(s: &socket2::Socket, module: &str) {
    use std::io::Write;
    let req = beehive_socket::handshake_request(module).set_sync(true);
    (&*s).write_all(&beehive_model::to_vec_line(&req).unwrap()).unwrap();
    let answer = beehive_model::from_slice(&raw_read(s).expect("no handshake answer")).unwrap();
    assert_eq!(answer.parent_id(), req.id());
}

// ---- TLS configurations -----------------------------------------------------------

/// The server and client entries of a TCP configuration with TLS lines.
#[cfg(feature = "yaml")]
pub fn tls_entries(address: &str, server_tls: &str, client_tls: &str) -> beehive_socket::SocketModuleConfig {
    beehive_socket::SocketModuleConfig::from_yaml(&format!(
        "- module: socketserver\n  server: true\n  address: \"{address}\"\n  sockettype: tcp\n  buffersize: 1048576\n{server_tls}- module: edgeclient\n  address: \"{address}\"\n  sockettype: tcp\n  buffersize: 1048576\n{client_tls}"
    ))
    .unwrap()
}

/// A TCP configuration where the server presents `pki`'s `server`
/// certificate and the client verifies it with `pki`'s CA (no client
/// certificate), on a free port.
#[cfg(feature = "yaml")]
pub fn server_only_tls(pki: &Pki) -> beehive_socket::SocketModuleConfig {
    tls_entries(&free_address(), &tls_lines(pki, None, Some("server")), &tls_lines(pki, Some("ca.pem"), None))
}

/// The TLS lines of an entry: `ca` (a file of `pki`) and the certificate
/// and key named `cert` (`<cert>.pem`, `<cert>.key`).
pub fn tls_lines(pki: &Pki, ca: Option<&str>, cert: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(ca) = ca {
        s += &format!("  ca: {}\n", pki.path(ca));
    }
    if let Some(name) = cert {
        s += &format!("  cert: {}\n  key: {}\n", pki.path(&format!("{name}.pem")), pki.path(&format!("{name}.key")));
    }
    s
}

/// The TLS settings of the server entry (`server`) or of `edgeclient`.
#[cfg(all(feature = "yaml", feature = "tls"))]
pub fn tls_of(cfg: &beehive_socket::SocketModuleConfig, server: bool) -> Option<beehive_socket::blocking::Tls> {
    let entry = if server { cfg.servers().next().unwrap() } else { cfg.client("edgeclient").unwrap() };
    beehive_socket::blocking::Tls::from_config(entry).unwrap()
}

/// The pauses a server reported for its failed accepts, in order: they
/// start at `first` and double up to `max`, and the failures came no
/// faster than those pauses allow (`since`: a moment before the first).
pub fn assert_backoffs(seen: &[(Instant, Duration)], first: Duration, max: Duration, since: Instant) {
    let mut expected = Vec::new();
    let mut next = first;
    for _ in seen {
        expected.push(next);
        next = (next * 2).min(max);
    }
    let pauses: Vec<Duration> = seen.iter().map(|(_, b)| *b).collect();
    assert_eq!(pauses, expected, "pauses after failed accepts");
    let paused: Duration = pauses[..pauses.len() - 1].iter().sum();
    let last = seen.last().expect("no failed accept").0;
    assert!(
        last.duration_since(since) >= paused,
        "{} failures within {:?}, before the pauses between them ({paused:?}) had passed",
        seen.len(),
        last.duration_since(since)
    );
}

/// The message of a TLS failure found while reading; a panic unless
/// `reason` is one.
pub fn tls_read_error(reason: &beehive_socket::session::CloseReason) -> String {
    match reason {
        beehive_socket::session::CloseReason::Io { direction: beehive_socket::session::IoDirection::Read, error }
            if error.kind() == std::io::ErrorKind::InvalidData =>
        {
            assert_eq!(reason.kind(), "io_error");
            error.to_string()
        }
        other => panic!("not a TLS read error: {other:?}"),
    }
}
