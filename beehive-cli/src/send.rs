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
        let summary = Summary { to: &args.to, json: args.json, sent, failed, elapsed };
        report(&mut out, &summary, &mut rtts).context("cannot write the summary")?;
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

/// What the summary of `--count` reports.
struct Summary<'a> {
    to: &'a str,
    json: bool,
    sent: u64,
    failed: u64,
    elapsed: Duration,
}

/// The summary of `--count`: throughput, and round trips for `--sync`.
fn report(out: &mut impl Write, summary: &Summary<'_>, rtts: &mut [Duration]) -> io::Result<()> {
    let Summary { to, json, sent, failed, elapsed } = *summary;
    rtts.sort_unstable();
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { sent as f64 / secs } else { 0.0 };
    let p50 = percentile(rtts, 0.50).map(|d| d.as_secs_f64() * 1e3);
    let p99 = percentile(rtts, 0.99).map(|d| d.as_secs_f64() * 1e3);
    if json {
        let line = json!({
            "sent": sent, "failed": failed, "seconds": secs, "per_second": rate,
            "rtt_p50_ms": p50, "rtt_p99_ms": p99,
        });
        writeln!(out, "{line}")
    } else {
        write!(out, "{sent} messages to {to} in {secs:.3}s: {rate:.0} msg/s")?;
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

    fn summary_of(json: bool, sent: u64, failed: u64, secs: u64, rtts_ms: &[u64]) -> String {
        let summary = Summary { to: "hub", json, sent, failed, elapsed: Duration::from_secs(secs) };
        let mut rtts: Vec<Duration> = rtts_ms.iter().rev().map(|&ms| Duration::from_millis(ms)).collect();
        let mut out = Vec::new();
        report(&mut out, &summary, &mut rtts).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_summary_gives_rate_round_trips_and_failures() {
        let rtts: Vec<u64> = (1..=100).collect();
        assert_eq!(
            summary_of(false, 12, 0, 4, &rtts),
            "12 messages to hub in 4.000s: 3 msg/s; round trip p50 50.000ms p99 99.000ms\n"
        );
        assert_eq!(summary_of(false, 10, 2, 2, &[]), "10 messages to hub in 2.000s: 5 msg/s; 2 failed\n");
        assert_eq!(summary_of(false, 0, 0, 0, &[]), "0 messages to hub in 0.000s: 0 msg/s\n");
    }

    #[test]
    fn the_json_summary_has_the_same_figures() {
        let line = summary_of(true, 10, 1, 4, &[3, 1, 2]);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["sent"], 10);
        assert_eq!(v["failed"], 1);
        assert_eq!(v["seconds"], 4.0);
        assert_eq!(v["per_second"], 2.5);
        assert_eq!(v["rtt_p50_ms"], 2.0);
        assert_eq!(v["rtt_p99_ms"], 3.0);
        let none: serde_json::Value = serde_json::from_str(&summary_of(true, 0, 0, 0, &[])).unwrap();
        assert_eq!((none["per_second"].as_f64(), none["rtt_p50_ms"].is_null()), (Some(0.0), true));
    }
}
