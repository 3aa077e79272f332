#!/usr/bin/env python3
"""Biopython goldens for the PDB reader (lib/io/pdb.c), read by tests/unit/test_pdb.c.

Regenerate (from the repository root; needs Biopython, tested with 1.88):

    python3 tests/ref/pdb_ref.py

It runs Bio.PDB.PDBParser, the way DiffDock-PP does (src/data/data_train_utils.py: a default,
permissive PDBParser; models -> chains -> residues; residues with res.id[0] != " " skipped;
atoms whose get_name() == "CA"), on every file under tests/data/pdb/ (the synthetic edge cases)
and on tests/data/db5-mini/structures/*.pdb.gz, and writes for each FILE

    tests/data/ref/FILE.ca.txt          all models (ppd_pdb_options.first_model_only = 0)
    tests/data/ref/FILE.model0.ca.txt   first model only; written only for multi-model files

Each golden is one comment line, then either

    counts n=N models=M no_ca=K hetero=H altloc_dropped=A nonstandard=X
    MODEL 'CHAIN' RESSEQ 'ICODE' 'RES' LETTER X Y Z      (one line per CA residue, %.3f)

or, when Biopython fails on the file,

    error ExceptionClass: message

The counts are what ppd_protein reports: models = len(structure); no_ca = residues with a blank
hetero flag and no atom named "CA"; hetero = residues with a non-blank hetero flag; altloc_dropped
= for each kept CA that is a DisorderedAtom, its number of altlocs minus one; nonstandard = kept
residues whose name is not one of the 20 (Bio.Data.IUPACData.protein_letters_3to1, upper-cased
keys; the letter is then 'X'). Counts cover the models written (all, or model 0).

The bytes are decoded as Python's open() does (UTF-8, universal newlines); .gz files are
decompressed first (a truncated stream is an error). tests/ref/compare_biopython.py imports
ca_view() from here to check the C reader on a whole directory (e.g. all of DB5.5).
"""
import gzip
import io
import os
import sys
import warnings

from Bio.Data.IUPACData import protein_letters_3to1
from Bio.PDB import PDBParser
from Bio.PDB.Atom import DisorderedAtom
from Bio.PDB.PDBExceptions import PDBConstructionWarning

LETTERS = {k.upper(): v for k, v in protein_letters_3to1.items()}
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def read_text(path):
    """The file as get_structure() sees it: gunzipped, decoded, universal newlines."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")


def ca_view(path, first_model_only=False):
    """Golden lines (without the comment) for one PDB file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PDBConstructionWarning)
            warnings.simplefilter("ignore", RuntimeWarning)  # numpy: float32 overflow
            structure = PDBParser().get_structure(path, read_text(path))
            models = list(structure)
            n_models = len(models)
            if first_model_only:
                models = models[:1]
            rows, no_ca, hetero, dropped, nonstd = [], 0, 0, 0, 0
            for mi, model in enumerate(models):
                for chain in model:
                    for res in chain:
                        if res.id[0] != " ":
                            hetero += 1
                            continue
                        cas = [a for a in res if a.get_name() == "CA"]
                        if not cas:
                            no_ca += 1
                            continue
                        for atom in cas:  # at most one: atom ids are unique in a residue
                            name = res.get_resname()
                            letter = LETTERS.get(name, "X")
                            nonstd += letter == "X"
                            if isinstance(atom, DisorderedAtom):
                                dropped += len(atom.child_dict) - 1
                            x, y, z = (float(v) for v in atom.get_coord())
                            rows.append("%d '%s' %d '%s' '%-3s' %s %.3f %.3f %.3f" % (
                                mi, chain.id, res.id[1], res.id[2], name, letter, x, y, z))
    except Exception as e:  # Biopython (or gzip / the UTF-8 decoder) gave up on the file
        msg = str(e).replace("\n", " ")
        return ["error %s: %s" % (type(e).__name__, msg)]
    head = "counts n=%d models=%d no_ca=%d hetero=%d altloc_dropped=%d nonstandard=%d" % (
        len(rows), n_models, no_ca, hetero, dropped, nonstd)
    return [head] + rows


def write_golden(path, rel, out_dir):
    import Bio
    n_models = None
    for first in (False, True):
        lines = ca_view(path, first)
        if first:
            if n_models is None or n_models < 2:
                break
        elif lines[0].startswith("counts "):
            n_models = int(lines[0].split()[2].split("=")[1])
        suffix = ".model0.ca.txt" if first else ".ca.txt"
        what = "first model only" if first else "all models"
        out = os.path.join(out_dir, os.path.basename(rel) + suffix)
        with open(out, "w", encoding="utf-8", newline="\n") as f:
            f.write("# %s by tests/ref/pdb_ref.py (Biopython %s PDBParser, %s)\n" % (
                rel, Bio.__version__, what))
            f.write("\n".join(lines) + "\n")
        print("wrote", os.path.relpath(out, ROOT), lines[0])


def main():
    out_dir = os.path.join(ROOT, "tests", "data", "ref")
    os.makedirs(out_dir, exist_ok=True)
    inputs = []
    pdb_dir = os.path.join(ROOT, "tests", "data", "pdb")
    for name in sorted(os.listdir(pdb_dir)):
        inputs.append(os.path.join("tests", "data", "pdb", name))
    mini = os.path.join(ROOT, "tests", "data", "db5-mini", "structures")
    for name in sorted(os.listdir(mini)):
        if name.endswith(".pdb.gz"):
            inputs.append(os.path.join("tests", "data", "db5-mini", "structures", name))
    for rel in inputs:
        write_golden(os.path.join(ROOT, rel), rel, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
