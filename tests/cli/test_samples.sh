#!/usr/bin/env bash
# --samples N (every trainer, trcli.c): the log's three more columns, the
# same weights with and without it (its rng is its own), a resumed run
# refusing a log of other columns, trainers without names refusing it, and
# the line shown under the progress line on a terminal.
. tests/cli/lib.sh

head -n 450 data/villes.txt >"$T/train.txt"
sed -n 451,500p data/villes.txt >"$T/val.txt"
DATA=(--data "$T/train.txt" --val-data "$T/val.txt" --batch-size 16 --threads 1 --steps 20 --eval-every 10)
TF=(--d-model 16 --heads 2 --layers 1)

run transformer-train --help
expect_rc 0; expect_out '--samples N'
run transformer-train "${DATA[@]}" "${TF[@]}" --samples -1
expect_usage

# ---- the log's columns, and the same weights without --samples
for prog in transformer mlp rnn; do
    args=(); [ $prog = transformer ] && args=("${TF[@]}")
    [ $prog = mlp ] && args=(--d-model 8 --hidden 32)
    [ $prog = rnn ] && args=(--d-model 16 --cell gru)
    run $prog-train "${DATA[@]}" "${args[@]}" --samples 30 --log "$T/$prog.tsv" -o "$T/$prog-s.safetensors"
    expect_rc 0 "$prog-train --samples"
    check "$prog: log header" 'head -1 "$T/$prog.tsv" | grep -qx "step	train_loss	val_loss	lr	tokens_per_s	copied	distinct	mean_len"'
    check "$prog: shares in [0,1], a mean length" 'awk -F"\t" "NR > 1 && !(\$6 >= 0 && \$6 <= 1 && \$7 > 0 && \$7 <= 1 && \$8 > 0) { bad = 1 }
        END { exit bad || NR != 3 }" "$T/$prog.tsv"'
    run $prog-train "${DATA[@]}" "${args[@]}" -o "$T/$prog.safetensors"
    expect_rc 0
    check "$prog: the same weights with and without --samples" 'same_checkpoint "$T/$prog.safetensors" "$T/$prog-s.safetensors"'
done

# ---- the samples follow --seed (their rng is seeded from it, and the step)
run mlp-train "${DATA[@]}" --d-model 8 --hidden 32 --samples 30 --log "$T/again.tsv" -o "$T/a.safetensors"
check "same seed, same samples" '[ "$(cut -f6- "$T/again.tsv")" = "$(cut -f6- "$T/mlp.tsv")" ]'

# ---- copied: a model that learnt 30 names copies them
head -n 30 data/villes.txt >"$T/few.txt"
run mlp-train --data "$T/few.txt" --val-data "$T/few.txt" --d-model 16 --hidden 64 --steps 600 --lr 1e-2 \
    --eval-every 0 --samples 100 --log "$T/few.tsv" --threads 1 -o "$T/few.safetensors"
expect_rc 0
check "most samples of an overfitted model are copies" 'awk -F"\t" "NR == 2 { exit !(\$6 > 0.5) }" "$T/few.tsv"'

# ---- --resume onto a log without the columns
run mlp-train "${DATA[@]}" --d-model 8 --hidden 32 --steps 10 --log "$T/plain.tsv" -o "$T/r.safetensors"
run mlp-train "${DATA[@]}" --resume "$T/r.safetensors" --samples 10 --log "$T/plain.tsv" -o "$T/r.safetensors"
expect_fail 'plain\.tsv: its columns'

# ---- trainers without names to sample
run rnn-train --text "$T/train.txt" --steps 2 --threads 1 --samples 5 -o "$T/text.safetensors"
expect_usage; expect_err 'no names'

# ---- on a terminal (script(1) gives stderr a tty): names under the progress line
if command -v script >/dev/null; then
    script -qec "$BIN/mlp-train ${DATA[*]} --d-model 8 --hidden 32 --samples 20 -o $T/tty.safetensors" \
        /dev/null >"$T/tty.out" 2>&1 </dev/null
    check "terminal: a samples line, then back up" 'grep -q "step 20  val [0-9.]*  copied [0-9]*%: " "$T/tty.out" &&
        grep -q "$(printf "\033\\[A")" "$T/tty.out"'
else
    echo "skip: script(1) not installed, the terminal display is not tested"
fi
finish
