#!/usr/bin/env bash
# transformer-train: flags, usage errors, train -> generate -> score, resume.
. "$(dirname "$0")/lib.sh"

head -400 data/villes.txt > "$T/names.txt"
sed -n 401,440p data/villes.txt > "$T/val.txt"
TINY="--data $T/names.txt --val-data $T/val.txt --d-model 16 --heads 2 --layers 1 --batch-size 16 --eval-every 10"

run transformer-train --help
expect_rc 0 "--help"
expect_out "^Usage: transformer-train"
expect_out "--heads"
run transformer-train --version
expect_rc 0 "--version"
expect_out "^transformer-train "

run transformer-train --data "$T/names.txt" --frobnicate
expect_usage
run transformer-train --data "$T/names.txt" --heads 3
expect_usage
expect_err "--heads 3 does not divide --d-model 64"
run transformer-train --data "$T/names.txt" --d-model 0
expect_usage
run transformer-train --data "$T/names.txt" --dropout 1.5
expect_usage
run transformer-train --data "$T/names.txt" --attn-dropout 1
expect_usage
run transformer-train --data "$T/names.txt" --emb-dropout -0.1
expect_usage
run transformer-train $TINY --steps 5 --max-len 4 -o "$T/short.safetensors"
expect_fail "max_len 4"
check "no file after a failed start" '[ ! -e "$T/short.safetensors" ]'

# Train a tiny model: the two-line summary on stdout.
run transformer-train $TINY --steps 20 --seed 3 -o "$T/tf.safetensors"
expect_rc 0 "training"
expect_out "^model	params	steps	train_loss	val_loss"
expect_out "^transformer	[0-9]+	20	"
check "checkpoint written" '[ -s "$T/tf.safetensors" ]'
val=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f5)

# Generate from it, and score names under it.
run generate -m "$T/tf.safetensors" -n 5 --seed 7
expect_rc 0 "generate"
check "five names" '[ "$(printf "%s\n" "$OUT" | grep -c .)" -eq 5 ]'
# Scoring the validation file reproduces the trainer's val_loss.
run generate -m "$T/tf.safetensors" --score "$T/val.txt"
expect_rc 0 "score"
expect_out "^name	chars	total_loss	loss_per_char$"
expect_out "^carentan	8	[0-9.]+	[0-9.]+$"
expect_err "mean loss: $val "

# Resume to 30 steps: same result as 30 steps in one go.
run transformer-train $TINY --steps 30 --seed 3 -o "$T/straight.safetensors"
expect_rc 0 "straight run"
straight=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
run transformer-train --data "$T/names.txt" --val-data "$T/val.txt" --resume "$T/tf.safetensors" --steps 30 -o "$T/resumed.safetensors"
expect_rc 0 "resume"
expect_out "^transformer	[0-9]+	30	"
resumed=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
check "resumed run ends where the straight run ends" '[ "$straight" = "$resumed" ]'

# --stop-after: the first 20 steps of a 30-step cosine schedule, saved as if
# they were the run; resumed, the schedule goes on to the straight run's end.
run transformer-train $TINY --steps 30 --seed 3 --schedule cosine --stop-after 20 -o "$T/part.safetensors"
expect_rc 0 "--stop-after"
expect_out "^transformer	[0-9]+	20	"
part=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
run transformer-train $TINY --steps 20 --seed 3 --schedule cosine -o "$T/cos20.safetensors"
check "20 steps of a 30-step schedule are not a 20-step schedule" \
    '[ "$(printf "%s\n" "$OUT" | sed -n 2p | cut -f3-5)" != "$part" ]'
run transformer-train $TINY --steps 30 --seed 3 --schedule cosine -o "$T/cos30.safetensors"
cos30=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
run transformer-train --data "$T/names.txt" --val-data "$T/val.txt" --resume "$T/part.safetensors" -o "$T/part30.safetensors"
expect_rc 0 "resume after --stop-after"
check "resumed to the schedule's end, the straight run" '[ "$(printf "%s\n" "$OUT" | sed -n 2p | cut -f3-5)" = "$cos30" ]'
check "no .last file beside a checkpoint that holds the whole state" '[ ! -e "$T/part.last.safetensors" ]'
# With --keep-best the file holds the best state: the whole one goes to .last.
run transformer-train $TINY --steps 30 --seed 3 --schedule cosine --keep-best --stop-after 20 -o "$T/kb.safetensors"
expect_rc 0 "--stop-after --keep-best"
check "the whole state in the .last file" '[ -s "$T/kb.last.safetensors" ]'
run transformer-train --data "$T/names.txt" --val-data "$T/val.txt" --resume "$T/kb.last.safetensors" --keep-best -o "$T/kb.safetensors"
expect_rc 0 "resume from the .last file"
check "resumed from .last to the schedule's end, the straight run" '[ "$(printf "%s\n" "$OUT" | sed -n 2p | cut -f3-5)" = "$cos30" ]'
run transformer-train $TINY --steps 30 --stop-after 0 -o "$T/x.safetensors"
expect_usage

# A model flag that contradicts the checkpoint is a usage error.
run transformer-train --data "$T/names.txt" --resume "$T/tf.safetensors" --d-model 32 --steps 30 -o "$T/x.safetensors"
expect_usage
# The checkpoint's config has no attn_dropout member: it is 0, which a flag may repeat.
run transformer-train --data "$T/names.txt" --resume "$T/tf.safetensors" --attn-dropout 0.1 --steps 30 -o "$T/x.safetensors"
expect_usage
run transformer-train --data "$T/names.txt" --val-data "$T/val.txt" --resume "$T/tf.safetensors" --attn-dropout 0 --steps 30 -o "$T/x.safetensors"
expect_rc 0 "resume with the rate the checkpoint implies"
check "same run as without the flag" '[ "$(printf "%s\n" "$OUT" | sed -n 2p | cut -f3-5)" = "$resumed" ]'

# The new rates at 0 change nothing: the same checkpoint byte for byte, and
# a config without their members.
run transformer-train $TINY --steps 20 --seed 3 --attn-dropout 0 --emb-dropout 0 -o "$T/zero.safetensors"
expect_rc 0 "training with the rates at 0"
check "rates at 0: the checkpoint of a run without them" 'same_checkpoint "$T/zero.safetensors" "$T/tf.safetensors"'
check "no attn_dropout member" '! grep -q attn_dropout "$T/zero.safetensors"'

# Attention and embedding dropout: in the config, and resumed exactly (the
# masks come from the checkpointed rng).
run transformer-train $TINY --steps 30 --seed 3 --attn-dropout 0.1 --emb-dropout 0.2 -o "$T/drop30.safetensors"
expect_rc 0 "training with --attn-dropout --emb-dropout"
check "config holds the rates" 'grep -q "attn_dropout[^0-9]*0\.1[0-9]*,[^0-9]*emb_dropout[^0-9]*0\.2" "$T/drop30.safetensors"'
drop30=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
check "dropout changes the run" '[ "$drop30" != "$straight" ]'
run transformer-train $TINY --steps 20 --seed 3 --attn-dropout 0.1 --emb-dropout 0.2 -o "$T/drop20.safetensors"
run transformer-train --data "$T/names.txt" --val-data "$T/val.txt" --resume "$T/drop20.safetensors" --steps 30 -o "$T/drop_resumed.safetensors"
expect_rc 0 "resume with dropout"
check "resumed dropout run ends where the straight one ends" '[ "$(printf "%s\n" "$OUT" | sed -n 2p | cut -f3-5)" = "$drop30" ]'
# A checkpoint of another kind is rejected with one line.
run transformer-train --data "$T/names.txt" --resume tests/data/fixtures/mlp.safetensors --steps 30 -o "$T/x.safetensors"
expect_fail "mlp"

finish
