#!/usr/bin/env python3
"""Reference kNN graphs on real protein CA chains, for tests/unit/test_knn.c.

Regenerate (from the repository root; needs numpy and Biopython, optionally scipy):

    python3 tests/ref/knn_ref.py --large ../shared/data/db5.5/structures/1EXB_r_b.pdb.gz

Writes, for each chain NAME:
    tests/data/knn/NAME.ca.txt   one CA per line, "x y z" with %.3f (the PDB's own decimals;
                                 the C test parses them with strtof, i.e. to the same float32)
    tests/data/knn/NAME.k20.txt  line i = the 20 nearest other CAs of centre i, nearest first

The truth is computed here independently of the C code: numpy brute force in float64 on the
float32-rounded coordinates, squared distance dx*dx + dy*dy + dz*dz (summed in that order, as
ppd_knn_graph does), self excluded, ties broken by the smaller index (a stable sort on distance).
If scipy is installed, a cKDTree query is used as a second opinion on the neighbour sets.

CA selection follows docs/spec/diffdock-pp.md §1.1-1.2: Biopython PDBParser, all models and
chains in file order, residues with a blank hetero flag, atoms named exactly "CA" (Biopython
keeps one altloc per atom). The large PDB itself is not committed, only its CA text.
"""
import argparse
import gzip
import os
import sys

import numpy as np
from Bio.PDB import PDBParser

K = 20
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "data", "knn")
SMALL = [os.path.join(ROOT, "tests", "data", "db5-mini", "structures", f)
         for f in ("1R0R_r_b.pdb.gz", "1HIA_r_b.pdb.gz")]


def read_ca(path):
    with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as f:
        s = PDBParser(QUIET=True).get_structure("x", f)
    xyz = []
    for model in s:
        for chain in model:
            for res in chain:
                if res.id[0] != " ":
                    continue
                for atom in res:
                    if atom.get_name() == "CA":
                        xyz.append(atom.coord)
    # Round-trip through the %.3f text so that the truth is computed on exactly the float32
    # values the C test will parse.
    text = ["%.3f %.3f %.3f" % tuple(float(v) for v in p) for p in xyz]
    pos = np.array([[np.float32(t) for t in line.split()] for line in text], dtype=np.float32)
    return text, pos


def knn(pos, k):
    p = pos.astype(np.float64)
    n = len(p)
    kk = min(k, n - 1)
    out = np.empty((n, kk), dtype=np.int64)
    for i in range(n):
        d = p - p[i]
        d2 = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]
        d2[i] = np.inf
        order = np.argsort(d2, kind="stable")  # stable: equal distances keep index order
        out[i] = order[:kk]
    return out


def check_with_scipy(pos, nbr):
    try:
        from scipy.spatial import cKDTree
    except ImportError:
        return "scipy not installed, skipped"
    p = pos.astype(np.float64)
    kk = nbr.shape[1]
    d, j = cKDTree(p).query(p, k=kk + 1)
    for i in range(len(p)):
        # Compare as sets of distances (the KD-tree's tie order is its own).
        mine = np.sort(np.linalg.norm(p[nbr[i]] - p[i], axis=1))
        theirs = np.sort(d[i][j[i] != i][:kk])
        assert np.allclose(mine, theirs, rtol=0, atol=1e-9), i
    return "cKDTree agrees"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--large", help="1EXB_r_b.pdb.gz from the full DB5.5 set")
    args = ap.parse_args()
    paths = SMALL + ([args.large] if args.large else [])
    os.makedirs(OUT, exist_ok=True)
    for path in paths:
        name = os.path.basename(path).split(".")[0]
        text, pos = read_ca(path)
        nbr = knn(pos, K)
        with open(os.path.join(OUT, name + ".ca.txt"), "w") as f:
            f.write("\n".join(text) + "\n")
        with open(os.path.join(OUT, name + ".k20.txt"), "w") as f:
            for row in nbr:
                f.write(" ".join(str(int(j)) for j in row) + "\n")
        print("%s: %d CA, %s" % (name, len(pos), check_with_scipy(pos, nbr)), file=sys.stderr)


if __name__ == "__main__":
    main()
