#!/usr/bin/env python3
"""Load a ppdock training checkpoint (safetensors) into DiffDock-PP's OWN score model and
evaluate one case file: shows that PyTorch code reads our weights as they are.

    /usr/bin/python3 tests/ref/check_ppdock_checkpoint.py RUN/last.safetensors CASE.pt \
        [--hparams tests/data/diffdock-golden/config.json] [--diffdock /tmp/diffdock-pp]

Prints the parameters the model lacks in the file (must be none), the buffers it rebuilds
itself, unexpected tensors (must be none), and the loss of the case under the loaded weights;
`tests/helpers/score-step CKPT CASE 1 0 1` prints ppdock's loss for the same weights and inputs
(first step, before the update). Needs what tests/ref/diffdock_score_ref.py needs (torch,
e3nn 0.5.1, torch_geometric, a DiffDock-PP checkout), plus the `safetensors` package.
Measured (a checkpoint fine-tuned 3 steps from tests/data/diffdock-golden/model.pth, case
A_t0.30): no missing parameters, 36 rebuilt buffers, loss 0.6318339 here and 0.6318338 in ppdock.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("case")
    ap.add_argument("--hparams", default=os.path.join(HERE, "..", "data", "diffdock-golden", "config.json"))
    ap.add_argument("--diffdock", default=os.environ.get("DIFFDOCK_PP", "/tmp/diffdock-pp"))
    ap.add_argument("--workdir", default="/tmp/ddpp-work")
    a = ap.parse_args()
    ckpt, case_path, hp_path = (os.path.abspath(p) for p in (a.checkpoint, a.case, a.hparams))
    import diffdock_peer_bench as pb  # noqa: E402  (bench/)
    import diffdock_score_ref as ref  # noqa: E402
    import torch
    from safetensors.torch import load_file

    dd = pb.setup(a)
    state = {k: v for k, v in load_file(ckpt).items() if k.startswith("encoder.")}
    with open(hp_path) as f:
        hp = json.load(f)["hparams"]
    hp = {k: hp[k] for k in ref.MODEL_HPARAMS if k in hp}
    model = ref.build_model(dd, pb.make_args(dd, pb.default_args_yaml(None), hp), 0, ref.TP_GAIN, init=False)
    missing, unexpected = model.load_state_dict(state, strict=False)
    params = dict(model.named_parameters())
    lacking = [k for k in missing if k in params]
    print(f"parameters missing from the checkpoint: {lacking or 'none'}; buffers rebuilt: "
          f"{len(missing) - len(lacking)}; unexpected tensors: {unexpected or 'none'}")
    batch = ref.batch_from_case(torch.load(case_path, map_location="cpu"))
    model.train()
    losses = model.compute_loss(ref._IterableBatch(batch), model(batch))
    print(f"loss {float(losses['loss']):.7g}")
    return 1 if lacking or unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
