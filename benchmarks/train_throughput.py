"""Training throughput on this machine: patches/s of one optimisation step, and of the data
pipeline that feeds it.

    python benchmarks/train_throughput.py                      # compact x4 and RRDBNet x4, CPU
    python benchmarks/train_throughput.py --device cuda --amp bf16 --models rrdbnet
    python benchmarks/train_throughput.py --data ../shared/data/T91   # + data pipeline patches/s

A step is what the training loop does for a PSNR recipe: forward, L1, backward, Adam, EMA update,
on random patches (the data pipeline is measured separately, from real images, since it runs in
DataLoader workers in parallel with the step). The first ``--warmup`` steps are not timed.
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import torch
import torch.nn.functional as F

from srtool.models import build
from srtool.train.loop import ema_update

MODELS = {
    # the compact_x4 recipe's network and ESRGAN's generator
    "compact": ("compact", {"features": 64, "convs": 16}),
    "compact-small": ("compact", {"features": 48, "convs": 12}),
    "rrdbnet": ("rrdbnet", {}),
    # the efficient_x4 recipe's network (training graph, with its re-parameterisable branches),
    # and the same network with a 1x (not 2x) wide expanded branch
    "span": ("span", {"features": 48, "blocks": 4, "convs": 2}),
    "span-e1": ("span", {"features": 48, "blocks": 4, "convs": 2, "expand": 1}),
}


def step_throughput(
    name: str,
    *,
    batch: int,
    patch: int,
    scale: int,
    steps: int,
    warmup: int,
    device: str,
    amp: str,
    channels_last: bool,
) -> dict:
    arch, hp = MODELS[name]
    dev = torch.device(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    g = build(arch, scale=scale, **hp).to(dev, memory_format=fmt).train()
    ema = copy.deepcopy(g).requires_grad_(False)
    opt = torch.optim.Adam(g.parameters(), lr=1e-4, betas=(0.9, 0.999))
    dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)
    lr = torch.rand(batch, 3, patch // scale, patch // scale, device=dev)
    lr = lr.contiguous(memory_format=fmt)
    hr = torch.rand(batch, 3, patch, patch, device=dev).contiguous(memory_format=fmt)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for i in range(warmup + steps):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t = time.perf_counter()
        with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.l1_loss(g(lr).float(), hr)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        ema_update(ema, g, 0.999, i)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    sec = sorted(times)[len(times) // 2]
    out = {
        "model": name,
        "params_M": sum(p.numel() for p in g.parameters()) / 1e6,
        "batch": batch,
        "patch": patch,
        "amp": amp,
        "channels_last": channels_last,
        "s_per_step": sec,
        "patches_s": batch / sec,
    }
    if dev.type == "cuda":
        out["peak_mem_GiB"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return out


def data_throughput(folder: str, *, kind: str, patch: int, scale: int, n: int) -> float:
    from pathlib import Path

    from srtool.train.config import DegradationConfig
    from srtool.train.patches import PatchDataset, PatchSampler, load_pairs, patchable

    cfg = DegradationConfig(kind=kind)
    pairs, _ = load_pairs([Path(folder)], scale=scale, degradation=cfg)
    ds = PatchDataset(patchable(pairs, patch), scale=scale, patch_size=patch, degradation=cfg)
    sampler = PatchSampler(len(ds), global_batch=n, seed=0)
    keys = sampler.batch(0)
    t = time.perf_counter()
    for key in keys:
        ds[key]
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["compact", "rrdbnet"], choices=list(MODELS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", nargs="+", default=["off", "bf16"], choices=["off", "bf16", "fp16"])
    ap.add_argument("--channels-last", nargs="+", default=["1"], choices=["0", "1"])
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16, help="compact batch (RRDBNet: --rrdb-batch)")
    ap.add_argument("--rrdb-batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--data", help="a folder of HR images: also time the data pipeline")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
    )
    print(
        f"{'model':14} {'params':>7} {'batch':>5} {'amp':>5} {'cl':>3} {'s/step':>8} "
        f"{'patches/s':>10}"
    )
    for name in args.models:
        batch = args.rrdb_batch if name == "rrdbnet" else args.batch
        for amp in args.amp:
            for cl in args.channels_last:
                r = step_throughput(
                    name,
                    batch=batch,
                    patch=args.patch,
                    scale=args.scale,
                    steps=args.steps,
                    warmup=args.warmup,
                    device=args.device,
                    amp=amp,
                    channels_last=cl == "1",
                )
                mem = f"  peak {r['peak_mem_GiB']:.2f} GiB" if "peak_mem_GiB" in r else ""
                print(
                    f"{name:14} {r['params_M']:6.2f}M {batch:5d} {amp:>5} {cl:>3} "
                    f"{r['s_per_step']:8.3f} {r['patches_s']:10.1f}{mem}",
                    flush=True,
                )
    if args.data:
        for kind in ("bicubic", "practical"):
            pps = data_throughput(args.data, kind=kind, patch=args.patch, scale=args.scale, n=256)
            print(f"data pipeline ({kind}, one worker): {pps:.0f} patches/s")


if __name__ == "__main__":
    main()
