#!/usr/bin/env bash
# rnn-train: flags, usage errors, train -> generate -> score for both cells,
# running text (--text) on a BOM + CRLF file, resume, wrong-kind checkpoint.
. "$(dirname "$0")/lib.sh"

head -400 data/villes.txt > "$T/names.txt"
TINY="--data $T/names.txt --d-model 12 --batch-size 16 --eval-every 10"

run rnn-train --help
expect_rc 0 "--help"
expect_out "^Usage: rnn-train"
expect_out "--cell"
expect_out "--window"
run rnn-train --version
expect_rc 0 "--version"
expect_out "^rnn-train "

run rnn-train --data "$T/names.txt" --frobnicate
expect_usage
run rnn-train --data "$T/names.txt" --cell bogus
expect_usage
run rnn-train --data "$T/names.txt" --d-model 0
expect_usage
run rnn-train --data "$T/names.txt" --layers 0
expect_usage
run rnn-train --data "$T/names.txt" --dropout 1.5
expect_usage
run rnn-train --data "$T/names.txt" --dropout-mode locked
expect_usage
run rnn-train --data "$T/names.txt" --window 8
expect_usage
expect_err "--window applies to --text only"
run rnn-train --data "$T/names.txt" --text "$T/names.txt"
expect_usage
run rnn-train --data "$T/missing.txt" -o "$T/x.safetensors"
expect_fail "missing.txt"

# Both cells, two layers: train, generate, score.
for cell in rnn gru; do
    run rnn-train $TINY --cell $cell --layers 2 --steps 20 --seed 3 -o "$T/$cell.safetensors"
    expect_rc 0 "training $cell"
    expect_out "^model	params	steps	train_loss	val_loss"
    expect_out "^rnn	[0-9]+	20	"
    check "$cell checkpoint written" '[ -s "$T/$cell.safetensors" ]'

    run generate -m "$T/$cell.safetensors" -n 5 --seed 7
    expect_rc 0 "generate $cell"
    check "five $cell names" '[ "$(printf "%s\n" "$OUT" | grep -c .)" -eq 5 ]'
    head -20 "$T/names.txt" > "$T/some.txt"
    run generate -m "$T/$cell.safetensors" --score "$T/some.txt"
    expect_rc 0 "score $cell"
    expect_out "[0-9]+\.[0-9]+"
done

# Dropout trains (it needs the loop's rng) and leaves validation deterministic.
run rnn-train $TINY --cell gru --layers 2 --dropout 0.3 --steps 10 -o "$T/drop.safetensors"
expect_rc 0 "training with --dropout"
expect_out "^rnn	[0-9]+	10	[0-9.]+	[0-9.]+	"
standard=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f4)

# Variational dropout: in the config; standard, the default, is not written,
# so giving it changes nothing, byte for byte.
run rnn-train $TINY --cell gru --layers 2 --dropout 0.3 --dropout-mode variational --steps 10 -o "$T/var.safetensors"
expect_rc 0 "training with --dropout-mode variational"
check "config holds the mode" 'grep -q "dropout_mode[^a-z]*variational" "$T/var.safetensors"'
check "other masks, another run" '[ "$(printf "%s\n" "$OUT" | sed -n 2p | cut -f4)" != "$standard" ]'
run rnn-train $TINY --cell gru --layers 2 --dropout 0.3 --dropout-mode standard --steps 10 -o "$T/std.safetensors"
check "--dropout-mode standard: the checkpoint of a run without it" 'same_checkpoint "$T/std.safetensors" "$T/drop.safetensors"'
check "no dropout_mode member" '! grep -q dropout_mode "$T/std.safetensors"'
run rnn-train --data "$T/names.txt" --resume "$T/drop.safetensors" --dropout-mode standard --steps 12 -o "$T/x.safetensors"
expect_rc 0 "resume repeating the mode the checkpoint implies"
run rnn-train --data "$T/names.txt" --resume "$T/drop.safetensors" --dropout-mode variational --steps 12 -o "$T/x.safetensors"
expect_usage
run rnn-train --data "$T/names.txt" --resume "$T/var.safetensors" --dropout-mode variational --steps 12 -o "$T/x.safetensors"
expect_rc 0 "resume a variational model"

# generate --score reproduces the trainer's validation loss.
sed -n 401,440p data/villes.txt > "$T/val.txt"
run rnn-train --data "$T/names.txt" --val-data "$T/val.txt" --d-model 12 --layers 2 --steps 10 -o "$T/v.safetensors"
expect_rc 0 "training with --val-data"
val=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f5)
run generate -m "$T/v.safetensors" --score "$T/val.txt"
expect_rc 0 "score the validation names"
check "generate --score gives the trainer's val_loss ($val)" 'printf "%s\n" "$ERR" | grep -q "mean loss: $val "'

# Resume to 30 steps: same result as 30 steps in one go.
run rnn-train $TINY --cell gru --layers 2 --steps 30 --seed 3 -o "$T/straight.safetensors"
expect_rc 0 "straight run"
straight=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
run rnn-train --data "$T/names.txt" --resume "$T/gru.safetensors" --steps 30 -o "$T/resumed.safetensors"
expect_rc 0 "resume"
resumed=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
check "resumed run ends where the straight run ends" '[ "$straight" = "$resumed" ]'
run rnn-train --data "$T/names.txt" --resume "$T/gru.safetensors" --cell rnn --steps 30 -o "$T/x.safetensors"
expect_usage

# A checkpoint of another kind is rejected with one line.
run rnn-train --data "$T/names.txt" --resume tests/data/fixtures/mlp.safetensors --steps 30 -o "$T/x.safetensors"
expect_fail "mlp"

# Running text: a byte-order mark and CRLF line ends.
{
    printf '\357\273\277'
    for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
        printf 'Le petit chat dort au soleil, et la pluie tombe sur Paris.\r\n'
        printf "Qu'il est doux de ne rien faire quand tout s'agite autour de nous !\r\n"
    done
} > "$T/text.txt"
TEXT="--text $T/text.txt --d-model 12 --batch-size 4 --window 16 --eval-every 5"
run rnn-train $TEXT --steps 12 --seed 2 -o "$T/text.safetensors"
expect_rc 0 "--text training"
expect_out "^rnn	[0-9]+	12	"
run generate -m "$T/text.safetensors" --chars 50 --seed 1
expect_rc 0 "generate --chars"
check "running text, no BOM, no CR" '[ -n "$OUT" ] && ! printf "%s" "$OUT" | grep -q "$(printf "\r")"'

# Resume in text mode continues the walk and the carried state exactly.
run rnn-train $TEXT --steps 20 --seed 2 -o "$T/text_straight.safetensors"
expect_rc 0 "text straight run"
straight=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
run rnn-train --text "$T/text.txt" --resume "$T/text.safetensors" --steps 20 -o "$T/text_resumed.safetensors"
expect_rc 0 "text resume"
resumed=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
check "resumed text run ends where the straight run ends" '[ "$straight" = "$resumed" ]'
# a text model resumes with --text only, a names model with --data only
run rnn-train --data "$T/names.txt" --resume "$T/text.safetensors" --steps 20 -o "$T/x.safetensors"
expect_usage
run rnn-train --text "$T/text.txt" --resume "$T/gru.safetensors" --steps 40 -o "$T/x.safetensors"
expect_usage
# more tracks than the stream has characters
run rnn-train --text "$T/text.txt" --batch-size 5000 --steps 1 -o "$T/x.safetensors"
expect_fail "too short"

finish
