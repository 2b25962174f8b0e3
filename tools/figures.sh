#!/usr/bin/env bash
# figures.sh - `make figures`: run the study of figures/study.grid (tools/sweep,
# two runs at a time, under nice) and draw the README's four figures from it
# into figures/*.png (tools/plot).  The runs go to build/study/; a study
# interrupted is resumed by running this again.
#   tools/figures.sh [-j N]     N runs at a time (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=2
[ "${1:-}" = -j ] && JOBS=${2:?-j needs a number}
STUDY=build/study
start=$(date +%s)
nice -n 10 tools/sweep figures/study.grid -j "$JOBS" -d "$STUDY"

tools/plot curves "$STUDY"/mlp-{64,256,1024,2048}.log.tsv -o figures/learning-curves.png \
    --title "MLP of growing hidden size: train (solid) and validation (dashed) loss"
tools/plot copied "$STUDY"/mlp-{64,256,1024,2048}.log.tsv -o figures/copied.png \
    --title "Share of 200 sampled names that are training names, as training goes on"
tools/plot params "$STUDY/summary.tsv" -o figures/params.png \
    --title "Best validation loss against parameters (short runs; n-gram orders 1 to 7)"
bin/explore embeddings -m "$STUDY/transformer-64.safetensors" >"$STUDY/embeddings.tsv"
tools/plot embeddings "$STUDY/embeddings.tsv" -o figures/embeddings.png \
    --title "Letter embeddings of the d64 Transformer (PCA)"
echo "figures: figures/{learning-curves,copied,params,embeddings}.png in $(($(date +%s) - start)) s" >&2
