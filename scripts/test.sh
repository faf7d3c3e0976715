#!/usr/bin/env bash
# Sets up what is missing, checks formatting and lints (rustfmt; clippy with
# warnings denied, for the host crates and for the kernel on its own target),
# then runs every test: a short fuzzing pass over each decoder (nightly,
# cargo-fuzz), a mutation smoke (cargo-mutants), the host unit and property
# tests, and the QEMU lab tests (they need root for network namespaces). Ends
# with one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
cargo fmt --all --check
cargo clippy --workspace --exclude pias-kernel --all-targets -- -D warnings
cargo kernel-clippy -- -D warnings
bash scripts/fuzz.sh "${PIAS_FUZZ_SECONDS:-6}"
# Mutation smoke (cargo-mutants): every planted bug in the replay windows and
# the frame classifier must be caught; the full run is scripts/mutants.sh.
bash scripts/mutants.sh --smoke
log="$(mktemp)"
skips="$(mktemp)"
trap 'rm -f "$log" "$skips"' EXIT
set +e
PIAS_SKIP_LOG="$skips" cargo test --workspace --exclude pias-kernel "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -oE '^test result: .*' "$log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '^test result: .*' "$log" | grep -oE '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
skipped=$(wc -l <"$skips")
echo "tests: $passed passed, $failed failed, $skipped skipped (counted among the passed)"
if [ "$skipped" -gt 0 ]; then
  sed 's/^/  skipped: /' "$skips"
fi
exit "$status"
