#!/usr/bin/python3
"""ESM-2 reference goldens for esm-embed: random-weight models, both weight formats, embeddings.

Regenerate everything under tests/data/esm/ (from the repository root; deterministic, a few seconds):

    /usr/bin/python3 tests/ref/esm_ref.py

/usr/bin/python3 is Debian's Python with python3-torch 1.13, numpy and fair-esm 2.0.0 (`import esm`,
the original code) and safetensors. When `transformers` is importable (tested 4.40.2) the Hugging
Face EsmModel is run on the safetensors file as a second reference and the differences are
printed; without it that check is skipped. Options:

    --db5-fasta FILE   rebuild tests/data/esm/sequences.fasta from FILE, the output of
                       `python3 tests/ref/db5_sequences.py FILE` (needs Biopython; the pyenv
                       python3 here). Without it the committed sequences.fasta is read.
    --check-only       compute and compare, write nothing.

What it does (tests/data/esm/README.md describes every file):
  * The deterministic weight generator of docs/esm-random-weights.md (vectorised numpy uint64,
    float32 arithmetic exactly as written, inv_freq = fp16 of the double formula), filled into
    fair-esm's own ESM2 module (esm.model.esm2.ESM2, alphabet "ESM-1b", token_dropout=True);
    the rot_emb.inv_freq buffers are overwritten with the generator's values and checked.
  * TINY = 2 layers, d=64, 4 heads (hd 16), seed 0; T6 = esm2_t6_8M shape, 6 layers, d=320,
    20 heads (hd 16), seed 0.
  * TINY written as fair-esm torch.hub .pt (raw `encoder.sentence_encoder.` / `encoder.` keys,
    cfg Namespace) and as Hugging Face model.safetensors + config.json; both reloaded (fair-esm's
    own loader; HF EsmModel) and compared with the generator model.
  * Goldens (float32 .npy): per sequence alone, last layer (post final LayerNorm) and raw layer 1;
    one padded batch of 4; the window policy (W=64, O=16) and truncate policy (50) on the long
    sequence; T6 last layer for 3 sequences.
  * An independent float64 numpy forward (np_forward64, spec §2.7) run on the same tokens, to
    show how much rounding the fp32 reference itself carries; fp16 round-trip statistics;
    generator_check.tsv (first values, bit patterns and FNV-1a 64 of selected tensors).

Numerics: torch.set_num_threads(1), default torch.backends, fp32 throughout, eval(), no_grad.
"""
import argparse
import hashlib
import json
import math
import os
import sys
from argparse import Namespace

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DATA = os.path.join(ROOT, "tests", "data", "esm")

# ---------------------------------------------------------------------------------------------
# The generator (docs/esm-random-weights.md). Pure numpy; no torch needed.
# ---------------------------------------------------------------------------------------------
M64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3


def fnv1a64(data):
    """FNV-1a 64 of bytes (or str, as UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & M64
    return h


def fnv1a64_array(a):
    """FNV-1a 64 of an array's raw little-endian bytes (serial recurrence; fine for test tensors)."""
    b = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
    return fnv1a64(b)


def splitmix64_mix(z):
    """z: numpy uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform_pm1(name, n, seed=0):
    """r_i = float32(2*u_i - 1) for i = 0..n-1 (exact values in [-1, 1))."""
    s0 = np.uint64((seed ^ fnv1a64(name)) & M64)
    with np.errstate(over="ignore"):
        i1 = np.arange(1, n + 1, dtype=np.uint64)
        z = splitmix64_mix(s0 + i1 * np.uint64(GOLDEN_GAMMA))
    u = (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)  # exact
    return np.float32(2.0) * u - np.float32(1.0)  # exact


def inv_freq_values(hd):
    """fp16(1 / 10000^(2k/hd)) computed in double, rounded to binary16 (RNE), widened to fp32."""
    k = np.arange(hd // 2, dtype=np.float64)
    return (1.0 / (10000.0 ** (2.0 * k / hd))).astype(np.float16).astype(np.float32)


def weight_rule(name, d):
    """(offset, amplitude as float32) for a generated tensor, or a string for the special ones."""
    F = 4 * d
    if name == "embed_tokens.weight":
        return 0.0, np.float32(0.5)
    if name == "lm_head.weight":
        return "tied"
    if name.endswith("rot_emb.inv_freq"):
        return "inv_freq"
    if "layer_norm" in name:  # self_attn_layer_norm, final_layer_norm, emb_layer_norm_after, lm_head.layer_norm
        if name.endswith(".weight"):
            return 1.0, np.float32(0.1)
        if name.endswith(".bias"):
            return 0.0, np.float32(0.05)
    if name.endswith(".bias"):
        return 0.0, np.float32(0.02)
    for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
        if name.endswith("self_attn.%s.weight" % p):
            return 0.0, np.float32(math.sqrt(3.0 / d))
    if name.endswith("fc1.weight") or name == "lm_head.dense.weight":
        return 0.0, np.float32(math.sqrt(3.0 / d))
    if name.endswith("fc2.weight"):
        return 0.0, np.float32(math.sqrt(3.0 / F))
    raise KeyError("no generator rule for %r" % name)


def generate(name, shape, d, hd, seed=0):
    """float32 numpy array for fair-esm (stripped) tensor NAME."""
    rule = weight_rule(name, d)
    if rule == "tied":
        name, rule = "embed_tokens.weight", weight_rule("embed_tokens.weight", d)
    if rule == "inv_freq":
        v = inv_freq_values(hd)
        assert tuple(shape) == v.shape, (name, shape)
        return v
    offset, amp = rule
    n = int(np.prod(shape))
    r = uniform_pm1(name, n, seed)
    v = np.float32(offset) + r * amp  # two float32 roundings: product, then sum
    return v.reshape(shape)


def tensor_names(L):
    """The doc's names (fair-esm stripped keys), in fair-esm's state_dict order, no contact head."""
    names = ["embed_tokens.weight"]
    for i in range(L):
        p = "layers.%d." % i
        for m in ("k_proj", "v_proj", "q_proj", "out_proj"):
            names += [p + "self_attn.%s.weight" % m, p + "self_attn.%s.bias" % m]
        names += [p + "self_attn.rot_emb.inv_freq"]
        names += [p + "self_attn_layer_norm.weight", p + "self_attn_layer_norm.bias"]
        names += [p + "fc1.weight", p + "fc1.bias", p + "fc2.weight", p + "fc2.bias"]
        names += [p + "final_layer_norm.weight", p + "final_layer_norm.bias"]
    names += ["emb_layer_norm_after.weight", "emb_layer_norm_after.bias"]
    names += ["lm_head.weight", "lm_head.bias", "lm_head.dense.weight", "lm_head.dense.bias",
              "lm_head.layer_norm.weight", "lm_head.layer_norm.bias"]
    return names


# ---------------------------------------------------------------------------------------------
# fair-esm model
# ---------------------------------------------------------------------------------------------
TINY = dict(name="tiny", L=2, d=64, H=4, seed=0)
T6 = dict(name="t6", L=6, d=320, H=20, seed=0)
RESIDUES = "LAGVSERTIDPKQNFYMHWCXBUZO"  # ESM's 25 residue letters (ids 4..28)


def setup_torch():
    import torch
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    return torch


def fill_esm2(model, L, d, H, seed=0, check=True):
    """Overwrite every tensor of a fair-esm ESM2 with the generator (contact head: zeros)."""
    import torch
    hd = d // H
    sd = model.state_dict()
    expected = set(tensor_names(L))
    new = {}
    for name, t in sd.items():
        if name.startswith("contact_head."):
            new[name] = torch.zeros_like(t)
            continue
        assert name in expected, "unexpected fair-esm key %s" % name
        v = generate(name, tuple(t.shape), d, hd, seed)
        new[name] = torch.from_numpy(np.ascontiguousarray(v))
    missing = expected - set(sd)
    assert not missing, missing
    model.load_state_dict(new, strict=True)
    if check:
        ref = inv_freq_values(hd)
        for i, layer in enumerate(model.layers):
            buf = layer.self_attn.rot_emb.inv_freq
            assert buf.dtype == torch.float32
            assert np.array_equal(buf.numpy(), ref), "layer %d inv_freq not overwritten" % i
        assert model.lm_head.weight.data_ptr() == model.embed_tokens.weight.data_ptr()
    return model


def build_model(L, d, H, seed=0):
    import esm
    import torch
    from esm.model.esm2 import ESM2
    torch.manual_seed(0)  # only the torch init before we overwrite it
    model = ESM2(num_layers=L, embed_dim=d, attention_heads=H, alphabet="ESM-1b", token_dropout=True)
    fill_esm2(model, L, d, H, seed)
    model.eval()
    return model, esm.data.Alphabet.from_architecture("ESM-1b")


def unknown_to_x(seq):
    """The C default policy: characters outside ESM's 25 residue letters become X (24)."""
    out = "".join(c if c in RESIDUES else "X" for c in seq)
    return out, sum(c not in RESIDUES for c in seq)


def run_batch(model, alphabet, records, layers):
    """records: [(name, seq)]; one padded fair-esm batch. Returns {name: {layer: [n, d] f32}}."""
    import torch
    conv = alphabet.get_batch_converter()
    _, _, toks = conv(records)
    with torch.no_grad():
        out = model(toks, repr_layers=list(layers))
    res = {}
    for b, (name, seq) in enumerate(records):
        n = len(seq)
        res[name] = {l: out["representations"][l][b, 1:1 + n].numpy().astype(np.float32).copy()
                     for l in layers}
    return res, toks


def embed_alone(model, alphabet, name, seq, layers):
    return run_batch(model, alphabet, [(name, seq)], layers)[0][name]


def window_starts(n, W, O):
    """0, W-O, 2(W-O), ...; the last window starts at max(0, n-W) so it is full."""
    starts = [0]
    while starts[-1] + W < n:
        starts.append(min(starts[-1] + W - O, n - W))
    return starts


def window_blend(model, alphabet, seq, L, W=64, O=16):
    """Window policy: each window embedded alone; linear blend in each overlap (fp32)."""
    n = len(seq)
    starts = window_starts(n, W, O)
    out = None
    end_prev = 0
    for s in starts:
        e = min(s + W, n)
        w = embed_alone(model, alphabet, "w", seq[s:e], [L])[L]
        if out is None:
            out = np.zeros((n, w.shape[1]), np.float32)
            out[s:e] = w
        else:
            ov = end_prev - s
            assert 0 < ov < (e - s), (s, e, end_prev)
            for k in range(ov):
                j = s + k
                t = np.float32(k + 1) / np.float32(ov + 1)
                out[j] = (np.float32(1.0) - t) * out[j] + t * w[k]
            out[end_prev:e] = w[ov:]
        end_prev = e
    return out, starts


def np_forward64(tokens, L, d, H, seed=0, layers=()):
    """Independent float64 numpy forward (spec §2.7), no torch: to measure how far the fp32
    reference is from exact arithmetic. tokens: 1-D ids incl. cls/eos (no pad, no mask).
    Returns {layer: [T, d] float64} for the requested layers (L = post final LayerNorm)."""
    hd = d // H
    W = lambda n, shape: generate(n, shape, d, hd, seed).astype(np.float64)
    tokens = np.asarray(tokens)
    T = len(tokens)

    def ln(x, n):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * W(n + ".weight", (d,)) + W(n + ".bias", (d,))

    def lin(x, n, o, i):
        return x @ W(n + ".weight", (o, i)).T + W(n + ".bias", (o,))

    from math import erf
    verf = np.vectorize(erf)
    x = W("embed_tokens.weight", (33, d))[tokens] * 0.88
    inv = inv_freq_values(hd).astype(np.float64)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
    cos = np.cos(np.concatenate([ang, ang], -1))
    sin = np.sin(np.concatenate([ang, ang], -1))

    def rope(t):  # t [H, T, hd]
        h2 = hd // 2
        rot = np.concatenate([-t[..., h2:], t[..., :h2]], -1)
        return t * cos + rot * sin

    out = {}
    for l in range(L):
        p = "layers.%d." % l
        u = ln(x, p + "self_attn_layer_norm")
        q = lin(u, p + "self_attn.q_proj", d, d) * hd ** -0.5
        k = lin(u, p + "self_attn.k_proj", d, d)
        v = lin(u, p + "self_attn.v_proj", d, d)
        q, k, v = (t.reshape(T, H, hd).transpose(1, 0, 2) for t in (q, k, v))
        q, k = rope(q), rope(k)
        S = q @ k.transpose(0, 2, 1)
        S -= S.max(-1, keepdims=True)
        P = np.exp(S)
        P /= P.sum(-1, keepdims=True)
        O = (P @ v).transpose(1, 0, 2).reshape(T, d)
        x = x + lin(O, p + "self_attn.out_proj", d, d)
        u = ln(x, p + "final_layer_norm")
        g = lin(u, p + "fc1", 4 * d, d)
        g = g * 0.5 * (1.0 + verf(g / math.sqrt(2.0)))
        x = x + lin(g, p + "fc2", d, 4 * d)
        if l + 1 in layers and l + 1 < L:
            out[l + 1] = x
    if L in layers:
        out[L] = ln(x, "emb_layer_norm_after")
    return out


# ---------------------------------------------------------------------------------------------
# Sequences
# ---------------------------------------------------------------------------------------------
REAL = ["1PPE_l", "4CPA_l", "2X9A_l", "1AY7_r", "1KAC_l", "2CFH_r", "4DW2_l", "2H7V_r"]
LONG = "1PXV_r"  # 183 residues: window policy (W=64, O=16) and truncate policy (50)
BATCH4 = ["2X9A_l", "2CFH_r", "1PPE_l", "1KAC_l"]  # padded batch, rows in this order
T6_SEQS = ["1PPE_l", "1KAC_l", "2H7V_r"]


def synthetic(real):
    """Two made-up sequences built on real ones (documented in the README)."""
    base = real["2X9A_l"][:40]
    # non-standard letters that have their own ESM ids: X=24 B=25 U=26 Z=27 O=28
    nonstd = base[:5] + "X" + base[5:12] + "B" + base[12:20] + "U" + base[20:27] + "Z" + base[27:33] + "O" + base[33:]
    base2 = real["1AY7_r"][:34]
    # characters outside the 25 residue letters: 'J' alone and a run 'JJ' (no lowercase)
    unk = base2[:6] + "J" + base2[6:20] + "JJ" + base2[20:]
    return [("nonstd_XBUZO", nonstd), ("unknown_J", unk)]


def read_fasta(path):
    recs, name, parts = [], None, []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith(">"):
                if name is not None:
                    recs.append((name, "".join(parts)))
                name, parts = line[1:].split()[0], []
            elif line.strip():
                parts.append(line.strip())
    if name is not None:
        recs.append((name, "".join(parts)))
    return recs


def make_sequences(db5_fasta):
    chains = dict(read_fasta(db5_fasta))
    recs = [(n, chains[n]) for n in REAL] + synthetic(chains) + [(LONG, chains[LONG])]
    return recs


# ---------------------------------------------------------------------------------------------
# Weight files
# ---------------------------------------------------------------------------------------------
def fair_esm_raw_state(model):
    """State dict with fair-esm's RAW checkpoint keys (encoder.sentence_encoder. / encoder.)."""
    sd = model.state_dict()
    raw = {}
    for k, v in sd.items():
        if k.startswith("contact_head."):
            continue  # lives in the separate -contact-regression.pt
        if k.startswith("lm_head."):
            raw["encoder." + k] = v
        else:
            raw["encoder.sentence_encoder." + k] = v
    return raw


def save_fair_esm_pt(model, cfg, path):
    import torch
    # state_dict() already shares the embed_tokens / lm_head.weight storage: saved once.
    data = {
        "model": fair_esm_raw_state(model),
        "cfg": {"model": Namespace(
            _name="ESM2",
            arch="esm2",
            encoder_layers=cfg["L"],
            encoder_embed_dim=cfg["d"],
            encoder_ffn_embed_dim=4 * cfg["d"],
            encoder_attention_heads=cfg["H"],
            token_dropout=True,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            max_positions=1024,
        )},
    }
    torch.save(data, path)


HF_MAP = [  # (fair-esm stripped name pattern, HF key pattern); {i} = layer
    ("embed_tokens.weight", "esm.embeddings.word_embeddings.weight"),
    ("layers.{i}.self_attn_layer_norm.weight", "esm.encoder.layer.{i}.attention.LayerNorm.weight"),
    ("layers.{i}.self_attn_layer_norm.bias", "esm.encoder.layer.{i}.attention.LayerNorm.bias"),
    ("layers.{i}.self_attn.q_proj.weight", "esm.encoder.layer.{i}.attention.self.query.weight"),
    ("layers.{i}.self_attn.q_proj.bias", "esm.encoder.layer.{i}.attention.self.query.bias"),
    ("layers.{i}.self_attn.k_proj.weight", "esm.encoder.layer.{i}.attention.self.key.weight"),
    ("layers.{i}.self_attn.k_proj.bias", "esm.encoder.layer.{i}.attention.self.key.bias"),
    ("layers.{i}.self_attn.v_proj.weight", "esm.encoder.layer.{i}.attention.self.value.weight"),
    ("layers.{i}.self_attn.v_proj.bias", "esm.encoder.layer.{i}.attention.self.value.bias"),
    ("layers.{i}.self_attn.rot_emb.inv_freq", "esm.encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq"),
    ("layers.{i}.self_attn.out_proj.weight", "esm.encoder.layer.{i}.attention.output.dense.weight"),
    ("layers.{i}.self_attn.out_proj.bias", "esm.encoder.layer.{i}.attention.output.dense.bias"),
    ("layers.{i}.final_layer_norm.weight", "esm.encoder.layer.{i}.LayerNorm.weight"),
    ("layers.{i}.final_layer_norm.bias", "esm.encoder.layer.{i}.LayerNorm.bias"),
    ("layers.{i}.fc1.weight", "esm.encoder.layer.{i}.intermediate.dense.weight"),
    ("layers.{i}.fc1.bias", "esm.encoder.layer.{i}.intermediate.dense.bias"),
    ("layers.{i}.fc2.weight", "esm.encoder.layer.{i}.output.dense.weight"),
    ("layers.{i}.fc2.bias", "esm.encoder.layer.{i}.output.dense.bias"),
    ("emb_layer_norm_after.weight", "esm.encoder.emb_layer_norm_after.weight"),
    ("emb_layer_norm_after.bias", "esm.encoder.emb_layer_norm_after.bias"),
    ("contact_head.regression.weight", "esm.contact_head.regression.weight"),
    ("contact_head.regression.bias", "esm.contact_head.regression.bias"),
    ("lm_head.dense.weight", "lm_head.dense.weight"),
    ("lm_head.dense.bias", "lm_head.dense.bias"),
    ("lm_head.layer_norm.weight", "lm_head.layer_norm.weight"),
    ("lm_head.layer_norm.bias", "lm_head.layer_norm.bias"),
    ("lm_head.bias", "lm_head.bias"),
    # lm_head.weight (HF lm_head.decoder.weight) is tied to the word embeddings: not written,
    # as HF's safetensors serialisation drops tied duplicates.
]


def hf_state(model, cfg):
    import torch
    sd = model.state_dict()
    out = {}
    for fk, hk in HF_MAP:
        if "{i}" in fk:
            for i in range(cfg["L"]):
                out[hk.format(i=i)] = sd[fk.format(i=i)].clone().contiguous()
        else:
            out[hk] = sd[fk].clone().contiguous()
    # legacy learned position table of ESM-1b, unused by rotary models (random, outside the
    # generator doc: name "esm.embeddings.position_embeddings.weight", offset 0, amplitude 0.5)
    n = 1026 * cfg["d"]
    pos = uniform_pm1("esm.embeddings.position_embeddings.weight", n, cfg["seed"]) * np.float32(0.5)
    out["esm.embeddings.position_embeddings.weight"] = torch.from_numpy(pos.reshape(1026, cfg["d"]))
    # the int64 buffer older transformers versions saved; a loader ignores it
    out["esm.embeddings.position_ids"] = torch.arange(1026, dtype=torch.int64)[None, :]
    return out


def hf_config(cfg):
    d = cfg["d"]
    return {
        "architectures": ["EsmForMaskedLM"],
        "attention_probs_dropout_prob": 0.0,
        "classifier_dropout": None,
        "emb_layer_norm_before": False,
        "esmfold_config": None,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "hidden_size": d,
        "initializer_range": 0.02,
        "intermediate_size": 4 * d,
        "is_folding_model": False,
        "layer_norm_eps": 1e-05,
        "mask_token_id": 32,
        "max_position_embeddings": 1026,
        "model_type": "esm",
        "num_attention_heads": cfg["H"],
        "num_hidden_layers": cfg["L"],
        "pad_token_id": 1,
        "position_embedding_type": "rotary",
        "token_dropout": True,
        "torch_dtype": "float32",
        "transformers_version": "4.40.2",
        "use_cache": True,
        "vocab_list": None,
        "vocab_size": 33,
    }


def save_hf(model, cfg, dirpath):
    from safetensors.torch import save_file
    save_file(hf_state(model, cfg), os.path.join(dirpath, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(dirpath, "config.json"), "w") as f:
        json.dump(hf_config(cfg), f, indent=2, sort_keys=True)
        f.write("\n")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
def maxdiff(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def fp16_stats(arrays):
    x = np.concatenate([a.ravel() for a in arrays]).astype(np.float64)
    h = x.astype(np.float16).astype(np.float64)
    err = np.abs(h - x)
    nz = np.abs(x) > 0
    normal = np.abs(x) >= 2.0 ** -14
    return dict(max_abs_value=float(np.max(np.abs(x))), n=int(x.size),
                fp16_max_abs_err=float(err.max()),
                fp16_max_rel_err=float(np.max(err[nz] / np.abs(x[nz]))),
                fp16_max_rel_err_normal=float(np.max(err[normal] / np.abs(x[normal]))),
                fp16_rms_rel_err=float(np.sqrt(np.mean((err[nz] / np.abs(x[nz])) ** 2))))


def generator_check_lines(cfg):
    """name, shape, first 4 values (%.9g and float32 hex bits), FNV-1a 64 of the tensor bytes."""
    d, H, L = cfg["d"], cfg["H"], cfg["L"]
    picks = ["embed_tokens.weight", "layers.0.self_attn.q_proj.weight", "layers.0.self_attn.q_proj.bias",
             "layers.0.self_attn.rot_emb.inv_freq", "layers.0.self_attn_layer_norm.weight",
             "layers.0.fc1.weight", "layers.%d.fc2.weight" % (L - 1), "layers.%d.final_layer_norm.bias" % (L - 1),
             "emb_layer_norm_after.weight", "lm_head.dense.weight", "lm_head.bias"]
    shapes = {
        "embed_tokens.weight": (33, d), "layers.0.self_attn.q_proj.weight": (d, d),
        "layers.0.self_attn.q_proj.bias": (d,), "layers.0.self_attn.rot_emb.inv_freq": (d // H // 2,),
        "layers.0.self_attn_layer_norm.weight": (d,), "layers.0.fc1.weight": (4 * d, d),
        "layers.%d.fc2.weight" % (L - 1): (d, 4 * d), "layers.%d.final_layer_norm.bias" % (L - 1): (d,),
        "emb_layer_norm_after.weight": (d,), "lm_head.dense.weight": (d, d), "lm_head.bias": (33,),
    }
    lines = []
    for name in picks:
        v = generate(name, shapes[name], d, d // H, cfg["seed"])
        first = v.ravel()[:4]
        bits = " ".join("%08x" % x for x in first.view(np.uint32))
        vals = " ".join("%.9g" % x for x in first)
        lines.append("%s\t%d,%d,%d\t%d\t%s\t%s\t%s\t%016x" % (
            name, L, d, H, cfg["seed"], "x".join(map(str, shapes[name])), vals, bits, fnv1a64_array(v)))
    return lines


def main():
    ap = argparse.ArgumentParser(description="ESM-2 reference goldens (tests/data/esm)")
    ap.add_argument("--db5-fasta", help="rebuild sequences.fasta from this db5_sequences.py output")
    ap.add_argument("--check-only", action="store_true", help="write nothing")
    args = ap.parse_args()
    torch = setup_torch()
    import esm
    write = not args.check_only
    report = {"torch": torch.__version__, "numpy": np.__version__,
              "fair_esm": getattr(esm, "__version__", "?"), "threads": torch.get_num_threads()}

    # self-test of the generator primitives against the doc's scalar formulas
    z0 = (fnv1a64("embed_tokens.weight") + GOLDEN_GAMMA) & M64
    z = z0
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    z ^= z >> 31
    r0 = np.float32(2 * ((z >> 40) * 2.0 ** -24) - 1)
    assert uniform_pm1("embed_tokens.weight", 1, 0)[0] == r0
    assert np.array_equal(inv_freq_values(64)[:5], np.array([1.0, 0.75, 0.5625, 0.42163086, 0.31616211], np.float32))

    # sequences
    fasta = os.path.join(DATA, "sequences.fasta")
    if args.db5_fasta:
        recs = make_sequences(args.db5_fasta)
        if write:
            os.makedirs(DATA, exist_ok=True)
            with open(fasta, "w", newline="\n") as f:
                for n, s in recs:
                    f.write(">%s\n%s\n" % (n, s))
    recs = read_fasta(fasta)
    seqs = dict(recs)
    report["sequences"] = {n: len(s) for n, s in recs}

    # ---------------------------------------------------------------- TINY
    cfg = TINY
    L = cfg["L"]
    model, alphabet = build_model(cfg["L"], cfg["d"], cfg["H"], cfg["seed"])
    tdir = os.path.join(DATA, "tiny")
    if write:
        os.makedirs(tdir, exist_ok=True)
        tokdir = os.path.join(DATA, "tokens")
        os.makedirs(tokdir, exist_ok=True)
    goldens = {}
    tiny_all = []
    for name, seq in recs:
        s, n_unk = unknown_to_x(seq)
        r = embed_alone(model, alphabet, name, s, [1, L])
        goldens[name] = r
        tiny_all += [r[L], r[1]]
        if write:
            np.save(os.path.join(tdir, name + ".last.npy"), r[L])
            np.save(os.path.join(tdir, name + ".layer1.npy"), r[1])
            toks = np.array([alphabet.cls_idx] + alphabet.encode(s) + [alphabet.eos_idx], np.int32)
            np.save(os.path.join(tokdir, name + ".npy"), toks)
        if n_unk:
            report.setdefault("unknown_mapped_to_X", {})[name] = n_unk
    # batch of 4
    batch = [(n, seqs[n]) for n in BATCH4]
    res, toks = run_batch(model, alphabet, batch, [1, L])
    report["batch4_shape"] = list(toks.shape)
    bdiff = {}
    for n in BATCH4:
        bdiff[n] = dict(last=maxdiff(res[n][L], goldens[n][L]), layer1=maxdiff(res[n][1], goldens[n][1]))
        if write:
            np.save(os.path.join(tdir, "batch4.%s.last.npy" % n), res[n][L])
    report["batch4_vs_alone_maxabs"] = bdiff
    # window and truncate policies
    long_seq = seqs[LONG]
    win, starts = window_blend(model, alphabet, long_seq, L, 64, 16)
    report["window64-16"] = dict(n=len(long_seq), starts=starts,
                                 maxabs_vs_alone=maxdiff(win, goldens[LONG][L]))
    trunc = embed_alone(model, alphabet, "t", long_seq[:50], [L])[L]
    report["trunc50_vs_alone_first50_maxabs"] = maxdiff(trunc, goldens[LONG][L][:50])
    if write:
        np.save(os.path.join(tdir, "%s.window64-16.last.npy" % LONG), win)
        np.save(os.path.join(tdir, "%s.trunc50.last.npy" % LONG), trunc)
    tiny_all += [win, trunc]

    # weight files + reload checks
    pt = os.path.join(tdir, "model.pt")
    if write:
        save_fair_esm_pt(model, cfg, pt)
        save_hf(model, cfg, tdir)
    if os.path.exists(pt):
        import esm.pretrained
        data = torch.load(pt, map_location="cpu")
        # load_model_and_alphabet_local() takes the model name from the file stem and needs it to
        # start with "esm2" (and a co-located -contact-regression.pt); the core function is what
        # it calls after torch.load, with the name it would derive from esm2_*.pt.
        m2, a2 = esm.pretrained.load_model_and_alphabet_core("esm2_tiny", data, None)
        m2.eval()
        d_pt = 0.0
        for name, seq in recs:
            s, _ = unknown_to_x(seq)
            r2 = embed_alone(m2, a2, name, s, [1, L])
            d_pt = max(d_pt, maxdiff(r2[L], goldens[name][L]), maxdiff(r2[1], goldens[name][1]))
        report["fair_esm_pt_reload_maxabs"] = d_pt
        keys = list(data["model"].keys())
        report["pt_keys"] = len(keys)
    report["hf"] = hf_check(torch, tdir, recs, goldens, L, BATCH4, seqs)

    # ---------------------------------------------------------------- T6
    cfg6 = T6
    model6, alphabet6 = build_model(cfg6["L"], cfg6["d"], cfg6["H"], cfg6["seed"])
    t6dir = os.path.join(DATA, "t6")
    t6_all = []
    if write:
        os.makedirs(t6dir, exist_ok=True)
    for n in T6_SEQS:
        r = embed_alone(model6, alphabet6, n, seqs[n], [cfg6["L"]])[cfg6["L"]]
        t6_all.append(r)
        if write:
            np.save(os.path.join(t6dir, n + ".last.npy"), r)
    # independent float64 numpy forward vs the fp32 fair-esm goldens
    f64 = {}
    for tag, c, names, gold in (("tiny", TINY, [n for n, _ in recs], lambda n: goldens[n]),
                                ("t6", T6, T6_SEQS, None)):
        worst = {}
        for i, n in enumerate(names):
            s_, _ = unknown_to_x(seqs[n])
            toks = [alphabet.cls_idx] + alphabet.encode(s_) + [alphabet.eos_idx]
            lay = (1, c["L"]) if tag == "tiny" else (c["L"],)
            ex = np_forward64(toks, c["L"], c["d"], c["H"], c["seed"], lay)
            for l in lay:
                ref32 = gold(n)[l] if gold else t6_all[i]
                key = "last" if l == c["L"] else "layer%d" % l
                worst[key] = max(worst.get(key, 0.0), maxdiff(ref32, ex[l][1:1 + len(s_)]))
        f64[tag] = worst
    report["fp32_reference_vs_float64_maxabs"] = f64
    report["fp16"] = {"tiny_last": fp16_stats([goldens[n][L] for n, _ in recs]),
                      "tiny_layer1": fp16_stats([goldens[n][1] for n, _ in recs]),
                      "t6_last": fp16_stats(t6_all)}
    report["generator_check"] = generator_check_lines(TINY) + generator_check_lines(T6)
    if write:
        with open(os.path.join(DATA, "generator_check.tsv"), "w", newline="\n") as f:
            f.write("# name\tshape(L,d,H)\tseed\ttensor_shape\tfirst4(%.9g)\tfirst4(float32 bits)\tfnv1a64(le float32 bytes)\n")
            for line in report["generator_check"]:
                f.write(line + "\n")
        # manifest: sha256 of every file (for spotting accidental edits)
        files = []
        for dp, _, fns in os.walk(DATA):
            for fn in sorted(fns):
                p = os.path.join(dp, fn)
                rel = os.path.relpath(p, DATA)
                if rel in ("MANIFEST.sha256",) or rel.endswith(".md"):
                    continue
                with open(p, "rb") as f:
                    files.append((rel, hashlib.sha256(f.read()).hexdigest()))
        with open(os.path.join(DATA, "MANIFEST.sha256"), "w", newline="\n") as f:
            for rel, h in sorted(files):
                f.write("%s  %s\n" % (h, rel))
    print(json.dumps(report, indent=1))
    return 0


def hf_check(torch, tdir, recs, goldens, L, batch_names, seqs):
    """Hugging Face EsmModel on model.safetensors vs the fair-esm goldens (skipped if absent)."""
    try:
        import transformers
        from transformers import EsmModel
    except ImportError:
        return "transformers not importable: skipped"
    if not os.path.exists(os.path.join(tdir, "model.safetensors")):
        return "no safetensors: skipped"
    import esm
    transformers.logging.set_verbosity_error()
    m = EsmModel.from_pretrained(tdir, add_pooling_layer=False, attn_implementation="eager")
    m.eval()
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    hd = m.config.hidden_size // m.config.num_attention_heads
    for i, layer in enumerate(m.encoder.layer):
        assert np.array_equal(layer.attention.self.rotary_embeddings.inv_freq.numpy(), inv_freq_values(hd))
    worst = dict(last=0.0, layer1=0.0)
    for name, seq in recs:
        s, _ = unknown_to_x(seq)
        toks = torch.tensor([[alphabet.cls_idx] + alphabet.encode(s) + [alphabet.eos_idx]])
        with torch.no_grad():
            out = m(input_ids=toks, attention_mask=torch.ones_like(toks), output_hidden_states=True)
        n = len(s)
        worst["last"] = max(worst["last"], maxdiff(out.last_hidden_state[0, 1:1 + n].numpy(), goldens[name][L]))
        worst["layer1"] = max(worst["layer1"], maxdiff(out.hidden_states[1][0, 1:1 + n].numpy(), goldens[name][1]))
    conv = alphabet.get_batch_converter()
    _, _, toks = conv([(n, seqs[n]) for n in batch_names])
    with torch.no_grad():
        out = m(input_ids=toks, attention_mask=(toks != alphabet.padding_idx).long())
    wb = 0.0
    for b, n in enumerate(batch_names):
        wb = max(wb, maxdiff(out.last_hidden_state[b, 1:1 + len(seqs[n])].numpy(), goldens[n][L]))
    return dict(transformers=transformers.__version__, alone_maxabs=worst, batch4_last_maxabs=wb)


if __name__ == "__main__":
    sys.exit(main())
