# Sourced by scripts/package-layer.sh and scripts/package-batch.sh: their shared command line, this machine's
# Lambda architecture, and the zip of one executable.

# package_args SCRIPT "$@": sets `binary` and `out` from --binary PATH and --out FILE; --help prints the
# script's opening comment.
package_args() {
  local script="$1"
  shift
  binary=""
  out=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --binary) binary="$2"; shift 2 ;;
      --out) out="$2"; shift 2 ;;
      -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$script"; exit 0 ;;
      *) echo "$(basename "$script"): unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
  done
}

# lambda_arch SCRIPT: sets `arch` to Lambda's name for this machine's architecture (x86_64 or arm64).
lambda_arch() {
  case "$(uname -m)" in
    x86_64) arch=x86_64 ;;
    aarch64|arm64) arch=arm64 ;;
    *) echo "$(basename "$1"): Lambda runs x86_64 and arm64 only, not $(uname -m)" >&2; exit 2 ;;
  esac
}

# zip_executable BINARY OUT MEMBER: OUT holds one file, MEMBER, with BINARY's bytes and mode 0755. Python's
# zipfile rather than zip(1), which not every machine has; the mode travels in external_attr.
# ZIP_MODE=a adds MEMBER to an existing OUT instead.
zip_executable() {
  [[ -x "$1" ]] || { echo "$1 is not an executable" >&2; exit 2; }
  mkdir -p "$(dirname "$2")"
  python3 - "$1" "$2" "$3" "${ZIP_MODE:-w}" <<'PY'
import sys, zipfile
binary, out, member, mode = sys.argv[1:]
info = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
info.external_attr = (0o100755 << 16)
info.compress_type = zipfile.ZIP_DEFLATED
with open(binary, "rb") as f, zipfile.ZipFile(out, mode) as z:
    z.writestr(info, f.read())
PY
}
