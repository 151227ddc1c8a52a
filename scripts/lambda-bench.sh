#!/usr/bin/env bash
# Cold-start benchmark of the Lambda decryptor (a benchmark, not a test: it prints figures, asserts nothing).
#
#   scripts/lambda-bench.sh [MiB]        default 100
#
# On this machine, against a local moto (KMS), for one bundle of MiB random bytes:
#   rust    a cold process (examples/lambda_cold_start --once, release build) decrypting the bundle into
#           a fresh temp directory: process start, AWS config, one KMS Decrypt, decrypt, write, rename
#   base    `cp` of the same plaintext into a fresh temp directory, plus one bare KMS Decrypt (curl, SigV4)
#   python  the official Python ESDK (tests/peers/esdk_peer.py, KMS keyring) decrypting the same bundle
# Each is run RUNS times (default 5; python once, it is slow), the median is reported, with the peak RSS.
# The peak RSS of the Rust process is also measured for a bundle a tenth of the size: it should not grow
# with the bundle. rust and base are measured again pinned to one core (`taskset -c 0`, Lambda's common
# case); the goal lines of issue #12 follow, with the load average before and after.
#
# Needs .venv (scripts/test.sh builds it) and builds the example in release mode.
set -euo pipefail

MIB="${1:-100}"
RUNS="${RUNS:-5}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO"
PY="${KMS_ENVELOPE_PYTHON:-$REPO/.venv/bin/python}"
[[ -x "$PY" ]] || { echo "lambda-bench.sh: $PY missing; run scripts/test.sh once to build .venv" >&2; exit 1; }

echo "building the example (release)..." >&2
cargo build -q --profile profiling --features lambda,s3 --example lambda_cold_start
EXAMPLE="${CARGO_TARGET_DIR:-$REPO/target}/profiling/examples/lambda_cold_start"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/kms-envelope-lambda-bench.XXXXXX")"
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
MOTO_URL="http://127.0.0.1:$PORT"
"$PY" -m moto.server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
cleanup() {
  kill "$MOTO_PID" 2>/dev/null || true
  wait "$MOTO_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
until curl -fsS -o /dev/null --max-time 2 "$MOTO_URL/moto-api/" 2>/dev/null; do
  kill -0 "$MOTO_PID" 2>/dev/null || { cat "$WORK/moto.log" >&2; exit 1; }
  sleep 0.2
done

unset AWS_PROFILE AWS_SESSION_TOKEN
export AWS_ENDPOINT_URL="$MOTO_URL" AWS_ENDPOINT_URL_KMS="$MOTO_URL" AWS_ACCESS_KEY_ID=testing \
  AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

# A key, a wrapped data key for the bare Decrypt, and the plaintexts.
read -r KEY_ARN BLOB < <("$PY" -c '
import base64, boto3
kms = boto3.client("kms")
arn = kms.create_key()["KeyMetadata"]["Arn"]
blob = kms.generate_data_key(KeyId=arn, NumberOfBytes=32)["CiphertextBlob"]
print(arn, base64.b64encode(blob).decode())')
SMALL=$(((MIB + 9) / 10))
head -c "$((MIB << 20))" /dev/urandom >"$WORK/big.pt"
head -c "$((SMALL << 20))" /dev/urandom >"$WORK/small.pt"
for n in big small; do
  "$PY" tests/peers/esdk_peer.py encrypt --in "$WORK/$n.pt" --out "$WORK/$n.esdk" --kms-key "$KEY_ARN" \
    --kms-endpoint "$MOTO_URL" --suite 0x0478 --frame-length 65536 --context-json '{"purpose":"bench"}'
done

# measure NAME CMD...: runs CMD in a fresh $WORK/out (its $OUT), prints "seconds peak_rss_kib".
measure() {
  rm -rf "$WORK/out" && mkdir "$WORK/out"
  sync
  OUT="$WORK/out" "$PY" - "$@" <<'EOF'
import os, resource, subprocess, sys, time
pin = os.environ.get("PIN", "").split()
t0 = time.perf_counter()
r = subprocess.run(pin + ["bash", "-c", sys.argv[1]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
dt = time.perf_counter() - t0
if r.returncode:
    sys.exit("failed: " + sys.argv[1] + "\n" + r.stderr.decode())
print(f"{dt:.4f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
EOF
}

# median RUNS CMD: the median time of RUNS runs and the largest peak RSS.
median() {
  local runs="$1" cmd="$2" i
  for ((i = 0; i < runs; i++)); do measure "$cmd"; done | sort -n | awk -v n="$runs" '
    { t[NR] = $1; if ($2 > rss) rss = $2 }
    END { printf "%.4f %d\n", t[int((n + 1) / 2)], rss }'
}

# interleaved RUNS NAME=CMD...: RUNS rounds of every command in turn, so that a noisy stretch of this
# shared machine spreads over all of them rather than landing on one; sets RESULT[NAME] to "median_s
# peak_rss_kib" (the ratios of the goal lines compare commands measured side by side).
declare -A RESULT
interleaved() {
  local runs="$1" round entry
  shift
  local -A times=()
  for ((round = 0; round < runs; round++)); do
    for entry in "$@"; do
      times[${entry%%=*}]+="$(measure "${entry#*=}")"$'\n'
    done
  done
  for entry in "$@"; do
    RESULT[${entry%%=*}]="$(grep . <<<"${times[${entry%%=*}]}" | sort -n | awk -v n="$runs" '
      { t[NR] = $1; if ($2 > rss) rss = $2 }
      END { printf "%.4f %d\n", t[int((n + 1) / 2)], rss }')"
  done
}

export EXAMPLE KEY_ARN MOTO_URL BLOB WORK
RUST_CMD='KMS_ENVELOPE_BUNDLES="$WORK/$N.esdk=bundle.bin" KMS_ENVELOPE_ROOT="$OUT" KMS_ENVELOPE_KMS_KEY_ARN="$KEY_ARN" KMS_ENVELOPE_CONTEXT=purpose=bench RUST_LOG=warn "$EXAMPLE" --once'
DECRYPT_CMD='curl -fsS -o /dev/null --aws-sigv4 "aws:amz:us-east-1:kms" --user testing:testing -H "X-Amz-Target: TrentService.Decrypt" -H "Content-Type: application/x-amz-json-1.1" -d "{\"CiphertextBlob\":\"$BLOB\",\"KeyId\":\"$KEY_ARN\"}" "$MOTO_URL/"'
BASE_CMD="cp \"\$WORK/\$N.pt\" \"\$OUT/bundle.bin\" && $DECRYPT_CMD"
PY_CMD='"'"$PY"'" '"$REPO"'/tests/peers/esdk_peer.py decrypt --in "$WORK/$N.esdk" --out "$OUT/bundle.bin" --kms-key "$KEY_ARN" --kms-endpoint "$MOTO_URL" --context-json "{\"purpose\":\"bench\"}"'

# verify NAME CMD: one untimed run whose output must equal the plaintext.
verify() {
  measure "$2" >/dev/null
  cmp -s "$WORK/out/bundle.bin" "$WORK/$N.pt" || { echo "lambda-bench.sh: $1 produced the wrong plaintext" >&2; exit 1; }
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
export N=big
verify rust "$RUST_CMD" # also warms the page cache and the binary
verify python "$PY_CMD"
interleaved "$RUNS" "rust=$RUST_CMD" "decrypt=$DECRYPT_CMD" "base=$BASE_CMD"
read -r rust_s rust_kib <<<"${RESULT[rust]}"
read -r decrypt_s _ <<<"${RESULT[decrypt]}"
read -r base_s base_kib <<<"${RESULT[base]}"
read -r py_s py_kib < <(median 1 "$PY_CMD")
export PIN="taskset -c 0"
interleaved "$RUNS" "rust=$RUST_CMD" "base=$BASE_CMD"
read -r pin_rust_s _ <<<"${RESULT[rust]}"
read -r pin_base_s _ <<<"${RESULT[base]}"
export PIN=""
export N=small
read -r small_s small_kib < <(median "$RUNS" "$RUST_CMD")
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

awk -v mib="$MIB" -v small="$SMALL" -v r="$rust_s" -v rk="$rust_kib" -v d="$decrypt_s" -v b="$base_s" \
  -v bk="$base_kib" -v p="$py_s" -v pk="$py_kib" -v s="$small_s" -v sk="$small_kib" -v pr="$pin_rust_s" \
  -v pb="$pin_base_s" -v lb="$LOAD_BEFORE" -v la="$LOAD_AFTER" '
function goal(what, ratio, op, limit) {
  met = (op == "<=") ? ratio <= limit : ratio >= limit
  printf "  %-52s ratio %5.2fx  goal %s %sx  %s\n", what, ratio, op, limit, met ? "MET" : "MISSED"
}
BEGIN {
  printf "cold start, %d MiB bundle (median of runs; peak RSS)\n", mib
  printf "  rust  lambda_cold_start --once   %8.3f s  %7.1f MiB RSS  %6.0f MiB/s\n", r, rk / 1024, mib / r
  printf "  base  cp + one KMS Decrypt        %8.3f s  (Decrypt alone %.3f s)\n", b, d
  printf "  python ESDK decrypt               %8.3f s  %7.1f MiB RSS\n", p, pk / 1024
  printf "  rust, %d MiB bundle                %8.3f s  %7.1f MiB RSS\n", small, s, sk / 1024
  printf "  rust, taskset -c 0                %8.3f s\n", pr
  printf "  base, taskset -c 0                %8.3f s\n", pb
  printf "peak RSS: %.1f MiB at %d MiB, %.1f MiB at %d MiB (goal: constant in the bundle size)\n", sk / 1024, small, rk / 1024, mib
  printf "issue #12 goals:\n"
  goal("[unpinned] rust / (cp + one KMS Decrypt)", r / b, "<=", 1.2)
  goal("[taskset -c 0] rust / (cp + one KMS Decrypt)", pr / pb, "<=", 1.5)
  goal("[unpinned] python ESDK / rust", p / r, ">=", 20)
  printf "load average: %s before, %s after\n", lb, la
}'
