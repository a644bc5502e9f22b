#!/bin/bash
# Usage: crates/attestix-bench/scripts/cpu_idle.sh SCENARIO [SERVER]
# Runs one 6 s attestix-bench scenario (default server: sqlite) and prints the share of
# CPU time the whole machine spent idle, user and system between 3 s and 7 s into it
# (from /proc/stat), to tell a CPU-bound server from one that waits.
SCEN=$1; SERVER=${2:-sqlite}
B=${BIN_DIR:-target/release}/attestix-bench
(sleep 3; head -1 /proc/stat > /tmp/cpu_idle.1; sleep 4; head -1 /proc/stat > /tmp/cpu_idle.2) &
$B run --server "$SERVER" --scenario "$SCEN" -c 16 -d 6s --warmup 1s | grep "req/s"
wait
python3 - <<'PY'
a = list(map(int, open('/tmp/cpu_idle.1').read().split()[1:]))
b = list(map(int, open('/tmp/cpu_idle.2').read().split()[1:]))
d = [y - x for x, y in zip(a, b)]
t = sum(d)
print(f"idle {100 * (d[3] + d[4]) / t:.0f} %  user {100 * d[0] / t:.0f} %  system {100 * d[2] / t:.0f} %")
PY
