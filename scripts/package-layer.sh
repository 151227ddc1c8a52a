#!/usr/bin/env bash
# Builds the Lambda layer that installs the kms-envelope extension, for this machine's architecture:
#   scripts/package-layer.sh                 release build, then target/lambda-layer/kms-envelope-<arch>.zip
#   scripts/package-layer.sh --binary PATH   package an existing build of kms-envelope-extension instead
#   scripts/package-layer.sh --out FILE      write the zip to FILE
# The zip holds one file, extensions/kms-envelope (mode 0755): Lambda unpacks layers under /opt and starts
# every executable in /opt/extensions, registering each under its file name.
#
# arm64 (Graviton) from an x86_64 machine: `cargo lambda build --release --extension --arm64
# --no-default-features --features extension,rsa --bin kms-envelope-extension` (cargo-lambda cross-compiles
# with zig; the features of the x86_64 build below), or
# `rustup target add aarch64-unknown-linux-gnu` plus an aarch64 linker; then pass the binary with --binary
# and publish with --compatible-architectures arm64.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "package-layer.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

case "$(uname -m)" in
  x86_64) arch=x86_64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) echo "package-layer.sh: Lambda runs x86_64 and arm64 only, not $(uname -m)" >&2; exit 2 ;;
esac

if [[ -z "$binary" ]]; then
  cargo build --release --locked --no-default-features --features extension,rsa --bin kms-envelope-extension
  binary="${CARGO_TARGET_DIR:-target}/release/kms-envelope-extension"
fi
[[ -x "$binary" ]] || { echo "package-layer.sh: $binary is not an executable" >&2; exit 2; }
out="${out:-${CARGO_TARGET_DIR:-target}/lambda-layer/kms-envelope-$arch.zip}"
mkdir -p "$(dirname "$out")"

# Python's zipfile rather than zip(1), which not every machine has; the mode travels in external_attr.
python3 - "$binary" "$out" <<'PY'
import sys, zipfile
binary, out = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("extensions/kms-envelope", date_time=(2020, 1, 1, 0, 0, 0))
info.external_attr = (0o100755 << 16)
info.compress_type = zipfile.ZIP_DEFLATED
with open(binary, "rb") as f, zipfile.ZipFile(out, "w") as z:
    z.writestr(info, f.read())
PY

echo "layer: $out ($(stat -c %s "$out") bytes; extension binary $(stat -c %s "$binary") bytes, $arch)"
echo "publish it with:"
echo "  aws lambda publish-layer-version --layer-name kms-envelope-extension \\"
echo "    --zip-file fileb://$out --compatible-architectures $arch \\"
echo "    --description \"kms-envelope: decrypts KMS_ENVELOPE_BUNDLES into /tmp before the function starts\""
