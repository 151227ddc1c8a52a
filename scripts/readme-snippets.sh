#!/usr/bin/env bash
# Compiles every ```rust block of README.md the way a reader would: in a new crate whose Cargo.toml has
# exactly the dependencies the README tells them to add, and nothing else (no dev-dependency of ours).
#
#   scripts/readme-snippets.sh [README]      default README.md; run by scripts/test.sh's lint stage
#
# The README's contract, which this script enforces: each ```rust block compiles with the [dependencies] of
# the nearest ```toml block above it that starts with `[dependencies]`. Its `kms-envelope` line is pointed
# at this checkout (`path = "<repository>"`, its features and default-features kept); every other line is
# used as written. A rust block with no such toml block above it is an error.
#
# How: one package per toml block (its rust blocks are its binaries), all in one scratch workspace under the
# target directory, with this repository's Cargo.lock copied in; then `cargo check --offline`, one package
# per invocation so that no package's features leak into another's (cargo unifies features across the
# packages of one invocation). The target directory is the repository's (CARGO_TARGET_DIR if set), so the
# dependencies already checked by clippy's lint build are reused where their features match.
# It fails when a block does not compile (warnings included), when the README names a crate absent from
# Cargo.lock, or when the snippets' resolution needs any package or version Cargo.lock does not hold.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
README="$(realpath "${1:-$REPO/README.md}")"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
WORK="$TARGET_DIR/readme-snippets"
die() { echo "readme-snippets.sh: error: $*" >&2; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK"

# Split the README into $WORK/deps-K.toml (the dependency lines of the K-th toml block) and
# $WORK/deps-K/block-N.rs (the N-th rust block, under the toml block above it), and list each rust block's
# line in $WORK/blocks.tsv. Fences are ``` lines; the info string's first word names the language.
awk -v work="$WORK" '
  function fail(msg) { printf "%s:%d: %s\n", FILENAME, NR, msg > "/dev/stderr"; failed = 1; exit 1 }
  !in_block && /^```/ {
    info = substr($0, 4); split(info, words, /[ ,]/); lang = words[1]
    in_block = 1; kind = ""; first = 1
    if (lang == "rust") {
      if (deps == 0) fail("a ```rust block with no ```toml [dependencies] block above it")
      blocks++
      file = sprintf("%s/deps-%d/block-%d.rs", work, deps, blocks)
      system("mkdir -p " work "/deps-" deps)
      printf "%d\tdeps-%d\tblock-%d\n", NR, deps, blocks > (work "/blocks.tsv")
      kind = "rust"
    } else if (lang == "toml") {
      kind = "toml?"
    }
    next
  }
  in_block && /^```[ \t]*$/ { in_block = 0; if (kind == "rust") close(file); next }
  in_block && kind == "toml?" {
    # Only a toml block whose first line is [dependencies] declares dependencies.
    if ($0 ~ /^\[dependencies\][ \t]*$/) {
      deps++; kind = "toml"; tfile = sprintf("%s/deps-%d.toml", work, deps); printf "" > tfile; next
    }
    kind = ""
  }
  in_block && kind == "toml" {
    if ($0 ~ /^\[/) fail("a ```toml [dependencies] block may hold nothing but dependencies")
    print > tfile; next
  }
  in_block && kind == "rust" { print > file; next }
  END { if (!failed && in_block) fail("unclosed ``` fence") }
' "$README" || die "cannot split $README"
[[ -s "$WORK/blocks.tsv" ]] || die "no \`\`\`rust block in $README"

# Every crate a toml block names must be one Cargo.lock already holds: the README may not ask a reader for a
# crate that this repository never builds, let alone tests.
LOCK_PACKAGES="$(awk '/^name = / { gsub(/"/, "", $3); print $3 }' "$REPO/Cargo.lock" | sort -u)"
members=()
declare -A set_of_toml=()
for toml in $(ls "$WORK"/deps-*.toml | sort -V); do
  set_name="$(basename "$toml" .toml)"
  [[ -d "$WORK/$set_name" ]] || continue # a toml block no rust block uses
  # Blocks under identical toml blocks share one package: the same features, one cargo invocation.
  digest="$(sha256sum <"$toml" | cut -d' ' -f1)"
  if [[ -n "${set_of_toml[$digest]:-}" ]]; then
    first="${set_of_toml[$digest]}"
    mv "$WORK/$set_name"/block-*.rs "$WORK/$first/"
    sed -i "s/\t$set_name\t/\t$first\t/" "$WORK/blocks.tsv"
    rmdir "$WORK/$set_name"
    continue
  fi
  set_of_toml[$digest]="$set_name"
  names="$(sed -n 's/^\([A-Za-z0-9_-]\{1,\}\)[ \t]*=.*/\1/p' "$toml")"
  grep -qx 'kms-envelope' <<<"$names" || die "$set_name: the README's toml block does not add kms-envelope"
  while read -r name; do
    grep -qx -- "$name" <<<"$LOCK_PACKAGES" || die "the README names the crate '$name', which Cargo.lock does not hold"
  done <<<"$names"
  {
    printf '[package]\nname = "readme-%s"\nversion = "0.0.0"\nedition = "2024"\npublish = false\n\n' "$set_name"
    printf '[lints.rust]\nwarnings = "deny"\n\n[dependencies]\n'
    # The kms-envelope line points at this checkout, whatever the README says a reader's path or version is.
    sed -E '/^kms-envelope[ \t]*=/{
              s#^(kms-envelope[ \t]*=[ \t]*)"[^"]*"#\1{ path = "REPO" }#
              s#(path|version)[ \t]*=[ \t]*"[^"]*"#path = "REPO"#
            }' "$toml" | sed "s#\"REPO\"#\"$REPO\"#"
  } >"$WORK/$set_name/Cargo.toml"
  members+=("\"$set_name\"")
done
for member in "${members[@]}"; do
  member="${member//\"/}"
  for rs in "$WORK/$member"/block-*.rs; do
    printf '\n[[bin]]\nname = "%s"\npath = "%s"\n' "$(basename "$rs" .rs)" "$(basename "$rs")"
  done >>"$WORK/$member/Cargo.toml"
done
(IFS=,; printf '[workspace]\nresolver = "3"\nmembers = [%s]\n' "${members[*]}") >"$WORK/Cargo.toml"
# The crate's own [profile.dev*] sections (the profile `cargo check` uses), so that the dependencies checked
# here are the units clippy already checked in the same target directory where their features agree (a
# user's profiles say nothing of whether a block compiles; without them, aws-lc-sys's dev profile would
# differ and AWS-LC would be built again).
awk '/^\[/ { in_profile = ($0 ~ /^\[profile[.]dev[].]/) } in_profile' "$REPO/Cargo.toml" >>"$WORK/Cargo.toml"
cp "$REPO/Cargo.lock" "$WORK/Cargo.lock"

# Resolution first, for all the sets at once (one lock file): offline, from Cargo.lock and the local registry
# cache only. A crate or feature that needs a package this repository never downloaded fails here.
cargo tree --offline --quiet --workspace --depth 0 --manifest-path "$WORK/Cargo.toml" >/dev/null \
  || die "the README's [dependencies] blocks do not resolve offline against Cargo.lock (cargo's reason above)"

failed=()
for member in "${members[@]}"; do
  member="${member//\"/}"
  lines="$(awk -F'\t' -v m="$member" '$2 == m { printf " %s", $1 }' "$WORK/blocks.tsv")"
  echo "README.md rust blocks at line(s)$lines: cargo check with $(grep -c . "$WORK/$member.toml") dependency line(s)"
  if ! CARGO_TARGET_DIR="$TARGET_DIR" cargo check --offline --quiet --manifest-path "$WORK/Cargo.toml" \
      -p "readme-$member" --bins; then
    echo "readme-snippets.sh: the README's rust block(s) at line(s)$lines do not compile with the toml block" \
      "above them ($WORK/$member/Cargo.toml):" >&2
    sed 's/^/    /' "$WORK/$member.toml" >&2
    failed+=("$member")
  fi
done

# Resolution may not have reached past Cargo.lock: offline, cargo can still pick another version from its
# local cache, which the README's reader would then build untested.
new_packages="$(comm -13 \
  <(awk '/^name = / { n = $3 } /^version = / { print n, $3 }' "$REPO/Cargo.lock" | sort -u) \
  <(awk '/^name = / { n = $3 } /^version = / { print n, $3 }' "$WORK/Cargo.lock" | sort -u) \
  | grep -v '^"readme-deps-' || true)"
[[ -z "$new_packages" ]] || die "the README's dependencies resolve to packages Cargo.lock does not hold:
$new_packages"

((${#failed[@]} == 0)) || die "${#failed[@]} dependency set(s) of README.md failed to compile: ${failed[*]}"
echo "README.md: every rust block compiles with the dependencies listed above it"
