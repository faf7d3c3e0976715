#!/usr/bin/env bash
# Sets up what is missing, then runs every test: host unit and property tests,
# and the QEMU lab tests (they need root for network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec cargo test --workspace --exclude pias-kernel --exclude pias-boot "$@"
