#!/usr/bin/env bash
# Small messages and data-key caching (issue 14), in one run:
#   * 1 KiB raw-AES encrypt+decrypt round trips per second on one core (taskset -c 0), through the one-shot
#     helpers into reused buffers (benches/small.rs);
#   * the fixed-cost floor measured by the same bench: two HKDF expansions + one AES-GCM seal and open of
#     1 KiB per message;
#   * the Python ESDK (MPL raw AES keyring, the test venv) doing the same round trips, same core, same run;
#   * a KMS keyring through moto, 1,000 round trips with a max-messages-100 cache vs 100 without: round trips
#     per second and KMS calls per 1,000 messages;
# then the ratios with the issue's goals.
#
#   scripts/cache-bench.sh                  everything (needs the venv of scripts/test.sh and a moto server)
#   BENCH_SECONDS=1 scripts/cache-bench.sh  shorter measurements
#   KMS_ENVELOPE_MOTO_ENDPOINT=URL          an already running moto (else one is started on a free port)
#   BENCH_CARGO_FLAGS=--no-default-features  a raw-key-only build (RustCrypto AES-GCM, no KMS part): quick
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO"
die() { echo "cache-bench.sh: error: $*" >&2; exit 1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# goal LINE: "NAME ratio R goal OP G MET/MISSED"
goal() {
  local name="$1" r="$2" op="$3" g="$4" met
  met="$(awk -v r="$r" -v g="$g" -v op="$op" 'BEGIN { print ((op == ">=" ? r >= g : r <= g) ? "MET" : "MISSED") }')"
  printf '%-44s ratio %8sx  goal %s %sx  %s\n' "$name" "$r" "$op" "$g" "$met"
}
SECONDS_EACH="${BENCH_SECONDS:-3}"
PY="${KMS_ENVELOPE_PYTHON:-$REPO/.venv/bin/python}"
[[ -x "$PY" ]] || die "no Python venv at $PY (run scripts/test.sh once, or set KMS_ENVELOPE_PYTHON)"
command -v taskset >/dev/null || die "taskset not found (util-linux)"

echo "== build: benches/small.rs (release)"
read -ra FLAGS <<<"${BENCH_CARGO_FLAGS:-}"
# The floor is measured with the crate's internals, public only with `fuzzing` (Cargo.toml [[bench]] small).
FLAGS+=(--features fuzzing)
cargo bench -q "${FLAGS[@]}" --bench small --no-run 2>/dev/null || cargo bench "${FLAGS[@]}" --bench small --no-run
BENCH="$(cargo bench -q "${FLAGS[@]}" --bench small --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*small[^"]*\)".*/\1/p' | tail -1)"
[[ -x "$BENCH" ]] || die "could not find the built bench binary"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/kms-envelope-cache-bench.XXXXXX")"
MOTO_PID=""
cleanup() { [[ -n "$MOTO_PID" ]] && kill "$MOTO_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
ENDPOINT="${KMS_ENVELOPE_MOTO_ENDPOINT:-}"
if [[ -z "$ENDPOINT" ]]; then
  PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  "$PY" -m moto.server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
  MOTO_PID=$!
  ENDPOINT="http://127.0.0.1:$PORT"
  for _ in $(seq 100); do curl -fsS -o /dev/null --max-time 1 "$ENDPOINT/moto-api/" 2>/dev/null && break; sleep 0.1; done
fi

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), load $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== ours (one core): 1 KiB raw AES round trips, the floor, KMS with and without the cache"
BENCH_SECONDS="$SECONDS_EACH" BENCH_KMS_ENDPOINT="$ENDPOINT" AWS_EC2_METADATA_DISABLED=true \
  taskset -c 0 "$BENCH" | tee "$WORK/ours"
get() { awk -v k="$1" '$1 == k { print $2 }' "$WORK/ours"; }

echo "== Python ESDK (one core): 1 KiB raw AES round trips"
taskset -c 0 "$PY" - "$SECONDS_EACH" >"$WORK/python" <<'PYEOF'
import sys, time
import aws_encryption_sdk
from aws_encryption_sdk.identifiers import CommitmentPolicy
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
from aws_cryptographic_material_providers.mpl import models as m
from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
keyring = mpl.create_raw_aes_keyring(input=m.CreateRawAesKeyringInput(
    key_namespace="bench", key_name="key", wrapping_key=bytes([7] * 32),
    wrapping_alg=m.AesWrappingAlg.ALG_AES256_GCM_IV12_TAG16))
client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
suite = aws_encryption_sdk.Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY  # 0x0478, as ours
data = bytes(i * 131 % 251 for i in range(1024))
def once():
    ct, _ = client.encrypt(source=data, keyring=keyring, algorithm=suite)
    pt, _ = client.decrypt(source=ct, keyring=keyring)
    assert pt == data
for _ in range(20):
    once()
start, n = time.perf_counter(), 0
while time.perf_counter() - start < float(sys.argv[1]):
    once()
    n += 1
print(f"python_round_trips_per_s {n / (time.perf_counter() - start):.1f}")
PYEOF
cat "$WORK/python"
python_rate="$(awk '{ print $2 }' "$WORK/python")"

echo "== results"
ours="$(get raw_aes_round_trips_per_s)"
floor="$(get floor_per_s)"
printf '1 KiB raw AES round trips/s, one core: ours %s, Python ESDK %s, floor %s\n' "$ours" "$python_rate" "$floor"
printf 'context (AWS published, 12-CPU machine, not this run): ESDK-C 1597/s, ESDK-Rust 1061/s\n'
goal "ours vs Python ESDK (1 KiB round trips)" "$(ratio "$ours" "$python_rate")" ">=" 100
goal "floor vs ours (fixed cost over the floor)" "$(ratio "$floor" "$ours")" "<=" 3
if [[ -n "$(get kms_cached_round_trips_per_s)" ]]; then
  printf 'KMS (moto): uncached %s round trips/s, %s calls per 1000; cached %s round trips/s, %s calls per 1000\n' \
    "$(get kms_uncached_round_trips_per_s)" "$(get kms_uncached_calls_per_1000)" \
    "$(get kms_cached_round_trips_per_s)" "$(get kms_cached_calls_per_1000)"
  goal "KMS calls: uncached / cached" "$(ratio "$(get kms_uncached_calls_per_1000)" "$(get kms_cached_calls_per_1000)")" ">=" 50
  goal "KMS round trips/s: cached / uncached" "$(ratio "$(get kms_cached_round_trips_per_s)" "$(get kms_uncached_round_trips_per_s)")" ">=" 20
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
