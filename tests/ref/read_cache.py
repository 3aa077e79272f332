#!/usr/bin/env python3
"""An independent reader of ppdock caches, written only from docs/cache-format.md.

It verifies, for every record of a cache: the header, the record checksum (key + zeroed header
+ payload), the index entry, and the meta checksum; for graph records it checks the shapes and
prints a summary. It shares no code with ppdock, so agreement means the format document is
complete. Needs python3-lmdb, python3-xxhash and numpy (not needed by `make test`).

    python3 tests/ref/read_cache.py graphs
"""
import struct
import sys

import lmdb
import numpy as np
import xxhash

DTYPES = {1: "u1", 2: "<i4", 3: "<f4", 4: "<f2", 5: "<u8", 6: "<f8"}


def parse(key, v):
    magic, ver, typ, hlen, narr, plen, csum = struct.unpack_from("<IHHIIQQ", v, 0)
    assert magic == 0x52445050 and ver == 1, "bad magic/version"
    assert hlen == (32 + 48 * narr + 15) // 16 * 16 and hlen + plen == len(v), "bad lengths"
    zeroed = v[:24] + b"\0" * 8 + v[32:hlen]
    assert xxhash.xxh3_64_intdigest(key + zeroed + v[hlen:]) == csum, "checksum"
    arrays = {}
    for i in range(narr):
        name, dt, nd, _, s0, s1, s2, off, nb = struct.unpack_from("<16sBBHIIIQQ", v, 32 + 48 * i)
        dtype = np.dtype(DTYPES[dt])
        shape = (s0, s1, s2)[:nd]
        assert off % 16 == 0 and nb == int(np.prod(shape)) * dtype.itemsize and off + nb <= plen
        arrays[name.rstrip(b"\0").decode()] = np.frombuffer(v, dtype, offset=hlen + off, count=nb // dtype.itemsize).reshape(shape)
    return typ, csum, arrays


def main(path):
    env = lmdb.open(path, readonly=True, lock=False, max_dbs=4)
    meta, recs, index = (env.open_db(n) for n in (b"meta", b"records", b"index"))
    with env.begin() as txn:
        m = dict(txn.cursor(db=meta))
        assert m[b"schema"] == b"ppdock-cache/1"
        h = xxhash.xxh3_64()
        for k, val in sorted(m.items()):
            if k != b"checksum":
                h.update(struct.pack("<I", len(k)) + k + struct.pack("<I", len(val)) + val)
        if m.get(b"sealed") == b"1":
            assert h.hexdigest().encode() == m[b"checksum"], "meta checksum"
            assert int(m[b"count"]) == txn.stat(recs)["entries"], "count"
        n = 0
        for key, v in txn.cursor(db=recs):
            typ, csum, a = parse(key, v)
            ie = struct.unpack("<QQQQ", txn.get(key, db=index))
            assert ie[0] == csum and ie[1] == len(v), "index entry"
            if typ == 1:
                for s in ("rec", "lig"):
                    N = a[f"{s}.pos"].shape[0]
                    ei = a[f"{s}.edge_index"]
                    assert ei.shape[0] == 2 and (ei >= 0).all() and (ei < N).all() and (ei[0] != ei[1]).all()
                    assert a[f"{s}.seq"].shape == (N,) and a[f"{s}.tokens"].shape == (N,)
                assert abs(a["rec.pos"].astype(np.float64).mean(0)).max() < 1e-3
            n += 1
        print(f"{path}: {n} records verified, meta {m[b'record_type'].decode()} sealed={m[b'sealed'].decode()}")


if __name__ == "__main__":
    for p in sys.argv[1:] or ["graphs"]:
        main(p)
