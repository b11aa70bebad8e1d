#!/usr/bin/env python3
"""Regenerates fuzz/seeds/<target>/ from the vendored Go captures.

Seeds are committed; rerun this after re-vendoring the captures.
"""
import base64, hashlib, json, os, pathlib, shutil

root = pathlib.Path(__file__).resolve().parent.parent
caps = root / "conformance" / "captures"
seeds = root / "fuzz" / "seeds"

def put(target, data):
    if len(data) > 32 * 1024:
        return
    d = seeds / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)

for t in ("package_decoder", "raw_decoder", "message_decode", "roundtrip"):
    shutil.rmtree(seeds / t, ignore_errors=True)

# Go-parity decoding: every hand-written case, every fifth generated one,
# and every encoder output.
for i, line in enumerate(open(caps / "decode.jsonl")):
    case = json.loads(line)
    if case["category"] in ("truncated", "roundtrip", "mutation") and i % 5:
        continue
    put("message_decode", base64.b64decode(case["input_b64"]))
for line in open(caps / "encode.jsonl"):
    case = json.loads(line)
    if case["go_ok"]:
        put("message_decode", case["go_json"].encode())

# Framing: Go's writer streams and the malformed cases, behind the two
# configuration bytes the targets read first (frame limit, piece size).
for f in sorted((caps / "frames").glob("*.bin")):
    data = f.read_bytes()[:8192]
    target = "package_decoder" if f.name.startswith("package") else "raw_decoder"
    put(target, bytes([0xFF, 0x00]) + data)
    put(target, bytes([0x10, 0x06]) + data)
for line in open(caps / "frames" / "malformed.jsonl"):
    case = json.loads(line)
    put("package_decoder", bytes([0x04, 0x00]) + base64.b64decode(case["input_b64"]))

# Round trip: a few byte patterns for the structure-aware input.
for n in (0, 16, 64, 256):
    put("roundtrip", bytes(range(n % 256)) * (1 + n // 256))
