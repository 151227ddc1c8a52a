#!/usr/bin/env bash
# The CLI goal lines of issue #12, each unpinned and pinned to one core (`taskset -c 0`): file to file with
# --no-fsync against `cp`, durable against `cp` then `sync`, pipes and stdout against the file path, and peak
# RSS.
# Sourced by scripts/bench.sh (which sets the variables below); also runs on its own:
#
#   BIN=target/release/kms-envelope scripts/bench-goals.sh      BENCH_MIB (default 64), RUNS (default 3)
#
# Variables: BIN (the CLI), PLAIN (the input; made here from /dev/urandom if unset), WORK (scratch
# directory), FRAME, RUNS, RSS_4GIB (1: also the peak RSS of a 4 GiB input). Prints one line per goal:
#   <what>   ratio 0.93x  goal >= 0.9x  MET
# where the ratio is the peer's time over ours (above 1: we are faster).
set -euo pipefail

standalone=0
if [[ -z "${WORK:-}" ]]; then
  standalone=1
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/kms-envelope-goals.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
fi
: "${BIN:?set BIN to the kms-envelope binary}"
FRAME="${FRAME:-65536}"
RUNS="${RUNS:-3}"
RSS_4GIB="${RSS_4GIB:-0}"
GLOG="$WORK/goals.log"
if [[ -z "${PLAIN:-}" ]]; then
  PLAIN="$WORK/goals.plain"
  head -c "$((${BENCH_MIB:-64} << 20))" /dev/urandom >"$PLAIN"
fi
[[ -f "$WORK/goals.key" ]] || head -c 32 /dev/urandom >"$WORK/goals.key"
SIZE="$(stat -c %s "$PLAIN")"
[[ -x /usr/bin/time ]] || { echo "bench-goals.sh: /usr/bin/time not found (apt-get install time)" >&2; exit 1; }
command -v taskset >/dev/null || { echo "bench-goals.sh: taskset not found (util-linux)" >&2; exit 1; }

q() { printf '%q' "$1"; }
B="$(q "$BIN")"
K="--raw-key-file $(q "$WORK/goals.key") --key-namespace bench --key-name key"
IN="$(q "$PLAIN")"
CT="$(q "$WORK/goals.enc")"
OUT="$(q "$WORK/goals.out")"

# The commands measured, by name: each starts without its output, as cp's does.
declare -A CMD=(
  [cp]="rm -f $OUT && cp $IN $OUT"
  [cp_sync]="rm -f $OUT && cp $IN $OUT && sync $OUT"
  [cat]="rm -f $OUT && cat $IN >$OUT"
  [cat_pipe]="rm -f $OUT && cat $IN | cat | cat >$OUT"
  [cat_cat]="rm -f $OUT && cat $IN | cat >$OUT"
  [enc]="rm -f $OUT && $B encrypt $K --frame-length $FRAME --no-fsync $IN $OUT"
  [dec]="rm -f $OUT && $B decrypt $K --no-fsync $CT $OUT"
  [enc_durable]="rm -f $OUT && $B encrypt $K --frame-length $FRAME $IN $OUT"
  [dec_durable]="rm -f $OUT && $B decrypt $K $CT $OUT"
  [enc_pipe]="rm -f $OUT && cat $IN | $B encrypt $K --frame-length $FRAME - - | cat >$OUT"
  [dec_pipe]="rm -f $OUT && cat $CT | $B decrypt $K - - | cat >$OUT"
  [enc_stdout]="rm -f $OUT && $B encrypt $K --frame-length $FRAME $IN - >$OUT"
  [dec_stdout]="rm -f $OUT && $B decrypt $K $CT - >$OUT"
)
ORDER=(cp cp_sync cat cat_pipe cat_cat enc dec enc_durable dec_durable enc_pipe dec_pipe enc_stdout dec_stdout)

# Median wall seconds of RUNS runs of a named command under the prefix $PIN; the runs of all commands are
# interleaved (one round of every command, RUNS rounds), so that a noisy stretch of the machine spreads
# over all of them instead of landing on one.
declare -A T
measure_all() {
  local round name t0 pin_name="$1"
  local -A times=()
  for ((round = 0; round < RUNS; round++)); do
    for name in "${ORDER[@]}"; do
      sync
      t0=$EPOCHREALTIME
      $PIN bash -c "${CMD[$name]}" >>"$GLOG" 2>&1 || { echo "bench-goals.sh: failed: ${CMD[$name]} (see $GLOG)" >&2; exit 1; }
      times[$name]+="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f", b - a }') "
    done
  done
  for name in "${ORDER[@]}"; do
    T[$pin_name,$name]="$(tr ' ' '\n' <<<"${times[$name]}" | grep . | sort -n | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }')"
  done
}

# goal WHAT PEER_SECONDS OUR_SECONDS THRESHOLD
goal() {
  local ratio verdict
  ratio="$(awk -v p="$2" -v o="$3" 'BEGIN { printf "%.2f", p / o }')"
  if awk -v r="$ratio" -v t="$4" 'BEGIN { exit !(r >= t) }'; then verdict=MET; else verdict=MISSED; fi
  printf '  %-64s ratio %5sx  goal >= %sx  %s\n' "$1" "$ratio" "$4" "$verdict"
}

# info WHAT PEER_SECONDS OUR_SECONDS: a ratio without a goal.
info() {
  printf '  %-64s ratio %5sx  (no goal)\n' "$1" "$(awk -v p="$2" -v o="$3" 'BEGIN { printf "%.2f", p / o }')"
}

# Peak RSS in MiB of one run of a command line.
peak_rss_of() {
  local out
  out="$(/usr/bin/time -v bash -c "exec $1" 2>&1 >/dev/null)" || { echo "bench-goals.sh: failed: $1: $out" >&2; exit 1; }
  awk '/Maximum resident set size/ { printf "%.1f", $NF / 1024 }' <<<"$out"
}

rss_goal() { # WHAT MiB
  local verdict=MISSED
  awk -v v="$2" 'BEGIN { exit !(v <= 12) }' && verdict=MET
  printf '  %-64s %6s MiB  goal <= 12 MiB  %s\n' "$1" "$2" "$verdict"
}

echo "issue #12 goals: $(basename "$BIN"), input $SIZE bytes, frame $FRAME, median of $RUNS interleaved runs"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$PLAIN" >/dev/null # warm the page cache
$B encrypt $K --frame-length $FRAME --no-fsync --force $IN $CT
PIN=""
measure_all none
PIN="taskset -c 0"
measure_all cpu0
RSS1_ENC="$(peak_rss_of "$B encrypt $K --frame-length $FRAME --force $IN $OUT")"
RSS1_DEC="$(peak_rss_of "$B decrypt $K --force $CT $OUT")"
if ((RSS_4GIB)); then
  PLAIN4="$WORK/goals.plain4"
  for _ in $(seq $(((4 << 30) / SIZE))); do cat "$PLAIN"; done >"$PLAIN4"
  RSS4_ENC="$(peak_rss_of "$B encrypt $K --frame-length $FRAME --force $(q "$PLAIN4") $CT")"
  rm -f "$PLAIN4"
  RSS4_DEC="$(peak_rss_of "$B decrypt $K --force $CT $OUT")"
fi
rm -f "$WORK/goals.out"

for pin in none cpu0; do
  label="unpinned"
  min=0.9
  if [[ $pin == cpu0 ]]; then label="taskset -c 0"; min=0.6; fi
  echo "$label: cp ${T[$pin,cp]}s, cp+sync ${T[$pin,cp_sync]}s, cat ${T[$pin,cat]}s, cat|cat|cat ${T[$pin,cat_pipe]}s," \
    "cat|cat ${T[$pin,cat_cat]}s; encrypt ${T[$pin,enc]}s / durable ${T[$pin,enc_durable]}s / pipe" \
    "${T[$pin,enc_pipe]}s / >file ${T[$pin,enc_stdout]}s; decrypt ${T[$pin,dec]}s / durable" \
    "${T[$pin,dec_durable]}s / pipe ${T[$pin,dec_pipe]}s / >file ${T[$pin,dec_stdout]}s"
  goal "[$label] encrypt --no-fsync vs cp" "${T[$pin,cp]}" "${T[$pin,enc]}" "$min"
  goal "[$label] decrypt --no-fsync vs cp" "${T[$pin,cp]}" "${T[$pin,dec]}" "$min"
  goal "[$label] encrypt durable vs cp + sync" "${T[$pin,cp_sync]}" "${T[$pin,enc_durable]}" "$min"
  goal "[$label] decrypt durable vs cp + sync" "${T[$pin,cp_sync]}" "${T[$pin,dec_durable]}" "$min"
  goal "[$label] encrypt pipe to pipe vs file to file --no-fsync" "${T[$pin,enc]}" "${T[$pin,enc_pipe]}" 0.9
  goal "[$label] decrypt pipe to pipe vs file to file --no-fsync" "${T[$pin,dec]}" "${T[$pin,dec_pipe]}" 0.9
  goal "[$label] encrypt to stdout (>file) vs file to file --no-fsync" "${T[$pin,enc]}" "${T[$pin,enc_stdout]}" 0.9
  goal "[$label] decrypt to stdout (>file) vs file to file --no-fsync" "${T[$pin,dec]}" "${T[$pin,dec_stdout]}" 0.9
  info "[$label] encrypt --no-fsync vs cat >file" "${T[$pin,cat]}" "${T[$pin,enc]}"
  info "[$label] decrypt --no-fsync vs cat >file" "${T[$pin,cat]}" "${T[$pin,dec]}"
  # The pipe goal compares a pipeline of three processes with one: `cat | cat | cat` alone moves each byte
  # through three more copies than a file-to-file run, so it is printed as the pipes' like-for-like peer.
  info "[$label] encrypt pipe to pipe vs cat | cat | cat" "${T[$pin,cat_pipe]}" "${T[$pin,enc_pipe]}"
  info "[$label] decrypt pipe to pipe vs cat | cat | cat" "${T[$pin,cat_pipe]}" "${T[$pin,dec_pipe]}"
  # The most the pipe lines can reach: `cat | cat` is `cat | kms-envelope | cat` with a middle that costs
  # nothing, so file to file over it bounds the pipe-to-pipe ratio from above.
  info "[$label] bound: encrypt file to file vs cat | cat" "${T[$pin,enc]}" "${T[$pin,cat_cat]}"
  info "[$label] bound: decrypt file to file vs cat | cat" "${T[$pin,dec]}" "${T[$pin,cat_cat]}"
done
rss_goal "peak RSS, $((SIZE >> 20)) MiB encrypt" "$RSS1_ENC"
rss_goal "peak RSS, $((SIZE >> 20)) MiB decrypt" "$RSS1_DEC"
if ((RSS_4GIB)); then
  rss_goal "peak RSS, 4096 MiB encrypt" "$RSS4_ENC"
  rss_goal "peak RSS, 4096 MiB decrypt" "$RSS4_DEC"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
((standalone)) || rm -f "$WORK/goals.enc"
