#!/usr/bin/env python3
"""Independent reference for graph-build: DiffDock-PP's residue graph of each complex in
tests/data/db5-mini, computed with Biopython and NumPy (no ppdock code).

What it reproduces (docs/spec/diffdock-pp.md §1.2): Biopython PDBParser over all models and
chains, residues with a blank hetero flag, atoms named exactly CA; one-letter codes from
Bio.Data.IUPACData.protein_letters_3to1 with upper-cased keys ('X' otherwise); kNN with k = 20
on the original float32 coordinates, self excluded, edges (src = neighbour, dst = centre),
centre-major, neighbours by increasing distance (float64 squared distance of the float32
coordinates, ties by smaller index — torch_cluster leaves ties unspecified); centre = mean
receptor CA (float64, rounded to float32); positions minus centre in float32.

Output, one file per complex (tests/data/ref/graph/<ID>.txt):
    center x y z
    side rec|lig N E
    seq LETTERS
    N lines "x y z" (centred, %.4f)
    N lines: the k source indices of destination i, in edge order
Regenerate: python3 tests/ref/graph_ref.py   (needs biopython, numpy)
"""
import gzip
import os
import sys

import numpy as np
from Bio.Data.IUPACData import protein_letters_3to1
from Bio.PDB import PDBParser

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "db5-mini")
OUT = os.path.join(ROOT, "tests", "data", "ref", "graph")
K = 20
LETTER = {k.upper(): v for k, v in protein_letters_3to1.items()}


def ca_residues(path):
    with gzip.open(path, "rt") as f:
        structure = PDBParser(QUIET=True).get_structure("x", f)
    seq, pos = [], []
    for model in structure:
        for chain in model:
            for res in chain:
                if res.id[0] != " ":
                    continue
                for atom in res:
                    if atom.get_name() == "CA":
                        seq.append(LETTER.get(res.get_resname(), "X"))
                        pos.append(atom.get_coord())
    return "".join(seq), np.array(pos, dtype=np.float32)


def knn(pos):
    p = pos.astype(np.float64)
    d2 = ((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    n = len(p)
    k = min(K, n - 1)
    rows = []
    for i in range(n):
        order = sorted((d2[i, j], j) for j in range(n) if j != i)
        rows.append([j for _, j in order[:k]])
    return rows


def main():
    os.makedirs(OUT, exist_ok=True)
    ids = [l.split(",")[0] for l in open(os.path.join(DATA, "splits.csv")).read().splitlines()[1:] if l.strip()]
    for cid in ids:
        rseq, rpos = ca_residues(os.path.join(DATA, "structures", f"{cid}_r_b.pdb.gz"))
        lseq, lpos = ca_residues(os.path.join(DATA, "structures", f"{cid}_l_b.pdb.gz"))
        center = rpos.astype(np.float64).mean(0).astype(np.float32)
        with open(os.path.join(OUT, f"{cid}.txt"), "w") as f:
            f.write("center %.6f %.6f %.6f\n" % tuple(center))
            for name, seq, pos in (("rec", rseq, rpos), ("lig", lseq, lpos)):
                rows = knn(pos)
                f.write(f"side {name} {len(seq)} {sum(len(r) for r in rows)}\n")
                f.write(f"seq {seq}\n")
                for x in (pos - center).astype(np.float32):
                    f.write("%.4f %.4f %.4f\n" % tuple(x))
                for r in rows:
                    f.write(" ".join(map(str, r)) + "\n")
        print(cid, len(rseq), len(lseq), file=sys.stderr)


if __name__ == "__main__":
    main()
