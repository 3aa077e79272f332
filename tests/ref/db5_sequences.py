#!/usr/bin/env python3
"""FASTA of the bound-chain sequences of DB5.5: the ESM workload of `make bench` and the source of
tests/data/esm/sequences.fasta.

    python3 tests/ref/db5_sequences.py [--db55 DIR] OUT.fasta [--subset650 OUT16.fasta]

Needs Biopython (tested with 1.88; on this machine it is the pyenv `python3`, not /usr/bin/python3,
which has torch and fair-esm instead). Deterministic: the same files give the same bytes.

For every complex CODE that has both structures/CODE_r_b.pdb.gz and CODE_l_b.pdb.gz (246 in
DB5.5), in sorted CODE order, two records are written: `>CODE_r` (receptor) and `>CODE_l` (ligand).
A sequence is parsed as DiffDock-PP does (docs/spec/diffdock-pp.md §1.3 in the design repository,
and tests/ref/pdb_ref.py, which the C reader is checked against): Bio.PDB.PDBParser (permissive),
all models in order, chains, residues; residues with a non-blank hetero flag (res.id[0] != " ")
skipped; residues without an atom named "CA" skipped; the letter is
Bio.Data.IUPACData.protein_letters_3to1 with upper-cased keys (the 20 standard amino acids),
'X' for any other residue name. (DiffDock-PP itself feeds the literal token `<unk>` to ESM for
such residues; this FASTA writes 'X', which ESM tokenises as X = 24 — see tests/data/esm/README.md.)
Sequences are written on one line each.

--subset650 also writes the fixed 16-chain subset used for the 650M shape (33,1280,20) in
`make bench` (SUBSET650 below): long chains (150 to 988 residues, none truncated). Measured on
the 2-CPU development machine, the fair-esm peer (tests/ref/esm_peer_bench.py --shape 33,1280,20
--threads 2 --mode dataset, tuned malloc) runs it in 2 min 12 s with the OPENBLAS_CORETYPE that
bench/esm-embed.sh exports, ~5.5 min with OpenBLAS's default kernels; 16 chains cannot fill
5 minutes under the bench's kernels (tests/data/esm/README.md has the figures).
"""
import argparse
import gzip
import io
import os
import sys
import warnings

from Bio.Data.IUPACData import protein_letters_3to1
from Bio.PDB import PDBParser
from Bio.PDB.PDBExceptions import PDBConstructionWarning

LETTERS = {k.upper(): v for k, v in protein_letters_3to1.items()}
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DEFAULT_DB55 = os.path.join(ROOT, "..", "shared", "data", "db5.5")

# 16 bound chains for the 650M-shape peer run (names as in the FASTA). Total residues: see
# tests/data/esm/README.md. Lengths 150 to 988 (one chain per complex, none over 1022), 9,524 residues in all.
SUBSET650 = [
    "4G6M_l", "2FD6_l", "1KXP_r", "6EY6_l", "4FP8_r", "1KKL_r", "3L89_r", "2AJF_r",
    "1GXD_r", "2FJU_r", "1HE8_r", "4LW4_r", "1BGX_l", "1ZM4_r", "2HMI_r", "4JCV_r",
]


def sequence(path):
    """One-letter CA sequence of one PDB file (plain or gzip), DiffDock-PP style."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PDBConstructionWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        structure = PDBParser().get_structure(path, text)
    out = []
    for model in structure:
        for chain in model:
            for res in chain:
                if res.id[0] != " ":
                    continue
                if not any(a.get_name() == "CA" for a in res):
                    continue
                out.append(LETTERS.get(res.get_resname(), "X"))
    return "".join(out)


def bound_chains(db55):
    """[(name, sequence)] for every complex with both bound files, sorted by complex code."""
    sdir = os.path.join(db55, "structures")
    codes = sorted(f[: -len("_r_b.pdb.gz")] for f in os.listdir(sdir) if f.endswith("_r_b.pdb.gz"))
    chains = []
    for code in codes:
        lig = os.path.join(sdir, code + "_l_b.pdb.gz")
        if not os.path.exists(lig):
            continue
        chains.append((code + "_r", sequence(os.path.join(sdir, code + "_r_b.pdb.gz"))))
        chains.append((code + "_l", sequence(lig)))
    return chains


def write_fasta(path, records):
    with open(path, "w", encoding="ascii", newline="\n") as f:
        for name, seq in records:
            f.write(">%s\n%s\n" % (name, seq))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="FASTA of all bound chains")
    ap.add_argument("--db55", default=DEFAULT_DB55, help="DB5.5 directory (default ../shared/data/db5.5)")
    ap.add_argument("--subset650", help="also write the fixed 16-chain subset for the 650M shape")
    args = ap.parse_args()
    chains = bound_chains(args.db55)
    write_fasta(args.out, chains)
    n_res = sum(len(s) for _, s in chains)
    print("wrote %s: %d chains, %d residues" % (args.out, len(chains), n_res), file=sys.stderr)
    if args.subset650:
        by_name = dict(chains)
        missing = [n for n in SUBSET650 if n not in by_name]
        if missing:
            sys.exit("db5_sequences: subset chains missing from %s: %s" % (args.db55, missing))
        sub = [(n, by_name[n]) for n in SUBSET650]
        write_fasta(args.subset650, sub)
        print("wrote %s: %d chains, %d residues" % (
            args.subset650, len(sub), sum(len(s) for _, s in sub)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
