#!/usr/bin/env bash
# mamba-train: flags, usage errors, train -> generate -> score, exact resume.
. "$(dirname "$0")/lib.sh"

head -400 data/villes.txt > "$T/names.txt"
sed -n 401,440p data/villes.txt > "$T/val.txt"
TINY="--data $T/names.txt --val-data $T/val.txt --d-model 16 --d-state 4 --layers 2 --batch-size 16 --eval-every 10"

run mamba-train --help
expect_rc 0 "--help"
expect_out "^Usage: mamba-train"
expect_out "--d-state"
expect_out "--dt-rank"
run mamba-train --version
expect_rc 0 "--version"
expect_out "^mamba-train "

run mamba-train --data "$T/names.txt" --frobnicate
expect_usage
run mamba-train --data "$T/names.txt" --d-model 0
expect_usage
run mamba-train --data "$T/names.txt" --d-state 0
expect_usage
run mamba-train --data "$T/names.txt" --expand 9
expect_usage
run mamba-train --data "$T/names.txt" --d-conv x
expect_usage
run mamba-train --data "$T/names.txt" --dt-rank -1
expect_usage
run mamba-train --data "$T/names.txt" --layers 2 extra
expect_usage

# Train a tiny model: the two-line summary on stdout.
run mamba-train $TINY --steps 20 --seed 3 -o "$T/m.safetensors"
expect_rc 0 "training"
expect_out "^model	params	steps	train_loss	val_loss"
expect_out "^mamba	[0-9]+	20	"
check "checkpoint written" '[ -s "$T/m.safetensors" ]'
check "dt_rank auto: ceil(16 / 16) = 1" 'grep -q "dt_rank[^0-9]*1[^0-9]" "$T/m.safetensors"'
val=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f5)

# Generate from it (a prefix too), and score names under it.
run generate -m "$T/m.safetensors" -n 5 --seed 7
expect_rc 0 "generate"
check "five names" '[ "$(printf "%s\n" "$OUT" | grep -c .)" -eq 5 ]'
run generate -m "$T/m.safetensors" -n 3 --seed 7 --prefix saint-
expect_rc 0 "generate --prefix"
check "every name has the prefix" '[ "$(printf "%s\n" "$OUT" | grep -c "^saint-")" -eq 3 ]'
# Scoring the validation file (recurrent form) reproduces the trainer's
# val_loss (the batched graph).
run generate -m "$T/m.safetensors" --score "$T/val.txt"
expect_rc 0 "score"
expect_out "^name	chars	total_loss	loss_per_char$"
expect_err "mean loss: $val "

# Resume to 30 steps: the same weights, bit for bit, as 30 steps in one go.
run mamba-train $TINY --steps 30 --seed 3 -o "$T/straight.safetensors"
expect_rc 0 "straight run"
straight=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
run mamba-train --data "$T/names.txt" --val-data "$T/val.txt" --resume "$T/m.safetensors" --steps 30 -o "$T/resumed.safetensors"
expect_rc 0 "resume"
resumed=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
check "resumed run ends where the straight run ends" '[ "$straight" = "$resumed" ]'
check "resumed checkpoint = straight checkpoint" 'same_checkpoint "$T/straight.safetensors" "$T/resumed.safetensors"'

# A model flag that contradicts the checkpoint is a usage error.
run mamba-train --data "$T/names.txt" --resume "$T/m.safetensors" --d-state 8 --steps 30 -o "$T/x.safetensors"
expect_usage
# A checkpoint of another kind is rejected with one line.
run mamba-train --data "$T/names.txt" --resume tests/data/fixtures/mlp.safetensors --steps 30 -o "$T/x.safetensors"
expect_fail "mlp"
check "no file after a failed resume" '[ ! -e "$T/x.safetensors" ]'

# Running text (trtext.h): characters and BPE, generate --chars, --resume.
head -n 400 data/moliere.txt > "$T/book.txt"
MT="--d-model 16 --batch-size 4 --window 16 --eval-every 0"
run mamba-train --text "$T/book.txt" $MT --steps 6 -o "$T/t.safetensors"
expect_rc 0 "--text on characters"
row=$(printf '%s\n' "$OUT" | sed -n 2p)
check "per char = per token on characters" '[ "$(echo "$row" | cut -f5)" = "$(echo "$row" | cut -f13)" ]'
run generate -m "$T/t.safetensors" --chars 40 --seed 2
expect_rc 0 "generate --chars from a text Mamba"
check "40 characters and a newline" '[ "$(printf '%s' "$OUT" | wc -m)" -ge 40 ]'
run mamba-train --text "$T/book.txt" $MT --steps 12 -o "$T/t12.safetensors"
run mamba-train --text "$T/book.txt" $MT --steps 12 --resume "$T/t.safetensors" -o "$T/t.safetensors"
expect_rc 0 "--text --resume"
check "text resume = straight run" 'same_checkpoint "$T/t.safetensors" "$T/t12.safetensors"'
run mamba-train --text "$T/book.txt" $MT --steps 4 --tokenizer bpe --vocab-size 120 -o "$T/b.safetensors"
expect_rc 0 "--tokenizer bpe"
run generate -m "$T/b.safetensors" --score "$T/book.txt"
expect_rc 0 "--score a text file with a BPE Mamba"
run mamba-train --data "$T/names.txt" --resume "$T/t.safetensors" --steps 20 -o "$T/x.safetensors"
expect_usage

finish
