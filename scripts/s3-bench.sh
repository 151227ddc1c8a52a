#!/usr/bin/env bash
# Issue #13's S3 goals through moto, from the bench harness (examples/bench.rs; its --list names the variables).
exec cargo run -q --manifest-path "$(dirname "$0")/../Cargo.toml" --no-default-features --example bench -- s3 "$@"
