#!/usr/bin/env bash
# generate --batch / --threads: names and scores do not depend on them (each
# name its own random stream), for a Transformer (batched steps), a mixture
# of a Transformer and an n-gram (components batched, or not) and an n-gram
# (the fallback loop); bad values are usage errors.
. "$(dirname "$0")/lib.sh"

tiny_transformer
"$BIN/ngram" -n 3 --data "$T/names.txt" --val-data "$T/val.txt" -o "$T/ng.safetensors" >/dev/null
"$BIN/mix" -m "$T/tf.safetensors" -m "$T/ng.safetensors" --data "$T/val.txt" \
    -o "$T/mix.safetensors" >/dev/null 2>&1

for model in tf ng mix; do
    M="$T/$model.safetensors"
    run generate -m "$M" -n 300 --seed 5 --batch 1 --threads 1
    expect_rc 0 "$model: one lane"
    want=$OUT
    check "$model: 300 names" '[ "$(printf "%s\n" "$OUT" | wc -l)" -eq 300 ]'
    for b in 1 7 64; do
        for t in 1 2; do
            run generate -m "$M" -n 300 --seed 5 --batch $b --threads $t
            check "$model: --batch $b --threads $t gives the same names" '[ "$OUT" = "$want" ]'
        done
    done
    run generate -m "$M" -n 300 --seed 6 --batch 7
    check "$model: another seed, other names" '[ "$OUT" != "$want" ]'
    # the first names do not depend on how many are asked for
    run generate -m "$M" -n 10 --seed 5 --batch 64 --threads 2
    check "$model: the first 10 names" '[ "$OUT" = "$(printf "%s\n" "$want" | head -10)" ]'
    run generate -m "$M" -n 50 --seed 5 --batch 64 --prefix sa --temperature 0.8 --top-k 5
    want=$OUT
    run generate -m "$M" -n 50 --seed 5 --batch 3 --threads 2 --prefix sa --temperature 0.8 --top-k 5
    check "$model: same names with --prefix and sampling flags" '[ "$OUT" = "$want" ]'

    run generate -m "$M" --score "$T/val.txt" --batch 1
    expect_rc 0 "$model: --score on one lane"
    want="$OUT/$ERR"
    run generate -m "$M" --score "$T/val.txt" --batch 64 --threads 2
    check "$model: --score batched gives the same table and mean" '[ "$OUT/$ERR" = "$want" ]'
done

# --novel draws again from the name's own stream: the same names too.
run generate -m "$T/ng.safetensors" -n 40 --seed 2 --novel "$T/names.txt" --batch 1
want=$OUT
run generate -m "$T/ng.safetensors" -n 40 --seed 2 --novel "$T/names.txt" --batch 16 --threads 2
check "--novel: the same names batched" '[ "$OUT" = "$want" ]'

for bad in "--batch 0" "--batch -1" "--batch 5000" "--threads 0" "--threads 65" "--batch x"; do
    run generate -m "$T/ng.safetensors" $bad
    expect_usage
done
finish
