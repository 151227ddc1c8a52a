#!/usr/bin/env bash
# S3 goals of issue #27 on the modelled S3 (examples/s3_model.rs, started here), in one run, for two settings:
#   datacenter: 20 ms first byte, 90 MB/s per connection, 1 GB/s aggregate
#   lambda:     20 ms first byte, 90 MB/s per connection, 600 MB/s aggregate
# For each: `encrypt FILE s3://...` and `decrypt s3://... FILE` of S3_BENCH_MIB (default 1024) MiB, timed
#   - against boto3's transfer manager (upload_file / download_file, default TransferConfig) on the same model;
#   - against the network's limit: the lower of the model's configured limit, min(aggregate, concurrency x
#     per connection), and a null client measured here (examples/s3_null_client.rs: the same ranged GETs or
#     parts, same size and concurrency, on the same SDK, bytes dropped);
# with peak RSS against the memory bound ((concurrency + 2) x part size for the transfer, 40 MiB for the frame
# pipeline (DecryptLimits::max_frame_buffers' default, which the encryptor keeps to as well), 64 MiB for the
# process: runtime, SDK, allocator), then a download with 1 % SlowDown and one trickling GET (completes, same bytes, time).
# Runs alternate (one round of every command, RUNS rounds) and medians are printed; the load average is
# printed before and after (the machine may be shared).
#
#   scripts/s3-model-bench.sh           S3_BENCH_MIB=64 RUNS=1 for a quick run; S3_CONCURRENCY / S3_PART_SIZE
#                                       pass --s3-concurrency / --s3-part-size to the CLI (default: its own)
#
# Needs the venv's python with boto3 (KMS_ENVELOPE_PYTHON, or .venv/bin/python) and /usr/bin/time. Builds the
# CLI and both examples with the `profiling` profile unless BIN, MODEL and NULL name them. Prints one line
# per goal:
#   <what>   ratio 0.93x  goal >= 1.0x  MET
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
MIB="${S3_BENCH_MIB:-1024}"
RUNS="${RUNS:-3}"
PY="${KMS_ENVELOPE_PYTHON:-$REPO/.venv/bin/python}"
[[ -x /usr/bin/time ]] || { echo "s3-model-bench.sh: /usr/bin/time not found (apt-get install time)" >&2; exit 1; }
if [[ -z "${BIN:-}" || -z "${MODEL:-}" || -z "${NULL:-}" ]]; then
  (cd "$REPO" && cargo build -q --profile profiling --features lambda,s3 --bin kms-envelope --example s3_model \
    --example s3_null_client --example lambda_cold_start)
  target="${CARGO_TARGET_DIR:-$REPO/target}/profiling"
  BIN="$target/kms-envelope" MODEL="$target/examples/s3_model" NULL="$target/examples/s3_null_client"
  LAMBDA="$target/examples/lambda_cold_start"
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kms-envelope-s3-model-bench.XXXXXX")"
MODEL_PID=""
stop_model() {
  if [[ -n "$MODEL_PID" ]]; then
    kill "$MODEL_PID" 2>/dev/null || true
    wait "$MODEL_PID" 2>/dev/null || true
    MODEL_PID=""
  fi
}
trap 'stop_model; rm -rf "$WORK"' EXIT

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_ENDPOINT_URL
export BUCKET=bench

# What the CLI is asked for, and what it then uses (the library's defaults unless set).
FLAGS=()
[[ -n "${S3_CONCURRENCY:-}" ]] && FLAGS+=(--s3-concurrency "$S3_CONCURRENCY")
[[ -n "${S3_PART_SIZE:-}" ]] && FLAGS+=(--s3-part-size "$S3_PART_SIZE")
HELP="$("$BIN" decrypt --help | tr -s ' \n' ' ')"
CONCURRENCY="${S3_CONCURRENCY:-$(sed -n 's/.*--s3-concurrency <N>[^[]*\[default: \([0-9]*\)\].*/\1/p' <<<"$HELP")}"
PART_MIB="$(sed -n 's/.*--s3-part-size <SIZE>[^[]*\[default: \([0-9]*\)MiB.*/\1/p' <<<"$HELP")"
if [[ -n "${S3_PART_SIZE:-}" ]]; then PART_MIB="${S3_PART_SIZE%%[!0-9]*}"; fi
[[ -n "$CONCURRENCY" && -n "$PART_MIB" ]] || { echo "s3-model-bench.sh: cannot read the CLI's defaults from --help" >&2; exit 1; }
PART=$((PART_MIB << 20))
PER_CONNECTION=90000000

# boto3 helper: upload FILE KEY, download KEY FILE (the transfer manager, default TransferConfig).
cat >"$WORK/s3.py" <<'EOF'
import os, sys, boto3
from botocore.config import Config
endpoint, op, *args = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
bucket = os.environ["BUCKET"]
if op == "upload":
    s3.upload_file(args[0], bucket, args[1])
elif op == "download":
    s3.download_file(bucket, args[0], args[1])
EOF
head -c 32 /dev/urandom >"$WORK/key"
K=(--raw-key-file "$WORK/key" --key-namespace bench --key-name key)
head -c "$((MIB << 20))" /dev/urandom >"$WORK/plain"
SIZE=$((MIB << 20))

# start_model FLAGS...: the model on a free port with the bucket, its objects under $WORK, its URL in $ENDPOINT.
start_model() {
  rm -rf "$WORK/objects" && mkdir "$WORK/objects"
  coproc MODEL_PROC { exec "$MODEL" --bucket "$BUCKET" --dir "$WORK/objects" "$@"; }
  MODEL_PID=$MODEL_PROC_PID
  read -r ENDPOINT <&"${MODEL_PROC[0]}"
  export AWS_ENDPOINT_URL_S3="$ENDPOINT"
}

# timed NAME CMD...: runs CMD, appends "seconds peak_rss_kib" to $WORK/NAME.t
timed() {
  local name="$1"
  shift
  /usr/bin/time -f "%e %M" -a -o "$WORK/$name.t" "$@" >/dev/null 2>>"$WORK/stderr.log" \
    || { echo "s3-model-bench.sh: $name failed: $* (see below)" >&2; tail -5 "$WORK/stderr.log" >&2; exit 1; }
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
secs() { cut -d' ' -f1 "$WORK/$1.t" | median; }
rss_mib() { cut -d' ' -f2 "$WORK/$1.t" | sort -n | tail -1 | awk '{ printf "%.1f", $1 / 1024 }'; }
mbs() { awk -v b="$SIZE" -v s="$1" 'BEGIN { printf "%.0f", (s > 0 ? b / s / 1e6 : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
goal() {
  local name="$1" r="$2" op="$3" g="$4" met
  met="$(awk -v r="$r" -v g="$g" -v op="$op" 'BEGIN { print ((op == ">=" ? r >= g : r <= g) ? "MET" : "MISSED") }')"
  printf '%-64s ratio %6sx  goal %s %sx  %s\n' "$name" "$r" "$op" "$g" "$met"
}

printf 'S3 on the model, %d MiB, %d runs; CLI: %d in flight, %d MiB parts and GETs; load average before: %s\n' \
  "$MIB" "$RUNS" "$CONCURRENCY" "$PART_MIB" "$(cut -d' ' -f1-3 /proc/loadavg)"
for setting in datacenter:1000000000 lambda:600000000; do
  name="${setting%%:*}" aggregate="${setting#*:}"
  rm -f "$WORK"/*.t
  start_model --latency-ms 20 --conn-mbps $((PER_CONNECTION / 1000000)) --aggregate-mbps $((aggregate / 1000000))
    "$PY" "$WORK/s3.py" "$ENDPOINT" upload "$WORK/plain" plain.bin
  "$BIN" encrypt -q "${FLAGS[@]}" "${K[@]}" "$WORK/plain" "s3://$BUCKET/message.esdk"
  for ((round = 0; round < RUNS; round++)); do
    timed boto_up "$PY" "$WORK/s3.py" "$ENDPOINT" upload "$WORK/plain" boto-up.bin
    timed enc "$BIN" encrypt -q --force "${FLAGS[@]}" "${K[@]}" "$WORK/plain" "s3://$BUCKET/enc.esdk"
    timed null_put "$NULL" put "$BUCKET" null-up.bin "$SIZE" "$PART" "$CONCURRENCY"
    rm -f "$WORK/boto.out" "$WORK/dec.out"
    timed boto_down "$PY" "$WORK/s3.py" "$ENDPOINT" download plain.bin "$WORK/boto.out"
    timed dec "$BIN" decrypt -q --no-fsync "${FLAGS[@]}" "${K[@]}" "s3://$BUCKET/message.esdk" "$WORK/dec.out"
    timed null_get "$NULL" get "$BUCKET" message.esdk "$PART" "$CONCURRENCY"
  done
  cmp -s "$WORK/plain" "$WORK/dec.out" || { echo "s3-model-bench.sh: the S3 round trip differs" >&2; exit 1; }
  cmp -s "$WORK/plain" "$WORK/boto.out" || { echo "s3-model-bench.sh: the boto3 round trip differs" >&2; exit 1; }
  configured="$(awk -v a="$aggregate" -v c="$CONCURRENCY" -v p="$PER_CONNECTION" 'BEGIN { l = c * p; print (a < l ? a : l) / 1e6 }')"
  printf '\n%s: 20 ms first byte, %d MB/s per connection, %d MB/s aggregate; configured limit at %d in flight: %d MB/s\n' \
    "$name" $((PER_CONNECTION / 1000000)) $((aggregate / 1000000)) "$CONCURRENCY" "$configured"
  for what in boto_up enc null_put boto_down dec null_get; do
    printf '  %-10s %7.2f s  %6s MB/s  %7s MiB peak RSS\n' "$what" "$(secs $what)" "$(mbs "$(secs $what)")" "$(rss_mib $what)"
  done
  for dir in up:enc:null_put:encrypt down:dec:null_get:decrypt; do
    IFS=: read -r way ours null verb <<<"$dir"
    limit="$(awk -v c="$configured" -v n="$(mbs "$(secs $null)")" 'BEGIN { print (n < c ? n : c) }')"
    goal "$name: $verb vs boto3 $( [[ $way == up ]] && echo upload_file || echo download_file) (boto3 time / ours)" \
      "$(ratio "$(secs boto_$way)" "$(secs $ours)")" ">=" 1.0
    goal "$name: $verb vs the network's limit ($limit MB/s; ours / limit)" \
      "$(ratio "$(mbs "$(secs $ours)")" "$limit")" ">=" 0.9
    bound=$(((CONCURRENCY + 2) * PART_MIB + 40 + 64))
    goal "$name: $verb peak RSS / ((N + 2) x part + 40 + 64 MiB = $bound MiB)" "$(ratio "$(rss_mib $ours)" "$bound")" "<=" 1
  done
  stop_model
done

# Faults: 1 % SlowDown on every request and the 3rd GET trickling (half its body, then 1 byte per 100 ms).
rm -f "$WORK"/*.t "$WORK/dec.out"
start_model --latency-ms 20 --conn-mbps $((PER_CONNECTION / 1000000)) --aggregate-mbps 1000 --slow-down-per-mille 10 \
  --trickle-once-get 3
"$BIN" encrypt -q "${FLAGS[@]}" "${K[@]}" "$WORK/plain" "s3://$BUCKET/message.esdk" 2>>"$WORK/stderr.log" \
  || echo "faults: the upload failed: $(tail -1 "$WORK/stderr.log")"
started=$EPOCHREALTIME
# Bounded: without a per-request deadline, the trickling GET never ends (its bytes keep the read timeout quiet).
FAULT_LIMIT="${FAULT_LIMIT:-120}"
if timeout "$FAULT_LIMIT" "$BIN" decrypt -q --no-fsync "${FLAGS[@]}" "${K[@]}" "s3://$BUCKET/message.esdk" "$WORK/dec.out" \
  2>>"$WORK/stderr.log"; then
  cmp -s "$WORK/plain" "$WORK/dec.out" && outcome="completed, same bytes" || outcome="completed, BYTES DIFFER"
elif [[ $? == 124 ]]; then
  outcome="DID NOT COMPLETE within $FAULT_LIMIT s (stopped; the trickling GET was not cut off)"
else
  outcome="FAILED: $(tail -1 "$WORK/stderr.log")"
fi
printf '\nfaults (1 %% SlowDown, one trickling GET), decrypt of %d MiB: %.2f s, %s\n' "$MIB" \
  "$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" "$outcome"
stop_model

# The Lambda decryptor's S3 source (examples/lambda_cold_start --once, a cold process) on the Lambda-like
# setting, for a LAMBDA_MIB (default 100) MiB bundle under a KMS key in moto (KMS_ENVELOPE_MOTO_ENDPOINT),
# against the null client's GETs of the same object plus one bare KMS Decrypt (curl, SigV4). Skipped
# without moto or without LAMBDA (the example's path; built with the others unless BIN, MODEL, NULL are).
MOTO="${KMS_ENVELOPE_MOTO_ENDPOINT:-}"
if [[ -n "$MOTO" && -x "${LAMBDA:-}" ]]; then
  LMIB="${LAMBDA_MIB:-100}"
  start_model --latency-ms 20 --conn-mbps $((PER_CONNECTION / 1000000)) --aggregate-mbps 600
    read -r KEY_ARN BLOB < <(AWS_ENDPOINT_URL_KMS="$MOTO" "$PY" -c '
import base64, boto3
kms = boto3.client("kms")
arn = kms.create_key()["KeyMetadata"]["Arn"]
blob = kms.generate_data_key(KeyId=arn, NumberOfBytes=32)["CiphertextBlob"]
print(arn, base64.b64encode(blob).decode())')
  head -c "$((LMIB << 20))" "$WORK/plain" >"$WORK/lambda.pt"
  AWS_ENDPOINT_URL_KMS="$MOTO" "$BIN" encrypt -q --kms-key "$KEY_ARN" "$WORK/lambda.pt" "s3://$BUCKET/lambda.esdk"
  rm -f "$WORK"/*.t
  for ((round = 0; round < RUNS; round++)); do
    rm -rf "$WORK/root" && mkdir -m 700 "$WORK/root"
    timed cold env AWS_ENDPOINT_URL_KMS="$MOTO" KMS_ENVELOPE_BUNDLES="s3://$BUCKET/lambda.esdk=bundle.bin" \
      KMS_ENVELOPE_ROOT="$WORK/root" KMS_ENVELOPE_KMS_KEY_ARN="$KEY_ARN" RUST_LOG=warn "$LAMBDA" --once
    timed null_cold "$NULL" get "$BUCKET" lambda.esdk "$PART" "$CONCURRENCY"
    timed kms curl -fsS -o /dev/null --aws-sigv4 "aws:amz:us-east-1:kms" --user testing:testing \
      -H "X-Amz-Target: TrentService.Decrypt" -H "Content-Type: application/x-amz-json-1.1" \
      -d "{\"CiphertextBlob\":\"$BLOB\",\"KeyId\":\"$KEY_ARN\"}" "$MOTO/"
  done
  cmp -s "$WORK/lambda.pt" "$WORK/root/bundle.bin" || { echo "s3-model-bench.sh: the cold start's plaintext differs" >&2; exit 1; }
  base="$(awk -v a="$(secs null_cold)" -v b="$(secs kms)" 'BEGIN { print a + b }')"
  printf '\nlambda cold start, %d MiB bundle from S3 (600 MB/s aggregate): %.2f s, %s MiB peak RSS; null GETs %.2f s + KMS Decrypt %.3f s\n' \
    "$LMIB" "$(secs cold)" "$(rss_mib cold)" "$(secs null_cold)" "$(secs kms)"
  goal "lambda: cold start vs null GETs + one KMS Decrypt (theirs / ours)" "$(ratio "$base" "$(secs cold)")" ">=" 0.9
  stop_model
else
  printf '\nlambda cold start: skipped (needs KMS_ENVELOPE_MOTO_ENDPOINT and LAMBDA, the lambda_cold_start example)\n'
fi
printf 'load average after: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
