"""The in-memory image: :class:`Picture` and the sample conversions between the file dtypes
(uint8, uint16) and float32, and from 16 to 8 bits.

This is the lowest layer of the package: it knows no file format, and everything outside
``srtool.imageio`` works on a Picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(eq=False)
class Picture:
    """A decoded image file.

    ``pixels`` is HxWxC (C = 3 RGB or 1 grey), uint8 or uint16 exactly as stored; ``alpha`` is HxW
    in the same dtype or None. ``bit_depth`` (8 or 16) comes from the file header. ``exif`` is a
    complete EXIF block starting with ``b"Exif\\0\\0"`` whose orientation is 1 (the pixels are
    already upright). :func:`write_image` encodes from the arrays' dtype, so a picture whose
    pixels were replaced keeps working.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    format: str = "png"
    icc_profile: bytes | None = None
    exif: bytes | None = None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return 1 if self.pixels.ndim == 2 else int(self.pixels.shape[2])

    @property
    def is_grey(self) -> bool:
        return self.channels == 1

    @property
    def megapixels(self) -> float:
        return self.height * self.width / 1e6


# --------------------------------------------------------------------------- conversions


def as_float(pixels: np.ndarray) -> np.ndarray:
    """uint8/uint16 samples -> float32 in [0, 1], scaled by the dtype (never by the values)."""
    if pixels.dtype == np.uint8 or pixels.dtype == np.uint16:
        out = pixels.astype(np.float32)
        out /= np.float32(np.iinfo(pixels.dtype).max)
        return out
    if pixels.dtype.kind == "f":
        return pixels.astype(np.float32, copy=False)
    raise TypeError(f"as_float expects uint8, uint16 or float samples, got {pixels.dtype}")


def from_float(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """float samples (nominally [0, 1]) -> uint8 (bit_depth 8) or uint16 (16), clipped and rounded.
    NaN becomes 0."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    peak = np.float32(np.iinfo(dtype).max)
    scaled = np.multiply(pixels, peak, dtype=np.float32)
    np.nan_to_num(scaled, copy=False, nan=0.0)
    np.clip(scaled, 0.0, peak, out=scaled)
    scaled += np.float32(0.5)  # round half up; values are non-negative so truncation rounds
    return scaled.astype(dtype)


def to_8bit(samples: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 rounding to nearest (x * 255 / 65535); uint8 passes through."""
    if samples.dtype == np.uint8:
        return samples
    if samples.dtype != np.uint16:
        raise TypeError(f"expected uint8 or uint16 samples, got {samples.dtype}")
    wide = samples.astype(np.uint32)
    wide += 128
    wide //= 257
    return wide.astype(np.uint8)
