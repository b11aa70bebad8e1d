#!/usr/bin/env python3
"""Regenerates fuzz/seeds/<target>/ from the vendored Go captures and a few
hand-written examples (socket configuration files, handshake answers).

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

TARGETS = (
    "package_decoder", "raw_decoder", "message_decode", "roundtrip",
    "socket_config", "module_exchange", "message_serde", "session",
)
for t in TARGETS:
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

# serde deserialisation: the hand-written decode cases (every category, the
# generated ones thinned out) and every tenth encoder output.
for i, line in enumerate(open(caps / "decode.jsonl")):
    case = json.loads(line)
    if case["category"] in ("truncated", "roundtrip", "mutation") and i % 10:
        continue
    put("message_serde", base64.b64decode(case["input_b64"]))
for i, line in enumerate(open(caps / "encode.jsonl")):
    case = json.loads(line)
    if case["go_ok"] and i % 10 == 0:
        put("message_serde", case["go_json"].encode())

# Socket configuration files: the documented layout, Go's key spellings,
# TLS and stream entries, YAML features (anchors, flow style, quoting,
# documents) and a few broken files; plus one per capture session.
CONFIGS = [
    "",
    "[]\n",
    "- module: socketserver\n  server: true\n  address: /var/lib/kubeedge/beehive.sock\n"
    "  sockettype: unixpacket\n  connmax: 4\n  buffersize: 4096\n"
    "- module: edgeclient\n  server: false\n  address: /var/lib/kubeedge/beehive.sock\n"
    "  sockettype: unixpacket\n  buffersize: 4096\n",
    "- Module: s\n  SERVER: true\n  Address: 127.0.0.1:9000\n  SocketType: tcp\n  ConnMax: 1\n"
    "  ca: /etc/ca.pem\n  cert: /etc/cert.pem\n  key: /etc/key.pem\n",
    "- module: c\n  address: /tmp/s.sock\n  sockettype: unix\n  buffersize: 65536\n  extra: [1, 2]\n",
    "- {module: a, server: true, address: /tmp/a, connmax: 2}\n- {module: b, address: /tmp/a}\n",
    '[{"module": "a", "server": true, "address": "/tmp/a"}, {"Module": "b", "address": "/tmp/a"}]\n',
    "- &base\n  address: /tmp/x.sock\n  sockettype: unixpacket\n- <<: *base\n  module: m\n",
    "- module: \"quoted \\u00e9\\t\"\n  address: 'single ''quoted'''\n  ca: |\n    literal\n",
    "---\n- module: a\n...\n",
    "- module: ~\n  server: null\n  connmax: 0x10\n  buffersize: 1e3\n",
    "# comment only\n",
    "module: x\n",
    "- module: [1]\n",
    "- server: maybe\n",
    "- connmax: -1\n",
    "- [a\n",
    "- a: &a [*a]\n",
    "- k: &x [1, 1]\n  l: &y [*x, *x]\n  m: [*y, *y]\n",
]
for text in CONFIGS:
    put("socket_config", text.encode())
for line in open(caps / "sessions" / "index.jsonl"):
    s = json.loads(line)
    put("socket_config", (
        f"- module: {s['server_module']}\n  server: true\n  address: /tmp/{s['name']}.sock\n"
        f"  sockettype: {s['socket_type']}\n  connmax: 4\n  buffersize: {s['buffer_size']}\n"
        f"- module: {s['client_module']}\n  server: false\n  address: /tmp/{s['name']}.sock\n"
        f"  sockettype: {s['socket_type']}\n  buffersize: {s['buffer_size']}\n").encode())

# Handshake answers: Go's module-exchange messages, as whole messages and as
# the content alone, the answers of the capture sessions, and hand-written
# shapes Go reads in its own way (case variants, nulls, duplicates).
def content_of(go_json):
    return json.dumps(json.loads(go_json)["content"], separators=(",", ":")).encode()

for line in open(caps / "encode.jsonl"):
    case = json.loads(line)
    if case["go_ok"] and case["message"]["content_kind"] == "module_exchange":
        put("module_exchange", case["go_json"].encode())
        put("module_exchange", content_of(case["go_json"]))
for f in sorted((caps / "sessions").glob("*.jsonl")):
    if f.name == "index.jsonl":
        continue
    for line in open(f):
        packet = json.loads(line)
        if '"modules"' in packet["text"]:
            put("module_exchange", packet["text"].encode())
            put("module_exchange", content_of(packet["text"]))
for text in (
    'null',
    '{}',
    '{"modules":[],"groups":{}}',
    '{"Modules":["a"],"GROUPS":{"g":["a"]},"other":1}',
    '{"Modules":["a","b"],"modules":null}',
    '{"Groups":{"g":["a"]},"groups":{"h":["b"]}}',
    '{"modules":["a",null],"groups":{"g":null,"h":["x",null]}}',
    '{"modules":"a"}',
    '{"groups":{"g":[1]}}',
    '[]',
):
    put("module_exchange", text.encode())

# Sessions: two configuration bytes (role, transport, registry; frame
# limit), then operations (see the target): the packets of each capture
# session fed to a server-role session (as packets, and as a raw stream,
# with and without the registry) and to a client-role session (its
# registration answered, then the server's packets), with transmits, clock
# advances and sends in between.
def feed(data):
    return bytes([0]) + len(data).to_bytes(2, "little") + data

for f in sorted((caps / "sessions").glob("*.jsonl")):
    if f.name == "index.jsonl":
        continue
    packets = [json.loads(line) for line in open(f)]
    from_client = [p["text"].encode() for p in packets if p["dir"] == "client_to_server"]
    from_server = [p["text"].encode() for p in packets if p["dir"] == "server_to_client"]
    ops = b"".join(feed(p) + bytes([2, 2, 1, 4]) for p in from_client) + bytes([4, 0, 4, 1, 2, 3, 5, 1, 200])
    for mode in (0x00, 0x02, 0x08, 0x12):
        put("session", bytes([mode, 0xFF]) + ops)
    ops = bytes([2, 7]) + b"".join(feed(p) + bytes([4, 3, 2, 1, 10]) for p in from_server[1:])
    ops += bytes([4, 1, 2, 1, 100, 5])
    for mode in (0x01, 0x03, 0x05):
        put("session", bytes([mode, 0xFF]) + ops)
# A frame trickled in byte by byte, with the clock moving.
reg = json.loads(open(caps / "sessions" / "handshake.jsonl").readline())["text"].encode()
put("session", bytes([0x02, 0xFF]) + b"".join(feed(reg[i:i + 1]) + bytes([1, 15]) for i in range(40)))
