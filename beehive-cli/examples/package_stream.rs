//! Writes a Package stream of one message repeated, for timing `beehive decode`:
//!
//! ```sh
//! cargo run --release -p beehive-cli --example package_stream -- \
//!     beehive-bench/data/pod_message.json /tmp/pod.bin 100
//! time target/release/beehive decode --framing package /tmp/pod.bin > /dev/null
//! ```
//!
//! Arguments: the message (JSON), the output file, the size in MB (10^6 bytes,
//! rounded up to whole frames).

use std::io::{BufWriter, Write};

use beehive_codec::PackageCodec;
use bytes::BytesMut;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [message, output, megabytes] = args.as_slice() else {
        return Err("usage: package_stream MESSAGE.json OUTPUT SIZE_MB".into());
    };
    let msg = beehive_model::from_slice(&std::fs::read(message)?)?;
    let mut frame = BytesMut::new();
    PackageCodec::new().encode_message(&msg, &mut frame)?;
    let size: u64 = megabytes.parse::<u64>()? * 1_000_000;
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(output)?);
    let mut written = 0u64;
    let mut frames = 0u64;
    while written < size {
        out.write_all(&frame)?;
        written += frame.len() as u64;
        frames += 1;
    }
    out.flush()?;
    eprintln!("{output}: {frames} frames of {} bytes, {written} bytes", frame.len());
    Ok(())
}
