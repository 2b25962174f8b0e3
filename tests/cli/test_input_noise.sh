#!/usr/bin/env bash
# --input-noise (data noising, issue 10): recorded in train_config, changes
# the run, resumes bit-exactly, refused out of range and on running text.
. "$(dirname "$0")/lib.sh"

D=tests/data/train_villes400.txt
TINY="--data $D --d-model 16 --layers 1 --batch-size 16 --eval-every 10 --threads 1"

for trainer in "rnn-train --cell gru" "transformer-train --heads 2"; do
    name=${trainer%% *}
    run $trainer $TINY --steps 20 -o "$T/plain.safetensors"
    plain=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
    run $trainer $TINY --steps 20 --input-noise 0.2 -o "$T/noise.safetensors"
    expect_rc 0 "$name --input-noise"
    noisy=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
    check "$name: input_noise in train_config" 'grep -q "input_noise[^0-9]*0\.2" "$T/noise.safetensors"'
    check "$name: noise changes the run" '[ "$noisy" != "$plain" ]'
    run $trainer $TINY --steps 20 --input-noise 0.2 -o "$T/again.safetensors"
    check "$name: seeded, the same run twice" 'same_checkpoint "$T/noise.safetensors" "$T/again.safetensors"'
    run $trainer $TINY --steps 10 --input-noise 0.2 -o "$T/half.safetensors"
    run $trainer --data $D --threads 1 --resume "$T/half.safetensors" --steps 20 -o "$T/resumed.safetensors"
    expect_rc 0 "$name: resume a noised run"
    check "$name: resumed noised run ends bit-exactly where the straight one ends" \
        'same_checkpoint "$T/noise.safetensors" "$T/resumed.safetensors"'
done

# Data-parallel: each shard noises its rows from its own rng; resumed exactly.
run rnn-train --cell gru ${TINY/--threads 1/--threads 2} --steps 20 --input-noise 0.2 -o "$T/t2.safetensors"
expect_rc 0 "--input-noise on 2 threads"
run rnn-train --cell gru ${TINY/--threads 1/--threads 2} --steps 10 --input-noise 0.2 -o "$T/t2half.safetensors"
run rnn-train --data $D --threads 2 --resume "$T/t2half.safetensors" --steps 20 -o "$T/t2res.safetensors"
check "2 threads: resumed noised run ends bit-exactly where the straight one ends" \
    'same_checkpoint "$T/t2.safetensors" "$T/t2res.safetensors"'
run rnn-train --cell gru ${TINY/--threads 1/--threads 2} --steps 20 -o "$T/t2plain.safetensors"
check "2 threads: noise changes the run" '! same_checkpoint "$T/t2.safetensors" "$T/t2plain.safetensors"'

run transformer-train $TINY --steps 2 --input-noise 1 -o "$T/x.safetensors"
expect_usage
run transformer-train $TINY --steps 2 --input-noise -0.1 -o "$T/x.safetensors"
expect_usage
printf 'Le Misanthrope, comédie en cinq actes. ' > "$T/book.txt"
for i in 1 2 3 4 5 6; do cat "$T/book.txt" "$T/book.txt" > "$T/b2.txt"; mv "$T/b2.txt" "$T/book.txt"; done
run transformer-train --text "$T/book.txt" --d-model 16 --heads 2 --layers 1 --window 16 --steps 2 --input-noise 0.1 -o "$T/x.safetensors"
expect_fail "works on names"

finish
