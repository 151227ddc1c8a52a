#!/usr/bin/env bash
# Throughput of kms-envelope against its peers, in one run on the same 1 GiB file, with the issue-3 targets.
#
#   scripts/bench.sh                 everything below (about 10 minutes on 2 cores; needs ~10 GiB in $TMPDIR)
#   scripts/bench.sh --quick         256 MiB instead of 1 GiB, no 4 GiB RSS run, no Python decrypt
#   scripts/bench.sh --criterion     also run the criterion benches (benches/throughput.rs) for both backends
#   CARGO_TARGET_DIR=DIR scripts/bench.sh   build elsewhere (e.g. while other builds hold target/)
#   BENCH_MIB=64 scripts/bench.sh --quick   a quick check of the script itself (any size in MiB)
#
# Measures, at one frame length (BENCH_FRAME, default 65536):
#   * `openssl speed -evp aes-256-gcm` on one core, at that block size: the reference figure;
#   * `cp` of the file (page cache to page cache), and `cp` + fsync of the copy;
#   * the Python ESDK (tests/peers/esdk_peer.py, raw AES keyring) encrypting and decrypting the file;
#   * our release CLI, file to file, with the default (aes-gcm) backend and with `aws-lc`;
#   * in-memory encrypt/decrypt of the same bytes (benches/inmemory.rs), 1 and 2 threads, both backends:
#     the one-shot `encrypt_into`/`decrypt_into` into reused buffers (the figure the targets use), the
#     streaming `Encryptor`/`Decryptor`, and the allocating `encrypt`/`decrypt`;
#   * peak RSS (`/usr/bin/time -v`) of the CLI on 1 GiB and 4 GiB inputs;
#   * the goal lines of issue #12 (scripts/bench-goals.sh, aws-lc CLI): file to file with --no-fsync against
#     `cp`, durable against `cp` + `sync`, stdin/stdout pipes against file to file, each unpinned and pinned
#     to one core (`taskset -c 0`), with the load average before and after;
# then prints the ratios and which targets are met. The CLI fsyncs its output before renaming it into place
# (its durability promise), so it is compared with `cp` both with and without an fsync.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO"

quick=0
criterion=0
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --criterion) criterion=1 ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

FRAME="${BENCH_FRAME:-65536}"
SIZE_MIB=1024
((quick)) && SIZE_MIB=256
SIZE_MIB="${BENCH_MIB:-$SIZE_MIB}"
die() { echo "bench.sh: error: $*" >&2; exit 1; }
header() { printf '\n==== %s ====\n' "$*"; }
# GB/s (10^9 bytes per second) for $1 bytes in $2 seconds.
gbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.2f", b / s / 1e9 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# Wall seconds of a command (best of $1 runs); the command's output goes to the log.
best_of() {
  local runs="$1" best="" t0 t
  shift
  for ((i = 0; i < runs; i++)); do
    t0=$EPOCHREALTIME
    "$@" >>"$LOG" 2>&1 || die "failed: $* (see $LOG)"
    t="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f", b - a }')"
    if [[ -z "$best" ]] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then best="$t"; fi
  done
  echo "$best"
}
# Peak RSS in MiB of one run of a command, from /usr/bin/time -v.
peak_rss() {
  local out
  out="$(/usr/bin/time -v "$@" 2>&1 >/dev/null)" || die "failed: $*: $out"
  awk '/Maximum resident set size/ { printf "%.1f", $NF / 1024 }' <<<"$out"
}

command -v openssl >/dev/null || die "openssl not found"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install time)"

# ------------------------------------------------------------------------------------- python venv
# The same venv, stamp and lock as scripts/test.sh, so either script may build it and the other reuses it.
REQS="$REPO/scripts/requirements-test.txt"
VENV="$REPO/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.requirements.sha256"
BASE_PY="${KMS_ENVELOPE_BASE_PYTHON:-python3}"
want_stamp="$( { sha256sum <"$REQS"; "$BASE_PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1 )" \
  || die "cannot run $BASE_PY to build the venv"
exec 9<"$REQS"
flock 9
if [[ ! -x "$PY" || ! -f "$STAMP" || "$(cat "$STAMP")" != "$want_stamp" ]] || ! "$PY" -c '' 2>/dev/null; then
  header "python: building .venv from scripts/requirements-test.txt"
  rm -rf "$VENV"
  "$BASE_PY" -m venv "$VENV" || die "python venv creation failed"
  "$PY" -m pip install -q --disable-pip-version-check -r "$REQS" || die "pip install into .venv failed"
  echo "$want_stamp" >"$STAMP"
fi
flock -u 9
exec 9<&-

# ------------------------------------------------------------------------------------------- builds
header "build: release CLI (aes-gcm, then aws-lc) and the in-memory bench"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kms-envelope-bench.XXXXXX")"
LOG="$WORK/log"
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
for backend in aes-gcm aws-lc; do
  features="cli"
  [[ $backend == aws-lc ]] && features="cli,aws-lc"
  cargo build -q --profile profiling --no-default-features --features "$features" --bin kms-envelope
  cp "${CARGO_TARGET_DIR:-$REPO/target}/profiling/kms-envelope" "$WORK/kms-envelope-$backend"
  cargo bench -q --no-default-features --features "${features#cli}" --bench inmemory --no-run 2>/dev/null \
    || cargo bench --no-default-features --features "${features#cli}" --bench inmemory --no-run
done

# ------------------------------------------------------------------------------------------- inputs
header "inputs: ${SIZE_MIB} MiB of random bytes in $WORK"
df -h "$WORK" | tail -1
head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/plain"
SIZE=$((SIZE_MIB << 20))
head -c 32 /dev/urandom >"$WORK/key"
KEY_HEX="$(od -An -tx1 -v "$WORK/key" | tr -d ' \n')"
KEYARGS=(--raw-key-file "$WORK/key" --key-namespace bench --key-name key)
cat "$WORK/plain" >/dev/null # warm the page cache

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n' "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), load $LOAD_BEFORE"
printf 'frame length %s, input %s bytes\n' "$FRAME" "$SIZE"

# ---------------------------------------------------------------------------------------- reference
header "openssl speed -evp aes-256-gcm (one core, $FRAME-byte blocks)"
ossl_k="$(openssl speed -elapsed -seconds 3 -bytes "$FRAME" -evp aes-256-gcm 2>/dev/null | awk '/^AES-256-GCM/ { sub(/k$/, "", $2); print $2 }')"
[[ -n "$ossl_k" ]] || die "could not parse openssl speed output"
OPENSSL="$(awk -v k="$ossl_k" 'BEGIN { printf "%.2f", k * 1000 / 1e9 }')"
echo "openssl: $OPENSSL GB/s"

header "cp"
rm -f "$WORK/copy"
cp_s="$(best_of 3 sh -c "rm -f '$WORK/copy' && cp '$WORK/plain' '$WORK/copy'")"
CP="$(gbps "$SIZE" "$cp_s")"
cps_s="$(best_of 3 sh -c "rm -f '$WORK/copy' && cp '$WORK/plain' '$WORK/copy' && sync '$WORK/copy'")"
CPSYNC="$(gbps "$SIZE" "$cps_s")"
rm -f "$WORK/copy"
echo "cp: $CP GB/s ($cp_s s); cp + fsync: $CPSYNC GB/s ($cps_s s)"

# ------------------------------------------------------------------------------------------ ours: CLI
declare -A CLI_ENC CLI_DEC
cli_encrypt() { rm -f "$WORK/ours.enc" && "$1" encrypt "${KEYARGS[@]}" --frame-length "$FRAME" "$WORK/plain" "$WORK/ours.enc"; }
cli_decrypt() { rm -f "$WORK/ours.dec" && "$1" decrypt "${KEYARGS[@]}" "$WORK/ours.enc" "$WORK/ours.dec"; }
for backend in aes-gcm aws-lc; do
  header "kms-envelope CLI ($backend), file to file"
  bin="$WORK/kms-envelope-$backend"
  # Each run starts without its output, as cp's does: replacing a 1 GiB file costs the old one's blocks.
  enc_s="$(best_of 3 cli_encrypt "$bin")"
  dec_s="$(best_of 3 cli_decrypt "$bin")"
  cmp -s "$WORK/plain" "$WORK/ours.dec" || die "CLI round trip mismatch ($backend)"
  CLI_ENC[$backend]="$(gbps "$SIZE" "$enc_s")"
  CLI_DEC[$backend]="$(gbps "$SIZE" "$dec_s")"
  echo "encrypt: ${CLI_ENC[$backend]} GB/s ($enc_s s); decrypt: ${CLI_DEC[$backend]} GB/s ($dec_s s)"
  rm -f "$WORK/ours.dec"
done

# --------------------------------------------------------------------------------- issue #12 goal lines
header "issue #12 goals (aws-lc CLI, unpinned and taskset -c 0)"
GOALS="$(BIN="$WORK/kms-envelope-aws-lc" PLAIN="$WORK/plain" WORK="$WORK" FRAME="$FRAME" RSS_4GIB=0 \
  bash "$REPO/scripts/bench-goals.sh")"
echo "$GOALS"

# ----------------------------------------------------------------------------------------- Python ESDK
header "Python ESDK $("$PY" -c 'import aws_encryption_sdk as e; print(e.__version__)'), frame $FRAME, raw AES keyring"
PEER=("$PY" "$REPO/tests/peers/esdk_peer.py")
PEERKEY=(--raw-key-hex "$KEY_HEX" --key-namespace bench --key-name key)
py_enc_s="$(best_of 1 "${PEER[@]}" encrypt --in "$WORK/plain" --out "$WORK/py.enc" "${PEERKEY[@]}" --frame-length "$FRAME")"
PY_ENC="$(gbps "$SIZE" "$py_enc_s")"
echo "encrypt: $PY_ENC GB/s ($py_enc_s s, including interpreter start-up)"
PY_DEC=""
if ((!quick)); then
  py_dec_s="$(best_of 1 "${PEER[@]}" decrypt --in "$WORK/ours.enc" --out "$WORK/py.dec" "${PEERKEY[@]}")"
  cmp -s "$WORK/plain" "$WORK/py.dec" || die "the Python ESDK decrypted our message to something else"
  PY_DEC="$(gbps "$SIZE" "$py_dec_s")"
  echo "decrypt (our message): $PY_DEC GB/s ($py_dec_s s)"
  rm -f "$WORK/py.dec"
fi
rm -f "$WORK/py.enc"

# ------------------------------------------------------------------------------------------ in memory
declare -A MEM
for backend in aes-gcm aws-lc; do
  features=""
  [[ $backend == aws-lc ]] && features="aws-lc"
  for threads in 1 2; do
    header "in memory ($backend, $threads threads)"
    out="$(BENCH_INPUT="$WORK/plain" BENCH_FRAME="$FRAME" BENCH_THREADS="$threads" \
      cargo bench -q --no-default-features ${features:+--features "$features"} --bench inmemory 2>>"$LOG")"
    echo "$out"
    MEM[$backend,$threads,enc]="$(awk '/in-memory encrypt/ { print $(NF-1) }' <<<"$out")"
    MEM[$backend,$threads,dec]="$(awk '/in-memory decrypt/ { print $(NF-1) }' <<<"$out")"
    MEM[$backend,$threads,senc]="$(awk '/in-memory stream-encrypt/ { print $(NF-1) }' <<<"$out")"
    MEM[$backend,$threads,sdec]="$(awk '/in-memory stream-decrypt/ { print $(NF-1) }' <<<"$out")"
  done
done

# ----------------------------------------------------------------------------------------- peak RSS
header "peak RSS of the CLI (aes-gcm), frame $FRAME"
declare -A RSS
RSS[1,enc]="$(peak_rss "$WORK/kms-envelope-aes-gcm" encrypt "${KEYARGS[@]}" --frame-length "$FRAME" --force "$WORK/plain" "$WORK/ours.enc")"
RSS[1,dec]="$(peak_rss "$WORK/kms-envelope-aes-gcm" decrypt "${KEYARGS[@]}" --force "$WORK/ours.enc" "$WORK/ours.dec")"
echo "$SIZE_MIB MiB: encrypt ${RSS[1,enc]} MiB, decrypt ${RSS[1,dec]} MiB"
rm -f "$WORK/ours.enc" "$WORK/ours.dec"
if ((!quick)); then
  for _ in 1 2 3 4; do cat "$WORK/plain"; done >"$WORK/plain4"
  rm -f "$WORK/plain"
  RSS[4,enc]="$(peak_rss "$WORK/kms-envelope-aes-gcm" encrypt "${KEYARGS[@]}" --frame-length "$FRAME" --force "$WORK/plain4" "$WORK/ours.enc")"
  rm -f "$WORK/plain4"
  RSS[4,dec]="$(peak_rss "$WORK/kms-envelope-aes-gcm" decrypt "${KEYARGS[@]}" --force "$WORK/ours.enc" "$WORK/ours.dec")"
  rm -f "$WORK/ours.enc" "$WORK/ours.dec"
  echo "$((4 * SIZE_MIB)) MiB: encrypt ${RSS[4,enc]} MiB, decrypt ${RSS[4,dec]} MiB"
fi

# ------------------------------------------------------------------------------------------ summary
header "summary (GB/s = 10^9 bytes/s; ratios against this run's figures)"
printf '%-44s %8s\n' "openssl speed aes-256-gcm, one core" "$OPENSSL"
printf '%-44s %8s\n' "cp" "$CP"
printf '%-44s %8s\n' "cp + fsync" "$CPSYNC"
printf '%-44s %8s %8s\n' "Python ESDK (encrypt, decrypt)" "$PY_ENC" "${PY_DEC:--}"
for backend in aes-gcm aws-lc; do
  printf '%-44s %8s %8s\n' "CLI file to file, $backend (encrypt, decrypt)" "${CLI_ENC[$backend]}" "${CLI_DEC[$backend]}"
  for threads in 1 2; do
    printf '%-44s %8s %8s\n' "in memory, $backend, $threads threads (enc, dec)" \
      "${MEM[$backend,$threads,enc]}" "${MEM[$backend,$threads,dec]}"
    printf '%-44s %8s %8s\n' "  streaming API, $threads threads (enc, dec)" \
      "${MEM[$backend,$threads,senc]}" "${MEM[$backend,$threads,sdec]}"
  done
done

verdict() { # name, value, threshold
  if awk -v v="$2" -v t="$3" 'BEGIN { exit !(v >= t) }'; then s=met; else s=MISSED; fi
  printf '  %-62s %6s x (target %s x)  %s\n' "$1" "$2" "$3" "$s"
}
rss_verdict() { # name, MiB
  if awk -v v="$2" 'BEGIN { exit !(v <= 12) }'; then s=met; else s=MISSED; fi
  printf '  %-62s %6s MiB (target <= 12 MiB)  %s\n' "$1" "$2" "$s"
}
echo
echo "targets:"
for d in enc dec; do
  verdict "in-memory $d, 2 threads, aes-gcm / openssl one core" "$(ratio "${MEM[aes-gcm,2,$d]}" "$OPENSSL")" 1.3
  verdict "in-memory $d, 2 threads, aws-lc / openssl one core" "$(ratio "${MEM[aws-lc,2,$d]}" "$OPENSSL")" 3
done
for backend in aes-gcm aws-lc; do
  verdict "CLI encrypt ($backend) / cp" "$(ratio "${CLI_ENC[$backend]}" "$CP")" 0.7
  verdict "CLI decrypt ($backend) / cp" "$(ratio "${CLI_DEC[$backend]}" "$CP")" 0.7
  verdict "CLI encrypt ($backend) / (cp + fsync)" "$(ratio "${CLI_ENC[$backend]}" "$CPSYNC")" 0.7
  verdict "CLI decrypt ($backend) / (cp + fsync)" "$(ratio "${CLI_DEC[$backend]}" "$CPSYNC")" 0.7
done
verdict "CLI encrypt (aes-gcm) / Python ESDK encrypt" "$(ratio "${CLI_ENC[aes-gcm]}" "$PY_ENC")" 10
[[ -n "$PY_DEC" ]] && verdict "CLI decrypt (aes-gcm) / Python ESDK decrypt" "$(ratio "${CLI_DEC[aes-gcm]}" "$PY_DEC")" 10
rss_verdict "peak RSS, $SIZE_MIB MiB encrypt" "${RSS[1,enc]}"
rss_verdict "peak RSS, $SIZE_MIB MiB decrypt" "${RSS[1,dec]}"
if ((!quick)); then
  rss_verdict "peak RSS, $((4 * SIZE_MIB)) MiB encrypt" "${RSS[4,enc]}"
  rss_verdict "peak RSS, $((4 * SIZE_MIB)) MiB decrypt" "${RSS[4,dec]}"
fi
echo
echo "issue #12 goals:"
grep -E 'ratio|RSS|load' <<<"$GOALS"
echo "load average: $LOAD_BEFORE before this run, $(cut -d' ' -f1-3 /proc/loadavg) after"

if ((criterion)); then
  header "criterion: benches/throughput.rs, aes-gcm"
  cargo bench --no-default-features --bench throughput
  header "criterion: benches/throughput.rs, aws-lc"
  cargo bench --no-default-features --features aws-lc --bench throughput
fi
