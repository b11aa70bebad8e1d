//! Logs of the `beehive` command.
//!
//! Logs: the `tracing` events of the command and of the beehive crates go
//! to stderr (stdout carries the command's output), as text or as one JSON
//! object per line, filtered by `--log` or else `RUST_LOG` (directives as
//! `tracing-subscriber`'s `EnvFilter` reads them), `warn` by default.

use std::io;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;
use crate::style;

/// The filter when neither `--log` nor `RUST_LOG` gives one.
pub const DEFAULT_FILTER: &str = "warn";

/// The environment variable read for the filter when `--log` is absent.
pub const FILTER_ENV: &str = "RUST_LOG";

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
