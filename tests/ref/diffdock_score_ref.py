#!/usr/bin/python3
"""Golden files for the DiffDock-PP score model (forward, loss, backward), produced by the
ORIGINAL DiffDock-PP Python code (imported from a checkout, never copied here).

What it does
------------
* Builds DiffDock-PP's own `model.model.ScoreModel` (wrapping `TensorProductScoreModel`, the e3nn
  model used when model_type = e3nn) with the original argparse namespace (`args.parse_args()`
  defaults, overridden by the released `large_model_dips.args.yaml`, then by the small sizes
  below): ns 8, nv 3, 4 conv layers, lm_embed_dim 16, all embed dims 32, dynamic cross cutoff
  3*sigma_tr+40, cross_max_dist 80, scale_by_sigma, sinusoidal time embedding x10000, no batch
  norm, dropout 0, no_torsion, first-order irreps.
* Weights are random, seeded by --seed: every >=2-D parameter Xavier-normal, every 1-D
  parameter N(0, 0.1^2) (non-zero biases, unlike the original init); buffers as built.  The
  tensor-product weight generators (*.fc.3.weight of every conv) use Xavier gain --tp-gain
  (default 0.2): each TP is bilinear in the node features and in fc(features), and with gain 1
  the 4-layer stack grows like |h|^16 (seed 0: losses 1e18..1e22, predictions ~1e10, the
  targets lost below float32 resolution).  --tp-gain 1 gives plain Xavier everywhere.
* Data: the two DB5.5 bound complexes with the fewest CA residues (receptor + ligand), parsed like
  DiffDock-PP (Biopython PDBParser, residues with blank hetero flag, atoms named exactly CA, all
  models/chains in file order), kNN k = 20 per protein (brute force, self excluded, edges
  (src = neighbour, dst = centre), ties to the lower index), centred on the receptor CA mean.
  Node features x = [emb(16) | token]: emb ~ U(-0.9, 0.9) (seeded) except emb[0] = 2.5 at one
  ligand node of complex A (exercises idx = trunc(x[0]) = 2), token = ESM alphabet id as float.
* Noise: the original `geom_utils.NoiseTransform.apply_noise(data, t, t, t)` (torch.normal for
  the translation, `geom_utils.so3.sample_vec` for the rotation, `so3.score_vec` for the target),
  numpy/torch seeded per case from --seed; the applied updates are captured by wrapping
  `apply_updates` (call-through, nothing changed).
* Cases (same weights, gradients zeroed between cases): A at t = 0.3 and 0.85, B at t = 0.3 and
  0.85, and A+B in one PyG batch (Batch.from_data_list, as the PyG DataLoader collates) at
  t = 0.6 for both (exercises the centre-edge quirk: every centre edge of complex g reads
  ligand node g of the batch).  Each case: model(batch) -> model.compute_loss(batch, out)
  (original DiffusionLoss, tr_weight 0.5, rot_weight 0.5, tor_weight 0) -> loss.backward().
  (The loss's CPU branch iterates the batch, which PyG 2.3's HeteroData refuses; it gets a thin
  iterable view of the batch, see _IterableBatch.  Nothing numeric changes.)
* Writes (torch.save, PyTorch zip) into --out: model.pth ({"model": state_dict}, keys
  "encoder.*" as the original save_model writes), config.json, case_<name>.pt (flat dicts),
  README.md (every tensor's name/shape/dtype/meaning).  Then reloads model.pth into a freshly
  built model, rebuilds every batch from the saved case tensors alone, reruns forward + loss +
  backward and asserts bit-identical outputs and gradients; prints one summary line per case.

How to run
----------
    # 1. the original source (the mirror is a bare repo; `git archive HEAD` alone fails on a
    #    missing checkpoint blob, so take src/ only) and its commit id
    mkdir -p /tmp/diffdock-pp
    git --git-dir=/work/.mirror/ketatam+DiffDock-PP/repo archive HEAD src | tar -x -C /tmp/diffdock-pp
    git --git-dir=/work/.mirror/ketatam+DiffDock-PP/repo rev-parse HEAD > /tmp/diffdock-pp/COMMIT

    # 2. Python deps for Debian's /usr/bin/python3 (torch 1.13 from python3-torch)
    apt-get install -y python3-scipy python3-biopython python3-jinja2
    /usr/bin/python3 -m pip install --break-system-packages --no-deps \
        e3nn==0.5.1 opt_einsum opt_einsum_fx torch_geometric==2.3.1
    #   (sympy comes from Debian; torch_cluster / torch_scatter are replaced by the pure-torch
    #    stand-ins in tests/ref/diffdock_stubs/)

    # 3. generate (from the project root; the script chdirs to --workdir, where DiffDock-PP's
    #    so3.py caches its IGSO(3) tables as .so3_*.npy -- the first run takes ~3 minutes)
    /usr/bin/python3 tests/ref/diffdock_score_ref.py --diffdock /tmp/diffdock-pp \
        --out tests/data/diffdock-golden --seed 0

Options: --diffdock DIR (default $DIFFDOCK_PP; DIR or DIR/src holds model/, geom_utils/, args.py),
--out DIR (default tests/data/diffdock-golden), --seed N (default 0), --db5 DIR (default
../shared/data/db5.5 next to the project, else /work/shared/data/db5.5), --workdir DIR (default
/tmp/ddpp-work), --args-yaml FILE (released args, default the shared large_model_dips.args.yaml;
skipped if absent), --tp-gain G (default 0.2, see above), --batch-norm (see below).

Batch-norm variant (--batch-norm, default --out tests/data/diffdock-golden-bn)
------------------------------------------------------------------------------
    /usr/bin/python3 tests/ref/diffdock_score_ref.py --diffdock /tmp/diffdock-pp \
        --out tests/data/diffdock-golden-bn --seed 0 --batch-norm

Same model with no_batch_norm = False: the original TPCL then applies an e3nn
`BatchNorm(out_irreps)` to every interaction conv's output (intra_convs.k / cross_convs.k
`.batch_norm`: weight, bias, running_mean, running_var; not the final conv).  Weights: the other
parameters get exactly the default run's values (the BN parameters are skipped in the first pass,
so the RNG stream is the same), then, continuing the same stream, the BN parameters in
named_parameters() order: weight 1 + N(0, 0.1^2), bias N(0, 0.1^2) (not the init routine's
zeros, which would zero every BN output).  Running stats as built (mean 0, var 1).  Only cases
A_t0.85 and AB_t0.60 (same complexes, case seeds and noise as the default run).  Each case starts
from the same weights AND running stats (state dict reloaded before it, since train-mode forwards
update the running stats), model.train() (batch statistics): forward + loss + backward as above;
the case file additionally holds `bn.<module>.running_mean` / `.running_var` after that forward,
and `eval.tr_pred` / `eval.rot_pred`: the same inputs through the model in eval() mode with the
ORIGINAL running stats of model.pth (reloaded before it).

The C test reads tests/data/diffdock-golden by default; set PPD_DIFFDOCK_GOLDEN=DIR to point it at
another output directory (e.g. one generated with another --seed).

Stand-ins (only for things the score model does not need numerically): `torch_cluster`,
`torch_scatter` (tests/ref/diffdock_stubs/, pure torch), and `geom_utils.torus` (its import-time
torsion tables cost minutes and ~2 GB; torsion is disabled, no_torsion = True).
"""
import argparse
import copy
import gzip
import hashlib
import json
import os
import platform
import re
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STUBS = os.path.join(HERE, "diffdock_stubs")

# ---------------------------------------------------------------------------------------------
# configuration

MODEL_HPARAMS = dict(
    model_type="e3nn",
    resolution="residue",
    knn_size=20,
    ns=8,
    nv=3,
    num_conv_layers=4,
    lm_embed_dim=16,
    dist_embed_dim=32,
    cross_dist_embed_dim=32,
    sigma_embed_dim=32,
    dynamic_max_cross=True,
    cross_cutoff_weight=3,
    cross_cutoff_bias=40,
    cross_max_dist=80,
    max_radius=30.0,
    scale_by_sigma=True,
    tr_s_min=0.01,
    tr_s_max=30.0,
    rot_s_min=0.01,
    rot_s_max=1.65,
    tor_s_min=0.0314,
    tor_s_max=3.14,
    embedding_type="sinusoidal",
    embedding_scale=10000,
    no_batch_norm=True,
    no_torsion=True,
    dropout=0.0,
    use_second_order_repr=False,
    tr_weight=0.5,
    rot_weight=0.5,
    tor_weight=0.0,
    num_gpu=1,
    gpu=-1,
)
NUM_RESIDUES = 23  # data_params["num_residues"] with ESM -> atom embedding table of 24 rows
SPECIAL_EMB0 = 2.5  # emb[0] of one ligand node of complex A -> embedding row trunc(2.5) = 2
# (name, complexes ("A"/"B"), t)
CASES = [
    ("A_t0.30", ["A"], 0.3),
    ("A_t0.85", ["A"], 0.85),
    ("B_t0.30", ["B"], 0.3),
    ("B_t0.85", ["B"], 0.85),
    ("AB_t0.60", ["A", "B"], 0.6),
]
ESM_TOK = {"L": 4, "A": 5, "G": 6, "V": 7, "S": 8, "E": 9, "R": 10, "T": 11, "I": 12, "D": 13,
           "P": 14, "K": 15, "Q": 16, "N": 17, "F": 18, "Y": 19, "M": 20, "H": 21, "W": 22,
           "C": 23}
ESM_UNK = 3
SIZE_LIMIT = 2 * 1024 * 1024
# --batch-norm variant
BN_CASES = ("A_t0.85", "AB_t0.60")  # names from CASES (case seeds as in the default run)
BN_SIZE_LIMIT = 1024 * 1024
BN_WEIGHT_STD = 0.1  # BN weight 1 + N(0, std^2), BN bias N(0, std^2)
BIAS_STD = 0.1
# Xavier gain of the TP weight generators (*.fc.3.weight).  Each tensor product is bilinear in
# the node features and in fc(features), so with gain 1 everywhere the 4-layer stack grows like
# |h|^16: losses of 1e18..1e22 (seed 0), predictions ~1e10 that drown the targets below float32
# resolution.  0.2 keeps every layer's update at 40-60 % of the feature norm, predictions of the
# same order as the targets and losses O(1).  --tp-gain 1 gives the plain Xavier init.
TP_GAIN = 0.2


def cli():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--diffdock", default=os.environ.get("DIFFDOCK_PP"),
                   help="DiffDock-PP checkout (DIR or DIR/src has model/, geom_utils/)")
    p.add_argument("--out", default=None,
                   help="output folder (default tests/data/diffdock-golden, "
                        "tests/data/diffdock-golden-bn with --batch-norm)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--db5", default=None)
    p.add_argument("--workdir", default="/tmp/ddpp-work")
    p.add_argument("--args-yaml", default=None)
    p.add_argument("--tp-gain", type=float, default=TP_GAIN,
                   help="Xavier gain of the *.fc.3.weight TP weight generators (default %(default)s)")
    p.add_argument("--batch-norm", action="store_true",
                   help="batch-norm variant (no_batch_norm False, cases A_t0.85 and AB_t0.60)")
    a = p.parse_args()
    if a.out is None:
        a.out = os.path.join(ROOT, "tests", "data",
                             "diffdock-golden-bn" if a.batch_norm else "diffdock-golden")
    if not a.diffdock:
        p.error("--diffdock DIR (or env DIFFDOCK_PP) is required")
    a.diffdock = os.path.abspath(a.diffdock)
    a.out = os.path.abspath(a.out)
    if a.db5 is None:
        for cand in (os.path.join(os.path.dirname(ROOT), "shared", "data", "db5.5"),
                     "/work/shared/data/db5.5"):
            if os.path.isdir(cand):
                a.db5 = cand
                break
    if a.db5 is None or not os.path.isdir(os.path.join(a.db5, "structures")):
        p.error("DB5.5 folder with structures/ not found; pass --db5")
    a.db5 = os.path.abspath(a.db5)
    if a.args_yaml is None:
        cand = os.path.join(os.path.dirname(a.db5), "diffdock-pp", "large_model_dips.args.yaml")
        a.args_yaml = cand if os.path.exists(cand) else ""
    a.workdir = os.path.abspath(a.workdir)
    if a.workdir == ROOT or a.workdir.startswith(ROOT + os.sep):
        p.error("--workdir must be outside the project (so3.py writes .npy caches there)")
    return a


# ---------------------------------------------------------------------------------------------
# imports of the original code


def src_dir(diffdock):
    for d in (os.path.join(diffdock, "src"), diffdock):
        if os.path.isfile(os.path.join(d, "model", "diffusion.py")):
            return d
    raise SystemExit(f"no DiffDock-PP source (model/diffusion.py) under {diffdock}")


def import_original(diffdock):
    """Import DiffDock-PP modules. PyG is imported first, before the stand-ins are on sys.path,
    so PyG itself keeps its pure-torch code paths; the original model code then picks up the
    stand-ins for torch_cluster / torch_scatter."""
    import torch_geometric  # noqa: F401
    import torch_geometric.data  # noqa: F401
    import torch_geometric.loader  # noqa: F401
    import torch_geometric.nn  # noqa: F401
    import torch_geometric.transforms  # noqa: F401

    src = src_dir(diffdock)
    for mod in ("torch_cluster", "torch_scatter"):
        if mod in sys.modules:
            del sys.modules[mod]
    sys.path.insert(0, STUBS)
    sys.path.insert(0, src)

    # geom_utils.torus computes large torsion tables at import; torsion is off (no_torsion).
    torus = types.ModuleType("geom_utils.torus")

    def _torsion_disabled(*a, **k):
        raise RuntimeError("torsion is disabled in this reference (no_torsion=True)")

    torus.score = torus.p = torus.sample = torus.score_norm = _torsion_disabled
    sys.modules["geom_utils.torus"] = torus

    import torch_cluster
    import torch_scatter
    assert torch_cluster.__file__.startswith(STUBS), torch_cluster.__file__
    assert torch_scatter.__file__.startswith(STUBS), torch_scatter.__file__

    import args as dd_args
    import geom_utils
    from geom_utils import so3
    from model.model import ScoreModel
    from model import diffusion as dd_diffusion
    return types.SimpleNamespace(args=dd_args, geom_utils=geom_utils, so3=so3,
                                 ScoreModel=ScoreModel, diffusion=dd_diffusion, src=src)


def build_args(dd, args_yaml, hparams=None):
    import yaml
    saved_argv = sys.argv
    sys.argv = [saved_argv[0]]
    try:
        args = dd.args.parse_args()  # the original namespace with all defaults
    finally:
        sys.argv = saved_argv
    if args_yaml:
        with open(args_yaml) as f:
            dd.args.override_args(args, yaml.safe_load(f))
    dd.args.override_args(args, dict(MODEL_HPARAMS if hparams is None else hparams))
    return args


# ---------------------------------------------------------------------------------------------
# data


def quick_ca_count(path):
    """Upper bound of the Biopython CA-node count: ATOM records named CA."""
    n = 0
    with gzip.open(path, "rt") as f:
        for line in f:
            if line.startswith("ATOM") and line[12:16] == " CA ":
                n += 1
    return n


def parse_ca(path):
    """DiffDock-PP residue graph nodes (spec 1.2): Biopython PDBParser, every model and chain in
    file order, residues with blank hetero flag, atoms named exactly CA."""
    import numpy as np
    from Bio.PDB import PDBParser
    from Bio.Data.IUPACData import protein_letters_3to1
    letter = {k.upper(): v for k, v in protein_letters_3to1.items()}
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        structure = PDBParser(QUIET=True).get_structure("x", f)
    # The original Loader.parse_pdb rebinds its `chains` variable to the first model, so for a
    # multi-MODEL file it silently keeps only model 0; here all models are read (spec 1.2).  The
    # two disagree only for multi-model files, which the chosen complexes must not be.
    assert len(structure) == 1, f"{path}: {len(structure)} MODELs (original keeps only the first)"
    resn, pos = [], []
    for model in structure:
        for chain in model:
            for res in chain:
                if res.id[0] != " ":
                    continue
                for atom in res:
                    if atom.get_name() == "CA":
                        resn.append(res.get_resname())
                        pos.append(atom.get_coord())
    seq = [letter.get(r, "<unk>") for r in resn]
    return seq, np.asarray(pos, dtype=np.float32)


def struct_path(db5, pdb, side):
    for ext in (".pdb.gz", ".pdb"):
        p = os.path.join(db5, "structures", f"{pdb}_{side}_b{ext}")
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{pdb}_{side}_b.pdb[.gz] in {db5}/structures")


def pick_complexes(db5, n=2):
    """The n complexes with the fewest CA residues (receptor + ligand, bound). Exact: Biopython
    counts are taken in increasing order of the ATOM-CA-line upper bound until that bound
    exceeds the n-th best exact count; ties by id."""
    names = os.listdir(os.path.join(db5, "structures"))
    ids = sorted({m.group(1) for m in (re.match(r"^(\w{4})_r_b\.pdb(\.gz)?$", x) for x in names)
                  if m and any(y.startswith(m.group(1) + "_l_b.pdb") for y in names)})
    bounds = sorted((quick_ca_count(struct_path(db5, i, "r"))
                     + quick_ca_count(struct_path(db5, i, "l")), i) for i in ids)
    exact = []
    for ub, i in bounds:
        if len(exact) >= n and ub > sorted(exact)[n - 1][0]:
            break
        nr = len(parse_ca(struct_path(db5, i, "r"))[0])
        nl = len(parse_ca(struct_path(db5, i, "l"))[0])
        exact.append((nr + nl, i))
    return [i for _, i in sorted(exact)[:n]]


def make_graph(dd, pdb, rec, lig, feats):
    """HeteroData laid out as DiffDock-PP's Loader.to_graph (+ ESM features as _save_esm_rep)."""
    import torch
    from torch_geometric.data import HeteroData
    from torch_cluster import knn_graph
    data = HeteroData()
    data["name"] = pdb
    for key, (seq, pos) in (("receptor", rec), ("ligand", lig)):
        data[key].pos = torch.from_numpy(pos).float()
        data[key].x = feats[key]
        edge_index = knn_graph(data[key].pos, MODEL_HPARAMS["knn_size"])
        data[key, "contact", key].edge_index = edge_index
    center = data["receptor"].pos.mean(dim=0, keepdim=True)
    for key in ("receptor", "ligand"):
        data[key].pos = data[key].pos - center
    data.center = center
    return data


def node_features(rng, seq, special=None):
    import numpy as np
    import torch
    emb = rng.uniform(-0.9, 0.9, size=(len(seq), MODEL_HPARAMS["lm_embed_dim"])).astype(np.float32)
    if special is not None:
        emb[special, 0] = SPECIAL_EMB0
    tok = np.asarray([ESM_TOK.get(s, ESM_UNK) for s in seq], dtype=np.float32)[:, None]
    return torch.from_numpy(np.concatenate([emb, tok], axis=1))


# ---------------------------------------------------------------------------------------------
# model


def is_tp_weight_generator(name):
    """The last Linear of each conv's fc (intra_convs.k / cross_convs.k / final_conv .fc.3),
    whose output is the per-edge tensor-product weight vector."""
    return name.endswith(".fc.3.weight")


def is_bn_param(name):
    return ".batch_norm." in name


def build_model(dd, args, seed, tp_gain, init=True):
    import torch
    model = dd.ScoreModel(args, {"num_residues": NUM_RESIDUES})
    if init:
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if is_bn_param(name):
                    continue  # none unless no_batch_norm is False; drawn below
                if p.dim() >= 2:
                    torch.nn.init.xavier_normal_(p, gain=tp_gain if is_tp_weight_generator(name) else 1.0)
                else:
                    p.normal_(0.0, BIAS_STD)
            # BN affine parameters after all others (same stream), in named_parameters() order
            for name, p in model.named_parameters():
                if not is_bn_param(name):
                    continue
                if name.endswith(".weight"):
                    p.normal_(0.0, BN_WEIGHT_STD).add_(1.0)
                elif name.endswith(".bias"):
                    p.normal_(0.0, BN_WEIGHT_STD)
                else:
                    raise AssertionError(f"unexpected BN parameter {name}")
    model.train()  # dropout 0; without BN train == eval
    return model


def bn_modules(model):
    """(state-dict module path, e3nn BatchNorm) of every conv batch norm, in module order."""
    return [(n, m) for n, m in model.named_modules() if n.endswith(".batch_norm") and m is not None]


def bn_stats(model):
    out = {}
    for n, m in bn_modules(model):
        out[f"bn.{n}.running_mean"] = m.running_mean.detach().clone().contiguous()
        out[f"bn.{n}.running_var"] = m.running_var.detach().clone().contiguous()
    return out


def eval_preds(model, state, batch):
    """Eval-mode forward with the given (original) weights and running stats."""
    import torch
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        out = model(batch)
    model.train()
    return {"eval.tr_pred": out["tr_pred"].detach().clone().contiguous(),
            "eval.rot_pred": out["rot_pred"].detach().clone().contiguous()}


class Recorder:
    """Forward hooks that only read tensors (no arithmetic change)."""

    def __init__(self, enc):
        self.enc = enc
        self.handles = []
        self.reset()
        self.handles.append(enc.atom_embed.register_forward_hook(self._hook("embed")))
        for k, m in enumerate(enc.intra_convs):
            self.handles.append(m.register_forward_hook(self._hook(("intra", k))))
        for k, m in enumerate(enc.cross_convs):
            self.handles.append(m.register_forward_hook(self._hook(("cross", k))))
        self.handles.append(enc.final_conv.register_forward_hook(self._hook("final")))

    def reset(self):
        self.calls = []

    def _hook(self, tag):
        def fn(module, inputs, output):
            self.calls.append((tag, tuple(x.detach().clone() if hasattr(x, "detach") else x
                                          for x in inputs), output.detach().clone()))
        return fn

    def remove(self):
        for h in self.handles:
            h.remove()

    def activations(self):
        """Reassemble h_l / h_r after each interaction layer exactly as the model's forward does
        (pad, then + intra update + cross update), and cross-check against the inputs the next
        layers received."""
        import torch
        import torch.nn.functional as F
        L = len(self.enc.intra_convs)
        calls = list(self.calls)
        emb = [c for c in calls if c[0] == "embed"]
        assert len(emb) == 2, "atom_embed must run for ligand then receptor"
        h_l, h_r = emb[0][2], emb[1][2]
        act = {"act.h_l.init": h_l, "act.h_r.init": h_r}
        cross_edge_index = None
        for k in range(L):
            mine = [c for c in calls if c[0] in (("intra", k), ("cross", k))]
            # order in forward: intra(lig), cross(->lig), [intra(rec), cross(->rec)]
            tags = [c[0][0] for c in mine]
            exp = ["intra", "cross"] + (["intra", "cross"] if k < L - 1 else [])
            assert tags == exp, (k, tags)
            assert torch.equal(mine[0][1][0], h_l) and torch.equal(mine[1][1][0], h_r)
            if k == 0:
                cross_edge_index = mine[1][1][1].clone()
            li, lc = mine[0][2], mine[1][2]
            new_l = F.pad(h_l, (0, li.shape[-1] - h_l.shape[-1]))
            new_l = new_l + li + lc
            if k < L - 1:
                assert torch.equal(mine[2][1][0], h_r) and torch.equal(mine[3][1][0], h_l)
                ri, rc = mine[2][2], mine[3][2]
                new_r = F.pad(h_r, (0, ri.shape[-1] - h_r.shape[-1]))
                h_r = new_r + ri + rc
                act[f"act.h_r.{k}"] = h_r
            h_l = new_l
            act[f"act.h_l.{k}"] = h_l
        fin = [c for c in calls if c[0] == "final"]
        assert len(fin) == 1
        assert torch.equal(fin[0][1][0], h_l), "reassembled final h_l differs from final_conv input"
        act["act.z"] = fin[0][2]
        act["act.center_edge_index"] = fin[0][1][1].clone()
        return act, cross_edge_index


class _IterableBatch:
    """DiffusionLoss.forward (CPU path, i.e. unless CUDA is available with num_gpu == 1) does
    `torch.cat([d.complex_t[k] for d in data])`, iterating over the collated batch.  In PyG 2.3
    HeteroData inherits FeatureStore, whose __iter__ raises NotImplementedError, so this view yields
    the per-complex examples (Batch.get_example) and forwards every attribute to the batch.  The
    concatenation equals batch.complex_t[k], which is what the single-GPU CUDA path reads."""

    def __init__(self, batch):
        self._batch = batch

    def __iter__(self):
        return (self._batch.get_example(i) for i in range(self._batch.num_graphs))

    def __getattr__(self, name):
        return getattr(self._batch, name)

    def __getitem__(self, key):
        return self._batch[key]


def run_case(dd, model, batch, rec):
    """One training step's forward + loss + backward, exactly as src/train.py (minus the
    optimizer step).  Returns a dict of outputs."""
    import torch
    model.zero_grad()
    rec.reset()
    out = model(batch)
    losses = model.compute_loss(_IterableBatch(batch), out)
    loss = losses["loss"]
    loss.backward()
    enc = model.encoder
    ct = batch.complex_t["tr"]
    _, rot_s, _ = enc.noise_schedule(ct, batch.complex_t["rot"], batch.complex_t["tor"])
    res = {
        "tr_pred": out["tr_pred"].detach().clone(),
        "rot_pred": out["rot_pred"].detach().clone(),
        "loss": loss.detach().clone().reshape(()),
        "loss_tr": losses["tr_loss"].detach().clone().reshape(()),
        "loss_rot": losses["rot_loss"].detach().clone().reshape(()),
        "rot_norm": dd.so3.score_norm(rot_s).clone(),
    }
    act, cross = rec.activations()
    res["cross_edge_index"] = cross
    res.update(act)
    for name, p in model.named_parameters():
        g = p.grad
        res["grad." + name] = (torch.zeros_like(p) if g is None else g).detach().clone()
    return res


# ---------------------------------------------------------------------------------------------
# batches


def noised_batch(dd, args, graphs, t, case_seed):
    """Apply the original NoiseTransform to fresh copies of the graphs (as the PyG Dataset does on
    every fetch), then collate (as the PyG DataLoader does).  Returns (batch, applied)."""
    import numpy as np
    import torch
    from torch_geometric.data import Batch
    np.random.seed(case_seed)
    torch.manual_seed(case_seed)
    transform = dd.geom_utils.NoiseTransform(args)
    applied = []
    orig_apply = transform.apply_updates

    def recording_apply_updates(data, tr_update, rot_update, tor_updates=None):
        applied.append((tr_update.detach().clone().reshape(1, 3),
                        rot_update.detach().clone().reshape(1, 3)))
        return orig_apply(data, tr_update, rot_update, tor_updates)

    transform.apply_updates = recording_apply_updates
    items, sig = [], []
    for g in graphs:
        d = copy.deepcopy(g)  # BindingDataset.get deep-copies the stored graph
        d = transform.apply_noise(d, t, t, t)
        items.append(d)
        tr_s, rot_s, _ = transform.noise_schedule(t, t, t)
        sig.append((tr_s, rot_s))
    assert len(applied) == len(graphs)
    batch = Batch.from_data_list(items)
    info = {
        "tr_update": torch.cat([a[0] for a in applied]).float(),
        "rot_update": torch.cat([a[1] for a in applied]).float(),
        "sigma_tr": torch.tensor([s[0] for s in sig], dtype=torch.float64),
        "sigma_rot": torch.tensor([s[1] for s in sig], dtype=torch.float64),
    }
    return batch, info


def case_inputs(batch, graphs, info):
    import torch
    ee = ("receptor", "contact", "receptor")
    ll = ("ligand", "contact", "ligand")
    d = {
        "rec_pos": batch["receptor"].pos,
        "lig_pos": batch["ligand"].pos,
        "lig_pos_orig": torch.cat([g["ligand"].pos for g in graphs]),
        "rec_x": batch["receptor"].x,
        "lig_x": batch["ligand"].x,
        "rec_edge_index": batch[ee].edge_index,
        "lig_edge_index": batch[ll].edge_index,
        "rec_batch": batch["receptor"].batch,
        "lig_batch": batch["ligand"].batch,
        "t": batch.complex_t["tr"],
        "tr_update": info["tr_update"],
        "rot_update": info["rot_update"],
        "sigma_tr": info["sigma_tr"],
        "sigma_rot": info["sigma_rot"],
        "tr_score": batch.tr_score,
        "rot_score": batch.rot_score,
        "center": batch.center,
    }
    return {k: v.detach().clone().contiguous() for k, v in d.items()}


def case_inputs_keys():
    return ("rec_pos", "lig_pos", "lig_pos_orig", "rec_x", "lig_x", "rec_edge_index", "lig_edge_index",
            "rec_batch", "lig_batch", "t", "tr_update", "rot_update", "sigma_tr", "sigma_rot", "tr_score",
            "rot_score", "center")


def batch_from_case(case):
    """Rebuild the collated batch from the stored tensors alone (used by the self-check): one
    HeteroData per complex with the fields the model and loss read, then Batch.from_data_list."""
    import torch
    from torch_geometric.data import Batch, HeteroData
    B = case["t"].shape[0]
    items = []
    for b in range(B):
        d = HeteroData()
        t = case["t"][b:b + 1].clone()
        for key, p in (("receptor", "rec"), ("ligand", "lig")):
            m = case[f"{p}_batch"] == b
            idx = torch.nonzero(m).view(-1)
            off = int(idx[0])
            d[key].pos = case[f"{p}_pos"][m].clone()
            d[key].x = case[f"{p}_x"][m].clone()
            ei = case[f"{p}_edge_index"]
            em = m[ei[1]]
            d[key, "contact", key].edge_index = ei[:, em] - off
            n = int(m.sum())
            d[key].node_t = {"tr": t.expand(n).clone(), "rot": t.expand(n).clone(),
                             "tor": t.expand(n).clone()}
        d.complex_t = {"tr": t.clone(), "rot": t.clone(), "tor": t.clone()}
        d.tr_score = case["tr_score"][b:b + 1].clone()
        d.rot_score = case["rot_score"][b:b + 1].clone()
        items.append(d)
    return Batch.from_data_list(items)


# ---------------------------------------------------------------------------------------------
# README


def describe(name, t):
    return f"| `{name}` | {list(t.shape)} | {str(t.dtype).replace('torch.', '')} |"


TENSOR_DOC = [
    ("rec_pos", "receptor CA positions, centred on the receptor CA mean (never noised)"),
    ("lig_pos", "ligand CA positions the model saw (NOISED: (p - mu) R(rot_update)^T + tr_update + mu, mu = ligand centroid before noise)"),
    ("lig_pos_orig", "ligand CA positions before noise (same frame as rec_pos)"),
    ("rec_x", "receptor node features [emb(16) | token]: column 0 is read as the embedding index trunc(x[0]), columns 1..16 go to lm_ebd"),
    ("lig_x", "ligand node features, same layout"),
    ("rec_edge_index", "receptor kNN edges (row 0 = src = neighbour, row 1 = dst = centre), offset by the collation (batch-global node ids)"),
    ("lig_edge_index", "ligand kNN edges, same convention"),
    ("rec_batch", "graph id of each receptor node"),
    ("lig_batch", "graph id of each ligand node"),
    ("t", "diffusion time per complex (complex_t['tr'] = ['rot'], float32); node_t = t[batch]"),
    ("sigma_tr", "data-side sigma_tr(t) in double (used for noising and the targets)"),
    ("sigma_rot", "data-side sigma_rot(t) in double"),
    ("tr_update", "applied translation (torch.normal(0, sigma_tr, (1,3)) per complex)"),
    ("rot_update", "applied rotation, axis-angle vector (so3.sample_vec(sigma_rot), cast to float32) per complex"),
    ("tr_score", "target -tr_update / sigma_tr^2"),
    ("rot_score", "target so3.score_vec(sigma_rot, rot_update)"),
    ("center", "receptor CA mean that was subtracted (original PDB frame)"),
    ("tr_pred", "model translation score output"),
    ("rot_pred", "model rotation score output"),
    ("loss", "0.5 loss_tr + 0.5 loss_rot"),
    ("loss_tr", "mean((tr_pred - tr_score)^2 sigma_tr^2), sigma_tr float32 from t"),
    ("loss_rot", "mean(((rot_pred - rot_score) / (rot_norm + 1e-5))^2)"),
    ("rot_norm", "IGSO(3) expected score norm N(sigma_rot(t)) (float32 sigma, nearest table index), as used by the model head and the loss"),
    ("cross_edge_index", "cross edges built by the model: row 0 = ligand node, row 1 = receptor node (batch-global), pairs with |p_r/Rc - p_l/Rc|^2 < 1, Rc = 3 sigma_tr(t) + 40; sorted by (ligand, receptor)"),
    ("act.h_l.init", "ligand node embeddings h0 = lm_ebd([atom_ebd[trunc(x0)] + sigma_ebd(temb), x[1:]]) [N_l, ns]"),
    ("act.h_r.init", "receptor node embeddings [N_r, ns]"),
    ("act.h_l.k", "ligand features after interaction layer k = 0..3 (S1, S2, S3, S3: dims 17, 26, 34, 34 for ns 8, nv 3; layout [ns x 0e | nv x 1o (u-major, xyz) | nv x 1e | ns x 0o])"),
    ("act.h_r.k", "receptor features after interaction layer k = 0..2 (the receptor is not updated in the last layer, so there is no act.h_r.3)"),
    ("act.center_edge_index", "centre edges (row 0 = graph id g(n), row 1 = ligand node n)"),
    ("act.z", "final conv output [B, 12] = [1o_0, 1o_1, 1e_0, 1e_1]; tr = z[0:3]+z[6:9], rot = z[3:6]+z[9:12] before the magnitude heads"),
    ("grad.P", "d loss / d P for every trainable parameter P (full state-dict name, e.g. grad.encoder.intra_convs.0.fc.3.weight); zeros where no gradient reached (atom_ebd rows other than those indexed)"),
]


def write_readme(path, cfg, example_case, state_dict, cmdline, bn_mods=None):
    lines = []
    lines.append("# DiffDock-PP score-model golden files" + (" (batch-norm variant)" if bn_mods else "") + "\n")
    lines.append("Generated by `tests/ref/diffdock_score_ref.py` from the ORIGINAL DiffDock-PP code "
                 "(imported from a checkout, not copied into this project). Do not edit by hand; "
                 "regenerate with the command below. The C test reads this folder by default; "
                 "`PPD_DIFFDOCK_GOLDEN=DIR` points it at another one.\n")
    lines.append("## How it was generated\n")
    lines.append("```\n" + cmdline + "\n```\n")
    v = cfg["versions"]
    lines.append(f"* DiffDock-PP commit: `{cfg['diffdock']['commit']}` (source sha256 of the files used in config.json)")
    lines.append(f"* python {v['python']}, torch {v['torch']}, e3nn {v['e3nn']}, numpy {v['numpy']}, scipy {v['scipy']}, "
                 f"torch_geometric {v['torch_geometric']}, biopython {v['biopython']}; torch_cluster / torch_scatter: "
                 "pure-torch stand-ins from tests/ref/diffdock_stubs/; geom_utils.torus stubbed (torsion off)")
    lines.append(f"* CPU, float32; seed {cfg['seed']}")
    lines.append("* Model: DiffDock-PP `ScoreModel` (TensorProductScoreModel), hyper-parameters in config.json "
                 "(`hparams`); weights: >=2-D parameters Xavier-normal (gain 1, except gain "
                 f"{cfg['init']['tp_gain']} for the tensor-product weight generators `*.fc.3.weight`, which otherwise make "
                 f"the 4 bilinear layers blow up to losses ~1e20), 1-D parameters N(0, {BIAS_STD}^2) "
                 "(`torch.manual_seed(seed)`, parameters in `named_parameters()` order); buffers as built")
    lines.append("* Complexes (DB5.5 bound, fewest CA residues): " + ", ".join(
        f"{c['label']} = {c['id']} (N_r {c['n_rec']}, N_l {c['n_lig']})" for c in cfg["complexes"]))
    lines.append(f"* Node features: emb ~ U(-0.9, 0.9) from numpy RandomState(seed) drawn for A.rec, A.lig, B.rec, B.lig in that "
                 f"order; ligand node {cfg['special_node']['ligand_node']} of complex A has emb[0] = {SPECIAL_EMB0} "
                 "(embedding row 2); last column = ESM token id")
    lines.append("* Noise: per case `np.random.seed(s)`, `torch.manual_seed(s)` with s = case_seed in config.json, then the "
                 "original `NoiseTransform.apply_noise(data, t, t, t)` per complex in batch order; batch = "
                 "`Batch.from_data_list` (PyG DataLoader collation)")
    lines.append("* Per case: `model.zero_grad()`, `out = model(batch)`, `losses = model.compute_loss(batch, out)`, "
                 "`losses['loss'].backward()` (all cases from the same weights). The loss gets the batch through a thin "
                 "iterable view: DiffusionLoss's CPU branch iterates the batch (`for d in data`), which PyG 2.3's "
                 "HeteroData refuses (FeatureStore.__iter__ raises); the view yields `Batch.get_example(i)`, so the concatenated complex_t equals "
                 "`batch.complex_t` (what the single-GPU CUDA branch reads). Nothing numeric changes")
    lines.append("* Self-check: model.pth reloaded into a freshly built model, every batch rebuilt from the stored case "
                 "tensors only, rerun: outputs and gradients bit-identical\n")
    lines.append("## Files\n")
    lines.append("* `model.pth`: `{\"model\": state_dict}` (as DiffDock-PP's save_model writes, without the optimizer); "
                 "keys `encoder.*` (the ScoreModel wraps TensorProductScoreModel as `.encoder`)")
    lines.append("* `config.json`: hyper-parameters, seed, complexes, cases (with cross-edge counts and the cutoff "
                 "margin: min |d^2/Rc^2 - 1| over all ligand-receptor pairs), versions")
    lines.append("* `case_<name>.pt`: flat dict of tensors, one per case, all tensors contiguous with their own "
                 "storage; written by torch.save and then re-packed with DEFLATE entries (same entry names; "
                 "torch.load reads it; model.pth is left STORED as torch writes it):\n")
    lines.append("| case | complexes | t |")
    lines.append("|---|---|---|")
    for c in cfg["cases"]:
        lines.append(f"| {c['name']} | {' + '.join(c['complexes'])} | {c['t']} |")
    lines.append("")
    lines.append("### Tensors of a case file (shapes of `" + example_case[0] + "`)\n")
    lines.append("| name | shape | dtype | meaning |")
    lines.append("|---|---|---|---|")
    case = example_case[1]
    for key, meaning in TENSOR_DOC:
        if key in case:
            lines.append(describe(key, case[key]) + f" {meaning} |")
        elif key == "act.h_l.k":
            for k in range(4):
                lines.append(describe(f"act.h_l.{k}", case[f"act.h_l.{k}"]) + f" {meaning} |")
        elif key == "act.h_r.k":
            for k in range(3):
                lines.append(describe(f"act.h_r.{k}", case[f"act.h_r.{k}"]) + f" {meaning} |")
        elif key == "grad.P":
            lines.append(f"| `grad.<param>` | shape of the parameter | float32 | {meaning} |")
    lines.append("")
    lines.append("### Parameters (model.pth `model.*`; the case files hold `grad.<name>` for each trainable one)\n")
    lines.append("| name | shape | dtype |")
    lines.append("|---|---|---|")
    for k, t in state_dict.items():
        lines.append(describe(k, t))
    lines.append("")
    lines.append("Buffers in the state dict: `*_dist_exp.offset` (Gaussian offsets), `*.tensor_prod.weight` (empty), "
                 "`*.tensor_prod.output_mask`, `*._compiled_main_left_right._w3j_*` (Wigner-3j); no trainable "
                 "parameter is a buffer." + (" With batch norm also `*.batch_norm.running_mean` / `.running_var` "
                                             "(initial values as built: 0 and 1)." if bn_mods else "") + "\n")
    if bn_mods:
        lines += bn_readme_lines(cfg, example_case, bn_mods)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def bn_readme_lines(cfg, example_case, bn_mods):
    L = []
    L.append("## Batch-norm variant\n")
    L.append("`no_batch_norm = False`: the original TPCL applies `e3nn.nn.BatchNorm(out_irreps)` (defaults: eps 1e-5, "
             "momentum 0.1, affine, reduce 'mean', normalization 'component', not instance) to the output of every "
             "interaction conv (intra_convs.k, cross_convs.k; after the scatter-mean, residual is off), not to the "
             "final conv. The same conv module (and so the same BN and running stats) is called for the ligand and "
             "then for the receptor side in layers 0..2 (ligand intra, ligand cross, receptor intra, receptor cross), "
             "only for the ligand in layer 3, so each forward updates the running stats of layers 0..2 twice "
             "(ligand call first) and of layer 3 once. Batch statistics are over the nodes of that call (all "
             "complexes of the batch together).\n")
    L.append("* Init: the other parameters have exactly the default folder's values (BN parameters skipped in the "
             "first pass); then, continuing the same torch stream, every `*.batch_norm.weight` = 1 + N(0, 0.1^2) and "
             "`*.batch_norm.bias` = N(0, 0.1^2), in `named_parameters()` order. model.pth holds the initial "
             "running stats (running_mean 0, running_var 1).")
    L.append("* Cases: " + ", ".join(f"`{c['name']}`" for c in cfg["cases"]) + " (same complexes, case seeds and "
             "noise as the default folder). Before each case the state dict (weights and running stats) is "
             "reloaded from model.pth; `model.train()` (batch statistics), forward + loss + backward; outputs and "
             "`grad.*` as in the default folder (with `grad.*.batch_norm.weight` / `.bias`).")
    L.append("* Self-check: as above, reloading model.pth before each case.\n")
    L.append("### BN layout per conv\n")
    L.append("Fields in irreps order; `weight` has one entry per irrep copy (num_irreps: every field, 0e, 1o, 1e, 0o), "
             "`bias` and `running_mean` one per 0e copy only (`is_scalar()` = l 0 and parity even; 0o fields are not "
             "centred and get no bias), `running_var` one per irrep copy.\n")
    L.append("| module | irreps | weight | bias | running_mean | running_var |")
    L.append("|---|---|---|---|---|---|")
    for n, m in bn_mods:
        L.append(f"| `{n}` | {m.irreps} | {list(m.weight.shape)} | {list(m.bias.shape)} | "
                 f"{list(m.running_mean.shape)} | {list(m.running_var.shape)} |")
    L.append("")
    L.append("Train mode, per field of mul copies of dimension d (x: [N, mul, d]): 0e only: mu = mean over nodes "
             "(per copy), x -= mu, running_mean = 0.9 running_mean + 0.1 mu; every field: v = mean over nodes of "
             "mean over the d components of x^2 (after the centring for 0e; biased, divide by N), running_var = "
             "0.9 running_var + 0.1 v; y = x (v + 1e-5)^-1/2 weight (+ bias for 0e). Eval mode: mu = running_mean, "
             "v = running_var.\n")
    L.append("### Extra tensors of a case file (shapes of `" + example_case[0] + "`)\n")
    L.append("| name | shape | dtype | meaning |")
    L.append("|---|---|---|---|")
    case = example_case[1]
    for k in case:
        if k.startswith("bn."):
            L.append(describe(k, case[k]) + " running stat of that BN after this case's train-mode forward "
                     "(starting from model.pth's) |")
    for k, what in (("eval.tr_pred", "tr_pred"), ("eval.rot_pred", "rot_pred")):
        L.append(describe(k, case[k]) + f" {what} of the same inputs with model.eval() (running stats of model.pth, "
                 "weights of model.pth) |")
    L.append("")
    return L


# ---------------------------------------------------------------------------------------------


def rezip_deflate(path):
    """Re-pack a torch.save archive with DEFLATE entries (same names, order and timestamps) to
    keep the folder small; torch.load and ppdock's tensorfile reader read both."""
    import zipfile
    tmp = path + ".tmp"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(tmp, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            ni = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            ni.compress_type = zipfile.ZIP_DEFLATED
            ni.external_attr = info.external_attr
            zout.writestr(ni, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    os.replace(tmp, path)


def cross_margin(case):
    """min over same-complex pairs of |d^2 / Rc^2 - 1| (float64): how far the closest pair is
    from the strict cutoff test, i.e. how safe the cross-edge set is against rounding."""
    t = case["t"].double()
    tr_s = MODEL_HPARAMS["tr_s_min"] ** (1 - t) * MODEL_HPARAMS["tr_s_max"] ** t
    rc = tr_s * MODEL_HPARAMS["cross_cutoff_weight"] + MODEL_HPARAMS["cross_cutoff_bias"]
    pr, pl = case["rec_pos"].double(), case["lig_pos"].double()
    br, bl = case["rec_batch"], case["lig_batch"]
    d2 = ((pl[:, None, :] - pr[None, :, :]) ** 2).sum(-1) / (rc[bl][:, None] ** 2)
    same = bl[:, None] == br[None, :]
    return float((d2[same] - 1).abs().min())


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    a = cli()
    os.makedirs(a.workdir, exist_ok=True)
    os.chdir(a.workdir)  # so3.py caches .so3_*.npy in the CWD
    dd = import_original(a.diffdock)
    import numpy as np
    import torch
    import e3nn
    import scipy
    import torch_geometric
    import Bio
    torch.set_num_threads(1)  # deterministic reduction order on CPU

    bn = a.batch_norm
    hp = dict(MODEL_HPARAMS, no_batch_norm=not bn)
    args = build_args(dd, a.args_yaml, hp)
    for k, v in hp.items():
        assert getattr(args, k) == v, k
    run_cases = [(ci, c) for ci, c in enumerate(CASES) if not bn or c[0] in BN_CASES]
    case_names = [c[0] for _, c in run_cases]

    # the IGSO(3) tables must be the ones of spec 5.2
    for eps, ref in ((0.01, 69.097102), (0.3, 2.242377), (1.0, 0.300838)):
        got = float(dd.so3.score_norm(torch.tensor([eps]))[0])
        assert abs(got - ref) <= 2e-6 * ref + 1e-6, (eps, got, ref)

    # ---- data
    ids = pick_complexes(a.db5)
    labels = ["A", "B"]
    rng = np.random.RandomState(a.seed)
    graphs, complexes = {}, []
    special_node = None
    for lab, pdb in zip(labels, ids):
        rec = parse_ca(struct_path(a.db5, pdb, "r"))
        lig = parse_ca(struct_path(a.db5, pdb, "l"))
        feats = {"receptor": node_features(rng, rec[0])}
        if lab == "A":
            special_node = len(lig[0]) // 2
        feats["ligand"] = node_features(rng, lig[0], special_node if lab == "A" else None)
        graphs[lab] = make_graph(dd, pdb, rec, lig, feats)
        complexes.append({"label": lab, "id": pdb, "n_rec": len(rec[0]), "n_lig": len(lig[0]),
                          "rec_seq": "".join(s if len(s) == 1 else "X" for s in rec[0]),
                          "lig_seq": "".join(s if len(s) == 1 else "X" for s in lig[0])})

    # ---- model
    model = build_model(dd, args, a.seed, a.tp_gain)
    state = model.state_dict()
    assert all(k.startswith("encoder.") for k in state), "unexpected state-dict prefix"
    state = type(state)((k, v.detach().clone().contiguous()) for k, v in state.items())
    rec = Recorder(model.encoder)
    if bn:
        assert len(bn_modules(model)) == 2 * MODEL_HPARAMS["num_conv_layers"], "expected one BN per interaction conv"
        for n, m in bn_modules(model):
            assert (m.eps, m.momentum, m.affine, m.reduce, m.normalization, m.instance) == \
                (1e-5, 0.1, True, "mean", "component", False), n
    else:
        assert not bn_modules(model)

    os.makedirs(a.out, exist_ok=True)
    for f in os.listdir(a.out):
        if f.startswith("case_") and f.endswith(".pt"):
            os.remove(os.path.join(a.out, f))
    torch.save({"model": state}, os.path.join(a.out, "model.pth"))

    # ---- cases
    results = {}
    cases_cfg = []
    for ci, (name, labs, t) in run_cases:
        case_seed = a.seed * 1000 + ci + 1
        gl = [graphs[l] for l in labs]
        batch, info = noised_batch(dd, args, gl, t, case_seed)
        inputs = case_inputs(batch, gl, info)
        if bn:  # same weights and running stats for every case; batch statistics
            model.load_state_dict(state)
            model.train()
        out = run_case(dd, model, batch, rec)
        case = dict(inputs)
        case.update({k: v.contiguous() for k, v in out.items()})
        if bn:
            case.update(bn_stats(model))  # running stats after this case's forward
            rec.reset()
            case.update(eval_preds(model, state, batch_from_case(inputs)))  # original running stats
        fn = os.path.join(a.out, f"case_{name}.pt")
        torch.save(case, fn)
        rezip_deflate(fn)
        results[name] = case
        margin = cross_margin(case)
        assert margin > 1e-4, f"{name}: a ligand-receptor pair lies within {margin} of the cutoff"
        cases_cfg.append({"name": name, "file": f"case_{name}.pt", "complexes": labs,
                          "ids": [ids[labels.index(l)] for l in labs], "t": t,
                          "case_seed": case_seed, "batch_size": len(labs),
                          "n_rec": int(case["rec_pos"].shape[0]), "n_lig": int(case["lig_pos"].shape[0]),
                          "cross_edges": int(case["cross_edge_index"].shape[1]),
                          "cross_pairs_total": int(sum(
                              int((case["rec_batch"] == b).sum()) * int((case["lig_batch"] == b).sum())
                              for b in range(len(labs)))),
                          "cutoff_margin": margin,
                          "loss": float(case["loss"])})
    rec.remove()

    # ---- config / README
    commit = "unknown"
    for cand in (os.path.join(a.diffdock, "COMMIT"), os.path.join(os.path.dirname(dd.src), "COMMIT")):
        if os.path.exists(cand):
            commit = open(cand).read().strip()
            break
    files_used = ["model/diffusion.py", "model/model.py", "model/losses.py", "model/utils.py",
                  "geom_utils/transform.py", "geom_utils/so3.py", "geom_utils/geometry.py", "args.py"]
    cfg = {
        "generator": "tests/ref/diffdock_score_ref.py",
        "seed": a.seed,
        "hparams": dict(hp, num_residues=NUM_RESIDUES, atom_table_rows=NUM_RESIDUES + 1,
                        knn_k=MODEL_HPARAMS["knn_size"], intra_dist_max=30.0, center_dist_max=30.0),
        "init": {"weights_ge2d": "xavier_normal, gain 1 except *.fc.3.weight (TP weight generators)",
                 "tp_gain": a.tp_gain, "bias_1d": f"normal(0, {BIAS_STD})",
                 "torch_manual_seed": a.seed, "order": "named_parameters"},
        "features": {"layout": "[emb(lm_embed_dim) | ESM token id]", "emb": "numpy RandomState(seed).uniform(-0.9, 0.9), "
                     "drawn A.rec, A.lig, B.rec, B.lig", "esm_tokens": ESM_TOK, "unk": ESM_UNK},
        "special_node": {"complex": "A", "ligand_node": special_node, "emb0": SPECIAL_EMB0,
                         "embedding_row": int(SPECIAL_EMB0)},
        "complexes": complexes,
        "cases": cases_cfg,
        "loss": {"tr_weight": 0.5, "rot_weight": 0.5, "tor_weight": 0.0, "rot_eps": 1e-5},
        "diffdock": {"commit": commit,
                     "sha256": {f: sha256(os.path.join(dd.src, f)) for f in files_used}},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "e3nn": e3nn.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
                     "torch_geometric": torch_geometric.__version__, "biopython": Bio.__version__},
        "args_yaml": os.path.basename(a.args_yaml) if a.args_yaml else None,
    }
    if bn:
        cfg["init"]["batch_norm"] = (f"after all other parameters, same stream, named_parameters order: "
                                     f"*.batch_norm.weight 1 + normal(0, {BN_WEIGHT_STD}), "
                                     f"*.batch_norm.bias normal(0, {BN_WEIGHT_STD}); running_mean 0, running_var 1 as built")
        cfg["batch_norm"] = {
            "module": "e3nn.nn.BatchNorm", "eps": 1e-5, "momentum": 0.1, "affine": True, "reduce": "mean",
            "normalization": "component", "instance": False, "mode": "train (batch statistics); eval.* tensors: eval mode",
            "per_case": "state dict (weights and running stats) reloaded from model.pth before each case",
            "modules": [{"path": n, "irreps": str(m.irreps),
                         "weight": list(m.weight.shape), "bias": list(m.bias.shape),
                         "running_mean": list(m.running_mean.shape), "running_var": list(m.running_var.shape)}
                        for n, m in bn_modules(model)],
        }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    cmdline = "/usr/bin/python3 tests/ref/diffdock_score_ref.py " + " ".join(
        f"--{k} {v}" for k, v in (("diffdock", a.diffdock), ("out", os.path.relpath(a.out, ROOT)),
                                  ("seed", a.seed))) + (" --batch-norm" if bn else "")
    write_readme(os.path.join(a.out, "README.md"), cfg, (case_names[-1], results[case_names[-1]]),
                 state, cmdline, bn_modules(model) if bn else None)

    # ---- self-check: fresh model from model.pth, batches from the case files only
    fresh = build_model(dd, args, a.seed + 12345, a.tp_gain, init=True)  # different weights, then load
    ck = torch.load(os.path.join(a.out, "model.pth"), map_location="cpu")
    fresh.load_state_dict(ck["model"])
    rec2 = Recorder(fresh.encoder)
    for name in case_names:
        saved = torch.load(os.path.join(a.out, f"case_{name}.pt"), map_location="cpu")
        batch = batch_from_case(saved)
        if bn:
            fresh.load_state_dict(ck["model"])
            fresh.train()
        again = run_case(dd, fresh, batch, rec2)
        if bn:
            again.update(bn_stats(fresh))
            rec2.reset()
            again.update(eval_preds(fresh, ck["model"], batch_from_case(saved)))
            assert set(again) | set(case_inputs_keys()) == set(saved), f"{name}: key sets differ"
        for k, v in again.items():
            assert torch.equal(v, saved[k]), f"{name}: {k} not reproduced"
        n_rec = saved["rec_pos"].shape[0]
        n_lig = saved["lig_pos"].shape[0]
        gmax = max(float(v.abs().max()) for k, v in saved.items() if k.startswith("grad."))
        cc = next(c for c in cases_cfg if c["name"] == name)
        cids = "+".join(cc["ids"])
        margin = cc["cutoff_margin"]
        print(f"{name:9s} ids={cids:10s} N_r={n_rec:4d} N_l={n_lig:4d} cross={saved['cross_edge_index'].shape[1]:5d}/{cc['cross_pairs_total']} "
              f"loss={float(saved['loss']):.6g} (tr {float(saved['loss_tr']):.6g}, rot {float(saved['loss_rot']):.6g}) "
              f"max|grad|={gmax:.6g} cutoff-margin={margin:.2g} reproduced")
    rec2.remove()

    total = sum(os.path.getsize(os.path.join(a.out, f)) for f in os.listdir(a.out))
    print(f"wrote {a.out}: {len(os.listdir(a.out))} files, {total} bytes")
    limit = BN_SIZE_LIMIT if bn else SIZE_LIMIT
    assert total < limit, f"output {total} bytes exceeds {limit}"


if __name__ == "__main__":
    main()
