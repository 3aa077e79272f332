#!/usr/bin/env python3
"""Compare the C PDB reader with Biopython on a whole directory of PDB files.

    python3 tests/ref/compare_biopython.py [DIR] [--dump build/tests/pdb-dump] [--first-model]
                                           [-j JOBS] [--show N]

DIR defaults to ../shared/data/db5.5/structures (all of DB5.5); every *.pdb, *.ent and *.gz file
in it is read. The C side is tests/helpers/pdb-dump (built by `make tests`; pass --dump for
another build directory), the Biopython side is ca_view() of tests/ref/pdb_ref.py, which prints
the same lines. A file differs when the counts line or any residue line differs (chain, number,
insertion code, name, letter exactly; coordinates within 5e-4), or when exactly one side fails.
When both fail the file agrees (the messages differ by design); n=0 from Biopython agrees with
PPD_ERR_EMPTY from the C reader.

Prints the number of files compared and of files that differ, the first differences of the first
--show files (default 10), and exits 1 if any file differs.
"""
import argparse
import multiprocessing
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdb_ref import ca_view  # noqa: E402

TOL = 5e-4


def c_views(dump, paths, first_model):
    """Run pdb-dump once over all paths; return {path: [lines]}."""
    cmd = [dump] + (["--first-model"] if first_model else []) + paths
    out = subprocess.run(cmd, stdout=subprocess.PIPE, check=False).stdout.decode("utf-8", "replace")
    views, cur = {}, None
    if len(paths) == 1:
        views[paths[0]] = out.splitlines()
        return views
    for line in out.splitlines():
        if line.startswith("# file "):
            cur = line[len("# file "):]
            views[cur] = []
        elif cur is not None:
            views[cur].append(line)
    return views


def same_row(a, b):
    if a == b:
        return True
    fa, fb = a.rsplit(" ", 3), b.rsplit(" ", 3)
    if len(fa) != 4 or len(fb) != 4 or fa[0] != fb[0]:
        return False
    try:
        return all(abs(float(x) - float(y)) <= TOL for x, y in zip(fa[1:], fb[1:]))
    except ValueError:
        return False


def diff(py, c):
    """None if the two views agree, else a short description of the first difference."""
    py_err, c_err = py[0].startswith("error "), c[0].startswith("error ") if c else True
    py_empty = py[0].startswith("counts n=0 ")
    if py_err or c_err:
        if py_err and c_err:
            return None
        if py_empty and c and c[0].startswith("error PPD_ERR_EMPTY"):
            return None
        return "biopython: %s\n    ppdock:    %s" % (py[0], c[0] if c else "(no output)")
    if py[0] != c[0]:
        return "biopython: %s\n    ppdock:    %s" % (py[0], c[0])
    for i, (a, b) in enumerate(zip(py[1:], c[1:])):
        if not same_row(a, b):
            return "residue %d:\n    biopython: %s\n    ppdock:    %s" % (i, a, b)
    if len(py) != len(c):
        return "different number of lines (%d vs %d)" % (len(py), len(c))
    return None


def py_view(args):
    path, first_model = args
    return path, ca_view(path, first_model)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("dir", nargs="?", default=os.path.join(root, "..", "shared", "data", "db5.5",
                                                           "structures"))
    ap.add_argument("--dump", default=os.path.join(root, "build", "tests", "pdb-dump"))
    ap.add_argument("--first-model", action="store_true")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--show", type=int, default=10)
    a = ap.parse_args()

    names = sorted(n for n in os.listdir(a.dir) if n.endswith((".pdb", ".ent", ".gz")))
    paths = [os.path.join(a.dir, n) for n in names]
    if not paths:
        print("no PDB files in", a.dir)
        return 2
    c = {}
    for i in range(0, len(paths), 200):  # keep command lines short
        c.update(c_views(a.dump, paths[i:i + 200], a.first_model))
    with multiprocessing.Pool(a.jobs) as pool:
        py = dict(pool.imap_unordered(py_view, [(p, a.first_model) for p in paths], chunksize=4))

    bad = []
    residues = 0
    for p in paths:
        d = diff(py[p], c.get(p, []))
        if d:
            bad.append((p, d))
        elif py[p][0].startswith("counts "):
            residues += len(py[p]) - 1
    print("%d files compared (%d CA residues agree), %d differ" % (len(paths), residues, len(bad)))
    for p, d in bad[:a.show]:
        print("  %s: %s" % (os.path.basename(p), d))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
