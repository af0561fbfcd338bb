#!/usr/bin/env bash
# The production build with profile-guided optimisation (PGO): an instrumented production
# build serves the overhead bench's workloads (chat, streams passed through and translated,
# Responses, limits on), its profile is merged, and the production build is made again with
# it. The result is target/pgo/<host triple>/production/llm-gateway (x86_64-unknown-linux-gnu
# on x86-64 Linux); README "Performance" has what it changes and how it was measured.
#
# Run: benches/pgo.sh            (~15-25 minutes on 2 cores: two LTO builds and a few minutes of load)
# Needs llvm-profdata of the LLVM that rustc uses (`rustc -vV`, "LLVM version"): on Debian
# `apt-get install llvm-<major>` (llvm-22 for rustc 1.95), or rustup's `llvm-tools` component.
# The profile is made fresh each run, never committed: it is only valid for the compiler and
# the source it was made with.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
triple=$(rustc -vV | sed -n 's/^host: //p')
major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
profdata=""
for c in "llvm-profdata-$major" "$(rustc --print sysroot)/lib/rustlib/$triple/bin/llvm-profdata" llvm-profdata; do
  if command -v "$c" >/dev/null 2>&1 && "$c" --version 2>/dev/null | grep -q "LLVM version $major\."; then
    profdata=$c
    break
  fi
done
[ -n "$profdata" ] || { echo "no llvm-profdata for LLVM $major: apt-get install llvm-$major" >&2; exit 1; }

raw=$here/target/pgo-raw
rm -rf "$raw"
mkdir -p "$raw"
# `--target` keeps the flags off build scripts and proc macros (they would profile themselves).
RUSTFLAGS="-Cprofile-generate=$raw" cargo build --locked --profile production --target "$triple" \
  --target-dir target/pgo-gen
cargo bench --locked --bench overhead --no-run
bench=$(ls -t target/release/deps/overhead-* | grep -v '\.d$' | head -1)
gen=target/pgo-gen/$triple/production/llm-gateway
for scenario in chat stream anthropic-stream responses-stream; do
  LLVM_PROFILE_FILE="$raw/%p-%m.profraw" "$bench" --scenario "$scenario" --duration 8 --gateway-bin "$gen" --bench
done
LLVM_PROFILE_FILE="$raw/%p-%m.profraw" "$bench" --scenario chat --duration 8 --limits --rounds 1 --gateway-bin "$gen" --bench
ls "$raw"/*.profraw >/dev/null 2>&1 || { echo "the instrumented gateway wrote no profile" >&2; exit 1; }
"$profdata" merge -o "$here/target/pgo.profdata" "$raw"
RUSTFLAGS="-Cprofile-use=$here/target/pgo.profdata" cargo build --locked --profile production \
  --target "$triple" --target-dir target/pgo
echo "PGO build: target/pgo/$triple/production/llm-gateway"
