"""Upscaling one decoded picture: colour through the network, alpha, extra passes, final resize."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from PIL import Image

from srtool.errors import UsageError
from srtool.imageio import Picture, as_float, from_float
from srtool.infer.upscaler import TileProgress, Upscaler

__all__ = ["ALPHA_MODES", "passes_for", "output_size", "resize_high_quality", "upscale_picture"]

ALPHA_MODES = ("resize", "model")


def passes_for(model_scale: int, outscale: float | None) -> int:
    """How many network passes reach ``outscale`` (then a resize trims to the exact size)."""
    if outscale is None:
        return 1
    if outscale <= 0:
        raise UsageError("--outscale must be positive")
    if model_scale <= 1 or outscale <= model_scale:
        return 1
    return math.ceil(math.log(outscale) / math.log(model_scale) - 1e-9)


def output_size(
    height: int, width: int, model_scale: int, outscale: float | None
) -> tuple[int, int]:
    factor = model_scale if outscale is None else outscale
    return max(round(height * factor), 1), max(round(width * factor), 1)


def _resize_plane(plane: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    height, width = size
    if plane.dtype == np.uint8:
        return np.asarray(Image.fromarray(plane).resize((width, height), resample))
    resized = Image.fromarray(plane.astype(np.float32)).resize((width, height), resample)
    values = np.asarray(resized)
    if plane.dtype.kind == "f":
        return values
    peak = np.iinfo(plane.dtype).max
    return np.clip(values + 0.5, 0, peak).astype(plane.dtype)


def resize_high_quality(
    image: np.ndarray, size: tuple[int, int], *, alpha: bool = False
) -> np.ndarray:
    """Antialiased resize of HxW or HxWxC (uint8, uint16 or float32) to ``size`` (h, w).

    Lanczos for colour (sharp, antialiased when shrinking); bicubic for alpha, where Lanczos
    rings on hard mask edges.
    """
    if image.shape[:2] == size:
        return image
    resample = Image.Resampling.BICUBIC if alpha else Image.Resampling.LANCZOS
    if image.ndim == 2:
        return _resize_plane(image, size, resample)
    if image.dtype == np.uint8 and image.shape[2] == 3:
        return np.asarray(Image.fromarray(image).resize((size[1], size[0]), resample))
    planes = [_resize_plane(image[:, :, c], size, resample) for c in range(image.shape[2])]
    return np.stack(planes, axis=2)


def _network_pass(
    image: np.ndarray,
    upscaler: Upscaler,
    tta: bool,
    back_projection: int,
    on_tile: TileProgress | None,
) -> np.ndarray:
    """One pass of the network over an HxWxC image, in and out in the image's dtype."""
    if not tta and not back_projection:
        return upscaler.render(image, dtype=image.dtype, on_tile=on_tile)
    from srtool.infer.enhance import enhance

    def network(img: np.ndarray) -> np.ndarray:
        return upscaler.render(img, dtype=np.float32, on_tile=on_tile)

    result = enhance(
        network, as_float(image), scale=upscaler.scale, tta=tta, back_projection=back_projection
    )
    return from_float(result, 16 if image.dtype == np.uint16 else 8)


def upscale_picture(
    picture: Picture,
    upscaler: Upscaler,
    *,
    outscale: float | None = None,
    alpha_mode: str = "resize",
    tta: bool = False,
    back_projection: int = 0,
    on_tile: TileProgress | None = None,
) -> Picture:
    """Upscale a picture's colour (and alpha) to ``outscale`` x its size (the model's scale if
    None). Samples keep their dtype: 16-bit stays 16-bit, greyscale stays greyscale.

    ``tta`` (x8 self-ensemble) and ``back_projection`` (iterations) apply to the colour of every
    network pass; they work on float copies of the image, so they cost memory as well as time.
    """
    if back_projection < 0:
        raise UsageError("--back-projection must not be negative")
    if alpha_mode not in ALPHA_MODES:
        raise UsageError(f"unknown --alpha '{alpha_mode}' (choose from {', '.join(ALPHA_MODES)})")
    passes = passes_for(upscaler.scale, outscale)
    target = output_size(picture.pixels.shape[0], picture.pixels.shape[1], upscaler.scale, outscale)

    colour = picture.pixels
    for _ in range(passes):
        colour = _network_pass(colour, upscaler, tta, back_projection, on_tile)
    colour = resize_high_quality(colour, target)

    alpha = picture.alpha
    if alpha is not None:
        if alpha_mode == "model":
            plane = alpha[:, :, None]
            for _ in range(passes):
                plane = upscaler.render(plane, dtype=alpha.dtype)
            alpha = resize_high_quality(plane[:, :, 0], target, alpha=True)
        else:
            alpha = resize_high_quality(alpha, target, alpha=True)
    return replace(picture, pixels=colour, alpha=alpha)
