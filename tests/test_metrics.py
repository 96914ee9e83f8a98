"""PSNR / SSIM / MS-SSIM: known values and an independent SSIM implementation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srtool.metrics import ms_ssim, psnr, rgb_to_y, ssim


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    img = Image.open(Path(__file__).parent / "data" / "photos" / "astronaut.png").convert("RGB")
    return np.asarray(img)[:200, :240]


def test_identical_images(photo: np.ndarray) -> None:
    assert psnr(photo, photo) == math.inf
    assert psnr(photo, photo, y_only=False, crop_border=4) == math.inf
    assert ssim(photo, photo) == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim(photo, photo) == pytest.approx(1.0, abs=1e-12)


def test_known_noise_level_gives_its_psnr() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(20, 236, (64, 80), dtype=np.uint8)
    sign = rng.choice([-1, 1], size=base.shape)
    noisy = (base.astype(int) + 5 * sign).astype(np.uint8)
    assert psnr(noisy, base) == pytest.approx(20 * math.log10(255 / 5), abs=1e-9)
    # Grey stays on its single channel (no Y scaling), whatever y_only says.
    assert psnr(noisy[..., None], base[..., None], y_only=True) == pytest.approx(34.1514, abs=1e-4)
    # On RGB, a uniform offset of 10 levels in all channels is 10 * 219/255 levels of Y.
    rgb = np.stack([base] * 3, axis=-1)
    shifted = rgb + np.uint8(10)
    assert psnr(shifted, rgb, y_only=False) == pytest.approx(20 * math.log10(25.5), abs=1e-9)
    assert psnr(shifted, rgb) == pytest.approx(20 * math.log10(255 / (10 * 219 / 255)), abs=1e-9)


def test_rgb_to_y_range_and_float_input() -> None:
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_y(img)[0], [16.0, 235.0, 16 + 65.481], atol=1e-9)
    np.testing.assert_allclose(rgb_to_y(img / 255.0), rgb_to_y(img), atol=1e-9)


def test_crop_border_ignores_edges(photo: np.ndarray) -> None:
    damaged = photo.copy()
    damaged[:3] = 0
    damaged[:, -3:] = 255
    assert psnr(damaged, photo, crop_border=3) == math.inf
    assert psnr(damaged, photo, crop_border=2) < 30
    assert ssim(damaged, photo, crop_border=3) == pytest.approx(1.0)


def test_ssim_matches_scikit_image(photo: np.ndarray) -> None:
    from skimage import metrics

    rng = np.random.default_rng(3)
    noisy = np.clip(photo + rng.normal(0, 12, photo.shape), 0, 255).astype(np.uint8)
    y1, y2 = rgb_to_y(noisy), rgb_to_y(photo)
    ref = metrics.structural_similarity(
        y1, y2, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(noisy, photo) == pytest.approx(ref, abs=1e-9)
    ref_rgb = metrics.structural_similarity(
        noisy.astype(float),
        photo.astype(float),
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=2,
    )
    assert ssim(noisy, photo, y_only=False) == pytest.approx(ref_rgb, abs=1e-9)


def test_ssim_and_ms_ssim_fall_with_noise(photo: np.ndarray) -> None:
    rng = np.random.default_rng(4)
    values = []
    for sigma in (2, 8, 25):
        noisy = np.clip(photo + rng.normal(0, sigma, photo.shape), 0, 255).astype(np.uint8)
        values.append((ssim(noisy, photo), ms_ssim(noisy, photo)))
    assert values[0][0] > values[1][0] > values[2][0]
    assert values[0][1] > values[1][1] > values[2][1]
    assert all(0 < v <= 1 for pair in values for v in pair)


def test_small_or_mismatched_inputs() -> None:
    a = np.zeros((100, 100, 3), np.uint8)
    assert math.isnan(ms_ssim(a, a))
    with pytest.raises(ValueError, match="shape"):
        psnr(a, a[:50])
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, a, crop_border=50)
    with pytest.raises(ValueError, match="at least"):
        ssim(a[:8, :8], a[:8, :8])
