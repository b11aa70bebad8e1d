//! `beehive listen`: join a hive as a remote module and print what arrives.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::Context as _;
use metrics::Counter;
use serde_json::json;

use crate::cli::ListenArgs;
use crate::client;
use crate::{observe, style, EXIT_FINDINGS, EXIT_OK};

/// Why listening ended.
enum End {
    Count,
    Interrupted,
    TimedOut,
    Lost(String),
}

/// What `--metrics` shows, registered once.
struct ListenMetrics {
    messages: Counter,
    answers: Counter,
    malformed: Counter,
}

impl ListenMetrics {
    fn new() -> Self {
        metrics::describe_counter!("beehive_listen_messages_total", "Messages beehive listen received");
        metrics::describe_counter!("beehive_listen_answers_total", "Sync requests beehive listen answered (--answer)");
        metrics::describe_counter!(
            "beehive_listen_malformed_total",
            "Inputs beehive listen skipped because they were not messages"
        );
        ListenMetrics {
            messages: metrics::counter!("beehive_listen_messages_total"),
            answers: metrics::counter!("beehive_listen_answers_total"),
            malformed: metrics::counter!("beehive_listen_malformed_total"),
        }
    }
}

pub fn run(args: &ListenArgs) -> anyhow::Result<u8> {
    let answer = match args.answer.as_deref() {
        Some(a) => Some(answer_text(a)?),
        None => None,
    };
    let target = client::Target::resolve(&args.connect)?;
    observe::start_metrics(args.metrics)?;
    client::runtime()?.block_on(listen(args, &target, answer))
}

/// TEXT, or the text of FILE for `@FILE`.
fn answer_text(arg: &str) -> anyhow::Result<String> {
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read --answer file {path}")),
        None => Ok(arg.to_owned()),
    }
}

/// First and longest pause before reconnecting.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The registration line.
fn registered(
    out: &mut impl Write,
    args: &ListenArgs,
    endpoint: &beehive_socket::asyncio::Endpoint,
    handle: &beehive_socket::asyncio::ClientHandle,
) -> anyhow::Result<()> {
    let ours = &args.connect.module;
    if args.json {
        let modules: serde_json::Map<_, _> =
            handle.modules().into_iter().filter(|(m, _)| m != ours).map(|(m, g)| (m, json!(g))).collect();
        let line = json!({ "registered": ours, "endpoint": endpoint.to_string(), "modules": modules });
        writeln!(out, "{line}")?;
    } else {
        writeln!(out, "registered as {ours} on {endpoint}; server modules: {}", client::modules_text(handle, ours))?;
    }
    out.flush()?;
    Ok(())
}

async fn listen(args: &ListenArgs, target: &client::Target, answer: Option<String>) -> anyhow::Result<u8> {
    // The first connection must work: a wrong path or a refused module is
    // a usage error, not something to retry.
    let (endpoint, client) = client::connect(target, None).await?;
    let counts = ListenMetrics::new();
    let mut out = io::stdout().lock();
    let sleep = client::ends_after(args.timeout);
    tokio::pin!(sleep);
    // Registered now, before the registration line tells anyone to press
    // Ctrl-C (`tokio::signal::ctrl_c` registers only once polled).
    let mut ctrl_c =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).context("cannot wait for Ctrl-C")?;
    let mut received = 0u64;
    let mut client = Some(client);
    let (end, handle) = loop {
        let Some(c) = client.take() else { unreachable!("a client is connected at the top of the loop") };
        let (handle, mut messages, mut events) = c.into_parts();
        registered(&mut out, args, &endpoint, &handle)?;
        let mut events_open = true;
        let mut answered = false;
        let end = loop {
            if args.count.is_some_and(|n| received >= n) {
                break End::Count;
            }
            tokio::select! {
                m = messages.recv() => match m {
                    Some(msg) => {
                        received += 1;
                        counts.messages.increment(1);
                        tracing::debug!(id = msg.id(), source = msg.source(), sync = msg.is_sync(), "message received");
                        client::print_message(&mut out, &msg, args.json)?;
                        if let (Some(text), true) = (&answer, msg.is_sync()) {
                            if let Err(e) = handle.send_resp(msg.new_response(text.as_str())).await {
                                warn(&format!("cannot answer message {}: {e}", msg.id()));
                            } else {
                                answered = true;
                                counts.answers.increment(1);
                            }
                        }
                    }
                    None => {
                        let reason = handle.closed().await;
                        break End::Lost(reason.to_string());
                    }
                },
                e = events.recv(), if events_open => match e {
                    Some(beehive_socket::asyncio::ClientEvent::Malformed { offset, error }) => {
                        counts.malformed.increment(1);
                        warn(&format!("skipped input that is not a message at byte {offset}: {error}"));
                    }
                    Some(_) => {}
                    None => events_open = false,
                },
                _ = ctrl_c.recv() => break End::Interrupted,
                () = &mut sleep => break End::TimedOut,
            }
        };
        match &end {
            End::Lost(reason) if !args.once => {
                warn(&format!("disconnected from {endpoint}: {reason} (after {received} messages); reconnecting"));
            }
            End::Lost(_) => break (end, handle),
            _ => {
                if answered {
                    client::flush_and_close(&handle).await;
                }
                break (end, handle);
            }
        }
        // Reconnect with backoff until connected, Ctrl-C or --timeout.
        let mut wait = RETRY_FIRST;
        let reconnected = loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = ctrl_c.recv() => break Err(End::Interrupted),
                () = &mut sleep => break Err(End::TimedOut),
            }
            match client::connect(target, None).await {
                Ok((_, c)) => break Ok(c),
                Err(e) => {
                    tracing::info!(error = %format!("{e:#}"), ?wait, "cannot reconnect, retrying");
                    wait = next_retry(wait);
                }
            }
        };
        match reconnected {
            Ok(c) => client = Some(c),
            Err(end) => break (end, handle),
        }
    };
    handle.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), handle.closed()).await;
    let code = match end {
        End::Count | End::Interrupted => EXIT_OK,
        End::TimedOut if args.count.is_none() => EXIT_OK,
        End::TimedOut => {
            warn(&format!(
                "{received} of {} messages within {:?}",
                args.count.unwrap_or_default(),
                args.timeout.unwrap_or_default()
            ));
            EXIT_FINDINGS
        }
        End::Lost(reason) => {
            warn(&format!("disconnected from {endpoint}: {reason} (after {received} messages)"));
            EXIT_FINDINGS
        }
    };
    Ok(code)
}

/// The wait before the next reconnection attempt: doubled, up to [`RETRY_MAX`].
fn next_retry(wait: Duration) -> Duration {
    (wait * 2).min(RETRY_MAX)
}

/// `beehive: warning: TEXT` on stderr.
pub fn warn(text: &str) {
    let mut err = anstream::stderr().lock();
    let _ = writeln!(err, "beehive: {}warning:{:#} {text}", style::WARN, style::WARN);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnection_waits_double_up_to_their_bound() {
        assert_eq!(next_retry(RETRY_FIRST), Duration::from_millis(200));
        assert_eq!(next_retry(Duration::from_secs(2)), Duration::from_secs(4));
        assert_eq!(next_retry(Duration::from_secs(3)), RETRY_MAX);
        assert_eq!(next_retry(RETRY_MAX), RETRY_MAX);
    }
}
