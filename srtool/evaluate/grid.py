"""Grid check: how much periodic energy an SR image has at the scale's pixel period.

A x``s`` network that ends in a pixel shuffle (sub-pixel convolution) computes each of the
``s x s`` output phases with its own filters; when they disagree the output carries a pattern of
period ``s`` output pixels, the "checkerboard" or grid artefact (Aitken et al. 2017, Odena et al.
2016). In the spectrum such a pattern is a set of peaks at the frequencies ``(k H/s, l W/s)``,
``0 <= k, l < s``, ``(k, l) != (0, 0)``: exact bins when the image sides are multiples of ``s``.

:func:`grid_energy` measures one image: the luminance (BT.601 Y, 0-255) minus its mean, under a
2-D Hann window (no leakage from the image borders, and a periodic pattern lands in the 3x3 bins
around each peak), is Fourier-transformed; at every peak the energy of the 3x3 bins is compared
with the image's own spectrum in a ring around it (bins 3 to 8 away; their median, scaled to a
mean as for the exponentially distributed power of a random signal). What exceeds the ring is
periodic energy, what matches it is ordinary texture.

:func:`grid_ratio` (the ``grid`` score of ``srtool evaluate`` and of training validation) is the
SR image's periodic excess divided by the HR reference's total energy at the same bins (with a
floor at 8-bit rounding noise, so a flat reference cannot blow the ratio up)::

    grid = sum_peaks max(0, E_sr(peak) - ring_sr(peak)) / sum_peaks max(E_hr(peak), floor)

About 0 for an image without a periodic pattern (bicubic, a smooth PSNR model); up to about 1
when the SR image reproduces a pattern the reference really has (JPEG 8x8 blocks of the source
photo have harmonics on the same bins); well above 1 when the network adds a grid of its own.
A grid of amplitude 1/255 on a Set14 photo scores around 10 or more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from srtool.errors import UsageError

__all__ = ["GridEnergy", "grid_energy", "grid_ratio", "MIN_SIDE_PERIODS"]

#: The image sides (after the border crop) must hold this many periods, so that the ring around
#: one peak stays clear of the next (peaks are ``side / period`` bins apart).
MIN_SIDE_PERIODS = 18

_PEAK = 1  # the 3x3 bins around a peak hold a windowed periodic pattern
_RING = (3, 8)  # ring of bins (Chebyshev distance) that estimates the local spectrum
_MEDIAN_TO_MEAN = 1.0 / math.log(2.0)  # exponential power: mean = median / ln 2


@dataclass(frozen=True)
class GridEnergy:
    """One image's spectrum at the grid frequencies (summed over all peaks).

    ``peak``: energy of the 3x3 bins at each peak; ``ring``: what the surrounding spectrum
    predicts for those bins; ``excess``: ``max(0, peak - ring)`` summed per peak; ``floor``: the
    energy 8-bit rounding noise alone puts there.
    """

    peak: float
    ring: float
    excess: float
    floor: float
    peaks: int

    @property
    def prominence(self) -> float:
        """Peak energy over its neighbourhood's prediction: about 1 without a periodic pattern."""
        return self.peak / max(self.ring, self.floor)


def _luma(img: np.ndarray, crop_border: int) -> np.ndarray:
    from srtool.metrics import _prepare

    arr = np.asarray(img)
    try:
        y, _ = _prepare(arr, arr, crop_border, True)
    except ValueError as exc:
        raise UsageError(f"grid check: {exc}") from None
    return y[..., 0]


def _hann(n: int) -> np.ndarray:
    # periodic Hann: a pattern of period p with p | n then falls on exact bins, 3 wide
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float64)


def grid_energy(img: np.ndarray, period: int, *, crop_border: int = 0) -> GridEnergy:
    """The spectrum of ``img`` (uint8 / uint16 or float in [0, 1]; HxW, HxWx1 or HxWx3, RGB taken
    as BT.601 luma) at the frequencies of a ``period``-pixel pattern; see the module docstring.

    ``crop_border`` pixels are dropped from every edge first, then the bottom/right so that both
    sides are multiples of ``period``.
    """
    if period < 2:
        raise UsageError(f"grid check: period must be >= 2, got {period}")
    y = _luma(img, crop_border)
    h, w = (y.shape[0] // period) * period, (y.shape[1] // period) * period
    if min(h, w) < MIN_SIDE_PERIODS * period:
        raise UsageError(
            f"grid check: a {y.shape[1]}x{y.shape[0]} image (after cropping {crop_border} px) is "
            f"too small for period {period}; it needs at least {MIN_SIDE_PERIODS * period} px a "
            "side"
        )
    y = y[:h, :w]
    win_y, win_x = _hann(h), _hann(w)
    window = win_y[:, None] * win_x[None, :]
    power = np.abs(np.fft.fft2((y - y.mean()) * window)) ** 2
    # rounding to 8 bits adds white noise of variance 1/12 level^2 per pixel: its windowed power
    # per bin is sum(window^2) / 12
    floor_bin = float((win_y**2).sum() * (win_x**2).sum()) / 12.0
    side = 2 * _PEAK + 1
    r_in, r_out = _RING
    offsets = np.arange(-r_out, r_out + 1)
    dist = np.maximum(np.abs(offsets)[:, None], np.abs(offsets)[None, :])
    ring_mask = dist >= r_in
    peak_mask = dist <= _PEAK
    total_peak = total_ring = total_excess = 0.0
    count = 0
    for k in range(period):
        for m in range(period):
            if k == 0 and m == 0:
                continue
            ky, kx = k * h // period, m * w // period
            block = power[np.ix_((ky + offsets) % h, (kx + offsets) % w)]
            peak = float(block[peak_mask].sum())
            ring = float(np.median(block[ring_mask])) * _MEDIAN_TO_MEAN * side * side
            total_peak += peak
            total_ring += ring
            total_excess += max(0.0, peak - ring)
            count += 1
    return GridEnergy(
        peak=total_peak,
        ring=total_ring,
        excess=total_excess,
        floor=floor_bin * side * side * count,
        peaks=count,
    )


def grid_ratio(sr: np.ndarray, hr: np.ndarray, period: int, *, crop_border: int = 0) -> float:
    """The grid score of ``sr`` against its reference ``hr`` (same shape): the periodic excess
    of ``sr`` at the ``period``-pixel frequencies over the reference's energy there (floored at
    8-bit rounding noise). About 0-1: no grid of the network's own; >> 1: a visible grid."""
    if np.shape(sr) != np.shape(hr):
        raise UsageError(f"grid check: images differ in shape: {np.shape(sr)} vs {np.shape(hr)}")
    e_sr = grid_energy(sr, period, crop_border=crop_border)
    e_hr = grid_energy(hr, period, crop_border=crop_border)
    return e_sr.excess / max(e_hr.peak, e_hr.floor)
