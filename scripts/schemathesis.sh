#!/usr/bin/env bash
# Schema fuzzing: builds `attestix`, serves it on a fresh data directory and a free
# loopback port, and runs Schemathesis against its /openapi.json with an API key.
#
#   scripts/schemathesis.sh            full run: up to 100 examples per operation and
#                                      phase, about 2,300 cases, about 2 minutes
#   scripts/schemathesis.sh --short    CI run: 8 examples per operation (examples and
#                                      fuzzing phases), about 120 cases, about 10 s
#   scripts/schemathesis.sh [--short] -- EXTRA SCHEMATHESIS ARGS
#
# Checks: no 5xx (not_a_server_error), and every response as documented
# (status_code_conformance, content_type_conformance, response_schema_conformance).
# Exits non-zero on any failure. The seed is printed; SCHEMATHESIS_SEED=N replays
# a run's choices. The server's log, Schemathesis' JUnit report and its cache (for
# `st replay ID`, run from that directory) are kept in $ATTESTIX_ST_OUT (default
# $CARGO_TARGET_DIR/schemathesis, else target/schemathesis).
#
# Needs Python 3 with `schemathesis` 4.x (installed with pip when missing) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
if [ "${1:-}" = "--short" ]; then
  mode=short
  shift
fi
if [ "${1:-}" = "--" ]; then
  shift
fi

if ! command -v schemathesis >/dev/null 2>&1 ||
  ! schemathesis --version 2>/dev/null | grep -q 'version 4\.'; then
  echo "installing schemathesis 4.x from PyPI" >&2
  python3 -m pip install --quiet 'schemathesis>=4.1,<5'
fi

target_dir="${CARGO_TARGET_DIR:-target}"
out="${ATTESTIX_ST_OUT:-$target_dir/schemathesis}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cargo build --quiet -p attestix
bin="$target_dir/debug/attestix"

data="$(mktemp -d)"
server_pid=""
chain_pid=""
cleanup() {
  if [ -n "$chain_pid" ]; then
    kill -TERM "$chain_pid" 2>/dev/null || true
  fi
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$data"
}
trap cleanup EXIT

# A key made before the first start, so the server prints no admin key of its own.
api_key="$("$bin" keys create --principal schemathesis --data-dir "$data" 2>/dev/null)"

# The anchoring operations answer 503 by contract on a server without a chain, so the
# server is pointed at a local ganache with EAS deployed (tests/evm, `npm ci` there):
# the fuzzed anchors are real transactions. Without the npm packages (outside CI) the
# blockchain operations are left out instead, and the script says so.
chain_dir=crates/attestix-server/tests/evm
anchor_args=()
skip_paths='^/v1/(agent-cards/discover|dids/resolve/)'
if [ -f "$chain_dir/node_modules/ganache/dist/node/cli.js" ]; then
  chain_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  server_key=0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d
  deployer_key=0x6cbed15c793ce57650b9877cf6fa156fbef513c4e6134f022a85b1ffdd59b2a1
  node "$chain_dir/node_modules/ganache/dist/node/cli.js" --server.host 127.0.0.1 \
    --server.port "$chain_port" --chain.chainId 1337 \
    --wallet.accounts "$server_key,0x3635C9ADC5DEA00000" \
    --wallet.accounts "$deployer_key,0x3635C9ADC5DEA00000" \
    --logging.quiet true >"$out/chain.log" 2>&1 &
  chain_pid=$!
  rpc="http://127.0.0.1:$chain_port"
  contracts=""
  for _ in $(seq 1 600); do
    contracts="$(scripts/evm-test-chain.py "$rpc" 2>/dev/null)" && break
    kill -0 "$chain_pid" 2>/dev/null || {
      echo "ganache exited; see $out/chain.log" >&2
      exit 1
    }
    sleep 0.1
  done
  [ -n "$contracts" ] || {
    echo "could not deploy EAS on ganache at $rpc" >&2
    exit 1
  }
  read -r registry eas <<<"$contracts"
  printf '%s\n' "$server_key" >"$data/wallet.key"
  chmod 600 "$data/wallet.key"
  anchor_args=(--evm-network custom --evm-rpc-url "$rpc" --evm-chain-id 1337
    --evm-eas-address "$eas" --evm-schema-registry-address "$registry"
    --evm-private-key-file "$data/wallet.key" --evm-receipt-timeout 20s)
  echo "ganache at $rpc (pid $chain_pid): EAS $eas, SchemaRegistry $registry"
elif [ -n "${CI:-}" ]; then
  echo "CI is set but $chain_dir/node_modules is missing: run \`npm ci\` there" >&2
  exit 1
else
  echo "no local EVM chain ($chain_dir/node_modules is missing): /v1/blockchain is not fuzzed" >&2
  skip_paths='^/v1/(agent-cards/discover|dids/resolve/|blockchain/)'
fi

RUST_LOG="${RUST_LOG:-warn}" "$bin" serve --bind 127.0.0.1:0 --data-dir "$data" \
  "${anchor_args[@]}" >"$data/stdout" 2>"$out/server.log" &
server_pid=$!
base=""
for _ in $(seq 1 100); do
  base="$(sed -n 's/^listening on //p' "$data/stdout")"
  [ -n "$base" ] && break
  kill -0 "$server_pid" 2>/dev/null || {
    echo "the server exited; see $out/server.log" >&2
    exit 1
  }
  sleep 0.1
done
[ -n "$base" ] || {
  echo "the server did not start within 10 s" >&2
  exit 1
}
echo "server at $base (pid $server_pid), data in $data"

# A few real resources, so that operations on ids reach their handlers instead of
# answering 404 to every generated id.
post() {
  curl --silent --show-error --fail-with-body --max-time 10 \
    -H "X-API-Key: $api_key" -H 'Content-Type: application/json' \
    -X POST "$base$1" -d "$2"
}
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
agents=()
credentials=()
for name in "Schema Bot A" "Schema Bot B" "Schema Bot C"; do
  agent="$(post /v1/identities "{\"display_name\":\"$name\",\"source_protocol\":\"mcp\"}" | field agent_id)"
  agents+=("$agent")
  credentials+=("$(post /v1/credentials "{\"subject_id\":\"$agent\",\"credential_type\":\"SchemaCredential\",\"issuer_name\":\"Schemathesis\",\"claims\":{\"role\":\"tester\"}}" | field id)")
done
toml_list() {
  local sep="" item
  printf '['
  for item in "$@"; do
    printf '%s"%s"' "$sep" "$item"
    sep=", "
  done
  printf ']'
}
config="$data/schemathesis.toml"
cat >"$config" <<EOF
# Generated by scripts/schemathesis.sh: real ids, used for half the generated values.
[dictionaries]
agents = { values = $(toml_list "${agents[@]}") }
credentials = { values = $(toml_list "${credentials[@]}") }

[parameters]
"path.agent_id" = { dictionary = "agents", probability = 0.5 }
"path.credential_id" = { dictionary = "credentials", probability = 0.5 }
"query.agent_id" = { dictionary = "agents", probability = 0.5 }
"body.subject_id" = { dictionary = "agents", probability = 0.5 }
"body.agent_id" = { dictionary = "agents", probability = 0.5 }
"body.credential_ids[*]" = { dictionary = "credentials", probability = 0.5 }
EOF

case "$mode" in
  full) limits=(--max-examples 100) ;;
  short) limits=(--max-examples 8 --phases examples,fuzzing) ;;
esac
seed=()
[ -n "${SCHEMATHESIS_SEED:-}" ] && seed=(--seed "$SCHEMATHESIS_SEED")

status=0
# Run from $out, where Schemathesis keeps its cache (.schemathesis/): `st replay ID`
# works from there, and the repository stays clean.
# Operations that fetch from a host the request names (agent-card discovery, DID
# resolution) answer 502/504 by contract when that host cannot be reached, which is
# every generated host in a sandbox without network: their tests live in
# crates/attestix-server/tests (fetch.rs, a local HTTPS server with a test CA).
(cd "$out" && schemathesis --no-color --config-file "$config" run "$base/openapi.json" \
  --header "X-API-Key: $api_key" \
  --exclude-path-regex "$skip_paths" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --mode all \
  --workers 1 \
  --request-timeout 30 \
  --generation-database none \
  --report junit --report-junit-path "$out/junit-$mode.xml" \
  "${limits[@]}" "${seed[@]}" "$@") || status=$?

if ! curl --silent --fail --max-time 5 "$base/health" >/dev/null; then
  echo "the server is not healthy after the run; see $out/server.log" >&2
  status=1
fi
if grep -q 'panicked' "$out/server.log"; then
  echo "the server panicked during the run; see $out/server.log" >&2
  status=1
fi
exit "$status"
