#!/usr/bin/python3
"""Independent truth for the tensor-file readers (tests/unit/test_tensorfile.c, test_npy.c).

Everything here is produced by the real writers (torch.save of torch 1.13, the `safetensors`
package, numpy.save) and read back by the real readers (torch.load, numpy); no ppdock code is
involved. Needs /usr/bin/python3 with torch, safetensors and numpy.

    /usr/bin/python3 tests/ref/tensorfile_ref.py

Writes under tests/data/:

  tensorfile/small.pt            torch.save of SMALL() below: every dtype the reader knows, a
                                 transposed view, a slice with a storage offset, tensors sharing
                                 a storage, nested dicts/lists/tuples, an nn.Parameter, an
                                 OrderedDict, an argparse.Namespace, plain Python scalars
  tensorfile/small_deflate.pt    the same archive re-zipped with DEFLATE (torch writes STORED)
  tensorfile/legacy.pt           torch.save(..., _use_new_zipfile_serialization=False)
  tensorfile/small.safetensors   safetensors.torch.save_file of contiguous copies of the tensors
  tensorfile/small_expected.txt  the flattened tensors: "T name dtype shape v0 v1 ..." with the
                                 values in logical row-major order (floats as Python repr of the
                                 float32/float16/bfloat16 value, ints exact, bools 0/1)
                                 and the other leaves: "V name kind value" (strings as the
                                 hex of their UTF-8 bytes, "-" when empty)
  tensorfile/np_*.npy            numpy.save of small float32 / float16 / int64 arrays
  tensorfile/np_expected.txt     "name dtype shape v0 v1 ..." for those arrays
  diffdock-pp/confidence_model_dips.pth.gz
                                 the released DiffDock-PP confidence checkpoint, gzip -9
  diffdock-pp/confidence_listing.txt
                                 "name [shape]" per state-dict tensor, parsed from the table in
                                 docs/spec/diffdock-pp.md §9.2 (checked here against torch.load)
  diffdock-pp/confidence_expected.txt
                                 per tensor of the whole checkpoint "T name [shape] first last
                                 sum sumabs" (sums in float64 in torch), and "V name kind value"
                                 for the other leaves (optimizer step count, lr, betas, ...)

Reruns give the same files except legacy.pt (the legacy format stores a random magic/key) and
small.safetensors (the package writes __metadata__ keys in hash order); their contents, and so
the expected values, do not change.

Naming rules mirrored from include/ppdock/tensorfile.h: dict keys (str; int as decimal) and
list/tuple indices joined with '.'; an object that is not a dict/list/tensor/scalar is an opaque
leaf named by its class ("argparse.Namespace") and its attributes follow under its name; ints
outside int64 are opaque "int"; BUILD attributes of a dict (the state dict's _metadata) are not
listed.
"""
import argparse
import collections
import gzip
import io
import os
import re
import sys
import zipfile

import numpy as np
import safetensors.torch
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TF = os.path.join(ROOT, "tests", "data", "tensorfile")
DD = os.path.join(ROOT, "tests", "data", "diffdock-pp")
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
CKPT = os.path.join(SHARED, "data", "diffdock-pp", "confidence_model_dips",
                    "model_best_0_6_0.241_0.887.pth")
SPEC = os.path.join(SHARED, "docs", "spec", "diffdock-pp.md")

DTYPE = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16",
         torch.float64: "f64", torch.int64: "i64", torch.int32: "i32", torch.int16: "i16",
         torch.int8: "i8", torch.uint8: "u8", torch.bool: "bool"}


def small():
    g = torch.Generator().manual_seed(1234)
    base = torch.randn(6, 5, generator=g)
    flat = torch.randn(12, generator=g)
    f16 = torch.tensor([0.0, -0.0, 1.0, -2.5, 65504.0, 6e-8, 1e-5, float("inf"),
                        float("-inf"), float("nan"), 0.333], dtype=torch.float16)
    bf16 = torch.tensor([1.0, -3.140625, 1e-40, 3e38, float("inf"), float("nan"), 0.1],
                        dtype=torch.bfloat16)
    d = collections.OrderedDict()
    d["f32"] = torch.randn(3, 4, generator=g)
    d["f16"] = f16
    d["bf16"] = bf16
    d["f64"] = torch.tensor([[1.0 / 3.0, -1e300], [5e-324, 2.0]], dtype=torch.float64)
    d["i64"] = torch.tensor([0, -1, 2**40 + 3, -(2**62), 2**63 - 1])
    d["i32"] = torch.tensor([-(2**31), 2**31 - 1, 5], dtype=torch.int32)
    d["i16"] = torch.tensor([[-32768, 32767]], dtype=torch.int16)
    d["i8"] = torch.tensor([-128, 127, 0], dtype=torch.int8)
    d["u8"] = torch.tensor([0, 255, 17], dtype=torch.uint8)
    d["bool"] = torch.tensor([True, False, True])
    d["scalar0d"] = torch.tensor(3.5)
    d["empty"] = torch.zeros(0, 3)
    d["base"] = base
    d["view_t"] = base.t()                # non-contiguous, shares base's storage
    d["slice"] = base[2:, 1:4]            # storage offset 11, strides (5, 1)
    d["flat"] = flat
    d["tail"] = flat[7:]                  # contiguous with storage offset 7
    d["every_other"] = flat[1::2]         # stride 2
    d["param"] = torch.nn.Parameter(torch.arange(4, dtype=torch.float32).reshape(2, 2))
    d["nested"] = {"list": [torch.ones(2), {"deep": torch.arange(5, dtype=torch.int64)}],
                   "tuple": (1, 2.5, "x", None)}
    d["odict"] = collections.OrderedDict(a=torch.full((1,), 7.0))
    d["args"] = argparse.Namespace(lr=0.01, layers=3, name="esm2_t6", flag=True, none=None)
    d[3] = torch.zeros(1)
    d["int"] = 42
    d["neg"] = -(2**40)
    d["float"] = -0.125
    d["bool_false"] = False
    d["none"] = None
    d["str"] = "h\u00e9llo \u2603"
    d["big"] = 2**70
    return d


def keystr(k):
    if isinstance(k, bool):
        return "True" if k else "False"
    if isinstance(k, int):
        return str(k)
    if k is None:
        return "None"
    return k


def join(prefix, k):
    return prefix + "." + k if prefix else k


def flatten(obj, prefix, tensors, values):
    if isinstance(obj, torch.Tensor):
        tensors.append((prefix, obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, join(prefix, keystr(k)), tensors, values)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, join(prefix, str(i)), tensors, values)
    elif obj is None:
        values.append((prefix, "none", "-"))
    elif isinstance(obj, bool):
        values.append((prefix, "bool", "1" if obj else "0"))
    elif isinstance(obj, int):
        if -(2**63) <= obj < 2**63:
            values.append((prefix, "int", str(obj)))
        else:
            values.append((prefix, "opaque", "int"))
    elif isinstance(obj, float):
        values.append((prefix, "float", repr(obj)))
    elif isinstance(obj, str):
        values.append((prefix, "str", obj.encode("utf-8").hex() or "-"))
    else:
        cls = type(obj)
        values.append((prefix, "opaque", cls.__module__ + "." + cls.__qualname__))
        for k, v in vars(obj).items():
            flatten(v, join(prefix, k), tensors, values)


def fmt_value(x, dtype):
    if dtype == torch.bool:
        return "1" if x else "0"
    if dtype.is_floating_point:
        return repr(float(x))
    return str(int(x))


def shape_str(t):
    return "[" + ",".join(str(s) for s in t.shape) + "]"


def tensor_line(name, t):
    vals = t.detach().reshape(-1).tolist()
    return "T %s %s %s %s" % (name, DTYPE[t.dtype], shape_str(t),
                              " ".join(fmt_value(v, t.dtype) for v in vals))


def value_line(name, kind, v):
    return "V %s %s %s" % (name, kind, v)


def write_small():
    os.makedirs(TF, exist_ok=True)
    d = small()
    pt = os.path.join(TF, "small.pt")
    torch.save(d, pt)
    back = torch.load(pt)
    tensors, values = [], []
    flatten(back, "", tensors, values)
    # Check the storage sharing the C test relies on really is in the file.
    assert back["view_t"].storage().data_ptr() == back["base"].storage().data_ptr()
    assert back["slice"].storage_offset() == 11 and back["tail"].storage_offset() == 7
    with open(os.path.join(TF, "small_expected.txt"), "w") as f:
        for name, t in tensors:
            f.write(tensor_line(name, t) + "\n")
        for name, kind, v in values:
            f.write(value_line(name, kind, v) + "\n")

    # The same archive with every entry DEFLATE-compressed (entry order kept).
    src = zipfile.ZipFile(pt)
    with zipfile.ZipFile(os.path.join(TF, "small_deflate.pt"), "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            zi = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, src.read(info.filename))

    legacy = collections.OrderedDict(w=torch.ones(2))
    torch.save(legacy, os.path.join(TF, "legacy.pt"), _use_new_zipfile_serialization=False)

    st = collections.OrderedDict((name, t.detach().contiguous().clone()) for name, t in tensors)
    path = os.path.join(TF, "small.safetensors")
    safetensors.torch.save_file(st, path, metadata={"format": "pt",
                                                    "note": "tab\there \"q\" \x01 \u00e9"})
    os.chmod(path, 0o644)  # the package writes 0600
    loaded = safetensors.torch.load_file(path)
    for name, t in st.items():
        assert torch.equal(loaded[name].view(-1).to(torch.float64).nan_to_num(7.0),
                           t.view(-1).to(torch.float64).nan_to_num(7.0)), name


def write_npy():
    rng = np.random.default_rng(7)
    arrays = {
        "np_f32_2x3x4": rng.standard_normal((2, 3, 4)).astype(np.float32),
        "np_f16_5": np.array([1.0, -0.5, 65504.0, 6e-8, np.inf], dtype=np.float16),
        "np_i64_3x2": np.array([[0, -1], [2**40, -(2**63)], [2**63 - 1, 9]], dtype=np.int64),
    }
    with open(os.path.join(TF, "np_expected.txt"), "w") as f:
        for name, a in arrays.items():
            np.save(os.path.join(TF, name + ".npy"), a)
            vals = a.reshape(-1).tolist()
            sv = [repr(float(v)) if a.dtype.kind == "f" else str(int(v)) for v in vals]
            f.write("%s %s [%s] %s\n" % (name, a.dtype.str, ",".join(map(str, a.shape)),
                                         " ".join(sv)))


def spec_listing():
    """(name, shape) rows of the table in spec §9.2, in table order."""
    text = open(SPEC, encoding="utf-8").read()
    sec = text[text.index("### 9.2"):text.index("## 10.")]
    rows = re.findall(r"^\| `([^`]+)` \| \[([0-9, ]*)\] \| \w+Storage \|$", sec, re.M)
    return [(n, [int(x) for x in s.split(",")] if s.strip() else []) for n, s in rows]


def write_confidence():
    os.makedirs(DD, exist_ok=True)
    raw = open(CKPT, "rb").read()
    with open(os.path.join(DD, "confidence_model_dips.pth.gz"), "wb") as f:
        f.write(gzip.compress(raw, compresslevel=9, mtime=0))
    ck = torch.load(io.BytesIO(raw), map_location="cpu")
    listing = spec_listing()
    sd = ck["model"]
    assert [(k, list(v.shape)) for k, v in sd.items()] == listing, "spec §9.2 vs the file"
    with open(os.path.join(DD, "confidence_listing.txt"), "w") as f:
        for n, s in listing:
            f.write("%s [%s]\n" % (n, ",".join(map(str, s))))
    tensors, values = [], []
    flatten(ck, "", tensors, values)
    with open(os.path.join(DD, "confidence_expected.txt"), "w") as f:
        for name, t in tensors:
            assert t.dtype == torch.float32
            v = t.detach().reshape(-1).to(torch.float64)
            if v.numel():
                first, last = repr(v[0].item()), repr(v[-1].item())
            else:
                first = last = "-"
            f.write("T %s %s %s %s %r %r\n" % (name, shape_str(t), first, last,
                                               v.sum().item(), v.abs().sum().item()))
        for name, kind, val in values:
            f.write(value_line(name, kind, val) + "\n")
    print("step", ck["optimizer"]["state"][0]["step"], "lr",
          ck["optimizer"]["param_groups"][0]["lr"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-checkpoint", action="store_true",
                    help="do not regenerate the diffdock-pp files (needs ../shared)")
    a = ap.parse_args()
    write_small()
    write_npy()
    if not a.skip_checkpoint:
        if not os.path.exists(CKPT):
            sys.exit("missing %s (use --skip-checkpoint)" % CKPT)
        write_confidence()


if __name__ == "__main__":
    main()
