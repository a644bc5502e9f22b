#!/usr/bin/env bash
# Keyed-create throughput of one and of two `attestix serve` instances sharing one
# PostgreSQL database, measured with attestix-bench in alternating rounds.
#
#   scripts/two-instances.sh [ROUNDS] [SECONDS]      (default 3 rounds of 10 s)
#
# Each round runs "one instance" (one bench process, 16 connections, instance A)
# then "two instances" (two bench processes at once, 8 connections each, A and B),
# or the other way round on even rounds. Both instances run for the whole script on
# one fresh database (dropped at the end). Needs PostgreSQL on 127.0.0.1:5432 (user
# postgres, trust) and release builds of attestix and attestix-bench:
#   cargo build --release -p attestix -p attestix-bench
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-3}"
seconds="${2:-10}"
target_dir="${CARGO_TARGET_DIR:-target}"
bin="$target_dir/release/attestix"
bench="${ATTESTIX_BENCH:-$target_dir/release/attestix-bench}"
db="attestix_two_instances_$$"
url="postgres://postgres@127.0.0.1:5432/$db"

data="$(mktemp -d)"
cleanup() {
  # start() runs in a command substitution, so the pids are kept in files.
  for pidfile in "$data"/*.pid; do
    [ -e "$pidfile" ] && kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 1
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $db" >/dev/null
key="$("$bin" keys create --principal bench --data-dir "$data" --database-url "$url" 2>/dev/null)"

start() {
  local out="$data/$1.out"
  "$bin" serve --bind 127.0.0.1:0 --data-dir "$data" --database-url "$url" >"$out" 2>"$data/$1.err" &
  echo "$!" >"$data/$1.pid"
  for _ in $(seq 1 100); do
    grep -q '^listening on ' "$out" 2>/dev/null && break
    sleep 0.1
  done
  sed -n 's/^listening on //p' "$out"
}
a="$(start a)"
b="$(start b)"
echo "instance A: $a  instance B: $b  database: $db  (nproc $(nproc), $(date -u +%FT%TZ))"

rate() { sed -n 's/.*(\([0-9]*\) 2xx\/s).*/\1/p' "$1"; }

one() {
  "$bench" run --target "$a" --api-key "$key" --scenario create-key -c 16 -d "${seconds}s" >"$data/one.txt"
  rate "$data/one.txt"
}
two() {
  "$bench" run --target "$a" --api-key "$key" --scenario create-key -c 8 -d "${seconds}s" >"$data/two-a.txt" &
  local first=$!
  "$bench" run --target "$b" --api-key "$key" --scenario create-key -c 8 -d "${seconds}s" >"$data/two-b.txt"
  wait "$first"
  echo $(($(rate "$data/two-a.txt") + $(rate "$data/two-b.txt")))
}

for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then
    single="$(one)"; double="$(two)"
  else
    double="$(two)"; single="$(one)"
  fi
  ratio="$(python3 -c "print(f'{$double/$single:.3f}')")"
  echo "round $round: one instance $single keyed creates/s, two instances $double/s, ratio $ratio"
done
identities="$(psql -At -h 127.0.0.1 -U postgres -d "$db" -c 'SELECT count(*) FROM identities')"
echo "identities in the shared database: $identities"
