#!/usr/bin/python3
"""PyTorch side of the ppdock / DiffDock-PP training-step benchmark: the ORIGINAL DiffDock-PP score
model (imported from a checkout through tests/ref/diffdock_score_ref.py, whose functions are reused
unchanged) at the RELEASED size, on real DB5.5 complexes.

Subcommands
-----------
make-cases --out DIR [--seed 0]
    Writes DIR/model.pth ({"model": state_dict}, keys encoder.*), DIR/config.json and
    DIR/case_<name>.pt for
      one_t0.2, one_t0.5, one_t0.9    complex P alone
      four_t0.2, four_t0.5, four_t0.9 P + its 3 nearest complexes (total CA count), one PyG batch
    P = the DB5.5 bound complex with N_r = 402, N_l = 106 CA residues (counted exactly as the
    reference script does: Biopython, blank hetero flag, atoms named CA; multi-MODEL files are
    skipped, as the reference does), or if none matches, the one minimising |N_r-402|+|N_l-106|.
    Model: the released hyper-parameters (ns 32, nv 6, 4 conv layers, lm_embed_dim 1280,
    dist / cross_dist / sigma embed 32, dynamic cross cutoff 3*sigma_tr+40, cross_max_dist 80,
    tr_s 0.01..30, rot_s 0.01..1.65, no batch norm, dropout 0, scale_by_sigma); weights random as
    the reference script draws them (Xavier-normal, gain 0.2 on the TP weight generators
    *.fc.3.weight, 1-D parameters N(0, 0.1^2), torch.manual_seed(seed)).
    Node features [emb(1280) | ESM token id], emb ~ U(-0.9, 0.9) float32 from
    numpy RandomState(seed), drawn P.rec, P.lig, then rec, lig of each partner in batch order
    (column 0 is the original's embedding index trunc(x0) = 0, inside (-1, 24)).
    Noise: the original NoiseTransform.apply_noise(data, t, t, t) per complex, seeded per case
    (np.random.seed / torch.manual_seed with seed*1000 + case number, cases numbered from 1 in
    the order above), then Batch.from_data_list -- exactly the reference script's noised_batch.
    A case file holds the reference script's case inputs (rec_pos, lig_pos, lig_pos_orig, rec_x,
    lig_x, rec_edge_index, lig_edge_index, rec_batch, lig_batch, t, tr_update, rot_update,
    sigma_tr, sigma_rot, tr_score, rot_score, center; see tests/data/diffdock-golden/README.md)
    plus rot_norm (IGSO(3) score norm as the model / loss use it) and cross_edge_index (the
    model's own cross-edge rule, the same radius call as TensorProductScoreModel.cross_conv_graph;
    row 0 ligand, row 1 receptor, batch-global).  No forward pass is run (so no outputs /
    gradients in the files: at this size the batch of 4 needs minutes and ~20 GB).

time --cases DIR --case NAME [--threads 2] [--steps N] [--warmup W]
    Builds the original model with the hyper-parameters of DIR/config.json (`hparams`; if there
    is none they are inferred from model.pth), loads DIR/model.pth, rebuilds the batch from the
    case tensors alone (the reference script's batch_from_case, as its self-check does),
    torch.set_num_threads(threads), then W warm-up and N timed training steps, each
      optimizer.zero_grad(); out = model(batch); losses = model.compute_loss(batch, out);
      losses["loss"].backward(); clip_grad_norm_(model.parameters(), 1.0); Adam(lr 1e-3).step()
    as src/train.py does (minus its logging).  Every step is timed with time.perf_counter
    around the whole step; the same steps are split by perf_counter stamps into forward (model
    forward + original loss, with autograd on, as in training), backward, and clip + Adam step,
    so the phase times are from the very steps that are timed whole (no extra calls).
    Prints ONE JSON line.  Works on any case folder of this format (e.g. the small-size golden
    folder tests/data/diffdock-golden).

Common options: --diffdock DIR (default $DIFFDOCK_PP, else /tmp/diffdock-pp; DIR or DIR/src holds
model/, geom_utils/), --workdir DIR (default /tmp/ddpp-work; the original so3.py caches its IGSO(3)
tables as .so3_*.npy in the CWD, the first time in ~3 minutes), --args-yaml FILE (default the
shared large_model_dips.args.yaml, as the reference script; every model hyper-parameter is
overridden anyway).  make-cases also takes --db5 DIR (default as the reference script).

Example
-------
    /usr/bin/python3 bench/diffdock_peer_bench.py make-cases --out /tmp/peer-cases --seed 0
    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736 \\
        /usr/bin/python3 bench/diffdock_peer_bench.py time --cases /tmp/peer-cases \\
        --case one_t0.5 --threads 2 --steps 3 --warmup 1
"""
import argparse
import importlib.util
import json
import os
import platform
import re
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REF_PATH = os.path.join(ROOT, "tests", "ref", "diffdock_score_ref.py")

TARGET_NR, TARGET_NL = 402, 106
N_PARTNERS = 3
TIMES = (0.2, 0.5, 0.9)


def load_ref():
    spec = importlib.util.spec_from_file_location("diffdock_score_ref", REF_PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["diffdock_score_ref"] = mod
    spec.loader.exec_module(mod)
    return mod


ref = load_ref()

# The released model (large_model_dips.args.yaml): the reference script's configuration with
# the three size parameters set to the released values.
RELEASED_HPARAMS = dict(ref.MODEL_HPARAMS, ns=32, nv=6, lm_embed_dim=1280)
for _k, _v in dict(num_conv_layers=4, dist_embed_dim=32, cross_dist_embed_dim=32, sigma_embed_dim=32,
                   dynamic_max_cross=True, cross_cutoff_weight=3, cross_cutoff_bias=40,
                   cross_max_dist=80, tr_s_min=0.01, tr_s_max=30.0, rot_s_min=0.01, rot_s_max=1.65,
                   no_batch_norm=True, dropout=0.0, scale_by_sigma=True).items():
    assert RELEASED_HPARAMS[_k] == _v, _k


# ---------------------------------------------------------------------------------------------
# setup shared by both subcommands


def default_db5():
    for cand in (os.path.join(os.path.dirname(ROOT), "shared", "data", "db5.5"),
                 "/work/shared/data/db5.5"):
        if os.path.isdir(os.path.join(cand, "structures")):
            return cand
    return None


def default_args_yaml(db5):
    base = db5 or default_db5()
    if base is None:
        return ""
    cand = os.path.join(os.path.dirname(base), "diffdock-pp", "large_model_dips.args.yaml")
    return cand if os.path.exists(cand) else ""


def setup(a):
    """chdir to the work folder (so3 caches), import the original code (with the stand-ins)."""
    diffdock = a.diffdock or os.environ.get("DIFFDOCK_PP") or "/tmp/diffdock-pp"
    diffdock = os.path.abspath(diffdock)
    workdir = os.path.abspath(a.workdir)
    if workdir == ROOT or workdir.startswith(ROOT + os.sep):
        raise SystemExit("--workdir must be outside the project (so3.py writes .npy caches there)")
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    return ref.import_original(diffdock)


def make_args(dd, args_yaml, hparams):
    args = ref.build_args(dd, args_yaml)  # defaults, released yaml, reference (small) sizes
    dd.args.override_args(args, dict(hparams))  # then the sizes wanted here
    for k, v in hparams.items():
        assert getattr(args, k) == v, k
    return args


def model_cross_edges(dd, enc, batch):
    """Cross edges by the model's own rule: the same radius call as
    TensorProductScoreModel.forward / cross_conv_graph (row 0 ligand, row 1 receptor)."""
    import torch
    ct = batch.complex_t
    tr_s, rot_s, _ = enc.noise_schedule(ct["tr"], ct["rot"], ct["tor"])
    rb, lb = batch["receptor"].batch, batch["ligand"].batch
    if enc.dynamic_max_cross:
        cutoff = (tr_s * enc.cross_cutoff_weight + enc.cross_cutoff_bias).unsqueeze(1)
        ei = dd.diffusion.radius(batch["receptor"].pos / cutoff[rb], batch["ligand"].pos / cutoff[lb],
                                 1, rb, lb, max_num_neighbors=10000)
    else:
        ei = dd.diffusion.radius(batch["receptor"].pos, batch["ligand"].pos, enc.cross_max_dist,
                                 rb, lb, max_num_neighbors=10000)
    return ei.contiguous(), rot_s, tr_s


# ---------------------------------------------------------------------------------------------
# make-cases


def node_features(rng, seq, dim):
    """[emb(dim) | ESM token id], emb ~ U(-0.9, 0.9) (the reference script's node_features without
    its special node, at lm_embed_dim = dim)."""
    import numpy as np
    import torch
    emb = rng.uniform(-0.9, 0.9, size=(len(seq), dim)).astype(np.float32)
    tok = np.asarray([ref.ESM_TOK.get(s, ref.ESM_UNK) for s in seq], dtype=np.float32)[:, None]
    return torch.from_numpy(np.concatenate([emb, tok], axis=1))


def scan_db5(db5):
    """Exact CA counts (the reference script's parse_ca) of every bound DB5.5 complex."""
    names = os.listdir(os.path.join(db5, "structures"))
    ids = sorted({m.group(1) for m in (re.match(r"^(\w{4})_r_b\.pdb(\.gz)?$", x) for x in names)
                  if m and any(y.startswith(m.group(1) + "_l_b.pdb") for y in names)})
    parsed, skipped = {}, []
    for i in ids:
        try:
            rec = ref.parse_ca(ref.struct_path(db5, i, "r"))
            lig = ref.parse_ca(ref.struct_path(db5, i, "l"))
        except AssertionError as e:  # multi-MODEL file: the original keeps only model 0
            skipped.append((i, str(e)))
            continue
        parsed[i] = (rec, lig)
    return parsed, skipped


def choose_complexes(parsed):
    counts = {i: (len(r[0]), len(l[0])) for i, (r, l) in parsed.items()}
    exact = sorted(i for i, c in counts.items() if c == (TARGET_NR, TARGET_NL))
    if exact:
        p, how = exact[0], "exact match"
        if len(exact) > 1:
            how += f" (first of {exact})"
    else:
        p = min(counts, key=lambda i: (abs(counts[i][0] - TARGET_NR) + abs(counts[i][1] - TARGET_NL), i))
        how = (f"no exact match; closest by |N_r-{TARGET_NR}|+|N_l-{TARGET_NL}| = "
               f"{abs(counts[p][0] - TARGET_NR) + abs(counts[p][1] - TARGET_NL)}")
    tot = sum(counts[p])
    partners = sorted((i for i in counts if i != p), key=lambda i: (abs(sum(counts[i]) - tot), i))
    return p, how, partners[:N_PARTNERS], counts


def cmd_make_cases(a):
    out = os.path.abspath(a.out)
    db5 = os.path.abspath(a.db5) if a.db5 else default_db5()
    if db5 is None or not os.path.isdir(os.path.join(db5, "structures")):
        raise SystemExit("DB5.5 folder with structures/ not found; pass --db5")
    args_yaml = default_args_yaml(db5) if a.args_yaml is None else a.args_yaml
    dd = setup(a)
    import numpy as np
    import torch
    import e3nn
    import torch_geometric
    torch.set_num_threads(1)

    t0 = time.time()
    parsed, skipped = scan_db5(db5)
    p, how, partners, counts = choose_complexes(parsed)
    print(f"scanned {len(parsed)} DB5.5 bound complexes in {time.time() - t0:.1f} s"
          + (f" (skipped {len(skipped)} multi-MODEL: {', '.join(i for i, _ in skipped)})" if skipped else ""))
    print(f"P = {p} (N_r {counts[p][0]}, N_l {counts[p][1]}, total {sum(counts[p])}): {how}")
    for i in partners:
        print(f"partner {i} (N_r {counts[i][0]}, N_l {counts[i][1]}, total {sum(counts[i])}, "
              f"|dtotal| {abs(sum(counts[i]) - sum(counts[p]))})")

    hp = RELEASED_HPARAMS
    args = make_args(dd, args_yaml, hp)

    order = [p] + partners
    rng = np.random.RandomState(a.seed)
    graphs, complexes = {}, []
    for role, pdb in zip(["P"] + [f"partner{k + 1}" for k in range(len(partners))], order):
        rec, lig = parsed[pdb]
        feats = {"receptor": node_features(rng, rec[0], hp["lm_embed_dim"]),
                 "ligand": node_features(rng, lig[0], hp["lm_embed_dim"])}
        graphs[pdb] = ref.make_graph(dd, pdb, rec, lig, feats)
        complexes.append({"role": role, "id": pdb, "n_rec": len(rec[0]), "n_lig": len(lig[0])})

    model = ref.build_model(dd, args, a.seed, ref.TP_GAIN)
    state = model.state_dict()
    assert all(k.startswith("encoder.") for k in state), "unexpected state-dict prefix"
    state = type(state)((k, v.detach().clone().contiguous()) for k, v in state.items())
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.startswith("case_") and f.endswith(".pt"):
            os.remove(os.path.join(out, f))
    torch.save({"model": state}, os.path.join(out, "model.pth"))
    n_params = sum(p_.numel() for p_ in model.parameters())

    cases = [(f"one_t{t}", [p], t) for t in TIMES] + [(f"four_t{t}", order, t) for t in TIMES]
    cases_cfg = []
    for ci, (name, members, t) in enumerate(cases):
        case_seed = a.seed * 1000 + ci + 1
        gl = [graphs[i] for i in members]
        batch, info = ref.noised_batch(dd, args, gl, t, case_seed)
        case = ref.case_inputs(batch, gl, info)
        cross, rot_s, _ = model_cross_edges(dd, model.encoder, batch)
        case["rot_norm"] = dd.so3.score_norm(rot_s).clone().contiguous()
        case["cross_edge_index"] = cross
        torch.save(case, os.path.join(out, f"case_{name}.pt"))
        margin = ref.cross_margin(case)
        n_rec, n_lig = int(case["rec_pos"].shape[0]), int(case["lig_pos"].shape[0])
        pairs = sum(int((case["rec_batch"] == b).sum()) * int((case["lig_batch"] == b).sum())
                    for b in range(len(members)))
        cases_cfg.append({"name": name, "file": f"case_{name}.pt", "ids": members, "t": t,
                          "case_seed": case_seed, "batch_size": len(members), "n_rec": n_rec,
                          "n_lig": n_lig, "cross_edges": int(cross.shape[1]),
                          "cross_pairs_total": pairs, "cutoff_margin": margin})
        print(f"{name:10s} ids={'+'.join(members):20s} N_r={n_rec:5d} N_l={n_lig:4d} "
              f"cross={int(cross.shape[1]):6d}/{pairs} cutoff-margin={margin:.2g}")

    cfg = {
        "generator": "bench/diffdock_peer_bench.py make-cases",
        "seed": a.seed,
        "hparams": dict(hp),
        "num_residues": ref.NUM_RESIDUES,
        "trainable_parameters": n_params,
        "init": {"weights_ge2d": "xavier_normal, gain 1 except *.fc.3.weight (TP weight generators)",
                 "tp_gain": ref.TP_GAIN, "bias_1d": f"normal(0, {ref.BIAS_STD})",
                 "torch_manual_seed": a.seed, "order": "named_parameters"},
        "features": {"layout": "[emb(lm_embed_dim) | ESM token id]",
                     "emb": "numpy RandomState(seed).uniform(-0.9, 0.9) float32, drawn rec, lig per "
                            "complex in the order of `complexes`", "esm_tokens": ref.ESM_TOK,
                     "unk": ref.ESM_UNK},
        "selection": {"target": [TARGET_NR, TARGET_NL], "how": how,
                      "partners": f"{N_PARTNERS} nearest by |total CA - total CA of P| (ties by id)",
                      "skipped_multi_model": [i for i, _ in skipped],
                      "scanned": len(parsed)},
        "complexes": complexes,
        "cases": cases_cfg,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "e3nn": e3nn.__version__, "numpy": np.__version__,
                     "torch_geometric": torch_geometric.__version__},
        "args_yaml": os.path.basename(args_yaml) if args_yaml else None,
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    print(f"wrote {out}: model.pth ({n_params} trainable parameters), config.json, "
          f"{len(cases)} case files")


# ---------------------------------------------------------------------------------------------
# time


def infer_hparams(state):
    """Model sizes from a state dict (when the case folder has no config.json); everything else
    as the reference configuration."""
    ns = state["encoder.atom_embed.atom_ebd.weight"].shape[1]
    sig = state["encoder.atom_embed.sigma_ebd.weight"].shape[1]
    lm_in = state["encoder.atom_embed.lm_ebd.weight"].shape[1]
    nv = (state["encoder.intra_convs.0.tensor_prod.output_mask"].shape[0] - ns) // 3
    layers = len({k.split(".")[2] for k in state if k.startswith("encoder.intra_convs.")})
    return dict(ref.MODEL_HPARAMS, ns=ns, nv=nv, lm_embed_dim=lm_in - ns, sigma_embed_dim=sig,
                num_conv_layers=layers,
                dist_embed_dim=state["encoder.rec_dist_exp.offset"].shape[0],
                cross_dist_embed_dim=state["encoder.cross_dist_exp.offset"].shape[0])


def case_path(cases, name):
    for cand in (name, os.path.join(cases, name), os.path.join(cases, f"case_{name}.pt"),
                 os.path.join(cases, f"{name}.pt")):
        if os.path.isfile(cand):
            return os.path.abspath(cand)
    raise SystemExit(f"case {name!r} not found in {cases}")


def cmd_time(a):
    cases = os.path.abspath(a.cases)
    cpath = case_path(cases, a.case)
    args_yaml = default_args_yaml(None) if a.args_yaml is None else a.args_yaml
    dd = setup(a)
    import torch
    torch.set_num_threads(a.threads)

    ck = torch.load(os.path.join(cases, "model.pth"), map_location="cpu")
    state = ck["model"] if "model" in ck else ck
    hp = None
    cfg_path = os.path.join(cases, "config.json")
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            hp_cfg = json.load(f).get("hparams")
        if hp_cfg:
            hp = {k: hp_cfg[k] for k in ref.MODEL_HPARAMS if k in hp_cfg}
    if hp is None:
        hp = infer_hparams(state)
    args = make_args(dd, args_yaml, hp)
    model = ref.build_model(dd, args, 0, ref.TP_GAIN, init=False)
    model.load_state_dict(state, strict=True)
    model.train()

    case = torch.load(cpath, map_location="cpu")
    batch = ref.batch_from_case(case)
    cross, _, _ = model_cross_edges(dd, model.encoder, batch)
    n_cross = int(cross.shape[1])
    if "cross_edge_index" in case:
        assert torch.equal(cross, case["cross_edge_index"]), "cross edges differ from the case file"

    seen = []
    hook = model.encoder.cross_convs[0].register_forward_hook(
        lambda m, inp, out: seen.append(int(inp[1].shape[1])))

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    total, fwd, bwd, upd = [], [], [], []
    first_loss = None
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        out = model(batch)
        losses = model.compute_loss(ref._IterableBatch(batch), out)
        loss = losses["loss"]
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t3 = time.perf_counter()
        if first_loss is None:
            first_loss = float(loss)
            hook.remove()
            assert seen and seen[0] == n_cross, (seen, n_cross)
        del out, losses, loss
        if i >= a.warmup:
            total.append(t3 - t0)
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
            upd.append(t3 - t2)

    def med(x):
        return statistics.median(x) if x else None

    res = {
        "case": os.path.basename(cpath)[len("case_"):-len(".pt")] if os.path.basename(cpath).startswith("case_") else a.case,
        "threads": a.threads,
        "steps": a.steps,
        "warmup": a.warmup,
        "seconds_per_step_median": med(total),
        "seconds_per_step_min": min(total) if total else None,
        "forward_seconds_median": med(fwd),
        "backward_seconds_median": med(bwd),
        "clip_adam_seconds_median": med(upd),
        "seconds_per_step": total,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "cross_edges": n_cross,
        "n_rec": int(case["rec_pos"].shape[0]),
        "n_lig": int(case["lig_pos"].shape[0]),
        "batch_size": int(case["t"].shape[0]),
        "ns": hp["ns"], "nv": hp["nv"], "lm_embed_dim": hp["lm_embed_dim"],
        "loss": first_loss,
        "torch": torch.__version__,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
    }
    print(json.dumps(res), flush=True)


# ---------------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(q):
        q.add_argument("--diffdock", default=None,
                       help="DiffDock-PP checkout (default $DIFFDOCK_PP, else /tmp/diffdock-pp)")
        q.add_argument("--workdir", default="/tmp/ddpp-work")
        q.add_argument("--args-yaml", default=None)

    m = sub.add_parser("make-cases", help="write model.pth, config.json and case files")
    common(m)
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--db5", default=None)

    t = sub.add_parser("time", help="time training steps of the original model on one case")
    common(t)
    t.add_argument("--cases", required=True)
    t.add_argument("--case", required=True)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--steps", type=int, default=3)
    t.add_argument("--warmup", type=int, default=1)

    a = p.parse_args()
    if a.cmd == "make-cases":
        cmd_make_cases(a)
    else:
        if a.steps < 0 or a.warmup < 0 or a.threads < 1:
            p.error("--steps/--warmup >= 0, --threads >= 1")
        cmd_time(a)


if __name__ == "__main__":
    main()
