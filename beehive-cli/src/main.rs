//! `beehive`: look at and make beehive traffic from the command line.
//!
//! `decode` prints the frames of a Package or Raw stream (one summary line
//! or one JSON object per frame), `encode` writes one message in Go's exact
//! bytes, `conformance` checks beehive-rs against a Go capture set, `record`
//! relays clients to their server unchanged and records the traffic as a
//! capture set, `listen` and `send` join a hive as a remote module to
//! print what arrives or to send (and time round trips), and `completions`
//! prints a shell completion script. Log events go to stderr (`--log`,
//! `RUST_LOG`, `--log-format`); `record` and `listen` serve Prometheus
//! metrics with `--metrics` (see [`observe`]). Exit codes: 0 success, 1
//! malformed input found, conformance failures, a connection that could
//! not be relayed, or one lost or requests unanswered, 2 usage or I/O
//! error.

mod cli;
mod client;
mod conformance;
mod decode;
mod encode;
mod listen;
mod observe;
mod record;
mod report;
mod send;
mod serve;
mod style;

use std::io;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command};

/// Exit code: everything decoded / every check passed.
pub const EXIT_OK: u8 = 0;
/// Exit code: malformed input found (decode) or conformance failures.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code: usage or I/O error (clap uses 2 for usage errors too).
pub const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.color.apply();
    observe::init_logging(cli.log_format, cli.log.as_deref());
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args),
        Command::Encode(args) => encode::run(&args),
        Command::Conformance(args) => conformance::run(&args),
        Command::Record(args) => record::run(&args),
        Command::Listen(args) => listen::run(&args),
        Command::Send(args) => send::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Completions(args) => {
            let mut out = io::stdout().lock();
            clap_complete::generate(args.shell, &mut Cli::command(), "beehive", &mut out);
            Ok(EXIT_OK)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // The reader of our output went away (`beehive decode … | head`):
        // stop quietly, as a filter does.
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_OK),
        Err(e) => {
            let mut err = anstream::stderr().lock();
            let _ = style::write_error(&mut err, &error_chain(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
}

/// The error and its causes, `: `-separated, leaving out a cause whose text
/// its wrapper already includes (thiserror messages often embed their source).
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !text.contains(&c) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&c);
        }
    }
    text
}
