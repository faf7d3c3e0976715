#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 20) on the nightly toolchain.
# Installs cargo-fuzz if missing. A crash fails the script and leaves the input
# under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-20}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in $(cargo +nightly fuzz list); do
  echo "fuzz: $t for ${secs}s"
  cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 3
  test "${PIPESTATUS[0]}" -eq 0
done
