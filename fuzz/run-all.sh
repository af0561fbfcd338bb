#!/bin/sh
# Run every fuzz target, one after the other, each for $SECS seconds (default 600), niced,
# with bounded memory and input size. Seeds come from fuzz/seed.py; crashes land in
# fuzz/artifacts/<target>/. A summary line per target goes to $OUT/summary.txt.
#   sh fuzz/run-all.sh [target ...]
set -u
cd "$(dirname "$0")"
SECS=${SECS:-600}
OUT=${OUT:-/tmp/llm-gateway-fuzz}
mkdir -p "$OUT"
python3 seed.py > /dev/null
cargo +nightly fuzz build -s none || exit 1
BIN=target/x86_64-unknown-linux-gnu/release
TARGETS=${*:-$(ls fuzz_targets | sed 's/\.rs$//')}
for t in $TARGETS; do
    mkdir -p "artifacts/$t"
    nice -n 19 "$BIN/$t" "corpus/$t" -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=65536 \
        -timeout=10 -print_final_stats=1 -artifact_prefix="artifacts/$t/" > "$OUT/$t.log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$OUT/$t.log" | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]*' "$OUT/$t.log" | tail -1)
    echo "$t exit=$rc execs=${runs:-?} $cov corpus=$(ls "corpus/$t" | wc -l)" >> "$OUT/summary.txt"
done
