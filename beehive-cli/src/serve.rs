//! `beehive serve`: a hive with its socket server, from the socket module
//! YAML file edgecore reads, printing whatever its remote modules send.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::{bail, Context as _};
use beehive_context::{Hive, SimpleAsyncModule};
use beehive_socket::asyncio::{DriverOptions, Endpoint, ServerEvent, ServerOptions, SocketBackend, Tls};
use beehive_socket::{SocketModuleConfig, StreamFraming};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::cli::{EncodeFraming, ServeArgs};
use crate::client::{self, clock};
use crate::listen::warn;
use crate::{observe, EXIT_OK};

/// How long the hive's modules get to stop at the end.
const SHUTDOWN: Duration = Duration::from_secs(5);
/// Messages the printer may fall behind before it skips some (and says so).
const TAP_CAPACITY: usize = 16 * 1024;

pub fn run(args: &ServeArgs) -> anyhow::Result<u8> {
    let config = SocketModuleConfig::from_path(&args.config)?;
    observe::start_metrics(args.metrics)?;
    client::runtime()?.block_on(serve(args, config))
}

/// A module answering every sync request with the request's own content.
fn echo(name: String) -> SimpleAsyncModule {
    let group = name.clone();
    SimpleAsyncModule::new(name.clone(), group, move |hive: Hive| {
        let name = name.clone();
        async move {
            while let Ok(req) = hive.receive_async(&name).await {
                if req.is_sync() {
                    if let Err(e) = hive.send_resp_async(req.new_response(req.content().clone())).await {
                        tracing::warn!(module = %name, msg_id = req.id(), error = %e, "cannot answer");
                    }
                }
            }
            Ok(())
        }
    })
}

async fn serve(args: &ServeArgs, config: SocketModuleConfig) -> anyhow::Result<u8> {
    let hive = Hive::builder().runtime(tokio::runtime::Handle::current()).build();
    let backend = SocketBackend::new();
    hive.add_backend(backend.clone());
    if args.echo {
        hive.register_async(echo(args.echo_module.clone())).context("cannot add the echo module")?;
    }
    hive.start().context("cannot start the hive")?;
    let mut tap = backend.tap(TAP_CAPACITY);
    let framing = match args.framing {
        EncodeFraming::Raw => StreamFraming::Raw,
        EncodeFraming::Package => StreamFraming::Package,
    };
    // Registered before the listening lines tell anyone to press Ctrl-C
    // (`tokio::signal::ctrl_c` registers only once polled).
    let mut ctrl_c =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).context("cannot wait for Ctrl-C")?;
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("cannot wait for SIGTERM")?;
    let (events_tx, mut events) = mpsc::channel(1024);
    let mut handles = Vec::new();
    let mut out = io::stdout().lock();
    for entry in config.servers() {
        let endpoint = Endpoint::from_config(entry)
            .with_context(|| format!("server entry {:?} in {}", entry.module, args.config.display()))?;
        // Go lets a module register only when it has a client entry.
        let session = config.server_session(entry, framing);
        let tls = Tls::from_config(entry)
            .with_context(|| format!("TLS settings of {:?} in {}", entry.module, args.config.display()))?;
        let options = ServerOptions::default().conn_max(entry.conn_max).driver(DriverOptions::default().tls(tls));
        let mut server = backend
            .serve(&hive, &endpoint, session, options)
            .await
            .with_context(|| format!("cannot serve {:?} on {endpoint}", entry.module))?;
        let endpoint = server.endpoint().clone();
        if args.json {
            writeln!(
                out,
                "{}",
                json!({ "event": "listening", "module": entry.module, "endpoint": endpoint.to_string() })
            )?;
        } else {
            writeln!(out, "serving {} on {endpoint}", entry.module)?;
        }
        handles.push(server.handle().clone());
        let tx = events_tx.clone();
        tokio::spawn(async move {
            while let Some(event) = server.events().recv().await {
                if tx.send((endpoint.clone(), event)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(events_tx);
    if handles.is_empty() {
        bail!("{} has no server entry (server: true)", args.config.display());
    }
    if config.entries.iter().all(|e| e.server) {
        warn("the configuration has no client entry: no module may register (Go lets in only modules with an entry)");
    }
    out.flush()?;

    let sleep = client::ends_after(args.timeout);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            m = tap.recv() => match m {
                Ok(msg) => client::print_message(&mut out, &msg, args.json)?,
                Err(broadcast::error::RecvError::Lagged(n)) => warn(&format!("{n} messages not shown: printing fell behind")),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            e = events.recv() => match e {
                Some((endpoint, event)) => print_event(&mut out, &endpoint, event, args.json)?,
                None => break,
            },
            _ = ctrl_c.recv() => break,
            _ = terminate.recv() => break,
            () = &mut sleep => break,
        }
    }
    for handle in &handles {
        handle.shutdown();
    }
    // What happened before the end is still printed: the events already
    // on their way, and the ends of the connections the shutdown closes.
    while let Ok(msg) = tap.try_recv() {
        client::print_message(&mut out, &msg, args.json)?;
    }
    let drained = tokio::time::timeout(SHUTDOWN, async {
        while let Some((endpoint, event)) = events.recv().await {
            print_event(&mut out, &endpoint, event, args.json)?;
        }
        anyhow::Ok(())
    });
    match drained.await {
        Ok(result) => result?,
        Err(_) => warn(&format!("the servers did not stop within {SHUTDOWN:?}: their last events are not shown")),
    }
    let report = hive.shutdown_async(SHUTDOWN).await;
    tracing::debug!(?report, "hive stopped");
    Ok(EXIT_OK)
}

fn print_event(out: &mut impl Write, endpoint: &Endpoint, event: ServerEvent, json: bool) -> anyhow::Result<()> {
    let (line, value) = match event {
        ServerEvent::Registered { module, groups, .. } => (
            format!("{} {module} registered on {endpoint} [{}]", clock(), groups.join(" ")),
            json!({ "event": "registered", "module": module, "groups": groups, "endpoint": endpoint.to_string() }),
        ),
        ServerEvent::Disconnected { module: Some(module), reason, .. } => (
            format!("{} {module} disconnected: {reason}", clock()),
            json!({ "event": "disconnected", "module": module, "reason": reason.to_string(), "endpoint": endpoint.to_string() }),
        ),
        ServerEvent::Disconnected { module: None, reason, session } => (
            format!("{} connection {session} closed before registering: {reason}", clock()),
            json!({ "event": "disconnected", "session": session.get(), "reason": reason.to_string(), "endpoint": endpoint.to_string() }),
        ),
        ServerEvent::Malformed { session, offset, error } => (
            format!("{} connection {session}: skipped input that is not a message at byte {offset}: {error}", clock()),
            json!({ "event": "malformed", "session": session.get(), "offset": offset, "error": error.to_string() }),
        ),
        ServerEvent::Refused { conn_max } => (
            format!("{} refused a connection: {conn_max} connections served (connmax)", clock()),
            json!({ "event": "refused", "conn_max": conn_max, "endpoint": endpoint.to_string() }),
        ),
        ServerEvent::AcceptFailed { error, backoff } => (
            format!("{} accept failed ({error}), pausing {backoff:?}", clock()),
            json!({ "event": "accept_failed", "error": error.to_string(), "endpoint": endpoint.to_string() }),
        ),
        _ => return Ok(()),
    };
    if json {
        writeln!(out, "{value}")?;
        out.flush()?;
    } else {
        let mut err = anstream::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(event: ServerEvent) -> serde_json::Value {
        let mut out = Vec::new();
        print_event(&mut out, &Endpoint::unix_packet("/run/s.sock"), event, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn refusals_and_failed_accepts_are_json_events() {
        let v = json_of(ServerEvent::Refused { conn_max: 3 });
        assert_eq!((v["event"].as_str(), &v["conn_max"]), (Some("refused"), &json!(3)));
        assert_eq!(v["endpoint"], "unixpacket:/run/s.sock");
        let error = io::Error::other("too many open files");
        let v = json_of(ServerEvent::AcceptFailed { error, backoff: Duration::from_millis(50) });
        assert_eq!((v["event"].as_str(), v["error"].as_str()), (Some("accept_failed"), Some("too many open files")));
    }
}
