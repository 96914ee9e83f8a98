"""Starting weights for efficient-x2 from the efficient-x4 run.

efficient-x2 is the x4 network with one block fewer (SPAN 48 features x 3 blocks x 2 convs): at x2
every low-resolution pixel costs four times as many output pixels' worth of time as at x4, and
the x4 network's four blocks would be slower than compact-x2. This copies every tensor whose name
and shape agree (head, blocks 0-2, body tail, fuse; EMA weights when the checkpoint has them) and
keeps a fresh x2 pixel-shuffle tail (ICNR), then writes a plain safetensors state dict that
``srtool train --init-from`` loads.

    python training/efficient-x2/init_from_x4.py \
        training/efficient-x4/run/checkpoints/best.safetensors \
        training/efficient-x2/init.safetensors
"""

from __future__ import annotations

import argparse
import logging

import torch
from safetensors.torch import save_file

from srtool.models import build
from srtool.models.checkpoint import load_checkpoint

log = logging.getLogger("init_from_x4")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", help="an efficient-x4 training checkpoint")
    p.add_argument("out", help="safetensors state dict to write")
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh tail's initialisation")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    source, _ = load_checkpoint(args.source)
    hp = {k: v for k, v in source.hparams.items() if k not in ("scale", "blocks")}
    torch.manual_seed(args.seed)
    target = build("span", scale=2, blocks=args.blocks, **hp)
    have = source.state_dict()
    state = target.state_dict()
    copied = [k for k, v in state.items() if k in have and have[k].shape == v.shape]
    fresh = sorted(set(state) - set(copied))
    state.update({k: have[k] for k in copied})
    target.load_state_dict(state)
    save_file({k: v.contiguous() for k, v in target.state_dict().items()}, args.out)
    log.info("%d tensors copied from %s; fresh: %s", len(copied), args.source, ", ".join(fresh))


if __name__ == "__main__":
    main()
