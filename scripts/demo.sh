#!/usr/bin/env bash
# Sets up what is missing, then boots one appliance with the embedded default
# config in a lab namespace, pings it and prints its status. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec cargo run --release -q -p pias-qemu -- demo "$@"
