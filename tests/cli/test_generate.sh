#!/usr/bin/env bash
# generate: help, usage errors, hostile checkpoints, sampling flags,
# --novel / --stats / --score / --chars, determinism, a full disk.
. "$(dirname "$0")/lib.sh"

NAMES=tests/data/gen_names.txt VAL=tests/data/gen_val.txt
"$BIN/ngram" -n 4 --data $NAMES --val-data $VAL -o "$T/m.safetensors" >/dev/null || exit 1
M="$T/m.safetensors"

run generate --help
expect_rc 0 "--help"
expect_out "^Usage: generate"
expect_out "--score FILE"
run generate --version
expect_rc 0 "--version"
expect_out "^generate [0-9]"

# Usage errors.
run generate -m "$M" --frobnicate
expect_usage
expect_err "^generate: unrecognized option '--frobnicate'"
run generate -m
expect_usage
# Without -m: the shipped mixture, weights/mix.safetensors beside bin/, else
# in the current directory; a copy of the program in an empty tree finds neither.
mkdir -p "$T/tree/bin" && cp "$BIN/generate" "$T/tree/bin/"
cd "$T/tree"; BIN=bin run generate -n 1; cd - >/dev/null
expect_fail "weights/mix.safetensors"
run generate -n 3 --seed 1
expect_rc 0 "the shipped mixture"
check "three names from the shipped mixture" '[ "$(printf "%s\n" "$OUT" | wc -l)" -eq 3 ]'
for bad in "-n -1" "-n abc" "--temperature -1" "--top-p 2" "--top-p 0" "--top-k -1" \
           "--max-len 0" "--seed -3" "--chars -1"; do
    run generate -m "$M" $bad
    expect_usage
done
run generate -m "$M" --score $VAL --chars 10
expect_usage
run generate -m "$M" --prefix "$(printf 'a\xff')"
expect_usage
expect_err "invalid UTF-8"

# Unreadable and hostile checkpoints: exit 1, one line naming the file.
run generate -m "$T/missing.safetensors"
expect_fail "missing.safetensors"
SIZE=$(wc -c < "$M")
head -c $((SIZE / 2)) "$M" > "$T/truncated.safetensors"
run generate -m "$T/truncated.safetensors"
expect_fail "truncated.safetensors"
head -c 5 "$M" > "$T/tiny.safetensors"
run generate -m "$T/tiny.safetensors"
expect_fail "tiny.safetensors"
printf '\377\377\0\0\0\0\0\0{}' > "$T/pastend.safetensors"
run generate -m "$T/pastend.safetensors"
expect_fail "pastend.safetensors"
head -c 4096 /dev/urandom > "$T/random.safetensors"
run generate -m "$T/random.safetensors"
expect_fail "random.safetensors"
{ printf '\020\0\0\0\0\0\0\0'; head -c 200 /dev/urandom; } > "$T/garbage.safetensors"
run generate -m "$T/garbage.safetensors"
expect_fail "garbage.safetensors"

# mk_st FILE JSON: a safetensors file with that header and no tensors.
mk_st() {
    local n=${#2}
    printf "$(printf '\\%03o\\%03o' $((n & 255)) $((n >> 8)))\\0\\0\\0\\0\\0\\0" > "$1"
    printf '%s' "$2" >> "$1"
}
mk_st "$T/other.safetensors" '{"__metadata__":{"format":"pytorch"}}'
run generate -m "$T/other.safetensors"
expect_fail "not a villes checkpoint"
mk_st "$T/kind.safetensors" '{"__metadata__":{"format":"villes","format_version":"1","model":"sae"}}'
run generate -m "$T/kind.safetensors"
expect_fail "unknown model kind 'sae'"
mk_st "$T/novocab.safetensors" '{"__metadata__":{"format":"villes","format_version":"1","model":"ngram"}}'
run generate -m "$T/novocab.safetensors"
expect_fail "novocab.safetensors"

# Sampling.
run generate -m "$M" -n 25 --seed 3
expect_rc 0 "25 names"
check "25 lines" '[ "$(printf "%s\n" "$OUT" | wc -l)" -eq 25 ]'
check "no empty line" '! printf "%s\n" "$OUT" | grep -q "^$"'
check "nothing on stderr" '[ -z "$ERR" ]'
A=$OUT
run generate -m "$M" -n 25 --seed 3
check "same seed, same names" '[ "$OUT" = "$A" ]'
run generate -m "$M" -n 25 --seed 4
check "another seed, other names" '[ "$OUT" != "$A" ]'
run generate -m "$M" -n 25
B=$OUT
run generate -m "$M" -n 25 --seed 0
check "default seed is 0" '[ "$OUT" = "$B" ]'
run generate -m "$M" -n 10
check "default count is 10" '[ "$(printf "%s\n" "$OUT" | wc -l)" -eq 10 ]'
run generate -m "$M" -n 0
expect_rc 0 "-n 0"
check "-n 0 prints nothing" '[ -z "$OUT" ]'
run generate -m "$M" -n 5 --temperature 0
check "temperature 0: one name" '[ "$(printf "%s\n" "$OUT" | sort -u | wc -l)" -eq 1 ]'
run generate -m "$M" -n 20 --top-k 1 --seed 9
check "top-k 1: one name" '[ "$(printf "%s\n" "$OUT" | sort -u | wc -l)" -eq 1 ]'
run generate -m "$M" -n 20 --top-p 0.5 --temperature 0.8
expect_rc 0 "top-p"
run generate -m "$M" -n 20 --prefix "saint-"
expect_rc 0 "--prefix"
check "every name starts with the prefix" '[ "$(printf "%s\n" "$OUT" | grep -c "^saint-")" -eq 20 ]'
run generate -m "$M" -n 50 --max-len 3
check "--max-len 3" '! printf "%s\n" "$OUT" | grep -q "^....."'
run generate -m "$M" --prefix "saint-" --max-len 3
expect_fail "more than the 3 of --max-len"
run generate -m "$M" --prefix "ßaint"
expect_fail "character 'ß' \(U\+00DF\) is not in the vocabulary"

# --novel and --stats.
run generate -m "$M" -n 30 --novel $NAMES --stats $NAMES --seed 2
expect_rc 0 "--novel"
printf '%s\n' "$OUT" > "$T/novel.txt"
check "no name of the file" '! grep -qxF -f "$T/novel.txt" $NAMES'
expect_err "^generated	distinct_share	in_file_share	mean_length$"
expect_err "^30	[01]\.[0-9]{4}	0\.0000	[0-9]+\.[0-9]{2}$"
run generate -m "$M" -n 200 --stats $NAMES --seed 2 --temperature 0.5
expect_err "^200	[01]\.[0-9]{4}	0\.[0-9]{4}	"
check "some names of the file come back" '! printf "%s\n" "$ERR" | tail -1 | cut -f3 | grep -q "^0\.0000$"'
printf 'abc\n' > "$T/one.txt"   # a model that only knows "abc"
"$BIN/ngram" -n 3 --smoothing none --data "$T/one.txt" --val-data "$T/one.txt" -o "$T/one.safetensors" >/dev/null
run generate -m "$T/one.safetensors" --novel "$T/one.txt" -n 1
expect_fail "gave up after 1000 names"
run generate -m "$M" --novel "$T/missing.txt"
expect_fail "missing.txt"
run generate -m "$M" --stats "$T/missing.txt"
expect_fail "missing.txt"
check "files are read before any name is printed" '[ -z "$OUT" ]'

# --score: a TSV per name, the mean on stderr.
run generate -m "$M" --score $VAL
expect_rc 0 "--score"
expect_out "^name	chars	total_loss	loss_per_char$"
expect_out "^causse-bégon	12	[0-9]+\.[0-9]{6}	[0-9]+\.[0-9]{6}$"
check "one row per name" '[ "$(printf "%s\n" "$OUT" | wc -l)" -eq 13 ]'
expect_err "^mean loss: [0-9]+\.[0-9]{6} nats/char over 12 names$"
expect_err_lines 1
S=$ERR
run_stdin $VAL generate -m "$M" --score -
check "--score - reads stdin" '[ "$ERR" = "$S" ]'
printf 'abc\nxyzzy\nab\n' > "$T/short.txt"
run generate -m "$M" --score "$T/short.txt"
check "short lines skipped" '[ "$(printf "%s\n" "$OUT" | wc -l)" -eq 3 ]'
printf 'bertry\nmuñoz\n' > "$T/unknown.txt"
run generate -m "$M" --score "$T/unknown.txt"
expect_fail "unknown.txt:2: character 'ñ'"
printf 'ab\n' > "$T/none.txt"
run generate -m "$M" --score "$T/none.txt"
expect_fail "no names of at least 3"

# --chars: running text.
run generate -m "$M" --chars 40 --seed 1
expect_rc 0 "--chars"
check "one line" '[ "$(printf "%s\n" "$OUT" | wc -l)" -eq 1 ]'
run generate -m "$M" --chars 10 --prefix "saint"
expect_out "^saint"

# A full disk: exit 1, one line.
if [ -w /dev/full ]; then
    "$BIN/generate" -m "$M" -n 3 > /dev/full 2>"$T/err"; RC=$?; ERR=$(cat "$T/err"); LAST="generate > /dev/full"
    expect_fail "^generate: error writing standard output: No space left on device$"
fi

finish
