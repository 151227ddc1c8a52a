#!/usr/bin/env bash
# The one command that runs every check of kms-envelope, on a fresh machine as on a developer's.
#
#   scripts/test.sh                  lint, then the tests for every feature set below
#   scripts/test.sh --no-lint        tests only (quick local loop)
#   scripts/test.sh --lint-only      lint only (no venv, no moto)
#   scripts/test.sh --no-fuzz        skip the bounded fuzzing stage (scripts/fuzz.sh, ~2 min cold)
#   scripts/test.sh [...] -- ARGS    pass ARGS to every `cargo test` (e.g. `-- interop` to filter)
#
# The tests need peers that cargo can't provide: the official Python ESDK as an interop oracle and moto as
# a local KMS. This script installs them into .venv/, starts moto on a free loopback port, and exports
# where to find both (see tests/peers/README.md). Every missing peer is a hard failure, here and in CI:
# a test suite that silently skips its interop half would look green and prove nothing.
set -euo pipefail

# Feature sets `cargo test` runs over, one per line: the full build (AES-GCM through AWS-LC, which `kms` and
# `rsa` turn on), and the raw-key-only builds that must compile and pass without the AWS SDK, on RustCrypto
# `aes-gcm` (with and without the CLI), so that both backends stay tested.
# Not --all-features: `fips` builds AWS-LC's FIPS module, which needs CMake and Go on the machine.
FULL_FEATURES="cli,kms,lambda,s3,async,rsa,extension,batch,hierarchy-ddb"
# Every set adds `fuzzing`, which makes the format's internals public for the tests that build messages by
# hand (tests/suite/handmade.rs) and the doc examples on those internals; clippy and doc below run without it, as
# a user builds.
FEATURE_SETS=(
  "--features $FULL_FEATURES,fuzzing"
  "--no-default-features --features cli,bundle,async,fuzzing"
  "--no-default-features --features fuzzing"
)
# The integration tests are few binaries, each linked once per set (most link the AWS SDK): tests/suite/ (a
# module per suite, every set), tests/full_set_only/ (below), and the tests with a global allocator of their
# own (tests/freed_memory*.rs, tests/cache_freed_memory.rs), and those that measure a child's peak RSS
# (tests/memory.rs, tests/hostile_kms.rs: a child forked from the large suite process counts its resident
# set in its own peak). A new suite is a module of one of the two
# grouped binaries, not a new file in tests/.
# Suites whose outcome does not depend on the feature set (oracles outside this crate, run through code that
# every set compiles the same way) are modules of tests/full_set_only/: run once, in the full set (the first
# above). The other sets still build the library and the CLI and run the unit tests (the AES-GCM known
# answer included, on RustCrypto) and every other test binary, so what a feature switches is covered where
# it is switched. `vectors` and `interop_python` run in every set (tests/suite/): they are the outside
# oracles for each AES-GCM backend (RustCrypto in the raw-key sets).
FULL_SET_ONLY_TESTS=(full_set_only)

# Budgets, in seconds of wall time, for a cold run on this 2-core machine (issue #30: a cold CI run <= 20 min;
# CI allows 90). They sum to less than 20 min (1200 s). The closing summary prints each stage's time beside
# its budget and flags a stage over it; a change that pushes a stage past its budget must make room elsewhere.
declare -A BUDGET=(
  [lint]=225            # fmt, clippy x3, doc, the fuzz crate's lint (mostly clippy's check of the dependencies)
  [semver]=20           # rustdoc JSON of the crate at SEMVER_BASELINE_REV and now (dependencies checked by lint), the check
  [moto]=5              # moto start
  [fuzz]=155            # the fuzz crate's tests and build + 9 targets x 10 s, two at a time, + replay
  [full-build]=240      # cargo test --no-run, full set (build scripts and proc macros already built by clippy)
  [full-tests]=360      # its tests, with the other sets' builds and the README snippets in the background
  [background-wait]=45  # what of the background work outlasts the full set's tests
  [raw-cli]=55          # cargo test, raw keys + CLI (RustCrypto, crate at opt-level 1), built in the background
  [no-default]=80       # cargo test, --no-default-features (crate at opt-level 0), built in the background
)
# The BUDGET key of each entry of FEATURE_SETS, in order.
SET_BUDGETS=(full-tests raw-cli no-default)

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO"

run_lint=1
run_tests=1
run_fuzz=1
cargo_test_args=()
while (($#)); do
  case "$1" in
    --no-lint) run_lint=0 ;;
    --lint-only) run_tests=0 ;;
    --no-fuzz) run_fuzz=0 ;;
    --) shift; cargo_test_args=("$@"); break ;;
    -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

header() { printf '\n==== %s ====\n' "$*"; }
# Seconds since $1 (an $EPOCHREALTIME), for the timing lines that make slow CI runs easy to diagnose.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
die() { echo "test.sh: error: $*" >&2; exit 1; }
# Per-stage wall times, printed as each stage ends and again in the closing summary, beside the stage's
# budget (stage_time NAME START [BUDGET_KEY]); a stage over its budget is flagged in both places.
STAGES=()
OVER_BUDGET=()
stage_time() {
  local t budget="" flag=""
  t="$(since "$2")"
  if [[ -n "${3:-}" ]]; then
    budget="${BUDGET[$3]}"
    if awk -v t="$t" -v b="$budget" 'BEGIN { exit !(t > b) }'; then
      flag="  OVER BUDGET"
      OVER_BUDGET+=("$1 ($t s > $budget s)")
    fi
  fi
  STAGES+=("$(printf '  %-62s %8s s  %6s%s' "$1" "$t" "${budget:+/ $budget}" "$flag")")
  echo "stage time: $1: $t s${budget:+ (budget $budget s)}$flag"
}
RUN_START=$EPOCHREALTIME

# A CI run starts from a clean clone and builds everything once: incremental compilation only adds work
# there (its dependency graph and query cache are written and never read back). A developer's run keeps it.
[[ "${CI:-}" == true ]] && export CARGO_INCREMENTAL=0

# ------------------------------------------------------------------------------------- prerequisites
# Everything this run needs that it cannot install itself, checked in its first seconds, so that nothing
# fails twenty minutes in for a reason that was knowable at the start. All problems are listed at once.
check_prerequisites() {
  local problems=() want have cmd free_kb need_kb
  want="$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml)"
  if ! have="$(rustc --version 2>/dev/null | awk '{print $2}')" || [[ -z "$have" ]]; then
    problems+=("no Rust toolchain (rustc) on PATH: install one with rustup, version $want or later")
  elif [[ "$(printf '%s\n%s\n' "$want" "${have%%-*}" | sort -V | head -1)" != "$want" ]]; then
    problems+=("rustc $have is older than the crate's rust-version $want: rustup update")
  fi
  if ((run_lint)); then
    cargo fmt --version >/dev/null 2>&1 || problems+=("cargo fmt is missing: rustup component add rustfmt")
    cargo clippy --version >/dev/null 2>&1 || problems+=("cargo clippy is missing: rustup component add clippy")
  fi
  # AWS-LC (the full feature set) is C and assembly built by the cc crate; it looks for `cc` unless CC is set.
  cmd="${CC:-cc}"
  command -v "$cmd" >/dev/null 2>&1 || problems+=("no C compiler ($cmd) for AWS-LC: install gcc or clang (e.g. apt-get install build-essential), or set CC")
  if ((run_tests)); then
    if ! command -v "$BASE_PY" >/dev/null 2>&1; then
      problems+=("no $BASE_PY for the test peers: install Python 3.9 or later (or set KMS_ENVELOPE_BASE_PYTHON)")
    elif ! "$BASE_PY" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
      problems+=("$BASE_PY cannot build a venv with pip (needs Python >= 3.9 with venv and ensurepip; on Debian: apt-get install python3-venv)")
    fi
    for cmd in curl flock sha256sum; do
      command -v "$cmd" >/dev/null 2>&1 || problems+=("$cmd is missing (moto's start-up check and the venv stamps use it)")
    done
  fi
  # A cold run fills about 20 GB (three feature sets' test builds, the lint builds, the fuzz crate); a warm
  # one needs room only for what changed. KMS_ENVELOPE_MIN_FREE_GB overrides the figure.
  if [[ -d "${CARGO_TARGET_DIR:-$REPO/target}" ]]; then need_kb=$((5 * 1024 * 1024)); else need_kb=$((25 * 1024 * 1024)); fi
  [[ -z "${KMS_ENVELOPE_MIN_FREE_GB:-}" ]] || need_kb=$((KMS_ENVELOPE_MIN_FREE_GB * 1024 * 1024))
  mkdir -p "${CARGO_TARGET_DIR:-$REPO/target}" 2>/dev/null || true
  free_kb="$(df -Pk "${CARGO_TARGET_DIR:-$REPO/target}" 2>/dev/null | awk 'NR == 2 {print $4}')"
  if [[ -n "$free_kb" ]] && ((free_kb < need_kb)); then
    problems+=("$((free_kb / 1024 / 1024)) GB free for the target directory, $((need_kb / 1024 / 1024)) GB needed (see the README's Prerequisites: CARGO_TARGET_DIR elsewhere, or KMS_ENVELOPE_MIN_FREE_GB)")
  fi
  [[ -f "$REPO/tests/vectors/raw-aes-index.tsv" ]] || problems+=("tests/vectors/ is missing or incomplete: a broken checkout")
  if ((${#problems[@]})); then
    echo "test.sh: cannot run; missing prerequisites:" >&2
    printf '  - %s\n' "${problems[@]}" >&2
    exit 1
  fi
  echo "prerequisites: rustc $have (>= $want), ${CC:-cc}, $BASE_PY, $((free_kb / 1024 / 1024)) GB free"
}
BASE_PY="${KMS_ENVELOPE_BASE_PYTHON:-python3}"
check_prerequisites

# zsh and fish, which the completion scripts' parse test runs (tests/suite/cli_parts/completions.rs; bash,
# git and groff are in the base image): installed from Debian's packages when missing and this run may
# (root with apt-get); otherwise that test says what is missing, and fails under CI=true.
install_test_shells() {
  local missing=() sh
  for sh in zsh fish; do command -v "$sh" >/dev/null 2>&1 || missing+=("$sh"); done
  ((${#missing[@]})) || return 0
  if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
    echo "installing ${missing[*]} for the completion tests (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
      >/dev/null 2>&1 || echo "test.sh: could not install ${missing[*]} (the completion test will say so)" >&2
  else
    echo "test.sh: ${missing[*]} missing and not installable here (not root with apt-get): the completion test will say so" >&2
  fi
}
((run_tests)) && install_test_shells

# ---------------------------------------------------------------------------------------------- tools
# The cargo tools lint needs (cargo-semver-checks), from a cache outside the repository, installed only
# when missing (scripts/install-tools.sh): a one-time cost per machine, so its time is printed but kept
# out of the run's total and of every budget. Failing to install fails the run.
if ((run_lint)); then
  t0=$EPOCHREALTIME
  header "tools: scripts/install-tools.sh (one-time; outside the budgets)"
  scripts/install-tools.sh || die "scripts/install-tools.sh failed: the semver stage needs cargo-semver-checks"
  stage_time "tools (one-time install, not in the total)" "$t0"
  RUN_START=$(awk -v a="$RUN_START" -v b="$t0" -v c="$EPOCHREALTIME" 'BEGIN { printf "%.6f", a + (c - b) }')
fi

# ---------------------------------------------------------------------------------------------- lint
# Before the tests because it is cheap next to them and its failures are the commonest.
if ((run_lint)); then
  t0=$EPOCHREALTIME
  header "lint: cargo fmt --all -- --check"
  cargo fmt --all -- --check
  header "lint: cargo clippy --all-targets --features $FULL_FEATURES -- -D warnings"
  cargo clippy --all-targets --features "$FULL_FEATURES" -- -D warnings
  # With `fuzzing`, so that the targets that need the internals (tests/suite/handmade.rs, benches/small.rs) are
  # linted too; the full set above and the quickstart below lint the library as users build it.
  header "lint: cargo clippy (raw keys only, RustCrypto backend, fuzzing) -- -D warnings"
  cargo clippy --all-targets --no-default-features --features cli,bundle,async,fuzzing -- -D warnings
  header "lint: cargo clippy --no-default-features --features quickstart --bin quickstart -- -D warnings"
  # The README's first command builds this binary with only its own feature, which no other lint covers.
  cargo clippy --no-default-features --features quickstart --bin quickstart -- -D warnings
  # After clippy, whose builds hold most of the dependencies the snippets' crates check against.
  # With the tests, the README snippets are checked in the background while the full set's tests run
  # (see background_work below); with --lint-only, here.
  if ((!run_tests)); then
    header "lint: scripts/readme-snippets.sh (each README Rust block in a new crate with the dependencies it lists)"
    scripts/readme-snippets.sh
  fi
  header "lint: cargo doc --no-deps --features $FULL_FEATURES (RUSTDOCFLAGS=-Dwarnings)"
  RUSTDOCFLAGS=-Dwarnings cargo doc --no-deps --features "$FULL_FEATURES"
  header "lint: the fuzz crate (cargo fmt --check, cargo clippy --all-targets -D warnings)"
  (cd fuzz && cargo fmt -- --check && cargo clippy -q --all-targets -- -D warnings)
  stage_time "lint" "$t0" lint
  # The public API against SEMVER_BASELINE_REV, the git revision whose API was promised (the crate is
  # unpublished; move it forward when a version is released, or, before the first release, to the commit
  # that makes a deliberate break listed under "Breaking" in CHANGELOG.md; the promises: src/lib.rs, "API
  # promises").
  # The full feature set without `fuzzing`, which makes internals public outside the promises. A breaking
  # change fails the run.
  # cargo-semver-checks would build each revision's rustdoc JSON in a target directory of its own, checking
  # every dependency twice more (minutes); instead both JSON files come from `cargo doc` in this run's
  # target directory, where clippy's lint build already checked the dependencies with these features, so
  # only the crate itself is documented, once per revision. rustdoc's JSON output is unstable: a RUSTDOC
  # wrapper sets RUSTC_BOOTSTRAP for rustdoc alone, so that no dependency's fingerprint changes.
  SEMVER_BASELINE_REV=608e40293d85e0d2be123f35458a3d7f0b534e24
  t0=$EPOCHREALTIME
  header "semver: cargo semver-checks, rustdoc JSON of $SEMVER_BASELINE_REV and of this tree, --features $FULL_FEATURES"
  semver_dir="${CARGO_TARGET_DIR:-$REPO/target}/semver"
  rm -rf "$semver_dir"
  mkdir -p "$semver_dir/baseline"
  printf '#!/bin/sh\nRUSTC_BOOTSTRAP=1 exec rustdoc "$@"\n' >"$semver_dir/rustdoc"
  chmod +x "$semver_dir/rustdoc"
  git -C "$REPO" archive "$SEMVER_BASELINE_REV" | tar -x -C "$semver_dir/baseline" \
    || die "cannot read the semver baseline $SEMVER_BASELINE_REV (a shallow clone? fetch it)"
  # The baseline is documented with this tree's [profile.*] sections, which say nothing of the API: with its
  # own, a profile setting changed since (Cargo.toml's aws-lc-sys dev profile) would make every dependency
  # above it be checked again, and AWS-LC built again, for the baseline alone.
  awk '/^\[/ { in_profile = ($0 ~ /^\[profile[.]/) } !in_profile' "$semver_dir/baseline/Cargo.toml" >"$semver_dir/manifest"
  awk '/^\[/ { in_profile = ($0 ~ /^\[profile[.]/) } in_profile' "$REPO/Cargo.toml" >>"$semver_dir/manifest"
  mv "$semver_dir/manifest" "$semver_dir/baseline/Cargo.toml"
  for side in baseline current; do
    manifest="$REPO/Cargo.toml"
    [[ "$side" == current ]] || manifest="$semver_dir/baseline/Cargo.toml"
    RUSTDOC="$semver_dir/rustdoc" RUSTDOCFLAGS="-Z unstable-options --output-format json" \
      cargo doc -q --no-deps --manifest-path "$manifest" --features "$FULL_FEATURES" \
      --target-dir "${CARGO_TARGET_DIR:-$REPO/target}"
    mv "${CARGO_TARGET_DIR:-$REPO/target}/doc/kms_envelope.json" "$semver_dir/$side.json"
  done
  PATH="$(scripts/install-tools.sh --bin-dir):$PATH" cargo semver-checks --release-type patch \
    --baseline-rustdoc "$semver_dir/baseline.json" --current-rustdoc "$semver_dir/current.json"
  stage_time "semver (cargo-semver-checks)" "$t0" semver
fi
((run_tests)) || exit 0

# ----------------------------------------------------------------------------------------- python venvs
# The test peers are third-party tools, like cargo-semver-checks above: each venv lives in a cache outside
# the repository (VENV_CACHE), in a directory named after it and the hash of what it installs, and the
# checkout's .venv / .venv-esdk-cli are symbolic links to it. A clean clone (CI's) finds the venvs there;
# a change to a requirements file (or to the interpreter behind it, or to any extra file it installs)
# gives a new hash, so a new venv built from scratch, and a stale package never outlives its line in the
# requirements file. Like a tool install, a venv build is a one-time cost per machine and requirements
# version: its time is printed, and kept out of the run's total and of every budget.
# The stamp is written last: an interrupted install leaves no stamp and is redone on the next run.
# ensure_venv LINK REQUIREMENTS [EXTRA_FILE...]: EXTRA_FILEs are hashed into the stamp (local packages the
# requirements install by path).
VENV_CACHE="${KMS_ENVELOPE_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kms-envelope/venvs}"
ensure_venv() {
  local link="$1" reqs="$2" want venv
  shift 2
  want="$( { cat "$reqs" "$@" | sha256sum; "$BASE_PY" -c 'import sys; print(sys.version)'; } \
    | sha256sum | cut -d' ' -f1 )" || die "cannot run $BASE_PY to build $link"
  venv="$VENV_CACHE/$(basename "$link" | sed "s/^\\.//")-${want:0:16}"
  mkdir -p "$VENV_CACHE" || die "cannot create the venv cache $VENV_CACHE (set KMS_ENVELOPE_VENV_CACHE)"
  # Two runs at once (two checkouts, two terminals) must not build the same venv together.
  exec 9>>"$VENV_CACHE/.lock"
  flock 9
  if [[ ! -x "$venv/bin/python" || ! -f "$venv/.requirements.sha256" \
        || "$(cat "$venv/.requirements.sha256")" != "$want" ]] || ! "$venv/bin/python" -c '' 2>/dev/null; then
    header "python: building $venv from ${reqs#"$REPO"/} (one-time per requirements version)"
    local t0=$EPOCHREALTIME
    rm -rf "$venv"
    "$BASE_PY" -m venv "$venv" || die "python venv creation failed ($BASE_PY -m venv $venv)"
    # -q keeps the log short; pip still prints errors and the resolver's complaints.
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs" || die "pip install into $venv failed"
    echo "$want" >"$venv/.requirements.sha256"
    echo "venv built in $(since "$t0") s"
  fi
  flock -u 9
  exec 9>&-
  # A checkout from before the cache holds a real directory here: replaced by the link.
  [[ -L "$link" || ! -e "$link" ]] || rm -rf "$link"
  ln -sfn "$venv" "$link"
}

t_peers=$EPOCHREALTIME
# .venv: the Python ESDK 4.x (interop oracle), boto3 and moto.
VENV="$REPO/.venv"
PY="$VENV/bin/python"
ensure_venv "$VENV" "$REPO/scripts/requirements-test.txt"
# .venv-esdk-cli: aws-encryption-cli, which needs the 3.x SDK and so cannot share .venv, plus the raw AES
# key provider plugin the CLI interop tests use (tests/peers/esdk_cli_raw_aes).
ESDK_CLI_VENV="$REPO/.venv-esdk-cli"
ensure_venv "$ESDK_CLI_VENV" "$REPO/scripts/requirements-esdk-cli.txt" \
  "$REPO"/tests/peers/esdk_cli_raw_aes/{pyproject.toml,kms_envelope_raw_aes.py}
stage_time "python venvs (one-time per requirements version, not in the total)" "$t_peers"
RUN_START=$(awk -v a="$RUN_START" -v b="$t_peers" -v c="$EPOCHREALTIME" 'BEGIN { printf "%.6f", a + (c - b) }')

# ----------------------------------------------------------------------------------------------- moto
# A fresh loopback port per run, so parallel runs and stale servers never collide. The tiny window between
# picking the port and moto binding it is covered by the liveness check in the poll loop.
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
MOTO_URL="http://127.0.0.1:$PORT"
MOTO_LOG="$(mktemp "${TMPDIR:-/tmp}/kms-envelope-moto.XXXXXX.log")"
MOTO_PID=

stop_moto() {
  if [[ -n "$MOTO_PID" ]] && kill -0 "$MOTO_PID" 2>/dev/null; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
  rm -f "$MOTO_LOG"
}
# EXIT covers success, failure under set -e and die; INT/TERM are turned into an exit so EXIT runs too.
trap stop_moto EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

header "moto: starting on $MOTO_URL"
"$PY" -m moto.server -H 127.0.0.1 -p "$PORT" >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!
t0=$EPOCHREALTIME

deadline=$((SECONDS + 30))
until curl -fsS -o /dev/null --max-time 2 "$MOTO_URL/moto-api/" 2>/dev/null; do
  if ! kill -0 "$MOTO_PID" 2>/dev/null || ((SECONDS >= deadline)); then
    echo "---- moto log ($MOTO_LOG) ----" >&2
    cat "$MOTO_LOG" >&2 || true
    die "moto server did not become ready on $MOTO_URL"
  fi
  sleep 0.2
done
echo "moto ready in $(since "$t0") s (pid $MOTO_PID)"
stage_time "moto start" "$t0" moto

# --------------------------------------------------------------------------------------- environment
# Credentials and region are fake but must be set: the AWS SDKs refuse to sign without them, and would
# otherwise go looking in ~/.aws or the EC2 metadata service (slow timeouts on a machine with no network).
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN
export KMS_ENVELOPE_PYTHON="$PY"
export KMS_ENVELOPE_ESDK_PEER="$REPO/tests/peers/esdk_peer.py"
export KMS_ENVELOPE_ESDK_CLI="$ESDK_CLI_VENV/bin/aws-encryption-cli"
export KMS_ENVELOPE_MOTO_ENDPOINT="$MOTO_URL"
export AWS_ENDPOINT_URL_KMS="$MOTO_URL"
export AWS_ENDPOINT_URL_S3="$MOTO_URL"
# The Hierarchical keyring's branch key store (issue #29).
export AWS_ENDPOINT_URL_DYNAMODB="$MOTO_URL"
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
# proptest draws a fresh seed per run unless told; one seed for the whole run, printed, makes a rare failure
# reproducible: PROPTEST_RNG_SEED=<seed> scripts/test.sh -- <test name>.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "proptest seed: $PROPTEST_RNG_SEED (rerun with PROPTEST_RNG_SEED=$PROPTEST_RNG_SEED to reproduce)"

# The Lambda Runtime Interface Emulator for tests/suite/lambda.rs: fetched once into .venv/rie/ (from the
# aws-sam-cli wheel on PyPI), found there on later runs.
KMS_ENVELOPE_RIE="$(scripts/rie.sh)" || die "cannot fetch the Lambda Runtime Interface Emulator (scripts/rie.sh)"
export KMS_ENVELOPE_RIE

# ---------------------------------------------------------------------------------------------- tests
# Every feature set runs even if an earlier one failed, so one run reports all breakages; the exit status
# is still non-zero if any failed.
failed=()

# The fuzz targets for a bounded time each (FUZZ_SECONDS, default 10 here: a smoke run of every target on
# every change, which finds what a shallow mutation finds; campaigns are `FUZZ_SECONDS=600 scripts/fuzz.sh`);
# it replays fuzz/regressions/ too.
# Before the tests, so that cargo test's summary stays the last thing printed.
# With a test filter only the saved regressions are replayed. The fuzz crate's own unit tests (its seed
# and message builders) run here too, outside cargo-fuzz.
if ((run_fuzz)); then
  t0=$EPOCHREALTIME
  header "fuzz: the fuzz crate's unit tests (cd fuzz && cargo test)"
  if ! (cd fuzz && cargo test -q); then
    failed+=("fuzz crate tests")
  fi
  if ((${#cargo_test_args[@]} == 0)); then
    header "fuzz: scripts/fuzz.sh (FUZZ_SECONDS=${FUZZ_SECONDS:-10} per target)"
    FUZZ_SECONDS="${FUZZ_SECONDS:-10}" bash scripts/fuzz.sh || failed+=("fuzz")
  else
    header "fuzz: scripts/fuzz.sh, regressions only (a test filter was given)"
    FUZZ_REPLAY_ONLY=1 bash scripts/fuzz.sh || failed+=("fuzz regressions")
  fi
  stage_time "fuzz" "$t0" fuzz
fi

TEST_LOG="$(mktemp "${TMPDIR:-/tmp}/kms-envelope-tests.XXXXXX")"
# tests/common appends one line per skipped test here (libtest hides what a passing test prints, so the
# SKIPPED lines on stderr are never seen); counted per feature set, a failure under CI=true.
SKIP_LOG="$(mktemp "${TMPDIR:-/tmp}/kms-envelope-skips.XXXXXX")"
export KMS_ENVELOPE_SKIP_LOG="$SKIP_LOG"
total_passed=0
total_failed=0
total_skipped=0
SET_LINES=()
# The test targets of a feature set other than the full one (which builds cargo test's default targets: all
# of them, the examples too, which tests/suite/lambda.rs runs): the unit tests (library and binaries) and
# every test binary in tests/ (a file, or a directory with main.rs) whose required-features (Cargo.toml) the
# set has, but FULL_SET_ONLY_TESTS. Named one by one, since cargo refuses a named target it would not build;
# `--lib --bins` skip a binary without its features. Their doc tests run in a second `cargo test --doc` (it
# cannot be mixed with these), so that an example compiles in every build that documents it.
set_targets() {
  local set_index="$1"
  cargo metadata --no-deps --format-version 1 --manifest-path "$REPO/Cargo.toml" | "$BASE_PY" -c '
import json, sys
args = sys.argv[1].split()
skip = set(sys.argv[2].split())
package = next(p for p in json.load(sys.stdin)["packages"] if p["name"] == "kms-envelope")
table = package["features"]
wanted = [] if "--no-default-features" in args else ["default"]
for i, arg in enumerate(args):
    if arg == "--features":
        wanted += args[i + 1].split(",")
enabled = set()
while wanted:
    feature = wanted.pop()
    if feature in table and feature not in enabled:
        enabled.add(feature)
        wanted += [f for f in table[feature] if not f.startswith("dep:") and "/" not in f]
print("--lib\n--bins")
for target in package["targets"]:
    if "test" in target["kind"] and target["name"] not in skip and set(target.get("required-features", [])) <= enabled:
        print("--test\n" + target["name"])
' "${FEATURE_SETS[$set_index]}" "${FULL_SET_ONLY_TESTS[*]}"
}
declare -a SET_TARGETS=("")
for i in "${!FEATURE_SETS[@]}"; do
  ((i > 0)) || continue
  SET_TARGETS[i]="$(set_targets "$i" | tr '\n' ' ')" || die "cannot list the test targets (cargo metadata)"
done

# While the full set's tests run (Python peers, moto and the Lambda emulator: a third of the CPU idles), the
# other sets' test binaries are built in the background, and the README snippets checked when lint runs.
# The other sets' final artifacts go to a target directory of their own (RAW_TARGET_DIR): their CLI binary
# would otherwise replace target/debug/kms-envelope, which the full set's CLI tests are running. Their
# intermediate artifacts share the full set's build directory (CARGO_BUILD_BUILD_DIR, Cargo's build-dir),
# so that a dependency built alike for both (tokio, clap, proptest, serde, the proc macros...) is built
# once. Their `cargo test` below then finds them built; a build that failed in the background fails there
# again, in the foreground, with its errors. The background's output is printed after the full set's tests.
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
RAW_TARGET_DIR="$TARGET_DIR/raw-sets"
# The raw-key CLI set builds the crate at opt-level 1, not 0 as Cargo.toml's test profile says: RustCrypto's
# generic AES-GCM code is compiled in the crate, and unoptimized it made that set's tests take 360 s
# instead of 54. The --no-default-features set stays at opt-level 0 (its tests: 62 s against 13 s, its
# build: 7 s against 27 s), so that tests/freed_memory.rs checks the RustCrypto backend where its stack
# residue used to reach freed heap blocks: at opt-level 1 the optimizer hid that (CHANGELOG.md, Fixed).
declare -A SET_CARGO_CONFIG=([1]="--config profile.test.package.kms-envelope.opt-level=1")
BG_LOG="$(mktemp "${TMPDIR:-/tmp}/kms-envelope-background.XXXXXX")"
BG_PID=
SNIPPETS_STATUS="$(mktemp "${TMPDIR:-/tmp}/kms-envelope-snippets.XXXXXX")"
background_work() {
  local i t0 args targets config waited=0
  # Everything here shares the full set's build directory: not before the full set's cargo test is past
  # its up-to-date check, or that check would wait for the background's lock. A build that fails prints no
  # "Finished" but an "error": then there is no check to wait for either.
  until grep -qE '^ *Finished |^error' "$TEST_LOG" 2>/dev/null || ((waited >= 1200)); do sleep 1; waited=$((waited + 1)); done
  for i in "${!FEATURE_SETS[@]}"; do
    ((i > 0)) || continue
    read -r -a args <<<"${FEATURE_SETS[$i]}"
    read -r -a targets <<<"${SET_TARGETS[$i]}"
    read -r -a config <<<"${SET_CARGO_CONFIG[$i]:-}"
    t0=$EPOCHREALTIME
    echo "---- cargo test --no-run ${args[*]} (CARGO_TARGET_DIR=$RAW_TARGET_DIR, build directory $TARGET_DIR)"
    CARGO_TARGET_DIR="$RAW_TARGET_DIR" CARGO_BUILD_BUILD_DIR="$TARGET_DIR" cargo "${config[@]}" \
      test --no-run "${args[@]}" "${targets[@]}" "${cargo_test_args[@]}" \
      || echo "background: that build failed; the set's own cargo test below says why"
    echo "background: built in $(since "$t0") s"
  done
  if ((run_lint)); then
    t0=$EPOCHREALTIME
    echo "---- lint: scripts/readme-snippets.sh (each README Rust block in a new crate with the dependencies it lists)"
    if scripts/readme-snippets.sh; then echo 0 >"$SNIPPETS_STATUS"; else echo 1 >"$SNIPPETS_STATUS"; fi
    echo "background: README snippets checked in $(since "$t0") s"
  fi
}
stop_background() { [[ -z "$BG_PID" ]] || { kill "$BG_PID" 2>/dev/null; wait "$BG_PID" 2>/dev/null; } || true; }
trap 'stop_background; stop_moto' EXIT

for i in "${!FEATURE_SETS[@]}"; do
  fs="${FEATURE_SETS[$i]}"
  read -r -a fs_args <<<"$fs"
  read -r -a targets <<<"${SET_TARGETS[$i]}"
  fs_args+=("${targets[@]}")
  header "cargo test ${fs_args[*]}${cargo_test_args[*]:+ ${cargo_test_args[*]}}"
  t0=$EPOCHREALTIME
  set_target=()
  set_config=()
  ((i == 0)) || {
    set_target=(env CARGO_TARGET_DIR="$RAW_TARGET_DIR" CARGO_BUILD_BUILD_DIR="$TARGET_DIR")
    read -r -a set_config <<<"${SET_CARGO_CONFIG[$i]:-}"
  }
  set +e
  if ((i == 0)); then
    # The build first, alone: it needs both cores. Then the background work, then the tests.
    cargo test --no-run "${fs_args[@]}" "${cargo_test_args[@]}"
    stage_time "cargo test $fs: build" "$t0" full-build
    t_tests=$EPOCHREALTIME
    background_work >"$BG_LOG" 2>&1 &
    BG_PID=$!
  fi
  # --no-fail-fast: one failing test binary must not hide what the others would have said.
  "${set_target[@]}" cargo "${set_config[@]}" test --no-fail-fast "${fs_args[@]}" "${cargo_test_args[@]}" 2>&1 | tee "$TEST_LOG"
  status=${PIPESTATUS[0]}
  if ((i > 0)); then
    read -r -a doc_args <<<"$fs"
    "${set_target[@]}" cargo "${set_config[@]}" test --no-fail-fast --doc "${doc_args[@]}" "${cargo_test_args[@]}" 2>&1 | tee -a "$TEST_LOG"
    doc_status=${PIPESTATUS[0]}
    ((doc_status == 0)) || status=$doc_status
  fi
  set -e
  ((status == 0)) || failed+=("$fs")
  # Every test binary ends with "test result: ok. N passed; M failed; K ignored; ..."; a skip is a line
  # in $SKIP_LOG from tests/common (a panic under CI=true, so it must stay 0 there).
  read -r passed failed_n ignored < <(awk '/^test result:/ {
      for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i;
                                  if ($(i+1) ~ /^ignored/) g += $i }
    } END { print p + 0, f + 0, g + 0 }' "$TEST_LOG")
  skipped=$(wc -l <"$SKIP_LOG")
  if ((skipped)); then
    echo "skipped tests in [$fs]:"
    sed 's/^/  /' "$SKIP_LOG"
  fi
  : >"$SKIP_LOG"
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed_n))
  total_skipped=$((total_skipped + skipped + ignored))
  SET_LINES+=("$(printf '  %-62s %5d passed %3d failed %3d skipped' "$fs" "$passed" "$failed_n" "$((skipped + ignored))")")
  if ((i == 0)); then
    stage_time "cargo test $fs: tests (the other sets building alongside)" "$t_tests" full-tests
    header "background work (while the full set's tests ran)"
    t_wait=$EPOCHREALTIME
    wait "$BG_PID" || true
    BG_PID=
    cat "$BG_LOG"
    stage_time "waiting for the background work after the full set's tests" "$t_wait" background-wait
    if ((run_lint)) && [[ "$(cat "$SNIPPETS_STATUS")" != 0 ]]; then
      failed+=("lint: README snippets")
    fi
  else
    stage_time "cargo test $fs (built alongside the full set's tests)" "$t0" "${SET_BUDGETS[$i]}"
  fi
  if ((${#cargo_test_args[@]} && passed == 0 && failed_n == 0)); then
    echo "test.sh: the filter '${cargo_test_args[*]}' matched no test in [$fs]" >&2
  fi
done
rm -f "$BG_LOG" "$SNIPPETS_STATUS"
rm -f "$TEST_LOG" "$SKIP_LOG"

header "summary"
budget_total=0
for key in "${!BUDGET[@]}"; do budget_total=$((budget_total + BUDGET[$key])); done
echo "stage times (wall, s / budget s):"
printf '%s\n' "${STAGES[@]}"
echo "  total: $(since "$RUN_START") s (budget $budget_total s for a cold run)"
if ((${#OVER_BUDGET[@]})); then
  echo "stages over budget:"
  printf '  %s\n' "${OVER_BUDGET[@]}"
fi
# The disk a run costs (one target directory for every feature set, plus the fuzz crate's own).
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
echo "target directories: $(du -sh "$TARGET_DIR" 2>/dev/null | cut -f1) $TARGET_DIR$( [[ -d fuzz/target ]] \
  && printf ', %s fuzz/target' "$(du -sh fuzz/target | cut -f1)")"
echo "tests per feature set:"
printf '%s\n' "${SET_LINES[@]}"
if ((${#cargo_test_args[@]} && total_passed + total_failed == 0)); then
  failed+=("the filter '${cargo_test_args[*]}' matched no test")
fi
if [[ "${CI:-}" == true ]] && ((total_skipped > 0)); then
  failed+=("$total_skipped tests skipped under CI=true")
fi
if ((${#failed[@]})); then
  header "FAILED:$(printf ' [%s]' "${failed[@]}")"
  echo "tests: $total_passed passed, $((total_failed > 0 ? total_failed : 1)) failed"
  exit 1
fi
header "all checks passed"
echo "tests: $total_passed passed, 0 failed, $total_skipped skipped"
