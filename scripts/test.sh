#!/usr/bin/env bash
# Sets up what is missing, then runs every test: a short fuzzing pass over each
# decoder (nightly, cargo-fuzz), the host unit and property tests, and the QEMU
# lab tests (they need root for network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/fuzz.sh "${PIAS_FUZZ_SECONDS:-10}"
exec cargo test --workspace --exclude pias-kernel --exclude pias-boot "$@"
