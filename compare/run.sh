#!/usr/bin/env bash
# Runs the side-by-side comparison: the criterion benches of our layers and
# the peers' (one run, so every ratio is measured side by side), then the
# loopback HTTP stack test. Builds into the root crate's target/ to share
# its compiled dependencies.
#
#   compare/run.sh [criterion filter]
#
# Environment: CONNECTIONS (32), STACK_SECONDS (2), ROUNDS (3) for the stack test;
# SKIP_STACK=1 or SKIP_BENCHES=1 to run one half only.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(cd .. && pwd)/target}"

date -u +"%Y-%m-%d %H:%M UTC"
uptime
if [ "${SKIP_BENCHES:-}" != "1" ]; then
  cargo bench --bench peers -- --warm-up-time 1 --measurement-time 3 ${1:+"$1"}
fi
if [ "${SKIP_STACK:-}" != "1" ]; then
  cargo run --release --quiet --bin stack -- "${CONNECTIONS:-32}" "${STACK_SECONDS:-2}" "${ROUNDS:-3}"
fi
