#!/usr/bin/python3
"""import-pytorch - convert a PyTorch state_dict into a villes checkpoint.

    import-pytorch.py STATE_DICT.pth --data NAMES.txt -o OUT.safetensors
                      [--kind transformer|rnn|gru|mlp|mamba] [--heads N]
    import-pytorch.py SAE.pth --kind sae --model MODEL.safetensors -o OUT.safetensors
                      [--layer L]

The state_dict keys are the villes parameter names (see tools/villes_torch.py).
A language model's vocabulary is rebuilt from NAMES.txt (the file it was
trained on) and its configuration inferred from the tensor shapes; the kind is
detected from the keys unless --kind is given.  A separate lm_head.weight is
dropped (villes ties it to embedding.weight), with a warning if it differs.
An SAE is paired with the villes model it was trained on: its file name and
FNV-1a hash go into the metadata.
"""

import argparse
import importlib.util
import json
import os
import re
import sys

PROG = "import-pytorch"
VERSION = "0.1.0"
KINDS = ("transformer", "rnn", "gru", "mlp", "mamba", "sae")


class Failure(Exception):
    """A runtime error: printed as 'import-pytorch: message', exit 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write("%s: %s\nTry '%s --help' for more information.\n"
                         % (PROG, message, PROG))
        sys.exit(2)


def warn(msg):
    sys.stderr.write("%s: warning: %s\n" % (PROG, msg))


def parse_args(argv):
    ap = Parser(prog=PROG,
                description="Convert a PyTorch state_dict (.pth) into a villes .safetensors checkpoint.",
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="examples:\n"
                       "  %(prog)s lm.pth --data data/villes.txt --heads 8 -o weights/transformer.safetensors\n"
                       "  %(prog)s sae.pth --kind sae --model weights/transformer.safetensors -o weights/sae.safetensors")
    ap.add_argument("state_dict", metavar="STATE_DICT.pth", help="the PyTorch state_dict to convert")
    ap.add_argument("-o", "--output", metavar="OUT.safetensors", required=True,
                    help="the checkpoint to write ('-' for stdout)")
    ap.add_argument("--data", metavar="NAMES.txt",
                    help="the names the model was trained on (builds the vocabulary; "
                         "required except for --kind sae)")
    ap.add_argument("--kind", metavar="KIND",
                    help="transformer, rnn, gru, mlp, mamba or sae (default: detected from the keys)")
    ap.add_argument("--heads", type=int, metavar="N",
                    help="number of attention heads (required for a transformer)")
    ap.add_argument("--model", metavar="MODEL.safetensors",
                    help="for --kind sae: the villes model the SAE was trained on")
    ap.add_argument("--layer", type=int, metavar="L",
                    help="for --kind sae: the layer whose activations it reads "
                         "(default: the model's last layer)")
    ap.add_argument("--l1", type=float, default=0.0003,
                    help="for --kind sae: the L1 coefficient recorded in the config (default 0.0003)")
    ap.add_argument("--version", action="version", version="%s (villes) %s" % (PROG, VERSION))
    return ap.parse_args(argv)


# ------------------------------------------------------------- loading ----

def load_state_dict(path):
    import torch
    try:
        obj = torch.load(path, map_location="cpu")
    except FileNotFoundError:
        raise Failure("%s: no such file" % path)
    except Exception as e:  # pickle, zip or torch errors all mean "not a state_dict file"
        raise Failure("%s: cannot load as a PyTorch file (%s)" % (path, str(e).splitlines()[0]))
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise Failure("%s: does not hold a state_dict (a dict of tensors)" % path)
    sd = {}
    for k, v in obj.items():
        if not isinstance(k, str) or not torch.is_tensor(v):
            raise Failure("%s: entry %r is not a named tensor" % (path, k))
        for prefix in ("_orig_mod.", "module."):       # torch.compile / DataParallel
            if k.startswith(prefix):
                k = k[len(prefix):]
        sd[k] = v
    return sd


def detect_kind(sd, path):
    if "W_enc" in sd:
        return "sae"
    if "core.PE.weight" in sd:
        return "transformer"
    if "core.layers.0.mixer.A_log" in sd:
        return "mamba"
    if "core.layers.0.cell.fc_z.weight" in sd:
        return "gru"
    if "core.layers.0.cell.fc.weight" in sd:
        return "rnn"
    if "fc1.weight" in sd:
        return "mlp"
    raise Failure("%s: cannot tell the model kind from its keys; use --kind" % path)


def shape_of(sd, name):
    if name not in sd:
        raise Failure("missing key '%s'" % name)
    return tuple(sd[name].shape)


def count_layers(sd):
    idx = {int(m.group(1)) for k in sd for m in [re.match(r"core\.layers\.(\d+)\.", k)] if m}
    if not idx:
        raise Failure("missing key 'core.layers.0.*': no layers")
    if idx != set(range(len(idx))):
        raise Failure("layers are not numbered 0..%d: found %s" % (len(idx) - 1, sorted(idx)))
    return len(idx)


def fmt_shape(s):
    return "(" + ",".join(str(n) for n in s) + ")"


# ------------------------------------------------------- expected shapes ----

def lm_spec(kind, sd, V, heads):
    """The villes config and {name: shape} of a language model, from the shapes."""
    emb = shape_of(sd, "embedding.weight")
    if len(emb) != 2:
        raise Failure("embedding.weight has shape %s, expected (V,d)" % fmt_shape(emb))
    if emb[0] != V:
        raise Failure("embedding.weight has %d rows but the names give a vocabulary "
                           "of %d tokens" % (emb[0], V))
    d = emb[1]
    spec = {"embedding.weight": (V, d)}
    if kind == "mlp":
        fc1 = shape_of(sd, "fc1.weight")
        if len(fc1) != 2 or fc1[1] % d:
            raise Failure("fc1.weight has shape %s: its columns are not n_context * %d"
                               % (fmt_shape(fc1), d))
        H, n_ctx = fc1[0], fc1[1] // d
        spec.update({"fc1.weight": (H, n_ctx * d), "fc1.bias": (H,),
                     "fc2.weight": (V, H), "fc2.bias": (V,)})
        return "mlp", {"vocab_size": V, "d_model": d, "d_hidden": H, "n_context": n_ctx}, spec
    L = count_layers(sd)
    if kind in ("rnn", "gru"):
        fcs = ("fc_z", "fc_r", "fc_h_hat") if kind == "gru" else ("fc",)
        for i in range(L):
            p = "core.layers.%d." % i
            spec[p + "h0"] = (d,)
            for fc in fcs:
                spec[p + "cell.%s.weight" % fc] = (d, 2 * d)
                spec[p + "cell.%s.bias" % fc] = (d,)
        spec["out_norm.weight"] = (d,)
        return "rnn", {"vocab_size": V, "cell": kind, "d_model": d, "n_layers": L,
                       "dropout": 0}, spec
    if kind == "mamba":
        return mamba_spec(sd, V, d, L, spec)
    if heads is None:
        raise Failure("a transformer needs --heads N (the number of attention heads)")
    if heads <= 0 or d % heads:
        raise Failure("--heads %d does not divide d_model %d" % (heads, d))
    pe = shape_of(sd, "core.PE.weight")
    if len(pe) != 2 or pe[1] != d:
        raise Failure("core.PE.weight has shape %s, expected (max_len,%d)" % (fmt_shape(pe), d))
    spec["core.PE.weight"] = pe
    for i in range(L):
        p = "core.layers.%d." % i
        spec[p + "attention_norm.weight"] = (d,)
        for proj in ("query_proj", "key_proj", "value_proj", "c_proj"):
            spec[p + "sa.%s.weight" % proj] = (d, d)
        spec[p + "mlp_norm.weight"] = (d,)
        spec[p + "mlp.fc_1.weight"] = (4 * d, d)
        spec[p + "mlp.fc_2.weight"] = (d, 4 * d)
        spec[p + "mlp.fc_3.weight"] = (4 * d, d)
    spec["out_norm.weight"] = (d,)
    return "transformer", {"vocab_size": V, "d_model": d, "n_heads": heads, "n_layers": L,
                           "max_len": pe[0], "dropout": 0}, spec


def mamba_spec(sd, V, d, L, spec):
    """The notebooks' Mamba LM: sizes read from layer 0's mixer."""
    p = "core.layers.0.mixer."
    in_proj, conv = shape_of(sd, p + "in_proj.weight"), shape_of(sd, p + "conv1d.weight")
    A_log, dt_w = shape_of(sd, p + "A_log"), shape_of(sd, p + "dt_proj.weight")
    if len(in_proj) != 2 or in_proj[0] % (2 * d):
        raise Failure("%sin_proj.weight has shape %s: its rows are not 2 * expand * %d"
                      % (p, fmt_shape(in_proj), d))
    e = in_proj[0] // 2
    if len(conv) != 3 or len(A_log) != 2 or len(dt_w) != 2:
        raise Failure("conv1d.weight, A_log and dt_proj.weight must be (e,1,K), (e,N), (e,R)")
    K, N, R = conv[2], A_log[1], dt_w[1]
    for i in range(L):
        p = "core.layers.%d." % i
        spec[p + "norm.weight"] = (d,)
        spec.update({p + "mixer." + k: s for k, s in (
            ("in_proj.weight", (2 * e, d)), ("conv1d.weight", (e, 1, K)), ("conv1d.bias", (e,)),
            ("x_proj.weight", (R + 2 * N, e)), ("dt_proj.weight", (e, R)),
            ("dt_proj.bias", (e,)), ("A_log", (e, N)), ("D", (e,)),
            ("out_proj.weight", (d, e)))})
    spec["out_norm.weight"] = (d,)
    return "mamba", {"vocab_size": V, "d_model": d, "n_layers": L, "d_state": N,
                     "expand_factor": e // d, "d_conv": K, "dt_rank": R}, spec


def sae_spec(sd):
    enc = shape_of(sd, "W_enc")
    if len(enc) != 2:
        raise Failure("W_enc has shape %s, expected (d,F)" % fmt_shape(enc))
    d, F = enc
    return d, F, {"W_enc": (d, F), "b_enc": (F,), "W_dec": (F, d), "b_dec": (d,)}


def collect(sd, spec):
    """The tensors of `spec` in its order, as float32, checked."""
    import torch
    out = {}
    for name, shape in spec.items():
        t = sd[name] if name in sd else None
        if t is None:
            raise Failure("missing key '%s'" % name)
        if tuple(t.shape) != tuple(shape):
            raise Failure("shape mismatch for '%s': expected %s, got %s"
                               % (name, fmt_shape(shape), fmt_shape(t.shape)))
        if not t.is_floating_point():
            raise Failure("'%s' is not a floating-point tensor (%s)" % (name, t.dtype))
        t = t.detach().to(torch.float32).contiguous()
        if not torch.isfinite(t).all():
            raise Failure("'%s' holds NaN or infinite values" % name)
        out[name] = t
    return out


def check_lm_head(sd):
    if "lm_head.weight" not in sd:
        return
    lm, emb = sd["lm_head.weight"], sd["embedding.weight"]
    if lm.shape != emb.shape or not bool((lm.float() == emb.float()).all()):
        warn("lm_head.weight differs from embedding.weight; villes ties the lm_head to "
             "the embedding and keeps embedding.weight")


def warn_extra(sd, spec):
    extra = [k for k in sd if k not in spec and k != "lm_head.weight"]
    if extra:
        warn("ignoring %d key%s not used by villes: %s" % (len(extra), "s" * (len(extra) > 1),
             ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else "")))


# -------------------------------------------------------------- convert ----

def convert_lm(args, sd, kind, vt):
    if not args.data:
        raise Failure("--data NAMES.txt is required to rebuild the vocabulary")
    try:
        names = vt.read_names(args.data)
    except OSError as e:
        raise Failure("%s: %s" % (args.data, e.strerror))
    except ValueError as e:
        raise Failure(str(e))
    if not names:
        raise Failure("%s: no names (lines of at least %d characters)"
                           % (args.data, vt.MIN_NAME_LEN))
    vocab = vt.build_vocab(names)
    model, cfg, spec = lm_spec(kind, sd, len(vocab), args.heads)
    tensors = collect(sd, spec)
    if model != "mlp":
        check_lm_head(sd)
    warn_extra(sd, spec)
    return model, cfg, vocab, tensors, {}


def convert_sae(args, sd, vt):
    if not args.model:
        raise Failure("--kind sae needs --model MODEL.safetensors (the model it reads)")
    try:
        _, meta = vt.read_safetensors(args.model)
    except OSError as e:
        raise Failure("%s: %s" % (args.model, e.strerror))
    except (ValueError, KeyError, TypeError) as e:
        raise Failure("%s: not a valid safetensors file (%s)" % (args.model, e))
    if meta.get("format") != vt.FORMAT:
        raise Failure("%s: not a villes checkpoint" % args.model)
    if meta.get("model") != "transformer":
        raise Failure("%s holds a '%s' model; an SAE reads a transformer's activations"
                           % (args.model, meta.get("model")))
    mcfg = json.loads(meta.get("config", "{}"))
    d, F, spec = sae_spec(sd)
    if mcfg.get("d_model") != d:
        raise Failure("the SAE reads %d-dimensional activations but %s has d_model %s"
                           % (d, args.model, mcfg.get("d_model")))
    n_layers = mcfg.get("n_layers", 1)
    layer = n_layers if args.layer is None else args.layer
    if not 0 <= layer <= n_layers:
        raise Failure("--layer %d is out of range: %s has %d layers"
                           % (layer, args.model, n_layers))
    tensors = collect(sd, spec)
    norms = tensors["W_dec"].norm(dim=1)
    if float((norms - 1).abs().max()) > 1e-3:
        warn("the rows of W_dec are not at unit norm (villes keeps them there when training)")
    warn_extra(sd, spec)
    cfg = {"d_model": d, "n_features": F, "layer": layer, "variant": "l1",
           "l1": args.l1, "k": 0}
    vocab = json.loads(meta["vocab"]) if "vocab" in meta else None
    extra = {"model_file": args.model, "model_hash": vt.fnv1a64_file(args.model)}
    return "sae", cfg, vocab, tensors, extra


def run(args):
    if args.kind is not None and args.kind not in KINDS:
        raise Failure("unknown kind '%s' (expected %s)" % (args.kind, ", ".join(KINDS)))
    if importlib.util.find_spec("torch") is None:
        raise Failure("PyTorch is needed (try /usr/bin/python3 with python3-torch)")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import villes_torch as vt

    sd = load_state_dict(args.state_dict)
    kind = args.kind or detect_kind(sd, args.state_dict)
    if kind == "sae":
        model, cfg, vocab, tensors, extra = convert_sae(args, sd, vt)
    else:
        model, cfg, vocab, tensors, extra = convert_lm(args, sd, kind, vt)
    data = vt.safetensors_bytes(tensors, vt.checkpoint_metadata(model, cfg, vocab, extra))
    try:
        if args.output == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            vt.write_atomic(args.output, data)
    except OSError as e:
        raise Failure("%s: %s" % (args.output, e.strerror))
    n_params = sum(t.numel() for t in tensors.values())
    sys.stderr.write("%s: %s %s, %d parameters -> %s\n"
                     % (PROG, model, json.dumps(cfg, separators=(",", ":")), n_params, args.output))


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except Failure as e:
        sys.stderr.write("%s: %s\n" % (PROG, e))
        sys.exit(1)


if __name__ == "__main__":
    main()
