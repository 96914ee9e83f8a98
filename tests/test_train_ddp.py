"""DDP: two CPU processes on gloo, launched by torchrun, train like one process with the same
global batch (same data shards, averaged gradients, rank-0 files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from srtool.models.checkpoint import load_state
from srtool.train import load_recipe
from srtool.train.loop import train
from srtool.train.patches import read_rgb8

OVERRIDES = [
    "model.arch=compact",
    "model.hparams={features = 8, convs = 1}",
    "data.patch_size=32",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.val_count=1",
    "train.log_every=1",
    "train.steps=4",
    "train.val_every=4",
    "train.save_every=4",
    "train.amp=off",
    "optim.lr=1e-3",
]


def test_two_gloo_processes_match_one_process(shared_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "t91"
    data.mkdir()
    for f in sorted((shared_data / "T91").glob("*.bmp"))[:5]:
        Image.fromarray(read_rgb8(f)[:48, :48]).save(data / f"{f.stem}.png")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    sets = [arg for o in OVERRIDES for arg in ("--set", o)]
    # the command training/README.md documents, with 2 CPU processes instead of GPUs
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "srtool",
        "train",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "ddp"),
        "--device",
        "cpu",
        *sets,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "2 processes" in proc.stdout and "best val" in proc.stdout
    assert proc.stdout.count("best val") == 1  # only rank 0 reports

    train(load_recipe(None, OVERRIDES), data=[str(data)], out_dir=tmp_path / "single", device="cpu")

    def losses(run: Path) -> list[float]:
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss_g"] for r in rows if "loss_g" in r]

    ddp, single = losses(tmp_path / "ddp"), losses(tmp_path / "single")
    assert len(ddp) == len(single) == 4
    assert ddp == pytest.approx(single, rel=1e-5)
    a = load_state(tmp_path / "ddp" / "checkpoints" / "step_0000004.safetensors")[0]
    b = load_state(tmp_path / "single" / "checkpoints" / "step_0000004.safetensors")[0]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    _, meta = load_state(tmp_path / "ddp" / "checkpoints" / "step_0000004.safetensors")
    assert meta["training"]["world_size"] == 2
    # rank 0 alone wrote the run folder: one set of files, no duplicates from rank 1
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == [
        "best.safetensors",
        "last.state.pt",
        "step_0000004.safetensors",
    ]
