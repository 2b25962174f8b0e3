#!/usr/bin/env bash
# steer: with no intervention it reproduces generate name for name; clamping
# and adding features change the names; bad pairs and bad edits.
. "$(dirname "$0")/lib.sh"

head -400 data/villes.txt > "$T/names.txt"
sed -n 401,460p data/villes.txt > "$T/val.txt"
DATA="--data $T/names.txt --val-data $T/val.txt"
"$BIN/transformer-train" $DATA --d-model 16 --heads 2 --layers 2 --batch-size 16 --steps 30 \
    --eval-every 0 --lr 3e-3 -o "$T/tf.safetensors" >/dev/null 2>&1
"$BIN/sae-train" -m "$T/tf.safetensors" $DATA --steps 30 --features 32 --layer 1 --eval-every 0 \
    -o "$T/sae.safetensors" >/dev/null 2>&1
P="-m $T/tf.safetensors --sae $T/sae.safetensors"

run steer --help
expect_rc 0 "--help"
expect_out "^Usage: steer"
expect_out "--clamp F=V"
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

# No intervention: generate's names, for several sampling settings.
for flags in "-n 20 --seed 7" "-n 10 --seed 3 --temperature 0.7 --top-k 5" \
             "-n 10 --top-p 0.8 --prefix sa" "-n 5 --temperature 0 --max-len 6"; do
    run steer $P $flags
    expect_rc 0 "steer $flags"
    steered=$OUT
    run generate -m "$T/tf.safetensors" $flags
    check "no-op steer = generate ($flags)" '[ -n "$steered" ] && [ "$steered" = "$OUT" ]'
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
