#!/usr/bin/env bash
# The re-encryption goals of issue #26, as ratios against peers measured in the same run:
#   reencrypt --no-fsync  vs cp                                   goal: at most 1.2x cp's time (ratio >= 0.83x)
#   reencrypt durable     vs cp + sync                            goal: ratio >= 0.83x
#   reencrypt --no-fsync  vs decrypt to a file, then encrypt it   goal: at most 0.6x their time (ratio >= 1.67x)
#   peak RSS of reencrypt                                         goal: <= 16 MiB
# 0x0478 -> 0x0478; the signed case (0x0578 -> 0x0578) is printed without a goal (SHA-384 is one pass).
#
#   BIN=target/release/kms-envelope scripts/reencrypt-bench.sh     BENCH_MIB (default 1024), RUNS (default 5)
#
# Each line: <what>  ratio R  goal ...  MET|MISSED, R being the peer's time over ours (above 1: we are
# faster). The runs of all commands are interleaved, one round at a time; the medians are compared.
set -euo pipefail
: "${BIN:?set BIN to the kms-envelope binary (cargo build --release --features cli)}"
RUNS="${RUNS:-5}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kms-envelope-reencrypt.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
[[ -x /usr/bin/time ]] || { echo "reencrypt-bench.sh: /usr/bin/time not found (apt-get install time)" >&2; exit 1; }

q() { printf '%q' "$1"; }
B="$(q "$BIN")"
head -c 32 /dev/urandom >"$WORK/old.key"
head -c 32 /dev/urandom >"$WORK/new.key"
OLD="--raw-key-file $(q "$WORK/old.key") --key-namespace bench --key-name old"
NEW_AS_ENC="--raw-key-file $(q "$WORK/new.key") --key-namespace bench --key-name new"
NEW="--new-raw-key-file $(q "$WORK/new.key") --new-key-namespace bench --new-key-name new"
PLAIN="$WORK/plain"
head -c "$((${BENCH_MIB:-1024} << 20))" /dev/urandom >"$PLAIN"
SIZE="$(stat -c %s "$PLAIN")"
$B encrypt $OLD --no-fsync "$PLAIN" "$WORK/src.esdk"
$B encrypt $OLD --no-fsync --suite 0x0578 "$PLAIN" "$WORK/src-signed.esdk"
rm -f "$PLAIN" # the peers copy and re-encrypt the message, not the plaintext
SRC="$(q "$WORK/src.esdk")"
SIGNED="$(q "$WORK/src-signed.esdk")"
OUT="$(q "$WORK/out")"
TMP="$(q "$WORK/plain.tmp")"

declare -A CMD=(
  [cp]="rm -f $OUT && cp $SRC $OUT"
  [cp_sync]="rm -f $OUT && cp $SRC $OUT && sync $OUT"
  [reenc]="rm -f $OUT && $B reencrypt $OLD $NEW --no-fsync $SRC $OUT"
  [reenc_durable]="rm -f $OUT && $B reencrypt $OLD $NEW $SRC $OUT"
  [dec_enc]="rm -f $OUT $TMP && $B decrypt $OLD --no-fsync $SRC $TMP && $B encrypt $NEW_AS_ENC --no-fsync $TMP $OUT && rm -f $TMP"
  [reenc_signed]="rm -f $OUT && $B reencrypt $OLD $NEW --no-fsync $SIGNED $OUT"
)
ORDER=(cp cp_sync reenc reenc_durable dec_enc reenc_signed)

declare -A TIMES
for ((round = 0; round < RUNS; round++)); do
  for name in "${ORDER[@]}"; do
    sync
    t0=$EPOCHREALTIME
    bash -c "${CMD[$name]}" || { echo "reencrypt-bench.sh: failed: ${CMD[$name]}" >&2; exit 1; }
    TIMES[$name]+="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f", b - a }') "
  done
done
median() { tr ' ' '\n' <<<"${TIMES[$1]}" | grep . | sort -n | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }'; }

goal() { # WHAT PEER OURS THRESHOLD
  local ratio verdict=MISSED
  ratio="$(awk -v p="$2" -v o="$3" 'BEGIN { printf "%.2f", p / o }')"
  awk -v r="$ratio" -v t="$4" 'BEGIN { exit !(r >= t) }' && verdict=MET
  printf '  %-58s ratio %5sx  goal >= %sx  %s\n' "$1" "$ratio" "$4" "$verdict"
}

rss="$(/usr/bin/time -v bash -c "exec $B reencrypt $OLD $NEW --force $SRC $OUT" 2>&1 >/dev/null |
  awk '/Maximum resident set size/ { printf "%.1f", $NF / 1024 }')"

echo "issue #26 re-encryption: $(basename "$BIN"), message of $SIZE plaintext bytes (64 KiB frames), $(nproc) cores,"
echo "  median of $RUNS interleaved runs; load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  cp $(median cp)s, cp+sync $(median cp_sync)s; reencrypt $(median reenc)s, durable $(median reenc_durable)s," \
  "decrypt+encrypt $(median dec_enc)s, signed reencrypt $(median reenc_signed)s"
goal "reencrypt --no-fsync vs cp (at most 1.2x)" "$(median cp)" "$(median reenc)" 0.83
goal "reencrypt durable vs cp + sync (at most 1.2x)" "$(median cp_sync)" "$(median reenc_durable)" 0.83
goal "reencrypt vs decrypt to a file + encrypt (at most 0.6x)" "$(median dec_enc)" "$(median reenc)" 1.67
printf '  %-58s ratio %5sx  (no goal)\n' "signed 0x0578 reencrypt vs cp" \
  "$(awk -v p="$(median cp)" -v o="$(median reenc_signed)" 'BEGIN { printf "%.2f", p / o }')"
verdict=MISSED
awk -v v="$rss" 'BEGIN { exit !(v <= 16) }' && verdict=MET
printf '  %-58s %6s MiB  goal <= 16 MiB  %s\n' "peak RSS of reencrypt" "$rss" "$verdict"
