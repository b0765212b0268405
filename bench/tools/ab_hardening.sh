#!/usr/bin/env bash
# Back to back, alternating: the transfer and balance scenarios on two checkouts
# (each with its own `uv sync`), ROUNDS times (default 2). Usage: [ONLY=s1_transfer,...] [ROUNDS=n] ab_hardening.sh BEFORE_DIR AFTER_DIR [OUT]
# docs/performance.md, "The cost of the hardening", was measured with it.
set -u
before=$1 after=$2 out=${3:-/tmp/ab}
ONLY=${ONLY:-s1_transfer,s5_balance}
OPTS="--quick --no-scale --seconds 8 --wait-idle 20 --only $ONLY"
for round in $(seq 1 "${ROUNDS:-2}"); do
  for dir in "$before" "$after"; do
    echo "=== round $round $(git -C "$dir" rev-parse --short HEAD) $(date +%T)"
    (cd "$dir" && timeout 600 uv run python -m bench $OPTS --out "$out/$round-$(basename "$dir")")
  done
done
