#!/usr/bin/env bash
# S3 goals of issue #13, through moto, in one run:
#   - whole-object encrypt to S3 (multipart upload) and decrypt from S3 (parallel ranged GETs) of
#     S3_BENCH_MIB (default 1024) MiB: wall time against a boto3 plain upload/download (its transfer
#     manager, as `aws s3 cp`) of the same bytes, and our peak RSS (goal <= (N + 2) x part size + 64 MiB:
#     the transfer's buffers at the CLI's defaults, 16 in flight of 8 MiB, plus the 64 MiB the process and its
#     frame pipeline had as their whole goal when 3 were in flight; scripts/s3-model-bench.sh argues them);
#   - 1 MiB from the middle with `decrypt --range` against a KMS-wrapped message: the GetObject/HeadObject
#     requests, KMS calls and bytes transferred, counted by a proxy in front of moto (goal: <= 3 GETs,
#     1 KMS call).
#
#   BIN=target/release/kms-envelope scripts/s3-bench.sh          S3_BENCH_MIB=16 for a quick run
#
# Needs moto (KMS_ENVELOPE_MOTO_ENDPOINT, e.g. from scripts/test.sh's environment), the venv's python with
# boto3 (KMS_ENVELOPE_PYTHON, or .venv/bin/python) and /usr/bin/time. Prints one line per goal:
#   <what>   ratio 0.93x  goal >= 0.8x  MET
set -euo pipefail

: "${BIN:?set BIN to the kms-envelope binary}"
MIB="${S3_BENCH_MIB:-1024}"
ENDPOINT="${KMS_ENVELOPE_MOTO_ENDPOINT:?moto is not running (KMS_ENVELOPE_MOTO_ENDPOINT is unset)}"
PY="${KMS_ENVELOPE_PYTHON:-$(dirname "$0")/../.venv/bin/python}"
[[ -x /usr/bin/time ]] || { echo "s3-bench.sh: /usr/bin/time not found (apt-get install time)" >&2; exit 1; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kms-envelope-s3-bench.XXXXXX")"
PROXY_PID=""
cleanup() {
  [[ -n "$PROXY_PID" ]] && kill "$PROXY_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_ENDPOINT_URL_S3="$ENDPOINT" AWS_ENDPOINT_URL_KMS="$ENDPOINT"
unset AWS_PROFILE AWS_ENDPOINT_URL
BUCKET="kms-envelope-s3-bench-$$-$(date +%s)"

# boto3 helper: mkbucket, createkey, upload FILE KEY, download KEY FILE (transfer manager, 8 MiB parts).
cat >"$WORK/s3.py" <<'EOF'
import os, sys, boto3
from boto3.s3.transfer import TransferConfig
endpoint, op, *args = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint)
config = TransferConfig(multipart_chunksize=8 << 20, max_concurrency=4)
bucket = os.environ["BUCKET"]
if op == "mkbucket":
    s3.create_bucket(Bucket=bucket)
elif op == "createkey":
    print(boto3.client("kms", endpoint_url=endpoint).create_key()["KeyMetadata"]["Arn"])
elif op == "upload":
    s3.upload_file(args[0], bucket, args[1], Config=config)
elif op == "download":
    s3.download_file(bucket, args[0], args[1], Config=config)
EOF
export BUCKET
"$PY" "$WORK/s3.py" "$ENDPOINT" mkbucket
head -c 32 /dev/urandom >"$WORK/key"
K="--raw-key-file $WORK/key --key-namespace bench --key-name key"
head -c "$((MIB << 20))" /dev/urandom >"$WORK/plain"

# timed NAME CMD...: runs CMD, records "seconds peak_rss_kib" in $WORK/NAME.t
timed() {
  local name="$1"
  shift
  /usr/bin/time -f "%e %M" -o "$WORK/$name.t" "$@" >/dev/null
}
secs() { cut -d' ' -f1 "$WORK/$1.t"; }
rss_mib() { awk '{ printf "%.1f", $2 / 1024 }' "$WORK/$1.t"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
goal() {
  local name="$1" r="$2" op="$3" g="$4" met
  met="$(awk -v r="$r" -v g="$g" -v op="$op" 'BEGIN { print ((op == ">=" ? r >= g : r <= g) ? "MET" : "MISSED") }')"
  printf '%-52s ratio %8sx  goal %s %sx  %s\n' "$name" "$r" "$op" "$g" "$met"
}

timed boto_up "$PY" "$WORK/s3.py" "$ENDPOINT" upload "$WORK/plain" plain.bin
timed enc "$BIN" encrypt -q $K "$WORK/plain" "s3://$BUCKET/plain.bin.esdk"
timed boto_down "$PY" "$WORK/s3.py" "$ENDPOINT" download plain.bin "$WORK/boto.out"
timed dec "$BIN" decrypt -q --no-fsync $K "s3://$BUCKET/plain.bin.esdk" "$WORK/dec.out"
cmp -s "$WORK/plain" "$WORK/dec.out" || { echo "s3-bench.sh: the S3 round trip differs" >&2; exit 1; }
cmp -s "$WORK/plain" "$WORK/boto.out" || { echo "s3-bench.sh: the boto3 round trip differs" >&2; exit 1; }

printf 'S3 through moto, %d MiB (wall seconds, MiB/s, peak RSS)\n' "$MIB"
for name in boto_up enc boto_down dec; do
  printf '  %-10s %8.2f s  %8.1f MiB/s  %7s MiB RSS\n' "$name" "$(secs $name)" \
    "$(awk -v m="$MIB" -v s="$(secs $name)" 'BEGIN { printf "%.1f", (s > 0 ? m / s : 0) }')" "$(rss_mib $name)"
done
goal "encrypt to S3 vs boto3 upload (boto3 time / ours)" "$(ratio "$(secs boto_up)" "$(secs enc)")" ">=" 0.8
goal "decrypt from S3 vs boto3 download (boto3 time / ours)" "$(ratio "$(secs boto_down)" "$(secs dec)")" ">=" 0.8
# The transfer's bound from the CLI's own defaults, as its --help states them.
HELP="$("$BIN" decrypt --help | tr -s ' \n' ' ')"
N="$(sed -n 's/.*--s3-concurrency <N>[^[]*\[default: \([0-9]*\)\].*/\1/p' <<<"$HELP")"
PART_MIB="$(sed -n 's/.*--s3-part-size <SIZE>[^[]*\[default: \([0-9]*\)MiB.*/\1/p' <<<"$HELP")"
BOUND=$(((N + 2) * PART_MIB + 64))
goal "encrypt to S3: peak RSS / ((N + 2) x part + 64 MiB = $BOUND MiB)" "$(ratio "$(rss_mib enc)" $BOUND)" "<=" 1
goal "decrypt from S3: peak RSS / ((N + 2) x part + 64 MiB = $BOUND MiB)" "$(ratio "$(rss_mib dec)" $BOUND)" "<=" 1

# 1 MiB from the middle of a KMS-wrapped message, through a proxy that counts requests and bytes.
KEY_ARN="$("$PY" "$WORK/s3.py" "$ENDPOINT" createkey)"
"$BIN" encrypt -q --kms-key "$KEY_ARN" "$WORK/plain" "s3://$BUCKET/kms.esdk"
cat >"$WORK/proxy.py" <<'EOF'
import http.client, http.server, json, sys, threading, urllib.parse
upstream = urllib.parse.urlparse(sys.argv[1])
counts, lock = {"GET": 0, "HEAD": 0, "KMS": 0, "bytes": 0}, threading.Lock()
class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/counts":
            out = json.dumps(counts).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(out))); self.end_headers()
            self.wfile.write(out); return
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port)
        conn.request(self.command, self.path, body, dict(self.headers))
        resp = conn.getresponse()
        data = resp.read()
        with lock:
            if "TrentService" in (self.headers.get("X-Amz-Target") or ""):
                counts["KMS"] += 1
            elif self.command in ("GET", "HEAD"):
                counts[self.command] += 1
                counts["bytes"] += len(data)
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            # A HEAD's Content-Length is the object's, not that of the (empty) body.
            if k.lower() not in ("transfer-encoding", "connection") and (k.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
    do_GET = do_HEAD = do_POST = do_PUT = forward
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
print(server.server_address[1], flush=True)
server.serve_forever()
EOF
"$PY" "$WORK/proxy.py" "$ENDPOINT" >"$WORK/proxy.port" &
PROXY_PID=$!
for _ in $(seq 50); do [[ -s "$WORK/proxy.port" ]] && break; sleep 0.1; done
PROXY="http://127.0.0.1:$(cat "$WORK/proxy.port")"
SIZE=$((MIB << 20))
START=$((SIZE / 2 - (1 << 19)))
END=$((START + (1 << 20) - 1))
timed range env AWS_ENDPOINT_URL_S3="$PROXY" AWS_ENDPOINT_URL_KMS="$PROXY" \
  "$BIN" decrypt -q --range "$START-$END" --kms-key "$KEY_ARN" "s3://$BUCKET/kms.esdk" "$WORK/range.out"
head -c $((END + 1)) "$WORK/plain" | tail -c $((END - START + 1)) | cmp -s - "$WORK/range.out" \
  || { echo "s3-bench.sh: the range differs from the plaintext's slice" >&2; exit 1; }
COUNTS="$(curl -fsS "$PROXY/counts")"
count() { "$PY" -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$COUNTS" "$1"; }
printf '1 MiB from the middle of %d MiB (decrypt --range, KMS key): %s s, %s GET + %s HEAD, %s KMS call(s), %s bytes transferred, %s MiB RSS\n' \
  "$MIB" "$(secs range)" "$(count GET)" "$(count HEAD)" "$(count KMS)" "$(count bytes)" "$(rss_mib range)"
goal "range: GetObject requests / 3" "$(ratio "$(count GET)" 3)" "<=" 1
goal "range: KMS calls / 1" "$(ratio "$(count KMS)" 1)" "<=" 1
goal "range: bytes transferred / (1 MiB + 64 KiB)" "$(ratio "$(count bytes)" $(((1 << 20) + (64 << 10))))" "<=" 1
