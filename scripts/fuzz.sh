#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 20) on the nightly toolchain.
# Installs cargo-fuzz if missing. A crash fails the script and leaves the input
# under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-20}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# Build every target first: a target that no longer compiles is a build error,
# not a crash with a saved input.
cargo +nightly fuzz build
for t in $(cargo +nightly fuzz list); do
  echo "fuzz: $t for ${secs}s"
  log="$(mktemp)"
  if ! cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: $t FAILED (input saved under fuzz/artifacts/$t)"
    exit 1
  fi
  grep -E '^Done' "$log" || true
  rm -f "$log"
done
