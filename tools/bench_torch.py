#!/usr/bin/python3
"""bench_torch - training speed of the PyTorch reference, for `make bench`.

    /usr/bin/python3 tools/bench_torch.py [--config NAME]... [--threads N] [--seconds S]

Prints TSV to stdout, one row per configuration:

    config  steps_per_s  tokens_per_s

A step is forward + backward + AdamW step (lr 3e-4, betas 0.9/0.999, weight
decay 0.01) on a batch of names drawn at random from the data, padded to the
longest name of the batch, as villes does.  tokens = non-pad targets (for the
SAE: activation rows, one per input position).  Batches are prepared before
the clock starts; --warmup steps (at most a quarter of --seconds) are not
timed; then steps run until --seconds have passed (at least one step, so a
slow configuration such as transformer-512 may take longer).

Configurations (the ones villes benches):
  mlp              d 32, hidden 512, context 20, batch 64
  transformer-64   d 64, 8 heads, --layers layers, max_len 49, batch 64
  transformer-512  d 512, 16 heads, --layers layers, max_len 49, batch 128
  gru-256          GRU, d 256, 1 layer, batch 128
  rnn-64           tanh RNN, d 64, 1 layer, batch 64
  mamba-64         Mamba, d 64, 1 layer, d_state 16, expand 2, d_conv 4, batch 64
                   (villes_torch.Mamba: its scan is a Python loop over time, as
                   the notebooks' selective_scan_seq)
  sae              L1 SAE, d 64, 256 features, on the last-layer activations
                   of a transformer-64 over 16 names per step (the
                   transformer's no-grad forward is part of the step, as in
                   sae-train; the decoder rows are kept at unit norm)
"""

import argparse
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import villes_torch as vt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LEN = 49
POOL = 32            # distinct batches cycled through

CONFIGS = {
    "mlp":             {"kind": "mlp", "d": 32, "hidden": 512, "context": 20, "batch": 64},
    "transformer-64":  {"kind": "transformer", "d": 64, "heads": 8, "batch": 64},
    "transformer-512": {"kind": "transformer", "d": 512, "heads": 16, "batch": 128},
    "gru-256":         {"kind": "rnn", "cell": "gru", "d": 256, "layers": 1, "batch": 128},
    "rnn-64":          {"kind": "rnn", "cell": "rnn", "d": 64, "layers": 1, "batch": 64},
    "mamba-64":        {"kind": "mamba", "d": 64, "layers": 1, "batch": 64},
    "sae":             {"kind": "sae", "d": 64, "heads": 8, "features": 256, "batch": 16},
}


def build(cfg, V, n_layers):
    k = cfg["kind"]
    if k == "mlp":
        return vt.MLP(V, cfg["d"], cfg["hidden"], cfg["context"])
    if k == "rnn":
        return vt.RNNLM(V, cfg["cell"], cfg["d"], cfg["layers"])
    if k == "mamba":
        return vt.Mamba(V, cfg["d"], cfg["layers"])
    return vt.Transformer(V, cfg["d"], cfg["heads"], n_layers, MAX_LEN)


def optimizer(params):
    return torch.optim.AdamW(params, lr=3e-4, betas=(0.9, 0.999), weight_decay=0.01)


def lm_step_fn(model):
    opt = optimizer(model.parameters())

    def step(x, y):
        loss = vt.lm_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return int((y != vt.PAD).sum())
    return step


def sae_step_fn(cfg, V, n_layers):
    lm = vt.Transformer(V, cfg["d"], cfg["heads"], n_layers, MAX_LEN).eval()
    sae = vt.SAE(cfg["d"], cfg["features"], 3e-4, n_layers)
    opt = optimizer(sae.parameters())

    def step(x, _y):
        with torch.no_grad():
            acts = lm.residual(x, sae.layer)[x != vt.PAD]
        f, x_hat = sae(acts)
        loss = sae.loss(acts, f, x_hat)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sae.project_decoder_grad()
        opt.step()
        sae.normalize_decoder()
        return acts.size(0)
    return step


def measure(step, batches, seconds, warmup):
    """Untimed warm-up (at most `warmup` steps or a quarter of `seconds`),
    then steps until `seconds` have passed -> (steps/s, tokens/s)."""
    t0 = time.perf_counter()
    for i in range(warmup):
        step(*batches[i % len(batches)])
        if time.perf_counter() - t0 >= seconds / 4:
            break
    steps = tokens = 0
    t0 = time.perf_counter()
    while True:
        tokens += step(*batches[steps % len(batches)])
        steps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return steps / elapsed, tokens / elapsed


def main():
    ap = argparse.ArgumentParser(description="PyTorch training-speed benchmark (TSV on stdout).")
    ap.add_argument("--config", action="append", choices=sorted(CONFIGS) + ["all"],
                    help="configuration to run (repeatable; default all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="timed seconds per configuration (default 10)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    ap.add_argument("--layers", type=int, default=2, help="transformer layers (default 2)")
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "villes.txt"),
                    help="names file (default data/villes.txt)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads < 1 or args.seconds <= 0 or args.warmup < 0 or args.layers < 1:
        ap.error("--threads, --seconds and --layers must be positive, --warmup >= 0")
    selected = args.config or ["all"]
    names_sel = list(CONFIGS) if "all" in selected else selected

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    names = vt.read_names(args.data)
    vocab = vt.build_vocab(names)
    rng = random.Random(args.seed)

    print("config\tsteps_per_s\ttokens_per_s", flush=True)
    for name in names_sel:
        cfg = CONFIGS[name]
        batches = [vt.make_batch([names[rng.randrange(len(names))] for _ in range(cfg["batch"])],
                                 vocab) for _ in range(POOL)]
        if cfg["kind"] == "sae":
            step = sae_step_fn(cfg, len(vocab), args.layers)
        else:
            step = lm_step_fn(build(cfg, len(vocab), args.layers))
        sps, tps = measure(step, batches, args.seconds, args.warmup)
        print("%s\t%.3f\t%.0f" % (name, sps, tps), flush=True)


if __name__ == "__main__":
    main()
