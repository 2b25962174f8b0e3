#!/usr/bin/env bash
# The README's demo: fit n-gram models of orders 1 to 7 on data/villes.txt,
# print their validation losses, and generate 20 names from the 7-gram.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p weights
echo "== n-gram models on data/villes.txt (interpolated Kneser-Ney; loss in nats/char)" >&2
for n in 1 2 3 4 5 6 7; do
    if [ "$n" -eq 1 ]; then
        bin/ngram -n "$n" --data data/villes.txt -o weights/ngram-$n.safetensors
    else
        bin/ngram -n "$n" --data data/villes.txt -o weights/ngram-$n.safetensors | tail -n 1
    fi
done
echo "== 20 names from the 7-gram" >&2
bin/generate -m weights/ngram-7.safetensors -n 20 --seed 7
