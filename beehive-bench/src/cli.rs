//! Command-line parsing, as `WORKLOADS.md` ("Running it") describes it.

use std::time::Duration;

use crate::workloads::Workload;

pub const USAGE: &str = "usage: beehive-bench [--repeat R] [--sync-timeout DURATION] [--n N] W1|W2|W3|W4|W5|W6|W7|W8|all [more...]\n       extra labelled workloads (not in `all`): W4-raw, W5-lazy, W1-async, W1-floor, W2-async, W7-floor, W8-async, W8-hive";

/// Parsed options.
#[derive(Debug, Clone)]
pub struct Options {
    pub repeat: usize,
    pub sync_timeout: Duration,
    pub n: Option<u64>,
    pub workloads: Vec<Workload>,
}

/// Parses `5s`, `100ms`, `250us`, `1m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "ns" => v / 1e9,
        "m" => v * 60.0,
        _ => return Err(format!("bad duration unit in {s:?}")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("bad duration {s:?}: {e}"))
}

fn value<'a>(it: &mut impl Iterator<Item = &'a String>, flag: &str) -> Result<&'a String, String> {
    it.next().ok_or_else(|| format!("{flag} needs a value"))
}

pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = Options { repeat: 1, sync_timeout: Duration::from_secs(5), n: None, workloads: Vec::new() };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut val = |flag: &str| -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => value(&mut it, flag).cloned(),
            }
        };
        match flag.to_ascii_lowercase().as_str() {
            "--repeat" => opts.repeat = val(flag)?.parse().map_err(|_| "--repeat needs a positive integer")?,
            "--sync-timeout" => opts.sync_timeout = parse_duration(&val(flag)?)?,
            "--n" => opts.n = Some(val(flag)?.parse().map_err(|_| "--n needs a positive integer")?),
            "-h" | "--help" => return Err("help".to_owned()),
            f if f.starts_with('-') => return Err(format!("unknown option {arg}")),
            "all" => opts.workloads.extend(Workload::ALL),
            w => opts.workloads.push(Workload::parse(w).ok_or_else(|| format!("unknown workload {arg}"))?),
        }
    }
    if opts.workloads.is_empty() {
        return Err("no workload given".to_owned());
    }
    if opts.repeat == 0 {
        return Err("--repeat must be at least 1".to_owned());
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_the_documented_command_line() {
        let o = parse(&args("--repeat 3 --sync-timeout 100ms w4 W5")).unwrap();
        assert_eq!(o.repeat, 3);
        assert_eq!(o.sync_timeout, Duration::from_millis(100));
        assert_eq!(o.workloads, vec![Workload::W4, Workload::W5]);
        assert_eq!(parse(&args("ALL")).unwrap().workloads, Workload::ALL.to_vec());
        assert_eq!(parse(&args("--sync-timeout=5s --n=10 W4")).unwrap().n, Some(10));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse(&args("")).is_err());
        assert!(parse(&args("W9")).is_err());
        assert_eq!(parse(&args("w8")).unwrap().workloads, vec![Workload::W8]);
        assert_eq!(parse(&args("w8-async")).unwrap().workloads, vec![Workload::W8Async]);
        assert_eq!(parse(&args("W7-Floor")).unwrap().workloads, vec![Workload::W7Floor]);
        assert_eq!(parse(&args("w1-floor")).unwrap().workloads, vec![Workload::W1Floor]);
        assert_eq!(parse(&args("w1 W3")).unwrap().workloads, vec![Workload::W1, Workload::W3]);
        assert!(parse(&args("--repeat x W4")).is_err());
        assert!(parse(&args("--sync-timeout 5parsecs W4")).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
    }
}
