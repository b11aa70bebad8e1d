#!/usr/bin/env bash
# Measures beehive-rs side by side with the Go beehive's benchmark binary
# (`gobench`, same command line and output line as beehive-bench) in one
# run: for every pass and workload, one Go process and one Rust process,
# the order alternating between passes. Prints per workload the median
# rate of each implementation, its spread (max/min over the passes), the
# ratio of the medians, and for W2/W8 the p99 and Go's successful-path rate
# ((n - errors) / (secs - err_secs)), since Go loses responses.
#
#   GOBENCH=/path/to/gobench scripts/bench-vs-go.sh [W1 W2 ... | all]
#
# Environment:
#   GOBENCH       the Go benchmark binary (required; the script says so and
#                 exits 2 when it is missing)
#   PASSES        passes per workload (default 5)
#   SYNC_TIMEOUT  --sync-timeout of both binaries (default 100ms)
#   CONTEND=1     keep one core busy with a third process for the whole run
#                 (a busy loop pinned to core 0, the same for both)
#   RAW=FILE      also keep every result line in FILE
# Before every pass and at the end, the script measures the core-to-core
# round trip (beehive-bench's `core_rtt` example) and prints the figures
# with the table: W1-W3 follow it, and on a VM it can change between runs.
# With CONTEND=1 it also measures, at the same points, the round trip of two
# threads of one process taking turns on the free core by yielding (the
# `handoff` example): the two thread switches that every W2 round trip
# needs when its threads share that core, with no bus work at all.
# After the table, every workload's rates per pass (ours / Go's, in pass
# order) show whether a median hides a change of the machine's state.
# Rust-only lines (W1-async, W1-floor, W7-floor, W8-async, W8-hive) are compared with Go's W1/W7/W8.
set -euo pipefail
cd "$(dirname "$0")/.."
PASSES=${PASSES:-5}
SYNC_TIMEOUT=${SYNC_TIMEOUT:-100ms}
if [ -z "${GOBENCH:-}" ] || [ ! -x "$GOBENCH" ]; then
  echo "bench-vs-go: set GOBENCH to the Go beehive benchmark binary (gobench); nothing measured" >&2
  exit 2
fi
workloads=("$@")
if [ ${#workloads[@]} -eq 0 ] || [ "${workloads[*],,}" = "all" ]; then
  workloads=(W1 W2 W3 W4 W5 W6 W7 W8)
fi
cargo build --release -q -p beehive-bench --bin beehive-bench --example core_rtt --example handoff
rust=target/release/beehive-bench
core_rtt=target/release/examples/core_rtt
handoff=target/release/examples/handoff
data=beehive-bench/data
out=$(mktemp)
busy=""
cleanup() {
  [ -n "$busy" ] && kill "$busy" 2>/dev/null || true
  rm -f "$out" "$out.go-stderr" "$out.rtt" "$out.handoff"
}
trap cleanup EXIT
trap "exit 130" INT TERM
if [ "${CONTEND:-0}" = 1 ]; then
  taskset -c 0 sh -c 'while :; do :; done' &
  busy=$!
fi
# The machine's state at a point of the run (a pass number, or `end`).
floors() {
  echo "core-rtt $1 $("$core_rtt")" >>"$out.rtt"
  if [ -n "$busy" ]; then
    echo "handoff $1 $(taskset -c 1 "$handoff" yield)" >>"$out.handoff"
  fi
}
go_name() { case "$1" in *-async) echo "${1%-async}" ;; *-hive) echo "${1%-hive}" ;; *-floor) echo "${1%-floor}" ;; *) echo "$1" ;; esac; }
for pass in $(seq "$PASSES"); do
  # The core-to-core round trip before each pass: the in-process workloads
  # follow it, and on a VM it can change between runs.
  floors "$pass"
  for w in "${workloads[@]}"; do
    g=$(go_name "$w")
    if [ $((pass % 2)) = 1 ]; then
      "$GOBENCH" --data "$data" --sync-timeout "$SYNC_TIMEOUT" "$g" 2>>"$out.go-stderr" | sed "s/^/$w go /" >>"$out"
      "$rust" --sync-timeout "$SYNC_TIMEOUT" "$w" | sed "s/^/$w rs /" >>"$out"
    else
      "$rust" --sync-timeout "$SYNC_TIMEOUT" "$w" | sed "s/^/$w rs /" >>"$out"
      "$GOBENCH" --data "$data" --sync-timeout "$SYNC_TIMEOUT" "$g" 2>>"$out.go-stderr" | sed "s/^/$w go /" >>"$out"
    fi
  done
done
floors end
[ -n "${RAW:-}" ] && cp "$out" "$RAW"
echo "core-to-core round trip (ns), before each pass and at the end: $(awk '{printf "%s ", $3}' "$out.rtt")"
if [ -n "$busy" ]; then
  echo "two threads taking turns on the free core by yielding (µs per round trip), before each pass and at the end: $(awk '{printf "%s ", $3}' "$out.handoff")"
fi
python3 - "$out" "$PASSES" "${CONTEND:-0}" <<'PY'
import collections, json, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    w, impl, text = line.split(' ', 2)
    runs[(w, impl)].append(json.loads(text))
def rate(r):
    # Round-trip workloads: the successful-path rate.
    if r['lat_us'] is not None and r['errors']:
        ok = r['n'] - r['errors']
        return ok / max(r['secs'] - r['err_secs'], 1e-9)
    return r['ops_per_sec']
def p99(rs):
    lat = [r['lat_us']['p99'] for r in rs if r['lat_us']]
    return statistics.median(lat) if lat else None
print(f"passes {sys.argv[2]}, contention {'one core busy' if sys.argv[3] == '1' else 'none'}")
print(f"{'workload':<9} {'go ops/s':>12} {'spread':>6} {'rs ops/s':>12} {'spread':>6} {'ratio':>6} {'go p99':>8} {'rs p99':>8} {'go err':>6} {'rs err':>6}")
seen = []
for (w, _) in runs:
    if w not in seen:
        seen.append(w)
def human(v):
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}"
per_pass = []
for w in seen:
    go, rs = runs.get((w, 'go'), []), runs.get((w, 'rs'), [])
    if not go or not rs:
        continue
    g, r = [rate(x) for x in go], [rate(x) for x in rs]
    gm, rm = statistics.median(g), statistics.median(r)
    fmt = lambda v: '-' if v is None else f"{v:.1f}"
    print(f"{w:<9} {gm:>12.0f} {max(g)/min(g):>6.2f} {rm:>12.0f} {max(r)/min(r):>6.2f} {rm/gm:>6.2f} "
          f"{fmt(p99(go)):>8} {fmt(p99(rs)):>8} {statistics.median(x['errors'] for x in go):>6g} {statistics.median(x['errors'] for x in rs):>6g}")
    per_pass.append(f"{w:<9} " + "  ".join(f"{human(b)} / {human(a)}" for a, b in zip(g, r)))
print("per pass, ours / Go's (ops/s):")
print("\n".join(per_pass))
PY
