#!/usr/bin/env bash
# Mutation testing (cargo-mutants) of the security- and correctness-critical
# modules: plants one small bug at a time and runs the crate's tests; a mutant
# they do not notice ("missed") is a place where the tests do not bite.
#
#   scripts/mutants.sh            every listed module (about an hour here)
#   scripts/mutants.sh --smoke    the replay windows and the frame classifier
#                                 (CI; a few minutes), failing on any miss
#   scripts/mutants.sh --iterate  re-test only what the last run did not catch
#
# Further arguments go to cargo-mutants (say `-j 2`); PIAS_MUTANTS_JOBS
# (say "pias pias-net") limits the run to those jobs (listed below).
# Accepted survivors (equivalent mutants) are excluded by .cargo/mutants.toml,
# each with its reason; docs/mutants.md has the figures. Results land in
# out/mutants/<job>/mutants.out/ (caught.txt, missed.txt, timeout.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo mutants --version >/dev/null 2>&1; then
  cargo install cargo-mutants --locked
fi

mode=full
extra=()
case "${1:-}" in
  --smoke) mode=smoke && shift ;;
  --iterate) extra+=(--iterate) && shift ;;
  -h | --help)
    echo "usage: $0 [--smoke | --iterate] [cargo-mutants arguments]" >&2
    exit 2
    ;;
esac
extra+=("$@")

# Jobs: name, the package whose files are mutated, the packages whose tests
# must catch them, and the files. The proxy core's RAP and report logic is
# exercised by the simulator's scenarios (pias-sim) as much as by pias's own
# unit tests, so those mutants face both.
jobs=()
if [ "$mode" = smoke ]; then
  jobs+=("replay|pias|pias|pias/src/replay.rs")
  jobs+=("classifier|pias-net|pias-net|net/src/classify.rs")
else
  jobs+=("pias|pias|pias|pias/src/wire/mod.rs pias/src/wire/message.rs pias/src/replay.rs pias/src/ring.rs pias/src/blob.rs pias/src/mgmt.rs pias/src/keys.rs")
  jobs+=("pias-tables|pias|pias|pias/src/fixed.rs pias/src/pool.rs")
  jobs+=("pias-core|pias|pias,pias-sim|pias/src/proxy/reports.rs pias/src/proxy/rap.rs")
  jobs+=("pias-net|pias-net|pias-net|net/src/classify.rs net/src/dataplane/mod.rs net/src/dataplane/ingress.rs net/src/dataplane/egress.rs net/src/dataplane/nat.rs net/src/dataplane/packet.rs net/src/dataplane/arp.rs net/src/idle.rs")
  jobs+=("pias-bgp|pias-bgp|pias-bgp|bgp/src/wire/mod.rs bgp/src/wire/open.rs bgp/src/wire/update.rs bgp/src/wire/error.rs bgp/src/session.rs bgp/src/announce.rs bgp/src/bfd.rs")
fi

status=0
summary=()
for job in "${jobs[@]}"; do
  IFS='|' read -r name pkg tests files <<<"$job"
  if [ -n "${PIAS_MUTANTS_JOBS:-}" ] && ! [[ " $PIAS_MUTANTS_JOBS " == *" $name "* ]]; then
    continue
  fi
  mkdir -p "out/mutants/$name"
  args=(-p "$pkg" --timeout 60 -o "out/mutants/$name" "${extra[@]}")
  for t in ${tests//,/ }; do
    args+=(--test-package "$t")
  done
  for f in $files; do
    args+=(-f "$f")
  done
  # cargo-mutants exits 2 when mutants were missed, 3 on timeouts: report
  # those below; anything else (a broken baseline, say) is a failure here.
  set +e
  cargo mutants "${args[@]}"
  rc=$?
  set -e
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ] && [ "$rc" -ne 3 ]; then
    echo "cargo mutants failed for $name (exit $rc)" >&2
    exit "$rc"
  fi
  out="out/mutants/$name/mutants.out"
  for f in $files; do
    count() { grep -c "^$f:" "$out/$1.txt" 2>/dev/null || true; }
    summary+=("$(printf '%-32s caught %4s  missed %4s  timeout %3s  unviable %3s' \
      "$f" "$(count caught)" "$(count missed)" "$(count timeout)" "$(count unviable)")")
  done
  if [ -s "$out/missed.txt" ]; then
    status=1
  fi
done

echo
echo "mutants per module (missed ones are in out/mutants/<job>/mutants.out/missed.txt):"
printf '  %s\n' "${summary[@]}"
if [ "$mode" = smoke ] && [ "$status" -ne 0 ]; then
  echo "mutation smoke: a mutant survived (see above); add a test that catches it" >&2
  exit 1
fi
