#!/usr/bin/env bash
# test_inspect.sh - inspect on every kind, provenance in the checkpoints,
# trainers writing ./KIND.safetensors without -o, --model-only, and bad
# files refused with one line.
. "$(dirname "$0")/lib.sh"
tiny_transformer
TINY=(--data "$T/names.txt" --val-data "$T/val.txt" --threads 1 --batch-size 16 --eval-every 10)
# field NAME: the value of field NAME in inspect --tsv's output in $OUT.
field() { printf '%s\n' "$OUT" | awk -F'\t' -v f="$1" '$1 == f { print $2 }'; }

run inspect --help
expect_rc 0 "--help"
expect_out "^Usage: inspect"
expect_out "--tsv"
run inspect --version
expect_out "^inspect "
run inspect
expect_usage
run inspect --frobnicate x
expect_usage

# ---- a trainer without -o writes ./transformer.safetensors, not weights/
mkdir -p "$T/work/weights"
(cd "$T/work" && "$OLDPWD/$BIN/transformer-train" "${TINY[@]}" --d-model 16 --heads 2 --layers 1 \
    --steps 20 >"$T/out" 2>"$T/err"); RC=$?; LAST="cd work && transformer-train (no -o)"
expect_rc 0 "transformer-train without -o"
params=$(awk -F'\t' 'NR == 2 { print $2 }' "$T/out")
check "without -o: ./transformer.safetensors" '[ -s "$T/work/transformer.safetensors" ]'
check "without -o: nothing in weights/" '[ -z "$(ls "$T/work/weights")" ]'
run transformer-train --help
expect_out "default transformer.safetensors in the current directory"

# ---- provenance, text and TSV
run inspect "$T/work/transformer.safetensors"
expect_rc 0 "inspect text"
expect_out "^kind +transformer$"
expect_out "^config +vocab_size [0-9]+, d_model 16, n_heads 2, n_layers 1"
expect_out "^made by +transformer-train [0-9.]+$"
expect_out "^command +transformer-train --data $T/names.txt --val-data $T/val.txt --threads 1 "
expect_out "^data +$T/names.txt \($(wc -c <"$T/names.txt") bytes, fnv1a64 [0-9a-f]{16}\)$"
expect_out "^resumable +yes"
expect_out "^  core.PE.weight +F32 "
run inspect --tsv "$T/work/transformer.safetensors"
expect_rc 0 "inspect --tsv"
expect_out "^field	value$"
check "--tsv: params = the trainer's summary" '[ -n "$params" ] && [ "$(field params)" = "$params" ]'
check "--tsv: config.d_model" '[ "$(field config.d_model)" = 16 ]'
check "--tsv: data size" '[ "$(field provenance.data.1.bytes)" = "$(wc -c <"$T/val.txt")" ]'
check "--tsv: meta.step" '[ "$(field meta.step)" = 20 ]'
check "--tsv: optimiser state" '[ "$(field optimiser_state)" = yes ]'
h1=$(field provenance.data.0.fnv1a64)
# the hash follows the data: one byte more, another hash
cp "$T/names.txt" "$T/names2.txt"; echo "zzz" >>"$T/names2.txt"
"$BIN/ngram" -n 2 --data "$T/names2.txt" -o "$T/ng2.safetensors" >/dev/null
run inspect --tsv "$T/ng2.safetensors"
check "another data file, another hash" '[ -n "$h1" ] && [ "$(field provenance.data.0.fnv1a64)" != "$h1" ]'
check "ngram records its command" '[ "$(field provenance.command)" = "ngram -n 2 --data $T/names2.txt -o $T/ng2.safetensors" ]'
run inspect --tensors "$T/work/transformer.safetensors"
expect_out "^name	dtype	shape	numel	fnv1a64$"
expect_out "^embedding.weight	F32	[0-9]+,16	[0-9]+	[0-9a-f]{16}$"

# ---- --model-only: smaller, the model alone, generates, not resumable
run transformer-train "${TINY[@]}" --d-model 16 --heads 2 --layers 1 --steps 20 --model-only \
    -o "$T/mo.safetensors"
expect_rc 0 "--model-only"
check "--model-only: under half the size" '[ $(wc -c <"$T/mo.safetensors") -lt $(($(wc -c <"$T/work/transformer.safetensors") / 2)) ]'
run inspect --tsv "$T/mo.safetensors"
check "--model-only: no optimiser state" '[ "$(field optimiser_state)" = no ] && [ -z "$(field meta.rng)" ]'
check "--model-only: same parameters" '[ "$(field params)" = "$params" ]'
run generate -m "$T/mo.safetensors" -n 3 --seed 1
expect_rc 0 "generate from a --model-only checkpoint"
a=$("$BIN/generate" -m "$T/work/transformer.safetensors" -n 5 --seed 4)
check "--model-only: the same names as the full checkpoint" '[ "$("$BIN/generate" -m "$T/mo.safetensors" -n 5 --seed 4)" = "$a" ]'
run transformer-train --data "$T/names.txt" --steps 30 --resume "$T/mo.safetensors" -o "$T/r.safetensors"
expect_fail "mo.safetensors holds the model alone \(written with --model-only\)"
# Ctrl-C during a --model-only run: the whole state goes to .last, which resumes
"$BIN/transformer-train" "${TINY[@]}" --d-model 16 --heads 2 --layers 1 --steps 100000000 --model-only \
    -o "$T/mi.safetensors" >"$T/out" 2>"$T/err" </dev/null &
pid=$!
sleep 0.5
kill -INT $pid; wait $pid; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err"); LAST="transformer-train --model-only & kill -INT"
expect_rc 130
expect_err "checkpoint written to .*mi\.last\.safetensors"
run inspect --tsv "$T/mi.last.safetensors"
check "interrupted --model-only: .last holds the training state" '[ "$(field optimiser_state)" = yes ]'
n=$(field meta.step)
run transformer-train --data "$T/names.txt" --val-data "$T/val.txt" --threads 1 \
    --resume "$T/mi.last.safetensors" --steps $((n + 3)) --eval-every 0 --model-only -o "$T/mi.safetensors"
expect_rc 0 "--resume FILE.last"
expect_out "^transformer	[0-9]+	$((n + 3))	"

# ---- every kind: ngram, mlp, rnn, transformer, mix, sae
"$BIN/mlp-train" "${TINY[@]}" --steps 5 -o "$T/mlp.safetensors" >/dev/null 2>&1
"$BIN/rnn-train" "${TINY[@]}" --d-model 8 --steps 5 -o "$T/rnn.safetensors" >/dev/null 2>&1
"$BIN/ngram" -n 3 --data "$T/names.txt" --val-data "$T/val.txt" -o "$T/ng.safetensors" >/dev/null 2>&1
"$BIN/mix" -m "$T/ng.safetensors" -m "$T/tf.safetensors" --dev "$T/val.txt" -o "$T/mix.safetensors" >/dev/null 2>&1
"$BIN/sae-train" -m "$T/tf.safetensors" --data "$T/names.txt" --val-data "$T/val.txt" --steps 5 \
    --eval-every 0 -o "$T/sae.safetensors" >/dev/null 2>&1
for k in ngram:ng mlp:mlp rnn:rnn transformer:tf mix:mix sae:sae; do
    run inspect "$T/${k#*:}.safetensors"
    expect_rc 0 "inspect ${k%%:*}"
    expect_out "^kind +${k%%:*}$"
done
expect_out "^layer +2$"
run inspect "$T/mix.safetensors"
expect_out "^component 0 +ngram \{"
expect_out "^component 1 +transformer \{"
expect_out "^made by +mix "
run inspect --tsv "$T/mix.safetensors" "$T/sae.safetensors"
check "two files, one header" '[ "$(printf "%s\n" "$OUT" | grep -c "^field	value$")" -eq 1 ]'
check "two files: two kinds" '[ "$(field kind | tr "\n" " ")" = "mix sae " ]'

# ---- same_checkpoint tells different models apart
"$BIN/transformer-train" "${TINY[@]}" --d-model 16 --heads 2 --layers 1 --steps 20 --seed 2 \
    -o "$T/seed2.safetensors" >/dev/null 2>&1
check "same_checkpoint: another seed differs" '! same_checkpoint "$T/seed2.safetensors" "$T/work/transformer.safetensors"'
check "same_checkpoint: a file is itself" 'same_checkpoint "$T/seed2.safetensors" "$T/seed2.safetensors"'

# ---- bad files: one line, exit 1; the others still shown
run inspect "$T/names.txt"
expect_fail "names.txt"
head -c 300 "$T/mlp.safetensors" >"$T/cut.safetensors"
run inspect "$T/cut.safetensors"
expect_fail "cut.safetensors: "
run inspect "$T/missing.safetensors"
expect_fail "missing.safetensors: No such file"
run inspect --tsv "$T/cut.safetensors" "$T/mlp.safetensors"
expect_rc 1 "one bad file of two"
expect_out "^kind	mlp$"
finish
