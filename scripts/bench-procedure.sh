#!/usr/bin/env bash
# Runs beehive-bench the way reported figures are taken (beehive-bench/WORKLOADS.md,
# "Reported figures"): every run its own process under /usr/bin/time -v,
# PASSES round-robin passes over the given workloads, then per workload the
# median ops/s (min..max), the median of the other figures and the largest
# RSS of all runs.
#
#   scripts/bench-procedure.sh [W4 W5 ...]        (default: all)
#
# Environment: PASSES (default 5), SYNC_TIMEOUT (default 100ms).
set -euo pipefail
cd "$(dirname "$0")/.."
PASSES=${PASSES:-5}
SYNC_TIMEOUT=${SYNC_TIMEOUT:-100ms}
workloads=("$@")
if [ ${#workloads[@]} -eq 0 ] || [ "${workloads[*],,}" = "all" ]; then
  workloads=(W1 W2 W3 W4 W5 W6 W7 W8) # one process per run
fi
cargo build --release -q -p beehive-bench
bin=target/release/beehive-bench
out=$(mktemp)
trap 'rm -f "$out" "$out.time" "$out.run"' EXIT
for _ in $(seq "$PASSES"); do
  for w in "${workloads[@]}"; do
    /usr/bin/time -v "$bin" --sync-timeout "$SYNC_TIMEOUT" "$w" >"$out.run" 2>"$out.time"
    rss=$(awk '/Maximum resident/ {print $6}' "$out.time")
    while read -r line; do echo "$line $rss"; done <"$out.run" >>"$out"
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    text, rss = line.rsplit(' ', 1)
    r = json.loads(text); r['rss_kb'] = int(rss); runs[r['workload']].append(r)
print(f"{'workload':<9} {'runs':>4} {'ops/s median':>14} {'min':>12} {'max':>12} {'MB/s':>8} {'p50us':>7} {'p99us':>7} {'err':>4} {'ok ops/s':>10} {'rss_kb':>7}")
for w, rs in runs.items():
    ops = [r['ops_per_sec'] for r in rs]
    med = statistics.median(ops)
    mb = statistics.median([r['mb_per_sec'] for r in rs]) if rs[0]['mb_per_sec'] is not None else None
    lat = [r['lat_us'] for r in rs if r['lat_us']]
    p50 = statistics.median([l['p50'] for l in lat]) if lat else None
    p99 = statistics.median([l['p99'] for l in lat]) if lat else None
    err = statistics.median([r['errors'] for r in rs])
    # Successful-path rate of W2/W8: (n - errors) / (secs - err_secs).
    ok = statistics.median([(r['n'] - r['errors']) / (r['secs'] - r['err_secs']) for r in rs]) if lat else None
    fmt = lambda v, p: '-' if v is None else f"{v:.{p}f}"
    print(f"{w:<9} {len(rs):>4} {med:>14.0f} {min(ops):>12.0f} {max(ops):>12.0f} {fmt(mb,1):>8} {fmt(p50,2):>7} {fmt(p99,2):>7} {err:>4} {fmt(ok,0):>10} {max(r['rss_kb'] for r in rs):>7}")
PY
