#!/usr/bin/python3
"""fair-esm PyTorch peer for `make bench` (esm-embed): ESM-2 per-residue embeddings on the CPU.

    /usr/bin/python3 tests/ref/esm_peer_bench.py --shape L,d,H --seed 0 --threads 2 \
        --fasta FILE --mode single|dataset [--toks-per-batch 4096] [--save DIR]

Builds fair-esm's own ESM2 (esm.model.esm2.ESM2, alphabet ESM-1b, token_dropout=True) with the
deterministic random weights of docs/esm-random-weights.md (the generator in
tests/ref/esm_ref.py, bit-identical to the C side's --random-init L,d,H), in fp32, eval, no_grad,
torch.set_num_threads(--threads). The weights are generated tensor by tensor into an
uninitialised model (torch's own init is skipped), so the 650M shape 33,1280,20 peaks at about
the fp32 weight size (2.6 GB) plus one tensor's temporaries.

  --mode single    the first FASTA record alone: one batch of one sequence (cls + seq + eos).
  --mode dataset   every record, batched as fair-esm's scripts/extract.py does: sorted by
                   length with FastaBatchedDataset.get_batch_indices(toks_per_batch,
                   extra_toks_per_seq=1), the BatchConverter with truncation_seq_length (1022),
                   repr_layers=[L] (the post-LayerNorm last layer), logits computed as extract.py
                   does (the model always computes them), representations cut to
                   rep[b, 1 : 1 + min(len, 1022)] and copied out.

Only the forward passes (model(toks, ...) plus the copy of the kept representations) are timed;
tokenising and weight generation are not. Prints one JSON line:

    {"residues": N, "seconds": S, "residues_per_s": N/S, "peak_rss_mb": M, ...extra keys}

peak_rss_mb is resource.getrusage(RUSAGE_SELF).ru_maxrss (the whole process, weight generation
included). --save DIR writes DIR/<label>.npy (float32 [n, d]) per sequence, for a parity
spot-check against esm-embed's output. --repeat N runs the workload N times (residues and
seconds summed; seconds_min is the fastest pass).

Characters outside ESM's 25 residue letters (fair-esm raises KeyError on them) are mapped to X
(24), as esm-embed's default policy does; the count is reported as "unknown_mapped".

glibc malloc: the issue compares two peers, set from the caller's environment (glibc reads
GLIBC_TUNABLES at process start, so this script cannot set it for itself):

    tuned:  GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736 \
                /usr/bin/python3 tests/ref/esm_peer_bench.py ...
    stock:  /usr/bin/python3 tests/ref/esm_peer_bench.py ...      (GLIBC_TUNABLES unset)

(tuned: large buffers come from the heap and are never returned to the kernel, so PyTorch's
per-op temporaries stop paying mmap/munmap and page faults each time.) The value in effect is
echoed as "glibc_tunables" in the JSON.
"""
import argparse
import contextlib
import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import esm_ref  # noqa: E402  (the generator)


@contextlib.contextmanager
def no_torch_init():
    """Skip torch's random init while modules are built (every tensor is overwritten after)."""
    import torch
    names = ["uniform_", "normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
             "xavier_normal_", "ones_", "zeros_", "constant_", "trunc_normal_"]
    saved = {n: getattr(torch.nn.init, n) for n in names if hasattr(torch.nn.init, n)}
    try:
        for n in saved:
            setattr(torch.nn.init, n, lambda t, *a, **k: t)
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


def build(L, d, H, seed):
    import torch
    from esm.model.esm2 import ESM2
    with no_torch_init():
        model = ESM2(num_layers=L, embed_dim=d, attention_heads=H, alphabet="ESM-1b", token_dropout=True)
    hd = d // H
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if name.startswith("contact_head."):
                t.data.zero_()
                continue
            if name == "lm_head.weight":
                assert t.data_ptr() == model.embed_tokens.weight.data_ptr()
                continue  # tied: filled through embed_tokens.weight
            v = esm_ref.generate(name, tuple(t.shape), d, hd, seed)
            t.data.copy_(torch.from_numpy(np.ascontiguousarray(v)))
            del v
    ref = esm_ref.inv_freq_values(hd)
    for layer in model.layers:
        assert np.array_equal(layer.self_attn.rot_emb.inv_freq.numpy(), ref)
    model.eval()
    return model


def main():
    ap = argparse.ArgumentParser(description="fair-esm peer for make bench (esm-embed)")
    ap.add_argument("--shape", required=True, help="L,d,H (e.g. 6,320,20 or 33,1280,20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fasta", required=True)
    ap.add_argument("--mode", choices=["single", "dataset"], default="dataset")
    ap.add_argument("--toks-per-batch", type=int, default=4096)
    ap.add_argument("--truncation-seq-length", type=int, default=1022)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--save", help="write DIR/<label>.npy per sequence (last layer, residues only)")
    args = ap.parse_args()

    import torch
    import esm
    from esm.data import FastaBatchedDataset
    torch.set_num_threads(args.threads)
    L, d, H = (int(x) for x in args.shape.split(","))
    assert d % H == 0 and (d // H) % 2 == 0, "bad shape"

    t0 = time.perf_counter()
    model = build(L, d, H, args.seed)
    build_s = time.perf_counter() - t0
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")

    dataset = FastaBatchedDataset.from_file(args.fasta)
    unknown = 0
    for i, s in enumerate(dataset.sequence_strs):
        s2, n = esm_ref.unknown_to_x(s)
        dataset.sequence_strs[i] = s2
        unknown += n
    if args.mode == "single":
        dataset = FastaBatchedDataset(dataset.sequence_labels[:1], dataset.sequence_strs[:1])
        batches = [[0]]
    else:
        batches = dataset.get_batch_indices(args.toks_per_batch, extra_toks_per_seq=1)
    converter = alphabet.get_batch_converter(args.truncation_seq_length)
    # tokenise up front (not timed; extract.py's DataLoader does it between forwards)
    work = [converter([dataset[i] for i in b]) for b in batches]
    if args.save:
        os.makedirs(args.save, exist_ok=True)

    residues = 0
    seconds = 0.0
    per_pass = []
    tokens_padded = 0
    with torch.no_grad():
        for rep in range(args.repeat):
            pass_s = 0.0
            for labels, strs, toks in work:
                t = time.perf_counter()
                out = model(toks, repr_layers=[L], return_contacts=False)
                reps = out["representations"][L]
                kept = []
                for i, label in enumerate(labels):
                    n = min(args.truncation_seq_length, len(strs[i]))
                    kept.append((label, reps[i, 1:n + 1].clone()))
                pass_s += time.perf_counter() - t
                del out, reps
                if rep == 0:
                    residues_pass = sum(k[1].shape[0] for k in kept)
                    residues += residues_pass
                    tokens_padded += toks.numel()
                    if args.save:
                        for label, r in kept:
                            np.save(os.path.join(args.save, label + ".npy"), r.numpy().astype(np.float32))
                else:
                    residues += sum(k[1].shape[0] for k in kept)
            per_pass.append(pass_s)
            seconds += pass_s
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({
        "residues": residues,
        "seconds": round(seconds, 6),
        "residues_per_s": round(residues / seconds, 3) if seconds > 0 else None,
        "peak_rss_mb": round(peak, 1),
        "mode": args.mode,
        "shape": [L, d, H],
        "seed": args.seed,
        "threads": args.threads,
        "sequences": len(dataset),
        "batches": len(batches),
        "tokens_padded": tokens_padded,
        "toks_per_batch": args.toks_per_batch if args.mode == "dataset" else None,
        "repeat": args.repeat,
        "seconds_min": round(min(per_pass), 6),
        "build_seconds": round(build_s, 3),
        "unknown_mapped": unknown,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "torch": torch.__version__,
        "fair_esm": getattr(esm, "__version__", "?"),
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
