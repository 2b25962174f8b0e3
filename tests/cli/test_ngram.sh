#!/usr/bin/env bash
# ngram: help, usage errors, bad data, the summary for each smoothing,
# inf for --smoothing none, -o writing a model generate reads.
. "$(dirname "$0")/lib.sh"

NAMES=tests/data/gen_names.txt VAL=tests/data/gen_val.txt

run ngram --help
expect_rc 0 "--help"
expect_out "^Usage: ngram"
expect_out "--smoothing"
check "help has no stderr" '[ -z "$ERR" ]'
run ngram --version
expect_rc 0 "--version"
expect_out "^ngram [0-9]"

# Usage errors: exit 2, one line and the "Try" line.
run ngram --frobnicate
expect_usage
expect_err "^ngram: unrecognized option '--frobnicate'"
run ngram -n -1 --data $NAMES
expect_usage
expect_err "invalid value '-1' for -n"
run ngram -n abc --data $NAMES
expect_usage
run ngram --smoothing bogus --data $NAMES
expect_usage
expect_err "none, addk, kn"
run ngram --discount 1.5 --data $NAMES
expect_usage
run ngram --k 0 --data $NAMES
expect_usage
run ngram --data $NAMES extra
expect_usage
expect_err "unexpected argument 'extra'"

# Runtime errors: exit 1, one line naming the problem.
run ngram --data "$T/missing.txt"
expect_fail "^ngram: .*missing.txt"
printf 'abc\n\xff\xfe\n' > "$T/bad.txt"
run ngram --data "$T/bad.txt"
expect_fail "bad.txt:2: invalid UTF-8 at byte 4"
: > "$T/empty.txt"
run ngram --data "$T/empty.txt"
expect_fail "empty.txt"
run ngram -n 11 --data $NAMES --val-data $VAL
expect_fail "order 11 is out of range"
run ngram --data $NAMES --val-data $VAL -o "$T/no/such/dir/m.safetensors"
expect_fail "m.safetensors"

# The summary: two TSV lines, one value per column.
run ngram -n 3 --data $NAMES --val-data $VAL
expect_rc 0 "3-gram"
expect_out "^model	order	smoothing	params	steps	train_loss	val_loss	seconds$"
expect_out "^ngram	3	kn	[0-9]+	0	[0-9]+\.[0-9]+	[0-9]+\.[0-9]+	[0-9.]+$"
check "two lines" '[ "$(printf "%s\n" "$OUT" | wc -l)" -eq 2 ]'
check "nothing on stderr" '[ -z "$ERR" ]'
for s in addk kn; do
    run ngram -n 4 --smoothing $s --data $NAMES --val-data $VAL
    expect_rc 0 "smoothing $s"
    expect_out "^ngram	4	$s	"
    check "$s: finite validation loss" 'printf "%s\n" "$OUT" | tail -1 | cut -f7 | grep -Eq "^[0-9]+\.[0-9]+$"'
done
# The validation file holds a character the training file lacks.
run ngram -n 2 --smoothing none --data $NAMES --val-data $VAL
expect_rc 0 "smoothing none"
expect_out "^ngram	2	none	[0-9]+	0	[0-9.]+	inf	"
run ngram -n 0 --data $NAMES --val-data $VAL
expect_out "^ngram	0	none	0	0	"

# A seeded split of one file (no --val-data); --seed does not move it.
run ngram -n 2 --data $NAMES
expect_rc 0 "split"
A=$OUT
run ngram -n 2 --data $NAMES --seed 5
check "--seed leaves the split" '[ "$(printf "%s" "$OUT" | tail -1 | cut -f1-7)" = "$(printf "%s" "$A" | tail -1 | cut -f1-7)" ]'
run ngram -n 2 --data $NAMES --split-seed 5
check "--split-seed moves it" '[ "$(printf "%s" "$OUT" | tail -1 | cut -f7)" != "$(printf "%s" "$A" | tail -1 | cut -f7)" ]'

# Data from stdin.
run_stdin $NAMES ngram -n 2 --data - --val-data $VAL
expect_rc 0 "--data -"

# -o writes a checkpoint that generate reads; the trainer's val_loss is the
# mean loss generate --score reports for the same file.
run ngram -n 5 --data $NAMES --val-data $VAL -o "$T/m.safetensors"
expect_rc 0 "-o"
check "checkpoint written" '[ -s "$T/m.safetensors" ]'
check "no temporary file left" '[ -z "$(ls "$T" | grep tmp)" ]'
VAL_LOSS=$(printf "%s\n" "$OUT" | tail -1 | cut -f7)
run generate -m "$T/m.safetensors" --score $VAL
expect_rc 0 "score"
expect_err "^mean loss: $VAL_LOSS nats/char over 12 names$"
run generate -m "$T/m.safetensors" -n 3
expect_rc 0 "generate from the n-gram"
check "three names" '[ "$(printf "%s\n" "$OUT" | grep -c .)" -eq 3 ]'

# Summary to stdout fails on a full disk: exit 1, one line.
if [ -w /dev/full ]; then
    "$BIN/ngram" -n 2 --data $NAMES > /dev/full 2>"$T/err"; RC=$?; ERR=$(cat "$T/err"); LAST="ngram > /dev/full"
    expect_fail "^ngram: error writing standard output"
fi

finish
