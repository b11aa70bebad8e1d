//! `beehive send`: join a hive as a remote module, send messages and time
//! their responses.

use std::io::{self, BufRead as _, IsTerminal as _, Write};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use beehive_model::Message;
use beehive_socket::asyncio::DriverError;
use serde_json::json;
use tokio::sync::mpsc;

use crate::cli::SendArgs;
use crate::client::{self, summary};
use crate::listen::warn;
use crate::{EXIT_FINDINGS, EXIT_OK};

pub fn run(args: &SendArgs) -> anyhow::Result<u8> {
    let target = client::Target::resolve(&args.connect)?;
    client::runtime()?.block_on(send(args, &target))
}

/// The contents to send, one per message: `None` is Go's nil content.
fn contents(args: &SendArgs) -> mpsc::Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel(64);
    if let Some(n) = args.count {
        let content = args.content.clone();
        tokio::spawn(async move {
            for _ in 0..n {
                if tx.send(content.clone()).await.is_err() {
                    return;
                }
            }
        });
    } else if args.content.is_some() || io::stdin().is_terminal() {
        let _ = tx.try_send(args.content.clone());
    } else {
        // Lines as they come (a pipe may stay open); a blocking thread reads them.
        std::thread::spawn(move || {
            for line in io::stdin().lock().lines() {
                let Ok(line) = line else {
                    warn("cannot read stdin; no further lines are sent");
                    return;
                };
                if tx.blocking_send(Some(line)).is_err() {
                    return;
                }
            }
        });
    }
    rx
}

async fn send(args: &SendArgs, target: &client::Target) -> anyhow::Result<u8> {
    let (endpoint, client) = client::connect(target, Some(args.timeout)).await?;
    let handle = client.handle().clone();
    let module = &args.connect.module;
    let mut out = io::stdout().lock();
    let mut contents = contents(args);
    let per_message = args.count.is_none();
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut rtts = Vec::new();
    let mut lost = None;
    let started = Instant::now();
    while let Some(content) = contents.recv().await {
        let mut msg = Message::new("").build_router(
            module.as_str(),
            args.group.as_str(),
            args.resource.as_str(),
            args.operation.as_str(),
        );
        if let Some(c) = content {
            msg = msg.fill_body(c);
        }
        let result = if args.sync {
            let t0 = Instant::now();
            handle.send_sync(&args.to, msg, args.timeout).await.map(|resp| Some((t0.elapsed(), resp)))
        } else {
            handle.send(&args.to, msg).await.map(|()| None)
        };
        match result {
            Ok(answer) => {
                sent += 1;
                if let Some((rtt, resp)) = answer {
                    rtts.push(rtt);
                    if per_message {
                        let ms = rtt.as_secs_f64() * 1e3;
                        if args.json {
                            let line = format!("{{\"rtt_ms\":{ms:.3},\"response\":{}}}", client::json(&resp)?);
                            writeln!(out, "{line}")?;
                        } else {
                            writeln!(out, "response from {} in {ms:.3}ms: {}", resp.source(), summary(&resp))?;
                        }
                        out.flush()?;
                    }
                }
            }
            Err(DriverError::Closed(reason)) => {
                lost = Some(reason.to_string());
                break;
            }
            Err(e) => {
                failed += 1;
                warn(&format!("message {} to {}: {e}", sent + failed, args.to));
            }
        }
    }
    let elapsed = started.elapsed();
    if lost.is_none() {
        if args.sync {
            handle.close();
        } else {
            client::flush_and_close(&handle).await;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), handle.closed()).await;
    drop(client);

    if args.count.is_some() {
        report(&mut out, args, sent, failed, elapsed, &mut rtts).context("cannot write the summary")?;
    } else if !args.sync {
        let s = if sent == 1 { "" } else { "s" };
        eprintln!("beehive: sent {sent} message{s} to {} on {endpoint}", args.to);
    }
    if let Some(reason) = lost {
        warn(&format!("disconnected from {endpoint}: {reason} (after {sent} messages)"));
        return Ok(EXIT_FINDINGS);
    }
    Ok(if failed > 0 { EXIT_FINDINGS } else { EXIT_OK })
}

/// The summary of `--count`: throughput, and round trips for `--sync`.
fn report(
    out: &mut impl Write,
    args: &SendArgs,
    sent: u64,
    failed: u64,
    elapsed: Duration,
    rtts: &mut [Duration],
) -> io::Result<()> {
    rtts.sort_unstable();
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { sent as f64 / secs } else { 0.0 };
    let p50 = percentile(rtts, 0.50).map(|d| d.as_secs_f64() * 1e3);
    let p99 = percentile(rtts, 0.99).map(|d| d.as_secs_f64() * 1e3);
    if args.json {
        let line = json!({
            "sent": sent, "failed": failed, "seconds": secs, "per_second": rate,
            "rtt_p50_ms": p50, "rtt_p99_ms": p99,
        });
        writeln!(out, "{line}")
    } else {
        write!(out, "{sent} messages to {} in {secs:.3}s: {rate:.0} msg/s", args.to)?;
        if let (Some(p50), Some(p99)) = (p50, p99) {
            write!(out, "; round trip p50 {p50:.3}ms p99 {p99:.3}ms")?;
        }
        if failed > 0 {
            write!(out, "; {failed} failed")?;
        }
        writeln!(out)
    }
}

/// The nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&ms, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&ms, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&ms[..1], 0.99), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
