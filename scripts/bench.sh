#!/usr/bin/env bash
# Throughput against openssl, cp and the Python ESDK, with the issue-3 targets and issue #12's goals: the bench
# harness's `throughput` (examples/bench.rs; its --list names the variables, e.g. BENCH_MIB=64 for a quick check).
#   scripts/bench.sh [--quick] [--by-frame]    --quick: 256 MiB, no 4 GiB RSS run, no Python decrypt;
#                                              --by-frame: then benches/throughput.rs (by frame length and
#                                              thread count) for both backends (--criterion: the old name)
for arg in "$@"; do
  case "$arg" in
    --quick) export BENCH_QUICK=1 ;;
    --by-frame | --criterion) export BENCH_BY_FRAME=1 ;;
    *) echo "bench.sh: unknown option '$arg' (--quick, --by-frame)" >&2; exit 2 ;;
  esac
done
exec cargo run -q --manifest-path "$(dirname "$0")/../Cargo.toml" --no-default-features --example bench -- throughput
