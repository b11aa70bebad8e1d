//! Go-parity message decoding on arbitrary bytes.
//!
//! Invariants: no panic; errors point inside the input; an accepted input
//! re-encodes to bytes that decode to the same message and re-encode
//! identically (what we write, we read back unchanged); the lazy decoder
//! accepts exactly the same inputs and writes exactly the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let full = beehive_model::from_slice(data);
    let lazy = beehive_model::json::from_bytes_lazy(&bytes::Bytes::copy_from_slice(data));
    assert_eq!(full.is_ok(), lazy.is_ok());
    match full {
        Err(e) => assert!(e.offset() <= data.len()),
        Ok(msg) => {
            let once = beehive_model::to_vec(&msg).expect("decoded messages always encode");
            assert_eq!(beehive_model::to_vec(&lazy.expect("same")).expect("encode"), once);
            let back = beehive_model::from_slice(&once).expect("our output decodes");
            assert_eq!(beehive_model::to_vec(&back).expect("encode"), once);
        }
    }
    let mut target = beehive_model::Message::raw().build_header("keep", "", 7);
    if let Err(e) = beehive_model::decode_into(&mut target, data) {
        if e.is_syntax() {
            assert_eq!(target.id(), "keep");
        }
    }
});
