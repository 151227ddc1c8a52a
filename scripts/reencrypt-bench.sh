#!/usr/bin/env bash
# Issue #26's re-encryption goal lines, from the bench harness (examples/bench.rs; its --list names the variables).
exec cargo run -q --manifest-path "$(dirname "$0")/../Cargo.toml" --no-default-features --example bench -- reencrypt "$@"
