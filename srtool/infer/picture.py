"""Upscaling one picture: network passes (optionally with the x8 self-ensemble and
back-projection), ``--outscale`` and alpha.

``network_pass`` is the one network pass both commands run: ``srtool upscale`` on every pass over
a picture's colour, ``srtool evaluate`` on each benchmark image. Its two enhancements are pure
functions of arrays (float32 HxWxC in [0, 1], C = 1 or 3) around any ``upscale(img) -> img``:

* :func:`tta_upscale`: the x8 geometric self-ensemble of EDSR (Lim et al. 2017): the input is
  flipped and rotated into the 8 symmetries of the square, each is upscaled, mapped back and
  averaged. Costs 8x the time; typically +0.05 to +0.15 dB PSNR for a CNN.
* :func:`back_project`: iterative back-projection (Irani & Peleg 1991): downscale the SR result
  with the evaluation protocol's MATLAB bicubic, compare with the LR input, upscale the residual
  with bicubic and add it back, ``iterations`` times. It makes the result consistent with the
  LR under the bicubic degradation, which helps when that is how the LR was made and a model
  did not fully learn it; it cannot help (and may add ringing) on real-world LR.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from PIL import Image

from srtool.errors import SrtoolError, UsageError
from srtool.imageio import Animation, AnimationReader, Picture, as_float, from_float
from srtool.infer.upscaler import TileProgress, Upscaler
from srtool.resize import imresize

__all__ = [
    "ALPHA_MODES",
    "UpscaleFn",
    "back_project",
    "check_alpha_mode",
    "check_outscale",
    "describe",
    "enhance",
    "fit_size",
    "network_pass",
    "output_size",
    "passes_for",
    "resize_high_quality",
    "tta_upscale",
    "upscale_animation",
    "upscale_picture",
]

ALPHA_MODES = ("resize", "model")
MAX_OUTSCALE = 16
"""The largest ``--outscale``: x16 of a 100-megapixel input is already 25.6 gigapixels."""

UpscaleFn = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------ x8 ensemble and back-projection


def _forward(img: np.ndarray, k: int, flip: bool) -> np.ndarray:
    out = img[:, ::-1] if flip else img
    return np.ascontiguousarray(np.rot90(out, k, axes=(0, 1)))


def _inverse(img: np.ndarray, k: int, flip: bool) -> np.ndarray:
    out = np.rot90(img, -k, axes=(0, 1))
    return out[:, ::-1] if flip else out


def tta_upscale(upscale: UpscaleFn, img: np.ndarray) -> np.ndarray:
    """x8 self-ensemble: mean of ``upscale`` over the 8 flips/rotations, each mapped back.

    Works for any scale and non-square images (rotated inputs are simply transposed in shape).
    The mean is accumulated in float32 in a fixed order, so the result is deterministic.
    """
    if img.ndim != 3:
        raise ValueError(f"expected an HxWxC image, got shape {img.shape}")
    acc: np.ndarray | None = None
    for flip in (False, True):
        for k in range(4):
            out = _inverse(upscale(_forward(img, k, flip)), k, flip).astype(np.float32)
            if acc is None:
                acc = out.copy()
            else:
                acc += out
    assert acc is not None
    acc *= np.float32(1.0 / 8.0)
    return acc


def back_project(
    lr: np.ndarray,
    sr: np.ndarray,
    scale: int,
    iterations: int = 1,
    *,
    step: float = 1.0,
) -> np.ndarray:
    """Iterative back-projection of ``sr`` onto ``lr`` (both float in [0, 1]).

    Each iteration: ``sr += step * up(lr - down(sr))`` with MATLAB-style bicubic ``down``/``up``
    (the degradation the evaluation protocol assumes). ``sr`` must be ``scale`` times ``lr``.
    The result is clipped to [0, 1].
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if sr.shape[0] != lr.shape[0] * scale or sr.shape[1] != lr.shape[1] * scale:
        raise ValueError(f"sr {sr.shape[:2]} is not x{scale} of lr {lr.shape[:2]}")
    lr32 = lr.astype(np.float32, copy=False)
    out = sr.astype(np.float32, copy=True)
    for _ in range(iterations):
        residual = lr32 - imresize(out, size=lr.shape[:2])
        correction = imresize(residual, size=out.shape[:2])
        if correction.ndim == 2:
            correction = correction[..., None]
        out += np.float32(step) * correction.reshape(out.shape)
        np.clip(out, 0.0, 1.0, out=out)
    return out


def enhance(
    upscale: UpscaleFn,
    lr: np.ndarray,
    *,
    scale: int,
    tta: bool = False,
    back_projection: int = 0,
) -> np.ndarray:
    """``upscale(lr)`` with the optional x8 ensemble and back-projection iterations applied."""
    sr = tta_upscale(upscale, lr) if tta else upscale(lr)
    if back_projection:
        sr = back_project(lr, sr, scale, back_projection)
    return sr


def describe(tta: bool, back_projection: int) -> str:
    """A short label for reports: ``""``, ``"+TTA"``, ``"+BP2"``, ``"+TTA+BP2"``."""
    return ("+TTA" if tta else "") + (f"+BP{back_projection}" if back_projection else "")


# ------------------------------------------------------------------------ one picture


def passes_for(model_scale: int, outscale: float | None) -> int:
    """How many network passes reach ``outscale`` (then a resize trims to the exact size)."""
    if outscale is None:
        return 1
    check_outscale(outscale)
    if model_scale <= 1 or outscale <= model_scale:
        return 1
    return math.ceil(math.log(outscale) / math.log(model_scale) - 1e-9)


Fit = tuple[int | None, int | None]
"""``--width``/``--height``: the box (width, height) an output must fit in; None = unbounded."""


def fit_factor(height: int, width: int, fit: Fit) -> float:
    """The size factor that fits a ``height`` x ``width`` picture inside ``fit``, keeping its
    aspect ratio (the smaller of the two ratios when both sides are given)."""
    box_w, box_h = fit
    factors = [box / side for box, side in ((box_w, width), (box_h, height)) if box]
    if not factors:
        raise UsageError("--width/--height: give at least one of them")
    return min(factors)


def fit_size(height: int, width: int, fit: Fit) -> tuple[int, int]:
    """(height, width) of the largest size with the aspect ratio of ``height`` x ``width`` that
    fits inside ``fit`` (width, height); the bounded sides never exceed the box."""
    factor = fit_factor(height, width, fit)
    out_h, out_w = round(height * factor), round(width * factor)
    box_w, box_h = fit
    if box_w:
        out_w = min(out_w, box_w)
    if box_h:
        out_h = min(out_h, box_h)
    return max(out_h, 1), max(out_w, 1)


def output_size(
    height: int,
    width: int,
    model_scale: int,
    outscale: float | None,
    fit: Fit | None = None,
) -> tuple[int, int]:
    """The output's (height, width): inside ``fit`` when given, else ``outscale`` (the model's
    scale when None) times the input."""
    if fit is not None:
        return fit_size(height, width, fit)
    factor = model_scale if outscale is None else outscale
    return max(round(height * factor), 1), max(round(width * factor), 1)


def _fit_outscale(height: int, width: int, fit: Fit) -> float:
    """The factor for ``fit``; a picture that would need more than x16 fails (not the batch)."""
    factor = fit_factor(height, width, fit)
    if factor > MAX_OUTSCALE:
        raise SrtoolError(
            f"fitting it in the --width/--height box needs x{factor:.3g}, "
            f"more than the x{MAX_OUTSCALE} limit"
        )
    return factor


def size_plan(
    height: int, width: int, model_scale: int, outscale: float | None, fit: Fit | None = None
) -> tuple[int, tuple[int, int]]:
    """How a picture of this size is made: the network passes it takes and its final (height,
    width), for ``outscale`` (the model's scale when None) or, with ``fit``, the box."""
    if fit is not None:
        outscale = _fit_outscale(height, width, fit)
    return passes_for(model_scale, outscale), output_size(height, width, model_scale, outscale, fit)


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


def network_pass(
    image: np.ndarray,
    upscaler: Upscaler,
    *,
    tta: bool = False,
    back_projection: int = 0,
    on_tile: TileProgress | None = None,
) -> np.ndarray:
    """One pass of the network over an HxWxC image (uint8, uint16 or float32 in [0, 1]), with the
    optional x8 ensemble and back-projection iterations; the result has the image's dtype.

    Integer images without enhancements stay integers end to end (tiles are converted one at a
    time); the enhancements work on a float copy of the image, so they cost memory as well as time.
    """
    if not tta and not back_projection:
        return upscaler.render(image, dtype=image.dtype, on_tile=on_tile)

    def network(img: np.ndarray) -> np.ndarray:
        return upscaler.render(img, dtype=np.float32, on_tile=on_tile)

    result = enhance(
        network, as_float(image), scale=upscaler.scale, tta=tta, back_projection=back_projection
    )
    if image.dtype.kind == "f":
        return result
    return from_float(result, 16 if image.dtype == np.uint16 else 8)


def check_outscale(outscale: float | None) -> None:
    """``--outscale``: None (the model's scale) or a finite factor in (0, MAX_OUTSCALE]."""
    if outscale is None:
        return
    if not (math.isfinite(outscale) and 0 < outscale <= MAX_OUTSCALE):
        raise UsageError(
            f"--outscale must be a number above 0 and at most {MAX_OUTSCALE}, got {outscale:g}"
        )


def check_alpha_mode(alpha_mode: str) -> None:
    """``--alpha``: ``resize`` (bicubic) or ``model`` (through the network)."""
    if alpha_mode not in ALPHA_MODES:
        raise UsageError(f"unknown --alpha '{alpha_mode}' (choose from {', '.join(ALPHA_MODES)})")


def upscale_picture(
    picture: Picture,
    upscaler: Upscaler,
    *,
    outscale: float | None = None,
    alpha_mode: str = "resize",
    tta: bool = False,
    back_projection: int = 0,
    on_tile: TileProgress | None = None,
    fit: Fit | None = None,
) -> Picture:
    """Upscale a picture's colour (and alpha) to ``outscale`` x its size (the model's scale if
    None), or, with ``fit`` (width, height; either may be None), to the largest size of the same
    aspect ratio inside that box (``outscale`` is then ignored). Samples keep their dtype: 16-bit
    stays 16-bit, greyscale stays greyscale.

    ``tta`` (x8 self-ensemble) and ``back_projection`` (iterations) apply to the colour of every
    network pass; they work on float copies of the image, so they cost memory as well as time.
    """
    if back_projection < 0:
        raise UsageError("--back-projection must not be negative")
    check_alpha_mode(alpha_mode)
    height, width = picture.pixels.shape[:2]
    passes, target = size_plan(height, width, upscaler.scale, outscale, fit)

    colour = picture.pixels
    for _ in range(passes):
        colour = network_pass(
            colour, upscaler, tta=tta, back_projection=back_projection, on_tile=on_tile
        )
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


def upscale_animation(
    animation: AnimationReader,
    upscaler: Upscaler,
    *,
    on_frame: Callable[[int, int], None] | None = None,
    **options: object,
) -> Animation:
    """Upscale every frame of an animation through :func:`upscale_picture` (same ``options``),
    keeping each frame's duration, the loop count and the ICC profile.

    Frames are decoded one at a time; the upscaled frames are kept as 8-bit samples (never as
    float) until the file is encoded, so memory grows with the output's frames x pixels x 4 bytes,
    which the animation pixel limit bounds. ``on_frame(done, total)`` follows the frames.
    """
    frames: list[Picture] = []
    durations: list[int] = []
    for index, (frame, duration) in enumerate(animation):
        frames.append(upscale_picture(frame, upscaler, **options))  # type: ignore[arg-type]
        durations.append(duration)
        if on_frame is not None:
            on_frame(index + 1, animation.frame_count)
    return Animation(frames, durations, animation.loop, animation.format, animation.icc_profile)
