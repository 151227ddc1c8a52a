#!/usr/bin/env bash
# Cold-start benchmark of the Lambda extension (a benchmark, not a test: it prints figures, asserts nothing).
#
#   scripts/extension-bench.sh [MiB]     default 100; RUNS (default 5) runs each, medians
#
# A Python function (awslambdaric) under AWS's Runtime Interface Emulator, KMS in a local moto, timed from
# the emulator's start to the first invoke's response, in three set-ups:
#   none       the function with no secrets at all (the floor: emulator, Python, awslambdaric)
#   extension  /opt/extensions/kms-envelope (release build) decrypts a MiB bundle into the root first
#   python     the function decrypts the same bundle in its own init with the Python ESDK (KMS keyring)
# and, outside the emulator, base = `cp` of the plaintext plus one bare KMS Decrypt.
# Goals (issue #15): extension - none <= 1.3 x base; (python - none) / (extension - none) >= 10.
# Needs root (a private mount namespace puts the extension at /opt/extensions) and .venv with awslambdaric.
set -euo pipefail

MIB="${1:-100}"
RUNS="${RUNS:-5}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO"
PY="$REPO/.venv/bin/python"
[[ -x "$PY" ]] || { echo "extension-bench.sh: $PY missing; run scripts/test.sh once to build .venv" >&2; exit 1; }
"$PY" -c 'import awslambdaric' || { echo "extension-bench.sh: awslambdaric missing from .venv" >&2; exit 1; }
RIE="$(scripts/rie.sh)"

echo "building the extension (release)..." >&2
cargo build -q --release --no-default-features --features extension,rsa --bin kms-envelope-extension
EXTENSION="${CARGO_TARGET_DIR:-$REPO/target}/release/kms-envelope-extension"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/kms-envelope-extension-bench.XXXXXX")"
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
export AWS_ENDPOINT_URL="$MOTO_URL" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

mkdir -p "$WORK/task" "$WORK/opt/extensions" "$WORK/empty-opt"
cp "$EXTENSION" "$WORK/opt/extensions/kms-envelope"
read -r KEY_ARN BLOB < <("$PY" -c '
import base64, boto3
kms = boto3.client("kms")
arn = kms.create_key()["KeyMetadata"]["Arn"]
blob = kms.generate_data_key(KeyId=arn, NumberOfBytes=32)["CiphertextBlob"]
print(arn, base64.b64encode(blob).decode())')
head -c "$((MIB << 20))" /dev/urandom >"$WORK/bundle.pt"
"$PY" tests/peers/esdk_peer.py encrypt --in "$WORK/bundle.pt" --out "$WORK/task/bundle.esdk" --kms-key "$KEY_ARN" \
  --kms-endpoint "$MOTO_URL" --suite 0x0478 --frame-length 65536 --context-json '{"purpose":"bench"}'

cat >"$WORK/task/none.py" <<'EOF'
def handler(event, context):
    return {"ok": True}
EOF
cat >"$WORK/task/ext.py" <<'EOF'
import os
with open(os.path.join(os.environ["KMS_ENVELOPE_ROOT"], "bundle.bin"), "rb") as f:
    SIZE = len(f.read())
def handler(event, context):
    return {"bytes": SIZE}
EOF
cat >"$WORK/task/pyesdk.py" <<EOF
import os, sys
sys.path.insert(0, "$REPO/tests/peers")
import esdk_peer
esdk_peer.run_one(["decrypt", "--in", "$WORK/task/bundle.esdk", "--out",
    os.path.join(os.environ["KMS_ENVELOPE_ROOT"], "bundle.bin"), "--kms-key", "$KEY_ARN",
    "--kms-endpoint", "$MOTO_URL", "--context-json", '{"purpose":"bench"}'])
with open(os.path.join(os.environ["KMS_ENVELOPE_ROOT"], "bundle.bin"), "rb") as f:
    SIZE = len(f.read())
def handler(event, context):
    return {"bytes": SIZE}
EOF
cat >"$WORK/ns.sh" <<'EOF'
#!/bin/bash
mount --bind "$BENCH_OPT" /opt || exit 9
exec "$@"
EOF
chmod +x "$WORK/ns.sh"

# cold MODULE OPT: seconds from the emulator's start to the first response (fresh root each run).
cold() {
  rm -rf "$WORK/root" && mkdir "$WORK/root"
  BENCH_OPT="$2" KMS_ENVELOPE_ROOT="$WORK/root" KMS_ENVELOPE_BUNDLES="bundle.esdk=bundle.bin" \
  KMS_ENVELOPE_KMS_KEY_ARN="$KEY_ARN" KMS_ENVELOPE_CONTEXT=purpose=bench LAMBDA_TASK_ROOT="$WORK/task" \
  "$PY" - "$WORK" "$RIE" "$PY" "$1" <<'EOF'
import json, os, socket, subprocess, sys, time, urllib.request
work, rie, py, module = sys.argv[1:5]
def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
for attempt in range(5):
    rp, ap = port(), port()
    log = open(os.path.join(work, "rie.log"), "w")
    t0 = time.perf_counter()
    p = subprocess.Popen(["unshare", "-m", os.path.join(work, "ns.sh"), rie,
        "--runtime-interface-emulator-address", f"127.0.0.1:{rp}", "--runtime-api-address", f"127.0.0.1:{ap}",
        py, "-m", "awslambdaric", module + ".handler"], cwd=os.path.join(work, "task"), stdout=log, stderr=log)
    while p.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", rp), timeout=1).close(); break
        except OSError:
            time.sleep(0.002)
    if p.poll() is not None:
        continue
    body = urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{rp}/2015-03-31/functions/function/invocations", data=b"{}"), timeout=300).read()
    dt = time.perf_counter() - t0
    p.terminate(); p.wait()
    if module != "none" and json.loads(body).get("bytes") != os.path.getsize(os.path.join(work, "bundle.pt")):
        sys.exit(f"{module}: wrong answer {body!r}\n" + open(os.path.join(work, "rie.log")).read())
    print(f"{dt:.4f}")
    break
else:
    sys.exit("the emulator never listened")
EOF
}
median() { # median MODULE OPT RUNS
  local i
  for ((i = 0; i < $3; i++)); do cold "$1" "$2"; done | sort -n | awk -v n="$3" '{ t[NR] = $1 } END { printf "%.4f\n", t[int((n + 1) / 2)] }'
}
base_once() {
  rm -rf "$WORK/root" && mkdir "$WORK/root"
  "$PY" - "$WORK" "$KEY_ARN" "$BLOB" "$MOTO_URL" <<'EOF'
import base64, shutil, subprocess, sys, time, boto3, os
work, arn, blob, url = sys.argv[1:5]
kms = boto3.client("kms", endpoint_url=url)
kms.decrypt(CiphertextBlob=base64.b64decode(blob), KeyId=arn)  # warm the client: the base is one call
t0 = time.perf_counter()
shutil.copyfile(os.path.join(work, "bundle.pt"), os.path.join(work, "root", "bundle.bin"))
kms.decrypt(CiphertextBlob=base64.b64decode(blob), KeyId=arn)
print(f"{time.perf_counter() - t0:.4f}")
EOF
}

cold ext "$WORK/opt" >/dev/null # warm the page cache, the binary and moto
none_s=$(median none "$WORK/empty-opt" "$RUNS")
ext_s=$(median ext "$WORK/opt" "$RUNS")
py_s=$(median pyesdk "$WORK/empty-opt" "$(( RUNS < 3 ? RUNS : 3 ))")
base_s=$(for ((i = 0; i < RUNS; i++)); do base_once; done | sort -n | awk -v n="$RUNS" '{ t[NR] = $1 } END { printf "%.4f\n", t[int((n + 1) / 2)] }')
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v mib="$MIB" -v n="$none_s" -v e="$ext_s" -v p="$py_s" -v b="$base_s" 'BEGIN {
  printf "extension cold start, Python function under the emulator, %d MiB bundle (medians)\n", mib
  printf "  none       no secrets                           %8.3f s\n", n
  printf "  extension  kms-envelope decrypts first          %8.3f s  (+%.3f s)\n", e, e - n
  printf "  python     Python ESDK in the function init     %8.3f s  (+%.3f s)\n", p, p - n
  printf "  base       cp + one KMS Decrypt (no emulator)   %8.3f s\n", b
  r = (e - n) / b; q = (p - n) / (e - n)
  printf "ratios: extension adds %.2f x base (goal <= 1.3: %s); python adds %.1f x what the extension adds (goal >= 10: %s)\n", r, (r <= 1.3 ? "MET" : "MISSED"), q, (q >= 10 ? "MET" : "MISSED")
}'
