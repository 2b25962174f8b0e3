#!/usr/bin/env bash
# weights.sh - `make weights`: re-train the default weights shipped in
# weights/, with the exact commands that made them.
#
#   tools/weights.sh                 all of them, in dependency order
#   tools/weights.sh transformer     one of: transformer gru sae
#
# The SAE is trained on weights/transformer.safetensors, so re-training the
# Transformer means re-training the SAE.  One thread each, so the figures
# match the notes on the issues.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p weights

transformer() {
    echo "weights: transformer not defined yet" >&2; return 1
}

gru() {
    echo "weights: gru not defined yet" >&2; return 1
}

sae() {
    echo "weights: sae not defined yet" >&2; return 1
}

if [ $# -eq 0 ]; then set -- transformer gru sae; fi
for w in "$@"; do
    case $w in
        transformer|gru|sae) "$w" ;;
        *) echo "weights: unknown weight '$w' (transformer, gru, sae)" >&2; exit 2 ;;
    esac
done
