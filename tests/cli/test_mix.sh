#!/usr/bin/env bash
# mix: help, usage errors, a mixture of an n-gram and a Transformer fitted on
# held-out names, its table, generate and --score on it (the fitted loss),
# and the components it refuses.
. "$(dirname "$0")/lib.sh"

tiny_transformer
"$BIN/ngram" -n 3 --data "$T/names.txt" --val-data "$T/val.txt" -o "$T/ng3.safetensors" >/dev/null

run mix --help
expect_rc 0 "--help"
expect_out "^Usage: mix"
expect_out "crossfit_loss"
run mix --version
expect_rc 0 "--version"

# usage errors
run mix -m "$T/ng3.safetensors" --dev "$T/val.txt"
expect_usage
expect_err "at least two models"
run mix -m "$T/ng3.safetensors" -m "$T/tf.safetensors"
expect_usage
expect_err "give --data FILE"
run mix -m "$T/ng3.safetensors" -m "$T/tf.safetensors" --data "$T/names.txt" --dev "$T/val.txt"
expect_usage
run mix -m "$T/ng3.safetensors" -m "$T/tf.safetensors" --dev "$T/val.txt" --mode bogus
expect_usage
expect_err "linear, loglinear"
run mix -m "$T/ng3.safetensors" -m "$T/tf.safetensors" --dev "$T/val.txt" -o -
expect_usage
run mix -m "$T/ng3.safetensors" -m "$T/tf.safetensors" --dev "$T/val.txt" --eos-bias maybe
expect_usage
expect_err "no, yes"
run mix -m "$T/ng3.safetensors" -m "$T/tf.safetensors" --dev "$T/val.txt" --mode linear --eos-bias yes
expect_usage
expect_err "loglinear"

# the mixture: a row per component, a row per mixture tried, one chosen
run mix -m "$T/ng3.safetensors" -m "$T/tf.safetensors" --dev "$T/val.txt" -o "$T/mix.safetensors"
expect_rc 0 "mix"
expect_out "^model	mode	buckets	eos_bias	fit_loss	crossfit_loss	chosen$"
check "two component rows and nine mixtures (evidence: the n-gram; log-linear with and without an <EOS> bias)" \
    '[ "$(printf "%s\n" "$OUT" | wc -l)" -eq 12 ]'
check "evidence buckets tried" 'printf "%s\n" "$OUT" | grep -q "^mix	linear	evidence	no"'
check "the <EOS> bias tried" 'printf "%s\n" "$OUT" | grep -q "^mix	loglinear	position	yes"'
check "no linear mixture with an <EOS> bias" '! printf "%s\n" "$OUT" | grep -q "^mix	linear	.*	yes"'
check "exactly one chosen" '[ "$(printf "%s\n" "$OUT" | awk -F"\t" "NR > 1 && \$7 == 1" | wc -l)" -eq 1 ]'
chosen_fit=$(printf '%s\n' "$OUT" | awk -F'\t' '$7 == 1 { print $5 }')
best_single=$(printf '%s\n' "$OUT" | awk -F'\t' 'NR > 1 && $1 != "mix" { print $5 }' | sort -g | head -1)
check "fitted mixture no worse than its best component" \
    'awk -v a="$chosen_fit" -v b="$best_single" "BEGIN { exit !(a <= b + 1e-6) }"'
run generate -m "$T/mix.safetensors" --score "$T/val.txt"
expect_rc 0 "score the mixture"
scored=$(printf '%s\n' "$ERR" | sed -n 's/^mean loss: \([0-9.]*\) .*/\1/p')
check "generate --score gives the fitted loss" \
    'awk -v a="$chosen_fit" -v b="$scored" "BEGIN { d = a - b; exit !(d < 1e-5 && d > -1e-5) }"'
run generate -m "$T/mix.safetensors" -n 5 --seed 3 --prefix sa --novel "$T/names.txt" --stats "$T/names.txt"
expect_rc 0 "generate from the mixture"
check "five names with the prefix" '[ "$(printf "%s\n" "$OUT" | grep -c "^sa")" -eq 5 ]'
run mix -m "$T/ng3.safetensors" -m "$T/tf.safetensors" --dev "$T/val.txt" --mode linear --buckets none -o "$T/lin.safetensors"
expect_rc 0 "one mode"
check "one mixture row" '[ "$(printf "%s\n" "$OUT" | grep -c "^mix")" -eq 1 ]'
run mix -m "$T/tf.safetensors" -m "$T/tf.safetensors" --dev "$T/val.txt" --buckets evidence -o "$T/ev.safetensors"
expect_fail "evidence need a component"
# --data: the validation side of the trainers' split, as a --dev file of it
printf 'abbeville\n' > "$T/one.txt"
cat "$T/names.txt" "$T/val.txt" > "$T/all.txt"
mkdir -p "$T/split"
"$BIN/transformer-train" --data "$T/all.txt" --steps 0 --eval-every 0 --d-model 16 --heads 2 --layers 1 \
    --dump-split "$T/split" -o "$T/split.safetensors" >/dev/null 2>&1
run mix -m "$T/ng3.safetensors" -m "$T/tf.safetensors" --data "$T/all.txt" --mode linear --buckets none -o "$T/d1.safetensors"
expect_rc 0 "--data"
run mix -m "$T/ng3.safetensors" -m "$T/tf.safetensors" --dev "$T/split/val.txt" --mode linear --buckets none -o "$T/d2.safetensors"
check "--data fits on the split's validation names" 'same_checkpoint "$T/d1.safetensors" "$T/d2.safetensors"'
# --buckets known: the split's training names stored with the weights; the
# score of the validation names is the fitted loss; --dev has no such names.
run mix -m "$T/ng3.safetensors" -m "$T/tf.safetensors" --data "$T/all.txt" -o "$T/known.safetensors"
expect_rc 0 "--data tries weights by known names"
check "known buckets tried" 'printf "%s\n" "$OUT" | grep -q "^mix	loglinear	known"'
run mix -m "$T/ng3.safetensors" -m "$T/tf.safetensors" --data "$T/all.txt" --mode loglinear --buckets known \
    --eos-bias yes -o "$T/known.safetensors"
expect_rc 0 "--buckets known --eos-bias yes"
check "one mixture row, with the bias" '[ "$(printf "%s\n" "$OUT" | grep -c "^mix	loglinear	known	yes")" -eq 1 ]'
known_fit=$(printf '%s\n' "$OUT" | awk -F'\t' '$1 == "mix" { print $5 }')
check "the known names are in the file" 'grep -q "mix.known" "$T/known.safetensors"'
run generate -m "$T/known.safetensors" --score "$T/split/val.txt"
scored=$(printf '%s\n' "$ERR" | sed -n 's/^mean loss: \([0-9.]*\) .*/\1/p')
check "generate --score gives the fitted loss (known buckets, <EOS> bias)" \
    'awk -v a="$known_fit" -v b="$scored" "BEGIN { d = a - b; exit !(d < 1e-5 && d > -1e-5) }"'
run generate -m "$T/known.safetensors" -n 5 --seed 1
expect_rc 0 "generate from weights by known names"
check "without known buckets, no known names in the file" '! grep -q "mix.known" "$T/d1.safetensors"'
run mix -m "$T/ng3.safetensors" -m "$T/tf.safetensors" --dev "$T/val.txt" --buckets known
expect_usage
run mix -m "$T/ng3.safetensors" -m "$T/tf.safetensors" --dev "$T/one.txt"
expect_fail "fewer than two names"
# a mixture of mixtures loads too
run mix -m "$T/mix.safetensors" -m "$T/ng3.safetensors" --dev "$T/val.txt" -o "$T/mix2.safetensors"
expect_rc 0 "a mixture as a component"

# refused components: one line, exit 1, no file
printf 'abc\nabd\nxyz\n' > "$T/other.txt"
"$BIN/ngram" -n 2 --data "$T/other.txt" --val-data "$T/other.txt" -o "$T/other.safetensors" >/dev/null
run mix -m "$T/ng3.safetensors" -m "$T/other.safetensors" --dev "$T/val.txt" -o "$T/bad.safetensors"
expect_fail "another vocabulary"
check "no file written" '[ ! -e "$T/bad.safetensors" ]'
run mix -m "$T/ng3.safetensors" -m "$T/missing.safetensors" --dev "$T/val.txt" -o "$T/bad.safetensors"
expect_fail "missing.safetensors"
head -c 100 "$T/mix.safetensors" > "$T/cut.safetensors"
run generate -m "$T/cut.safetensors" -n 2
expect_fail "cut.safetensors"
finish
