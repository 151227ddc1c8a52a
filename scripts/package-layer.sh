#!/usr/bin/env bash
# Builds the Lambda layer that installs the kms-envelope extension, for this machine's architecture:
#   scripts/package-layer.sh                 release build, then target/lambda-layer/kms-envelope-<arch>.zip
#   scripts/package-layer.sh --binary PATH   package an existing build of kms-envelope-extension instead
#   scripts/package-layer.sh --out FILE      write the zip to FILE
# The zip holds extensions/kms-envelope (mode 0755): Lambda unpacks layers under /opt and starts every
# executable in /opt/extensions, registering each under its file name. And kms-envelope-exec-wrapper (0755,
# scripts/kms-envelope-exec-wrapper), which a function may name in AWS_LAMBDA_EXEC_WRAPPER to get its secrets
# as environment variables.
#
# arm64 (Graviton) from an x86_64 machine: `cargo lambda build --release --extension --arm64
# --no-default-features --features extension,rsa --bin kms-envelope-extension` (cargo-lambda cross-compiles
# with zig; the features of the x86_64 build below), or
# `rustup target add aarch64-unknown-linux-gnu` plus an aarch64 linker; then pass the binary with --binary
# and publish with --compatible-architectures arm64.
set -euo pipefail
self="$(realpath "$0")"
cd "$(dirname "$0")/.."
source scripts/lambda-package.sh
package_args "$self" "$@"
lambda_arch "$self"

if [[ -z "$binary" ]]; then
  cargo build --release --locked --no-default-features --features extension,rsa --bin kms-envelope-extension
  binary="${CARGO_TARGET_DIR:-target}/release/kms-envelope-extension"
fi
out="${out:-${CARGO_TARGET_DIR:-target}/lambda-layer/kms-envelope-$arch.zip}"
zip_executable "$binary" "$out" extensions/kms-envelope
ZIP_MODE=a zip_executable scripts/kms-envelope-exec-wrapper "$out" kms-envelope-exec-wrapper

echo "layer: $out ($(stat -c %s "$out") bytes; extension binary $(stat -c %s "$binary") bytes, $arch)"
echo "publish it with:"
echo "  aws lambda publish-layer-version --layer-name kms-envelope-extension \\"
echo "    --zip-file fileb://$out --compatible-architectures $arch \\"
echo "    --description \"kms-envelope: decrypts KMS_ENVELOPE_BUNDLES into /tmp before the function starts\""
