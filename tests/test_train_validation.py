"""Validation during training: LPIPS and the grid check in metrics.jsonl, best.safetensors by
LPIPS, and 'realistic' validation LR equal to ``srtool evaluate --degradation realistic``'s."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srtool.errors import ModelError, UsageError
from srtool.evaluate.benchmarks import realistic_lr
from srtool.models.checkpoint import load_checkpoint
from srtool.train import load_recipe
from srtool.train import patches as patches_module
from srtool.train.config import DegradationConfig
from srtool.train.loop import train, validation_scores
from srtool.train.patches import read_rgb8

BASE = [
    "model.arch=compact",
    "model.hparams={features = 8, convs = 1}",
    "data.patch_size=32",
    "data.batch_size=2",
    "data.num_workers=0",
    "train.log_every=1",
    "train.val_every=2",
    "train.save_every=2",
    "train.steps=4",
    "train.amp=off",
]
GAN = [
    "loss.adversarial=ragan",
    "loss.adversarial_weight=0.1",
    "loss.perceptual_weight=1.0",
    "loss.perceptual_layers={conv2_2 = 1.0}",
    "discriminator.arch=unet_sn",
    "discriminator.hparams={features = 8}",
]


@pytest.fixture(scope="module")
def folders(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Four T91 training crops (64 px) and two 160 px Set14 validation crops, as PNG."""
    train_dir, val_dir = tmp_path_factory.mktemp("train"), tmp_path_factory.mktemp("val")
    for f in sorted((shared_data / "T91").glob("*.bmp"))[:4]:
        Image.fromarray(read_rgb8(f)[:64, :64]).save(train_dir / f"{f.stem}.png")
    for name in ("lenna", "zebra"):
        img = read_rgb8(shared_data / "Set14" / f"{name}.png")[:160, :160]
        Image.fromarray(img).save(val_dir / f"{name}.png")
    return train_dir, val_dir


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread: None) -> None:
    """Every test and module fixture here runs torch on one thread (see ``one_torch_thread``)."""


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_gan_validation_logs_lpips_and_grid_and_keeps_the_lowest_lpips(
    folders: tuple[Path, Path],
    shared_weights: Path,
    vgg_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SRTOOL_LPIPS_WEIGHTS", str(shared_weights / "lpips_alex_v0.1.safetensors"))
    recipe = load_recipe(
        None, BASE + GAN + ["train.best_metric=lpips", "data.val_degradation=realistic"]
    )
    assert recipe.validates_grid
    train_dir, val_dir = folders
    res = train(
        recipe,
        data=[str(train_dir)],
        val=str(val_dir),
        out_dir=tmp_path / "run",
        device="cpu",
        vgg_weights=vgg_file,
    )
    val = [r for r in _rows(tmp_path / "run") if "val_psnr" in r]
    assert [r["step"] for r in val] == [2, 4]
    for row in val:
        assert 0 < row["val_lpips"] < 1 and row["val_grid"] >= 0
    best = min(val, key=lambda r: r["val_lpips"])
    _, meta = load_checkpoint(res.best_checkpoint)
    assert meta["val_lpips"] == pytest.approx(best["val_lpips"])
    assert res.best_step == best["step"]


def test_lpips_required_but_missing_fails_before_training(
    folders: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRTOOL_LPIPS_WEIGHTS", str(tmp_path / "none.safetensors"))
    monkeypatch.setattr("srtool.evaluate.lpips.weights_cache_dir", lambda: tmp_path / "cache")
    recipe = load_recipe(None, BASE + ["train.val_lpips=on"])
    with pytest.raises(ModelError, match="LPIPS"):
        train(recipe, data=[str(folders[0])], out_dir=tmp_path / "run", device="cpu")
    # auto: validation goes on without it
    res = train(
        load_recipe(None, BASE + ["train.steps=2"]),
        data=[str(folders[0])],
        out_dir=tmp_path / "auto",
        device="cpu",
    )
    val = [r for r in _rows(tmp_path / "auto") if "val_psnr" in r]
    assert val and "val_lpips" not in val[0] and "val_grid" not in val[0]
    assert res.best_psnr is not None
    with pytest.raises(UsageError, match="val_lpips"):
        load_recipe(None, BASE + ["train.best_metric=lpips", "train.val_lpips=off"])


def test_realistic_validation_lr_is_the_evaluation_lr(folders: tuple[Path, Path]) -> None:
    val_dir = folders[1]
    pairs, _ = patches_module.load_pairs(
        [val_dir], scale=4, degradation=DegradationConfig(kind="practical")
    )
    made = patches_module.make_validation(
        pairs,
        scale=4,
        degradation=DegradationConfig(kind="practical"),
        crop=0,
        seed=0,
        realistic=True,
    )
    for pair in made:
        assert np.array_equal(pair.lr, realistic_lr(pair.hr, 4, pair.file))
    recipe_lr = patches_module.make_validation(
        pairs, scale=4, degradation=DegradationConfig(kind="practical"), crop=0, seed=0
    )
    assert not np.array_equal(recipe_lr[0].lr, made[0].lr)  # the recipe's own draw differs


class _Upscaler(torch.nn.Module):
    """Bicubic x4 plus a fixed offset per output phase (``amplitude`` levels of 255): with a
    non-zero amplitude, the pixel-shuffle grid of a network whose phases disagree."""

    def __init__(self, amplitude: float) -> None:
        super().__init__()
        offsets = torch.linspace(-1.0, 1.0, 16)[torch.randperm(16, generator=torch.Generator())]
        self.register_buffer("offsets", offsets.view(1, 16, 1, 1) * amplitude / 255.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic")
        grid = torch.nn.functional.pixel_shuffle(self.offsets.expand(1, 16, *x.shape[2:]), 4)
        return up + grid


def test_validation_scores_grid_flags_a_gridded_model(folders: tuple[Path, Path]) -> None:
    pairs, _ = patches_module.load_pairs(
        [folders[1]], scale=4, degradation=DegradationConfig(kind="bicubic")
    )
    clean = validation_scores(_Upscaler(0.0), pairs, 4, torch.device("cpu"), grid=True)
    assert set(clean) == {"val_psnr", "val_ssim", "val_grid"}
    gridded = validation_scores(_Upscaler(3.0), pairs, 4, torch.device("cpu"), grid=True)
    assert clean["val_grid"] < 0.3 and gridded["val_grid"] > max(1.0, 10 * clean["val_grid"])
    assert abs(gridded["val_psnr"] - clean["val_psnr"]) < 1.0  # PSNR barely notices it
