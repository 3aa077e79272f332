"""Pure-torch stand-in for the few torch_cluster functions DiffDock-PP calls.

Used only by tests/ref/diffdock_score_ref.py (the compiled torch_cluster wheels do not exist for
the Debian torch build).  Brute force, CPU, deterministic:

* knn / knn_graph: distances are float64 squared distances of the given coordinates; neighbours
  of each query in increasing distance, ties broken by the lower index (torch_cluster's KD-tree
  leaves ties unspecified).  Output order: query-major, then by distance, as torch_cluster.
* radius / radius_graph: pairs with float32 squared distance strictly below r*r (torch_cluster's
  nanoflann / CUDA kernels use a strict '<' on squared distances); same-batch pairs only; output
  sorted by (query index, point index).  max_num_neighbors is honoured (first by index).

Index conventions are torch_cluster's: knn/radius return [2, E] with row 0 = index into y (the
queries) and row 1 = index into x; *_graph with flow='source_to_target' return
(source = neighbour, target = centre).
"""
import torch

__version__ = "stub"


def _batch(b, n, device):
    if b is None:
        return torch.zeros(n, dtype=torch.long, device=device)
    return b.long()


def knn(x, y, k, batch_x=None, batch_y=None, cosine=False, num_workers=1):
    if cosine:
        raise NotImplementedError("cosine knn not needed by DiffDock-PP")
    x = x.view(-1, 1) if x.dim() == 1 else x
    y = y.view(-1, 1) if y.dim() == 1 else y
    bx = _batch(batch_x, x.size(0), x.device)
    by = _batch(batch_y, y.size(0), y.device)
    xd = x.detach().double()
    yd = y.detach().double()
    rows, cols = [], []
    for i in range(y.size(0)):
        cand = torch.nonzero(bx == by[i], as_tuple=False).view(-1)
        if cand.numel() == 0:
            continue
        d2 = ((xd[cand] - yd[i]) ** 2).sum(-1)
        # stable sort on distance keeps the lower index first among ties (cand is increasing)
        order = torch.sort(d2, stable=True).indices[:k]
        sel = cand[order]
        rows.append(torch.full((sel.numel(),), i, dtype=torch.long))
        cols.append(sel)
    if not rows:
        return torch.empty(2, 0, dtype=torch.long, device=x.device)
    return torch.stack([torch.cat(rows), torch.cat(cols)], 0).to(x.device)


def knn_graph(x, k, batch=None, loop=False, flow="source_to_target", cosine=False, num_workers=1):
    assert flow in ("source_to_target", "target_to_source")
    row, col = knn(x, x, k if loop else k + 1, batch, batch, cosine, num_workers)
    row, col = (col, row) if flow == "source_to_target" else (row, col)
    if not loop:
        mask = row != col
        row, col = row[mask], col[mask]
    return torch.stack([row, col], dim=0)


def radius(x, y, r, batch_x=None, batch_y=None, max_num_neighbors=32, num_workers=1):
    x = x.view(-1, 1) if x.dim() == 1 else x
    y = y.view(-1, 1) if y.dim() == 1 else y
    bx = _batch(batch_x, x.size(0), x.device)
    by = _batch(batch_y, y.size(0), y.device)
    xf = x.detach().float()
    yf = y.detach().float()
    r2 = torch.tensor(float(r) * float(r), dtype=torch.float32)
    d2 = ((yf[:, None, :] - xf[None, :, :]) ** 2).sum(-1)  # [Ny, Nx] float32
    ok = (d2 < r2) & (by[:, None] == bx[None, :])
    rows, cols = [], []
    for i in range(y.size(0)):
        sel = torch.nonzero(ok[i], as_tuple=False).view(-1)[:max_num_neighbors]
        rows.append(torch.full((sel.numel(),), i, dtype=torch.long))
        cols.append(sel)
    if not rows:
        return torch.empty(2, 0, dtype=torch.long, device=x.device)
    return torch.stack([torch.cat(rows), torch.cat(cols)], 0).to(x.device)


def radius_graph(x, r, batch=None, loop=False, max_num_neighbors=32, flow="source_to_target",
                 num_workers=1):
    assert flow in ("source_to_target", "target_to_source")
    row, col = radius(x, x, r, batch, batch, max_num_neighbors if loop else max_num_neighbors + 1,
                      num_workers)
    row, col = (col, row) if flow == "source_to_target" else (row, col)
    if not loop:
        mask = row != col
        row, col = row[mask], col[mask]
    return torch.stack([row, col], dim=0)
