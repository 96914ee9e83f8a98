"""Degradations: protocol bicubic, Gaussian blur + decimation, seeded practical chain."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from srtool.train import degrade
from srtool.train.config import DegradationConfig
from srtool.train.patches import read_rgb8


@pytest.fixture(scope="module")
def photo(shared_data: Path) -> np.ndarray:
    return read_rgb8(shared_data / "BSD200" / "100075.png")[:96, :120]


def test_bicubic_reproduces_matlab_lr(shared_data: Path) -> None:
    folder = shared_data / "matlab_bicubic" / "Set5" / "image_SRF_4"
    hr = read_rgb8(folder / "img_002_SRF_4_HR.png")
    ref = read_rgb8(folder / "img_002_SRF_4_LR.png")
    lr = degrade.bicubic(hr, 4)
    assert lr.dtype == np.uint8 and lr.shape == ref.shape
    diff = np.abs(lr.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.95


def test_bicubic_needs_a_multiple_of_the_scale(photo: np.ndarray) -> None:
    with pytest.raises(ValueError, match="multiple of scale 4"):
        degrade.bicubic(photo[:95], 4)


def test_gaussian_kernel_properties() -> None:
    k = degrade.gaussian_kernel(1.0, 1.0, 0.0)
    assert k.shape == (7, 7) and math.isclose(float(k.sum()), 1.0, rel_tol=1e-6)
    assert np.allclose(k, k.T) and np.allclose(k, k[::-1])
    wide = degrade.gaussian_kernel(3.0, 0.5, 0.0, size=21)
    turned = degrade.gaussian_kernel(3.0, 0.5, math.pi / 2, size=21)
    assert np.allclose(wide, turned.T, atol=1e-6)  # rotating by 90 degrees swaps the axes
    assert wide[10, :].sum() > wide[:, 10].sum()  # wide along x


def test_gaussian_decimate(photo: np.ndarray) -> None:
    flat = np.full((32, 40, 3), 77, np.uint8)
    assert (degrade.gaussian_decimate(flat, 4, 1.5) == 77).all()
    lr = degrade.gaussian_decimate(photo, 4, 1.5)
    assert lr.shape == (24, 30, 3) and lr.dtype == np.uint8
    # the decimated pixel (1, 1) of each 4x4 block equals the blurred HR there
    blurred = degrade._filter(photo.astype(np.float32), degrade.gaussian_kernel(1.5, 1.5, 0))
    assert np.abs(lr.astype(float) - np.rint(blurred[1::4, 1::4])).max() <= 0.5


def test_practical_is_a_pure_function_of_its_seeded_params(photo: np.ndarray) -> None:
    cfg = DegradationConfig(kind="practical")
    hr = photo.astype(np.float32) / 255.0
    p1 = degrade.sample_practical(np.random.default_rng(7), cfg)
    p2 = degrade.sample_practical(np.random.default_rng(7), cfg)
    p3 = degrade.sample_practical(np.random.default_rng(8), cfg)
    assert p1 == p2 and p1 != p3
    a, b = degrade.apply_practical(hr, p1, 4), degrade.apply_practical(hr, p2, 4)
    assert a.shape == (24, 30, 3) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.array_equal(a, degrade.apply_practical(hr, p3, 4))
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert np.allclose(a * 255.0, np.rint(a * 255.0), atol=1e-4)  # 8-bit levels


def test_second_order_probability() -> None:
    rng = np.random.default_rng(0)
    always = DegradationConfig(kind="practical", second_order_prob=1.0)
    never = DegradationConfig(kind="practical", second_order_prob=0.0)
    assert all(len(degrade.sample_practical(rng, always).stages) == 2 for _ in range(5))
    assert all(len(degrade.sample_practical(rng, never).stages) == 1 for _ in range(5))


def _only(**changes: object) -> degrade.PracticalParams:
    stage = degrade.StageParams(None, 1.0, "area", None, 0.0, False, 3, None)
    return degrade.PracticalParams((dataclasses.replace(stage, **changes),), "area", None)


def test_gaussian_noise_has_the_requested_sigma() -> None:
    grey = np.full((128, 128, 3), 0.5, np.float32)
    out = degrade.apply_practical(grey, _only(noise="gaussian", noise_level=10.0), 1)
    assert abs(float((out - 0.5).std()) * 255 - 10.0) < 0.6
    gray_noise = degrade.apply_practical(
        grey, _only(noise="gaussian", noise_level=10.0, noise_gray=True), 1
    )
    assert np.array_equal(gray_noise[..., 0], gray_noise[..., 2])  # same noise in every channel


def test_lower_jpeg_quality_loses_more(photo: np.ndarray) -> None:
    hr = photo.astype(np.float32) / 255.0
    err = [
        float(np.abs(degrade.apply_practical(hr, _only(jpeg=q), 1) - hr).mean()) for q in (95, 30)
    ]
    assert 0 < err[0] < err[1]


def test_clean_patches_are_the_bicubic_protocol_lr(photo: np.ndarray) -> None:
    hr = photo[:128, :128]
    cfg = DegradationConfig(kind="practical", clean_prob=0.5)
    draws = [degrade.sample_practical(np.random.default_rng([7, i]), cfg) for i in range(400)]
    clean = [p for p in draws if p.clean]
    assert 0.4 < len(clean) / len(draws) < 0.6
    assert all(not p.clean and p.stages for p in draws if p not in clean)
    lr = degrade.apply_practical(hr.astype(np.float32) / 255.0, clean[0], 4)
    reference = degrade.bicubic(hr, 4).astype(np.float64)  # the paper protocol, rounded per pass
    assert lr.shape == reference.shape
    assert np.abs(lr * 255.0 - reference).max() <= 1.0 + 1e-4
    chain = degrade.apply_practical(
        hr.astype(np.float32) / 255.0, draws[0 if not draws[0].clean else 1], 4
    )
    assert np.abs(chain * 255.0 - reference).mean() > 2.0  # the chain is a different LR


def test_probabilities_outside_zero_one_are_refused() -> None:
    from srtool.errors import UsageError
    from srtool.train.config import load_recipe

    with pytest.raises(UsageError, match="degradation.clean_prob must be in"):
        load_recipe(None, ["degradation.clean_prob=1.5"])
