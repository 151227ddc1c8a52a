#!/usr/bin/env bash
# Installs the cargo tools the checks need (today cargo-semver-checks, for scripts/test.sh's semver stage)
# into a cache outside the repository, keyed by version, only when that version is missing there. A tool
# is a one-time cost per machine: the CI run and every later one reuse it, so its install is outside the
# run's stage budgets (scripts/test.sh prints it as a one-time stage of its own).
#
#   scripts/install-tools.sh            install what is missing, then print each tool's version
#   scripts/install-tools.sh --bin-dir  print the directory holding cargo-semver-checks (installs nothing)
#
# The cache: $KMS_ENVELOPE_TOOL_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/kms-envelope/tools; each tool in
# a directory named NAME-VERSION, so pinning a new version installs beside the old one.
#
# Built from crates.io's source (no prebuilt binary is fetched: this machine reaches package registries
# only), with `--locked` and the crate's release profile made cheap to build: no LTO, 16 codegen units,
# opt-level 1: cargo-semver-checks' own profile (fat LTO, one codegen unit) made an install take 44 min
# on this busy 2-core machine, and most of a check's time is rustdoc building both revisions, not the tool.
set -euo pipefail

# Pinned: a version reads the rustdoc JSON format of a range of toolchains (0.51 reads formats 57, 60 and
# 61; rustc 1.95 writes 57). Move it with the toolchain when `cargo semver-checks` says it cannot read the
# format.
CARGO_SEMVER_CHECKS_VERSION=0.51.0

CACHE="${KMS_ENVELOPE_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kms-envelope/tools}"
SEMVER_ROOT="$CACHE/cargo-semver-checks-$CARGO_SEMVER_CHECKS_VERSION"

case "${1:-}" in
  --bin-dir) echo "$SEMVER_ROOT/bin"; exit 0 ;;
  "") ;;
  -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "install-tools.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

# Whether the cached binary is there and is the pinned version (a half-written one is not).
installed() {
  [[ -x "$SEMVER_ROOT/bin/cargo-semver-checks" ]] &&
    [[ "$("$SEMVER_ROOT/bin/cargo-semver-checks" semver-checks --version 2>/dev/null)" == *" $CARGO_SEMVER_CHECKS_VERSION" ]]
}

if installed; then
  echo "cargo-semver-checks $CARGO_SEMVER_CHECKS_VERSION: cached in $SEMVER_ROOT"
  exit 0
fi

echo "cargo-semver-checks $CARGO_SEMVER_CHECKS_VERSION: installing into $SEMVER_ROOT (one-time; a busy 2-core machine takes tens of minutes)"
mkdir -p "$CACHE"
# One install at a time per cache: a second caller waits, then finds the tool installed.
exec 9>"$CACHE/.install.lock"
flock 9
if ! installed; then
  # The build directory is kept beside the cache until the install succeeds, so that an interrupted install
  # resumes where it stopped; the caller's CARGO_TARGET_DIR is not used (nothing of it would be shared).
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_INCREMENTAL=false \
    cargo install --locked "cargo-semver-checks@$CARGO_SEMVER_CHECKS_VERSION" --root "$SEMVER_ROOT" \
    --target-dir "$CACHE/build"
  rm -rf "$CACHE/build"
  installed || { echo "install-tools.sh: cargo-semver-checks installed but does not report $CARGO_SEMVER_CHECKS_VERSION" >&2; exit 1; }
fi
echo "cargo-semver-checks $CARGO_SEMVER_CHECKS_VERSION: installed in $SEMVER_ROOT"
