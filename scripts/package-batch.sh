#!/usr/bin/env bash
# Builds the S3 Batch Operations function for Lambda's provided.al2023 runtime, for this machine's architecture:
#   scripts/package-batch.sh                 release build, then target/lambda-function/kms-envelope-batch-<arch>.zip
#   scripts/package-batch.sh --binary PATH   package an existing build of kms-envelope-batch instead
#   scripts/package-batch.sh --out FILE      write the zip to FILE
# The zip holds one file, bootstrap (mode 0755): an OS-only runtime starts the executable named bootstrap at
# the root of the function's package.
#
# provided.al2023 has glibc 2.34. A binary linked on a machine with a newer glibc may ask for symbol versions
# AL2023 lacks and fail at start ("version `GLIBC_2.3x' not found"): the script lists the versions the binary
# needs and refuses to package one that needs more than 2.34. Then build on AL2023 (or an older glibc), or
# with `cargo lambda build --release --no-default-features --features batch --bin kms-envelope-batch`
# (cargo-lambda links against an older glibc with zig; add --arm64 for Graviton), and pass --binary.
set -euo pipefail
self="$(realpath "$0")"
cd "$(dirname "$0")/.."
source scripts/lambda-package.sh
package_args "$self" "$@"
lambda_arch "$self"

if [[ -z "$binary" ]]; then
  cargo build --release --locked --no-default-features --features batch --bin kms-envelope-batch
  binary="${CARGO_TARGET_DIR:-target}/release/kms-envelope-batch"
fi
[[ -x "$binary" ]] || { echo "package-batch.sh: $binary is not an executable" >&2; exit 2; }

# The newest glibc symbol version the binary needs, from its dynamic symbol table.
command -v objdump >/dev/null || { echo "package-batch.sh: objdump not found (binutils)" >&2; exit 2; }
glibc="$(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
if [[ -n "$glibc" ]] && [[ "$(printf '%s\n2.34\n' "$glibc" | sort -V | tail -1)" != "2.34" ]]; then
  echo "package-batch.sh: $binary needs glibc $glibc; provided.al2023 has 2.34 (see --help for cargo lambda)" >&2
  exit 1
fi

out="${out:-${CARGO_TARGET_DIR:-target}/lambda-function/kms-envelope-batch-$arch.zip}"
zip_executable "$binary" "$out" bootstrap

echo "function: $out ($(stat -c %s "$out") bytes; binary $(stat -c %s "$binary") bytes, $arch, needs glibc ${glibc:-none})"
echo "create it with (the role and profiles: README, \"A whole bucket: S3 Batch Operations\"):"
echo "  aws lambda create-function --function-name kms-envelope-batch --runtime provided.al2023 \\"
echo "    --architectures $arch --handler bootstrap --memory-size 512 --timeout 900 \\"
echo "    --zip-file fileb://$out --role arn:aws:iam::ACCOUNT:role/kms-envelope-batch \\"
echo "    --environment 'Variables={KMS_ENVELOPE_BATCH_PROFILES=...}'"
