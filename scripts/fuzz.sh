#!/usr/bin/env bash
# Fuzzes kms-envelope for a bounded time: cargo-fuzz (libFuzzer) targets in fuzz/, seeded from our own
# encryptor and the official test vectors. Exits non-zero if any target finds a crash (panic, failed
# property assertion), an out-of-memory, a timeout, or if a saved regression input still fails.
#
#   scripts/fuzz.sh                      every target, FUZZ_SECONDS each (default 30), two at a time
#   scripts/fuzz.sh header mutate        only these targets
#   FUZZ_SECONDS=600 scripts/fuzz.sh     a longer campaign
#
# Environment:
#   FUZZ_SECONDS    seconds of fuzzing per target (libFuzzer -max_total_time). Default 30.
#   FUZZ_JOBS       targets fuzzed at once. Default 2 (with two cores: six targets x 30 s in about 90 s,
#                   plus one to two minutes to build from scratch).
#   FUZZ_SANITIZER  none (default) or address; see the toolchain notes below.
#   FUZZ_REPLAY_ONLY  set: build, seed and replay fuzz/regressions/ only, no fuzzing (what
#                   scripts/test.sh does when given a test filter).
#   FUZZ_RSS_MB     libFuzzer -rss_limit_mb (and, through it, -malloc_limit_mb). Default 2048.
#   FUZZ_BUILD_ARGS extra arguments for `cargo fuzz build|run`, e.g. "--no-default-features" to build
#                   without the fuzz crate's `parallel` feature (for a kms-envelope without the frame
#                   pipeline's DecryptOptions::threads API); mutate_parallel is then skipped.
#   FUZZ_VECTORS    the official test vectors (default tests/vectors, vendored in the repository); seeds from
#                   our own encryptor are written whether or not they are found.
#
# Targets (fuzz/fuzz_targets/): header (header decoder), context (encryption-context parse/serialize round
# trip), arn (KMS ARN and region grammar: what it accepts is safe in a host name), ecdh (the ECDH keyrings'
# provider info, EDK ciphertext and public key parsers; their AWS-LC key checks with FUZZ_BUILD_ARGS="--features aws-lc"), decrypt (streaming decrypt of arbitrary bytes, small limits), decrypt_default_limits (the same
# with DecryptLimits::default(), to catch allocations sized by untrusted length fields), mutate
# (structure-aware edits of valid messages: decrypt fails, or succeeds only unmodified; released plaintext
# is always a prefix of the true one), mutate_parallel (mutate through the frame pipeline's worker
# threads; fuzz crate feature `parallel`, on by default), range (decrypt_range over mutated messages and
# random ranges: an Ok range is the true plaintext's slice; a message that decrypts whole decrypts by range). Inputs that once failed live in
# fuzz/regressions/<target>/ and are replayed first. A failure's input is in fuzz/artifacts/<target>/;
# reproduce with
#   cd fuzz && cargo fuzz run --sanitizer none <target> artifacts/<target>/<file>
#
# Toolchain notes (cargo-fuzz 0.13.2, rustc 1.95.0 stable, checked on this project):
# * `cargo fuzz build|run --sanitizer none` works on a plain stable toolchain: the coverage
#   instrumentation is all -C / -Cllvm-args flags, no -Z flag is passed. This is the default here.
# * The address sanitizer (cargo-fuzz's own default) passes -Zsanitizer=address, which stable refuses
#   ("the option `Z` is only accepted on the nightly compiler"). `RUSTC_BOOTSTRAP=1 cargo fuzz run <target>`
#   works on stable (cargo-fuzz also treats RUSTC_BOOTSTRAP as nightly); FUZZ_SANITIZER=address does that.
#   (`--build-std`/`--careful` are not used.) kms-envelope denies unsafe code but for AWS-LC's raw RSA
#   operation (src/crypto/rsa/raw.rs, not reached by the targets), so ASan mostly re-checks its
#   dependencies, for a third of the throughput (decrypt: 3.8k against 10.7k exec/s) and a build about
#   twice as long; panics, overflow checks (debug assertions are on in both modes), OOM and
#   timeouts are caught without it.
# * cargo-fuzz comes from crates.io; unless `cargo fuzz` on PATH is the pinned version, this script installs
#   it into the tool cache (~/.cache/kms-envelope/tools, as scripts/install-tools.sh), never into the user's
#   ~/.cargo/bin.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
FUZZ="$REPO/fuzz"
cd "$FUZZ"

ALL_TARGETS=(header context arn ecdh decrypt decrypt_default_limits mutate mutate_parallel range)
SECONDS_EACH="${FUZZ_SECONDS:-30}"
JOBS="${FUZZ_JOBS:-2}"
SANITIZER="${FUZZ_SANITIZER:-none}"
RSS_MB="${FUZZ_RSS_MB:-2048}"
VECTORS="${FUZZ_VECTORS:-$REPO/tests/vectors}"
read -r -a extra_build_args <<<"${FUZZ_BUILD_ARGS:-}"
if [[ " ${extra_build_args[*]} " == *" --no-default-features "* && " ${extra_build_args[*]} " != *parallel* ]]; then
  ALL_TARGETS=("${ALL_TARGETS[@]/mutate_parallel/}")
  read -r -a ALL_TARGETS <<<"${ALL_TARGETS[*]}"
fi

LOGS="$FUZZ/target/fuzz-logs" # git-ignored with the rest of fuzz/target
mkdir -p "$LOGS"

header() { printf '\n==== %s ====\n' "$*"; }
die() { echo "fuzz.sh: error: $*" >&2; exit 1; }

[[ "$SECONDS_EACH" =~ ^[0-9]+$ && "$SECONDS_EACH" -gt 0 ]] || die "FUZZ_SECONDS must be a positive integer"
[[ "$JOBS" =~ ^[0-9]+$ && "$JOBS" -gt 0 ]] || die "FUZZ_JOBS must be a positive integer"
case "$SANITIZER" in
  none) ;;
  address) export RUSTC_BOOTSTRAP=1 ;; # -Zsanitizer on a stable toolchain; see the notes above
  *) die "FUZZ_SANITIZER must be none or address" ;;
esac

targets=("$@")
((${#targets[@]})) || targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
  [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || die "unknown target '$t' (targets: ${ALL_TARGETS[*]})"
done

# cargo-fuzz, pinned, in the same cache outside the repository as scripts/install-tools.sh's tools: a clean
# clone (CI's) finds it there instead of building it again (43 s on a quiet 2-core machine).
CARGO_FUZZ_VERSION=0.13.2
TOOLS="${KMS_ENVELOPE_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kms-envelope/tools}/cargo-fuzz-$CARGO_FUZZ_VERSION"
export PATH="$TOOLS/bin:$PATH"
if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  header "installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS (one-time)"
  cargo install --root "$TOOLS" "cargo-fuzz@$CARGO_FUZZ_VERSION" --locked
fi

# ---------------------------------------------------------------------------------------------- build
# One cargo invocation builds every target (shared dependencies, one lock); `cargo fuzz run` below then
# finds them up to date.
build_flags=(--sanitizer "$SANITIZER" --release --debug-assertions "${extra_build_args[@]}")
header "build: cargo fuzz build ${build_flags[*]}"
cargo fuzz build "${build_flags[@]}"

# ---------------------------------------------------------------------------------------------- seeds
# Any target binary writes every target's seeds when KMS_ENVELOPE_FUZZ_WRITE_SEEDS is set (see
# fuzz/src/seeds.rs), so seeding needs no build of its own; `cargo run --example seed` does the same by hand.
# Seeds overwrite their own files only: what earlier runs added to fuzz/corpus/ stays (it is git-ignored).
header "seeds: fuzz/corpus/<target>/"
vectors_abs=""
if [[ -f "$VECTORS/raw-aes-index.tsv" ]]; then
  vectors_abs="$(cd "$VECTORS" && pwd -P)"
else
  echo "fuzz.sh: warning: no test vectors at $VECTORS; seeding from our own encryptor only" >&2
fi
seed_log="$LOGS/seed.log"
if KMS_ENVELOPE_FUZZ_WRITE_SEEDS="$FUZZ/corpus" KMS_ENVELOPE_FUZZ_VECTORS="$vectors_abs" \
  cargo fuzz run "${build_flags[@]}" header -- -runs=0 >"$seed_log" 2>&1 && grep '^seed:' "$seed_log"; then
  :
else
  cat "$seed_log" >&2
  die "writing the seed corpora failed"
fi

# ---------------------------------------------------------------------------------------- regressions
failed=()
for t in "${targets[@]}"; do
  shopt -s nullglob
  inputs=("$FUZZ/regressions/$t"/*)
  # mutate_parallel reads the same inputs as mutate, through the frame pipeline's worker threads.
  [[ $t == mutate_parallel ]] && inputs+=("$FUZZ/regressions/mutate"/*)
  shopt -u nullglob
  ((${#inputs[@]})) || continue
  header "regressions: $t (${#inputs[@]} inputs)"
  # Given files rather than directories, libFuzzer runs each once and exits non-zero on the first failure.
  if ! cargo fuzz run "${build_flags[@]}" "$t" "${inputs[@]}" -- -rss_limit_mb="$RSS_MB" -timeout=20 \
    >"$LOGS/regressions-$t.log" 2>&1; then
    tail -n 60 "$LOGS/regressions-$t.log"
    failed+=("$t (regression input)")
  fi
done

if [[ -n "${FUZZ_REPLAY_ONLY:-}" ]]; then
  if ((${#failed[@]})); then
    header "REGRESSIONS FAIL AGAIN in:$(printf ' [%s]' "${failed[@]}")"
    exit 1
  fi
  header "regressions replayed, no fuzzing (FUZZ_REPLAY_ONLY)"
  exit 0
fi

# ------------------------------------------------------------------------------------------------ run
run_one() {
  local t="$1" log="$LOGS/$1.log" rc=0
  mkdir -p "$FUZZ/corpus/$t" "$FUZZ/artifacts/$t"
  # -timeout: seconds one input may take (every target handles one in well under a millisecond);
  # -rss_limit_mb also sets -malloc_limit_mb, so a single oversized allocation is reported too.
  cargo fuzz run "${build_flags[@]}" "$t" "$FUZZ/corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb="$RSS_MB" -timeout=20 -print_final_stats=1 \
    >"$log" 2>&1 || rc=$?
  echo "$rc" >"$LOGS/$t.rc"
}

header "fuzz: ${targets[*]} for ${SECONDS_EACH} s each, $JOBS at a time (sanitizer: $SANITIZER)"
# Each fuzzer runs in a process group of its own (job control on), so that an interrupted or killed script
# can stop it together with the cargo-fuzz and libFuzzer processes under it.
set -m
stop_fuzzers() {
  local pid
  for pid in $(jobs -p); do kill -- "-$pid" 2>/dev/null || true; done
}
trap stop_fuzzers EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
rm -f "$LOGS/"*.rc
running=0
for t in "${targets[@]}"; do
  if ((running >= JOBS)); then
    wait -n || true
    running=$((running - 1))
  fi
  echo "started $t"
  run_one "$t" &
  running=$((running + 1))
done
wait

for t in "${targets[@]}"; do
  log="$LOGS/$t.log"
  rc="$(cat "$LOGS/$t.rc" 2>/dev/null || echo missing)"
  # Final stats and the last status line: executions, speed, coverage (cov: edges, ft: features).
  runs="$(awk '/^stat::number_of_executed_units/ {print $2}' "$log")"
  speed="$(awk '/^stat::average_exec_per_sec/ {print $2}' "$log")"
  last="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
  if [[ "$rc" == 0 ]]; then
    echo "$t: ok, ${runs:-?} executions, ${speed:-?} exec/s; $last"
  else
    header "$t FAILED (exit $rc); last lines of $log"
    tail -n 80 "$log"
    failed+=("$t")
  fi
done

if ((${#failed[@]})); then
  header "FUZZING FOUND PROBLEMS in:$(printf ' [%s]' "${failed[@]}")"
  echo "inputs: $FUZZ/artifacts/<target>/; logs: $LOGS/" >&2
  exit 1
fi
header "fuzzing found nothing (${targets[*]}: ${SECONDS_EACH} s each)"
