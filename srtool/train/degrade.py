"""Low-resolution images made from high-resolution ones: small, pure, seeded functions.

Randomness is kept apart from pixels: ``sample_practical(rng, cfg)`` draws every random choice
into a frozen :class:`PracticalParams` (noise included, as a seed), and
``apply_practical(hr, params, scale)`` is a pure function of its arguments. A degradation can
therefore be logged, replayed, and tested for determinism, and a worker process reproduces
exactly what another would have made from the same parameters.

Three kinds:

* ``bicubic``: MATLAB-compatible antialiased bicubic (``srtool.resize.imresize``) on uint8, the
  evaluation protocol's LR. Deterministic, so the data module computes it once per image.
* ``gaussian``: Gaussian blur (sigma ``blur_sigma``) then keeping every ``scale``-th pixel,
  starting at the one nearest the centre of each ``scale`` x ``scale`` block (SRGAN-style).
* ``practical``: a Real-ESRGAN-style chain of anisotropic Gaussian blur, random down/up resize,
  Gaussian or Poisson noise (colour or grey), JPEG; repeated a second time with probability
  ``second_order_prob``; then resized to exactly HR/scale and JPEG-compressed once more.

Arrays are HxWxC. ``bicubic`` and ``gaussian`` keep uint8 in -> uint8 out (rounded like a stored
LR file would be); the practical chain works in float32 [0, 1] and rounds to 8-bit levels at
the end, since the images it imitates are 8-bit files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from srtool.train.config import DegradationConfig

__all__ = [
    "StageParams",
    "PracticalParams",
    "bicubic",
    "gaussian_decimate",
    "gaussian_kernel",
    "sample_practical",
    "apply_practical",
]

_RESIZE_MODES = ("area", "bilinear", "bicubic")


def bicubic(hr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB ``imresize(hr, 1/scale, 'bicubic')``; ``hr`` must be a multiple of ``scale``."""
    from srtool.resize import imresize

    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"HR size {w}x{h} is not a multiple of scale {scale}")
    return imresize(hr, 1.0 / scale)


def gaussian_kernel(sigma_x: float, sigma_y: float, theta: float, size: int = 0) -> np.ndarray:
    """Normalised 2-D Gaussian, anisotropic (``sigma_x`` along angle ``theta``, radians).

    ``size`` 0 picks an odd size covering 3 sigma, at most 21 (Real-ESRGAN's largest kernel).
    """
    if size <= 0:
        size = min(21, 2 * math.ceil(3 * max(sigma_x, sigma_y)) + 1)
    size |= 1
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    inv = np.linalg.inv(cov)
    r = np.arange(size) - size // 2
    xx, yy = np.meshgrid(r, r)
    pts = np.stack([xx, yy], -1).astype(np.float64)
    k = np.exp(-0.5 * np.einsum("...i,ij,...j->...", pts, inv, pts))
    return (k / k.sum()).astype(np.float32)


def _filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    import cv2

    out = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    return out.reshape(img.shape)


def gaussian_decimate(hr: np.ndarray, scale: int, sigma: float) -> np.ndarray:
    """Blur with an isotropic Gaussian, then keep one pixel per ``scale`` x ``scale`` block."""
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"HR size {w}x{h} is not a multiple of scale {scale}")
    blurred = _filter(hr.astype(np.float32), gaussian_kernel(sigma, sigma, 0.0))
    off = (scale - 1) // 2
    lr = blurred[off::scale, off::scale]
    if hr.dtype == np.uint8:
        return np.clip(np.rint(lr), 0, 255).astype(np.uint8)
    return lr.astype(hr.dtype)


# --------------------------------------------------------------------------- practical


@dataclass(frozen=True)
class StageParams:
    """One blur -> resize -> noise -> JPEG pass. ``None`` fields skip that operation."""

    blur: tuple[float, float, float] | None  # sigma_x, sigma_y, theta
    resize: float  # factor relative to this stage's reference size
    resize_mode: str
    noise: str | None  # "gaussian" | "poisson"
    noise_level: float  # sigma in 0-255 levels (gaussian) or a multiplier (poisson)
    noise_gray: bool
    noise_seed: int
    jpeg: int | None


@dataclass(frozen=True)
class PracticalParams:
    """A whole practical degradation: one or two stages, then the final resize and JPEG."""

    stages: tuple[StageParams, ...]
    final_mode: str
    final_jpeg: int | None
    clean: bool = False  # the clean bicubic downscale instead of the chain (``clean_prob``)


def _sample_stage(
    rng: np.random.Generator, cfg: DegradationConfig, *, resize_range: tuple[float, float]
) -> StageParams:
    blur = None
    if rng.random() < cfg.blur_prob:
        lo, hi = cfg.blur_sigma_range
        sx, sy = rng.uniform(lo, hi), rng.uniform(lo, hi)
        blur = (float(sx), float(sy), float(rng.uniform(0, math.pi)))
    factor = float(rng.uniform(*resize_range))
    mode = str(rng.choice(_RESIZE_MODES))
    noise, level, gray = None, 0.0, False
    if rng.random() < cfg.noise_prob:
        gray = bool(rng.random() < cfg.gray_noise_prob)
        if rng.random() < cfg.poisson_prob:
            noise, level = "poisson", float(rng.uniform(0.05, 3.0))
        else:
            noise, level = "gaussian", float(rng.uniform(*cfg.gaussian_noise_range))
    seed = int(rng.integers(0, 2**31 - 1))
    jpeg = int(rng.integers(cfg.jpeg_range[0], cfg.jpeg_range[1] + 1))
    jpeg = jpeg if rng.random() < cfg.jpeg_prob else None
    return StageParams(blur, factor, mode, noise, level, gray, seed, jpeg)


def sample_practical(rng: np.random.Generator, cfg: DegradationConfig) -> PracticalParams:
    """Draw every random choice of one practical degradation."""
    # drawn only when asked for, so runs without clean patches keep their random stream
    if cfg.clean_prob > 0 and rng.random() < cfg.clean_prob:
        return PracticalParams((), "bicubic", None, clean=True)
    stages = [_sample_stage(rng, cfg, resize_range=cfg.resize_range)]
    if rng.random() < cfg.second_order_prob:
        stages.append(_sample_stage(rng, cfg, resize_range=(0.3, 1.2)))
    final_mode = str(rng.choice(_RESIZE_MODES))
    final_jpeg = int(rng.integers(cfg.jpeg_range[0], cfg.jpeg_range[1] + 1))
    final_jpeg = final_jpeg if rng.random() < cfg.jpeg_prob else None
    return PracticalParams(tuple(stages), final_mode, final_jpeg)


def _resize(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    import cv2

    h, w = size
    interp = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
    out = cv2.resize(img, (max(1, w), max(1, h)), interpolation=interp[mode])
    return out.reshape(max(1, h), max(1, w), img.shape[2])


def _noise(img: np.ndarray, stage: StageParams) -> np.ndarray:
    rng = np.random.default_rng(stage.noise_seed)
    shape = img.shape[:2] + (1,) if stage.noise_gray else img.shape
    if stage.noise == "gaussian":
        noise = rng.standard_normal(shape).astype(np.float32) * (stage.noise_level / 255.0)
    else:  # poisson: shot noise of an 8-bit sensor, scaled
        base = img.mean(axis=2, keepdims=True) if stage.noise_gray else img
        lam = np.clip(base, 0, 1) * 255.0
        noise = ((rng.poisson(lam) - lam) / 255.0).astype(np.float32) * stage.noise_level
    return img + noise


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    bgr = u8[..., ::-1] if u8.shape[2] == 3 else u8
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - cv2 always encodes a valid uint8 array
        raise RuntimeError("JPEG encoding failed")
    dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).reshape(u8.shape)
    dec = dec[..., ::-1] if u8.shape[2] == 3 else dec
    return dec.astype(np.float32) / 255.0


def apply_practical(hr: np.ndarray, params: PracticalParams, scale: int) -> np.ndarray:
    """Apply ``params`` to float32 HxWxC ``hr`` in [0, 1]; returns float32 (H/scale)x(W/scale)."""
    h, w = hr.shape[:2]
    out_size = (h // scale, w // scale)
    if params.clean:
        clean = bicubic(hr[: out_size[0] * scale, : out_size[1] * scale], scale)
        return (np.rint(np.clip(clean, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)
    img = hr.astype(np.float32, copy=True)
    refs = [(h, w)] + [out_size] * (len(params.stages) - 1)
    for stage, (rh, rw) in zip(params.stages, refs, strict=True):
        if stage.blur is not None:
            img = _filter(img, gaussian_kernel(*stage.blur))
        size = (max(1, round(rh * stage.resize)), max(1, round(rw * stage.resize)))
        img = _resize(img, size, stage.resize_mode)
        if stage.noise is not None:
            img = _noise(img, stage)
        img = np.clip(img, 0.0, 1.0)
        if stage.jpeg is not None:
            img = _jpeg(img, stage.jpeg)
    img = np.clip(_resize(img, out_size, params.final_mode), 0.0, 1.0)
    if params.final_jpeg is not None:
        img = _jpeg(img, params.final_jpeg)
    return (np.rint(img * 255.0) / 255.0).astype(np.float32)
