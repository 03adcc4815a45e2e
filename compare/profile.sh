#!/usr/bin/env bash
# Instructions per request of each scenario of src/bin/profile.rs, counted
# by callgrind (independent of the machine's load) in its measured loop only.
#
#   compare/profile.sh [n] [scenario...]
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(cd .. && pwd)/target}"
n="${1:-20000}"
shift || true
scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  scenarios=(inner bearer-tower-http bearer-tower-http-equal bearer-ours 401-tower-http 401-tower-http-equal 401-ours api-key-generated
    api-key-opaque rate-inner rate-governor-1 rate-ours-1 rate-governor-100k rate-ours-100k)
fi
cargo build --release --quiet --bin profile
bin="$CARGO_TARGET_DIR/release/profile"
out="$(mktemp -d)"
for s in "${scenarios[@]}"; do
  total="$(valgrind --tool=callgrind --toggle-collect='profile::measured*' \
    --callgrind-out-file="$out/cg.$s" "$bin" "$s" "$n" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p')"
  echo "$s: $(( total / n )) instructions per request"
done
echo "callgrind files: $out (callgrind_annotate --inclusive=yes FILE)"
