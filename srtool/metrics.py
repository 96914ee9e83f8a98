"""Image quality metrics as super-resolution papers compute them, in numpy (no torch).

The conventions (design notes §4) are those of the MATLAB scripts behind published tables:

* images are compared as 8-bit values on the 0-255 scale;
* ``y_only`` measures the luma of ITU-R BT.601 "studio swing", ``Y = 16 + (65.481 R + 128.553 G +
  24.966 B) / 255`` for R, G, B in 0-255, kept as float (not rounded to uint8);
* ``crop_border`` pixels are removed from every edge first (papers crop ``scale`` pixels);
* SSIM is Wang et al.'s ``ssim.m``: an 11x11 Gaussian window with sigma 1.5, "valid" filtering,
  C1 = (0.01*255)^2, C2 = (0.03*255)^2, averaged over the map (and over channels for RGB);
* greyscale images (HxW or HxWx1) are measured on their single channel whatever ``y_only`` says.

Inputs may be uint8 (0-255) or float (taken as 0-1 and scaled by 255); they are never clamped or
rounded here: the caller decides what was quantised (the evaluation driver quantises SR to uint8
as the protocol says).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = ["rgb_to_y", "psnr", "ssim", "ms_ssim", "MS_SSIM_WEIGHTS"]

# Wang, Simoncelli & Bovik 2003, the per-scale exponents of MS-SSIM.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _to_255(img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        return arr.astype(np.float64)
    if arr.dtype == np.uint16:
        return arr.astype(np.float64) * (255.0 / 65535.0)
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float64) * 255.0
    raise ValueError(f"unsupported image dtype {arr.dtype}; expected uint8, uint16 or float")


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma on the 16-235 scale as float64, from RGB uint8 (0-255) or float (0-1) HxWx3."""
    rgb = _to_255(img)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects HxWx3, got shape {rgb.shape}")
    return 16.0 + (rgb @ np.array([65.481, 128.553, 24.966])) / 255.0


def _prepare(
    a: np.ndarray, b: np.ndarray, crop_border: int, y_only: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Both images on the 0-255 scale, cropped, as HxWxC float64 (C = 1 for Y or grey)."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected HxW or HxWxC with C in 1, 3, 4; got shape {a.shape}")
    if a.shape[2] == 4:  # alpha is not part of what super-resolution benchmarks measure
        a, b = a[..., :3], b[..., :3]
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        if 2 * crop_border >= min(a.shape[:2]):
            raise ValueError(f"crop_border {crop_border} leaves nothing of a {a.shape[:2]} image")
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if y_only and a.shape[2] == 3:
        return rgb_to_y(a)[..., None], rgb_to_y(b)[..., None]
    return _to_255(a), _to_255(b)


def psnr(a: np.ndarray, b: np.ndarray, *, crop_border: int = 0, y_only: bool = True) -> float:
    """Peak signal-to-noise ratio in dB (peak 255). Identical images give ``inf``.

    RGB PSNR (``y_only=False``) takes the MSE over all channels together, as BasicSR does.
    """
    x, y = _prepare(a, b, crop_border, y_only)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0**2 / mse)


@lru_cache(maxsize=8)
def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', size, sigma)`` is the outer product of this with itself."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    g /= g.sum()
    g.setflags(write=False)
    return g


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of an HxW(xN) array with ``g`` along both spatial axes.

    Sums of shifted slices, pairing the taps of the symmetric kernel (one multiply per pair)
    and reusing one scratch buffer per axis: vectorised, exact to rounding, and several times
    faster than a 2-D window for the 11-tap Gaussian.
    """
    k = g.size
    half = k // 2
    h, w = img.shape[0] - k + 1, img.shape[1] - k + 1
    rows = img[half : half + h] * g[half]
    tmp = np.empty_like(rows)
    for i in range(half):
        np.add(img[i : i + h], img[k - 1 - i : k - 1 - i + h], out=tmp)
        tmp *= g[i]
        rows += tmp
    out = rows[:, half : half + w] * g[half]
    tmp = np.empty_like(out)
    for i in range(half):
        np.add(rows[:, i : i + w], rows[:, k - 1 - i : k - 1 - i + w], out=tmp)
        tmp *= g[i]
        out += tmp
    return out


def _ssim_maps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SSIM map and contrast-structure map of HxWxC float64 images on 0-255 (per channel)."""
    c1 = (0.01 * 255.0) ** 2
    c2 = (0.03 * 255.0) ** 2
    g = _gaussian_1d()
    if min(x.shape[:2]) < g.size:
        raise ValueError(f"SSIM needs images of at least {g.size}x{g.size}, got {x.shape[:2]}")
    # Filter the five statistics in one stacked pass.
    stats = _filter_valid(np.concatenate([x, y, x * x, y * y, x * y], axis=2), g)
    c = x.shape[2]
    mu1, mu2 = stats[..., 0:c], stats[..., c : 2 * c]
    s11 = stats[..., 2 * c : 3 * c] - mu1 * mu1
    s22 = stats[..., 3 * c : 4 * c] - mu2 * mu2
    s12 = stats[..., 4 * c : 5 * c] - mu1 * mu2
    cs = (2.0 * s12 + c2) / (s11 + s22 + c2)
    ssim_map = ((2.0 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1)) * cs
    return ssim_map, cs


def ssim(a: np.ndarray, b: np.ndarray, *, crop_border: int = 0, y_only: bool = True) -> float:
    """Structural similarity as MATLAB's ``ssim.m`` (Wang et al. 2004) computes it; 1.0 when
    identical. RGB SSIM is the mean of the per-channel values."""
    x, y = _prepare(a, b, crop_border, y_only)
    ssim_map, _ = _ssim_maps(x, y)
    return float(np.mean(ssim_map.mean(axis=(0, 1))))


def _downsample2(img: np.ndarray) -> np.ndarray:
    """2x2 average then decimation, the low-pass step between MS-SSIM scales."""
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    v = img[:h, :w]
    return 0.25 * (v[0::2, 0::2] + v[1::2, 0::2] + v[0::2, 1::2] + v[1::2, 1::2])


def ms_ssim(
    a: np.ndarray,
    b: np.ndarray,
    *,
    crop_border: int = 0,
    y_only: bool = True,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
) -> float:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) with the paper's five weights.

    Contrast-structure terms at the coarse scales, full SSIM at the coarsest, each the mean of
    its map, clamped at 0 before the power (as common implementations do, so a negative
    correlation cannot give a complex number). Returns NaN when the image is too small for all
    scales (the smaller side must be at least ``11 * 2**(levels-1)`` = 176 pixels).
    """
    x, y = _prepare(a, b, crop_border, y_only)
    levels = len(weights)
    if min(x.shape[:2]) < _gaussian_1d().size * 2 ** (levels - 1):
        return math.nan
    values = []
    for level in range(levels):
        ssim_map, cs = _ssim_maps(x, y)
        term = ssim_map if level == levels - 1 else cs
        values.append(np.maximum(term.mean(axis=(0, 1)), 0.0))  # per channel
        x, y = _downsample2(x), _downsample2(y)
    per_channel = np.prod([v**w for v, w in zip(values, weights, strict=True)], axis=0)
    return float(np.mean(per_channel))
