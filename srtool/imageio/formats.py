"""Format names, file suffixes and the defaults that reading and writing share.

The public tunables (pixel limit, JPEG/WebP quality, PNG compression level) and the tables that
map suffixes and aliases to the supported formats live here, below every codec module, so
that :mod:`~srtool.imageio.read`, :mod:`~srtool.imageio.write` and the format modules use one
copy without importing each other.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from srtool.errors import UsageError

DEFAULT_MAX_PIXELS = 100_000_000
"""Inputs with more pixels than this are refused before decoding (decompression-bomb guard)."""

DEFAULT_QUALITY = 95
"""JPEG/WebP quality when none is given. JPEG at >= 90 is written with 4:4:4 chroma."""

PNG_COMPRESS_LEVEL = 2
"""Deflate level for PNG (ISA-L's levels are 0-3), after the Average row filter
(:func:`srtool.imageio.png.encode_png`). Upscaling writes many large PNGs, so speed wins over the
last few percent of size; the measurements (``benchmarks/png_encode.py``) are in the README's
PNG writing section."""


FORMATS = ("png", "jpeg", "webp", "tiff", "bmp", "gif", "heic", "avif")

ANIMATION_FORMATS = frozenset({"gif", "webp", "png"})
"""Formats srtool reads and writes as animations (animated GIF, animated WebP, APNG)."""

DEFAULT_MAX_ANIMATION_PIXELS_RATIO = 4
"""An animation may hold at most ``max_pixels / DEFAULT_MAX_ANIMATION_PIXELS_RATIO`` pixels summed
over all its frames (25 MP with the default limit: 100 frames of 500x500), on top of the per-frame
``max_pixels``. The upscaled frames are kept as 8-bit RGBA until the file is encoded."""

_SUFFIX_FORMATS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".webp": "webp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
    ".gif": "gif",
    ".heic": "heic",
    ".heif": "heic",
    ".hif": "heic",
    ".avif": "avif",
}
SUPPORTED_SUFFIXES = frozenset(_SUFFIX_FORMATS)
_FORMAT_SUFFIX = {
    "png": ".png",
    "jpeg": ".jpg",
    "webp": ".webp",
    "tiff": ".tiff",
    "bmp": ".bmp",
    "gif": ".gif",
    "heic": ".heic",
    "avif": ".avif",
}
_FORMAT_ALIASES = {"jpg": "jpeg", "tif": "tiff", "heif": "heic", "hif": "heic"}
_EIGHT_BIT_FORMATS = frozenset({"jpeg", "webp", "bmp", "gif", "avif"})
_ALPHA_FORMATS = frozenset({"png", "webp", "tiff", "gif", "heic", "avif"})


# --------------------------------------------------------------------------- formats and suffixes


def _normalise_format(fmt: str) -> str:
    name = fmt.lower().lstrip(".")
    name = _FORMAT_ALIASES.get(name, name)
    if name not in _FORMAT_SUFFIX:
        raise UsageError(f"unknown image format '{fmt}' (choose from {', '.join(FORMATS)})")
    return name


def format_for_path(path: str | os.PathLike[str]) -> str:
    """The format ("png", "jpeg", "webp", "tiff", "bmp", "gif", "heic", "avif") a file name's
    suffix stands for."""
    suffix = Path(path).suffix.lower()
    try:
        return _SUFFIX_FORMATS[suffix]
    except KeyError:
        shown = suffix or "no suffix"
        raise UsageError(
            f"{path}: unsupported image type ({shown}); supported: "
            f"{', '.join(sorted(SUPPORTED_SUFFIXES))}"
        ) from None


def list_images(
    folder: str | os.PathLike[str], suffixes: Collection[str] = SUPPORTED_SUFFIXES
) -> list[Path]:
    """Image files directly in ``folder`` (``suffixes``: lower-case, with the dot), sorted by
    name, hidden files ignored; an empty list when the folder does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    )


def suffix_for_format(fmt: str) -> str:
    """The usual file suffix for a format: png -> .png, jpeg -> .jpg, tiff -> .tiff, ..."""
    return _FORMAT_SUFFIX[_normalise_format(fmt)]
