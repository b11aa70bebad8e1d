//! One result line, keys in the order `WORKLOADS.md` ("The result line") fixes.

use std::fmt::Write as _;

/// Latency statistics over the successful calls, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
}

impl Latency {
    /// Nearest-rank statistics of `samples_us`; `None` when empty.
    pub fn of(samples_us: &mut [f64]) -> Option<Latency> {
        if samples_us.is_empty() {
            return None;
        }
        samples_us.sort_by(f64::total_cmp);
        let k = samples_us.len();
        let rank = |p: f64| samples_us[((p / 100.0 * k as f64).ceil() as usize).clamp(1, k) - 1];
        Some(Latency { mean: samples_us.iter().sum::<f64>() / k as f64, p50: rank(50.0), p99: rank(99.0) })
    }
}

/// The outcome of one workload run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub workload: String,
    pub n: u64,
    pub ops: u64,
    pub secs: f64,
    pub bytes: Option<u64>,
    pub lat: Option<Latency>,
    pub errors: u64,
    pub err_secs: f64,
}

fn num(f: f64) -> String {
    if f.is_finite() {
        let s = format!("{f}");
        if s.contains('.') || s.contains('e') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        "null".to_owned()
    }
}

impl RunResult {
    /// The JSON line.
    pub fn to_json_line(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{{\"workload\":\"{}\",\"impl\":\"beehive-rs\",\"n\":{},\"secs\":{},\"ops_per_sec\":{},\"mb_per_sec\":{},\"lat_us\":",
            self.workload,
            self.n,
            num(self.secs),
            num(self.ops as f64 / self.secs),
            self.bytes.map_or("null".to_owned(), |b| num(b as f64 / 1e6 / self.secs)),
        );
        match self.lat {
            None => s.push_str("null"),
            Some(l) => {
                let _ = write!(s, "{{\"mean\":{},\"p50\":{},\"p99\":{}}}", num(l.mean), num(l.p50), num(l.p99));
            }
        }
        let _ = write!(s, ",\"errors\":{},\"err_secs\":{}}}", self.errors, num(self.err_secs));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_the_documented_keys_in_order() {
        let r = RunResult {
            workload: "W4".into(),
            n: 10,
            ops: 10,
            secs: 2.0,
            bytes: Some(4_000_000),
            lat: None,
            errors: 0,
            err_secs: 0.0,
        };
        assert_eq!(
            r.to_json_line(),
            r#"{"workload":"W4","impl":"beehive-rs","n":10,"secs":2.0,"ops_per_sec":5.0,"mb_per_sec":2.0,"lat_us":null,"errors":0,"err_secs":0.0}"#
        );
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let l = Latency::of(&mut v).unwrap();
        assert_eq!((l.p50, l.p99, l.mean), (50.0, 99.0, 50.5));
        assert!(Latency::of(&mut []).is_none());
    }
}
