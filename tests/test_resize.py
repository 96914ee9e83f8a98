"""MATLAB-compatible bicubic: reference images made by MATLAB, plus analytic properties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srtool.resize import contributions, cubic, imresize


def _pairs(shared: Path, name: str, k: int) -> list[tuple[Path, Path]]:
    folder = shared / "matlab_bicubic" / name / f"image_SRF_{k}"
    pairs = [(hr, hr.with_name(hr.name.replace("_HR", "_LR"))) for hr in folder.glob("*_HR.png")]
    if not pairs:
        pytest.skip(f"no MATLAB reference images in {folder}")
    return sorted(pairs)


@pytest.mark.parametrize("name", ["Set5", "Set14"])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_reproduces_matlab_lr_images(shared_data: Path, name: str, k: int) -> None:
    equal = total = 0
    for hr_path, lr_path in _pairs(shared_data, name, k):
        hr = np.asarray(Image.open(hr_path))
        lr = np.asarray(Image.open(lr_path))
        out = imresize(hr, 1 / k)
        assert out.dtype == np.uint8
        assert out.shape == lr.shape, hr_path.name
        equal += int(np.count_nonzero(out == lr))
        total += lr.size
    assert equal / total >= 0.98, f"{name} x{k}: only {100 * equal / total:.3f}% exact"


def test_symmetric_boundary_differs_only_near_edges(shared_data: Path) -> None:
    hr_path, lr_path = _pairs(shared_data, "Set5", 4)[0]
    hr = np.asarray(Image.open(hr_path))
    lr = np.asarray(Image.open(lr_path))
    sym = imresize(hr, 0.25, boundary="symmetric")
    assert np.array_equal(sym[3:-3, 3:-3], lr[3:-3, 3:-3])
    assert not np.array_equal(sym, lr)


def test_cubic_kernel_values() -> None:
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5])
    expected = [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625]
    np.testing.assert_allclose(cubic(x), expected, atol=1e-12)


def test_contributions_sum_to_one_and_stay_inside() -> None:
    for n_in, n_out, s in [(10, 40, 4.0), (40, 10, 0.25), (17, 6, 1 / 3), (9, 9, 1.0)]:
        w, idx = contributions(n_in, n_out, s)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
        assert idx.min() >= 0 and idx.max() < n_in
        assert not w.flags.writeable


def test_float_preserves_dtype_constant_and_linear_ramps() -> None:
    const = np.full((12, 9, 3), 0.3, np.float32)
    out = imresize(const, 0.5)
    assert out.dtype == np.float32 and out.shape == (6, 5, 3)
    np.testing.assert_allclose(out, 0.3, atol=1e-6)
    # Keys' cubic reproduces linear functions exactly away from the boundary.
    ramp = np.tile(np.arange(16, dtype=np.float64), (8, 1))
    up = imresize(ramp, 2)
    centres = (np.arange(1, 33) / 2 + 0.5 * (1 - 1 / 2)) - 1  # MATLAB's mapping, 0-based
    np.testing.assert_allclose(up[:, 4:-4], np.tile(centres[4:-4], (16, 1)), atol=1e-12)


def test_uint8_rounds_and_clamps_each_pass() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    out = imresize(img, 3)
    assert out.dtype == np.uint8 and out.shape == (69, 93, 3)

    def quantise(x: np.ndarray) -> np.ndarray:  # MATLAB: clamp, round half away from zero
        return np.floor(np.clip(x, 0, 255) + 0.5)

    rows = quantise(imresize(img.astype(np.float64), size=(69, 31)))
    expected = quantise(imresize(rows, size=(69, 93)))
    assert np.array_equal(out, expected)
    once = quantise(imresize(img.astype(np.float64), 3))  # quantised only at the end
    assert not np.array_equal(out, once)


def test_grey_size_and_aspect() -> None:
    grey = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    assert imresize(grey, size=(10, 7)).shape == (10, 7)
    assert imresize(grey, size=(None, 15)).shape == (10, 15)
    assert imresize(grey, 1 / 3).shape == (7, 10)  # ceil, as MATLAB
    assert imresize(grey, 1.0).tolist() == grey.tolist()


@pytest.mark.parametrize(
    "kwargs", [{}, {"scale": 0.5, "size": (3, 3)}, {"scale": -1.0}, {"size": (0, 4)}]
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        imresize(np.zeros((8, 8), np.uint8), **kwargs)
    with pytest.raises(ValueError, match="HxW"):
        imresize(np.zeros((2, 8, 8, 3), np.uint8), 0.5)
