"""The grid check (srtool.evaluate.grid) on real photos: bicubic upscales have no grid, the same
upscales plus a faint 4-pixel pattern are flagged, and a photo against itself stays at or
below 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from srtool.errors import UsageError
from srtool.evaluate.benchmarks import read_u8
from srtool.evaluate.grid import grid_energy, grid_ratio
from srtool.resize import imresize, modcrop

IMAGES = ("baboon", "barbara", "comic", "lenna", "monarch", "pepper", "zebra")


def _pair(shared_data: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    hr = modcrop(read_u8(shared_data / "Set14" / f"{name}.png"), 4)
    return hr, imresize(imresize(hr, 0.25), 4)


def _pattern(shape: tuple[int, ...], period: int, amplitude: float, seed: int = 0) -> np.ndarray:
    """A zero-mean random tile of ``period`` x ``period`` pixels, repeated; peak ``amplitude``."""
    tile = np.random.default_rng(seed).uniform(-1.0, 1.0, (period, period))
    tile -= tile.mean()
    tile *= amplitude / np.abs(tile).max()
    reps = (-(-shape[0] // period), -(-shape[1] // period))
    return np.tile(tile, reps)[: shape[0], : shape[1], None]


def _add(img: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img.astype(np.float64) + pattern), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", IMAGES)
def test_bicubic_has_no_grid_and_a_faint_pattern_is_flagged(shared_data: Path, name: str) -> None:
    hr, bic = _pair(shared_data, name)
    clean = grid_ratio(bic, hr, 4, crop_border=4)
    assert clean < 0.05
    gridded = grid_ratio(_add(bic, _pattern(bic.shape, 4, 2.0)), hr, 4, crop_border=4)
    assert gridded > 1.5  # 2/255 peak: flagged on every image, textured ones included
    assert gridded > 30 * clean


def test_faint_pattern_on_a_smooth_photo(shared_data: Path) -> None:
    hr, bic = _pair(shared_data, "lenna")
    assert grid_ratio(_add(bic, _pattern(bic.shape, 4, 1.0, seed=3)), hr, 4, crop_border=4) > 3
    # a checkerboard of period 2 is part of the x4 grid (the peak at half the sampling rate)
    yy, xx = np.indices(bic.shape[:2])
    checker = (((yy + xx) % 2) * 2.0 - 1.0)[..., None]
    assert grid_ratio(_add(bic, checker), hr, 4, crop_border=4) > 3


def test_the_reference_against_itself_is_at_most_one(shared_data: Path) -> None:
    for name in IMAGES:
        hr, _ = _pair(shared_data, name)
        assert 0.0 <= grid_ratio(hr, hr, 4, crop_border=4) <= 1.0


def test_other_periods_and_inputs(shared_data: Path) -> None:
    hr = modcrop(read_u8(shared_data / "Set14" / "lenna.png"), 6)
    bic2 = imresize(imresize(hr, 0.5), 2)
    assert grid_ratio(bic2, hr, 2, crop_border=2) < 0.05
    assert grid_ratio(_add(bic2, _pattern(hr.shape, 2, 2.0)), hr, 2, crop_border=2) > 3
    bic3 = imresize(imresize(hr, 1 / 3), 3)
    assert grid_ratio(_add(bic3, _pattern(hr.shape, 3, 2.0)), hr, 3, crop_border=3) > 3
    # float [0, 1] is the same image as uint8
    e8 = grid_energy(hr, 4)
    ef = grid_energy(hr.astype(np.float32) / 255.0, 4)
    assert ef.peak == pytest.approx(e8.peak, rel=1e-4)
    # a pure pattern stands far above its neighbourhood; a photo does not
    assert grid_energy(_add(np.full_like(hr, 128), _pattern(hr.shape, 4, 3.0)), 4).prominence > 50
    assert grid_energy(hr, 4).prominence < 3


def test_refuses_what_it_cannot_measure() -> None:
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(UsageError, match="too small"):
        grid_energy(img, 4)
    with pytest.raises(UsageError, match="period"):
        grid_energy(img, 1)
    with pytest.raises(UsageError, match="shape"):
        grid_ratio(np.zeros((80, 80), np.uint8), np.zeros((80, 84), np.uint8), 4)


def test_evaluate_grid_column(shared_data: Path, tiny_model_x4: Path, tmp_path: Path) -> None:
    """``srtool evaluate --grid``: a Grid column, one mean per method, in every report."""
    import json

    from typer.testing import CliRunner

    from srtool.cli import app

    out = tmp_path / "r.json"
    md = tmp_path / "r.md"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--bench",
            "Set14",
            "--model",
            str(tiny_model_x4),
            "--data-root",
            str(shared_data),
            "--grid",
            "--no-ms-ssim",
            "--json",
            str(out),
            "--markdown",
            str(md),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Grid" in result.output
    data = json.loads(out.read_text())
    assert data["metrics"] == ["psnr_y", "ssim_y", "grid"]
    rows = {r["method"]: r for r in data["results"]}
    assert rows["bicubic"]["grid"] < 0.05
    # a random-weights pixel-shuffle network: every output phase has its own filters
    assert rows["tiny-x4"]["grid"] > 1.0
    assert all(i["grid"] is not None for i in rows["bicubic"]["per_image"])
    assert any(n.startswith("Grid:") for n in data["notes"])
    assert "Grid (lower is better; period-4" in md.read_text()
