//! The YAML socket configuration loader on arbitrary bytes.
//!
//! Invariants: no panic, hang or runaway allocation (libFuzzer's limits
//! catch those); the result is a configuration or `ConfigError::Invalid`;
//! parsing is deterministic; every accepted configuration, written back as
//! YAML (keys in upper or lower case, strings as escaped double-quoted
//! scalars), reads back as the same configuration.
#![no_main]

use std::fmt::Write as _;

use beehive_socket::{ConfigError, SocketConfig, SocketModuleConfig};
use libfuzzer_sys::fuzz_target;

/// A YAML double-quoted scalar holding exactly `s`.
fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xFFFF => write!(out, "\\u{:04X}", c as u32).expect("write to String"),
            c => write!(out, "\\U{:08X}", c as u32).expect("write to String"),
        }
    }
    out.push('"');
}

/// Go reads keys case-insensitively: alternate the spelling per entry.
fn key(out: &mut String, name: &str, upper: bool) {
    if upper {
        out.push_str(&name.to_ascii_uppercase());
    } else {
        out.push_str(name);
    }
    out.push_str(": ");
}

fn to_yaml(entries: &[SocketConfig]) -> String {
    let mut out = String::new();
    for (i, e) in entries.iter().enumerate() {
        let upper = i % 2 == 1;
        out.push_str("- ");
        key(&mut out, "module", upper);
        quoted(&mut out, &e.module);
        out.push_str("\n  ");
        key(&mut out, "server", upper);
        out.push_str(if e.server { "true" } else { "false" });
        for (name, value) in
            [("address", &e.address), ("sockettype", &e.socket_type), ("ca", &e.ca), ("cert", &e.cert), ("key", &e.key)]
        {
            out.push_str("\n  ");
            key(&mut out, name, upper);
            quoted(&mut out, value);
        }
        for (name, value) in [("connmax", e.conn_max), ("buffersize", e.buffer_size)] {
            out.push_str("\n  ");
            key(&mut out, name, upper);
            write!(out, "{value}").expect("write to String");
        }
        out.push('\n');
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // Go's loader takes bytes; invalid UTF-8 would stop it early, so the
    // lossy text keeps the YAML parser busy instead.
    let text = String::from_utf8_lossy(data);
    let first = SocketModuleConfig::from_yaml(&text);
    let again = SocketModuleConfig::from_yaml(&text);
    match (&first, &again) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "parsing is deterministic"),
        (Err(ConfigError::Invalid { message: a, .. }), Err(ConfigError::Invalid { message: b, .. })) => {
            assert_eq!(a, b, "errors are deterministic")
        }
        (a, b) => panic!("unexpected results {a:?} / {b:?}"),
    }
    let Ok(cfg) = first else { return };
    for e in &cfg.entries {
        assert!(!e.socket_type.is_empty(), "an empty socket type defaults to unixpacket");
    }
    let yaml = to_yaml(&cfg.entries);
    match SocketModuleConfig::from_yaml(&yaml) {
        Ok(back) => assert_eq!(back, cfg, "re-read of\n{yaml}"),
        Err(e) => panic!("our own YAML is refused: {e}\n{yaml}"),
    }
});
