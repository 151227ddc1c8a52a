#!/usr/bin/env bash
# The S3 Batch Operations lines of issue #26: objects per second and KMS calls per object for BENCH_OBJECTS
# (default 1,000) small messages re-encrypted in place by the kms-envelope-batch binary in the Lambda Runtime
# Interface Emulator, on S3 and KMS in moto, with and without the profile's data-key cache (benches/batch.rs,
# which says what each figure counts). Goal lines, with the code's own figures:
#   KMS calls per object with cache      goal <= 1.1   (one Decrypt per object, one GenerateDataKey per entry)
#   KMS calls per object without cache   goal = 2      (one Decrypt and one GenerateDataKey per object)
# No speed goal: moto's speed is not AWS's. The objects per second and ms per object feed the README's cost
# model.
#
#   scripts/batch-bench.sh                        release build (cargo bench)
#   BENCH_PROFILE=dev scripts/batch-bench.sh      the debug build (quicker to build; moto is the bottleneck)
#   BENCH_OBJECTS=N BENCH_ENVIRONMENTS=E          objects, and execution environments at once (default 2)
#   BENCH_CARGO_FLAGS="--features ..."            other features (default: --no-default-features --features batch)
#   KMS_ENVELOPE_MOTO_ENDPOINT=URL                an already running moto (else one is started on a free port)
#
# Each goal line: <what>  <value>  goal <op> <target>  MET|MISSED.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO"
die() { echo "batch-bench.sh: error: $*" >&2; exit 1; }
PY="${KMS_ENVELOPE_PYTHON:-$REPO/.venv/bin/python}"
[[ -x "$PY" ]] || die "no Python venv at $PY (run scripts/test.sh once, or set KMS_ENVELOPE_PYTHON)"
KMS_ENVELOPE_RIE="${KMS_ENVELOPE_RIE:-$(scripts/rie.sh)}" || die "cannot fetch the Lambda Runtime Interface Emulator"
export KMS_ENVELOPE_RIE

MOTO_PID=""
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kms-envelope-batch-bench.XXXXXX")"
cleanup() { [[ -n "$MOTO_PID" ]] && kill "$MOTO_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
if [[ -z "${KMS_ENVELOPE_MOTO_ENDPOINT:-}" ]]; then
  PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  "$PY" -m moto.server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
  MOTO_PID=$!
  KMS_ENVELOPE_MOTO_ENDPOINT="http://127.0.0.1:$PORT"
  for _ in $(seq 100); do curl -fsS -o /dev/null --max-time 1 "$KMS_ENVELOPE_MOTO_ENDPOINT/moto-api/" 2>/dev/null && break; sleep 0.1; done
fi
export KMS_ENVELOPE_MOTO_ENDPOINT

read -ra FLAGS <<<"${BENCH_CARGO_FLAGS:---no-default-features --features batch}"
cargo bench --profile "${BENCH_PROFILE:-bench}" "${FLAGS[@]}" --bench batch
