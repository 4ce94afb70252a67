#!/usr/bin/env bash
# Runs every cargo-fuzz target under proxy/fuzz for a few seconds each
# (default 20). libFuzzer needs a nightly toolchain; without one the run is
# skipped with a message (the same inputs also run as bounded proptests in
# `cargo test`).
set -euo pipefail
cd "$(dirname "$0")/../proxy/fuzz"
seconds=${1:-20}
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz: skipped, no nightly toolchain on this machine"
    exit 0
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install --quiet --locked cargo-fuzz
fi
for target in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$target"
    seeds=()
    [ -d "seeds/$target" ] && seeds=("seeds/$target")
    echo "fuzz: $target for ${seconds}s"
    cargo +nightly fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -max_len=8192 -print_final_stats=0 2>&1 | tail -3
done
