#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one after another, each for a bounded time.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 300 s each, every target)
#
# Needs `cargo install cargo-fuzz`. On a stable toolchain, RUSTC_BOOTSTRAP=1 lets
# cargo-fuzz pass its nightly-only flags (-Zsanitizer=address). Each target starts
# from fuzz/seeds/<target> (committed) and grows fuzz/corpus/<target> (ignored);
# a crash leaves its input in fuzz/artifacts/<target>/ and makes this script fail.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-300}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(idempotency_key canonical_json fingerprint verify_documents)
fi

export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
cargo fuzz build

status=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  dict=()
  case "$target" in
    canonical_json | verify_documents) dict=(-dict=dicts/json.dict) ;;
  esac
  echo "== $target: ${seconds}s"
  if ! cargo fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
      -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}"; then
    echo "!! $target failed: see fuzz/artifacts/$target/" >&2
    status=1
  fi
done
exit "$status"
