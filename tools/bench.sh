#!/usr/bin/env bash
# bench.sh - `make bench`: training speed of the villes trainers beside the
# PyTorch reference (tools/bench_torch.py), same configuration, same data
# (data/villes.txt), same thread count.
#
#   tools/bench.sh                  THREADS=1 by default
#   THREADS=2 BENCH_SECONDS=20 tools/bench.sh
#
# Prints a TSV table:
#   config  villes_steps_s  torch_steps_s  ratio  villes_tokens_s  torch_tokens_s
# tokens = real (non-pad) targets.  A villes figure is a short fixed-step run
# of the trainer, read from its summary (steps_per_s, tokens_per_s: the
# training steps only, without data loading or evaluation).  The target is a
# ratio of at least 5.  Without PyTorch the torch columns are "-".
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-1}
BENCH_SECONDS=${BENCH_SECONDS:-10}
TORCH_PY=${TORCH_PY:-/usr/bin/python3}
T=$(mktemp -d "${TMPDIR:-/tmp}/villes-bench.XXXXXX")
trap 'rm -rf "$T"' EXIT

# villes_speed PROG ARGS...: "steps_per_s tokens_per_s" of a short run.
villes_speed() {
    local prog=$1; shift
    "bin/$prog" --data data/villes.txt --threads "$THREADS" --eval-every 0 \
        -o "$T/bench.safetensors" "$@" |
        awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i }
                    NR == 2 { print $col["steps_per_s"], $col["tokens_per_s"] }'
}

# torch_speed CONFIG: "steps_per_s tokens_per_s" of the PyTorch reference.
torch_speed() {
    if "$TORCH_PY" -c 'import torch' 2>/dev/null; then
        "$TORCH_PY" tools/bench_torch.py --config "$1" --threads "$THREADS" \
            --seconds "$BENCH_SECONDS" | awk -F'\t' 'NR == 2 { print $2, $3 }'
    else
        echo "- -"
    fi
}

# row CONFIG PROG ARGS...: one line of the table.
row() {
    local config=$1; shift
    local vs vt ts tt
    read -r vs vt < <(villes_speed "$@")
    read -r ts tt < <(torch_speed "$config")
    awk -v c="$config" -v vs="$vs" -v vt="$vt" -v ts="$ts" -v tt="$tt" 'BEGIN {
        ratio = (ts == "-" || ts + 0 == 0) ? "-" : sprintf("%.1f", vs / ts)
        printf "%s\t%.2f\t%s\t%s\t%.0f\t%s\n", c, vs, ts, ratio, vt, tt }'
}

echo "== training speed, $THREADS thread(s), data/villes.txt (ratio target: >= 5)" >&2
printf 'config\tvilles_steps_s\ttorch_steps_s\tratio\tvilles_tokens_s\ttorch_tokens_s\n'
# One line per trainer: the config name of bench_torch.py, then the program
# and the flags that make the same model and batch.
row mlp mlp-train --steps 300 --d-model 32 --hidden 512 --context 20 --batch-size 64
row gru-256 rnn-train --steps 60 --cell gru --d-model 256 --layers 1 --batch-size 128
row rnn-64 rnn-train --steps 600 --cell rnn --d-model 64 --layers 1 --batch-size 64
row transformer-64 transformer-train --steps 300 --d-model 64 --heads 8 --layers 2 --batch-size 64 --max-len 49
row transformer-512 transformer-train --steps 6 --d-model 512 --heads 16 --layers 2 --batch-size 128 --max-len 49
