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
# carries the AdamW moments (3x the model), so what ships is the model alone.
transformer() {
    train_model_only weights/transformer.safetensors transformer-train \
        --d-model 64 --heads 8 --layers 4 --dropout 0.1 \
        --schedule cosine --warmup 200 --lr 2e-3 --batch-size 64 --steps 10000 \
        --eval-every 1000
}

# train_model_only OUT PROG FLAGS...: train on data/villes.txt with one
# thread, keep the best state, and ship it as the model alone.
train_model_only() {
    local out=$1 prog=$2 tmp
    shift 2
    tmp=$(mktemp -d)
    "bin/$prog" --data data/villes.txt --threads 1 --keep-best "$@" -o "$tmp/model.safetensors"
    model_only "$tmp/model.safetensors" "$out"
    rm -rf "$tmp"
}

# model_only IN OUT: copy a training checkpoint without its optimiser moments
# (optim.* tensors) and loop state (rng, train_window), which only --resume
# needs; written to a temporary file renamed into place.
model_only() {
    python3 - "$1" "$2" <<'EOF'
import json, os, struct, sys
src, dst = sys.argv[1], sys.argv[2]
buf = open(src, "rb").read()
(n,) = struct.unpack("<Q", buf[:8])
header = json.loads(buf[8:8 + n])
meta = {k: v for k, v in header.pop("__metadata__").items() if k not in ("rng", "train_window")}
out, data = {"__metadata__": meta}, []
for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    if name.startswith("optim."):
        continue
    b, e = t["data_offsets"]
    start = sum(len(d) for d in data)
    data.append(buf[8 + n + b:8 + n + e])
    out[name] = dict(t, data_offsets=[start, start + e - b])
head = json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()
head += b" " * (-len(head) % 8)
with open(dst + ".tmp", "wb") as fp:
    fp.write(struct.pack("<Q", len(head)) + head + b"".join(data))
os.replace(dst + ".tmp", dst)
EOF
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
    bin/sae-train -m weights/transformer.safetensors --threads 1 -o weights/sae.safetensors
}

# The default of generate: a mixture (mix.h) of a Kneser-Ney 7-gram, a
# Transformer d64 x 4 (dropout 0.15, cosine lr 2e-3, batch 128, 15,000
# steps, weights averaged with --ema 0.999), a plain RNN d256 x 2 (dropout
# 0.1, cosine lr 2e-3, --clip 1, 30,000 steps, --ema 0.999) and the shipped
# GRU, its weights fitted on the validation side of the default split
# (log-linear, by position won the cross-fitting).  About 45 minutes on one
# core for the two networks; the file holds every component whole.
mix() {
    local tmp
    tmp=$(mktemp -d)
    bin/ngram -n 7 --data data/villes.txt -o "$tmp/ngram-7.safetensors" >/dev/null
    bin/transformer-train --data data/villes.txt --threads 1 \
        --d-model 64 --layers 4 --dropout 0.15 --schedule cosine --lr 2e-3 \
        --batch-size 128 --steps 15000 --ema 0.999 -o "$tmp/transformer.safetensors" >/dev/null
    bin/rnn-train --cell rnn --data data/villes.txt --threads 1 \
        --d-model 256 --layers 2 --dropout 0.1 --schedule cosine --lr 2e-3 --clip 1 \
        --steps 30000 --ema 0.999 -o "$tmp/rnn.safetensors" >/dev/null
    bin/mix -m "$tmp/ngram-7.safetensors" -m "$tmp/transformer.safetensors" \
        -m "$tmp/rnn.safetensors" -m weights/gru.safetensors --data data/villes.txt \
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
