#!/usr/bin/env bash
# --fold and --teacher: folds recorded in checkpoints, teachers of any kind
# (mix included), coverage and vocabulary refusals, a tiny distillation run
# and its bit-exact resume; --swa-start.
. "$(dirname "$0")/lib.sh"

D=tests/data/train_villes400.txt
TINY="--data $D --d-model 16 --heads 2 --layers 1 --batch-size 16 --eval-every 10 --threads 1"

# Teachers: a 3-gram and a 4-gram per fold, mixed per fold.
for k in 0 1; do
    run ngram -n 3 --data $D --fold $k/2 -o "$T/ng3-f$k.safetensors"
    expect_rc 0 "ngram --fold $k/2"
    run ngram -n 4 --data $D --fold $k/2 -o "$T/ng4-f$k.safetensors"
done
run ngram -n 3 --data $D -o "$T/ng3.safetensors"
full=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f4)
run ngram -n 3 --data $D --fold 0/2 -o "$T/x.safetensors"
check "a fold trains on fewer n-grams" '[ "$(printf "%s\n" "$OUT" | sed -n 2p | cut -f4)" -lt "$full" ]'
check "the fold is in the n-gram's metadata" 'grep -q "\"fold\":\"0/2\"" "$T/ng3-f0.safetensors"'
run ngram --fold 2/2 --data $D
expect_usage
for k in 0 1; do
    run mix -m "$T/ng3-f$k.safetensors" -m "$T/ng4-f$k.safetensors" --data $D --buckets position \
        -o "$T/mix-f$k.safetensors"
    expect_rc 0 "mix of fold $k"
done

# A student distilled from the two mixtures.
run transformer-train $TINY --steps 20 --teacher "$T/mix-f0.safetensors" --teacher "$T/mix-f1.safetensors" -o "$T/st.safetensors"
expect_rc 0 "distillation run"
expect_out "^transformer	[0-9]+	20	"
distilled=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
check "the distillation weight is in train_config" 'grep -q "distill_weight[^0-9]*0\.5" "$T/st.safetensors"'
run transformer-train $TINY --steps 20 -o "$T/plain.safetensors"
plain=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
check "soft targets change the run" '[ "$plain" != "$distilled" ]'
run transformer-train $TINY --steps 20 --teacher "$T/mix-f0.safetensors" --teacher "$T/mix-f1.safetensors" --distill-weight 0 -o "$T/w0.safetensors"
check "weight 0 is the plain run" '[ "$(printf "%s\n" "$OUT" | sed -n 2p | cut -f3-5)" = "$plain" ]'

# Resume: the soft targets are scored again from the same files, bit-exactly.
run transformer-train $TINY --steps 10 --teacher "$T/mix-f0.safetensors" --teacher "$T/mix-f1.safetensors" -o "$T/half.safetensors"
run transformer-train --data $D --threads 1 --resume "$T/half.safetensors" --steps 20 --teacher "$T/mix-f0.safetensors" --teacher "$T/mix-f1.safetensors" -o "$T/resumed.safetensors"
expect_rc 0 "resume a distillation"
check "resumed distillation ends where the straight one ends" '[ "$(printf "%s\n" "$OUT" | sed -n 2p | cut -f3-5)" = "$distilled" ]'
run transformer-train --data $D --resume "$T/half.safetensors" --steps 20 -o "$T/x.safetensors"
expect_fail "needs the --teacher files again on --resume"
check "the teachers' soft targets are fingerprinted" 'grep -q "teachers_fnv1a64" "$T/half.safetensors"'
run transformer-train --data $D --threads 1 --resume "$T/half.safetensors" --steps 20 --teacher "$T/ng3-f0.safetensors" --teacher "$T/mix-f1.safetensors" -o "$T/refused.safetensors"
expect_fail "other soft targets than the run started with"
check "no file from a refused resume" '[ ! -e "$T/refused.safetensors" ]'


# Plain n-gram teachers and an RNN / MLP student take them too.
run rnn-train --data $D --d-model 16 --batch-size 16 --steps 5 --eval-every 0 --threads 1 --teacher "$T/ng3-f0.safetensors" --teacher "$T/ng3-f1.safetensors" -o "$T/rnn.safetensors"
expect_rc 0 "an RNN student"
run mlp-train --data $D --d-model 8 --hidden 16 --batch-size 16 --steps 5 --eval-every 0 --threads 1 --teacher "$T/ng3-f0.safetensors" --teacher "$T/ng3-f1.safetensors" -o "$T/mlp.safetensors"
expect_rc 0 "an MLP student"

# Refusals, one line each.
run transformer-train $TINY --steps 5 --teacher "$T/mix-f0.safetensors" -o "$T/x.safetensors"
expect_fail "no out-of-fold teacher for the training names of fold 1/2"
run transformer-train $TINY --steps 5 --teacher "$T/ng3.safetensors" --teacher "$T/ng3-f1.safetensors" -o "$T/x.safetensors"
expect_fail "not trained with --fold"
run transformer-train $TINY --steps 5 --teacher "$T/ng3-f0.safetensors" --teacher "$T/ng4-f0.safetensors" -o "$T/x.safetensors"
expect_fail "two teachers of fold 0/2"
run mix -m "$T/ng3-f0.safetensors" -m "$T/ng4-f1.safetensors" --data $D -o "$T/mixed.safetensors"
run transformer-train $TINY --steps 5 --teacher "$T/mixed.safetensors" --teacher "$T/mix-f1.safetensors" -o "$T/x.safetensors"
expect_fail "components were trained on different folds"
head -200 $D > "$T/other.txt"
run ngram -n 3 --data "$T/other.txt" --fold 0/2 -o "$T/other-f0.safetensors"
run transformer-train $TINY --steps 5 --teacher "$T/other-f0.safetensors" --teacher "$T/ng3-f1.safetensors" -o "$T/x.safetensors"
if grep -q "another vocabulary" <<<"$ERR"; then expect_fail "another vocabulary"; else expect_fail "."; fi
run ngram -n 3 --data $D --split-seed 4 --fold 0/2 -o "$T/seed4-f0.safetensors"
run transformer-train $TINY --steps 5 --teacher "$T/seed4-f0.safetensors" --teacher "$T/ng3-f1.safetensors" -o "$T/x.safetensors"
expect_fail "split seed 4, not 0"
run mix -m "$T/ng3-f0.safetensors" -m "$T/ng4-f0.safetensors" --data $D --buckets known -o "$T/known-f0.safetensors"
run mix -m "$T/known-f0.safetensors" -m "$T/ng3-f0.safetensors" --dev $D -o "$T/nested-f0.safetensors"
for t in known nested; do
    run transformer-train $TINY --steps 5 --teacher "$T/$t-f0.safetensors" --teacher "$T/mix-f1.safetensors" -o "$T/x.safetensors"
    expect_fail "weighted by known names"
done
run transformer-train $TINY --steps 5 --fold 1/3x -o "$T/x.safetensors"
expect_usage
run transformer-train $TINY --steps 5 --distill-weight 0.5 -o "$T/x.safetensors"
expect_fail "needs the --teacher files"

# --swa-start (weight averaging, same issue): in train_config, resumed exactly,
# exclusive with --ema.
run transformer-train $TINY --steps 20 --swa-start 0.5 -o "$T/swa.safetensors"
expect_rc 0 "--swa-start"
swa=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
check "swa_start in train_config" 'grep -q "swa_start[^0-9]*0\.5" "$T/swa.safetensors"'
check "the mean is not the plain run" '[ "$swa" != "$plain" ]'
run transformer-train $TINY --steps 15 --swa-start 0.6667 -o "$T/swa15.safetensors"   # the same first step, 10
run transformer-train --data $D --threads 1 --resume "$T/swa15.safetensors" --steps 20 --swa-start 0.5 -o "$T/swa20.safetensors"
expect_rc 0 "resume --swa-start"
check "resumed SWA run ends where the straight one ends" '[ "$(printf "%s\n" "$OUT" | sed -n 2p | cut -f3-5)" = "$swa" ]'
run transformer-train $TINY --steps 5 --swa-start 0.5 --ema 0.9 -o "$T/x.safetensors"
expect_fail "choose one"

# A student trained on a fold records it, and can be a teacher.
run transformer-train $TINY --steps 5 --fold 1/2 -o "$T/tf-f1.safetensors"
expect_rc 0 "transformer-train --fold"
check "the fold is in the checkpoint" 'grep -q "\"fold\":\"1/2\"" "$T/tf-f1.safetensors"'
run transformer-train $TINY --steps 5 --teacher "$T/ng3-f0.safetensors" --teacher "$T/tf-f1.safetensors" -o "$T/x.safetensors"
expect_rc 0 "teachers of different kinds"

finish
