#!/bin/bash
# Usage: BIN_DIR=target/release scripts/profile.sh SCENARIO [database|memory]; writes /tmp/perf-SCENARIO.data.
# Profiles one scenario on a fresh SQLite-store server: perf cpu-clock sampling with DWARF call graphs for 5 s under load; perf script + bucket.py summarise it.
SCEN=$1; KIND=${2:-database}
D=$(mktemp -d); 
${BIN_DIR:-/work/target-bench/release}/attestix serve --bind 127.0.0.1:0 --data-dir $D --allow-no-auth --idempotency-store $KIND > $D/out 2>$D/err &
PID=$!; sleep 2; ADDR=$(sed -n 's/listening on //p' $D/out)
${BIN_DIR:-/work/target-bench/release}/attestix-bench run --target $ADDR --scenario $SCEN -d 14s --warmup 1s -c 16 > $D/run.txt 2>&1 &
LG=$!
sleep 3; perf record -e cpu-clock -F 997 --call-graph dwarf,16384 -F 299 -p $PID -o /tmp/perf-$SCEN.data -- sleep 5 2>/dev/null >/dev/null
wait $LG; cat $D/run.txt; kill $PID; rm -rf $D
perf report -i /tmp/perf-$SCEN.data --no-children --stdio --sort symbol 2>/dev/null | grep -E "^ +[0-9]" | head -40 > /tmp/perf-$SCEN-self.txt
perf report -i /tmp/perf-$SCEN.data --children --stdio --sort symbol -g none 2>/dev/null | grep -E "^ +[0-9]" | head -60 > /tmp/perf-$SCEN-children.txt
