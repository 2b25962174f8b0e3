#!/usr/bin/env bash
# mlp-train: flags and usage errors, bad data, the summary and the log, a
# checkpoint that generate samples from and scores to the trainer's
# validation loss, exact resume (after --steps and after a real SIGINT),
# NaN stop keeping the last good checkpoint, a checkpoint of another kind.
. tests/cli/lib.sh

head -n 500 data/villes.txt >"$T/names.txt"
TINY=(--data "$T/names.txt" --d-model 8 --hidden 32 --context 4 --batch-size 16 --threads 1)

# ---- help, version, usage errors
run mlp-train --help
expect_rc 0; expect_out '^Usage: mlp-train'; expect_out '--keep-best'; expect_out 'train_loss is the mean'
run mlp-train --version
expect_rc 0; expect_out '^mlp-train '
run mlp-train --bogus
expect_usage
run mlp-train
expect_usage; expect_err 'data'
run mlp-train --data "$T/names.txt" --steps -3
expect_usage
run mlp-train --data "$T/names.txt" --schedule linear
expect_usage
run mlp-train --data "$T/names.txt" --hidden 0
expect_usage
run mlp-train --data "$T/names.txt" extra
expect_usage
run mlp-train --data "$T/names.txt" -o -
expect_usage

# ---- bad input: one line, exit 1
run mlp-train --data "$T/missing.txt" -o "$T/m.safetensors"
expect_fail 'missing\.txt'
printf 'paris\nlyon\nbad\xffname\n' >"$T/bad.txt"
run mlp-train --data "$T/bad.txt" -o "$T/m.safetensors"
expect_fail 'bad\.txt:3: invalid UTF-8'
run mlp-train "${TINY[@]}" -o "$T/nodir/m.safetensors"
expect_fail 'nodir'
check "no checkpoint after a failure" '[ ! -e "$T/m.safetensors" ]'

# ---- summary, log, checkpoint; generate and score with it
head -n 450 "$T/names.txt" >"$T/train.txt"
tail -n 50 "$T/names.txt" >"$T/val.txt"
run mlp-train "${TINY[@]}" --data "$T/train.txt" --val-data "$T/val.txt" --steps 30 \
    --eval-every 10 -o "$T/m.safetensors" --log "$T/log.tsv"
expect_rc 0
expect_out '^model	params	steps	train_loss	val_loss	best_val_loss	best_step	seconds	steps_per_s	tokens_per_s$'
expect_out '^mlp	[0-9]+	30	[0-9.]+	[0-9.]+	[0-9.]+	30	[0-9.]+	[0-9.]+	[0-9]+$'
check "no progress line when stderr is not a terminal" '[ -z "$ERR" ]'
check "two summary lines" '[ "$(printf "%s\n" "$OUT" | wc -l)" -eq 2 ]'
val=$(printf '%s\n' "$OUT" | awk -F'\t' 'NR == 2 { print $5 }')
check "log: header and a row per evaluation" '[ "$(wc -l <"$T/log.tsv")" -eq 4 ] &&
    head -1 "$T/log.tsv" | grep -qx "step	train_loss	val_loss	lr	tokens_per_s"'
check "log: last row is the final validation loss" \
    '[ "$(tail -1 "$T/log.tsv" | cut -f3)" = "$val" ]'
run generate -m "$T/m.safetensors" -n 5 --seed 1
expect_rc 0
check "generate: five names" '[ "$(printf "%s\n" "$OUT" | grep -c .)" -eq 5 ]'
run generate -m "$T/m.safetensors" --score "$T/val.txt"
expect_rc 0
expect_err "^mean loss: $val nats/char over 50 names"

# --dump-split writes the seeded split, which generate --score agrees with
mkdir -p "$T/split"
run mlp-train "${TINY[@]}" --steps 5 -o "$T/s.safetensors" --dump-split "$T/split"
expect_rc 0
val=$(printf '%s\n' "$OUT" | awk -F'\t' 'NR == 2 { print $5 }')
check "split: every row on one side" \
    '[ $(( $(wc -l <"$T/split/train.txt") + $(wc -l <"$T/split/val.txt") )) -eq 499 ]'
check "split: no validation name is a training name" \
    '[ -z "$(sort -u "$T/split/val.txt" | comm -12 - <(sort -u "$T/split/train.txt"))" ]'
run generate -m "$T/s.safetensors" --score "$T/split/val.txt"
expect_err "^mean loss: $val nats/char"

# ---- resume after --steps: the same file as one uninterrupted run
run mlp-train "${TINY[@]}" --steps 40 --eval-every 10 -o "$T/full.safetensors"
full=$(printf '%s\n' "$OUT" | cut -f1-7)
run mlp-train "${TINY[@]}" --steps 20 --eval-every 10 -o "$T/half.safetensors"
run mlp-train --data "$T/names.txt" --threads 1 --steps 40 --resume "$T/half.safetensors" \
    -o "$T/half.safetensors"
expect_rc 0
check "resume: same summary as one run" '[ "$(printf "%s\n" "$OUT" | cut -f1-7)" = "$full" ]'
check "resume: the same checkpoint (provenance aside)" 'same_checkpoint "$T/full.safetensors" "$T/half.safetensors"'

# ---- a real Ctrl-C: exit 130, a checkpoint, and resuming it is exact
bin/mlp-train "${TINY[@]}" --hidden 256 --context 8 --steps 1000000 --eval-every 0 \
    -o "$T/int.safetensors" >"$T/out" 2>"$T/err" </dev/null &
pid=$!
sleep 0.5   # loading 500 names takes milliseconds: by now it is training
kill -INT $pid; wait $pid; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err"); LAST="mlp-train & kill -INT"
expect_rc 130
expect_err_lines 1
expect_err '^mlp-train: interrupted at step [0-9]+; checkpoint written to .*int\.safetensors'
n=$(printf '%s\n' "$ERR" | sed -n 's/.*interrupted at step \([0-9]*\);.*/\1/p')
check "interrupt: checkpoint written" '[ -s "$T/int.safetensors" ]'
if [ -n "$n" ]; then
    m=$((n + 15))
    run mlp-train "${TINY[@]}" --hidden 256 --context 8 --steps $m --eval-every 0 -o "$T/ref.safetensors"
    ref=$(printf '%s\n' "$OUT" | cut -f1-7)
    run mlp-train --data "$T/names.txt" --threads 1 --resume "$T/int.safetensors" --steps $m \
        -o "$T/int.safetensors"
    expect_rc 0
    check "interrupt + resume: same summary as one run" '[ "$(printf "%s\n" "$OUT" | cut -f1-7)" = "$ref" ]'
    check "interrupt + resume: the same checkpoint (provenance aside)" 'same_checkpoint "$T/ref.safetensors" "$T/int.safetensors"'
fi

# ---- NaN: stop naming the step, keep the last good checkpoint
cp "$T/full.safetensors" "$T/good.safetensors"
run mlp-train --data "$T/names.txt" --threads 1 --resume "$T/good.safetensors" --steps 1000 \
    --lr 1e9 --eval-every 100 -o "$T/good.safetensors"
expect_fail 'loss is (NaN|infinite) at step [0-9]+ .*no checkpoint was written'
check "NaN: checkpoint untouched" 'cmp -s "$T/full.safetensors" "$T/good.safetensors"'
run mlp-train "${TINY[@]}" --steps 1000 --eval-every 5 --lr 1e3 -o "$T/nan.safetensors"
expect_fail 'at step [0-9]+ .*nan\.safetensors \(step [0-9]+\) was left as it was'
kept=$(printf '%s\n' "$ERR" | sed -n 's/.*(step \([0-9]*\)) was left.*/\1/p')
run generate -m "$T/nan.safetensors" -n 2 --seed 1
expect_rc 0
check "NaN: the kept checkpoint is the last evaluated step" \
    'grep -aq "\"step\":\"$kept\"" "$T/nan.safetensors"'

# ---- --resume with a checkpoint of another kind, or a broken one
printf 'paris\nlyon\nnice\nnantes\n' >"$T/ng.txt"
if [ -x "$BIN/ngram" ]; then
    "$BIN/ngram" -n 2 --data "$T/names.txt" -o "$T/ngram.safetensors" >/dev/null 2>&1
    run mlp-train "${TINY[@]}" --resume "$T/ngram.safetensors" -o "$T/x.safetensors"
    expect_fail "ngram.*not a.*mlp|not a.*mlp.*ngram"
fi
printf 'not a checkpoint' >"$T/junk.safetensors"
run mlp-train "${TINY[@]}" --resume "$T/junk.safetensors" -o "$T/x.safetensors"
expect_fail 'junk\.safetensors'

# ---- --keep-best: the file holds the best evaluation
run mlp-train "${TINY[@]}" --steps 40 --eval-every 10 --lr 0.05 --keep-best -o "$T/best.safetensors"
expect_rc 0
best=$(printf '%s\n' "$OUT" | awk -F'\t' 'NR == 2 { print $7 }')
check "keep-best: the file is the best step" 'grep -aq "\"step\":\"$best\"" "$T/best.safetensors"'

# ---- a NaN names the step; with VILLES_CHECK_NAN=1 also the first op that made one
run mlp-train "${TINY[@]}" --lr 1e6 --steps 200 --eval-every 0 -o "$T/nan.safetensors"
expect_fail "loss is (NaN|infinite) at step [0-9]+"
check "no op named without the switch" '! printf "%s" "$ERR" | grep -q "first: op"'
VILLES_CHECK_NAN=1 run mlp-train "${TINY[@]}" --lr 1e6 --steps 200 --eval-every 0 -o "$T/nan.safetensors"
expect_fail "first: op 'context_linear' \(node 0, output [0-9]+x32\) produced"
finish
