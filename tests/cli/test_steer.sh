#!/usr/bin/env bash
# steer: with no intervention it reproduces generate name for name, for
# every sampling flag (--novel, --stats, --chars and --score included);
# clamping and adding features change the names and the scores; bad pairs
# and bad edits.
. "$(dirname "$0")/lib.sh"

tiny_transformer
"$BIN/sae-train" -m "$T/tf.safetensors" $DATA --steps 30 --features 32 --layer 1 --eval-every 0 \
    -o "$T/sae.safetensors" >/dev/null 2>&1
P="-m $T/tf.safetensors --sae $T/sae.safetensors"

run steer --help
expect_rc 0 "--help"
expect_out "^Usage: steer"
expect_out "--clamp F=V"
for flag in "--seed N" "--temperature T" "--top-k K" "--top-p P" "--prefix STR" "--max-len N" \
            "--novel FILE" "--stats FILE" "--score FILE" "--chars N"; do
    expect_out "^ +$flag "
done
run steer --version
expect_rc 0 "--version"
run steer $P --frobnicate
expect_usage
run steer $P --clamp 3
expect_usage
run steer $P --add x=1
expect_usage
run steer $P --top-p 0
expect_usage
for bad in "-n -1" "--chars -1" "--max-len 0" "--score $T/val.txt --prefix sa" \
           "--chars 10 --novel $T/names.txt" "--chars 10 --stats $T/names.txt" "extra"; do
    run steer $P $bad
    expect_usage
done
run steer $P --prefix "$(printf 'a\xff')"
expect_usage
expect_err "invalid UTF-8"

# No intervention: generate's names, for several sampling settings.
for flags in "-n 20 --seed 7" "-n 10 --seed 3 --temperature 0.7 --top-k 5" \
             "-n 10 --top-p 0.8 --prefix sa" "-n 5 --temperature 0 --max-len 6"; do
    run steer $P $flags
    expect_rc 0 "steer $flags"
    steered=$OUT
    run generate -m "$T/tf.safetensors" $flags
    check "no-op steer = generate ($flags)" '[ -n "$steered" ] && [ "$steered" = "$OUT" ]'
done
# ... and for the flags that write to stderr too.
for flags in "-n 30 --seed 2 --novel $T/names.txt --stats $T/names.txt" "--chars 20 --seed 4" \
             "--chars 8 --prefix sa --temperature 0.5" "--score $T/val.txt"; do
    run steer $P $flags
    expect_rc 0 "steer $flags"
    steered=$OUT steered_err=$ERR
    run generate -m "$T/tf.safetensors" $flags
    check "no-op steer = generate ($flags)" \
        '[ -n "$steered" ] && [ "$steered" = "$OUT" ] && [ "$steered_err" = "$ERR" ]'
done

# Interventions change the names; the same seed gives the same names.
run steer $P -n 20 --seed 7 --clamp 3=20
expect_rc 0 "clamp"
clamped=$OUT
run steer $P -n 20 --seed 7 --clamp 3=20
check "reproducible" '[ "$OUT" = "$clamped" ]'
run generate -m "$T/tf.safetensors" -n 20 --seed 7
check "a strong clamp changes the names" '[ "$OUT" != "$clamped" ]'
run steer $P -n 20 --seed 7 --add 5=-10 --add 6=10
expect_rc 0 "add"
check "twenty names" '[ "$(printf "%s\n" "$OUT" | wc -l)" -eq 20 ]'

# The sampling flags under an intervention.
run steer $P -n 20 --seed 7 --clamp 3=20 --novel "$T/names.txt" --stats "$T/names.txt"
expect_rc 0 "--novel --stats with a clamp"
printf '%s\n' "$OUT" > "$T/steered.txt"
check "--novel: no name of the file" '! grep -qxF -f "$T/steered.txt" "$T/names.txt"'
expect_err "^generated	distinct_share	in_file_share	mean_length$"
expect_err "^20	[01]\.[0-9]{4}	0\.0000	[0-9]+\.[0-9]{2}$"
run steer $P --chars 20 --seed 4
plain=$OUT
run steer $P --chars 20 --seed 4 --add 5=10
expect_rc 0 "--chars with an addition"
check "--chars: one line of text" '[ -n "$OUT" ] && [ "$(printf "%s\n" "$OUT" | wc -l)" -eq 1 ]'
check "--chars: the addition changes the text" '[ "$OUT" != "$plain" ]'
run steer $P --chars 100 --add 5=10
expect_rc 0 "--chars past the 32 positions: the window slides, the hook stays"
check "--chars 100: 100 characters" '[ "$(($(LC_ALL=C.UTF-8 wc -m < "$T/out") - 1))" -eq 100 ]'
run steer $P -n 10 --top-k 1 --prefix sa --max-len 5 --clamp 3=20
expect_rc 0 "--top-k --prefix --max-len with a clamp"
check "top-k 1: one name" '[ "$(printf "%s\n" "$OUT" | sort -u | wc -l)" -eq 1 ]'
check "prefix and length" '[ "$(printf "%s\n" "$OUT" | grep -c "^sa.\{0,3\}$")" -eq 10 ]'
# --score: the names scored under the steered model.
run steer $P --score "$T/val.txt"
clean=$OUT clean_err=$ERR
run steer $P --score "$T/val.txt" --clamp 3=20
expect_rc 0 "--score with a clamp"
expect_out "^name	chars	total_loss	loss_per_char$"
check "one row per name" '[ "$(printf "%s\n" "$OUT" | wc -l)" -eq "$(printf "%s\n" "$clean" | wc -l)" ]'
expect_err "^mean loss: [0-9]+\.[0-9]{6} nats/char over 60 names$"
check "a strong clamp changes the losses" '[ "$OUT" != "$clean" ] && [ "$ERR" != "$clean_err" ]'
steered=$OUT steered_err=$ERR
run_stdin "$T/val.txt" steer $P --score - --clamp 3=20
check "--score - reads stdin" '[ "$OUT" = "$steered" ] && [ "$ERR" = "$steered_err" ]'

# Bad edits and bad pairs.
run steer $P --clamp 32=1
expect_fail "feature 32 out of range"
run steer -m tests/data/fixtures/transformer.safetensors --sae "$T/sae.safetensors"
expect_fail "trained on another model"
run steer -m tests/data/fixtures/mlp.safetensors --sae "$T/sae.safetensors"
expect_fail "not a 'transformer'"
run steer -m "$T/tf.safetensors" --sae "$T/missing.safetensors"
expect_fail "missing.safetensors"
run steer $P --prefix "ß"
expect_fail "not in the vocabulary"

finish
