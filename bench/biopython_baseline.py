#!/usr/bin/env python3
"""The DiffDock-PP way of making residue graphs, for timing beside graph-build (make bench).

Parses every receptor and ligand with Biopython's PDBParser exactly as DiffDock-PP's loader does
(all atoms of all non-hetero residues kept, then the CA subset), builds the k=20 kNN graph per
protein (scipy's cKDTree standing in for torch_cluster, which is not installed here), centres on
the receptor, and pickles everything into one file, as DiffDock-PP's cache does.

    python3 bench/biopython_baseline.py DATA_PATH CSV OUT.pkl
"""
import gzip
import os
import pickle
import sys
import time

import numpy as np
from Bio.PDB import PDBParser
from scipy.spatial import cKDTree


def parse(parser, path):
    with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as f:
        s = parser.get_structure(path, f)
    res, atoms, pos = [], [], []
    for model in s:
        for chain in model:
            for r in chain:
                if r.id[0] != " ":
                    continue
                for a in r:
                    res.append(r.get_resname())
                    atoms.append((a.get_name(), a.element))
                    pos.append(a.get_coord())
    return res, atoms, np.array(pos, dtype=np.float32)


def graph(res, atoms, pos, k=20):
    keep = [i for i, a in enumerate(atoms) if a[0] == "CA"]
    p = pos[keep]
    kk = min(k + 1, len(p))
    _, nb = cKDTree(p).query(p, k=kk)
    nb = nb.reshape(len(p), kk)
    src = [j for i in range(len(p)) for j in nb[i] if j != i]
    dst = [i for i in range(len(p)) for j in nb[i] if j != i]
    return [res[i] for i in keep], p, np.array([src, dst])


def main(data_path, csv, out):
    parser = PDBParser(QUIET=True)
    ids = [l.split(",")[0] for l in open(csv).read().splitlines()[1:] if l.strip()]
    t0 = time.time()
    raw = {}
    for cid in ids:
        raw[cid] = [parse(parser, os.path.join(data_path, "structures", f"{cid}_{r}_b.pdb.gz")) for r in "rl"]
    t1 = time.time()
    data = {}
    for cid, (r, l) in raw.items():
        rs, rp, re = graph(*r)
        ls, lp, le = graph(*l)
        c = rp.mean(0, keepdims=True)
        data[cid] = {"receptor": (rs, rp - c, re), "ligand": (ls, lp - c, le), "center": c}
    with open(out, "wb") as f:
        pickle.dump([raw, data], f)
    t2 = time.time()
    print(f"biopython baseline: {len(ids)} complexes, parse {t1 - t0:.1f} s, graphs+pickle {t2 - t1:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:4])
