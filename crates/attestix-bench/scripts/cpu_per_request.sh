#!/bin/bash
# Usage: crates/attestix-bench/scripts/cpu_per_request.sh STORE SCENARIO
#   STORE: database or memory (the server's --idempotency-store); SCENARIO: an attestix-bench scenario.
# Starts `attestix serve` on a fresh data directory, drives it for 8 s at 16 connections,
# and prints the throughput, the server process's CPU (user + system, from
# /proc/PID/stat between 2 s and 7 s into the run) per request, and the whole machine's
# idle share over the same window. Extra environment (RUST_LOG, ...) reaches the server.
set -euo pipefail
STORE=$1; SCEN=$2
BIN=${BIN_DIR:-target/release}
DIR=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$DIR"' EXIT
"$BIN/attestix" serve --bind 127.0.0.1:0 --data-dir "$DIR" --allow-no-auth \
    --idempotency-store "$STORE" > "$DIR/out" 2> "$DIR/err" &
SERVER=$!
for _ in $(seq 50); do grep -q "listening on" "$DIR/out" && break; sleep 0.1; done
ADDR=$(sed -n 's/listening on //p' "$DIR/out")
"$BIN/attestix-bench" run --target "$ADDR" --scenario "$SCEN" -d 8s -c 16 > "$DIR/run" 2>&1 &
LOAD=$!
sleep 2
ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
machine() { head -1 /proc/stat; }
T0=$(ticks); M0=$(machine)
sleep 5
T1=$(ticks); M1=$(machine)
wait "$LOAD"
RATE=$(grep -oE '[0-9]+ req/s' "$DIR/run" | head -1 | cut -d' ' -f1)
python3 - "$T0" "$T1" "$RATE" "$(getconf CLK_TCK)" "$M0" "$M1" "$STORE" "$SCEN" <<'PY'
import sys
t0, t1, rate, hz = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
m0 = list(map(int, sys.argv[5].split()[1:])); m1 = list(map(int, sys.argv[6].split()[1:]))
d = [b - a for a, b in zip(m0, m1)]
cpu_seconds = (t1 - t0) / hz
print(f"{sys.argv[7]} {sys.argv[8]}: {rate} req/s, server CPU {100 * cpu_seconds / 5:.0f} %, "
      f"{1e6 * cpu_seconds / (5 * rate):.0f} µs of server CPU per request, "
      f"machine idle {100 * (d[3] + d[4]) / sum(d):.0f} %")
PY
