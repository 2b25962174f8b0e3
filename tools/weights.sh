#!/usr/bin/env bash
# weights.sh - `make weights`: re-train the default weights shipped in
# weights/, with the exact commands that made them.
#
#   tools/weights.sh                 all of them, in dependency order
#   tools/weights.sh transformer     one of: transformer gru sae mix
#
# The SAE is trained on weights/transformer.safetensors, so re-training the
# Transformer means re-training the SAE.  One thread each, so the figures
# match the notes on the issues.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p weights

# The default Transformer is small (d_model 64, 4 layers, 268,672 parameters):
# the default SAE reads its residual stream.  Recipe: cosine schedule with
# 200 warm-up steps to lr 2e-3, dropout 0.1, batch 64, 10,000 steps, the
# state of lowest whole-set validation loss kept.  The training checkpoint
# would carry the AdamW moments (3x the model): what ships is the model alone.
transformer() {
    train_model_only weights/transformer.safetensors transformer-train \
        --d-model 64 --heads 8 --layers 4 --dropout 0.1 \
        --schedule cosine --warmup 200 --lr 2e-3 --batch-size 64 --steps 10000 \
        --eval-every 1000
}

# train_model_only OUT PROG FLAGS...: train on data/villes.txt with one
# thread, keep the best state, and ship it as the model alone
# (--model-only: no optimiser moments, which only --resume needs).  Trained
# in a directory beside OUT and renamed over it at the end, so an
# interrupted run leaves the shipped file as it was.
train_model_only() {
    local out=$1 prog=$2 tmp
    shift 2
    tmp=$(mktemp -d "$(dirname "$out")/.train.XXXXXX")
    "bin/$prog" --data data/villes.txt --threads 1 --keep-best --model-only "$@" \
        -o "$tmp/model.safetensors"
    mv "$tmp/model.safetensors" "$out"
    rm -rf "$tmp"
}

# The default GRU: d_model 256, one layer (406,272 parameters).  It
# overfits fast (train 1.48 / validation 1.61 after 10,000 steps of the
# reference recipe), so: dropout 0.2, weight decay 0.1, cosine schedule with
# 200 warm-up steps to lr 2e-3, batch 128, 4,000 steps, the best state kept.
gru() {
    train_model_only weights/gru.safetensors rnn-train \
        --cell gru --d-model 256 --layers 1 --dropout 0.2 --weight-decay 0.1 \
        --schedule cosine --warmup 200 --lr 2e-3 --batch-size 128 --steps 4000 \
        --eval-every 500
}

# The default SAE: sae-train's defaults, TopK (k = 16) with 256 features
# (4 x d_model) on the residual stream after the last layer of
# weights/transformer.safetensors, batch 16 names, Adam lr 3e-4, 20,000
# steps.  TopK rather than L1: at the same L0 it reconstructs better (the
# table in README.md); with lambda 3e-4 the old L1 default kept ~100 of 256
# features active per letter, too dense to read.
sae() {
    bin/sae-train -m weights/transformer.safetensors --threads 1 --model-only \
        -o weights/sae.safetensors
}

# The default of generate: a mixture (mix.h), its weights fitted on the
# validation side of the default split (log-linear, by position won the
# cross-fitting: 1.480 nats/char), of
#   - a Kneser-Ney 7-gram;
#   - three Transformers d64 x 4 (seeds 1, 2, 3: dropout 0.15, cosine lr 2e-3,
#     batch 128, 15,000 steps, weights averaged with --ema 0.999);
#   - a plain RNN d256 x 2 (dropout 0.1, cosine lr 2e-3, --clip 1, 30,000
#     steps, --ema 0.999) and the shipped GRU;
#   - a Mamba d128 x 2 (cosine lr 2e-3, 200 warm-up, weight decay 0.1,
#     4,000 steps, the best state);
#   - a distilled Transformer (the same recipe, soft targets at weight 0.7
#     from out-of-fold teachers: per fold of two, a 7-gram, a Transformer
#     (8,000 steps) and a GRU trained without that fold, mixed with weights
#     fitted on that fold's names, which none of them saw).
# About three and a half hours on one core; the file holds every component whole.
mix() {
    local tmp d=data/villes.txt
    tmp=$(mktemp -d)
    local tf="--d-model 64 --layers 4 --dropout 0.15 --schedule cosine --lr 2e-3 --batch-size 128"
    local gru="--cell gru --d-model 256 --dropout 0.2 --weight-decay 0.1 --schedule cosine --lr 2e-3 --warmup 200 --batch-size 128 --steps 4000"
    bin/ngram -n 7 --data $d -o "$tmp/ngram-7.safetensors" >/dev/null
    for seed in 1 2 3; do
        bin/transformer-train --data $d --threads 1 --seed $seed $tf --steps 15000 --ema 0.999 \
            -o "$tmp/transformer-$seed.safetensors" >/dev/null
    done
    bin/rnn-train --cell rnn --data $d --threads 1 \
        --d-model 256 --layers 2 --dropout 0.1 --schedule cosine --lr 2e-3 --clip 1 \
        --steps 30000 --ema 0.999 -o "$tmp/rnn.safetensors" >/dev/null
    bin/mamba-train --data $d --threads 1 --d-model 128 --layers 2 --schedule cosine --lr 2e-3 \
        --warmup 200 --weight-decay 0.1 --steps 4000 --keep-best -o "$tmp/mamba.safetensors" >/dev/null
    for k in 0 1; do   # the teachers of fold k, and the names of fold k (the others' training names)
        mkdir -p "$tmp/fold$k"
        bin/transformer-train --data $d --fold $k/2 --steps 0 --dump-split "$tmp/fold$k" \
            -o "$tmp/x.safetensors" >/dev/null
        bin/ngram -n 7 --data $d --fold $k/2 -o "$tmp/ngram-f$k.safetensors" >/dev/null
        bin/transformer-train --data $d --fold $k/2 --threads 1 $tf --steps 8000 \
            -o "$tmp/transformer-f$k.safetensors" >/dev/null
        bin/rnn-train --data $d --fold $k/2 --threads 1 $gru -o "$tmp/gru-f$k.safetensors" >/dev/null
    done
    for k in 0 1; do
        bin/mix -m "$tmp/ngram-f$k.safetensors" -m "$tmp/transformer-f$k.safetensors" \
            -m "$tmp/gru-f$k.safetensors" --dev "$tmp/fold$((1 - k))/train.txt" \
            -o "$tmp/teacher-f$k.safetensors" >/dev/null
    done
    bin/transformer-train --data $d --threads 1 $tf --steps 15000 --distill-weight 0.7 \
        --teacher "$tmp/teacher-f0.safetensors" --teacher "$tmp/teacher-f1.safetensors" \
        -o "$tmp/student.safetensors" >/dev/null
    bin/mix -m "$tmp/ngram-7.safetensors" -m "$tmp/transformer-1.safetensors" \
        -m "$tmp/transformer-2.safetensors" -m "$tmp/transformer-3.safetensors" \
        -m "$tmp/rnn.safetensors" -m weights/gru.safetensors \
        -m "$tmp/mamba.safetensors" -m "$tmp/student.safetensors" --data $d \
        -o weights/mix.safetensors
    rm -rf "$tmp"
}

if [ $# -eq 0 ]; then set -- transformer gru sae mix; fi
for w in "$@"; do
    case $w in
        transformer|gru|sae|mix) "$w" ;;
        *) echo "weights: unknown weight '$w' (transformer, gru, sae, mix)" >&2; exit 2 ;;
    esac
done
