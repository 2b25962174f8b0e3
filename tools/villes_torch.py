"""villes_torch - the PyTorch reference of the villes models.

The C models are tested against these definitions (tools/make-fixtures.py),
notebook weights are converted with them (tools/import-pytorch.py) and the
PyTorch half of `make bench` runs them (tools/bench_torch.py).  Only the
tools need PyTorch; `make test` uses the committed fixtures.

Parameter names are those of the villes checkpoints, so model.state_dict()
keys are exactly the tensor names of a villes .safetensors file:

  mlp          embedding.weight (V,d), fc1.weight (H, n_context*d), fc1.bias,
               fc2.weight (V,H), fc2.bias
  rnn / gru    embedding.weight (V,d); core.layers.{i}.h0 (d);
               rnn: core.layers.{i}.cell.fc.{weight (d,2d), bias (d)}
               gru: core.layers.{i}.cell.fc_z / fc_r / fc_h_hat .{weight, bias}
               out_norm.weight (d)
  transformer  embedding.weight (V,d), core.PE.weight (max_len,d);
               core.layers.{i}.attention_norm.weight,
               core.layers.{i}.sa.{query_proj,key_proj,value_proj,c_proj}.weight (d,d),
               core.layers.{i}.mlp_norm.weight,
               core.layers.{i}.mlp.fc_1.weight (4d,d), fc_2.weight (d,4d), fc_3.weight (4d,d),
               out_norm.weight (d)
  mamba        embedding.weight (V,d); core.layers.{i}.norm.weight (d);
               core.layers.{i}.mixer.in_proj.weight (2e,d), conv1d.weight (e,1,K),
               conv1d.bias (e), x_proj.weight (R+2N,e), dt_proj.weight (e,R),
               dt_proj.bias (e), A_log (e,N), D (e), out_proj.weight (d,e);
               out_norm.weight (d)   (e = expand_factor*d, N = d_state,
               R = dt_rank, K = d_conv: the notebooks' models/mamba names)
  sae          W_enc (d,F), b_enc (F), W_dec (F,d), b_dec (d)

The lm_head of rnn/gru/transformer/mamba is tied: logits = h @ embedding.weight.T.

Dropout: the reference runs without it, except for the masks villes
addresses by position (ops.h, op_keep), which it reproduces exactly when a
forward pass is given `rng=Xoshiro(seed)`, the generator a villes tape
draws from: the Transformer's attention dropout (attn_dropout) and
embedding dropout (emb_dropout), and the RNN's variational dropout
(dropout with dropout_mode "variational").  Seeds are drawn in villes'
graph order: the embedding's, then each layer's attention's; for the RNN,
each layer's input's, then the top output's.

The `safetensors` package is not needed: write_safetensors/read_safetensors
below implement the format (u64 LE header length, JSON header, raw LE data)
for the F32 and I32 tensors villes uses.
"""

import json
import math
import os
import tempfile
import unicodedata

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, SOS, EOS = 0, 1, 2
SPECIALS = ["<pad>", "<SOS>", "<EOS>"]
MIN_NAME_LEN = 3
NORM_EPS = 1e-5
FORMAT, FORMAT_VERSION = "villes", "1"


# ----------------------------------------------------------------- text ----

def read_names(path):
    """The names of a file as villes reads them: a leading BOM skipped,
    lines split on \\n with an optional \\r, NFC, lines shorter than
    MIN_NAME_LEN characters skipped."""
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError("%s:%d: invalid UTF-8 at byte %d"
                         % (path, raw.count(b"\n", 0, e.start) + 1, e.start)) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    names = []
    for line in text.split("\n"):
        if line.endswith("\r"):
            line = line[:-1]
        line = unicodedata.normalize("NFC", line)
        if len(line) >= MIN_NAME_LEN:
            names.append(line)
    return names


def build_vocab(names):
    """<pad>, <SOS>, <EOS>, then the distinct code points in ascending order."""
    return SPECIALS + sorted(set("".join(names)))


def vocab_json(vocab):
    return json.dumps(vocab, ensure_ascii=False, separators=(",", ":"))


def encode(name, vocab):
    stoi = {s: i for i, s in enumerate(vocab)}
    return [stoi[c] for c in name]


def make_batch(names, vocab):
    """x = <SOS> c1..cn, y = c1..cn <EOS>, padded with <pad> to T = longest + 1.
    Returns int64 tensors (B,T)."""
    stoi = {s: i for i, s in enumerate(vocab)}
    T = max(len(n) for n in names) + 1
    x = torch.zeros(len(names), T, dtype=torch.long)
    y = torch.zeros(len(names), T, dtype=torch.long)
    for b, name in enumerate(names):
        tok = [stoi[c] for c in name]
        x[b, :len(tok) + 1] = torch.tensor([SOS] + tok)
        y[b, :len(tok) + 1] = torch.tensor(tok + [EOS])
    return x, y


def lm_loss(logits, y):
    """Mean cross-entropy over the non-pad targets (nats per character)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                           ignore_index=PAD)


def distill_loss(logits, y, soft, a):
    """Distillation: (1 - a) CE(y) + a CE(soft), soft (B, T, V) the teachers'
    next-token distributions, mean over the non-pad targets (villes'
    op_soft_cross_entropy, the loss of a --teacher run)."""
    V = logits.size(-1)
    lp = F.log_softmax(logits.reshape(-1, V), -1)
    y = y.reshape(-1)
    keep = y != PAD
    hard = -lp.gather(1, y[:, None])[:, 0]
    soft_ce = -(soft.reshape(-1, V).to(lp.dtype) * lp).sum(-1)
    return ((1 - a) * hard + a * soft_ce)[keep].mean()


# -------------------------------------------------------------- dropout ----

MASK64 = (1 << 64) - 1
GOLDEN = 0x9e3779b97f4a7c15


def _splitmix_mix(z):
    """splitmix64's output function on a uint64 numpy array (wrapping)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
    return z ^ (z >> np.uint64(31))


class Xoshiro:
    """villes' rng (rng.c): xoshiro256** seeded by splitmix64; next_u64()
    returns what rng_u64 returns."""

    def __init__(self, seed):
        s, x = [], seed & MASK64
        for _ in range(4):
            x = (x + GOLDEN) & MASK64
            with np.errstate(over="ignore"):
                s.append(int(_splitmix_mix(np.array(x, dtype=np.uint64))))
        self.s = s

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & MASK64

    def next_u64(self):
        s = self.s
        result = (self._rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return result


def keep_mask(seed, index, p):
    """op_keep: the dropout factors (0 or 1/(1-p), float32 as villes
    computes them) of the integer array `index` in the mask `seed`; an
    element is dropped when the high 32 bits of rng_at(seed, index) (output
    index of splitmix64 from seed) are below p * 2^32.  float64 tensor."""
    idx = np.asarray(index, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = _splitmix_mix(np.uint64(seed) + (idx + np.uint64(1)) * np.uint64(GOLDEN))
    p32 = np.float32(p)
    dropped = (z >> np.uint64(32)).astype(np.float64) < float(p32) * 4294967296.0
    keep = float(np.float32(1) / (np.float32(1) - p32))
    return torch.from_numpy(np.where(dropped, 0.0, keep))


def _draw(rng, p):
    """The seed of a mask at rate p (drawn only when the dropout applies)."""
    return rng.next_u64() if rng is not None and p > 0 else None


# --------------------------------------------------------------- models ----

class RMSNorm(nn.Module):
    def __init__(self, d, eps=NORM_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class MLP(nn.Module):
    """Bengio 2003: the previous n_context tokens (<SOS> before the start),
    embedded, concatenated oldest first, Linear + tanh, Linear."""
    kind = "mlp"

    def __init__(self, vocab_size, d_model, d_hidden, n_context):
        super().__init__()
        self.vocab_size, self.d_model = vocab_size, d_model
        self.d_hidden, self.n_context = d_hidden, n_context
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.fc1 = nn.Linear(n_context * d_model, d_hidden)
        self.fc2 = nn.Linear(d_hidden, vocab_size)

    def config(self):
        return {"vocab_size": self.vocab_size, "d_model": self.d_model,
                "d_hidden": self.d_hidden, "n_context": self.n_context}

    def forward(self, x):                               # x (B,T) -> logits (B,T,V)
        B, T = x.shape
        n = self.n_context
        pad = torch.full((B, n - 1), SOS, dtype=x.dtype, device=x.device)
        xp = torch.cat([pad, x], 1)                     # (B, T+n-1)
        ctx = xp.unfold(1, n, 1)                        # (B,T,n): ctx[:,t,j] = x[t-n+1+j]
        e = self.embedding(ctx).reshape(B, T, n * self.d_model)
        return self.fc2(torch.tanh(self.fc1(e)))


class RecurrentUnit(nn.Module):
    """h = tanh(W [x; h_prev] + b)"""

    def __init__(self, d):
        super().__init__()
        self.fc = nn.Linear(2 * d, d)

    def forward(self, x, h):
        return torch.tanh(self.fc(torch.cat([x, h], -1)))


class GatedRecurrentUnit(nn.Module):
    """z = σ(W_z[x;h]+b_z), r = σ(W_r[x;h]+b_r), ĥ = tanh(W_h[x; r⊙h]+b_h),
    h' = (1-z)⊙h + z⊙ĥ"""

    def __init__(self, d):
        super().__init__()
        self.fc_z = nn.Linear(2 * d, d)
        self.fc_r = nn.Linear(2 * d, d)
        self.fc_h_hat = nn.Linear(2 * d, d)

    def forward(self, x, h):
        xh = torch.cat([x, h], -1)
        z = torch.sigmoid(self.fc_z(xh))
        r = torch.sigmoid(self.fc_r(xh))
        h_hat = torch.tanh(self.fc_h_hat(torch.cat([x, r * h], -1)))
        return (1 - z) * h + z * h_hat


class RNNLayer(nn.Module):
    def __init__(self, cell, d):
        super().__init__()
        self.h0 = nn.Parameter(torch.zeros(d))
        self.cell = GatedRecurrentUnit(d) if cell == "gru" else RecurrentUnit(d)

    def forward(self, x):                               # (B,T,d) -> (B,T,d)
        h = self.h0.expand(x.size(0), -1)
        out = []
        for t in range(x.size(1)):
            h = self.cell(x[:, t], h)
            out.append(h)
        return torch.stack(out, 1)


class RNNCore(nn.Module):
    def __init__(self, cell, d, n_layers):
        super().__init__()
        self.layers = nn.ModuleList([RNNLayer(cell, d) for _ in range(n_layers)])


class RNNLM(nn.Module):
    """Stacked RNN / GRU layers (each with a learned h0), RMSNorm, tied lm_head.
    Variational dropout (one mask per sequence and site) on every layer's
    input and the top output when forward is given an rng."""
    kind = "rnn"

    def __init__(self, vocab_size, cell, d_model, n_layers, dropout=0, dropout_mode="standard"):
        super().__init__()
        if cell not in ("rnn", "gru"):
            raise ValueError("cell must be 'rnn' or 'gru', not %r" % cell)
        if dropout_mode not in ("standard", "variational"):
            raise ValueError("dropout_mode must be 'standard' or 'variational'")
        self.vocab_size, self.cell = vocab_size, cell
        self.d_model, self.n_layers = d_model, n_layers
        self.dropout, self.dropout_mode = dropout, dropout_mode
        self.embedding = nn.Embedding(vocab_size, d_model)
        # Tied to the lm_head: init as nn.Linear(d, V), uniform(±1/√d), like
        # villes; nn.Embedding's normal(0, 1) makes the first logits ~√d too large.
        bound = 1.0 / math.sqrt(d_model)
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        self.core = RNNCore(cell, d_model, n_layers)
        self.out_norm = RMSNorm(d_model)

    def config(self):
        cfg = {"vocab_size": self.vocab_size, "cell": self.cell, "d_model": self.d_model,
               "n_layers": self.n_layers, "dropout": self.dropout}
        if self.dropout_mode == "variational":
            cfg["dropout_mode"] = "variational"
        return cfg

    def _dropout(self, h, rng):
        """Variational dropout of h (B,T,d): mask (B,d), index b*d + j."""
        seed = _draw(rng, self.dropout)
        if seed is None:
            return h
        if self.dropout_mode != "variational":
            raise ValueError("the reference reproduces variational dropout only")
        B, _, d = h.shape
        idx = np.arange(B * d, dtype=np.uint64).reshape(B, d)
        return h * keep_mask(seed, idx, self.dropout).to(h.dtype)[:, None, :]

    def forward(self, x, rng=None):
        h = self.embedding(x)
        for layer in self.core.layers:
            h = layer(self._dropout(h, rng))
        return self.out_norm(self._dropout(h, rng)) @ self.embedding.weight.t()


class SelfAttention(nn.Module):
    """Causal multi-head attention, no biases, scores scaled by 1/sqrt(d_head)."""

    def __init__(self, d, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.query_proj = nn.Linear(d, d, bias=False)
        self.key_proj = nn.Linear(d, d, bias=False)
        self.value_proj = nn.Linear(d, d, bias=False)
        self.c_proj = nn.Linear(d, d, bias=False)

    def forward(self, x, keep=None):                    # (B,T,d); keep (B,H,T,T)
        B, T, d = x.shape
        H = self.n_heads
        q, k, v = (p(x).view(B, T, H, d // H).transpose(1, 2)
                   for p in (self.query_proj, self.key_proj, self.value_proj))
        att = q @ k.transpose(-2, -1) / math.sqrt(d // H)   # (B,H,T,T)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        if keep is not None:                            # dropout on the probabilities
            att = att * keep.to(att.dtype)
        y = (att @ v).transpose(1, 2).reshape(B, T, d)
        return self.c_proj(y)


class SwiGLU(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc_1 = nn.Linear(d, 4 * d, bias=False)
        self.fc_2 = nn.Linear(4 * d, d, bias=False)
        self.fc_3 = nn.Linear(d, 4 * d, bias=False)

    def forward(self, x):
        return self.fc_2(F.silu(self.fc_1(x)) * self.fc_3(x))


class DecoderLayer(nn.Module):
    def __init__(self, d, n_heads):
        super().__init__()
        self.attention_norm = RMSNorm(d)
        self.sa = SelfAttention(d, n_heads)
        self.mlp_norm = RMSNorm(d)
        self.mlp = SwiGLU(d)

    def forward(self, x, keep=None):
        x = x + self.sa(self.attention_norm(x), keep)
        return x + self.mlp(self.mlp_norm(x))


class TransformerCore(nn.Module):
    def __init__(self, d, n_heads, n_layers, max_len):
        super().__init__()
        self.PE = nn.Embedding(max_len, d)
        self.layers = nn.ModuleList([DecoderLayer(d, n_heads) for _ in range(n_layers)])


class Transformer(nn.Module):
    """Decoder-only, pre-norm, learned positions, SwiGLU, tied lm_head.
    Attention dropout and embedding dropout when forward is given an rng."""
    kind = "transformer"

    def __init__(self, vocab_size, d_model, n_heads, n_layers, max_len,
                 attn_dropout=0, emb_dropout=0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError("n_heads (%d) must divide d_model (%d)" % (n_heads, d_model))
        self.vocab_size, self.d_model, self.n_heads = vocab_size, d_model, n_heads
        self.n_layers, self.max_len = n_layers, max_len
        self.attn_dropout, self.emb_dropout = attn_dropout, emb_dropout
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.core = TransformerCore(d_model, n_heads, n_layers, max_len)
        self.out_norm = RMSNorm(d_model)
        self.reset_parameters()

    def reset_parameters(self):
        """normal(0, 0.02); fc_3 and c_proj at 0.02/sqrt(2 n_layers); norms 1."""
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif name.endswith("fc_3.weight") or name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * self.n_layers))
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def config(self):
        cfg = {"vocab_size": self.vocab_size, "d_model": self.d_model,
               "n_heads": self.n_heads, "n_layers": self.n_layers,
               "max_len": self.max_len, "dropout": 0}
        for key in ("attn_dropout", "emb_dropout"):     # written only when used, as villes
            if getattr(self, key):
                cfg[key] = getattr(self, key)
        return cfg

    def _attention_keep(self, rng, B, T):
        """Attention dropout's factors (B,H,T,T): index ((b H + h) T + i) T + j."""
        seed = _draw(rng, self.attn_dropout)
        if seed is None:
            return None
        idx = np.arange(B * self.n_heads * T * T, dtype=np.uint64).reshape(B, self.n_heads, T, T)
        return keep_mask(seed, idx, self.attn_dropout)

    def _embed(self, x, rng):
        """Token embeddings, each token type of the batch kept or dropped whole."""
        e = self.embedding(x)
        seed = _draw(rng, self.emb_dropout)
        if seed is None:
            return e
        return e * keep_mask(seed, x.numpy(), self.emb_dropout).to(e.dtype)[..., None]

    def residual(self, x, n_blocks=None, rng=None):
        """The residual stream after the first n_blocks blocks (all when None):
        (B,T) tokens -> (B,T,d).  n_blocks = 0 is embedding + position."""
        B, T = x.shape
        if T > self.max_len:
            raise ValueError("sequence of %d positions exceeds max_len %d" % (T, self.max_len))
        pos = torch.arange(T, device=x.device)
        h = self._embed(x, rng) + self.core.PE(pos)
        for layer in self.core.layers[:n_blocks]:
            h = layer(h, self._attention_keep(rng, B, T))
        return h

    def forward(self, x, rng=None):
        return self.out_norm(self.residual(x, rng=rng)) @ self.embedding.weight.t()



class MambaMixer(nn.Module):
    """The selective SSM block of the notebooks' mamba.py, its scan run
    sequentially: in_proj -> [x, z]; x -> causal depthwise conv -> silu ->
    x_proj -> (dt, B, C); dt = softplus(dt_proj(dt)); A = -exp(A_log);
    h_t = exp(dt A) h_{t-1} + dt B_t x_t; y_t = C_t.h_t + D x_t;
    out_proj(y * silu(z))."""

    def __init__(self, d, d_state, expand_factor, d_conv, dt_rank):
        super().__init__()
        e = expand_factor * d
        self.e, self.d_state, self.dt_rank = e, d_state, dt_rank
        self.in_proj = nn.Linear(d, 2 * e, bias=False)
        self.conv1d = nn.Conv1d(e, e, d_conv, groups=e, padding=d_conv - 1)
        self.x_proj = nn.Linear(e, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, e)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)
                                            .repeat(e, 1)))
        self.D = nn.Parameter(torch.ones(e))
        self.out_proj = nn.Linear(e, d, bias=False)

    def forward(self, x):                               # (B,T,d) -> (B,T,d)
        T = x.size(1)
        xi, z = self.in_proj(x).chunk(2, dim=-1)
        u = F.silu(self.conv1d(xi.transpose(1, 2))[:, :, :T].transpose(1, 2))
        dt, Bm, Cm = torch.split(self.x_proj(u), [self.dt_rank, self.d_state, self.d_state], -1)
        dt = F.softplus(self.dt_proj(dt))               # (B,T,e)
        A = -torch.exp(self.A_log)                      # (e,N)
        h = x.new_zeros(x.size(0), self.e, self.d_state)
        ys = []
        for t in range(T):
            h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * u[:, t])[..., None] * Bm[:, t, None]
            ys.append((h * Cm[:, t, None]).sum(-1) + self.D * u[:, t])
        return self.out_proj(torch.stack(ys, 1) * F.silu(z))


class MambaLayer(nn.Module):
    def __init__(self, d, *mixer_args):
        super().__init__()
        self.norm = RMSNorm(d)
        self.mixer = MambaMixer(d, *mixer_args)

    def forward(self, x):
        return x + self.mixer(self.norm(x))


class MambaCore(nn.Module):
    def __init__(self, d, n_layers, *mixer_args):
        super().__init__()
        self.layers = nn.ModuleList([MambaLayer(d, *mixer_args) for _ in range(n_layers)])


class Mamba(nn.Module):
    """The notebooks' LM with a Mamba core: embedding, residual blocks
    x + mixer(RMSNorm(x)), RMSNorm, tied lm_head."""
    kind = "mamba"

    def __init__(self, vocab_size, d_model, n_layers, d_state=16, expand_factor=2, d_conv=4,
                 dt_rank=0):
        super().__init__()
        dt_rank = dt_rank or math.ceil(d_model / 16)
        self.vocab_size, self.d_model, self.n_layers = vocab_size, d_model, n_layers
        self.d_state, self.expand_factor, self.d_conv, self.dt_rank = \
            d_state, expand_factor, d_conv, dt_rank
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.core = MambaCore(d_model, n_layers, d_state, expand_factor, d_conv, dt_rank)
        self.out_norm = RMSNorm(d_model)
        self.reset_parameters()

    def reset_parameters(self):
        """As villes (mamba.h): embedding and linear weights normal(0, 0.02),
        conv1d as nn.Conv1d, dt_proj.bias the inverse softplus of dt
        log-uniform in [0.001, 0.1], A_log log(1..N), D and norms 1."""
        for name, p in self.named_parameters():
            if name.endswith("dt_proj.bias"):
                dt = torch.exp(torch.rand_like(p) * (math.log(0.1) - math.log(0.001))
                               + math.log(0.001)).clamp(min=1e-4)
                with torch.no_grad():
                    p.copy_(dt + torch.log(-torch.expm1(-dt)))
            elif name == "embedding.weight" or (name.endswith(".weight") and p.dim() == 2):
                nn.init.normal_(p, 0.0, 0.02)

    def config(self):
        return {"vocab_size": self.vocab_size, "d_model": self.d_model,
                "n_layers": self.n_layers, "d_state": self.d_state,
                "expand_factor": self.expand_factor, "d_conv": self.d_conv,
                "dt_rank": self.dt_rank}

    def forward(self, x):
        h = self.embedding(x)
        for layer in self.core.layers:
            h = layer(h)
        return self.out_norm(h) @ self.embedding.weight.t()


class SAE(nn.Module):
    """f = relu((x - b_dec) W_enc + b_enc), x_hat = f W_dec + b_dec.
    L1 loss = mean over rows of sum_d (x - x_hat)^2 + l1 * mean over rows of sum_f |f|."""
    kind = "sae"

    def __init__(self, d_model, n_features, l1=3e-4, layer=0):
        super().__init__()
        self.d_model, self.n_features, self.l1, self.layer = d_model, n_features, l1, layer
        self.W_enc = nn.Parameter(torch.empty(d_model, n_features))
        self.b_enc = nn.Parameter(torch.zeros(n_features))
        self.W_dec = nn.Parameter(torch.empty(n_features, d_model))
        self.b_dec = nn.Parameter(torch.zeros(d_model))
        nn.init.normal_(self.W_dec)
        self.normalize_decoder()
        with torch.no_grad():
            self.W_enc.copy_(self.W_dec.t())

    def config(self):
        return {"d_model": self.d_model, "n_features": self.n_features, "layer": self.layer,
                "variant": "l1", "l1": self.l1, "k": 0}

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True)

    @torch.no_grad()
    def project_decoder_grad(self):
        """Remove from each W_dec row's gradient its component along the row."""
        g, w = self.W_dec.grad, self.W_dec
        g -= (g * w).sum(1, keepdim=True) * w

    def encode(self, x):
        return F.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def forward(self, x):                     # (N,d) -> features (N,F), recon (N,d)
        f = self.encode(x)
        return f, f @ self.W_dec + self.b_dec

    def loss(self, x, f, x_hat):
        return ((x - x_hat) ** 2).sum(-1).mean() + self.l1 * f.abs().sum(-1).mean()


def model_from_config(kind, cfg):
    """Build an (untrained) model from a villes config dict."""
    if kind == "mlp":
        return MLP(cfg["vocab_size"], cfg["d_model"], cfg["d_hidden"], cfg["n_context"])
    if kind == "rnn":
        return RNNLM(cfg["vocab_size"], cfg["cell"], cfg["d_model"], cfg["n_layers"],
                     cfg.get("dropout", 0), cfg.get("dropout_mode", "standard"))
    if kind == "transformer":
        return Transformer(cfg["vocab_size"], cfg["d_model"], cfg["n_heads"],
                           cfg["n_layers"], cfg["max_len"],
                           cfg.get("attn_dropout", 0), cfg.get("emb_dropout", 0))
    if kind == "mamba":
        return Mamba(cfg["vocab_size"], cfg["d_model"], cfg["n_layers"], cfg["d_state"],
                     cfg["expand_factor"], cfg["d_conv"], cfg["dt_rank"])
    if kind == "sae":
        return SAE(cfg["d_model"], cfg["n_features"], cfg["l1"], cfg["layer"])
    raise ValueError("unknown model kind %r" % kind)


# ---------------------------------------------------------- safetensors ----

_DTYPES = {"F32": np.dtype("<f4"), "I32": np.dtype("<i4")}


def _dtype_name(a):
    if a.dtype == np.float32:
        return "F32"
    if a.dtype == np.int32:
        return "I32"
    raise ValueError("only float32 and int32 tensors are supported, not %s" % a.dtype)


def _to_numpy(t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu()
        t = t.to(torch.int32) if not t.is_floating_point() else t.to(torch.float32)
        return t.contiguous().numpy()
    return np.ascontiguousarray(t)


def safetensors_bytes(tensors, metadata=None):
    """Serialise {name: array or tensor} (F32 / I32, in the given order) and
    {str: str} metadata.  The header is padded with spaces to 8 bytes, as the
    reference implementation does."""
    header, blobs, offset = {}, [], 0
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("metadata keys and values must be strings")
        header["__metadata__"] = dict(metadata)
    for name, t in tensors.items():
        a = _to_numpy(t)
        dt = _dtype_name(a)
        b = a.astype(_DTYPES[dt], copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    return len(h).to_bytes(8, "little") + h + b"".join(blobs)


def write_atomic(path, data):
    """Write bytes to a temporary file beside `path`, fsync, rename into place."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp.", dir=d)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_safetensors(path, tensors, metadata=None):
    write_atomic(path, safetensors_bytes(tensors, metadata))


def read_safetensors(path):
    """Read and validate a safetensors file -> ({name: np.ndarray}, metadata).
    Checks header bounds, known dtypes, sizes matching shapes, offsets
    contiguous from 0 to the end of the file; raises ValueError otherwise."""
    with open(path, "rb") as fh:
        buf = fh.read()
    if len(buf) < 8:
        raise ValueError("%s: too short for a safetensors header" % path)
    n = int.from_bytes(buf[:8], "little")
    if n > len(buf) - 8:
        raise ValueError("%s: header length %d exceeds the file" % (path, n))
    header = json.loads(buf[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    if not isinstance(header, dict):
        raise ValueError("%s: header is not a JSON object" % path)
    meta = header.pop("__metadata__", {}) or {}
    if not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("%s: metadata values must be strings" % path)
    data = buf[8 + n:]
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    tensors, pos = {}, 0
    for name, e in entries:
        if e.get("dtype") not in _DTYPES:
            raise ValueError("%s: tensor %s has unsupported dtype %r" % (path, name, e.get("dtype")))
        dt = _DTYPES[e["dtype"]]
        shape = tuple(e["shape"])
        begin, end = e["data_offsets"]
        if begin != pos or end < begin or end > len(data):
            raise ValueError("%s: tensor %s has bad data_offsets" % (path, name))
        if end - begin != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise ValueError("%s: tensor %s size does not match its shape" % (path, name))
        tensors[name] = np.frombuffer(data[begin:end], dtype=dt).reshape(shape).copy()
        pos = end
    if pos != len(data):
        raise ValueError("%s: %d trailing bytes after the last tensor" % (path, len(data) - pos))
    # keep the file's header order for callers that care
    return {k: tensors[k] for k in header}, meta


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError("duplicate key %r in safetensors header" % k)
        d[k] = v
    return d


# ----------------------------------------------------------- checkpoint ----

def config_json(cfg):
    return json.dumps(cfg, separators=(",", ":"))


def checkpoint_metadata(kind, cfg, vocab=None, extra=None):
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": kind,
            "config": config_json(cfg)}
    if vocab is not None:
        meta["vocab"] = vocab_json(vocab)
    meta.update(extra or {})
    return meta


def save_checkpoint(path, kind, cfg, vocab, tensors, extra_meta=None):
    """Write a villes checkpoint: the tensors (name -> tensor/array, F32/I32)
    and metadata format, format_version, model, config, vocab (+ extra)."""
    write_safetensors(path, tensors, checkpoint_metadata(kind, cfg, vocab, extra_meta))


def save_model(path, model, vocab, extra_tensors=None, extra_meta=None):
    tensors = {k: v.float() for k, v in model.state_dict().items()}
    tensors.update(extra_tensors or {})
    save_checkpoint(path, model.kind, model.config(), vocab, tensors, extra_meta)


def load_model(path):
    """A villes checkpoint -> (model in float32, vocab list, metadata)."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise ValueError("%s: not a villes checkpoint" % path)
    cfg = json.loads(meta["config"])
    model = model_from_config(meta["model"], cfg)
    sd = {k: torch.from_numpy(tensors[k]) for k in model.state_dict()}
    model.load_state_dict(sd)
    vocab = json.loads(meta["vocab"]) if "vocab" in meta else None
    return model, vocab, meta


def fnv1a64_file(path):
    """64-bit FNV-1a of a file's bytes as 16 lowercase hex digits (ck_file_hash)."""
    h, prime, mask = 0xcbf29ce484222325, 0x100000001b3, (1 << 64) - 1
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            for byte in chunk:
                h = ((h ^ byte) * prime) & mask
    return "%016x" % h
