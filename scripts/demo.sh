#!/usr/bin/env bash
# Sets up what is missing, then brings up the three-POP lab: one PIAS
# appliance per POP, dnsmasq and nginx joined to their anycast groups by the
# target agent, and unmodified dig and curl answered through 203.0.113.10 from
# every POP. The lab stays up until Ctrl-C; with --once it checks every answer,
# removes the lab and exits 0 (all passed) or 1. Needs root (namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec cargo run --release -q -p pias-qemu -- demo "$@"
