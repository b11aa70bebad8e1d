//! W4 (encode the pod message) and W5 (decode it).

use std::hint::black_box;
use std::time::Instant;

use beehive_model::{Content, Message, MessageHeader, MessageRoute};

use crate::output::RunResult;

/// `pod.json`: the Kubernetes Pod of W4/W5.
pub const POD_JSON: &[u8] = include_bytes!("../../data/pod.json");
/// `pod_message.json`: the exact bytes W4 must produce and W5 consumes.
pub const POD_MESSAGE: &[u8] = include_bytes!("../../data/pod_message.json");

/// W4's message: fixed header and route, content = the parsed pod.
fn pod_message(raw: bool) -> Result<Message, String> {
    let header = MessageHeader {
        id: "11111111-2222-4333-8444-555555555555".to_owned(),
        timestamp: 1_700_000_000_000,
        resource_version: "12345".to_owned(),
        ..MessageHeader::default()
    };
    let route = MessageRoute {
        source: "edgecontroller".to_owned(),
        group: "resource".to_owned(),
        resource: "default/pod/nginx".to_owned(),
        operation: "update".to_owned(),
        ..MessageRoute::default()
    };
    let value = beehive_model::decode_value(POD_JSON).map_err(|e| format!("pod.json: {e}"))?;
    let msg = Message::from_parts(header, route, Content::from(value));
    if raw {
        // A message as a forwarding module holds it: decoded lazily, so the
        // content is kept as the canonical bytes it arrived in.
        let bytes = beehive_model::Bytes::from(beehive_model::to_vec(&msg).map_err(|e| e.to_string())?);
        let lazy = beehive_model::json::from_bytes_lazy(&bytes).map_err(|e| e.to_string())?;
        if !matches!(lazy.content(), Content::Raw(r) if r.is_canonical()) {
            return Err("pod content did not stay raw".to_owned());
        }
        return Ok(lazy);
    }
    Ok(msg)
}

/// W4: N encodes of the pod message, each into a new buffer. With `raw`, the
/// content is held as the canonical JSON it was received in, as after
/// [`beehive_model::json::from_bytes_lazy`] (the `W4-raw` extra line, not W4).
pub fn w4(n: u64, raw: bool) -> Result<RunResult, String> {
    let msg = pod_message(raw)?;
    let mut errors = 0;
    let t0 = Instant::now();
    for _ in 0..n {
        let out = beehive_model::to_vec(black_box(&msg)).map_err(|e| e.to_string())?;
        if out != POD_MESSAGE {
            errors += 1;
        }
        black_box(out);
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(RunResult {
        workload: if raw { "W4-raw" } else { "W4" }.to_owned(),
        n,
        ops: n,
        secs,
        bytes: Some(n * POD_MESSAGE.len() as u64),
        lat: None,
        errors,
        err_secs: 0.0,
    })
}

/// W5: N decodes of the pod message into a fresh message with the content
/// fully materialised. With `lazy`, the content stays raw JSON (the
/// `W5-lazy` extra line, not W5).
pub fn w5(n: u64, lazy: bool) -> Result<RunResult, String> {
    let input = beehive_model::Bytes::from_static(POD_MESSAGE);
    let mut errors = 0;
    let t0 = Instant::now();
    for _ in 0..n {
        let decoded = if lazy {
            beehive_model::json::from_bytes_lazy(black_box(&input))
        } else {
            beehive_model::from_slice(black_box(&input))
        };
        match decoded {
            Ok(m) if m.resource_version() == "12345" => {
                black_box(m);
            }
            _ => errors += 1,
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(RunResult {
        workload: if lazy { "W5-lazy" } else { "W5" }.to_owned(),
        n,
        ops: n,
        secs,
        bytes: Some(n * POD_MESSAGE.len() as u64),
        lat: None,
        errors,
        err_secs: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w4_produces_the_reference_bytes() {
        let out = beehive_model::to_vec(&pod_message(false).unwrap()).unwrap();
        assert_eq!(out, POD_MESSAGE);
        let out = beehive_model::to_vec(&pod_message(true).unwrap()).unwrap();
        assert_eq!(out, POD_MESSAGE);
    }

    #[test]
    fn small_runs_report_no_errors() {
        for r in [w4(50, false), w4(50, true), w5(50, false), w5(50, true)] {
            let r = r.unwrap();
            assert_eq!((r.n, r.errors), (50, 0), "{}", r.workload);
        }
    }
}
