#!/usr/bin/python3
"""make-fixtures - PyTorch reference fixtures for the villes parity tests.

    /usr/bin/python3 tools/make-fixtures.py           write the fixtures
    /usr/bin/python3 tools/make-fixtures.py --check   reload them, recompute in float32
                                                      and run tools/import-pytorch.py

Writes, deterministically (fixed seeds, one thread), into tests/data/fixtures/:

  mlp.safetensors, rnn.safetensors, gru.safetensors, transformer.safetensors,
  mamba.safetensors
      Each is a valid villes checkpoint of that model (metadata format=villes,
      format_version=1, model, config JSON, vocab = the 46 tokens of
      data/villes.txt) with small random weights (norm weights, biases and h0
      not at their initial values, so every gradient is non-trivial) plus:
        fixture.x       I32 (B,T)   inputs  <SOS> c1..cn, <pad> = 0 after
        fixture.y       I32 (B,T)   targets c1..cn <EOS>, <pad> = 0 after
        fixture.logits  F32 (B,T,V) at every position, padded ones included
        fixture.loss    F32 (1)     mean cross-entropy over the non-pad targets
        fixture.grad.<param> F32    d loss / d param, same shape, every param
      The batch is B = 3 real names of unequal lengths (T = longest + 1 = 12).

  transformer_dropout.safetensors, gru_variational.safetensors
      The same for the dropouts whose masks villes addresses by position
      (villes_torch.keep_mask): a transformer with attn_dropout and
      emb_dropout 0.3, a GRU with variational dropout 0.3, plus
        fixture.seed    I32 (1)     the seed of the training tape's rng;
                                    logits, loss and gradients are those of
                                    a training pass with it (the masks drawn
                                    as villes draws them)

  sae.safetensors
      A villes sae checkpoint (config variant "l1", l1 = 0.01 so that the L1
      term shows in the gradients, layer 2; metadata model_file =
      tests/data/fixtures/transformer.safetensors and model_hash = its FNV-1a)
      with W_dec rows at unit norm, plus:
        fixture.acts     F32 (N,d)  SAE inputs: the residual stream of the
                                    transformer fixture after block 2 at the
                                    N = 25 non-pad positions of its fixture.x
                                    (row-major over batch, then time)
        fixture.features F32 (N,F)  f = relu((x - b_dec) W_enc + b_enc)
        fixture.recon    F32 (N,d)  x_hat = f W_dec + b_dec
        fixture.loss     F32 (1)    mean_rows sum_d (x - x_hat)^2 + l1 mean_rows sum_f |f|
        fixture.grad.<param>        the raw gradients (W_dec's NOT projected
                                    onto the rows' tangent space)

  import_transformer.pth, import_gru.pth, import_mamba.pth, import_sae.pth
      PyTorch state_dicts (notebook key names; the transformer one also holds
      a tied lm_head.weight) of small models briefly trained on villes.txt,
      for tools/import-pytorch.py.  Import them with --data data/villes.txt
      (the transformer with --heads 4).
  import_transformer.safetensors, import_gru.safetensors, import_mamba.safetensors,
  import_sae.safetensors
      Those files converted by tools/import-pytorch.py (run from the
      repository root; the SAE with --model
      tests/data/fixtures/import_transformer.safetensors), so that a test
      without PyTorch can score names with them.
  import_names.txt   50 real names
  import_expected.tsv
      model, file, converted, names, targets, loss: for transformer, gru and mamba the mean
      cross-entropy over all non-pad targets of import_names.txt (what
      `generate --score` should report); for sae the L1 loss (l1 = 0.0003, the
      importer's default) averaged over the activations after block 2 of the
      imported transformer at every input position (<SOS> c1..cn) of those names.

All reference values are computed in float64 from the float32 weights and
stored as float32.
"""

import argparse
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import villes_torch as vt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data", "villes.txt")
OUT_REL = os.path.join("tests", "data", "fixtures")
OUT = os.path.join(ROOT, OUT_REL)

# Unequal lengths (7, 11, 4), a space, a hyphen and accents.
BATCH_NAMES = ["le crès", "épiais-rhus", "évry"]
SAE_LAYER = 2
SAE_L1 = 0.01
IMPORT_L1 = 0.0003


def small_configs(V):
    return {
        "mlp": ("mlp", {"vocab_size": V, "d_model": 8, "d_hidden": 16, "n_context": 3}),
        "rnn": ("rnn", {"vocab_size": V, "cell": "rnn", "d_model": 12, "n_layers": 2, "dropout": 0}),
        "gru": ("rnn", {"vocab_size": V, "cell": "gru", "d_model": 12, "n_layers": 2, "dropout": 0}),
        "transformer": ("transformer", {"vocab_size": V, "d_model": 16, "n_heads": 4,
                                        "n_layers": 2, "max_len": 12, "dropout": 0}),
        "mamba": ("mamba", {"vocab_size": V, "d_model": 16, "n_layers": 2, "d_state": 4,
                            "expand_factor": 2, "d_conv": 4, "dt_rank": 2}),
    }


@torch.no_grad()
def randomize(model):
    """Random weights away from the initial values: matrices normal with std
    1/sqrt(fan_in), embeddings std 1 (0.4 when tied to the lm_head, so logits
    stay moderate; positions 0.2), biases 0.3, h0 0.5, norm weights 1 + 0.3
    normal.  float32, as stored."""
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.copy_(1 + 0.3 * torch.randn_like(p))
        elif name.endswith("h0"):
            p.copy_(0.5 * torch.randn_like(p))
        elif p.dim() == 1:
            p.copy_(0.3 * torch.randn_like(p))
        elif name == "embedding.weight":
            p.copy_(torch.randn_like(p) * (1.0 if model.kind == "mlp" else 0.4))
        elif name == "core.PE.weight":
            p.copy_(0.2 * torch.randn_like(p))
        else:
            p.copy_(torch.randn_like(p) / p.size(1) ** 0.5)


def dropout_configs(V):
    """Configs with the position-addressed dropouts, and the rng seed of their pass."""
    tr = dict(small_configs(V)["transformer"][1], attn_dropout=0.3, emb_dropout=0.3)
    gru = dict(small_configs(V)["gru"][1], dropout=0.3, dropout_mode="variational")
    return {"transformer_dropout": ("transformer", tr), "gru_variational": ("rnn", gru)}


DROPOUT_SEED = 7
DISTILL_WEIGHT = 0.3


def reference(model, run):
    """Run `run(model64)` -> (outputs dict, loss) in float64 on a copy of the
    float32 weights; returns float32 outputs, loss and gradients."""
    m = vt.model_from_config(model.kind, model.config())
    m.load_state_dict(model.state_dict())
    m.double()
    outputs, loss = run(m)
    loss.backward()
    out = {k: v.detach().float() for k, v in outputs.items()}
    out["loss"] = loss.detach().float().reshape(1)
    grads = {k: p.grad.float() for k, p in m.named_parameters()}
    return out, grads


def forward(model, x, seed):
    """model(x), a training pass with villes' rng at seed when seed is not None."""
    return model(x) if seed is None else model(x, rng=vt.Xoshiro(seed))


def lm_fixture(model, vocab, x, y, path, seed=None, soft=None, weight=0.0):
    def run(m):
        logits = forward(m, x, seed)
        loss = vt.lm_loss(logits, y) if soft is None else vt.distill_loss(logits, y, soft, weight)
        return {"logits": logits}, loss
    outputs, grads = reference(model, run)
    extra = {"fixture.x": x.int(), "fixture.y": y.int(),
             "fixture.logits": outputs["logits"], "fixture.loss": outputs["loss"]}
    if seed is not None:
        extra["fixture.seed"] = torch.tensor([seed], dtype=torch.int32)
    if soft is not None:
        extra["fixture.soft"] = soft
        extra["fixture.distill_weight"] = torch.tensor([weight], dtype=torch.float32)
    extra.update({"fixture.grad." + k: g for k, g in grads.items()})
    vt.save_model(path, model, vocab, extra)
    return outputs["loss"].item()


def sae_fixture(sae, vocab, acts, path, model_file):
    def run(m):
        f, x_hat = m(acts.double())
        return {"features": f, "recon": x_hat}, m.loss(acts.double(), f, x_hat)
    outputs, grads = reference(sae, run)
    extra = {"fixture.acts": acts, "fixture.features": outputs["features"],
             "fixture.recon": outputs["recon"], "fixture.loss": outputs["loss"]}
    extra.update({"fixture.grad." + k: g for k, g in grads.items()})
    meta = {"model_file": model_file,
            "model_hash": vt.fnv1a64_file(os.path.join(ROOT, model_file))}
    vt.save_model(path, sae, vocab, extra, meta)
    return outputs["loss"].item()


def make_parity_fixtures(vocab):
    x, y = vt.make_batch(BATCH_NAMES, vocab)
    models = {}
    for i, (name, (kind, cfg)) in enumerate(small_configs(len(vocab)).items()):
        torch.manual_seed(100 + i)
        model = vt.model_from_config(kind, cfg)
        randomize(model)
        models[name] = model
        loss = lm_fixture(model, vocab, x, y, os.path.join(OUT, name + ".safetensors"))
        print("%-12s loss %.6f  x %s" % (name, loss, tuple(x.shape)))
    for i, (name, (kind, cfg)) in enumerate(dropout_configs(len(vocab)).items()):
        torch.manual_seed(110 + i)
        model = vt.model_from_config(kind, cfg)
        randomize(model)
        loss = lm_fixture(model, vocab, x, y, os.path.join(OUT, name + ".safetensors"),
                          DROPOUT_SEED)
        print("%-12s loss %.6f  x %s  seed %d" % (name, loss, tuple(x.shape), DROPOUT_SEED))

    torch.manual_seed(120)   # soft targets (distillation) on the transformer's weights
    soft = torch.softmax(2 * torch.randn(*x.shape, len(vocab)), -1).float()
    loss = lm_fixture(models["transformer"], vocab, x, y,
                      os.path.join(OUT, "transformer_distill.safetensors"), soft=soft,
                      weight=DISTILL_WEIGHT)
    print("%-12s loss %.6f  x %s  weight %g" % ("distill", loss, tuple(x.shape), DISTILL_WEIGHT))

    torch.manual_seed(200)
    tr = models["transformer"]
    with torch.no_grad():
        acts = tr.residual(x, SAE_LAYER)[x != vt.PAD]          # (N,d), row-major (b,t)
    sae = vt.SAE(tr.d_model, 2 * tr.d_model, SAE_L1, SAE_LAYER)
    with torch.no_grad():
        # a rough autoencoder (tied-ish encoder, b_dec near the mean) keeps the
        # loss moderate, so float32 sums can meet the 1e-5 loss tolerance
        sae.W_dec.copy_(torch.randn_like(sae.W_dec))
        sae.normalize_decoder()
        sae.W_enc.copy_(0.5 * sae.W_dec.t() + 0.1 * torch.randn_like(sae.W_enc))
        sae.b_enc.copy_(0.3 * torch.randn_like(sae.b_enc))
        sae.b_dec.copy_(acts.mean(0) + 0.1 * torch.randn_like(sae.b_dec))
    model_file = os.path.join(OUT_REL, "transformer.safetensors")
    loss = sae_fixture(sae, vocab, acts, os.path.join(OUT, "sae.safetensors"), model_file)
    print("%-12s loss %.6f  acts %s" % ("sae", loss, tuple(acts.shape)))


# ---------------------------------------------------------------- import ----

def train_lm(model, names, vocab, steps, batch=32, seed=0):
    g = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    for _ in range(steps):
        x, y = vt.make_batch(g.sample(names, batch), vocab)
        loss = vt.lm_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


def train_sae(sae, model, names, vocab, steps, batch=16, seed=0):
    g = random.Random(seed)
    opt = torch.optim.AdamW(sae.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(steps):
        x, _ = vt.make_batch(g.sample(names, batch), vocab)
        with torch.no_grad():
            acts = model.residual(x, sae.layer)[x != vt.PAD]
        f, x_hat = sae(acts)
        loss = sae.loss(acts, f, x_hat)
        opt.zero_grad()
        loss.backward()
        sae.project_decoder_grad()
        opt.step()
        sae.normalize_decoder()
    return loss.item()


def mean_lm_loss(model, names, vocab):
    m = vt.model_from_config(model.kind, model.config())
    m.load_state_dict(model.state_dict())
    m.double()
    x, y = vt.make_batch(names, vocab)
    with torch.no_grad():
        return vt.lm_loss(m(x), y).item(), int((y != vt.PAD).sum())


def mean_sae_loss(sae, model, names, vocab):
    m = vt.model_from_config("transformer", model.config())
    m.load_state_dict(model.state_dict())
    s = vt.SAE(sae.d_model, sae.n_features, IMPORT_L1, sae.layer)
    s.load_state_dict(sae.state_dict())
    m.double()
    s.double()
    x, _ = vt.make_batch(names, vocab)
    with torch.no_grad():
        acts = m.residual(x, s.layer)[x != vt.PAD]
        f, x_hat = s(acts)
        return s.loss(acts, f, x_hat).item(), acts.size(0)


def make_import_fixtures(names, vocab):
    distinct = sorted(set(names))
    eval_names = random.Random(1).sample(distinct, 50)
    with open(os.path.join(OUT, "import_names.txt"), "w", encoding="utf-8") as fh:
        fh.write("".join(n + "\n" for n in eval_names))
    V = len(vocab)
    rows = []

    torch.manual_seed(300)
    tr = vt.Transformer(V, 32, 4, 2, 49)
    print("train transformer: loss %.3f" % train_lm(tr, names, vocab, 300))
    sd = tr.state_dict()
    sd["lm_head.weight"] = sd["embedding.weight"]      # tied, as a notebook saves it
    torch.save(sd, os.path.join(OUT, "import_transformer.pth"))
    rows.append(("transformer", "import_transformer.pth") + mean_lm_loss(tr, eval_names, vocab))

    torch.manual_seed(301)
    gru = vt.RNNLM(V, "gru", 32, 2)
    print("train gru: loss %.3f" % train_lm(gru, names, vocab, 150))
    torch.save(gru.state_dict(), os.path.join(OUT, "import_gru.pth"))
    rows.append(("gru", "import_gru.pth") + mean_lm_loss(gru, eval_names, vocab))

    torch.manual_seed(303)
    mamba = vt.Mamba(V, 16, 2)
    print("train mamba: loss %.3f" % train_lm(mamba, names, vocab, 150))
    sd = mamba.state_dict()
    sd["lm_head.weight"] = sd["embedding.weight"]      # tied, as the notebooks' LM saves it
    torch.save(sd, os.path.join(OUT, "import_mamba.pth"))
    rows.append(("mamba", "import_mamba.pth") + mean_lm_loss(mamba, eval_names, vocab))

    torch.manual_seed(302)
    sae = vt.SAE(32, 64, IMPORT_L1, 2)
    print("train sae: loss %.3f" % train_sae(sae, tr, names, vocab, 300))
    torch.save(sae.state_dict(), os.path.join(OUT, "import_sae.pth"))
    rows.append(("sae", "import_sae.pth") + mean_sae_loss(sae, tr, eval_names, vocab))

    with open(os.path.join(OUT, "import_expected.tsv"), "w") as fh:
        fh.write("model\tfile\tconverted\tnames\ttargets\tloss\n")
        for model, path, loss, n in rows:
            import_pth(model, path, os.path.join(OUT, converted_name(model)))
            fh.write("%s\t%s\t%s\t%d\t%d\t%.7f\n"
                     % (model, path, converted_name(model), len(eval_names), n, loss))
    for r in rows:
        print("%-12s %s mean loss %.7f over %d" % (r[0], r[1], r[2], r[3]))


def converted_name(model):
    return "import_%s.safetensors" % model


def import_pth(model, pth, out):
    """Run tools/import-pytorch.py from the repository root, as a test would:
    the SAE is paired with the committed import_transformer.safetensors."""
    import subprocess
    cmd = [sys.executable, os.path.join("tools", "import-pytorch.py"),
           os.path.join(OUT_REL, pth), "-o", out]
    if model == "sae":
        cmd += ["--kind", "sae", "--model", os.path.join(OUT_REL, converted_name("transformer"))]
    else:
        cmd += ["--data", os.path.join("data", "villes.txt")]
        cmd += ["--heads", "4"] if model == "transformer" else []
    subprocess.run(cmd, check=True, cwd=ROOT, stderr=subprocess.DEVNULL)


# ----------------------------------------------------------------- check ----

def max_diff(a, b):
    return float((torch.as_tensor(a).double() - torch.as_tensor(b).double()).abs().max())


def check_fixture(name):
    path = os.path.join(OUT, name + ".safetensors")
    tensors, meta = vt.read_safetensors(path)
    model, vocab, meta = vt.load_model(path)
    assert vocab == vt.build_vocab(vt.read_names(DATA)), "vocab differs"
    model.float()
    if name == "sae":
        acts = torch.from_numpy(tensors["fixture.acts"])
        f, x_hat = model(acts)
        loss = model.loss(acts, f, x_hat)
        outs = {"features": max_diff(f.detach(), tensors["fixture.features"]),
                "recon": max_diff(x_hat.detach(), tensors["fixture.recon"])}
        want = vt.fnv1a64_file(os.path.join(ROOT, meta["model_file"]))
        assert meta["model_hash"] == want, "model_hash is stale"
    else:
        x = torch.from_numpy(tensors["fixture.x"]).long()
        y = torch.from_numpy(tensors["fixture.y"]).long()
        seed = int(tensors["fixture.seed"][0]) if "fixture.seed" in tensors else None
        logits = forward(model, x, seed)
        if "fixture.soft" in tensors:
            loss = vt.distill_loss(logits, y, torch.from_numpy(tensors["fixture.soft"]),
                                   float(tensors["fixture.distill_weight"][0]))
        else:
            loss = vt.lm_loss(logits, y)
        outs = {"logits": max_diff(logits.detach(), tensors["fixture.logits"])}
    loss.backward()
    outs["loss"] = max_diff(loss.detach().reshape(1), tensors["fixture.loss"])
    gd = max(max_diff(p.grad, tensors["fixture.grad." + k]) for k, p in model.named_parameters())
    outs["grads"] = gd
    missing = [k for k in model.state_dict() if "fixture.grad." + k not in tensors]
    assert not missing, "missing grads %s" % missing
    ok = outs["loss"] <= 1e-5 and all(v <= 1e-4 for v in outs.values())
    print("%-12s %s  %s  (%d bytes)" % (name, "ok " if ok else "BAD",
          "  ".join("%s %.2e" % kv for kv in outs.items()), os.path.getsize(path)))
    return ok


def check_imports():
    """Convert the import_*.pth files again with tools/import-pytorch.py: the
    output must equal the committed import_*.safetensors byte for byte, whose
    losses (float32) must match import_expected.tsv."""
    import tempfile
    names = vt.read_names(os.path.join(OUT, "import_names.txt"))
    with open(os.path.join(OUT, "import_expected.tsv")) as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh][1:]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for model, pth, conv, _, n, want in rows:
            committed = os.path.join(OUT, conv)
            fresh = os.path.join(tmp, conv)
            import_pth(model, pth, fresh)
            with open(committed, "rb") as a, open(fresh, "rb") as b:
                same = a.read() == b.read()
            m, vocab, _ = vt.load_model(committed)
            x, y = vt.make_batch(names, vocab)
            with torch.no_grad():
                if model == "sae":
                    tr, _, _ = vt.load_model(os.path.join(OUT, converted_name("transformer")))
                    acts = tr.residual(x, m.layer)[x != vt.PAD]
                    got, count = m.loss(acts, *m(acts)).item(), acts.size(0)
                else:
                    got, count = vt.lm_loss(m(x), y).item(), int((y != vt.PAD).sum())
            good = same and abs(got - float(want)) <= 1e-5 and count == int(n)
            ok &= good
            print("import %-12s %s  loss %.7f want %s (%d targets)%s"
                  % (model, "ok " if good else "BAD", got, want, count,
                     "" if same else "  re-conversion differs from " + conv))
    return ok


def main():
    ap = argparse.ArgumentParser(description="Write (or --check) the PyTorch fixtures.")
    ap.add_argument("--check", action="store_true",
                    help="reload the fixtures and compare with a float32 PyTorch run")
    ap.add_argument("--no-import", action="store_true",
                    help="skip the import_*.pth files (they take a few seconds to train)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.check:
        ok = all([check_fixture(n) for n in ("mlp", "rnn", "gru", "transformer", "mamba", "sae",
                                             "transformer_dropout", "gru_variational",
                                             "transformer_distill")])
        ok &= check_imports()
        sys.exit(0 if ok else 1)
    os.makedirs(OUT, exist_ok=True)
    names = vt.read_names(DATA)
    vocab = vt.build_vocab(names)
    assert len(vocab) == 46 and all(n in names for n in BATCH_NAMES)
    make_parity_fixtures(vocab)
    if not args.no_import:
        make_import_fixtures(names, vocab)


if __name__ == "__main__":
    main()
