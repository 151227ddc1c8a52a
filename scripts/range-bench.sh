#!/usr/bin/env bash
# Random access goals of issue #13, file part: LEN plaintext bytes (default 1 MiB) from the middle of a
# SIZE-byte message (default 4 GiB) in a file.
#
#   scripts/range-bench.sh                      SIZE=$((64 << 20)) scripts/range-bench.sh for a quick run
#
# Variables: SIZE (plaintext bytes), LEN (bytes read by range), FRAME (frame length, default 65536), RUNS
# (default 3; medians), PROFILE (release, or debug for a quick check), WORK (scratch directory; needs
# about 2 x SIZE of disk: the message and one full decrypt's output, removed after each run).
# Prints one line per goal, as scripts/bench-goals.sh does:
#   <what>   ratio 1.00x  goal <= 1x  MET
# 1. bytes read from the file (a counting source around it, in examples/range_bench.rs) against the
#    header + the frames covering the range + the final frame. The header is read by a first guess of
#    4 KiB (one request for most headers, which matters for S3), so up to 4 KiB past a short header is read
#    too; the goal line allows exactly that and says so.
# 2. wall time of one decrypt_range call (header, keyring, final frame, covering frames; median of RUNS)
#    against the CLI's full decrypt of the same file to a file (--no-fsync; median of RUNS). Goal: the
#    full decrypt takes at least 100 times as long.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZE="${SIZE:-$((4 << 30))}"
LEN="${LEN:-$((1 << 20))}"
FRAME="${FRAME:-65536}"
RUNS="${RUNS:-3}"
PROFILE="${PROFILE:-release}"
((LEN <= SIZE)) || { echo "range-bench.sh: LEN ($LEN) exceeds SIZE ($SIZE)" >&2; exit 1; }

own_work=0
if [[ -z "${WORK:-}" ]]; then
  own_work=1
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/kms-envelope-range.XXXXXX")"
fi
cleanup() { rm -f "$WORK/range.enc" "$WORK/range.out"; ((own_work)) && rm -rf "$WORK"; return 0; }
trap cleanup EXIT

flags=()
[[ $PROFILE == release ]] && flags+=(--release)
(cd "$REPO" && cargo build -q "${flags[@]}" --bin kms-envelope --example range_bench)
target="${CARGO_TARGET_DIR:-$REPO/target}/$PROFILE"
BIN="$target/kms-envelope"
EXAMPLE="$target/examples/range_bench"

head -c 32 /dev/urandom >"$WORK/range.key"
K=(--raw-key-file "$WORK/range.key" --key-namespace bench --key-name key)
echo "range-bench: encrypting $SIZE bytes (frame length $FRAME) into $WORK/range.enc" >&2
head -c "$SIZE" /dev/urandom | "$BIN" encrypt "${K[@]}" --frame-length "$FRAME" --no-fsync - "$WORK/range.enc"

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

full_times=()
for ((i = 0; i < RUNS; i++)); do
  rm -f "$WORK/range.out"
  t0="$(date +%s.%N)"
  "$BIN" decrypt "${K[@]}" --no-fsync "$WORK/range.enc" "$WORK/range.out"
  t1="$(date +%s.%N)"
  full_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')")
  rm -f "$WORK/range.out"
done
full="$(printf '%s\n' "${full_times[@]}" | median)"

start=$((SIZE / 2 - LEN / 2))
line="$("$EXAMPLE" "$WORK/range.enc" "$WORK/range.key" "$start" "$LEN" "$RUNS")"
echo "range-bench: $line (full decrypt ${full}s)" >&2
field() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" <<<"$line"; }
read_bytes="$(field bytes_read)"
header="$(field header_len)"
frames="$(field frames_bytes)"
final="$(field final_bytes)"
seconds="$(field seconds)"
guess=$((header < 4096 ? 4096 - header : 0))

awk -v r="$read_bytes" -v h="$header" -v f="$frames" -v l="$final" -v g="$guess" -v size="$SIZE" -v len="$LEN" 'BEGIN {
  bound = h + f + l
  printf "%-58s ratio %.4fx  goal <= 1x (+%d B of header guess)  %s\n",
    sprintf("file range %.0f B of %.0f B: bytes read / (header+frames+final)", len, size), r / bound, g,
    (r <= bound + g ? "MET" : "MISSED")
}'
awk -v full="$full" -v range="$seconds" -v size="$SIZE" -v len="$LEN" 'BEGIN {
  printf "%-58s ratio %.1fx  goal >= 100x  %s\n",
    sprintf("file range %.0f B of %.0f B: full decrypt time / range time", len, size), full / range,
    (full >= 100 * range ? "MET" : "MISSED")
}'
