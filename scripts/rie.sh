#!/usr/bin/env bash
# Fetches AWS's Lambda Runtime Interface Emulator (RIE) and prints its path.
#
#   scripts/rie.sh            install if needed, print the path of the executable
#
# The RIE is not on any registry we can reach as a binary of its own, but the `aws-sam-cli` wheel on PyPI
# ships it (samcli/local/rapid/aws-lambda-rie-x86_64). We download that one wheel (no dependencies), take
# the emulator out of it, and keep it under .venv/rie/ (git-ignored). A second run finds it and does no
# network access. The version is pinned so the emulator under test does not move.
set -euo pipefail

SAM_VERSION="1.170.0"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DIR="$REPO/.venv/rie"
case "$(uname -m)" in
  x86_64) ARCH=x86_64 ;;
  aarch64 | arm64) ARCH=arm64 ;;
  *) echo "rie.sh: no RIE build for $(uname -m)" >&2; exit 1 ;;
esac
RIE="$DIR/aws-lambda-rie-$ARCH-sam-$SAM_VERSION"

if [[ -x "$RIE" ]]; then
  echo "$RIE"
  exit 0
fi

PY="${KMS_ENVELOPE_PYTHON:-$REPO/.venv/bin/python}"
[[ -x "$PY" ]] || PY=python3
mkdir -p "$DIR"
work="$(mktemp -d "$DIR/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  "aws-sam-cli==$SAM_VERSION" -d "$work" >&2 || { echo "rie.sh: pip download aws-sam-cli failed" >&2; exit 1; }
wheel="$(ls "$work"/aws_sam_cli-*.whl)"
member="samcli/local/rapid/aws-lambda-rie-$ARCH"
"$PY" - "$wheel" "$member" "$work/rie" <<'EOF'
import sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    dst.write(src.read())
EOF
chmod 0755 "$work/rie"
mv "$work/rie" "$RIE" # atomic: a concurrent run sees the whole file or none
echo "$RIE"
