//! Logs and metrics of the `beehive` command.
//!
//! Logs: the `tracing` events of the command and of the beehive crates go
//! to stderr (stdout carries the command's output), as text or as one JSON
//! object per line, filtered by `--log` or else `RUST_LOG` (directives as
//! `tracing-subscriber`'s `EnvFilter` reads them), `warn` by default.
//!
//! Metrics: [`serve_metrics`] installs a Prometheus recorder for the
//! `metrics` facade and serves its text format over HTTP at `/metrics`.

use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;

use anyhow::Context as _;
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder};
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;
use crate::style;

/// The filter when neither `--log` nor `RUST_LOG` gives one.
pub const DEFAULT_FILTER: &str = "warn";

/// The environment variable read for the filter when `--log` is absent.
pub const FILTER_ENV: &str = "RUST_LOG";

/// How often binding a free port is tried for `--metrics HOST:0` (another
/// process may take the port between our choice and the exporter's bind).
const FREE_PORT_TRIES: usize = 8;

/// Checks `--log`: a level or `RUST_LOG`-style directives.
pub fn parse_filter(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("empty filter; give a level (error, warn, info, debug, trace, off) or directives".into());
    }
    EnvFilter::builder().parse(text).map(|_| text.to_owned()).map_err(|e| format!("{e} in {text:?}"))
}

/// The filter in force: `--log` if given, else a non-empty `RUST_LOG`,
/// else [`DEFAULT_FILTER`]. The second value explains an unusable
/// `RUST_LOG` (which is then ignored).
fn choose_filter(flag: Option<&str>, env: Option<&str>) -> (EnvFilter, Option<String>) {
    let default = || EnvFilter::new(DEFAULT_FILTER);
    if let Some(f) = flag {
        return (EnvFilter::builder().parse(f).unwrap_or_else(|_| default()), None);
    }
    match env.map(str::trim).filter(|e| !e.is_empty()) {
        None => (default(), None),
        Some(e) => match EnvFilter::builder().parse(e) {
            Ok(filter) => (filter, None),
            Err(err) => (default(), Some(format!("ignoring {FILTER_ENV}={e:?}: {err}; logging at {DEFAULT_FILTER}"))),
        },
    }
}

/// Installs the log subscriber for the whole process: events that pass the
/// filter go to stderr in `format`, coloured where stderr's colour choice
/// allows it (`--color`, `NO_COLOR`, a terminal).
pub fn init_logging(format: LogFormat, flag: Option<&str>) {
    let env = std::env::var(FILTER_ENV).ok();
    let (filter, problem) = choose_filter(flag, env.as_deref());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(style::stderr_colored()).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    // Only a second call fails, and then the first subscriber stays.
    if installed.is_ok() {
        if let Some(problem) = problem {
            tracing::warn!("{problem}");
        }
    }
}

/// Installs a Prometheus recorder as the global `metrics` recorder and
/// serves it over HTTP at `http://ADDR/metrics` (and `/health`) from a
/// thread of its own, with its own small runtime, until the process ends.
/// Port 0 takes a free port. Returns the address listened on, once it
/// listens.
///
/// Call it before the code whose metrics it should show registers them.
/// It may be called from a tokio runtime or outside one; a second call
/// fails (a process has one global recorder).
pub fn serve_metrics(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("beehive-metrics".into())
        .spawn(move || {
            // Everything runtime-related stays on this thread: a runtime must
            // not be dropped inside another's async context.
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::Error::new(e).context("cannot start the metrics runtime")));
                    return;
                }
            };
            let (bound, exporter) = match bind(&runtime, addr) {
                Ok(ok) => ok,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            if tx.send(Ok(bound)).is_err() {
                return;
            }
            if let Err(e) = runtime.block_on(exporter) {
                tracing::error!(error = ?e, "the metrics endpoint stopped");
            }
        })
        .context("cannot start the metrics thread")?;
    rx.recv().context("the metrics thread ended")?
}

/// Builds the recorder and binds its listener (trying free ports for port
/// 0), then installs the recorder globally.
fn bind(
    runtime: &tokio::runtime::Runtime,
    addr: SocketAddr,
) -> anyhow::Result<(SocketAddr, metrics_exporter_prometheus::ExporterFuture)> {
    let _guard = runtime.enter();
    let tries = if addr.port() == 0 { FREE_PORT_TRIES } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let at = if addr.port() == 0 { free_port(addr)? } else { addr };
        match PrometheusBuilder::new().with_http_listener(at).build() {
            Ok((recorder, exporter)) => {
                metrics::set_global_recorder(recorder)
                    .map_err(|_| anyhow::anyhow!("a metrics recorder is already installed"))?;
                return Ok((at, exporter));
            }
            Err(e @ BuildError::FailedToCreateHTTPListener(_)) => last = Some(e),
            Err(e) => return Err(e).context("cannot build the metrics recorder"),
        }
    }
    let e = last.expect("tried at least once");
    Err(e).with_context(|| format!("cannot serve metrics on {addr}"))
}

/// A port of `addr`'s host that is free now.
fn free_port(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let probe = TcpListener::bind(addr).with_context(|| format!("cannot serve metrics on {addr}"))?;
    Ok(probe.local_addr()?)
}

/// For `--metrics`: serves the metrics if asked to and says where, on stderr.
pub fn start_metrics(addr: Option<SocketAddr>) -> anyhow::Result<()> {
    if let Some(addr) = addr {
        let bound = serve_metrics(addr)?;
        let _ = writeln!(io::stderr().lock(), "beehive: metrics: http://{bound}/metrics");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::net::TcpStream;
    use std::time::Duration;

    #[test]
    fn filters() {
        assert!(parse_filter("debug").is_ok());
        assert!(parse_filter("warn,beehive_socket=debug").is_ok());
        assert!(parse_filter("beehive_socket::asyncio[conn]=trace").is_ok());
        assert!(parse_filter("").is_err());
        assert!(parse_filter("beehive=loud").is_err());

        let shown = |flag, env| {
            let (f, problem) = choose_filter(flag, env);
            (f.to_string(), problem.is_some())
        };
        assert_eq!(shown(None, None), ("warn".to_owned(), false));
        assert_eq!(shown(None, Some("  ")), ("warn".to_owned(), false));
        assert_eq!(shown(None, Some("beehive_socket=info")), ("beehive_socket=info".to_owned(), false));
        assert_eq!(shown(Some("error"), Some("beehive_socket=info")), ("error".to_owned(), false));
        assert_eq!(shown(None, Some("x=loud")), ("warn".to_owned(), true));
    }

    /// The recorder is global to the process: this is the only unit test
    /// that installs it.
    #[test]
    fn serves_the_facade_s_counters_on_a_free_port() {
        let addr = serve_metrics("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(addr.port(), 0);
        metrics::counter!("beehive_observe_unit_total", "kind" => "test").increment(3);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.0 200"), "{text}");
        assert!(text.contains("\nbeehive_observe_unit_total{kind=\"test\"} 3\n"), "{text}");
        assert!(serve_metrics("127.0.0.1:0".parse().unwrap()).is_err(), "one recorder per process");
    }
}
