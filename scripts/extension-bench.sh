#!/usr/bin/env bash
# Cold start of the Lambda extension on a [MiB] (default 100) bundle, from the bench harness (examples/bench.rs; its --list names the variables).
[[ $# -gt 0 ]] && export BENCH_MIB="$1"
exec cargo run -q --manifest-path "$(dirname "$0")/../Cargo.toml" --no-default-features --example bench -- extension
