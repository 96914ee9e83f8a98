"""Tile layout: pure arithmetic on integers, no arrays.

An image of ``height x width`` low-resolution pixels is covered by windows of one common size, so
that several windows can go through the network in one batched call. Neighbouring windows overlap
by at least ``overlap`` pixels, which gives every output pixel real context and room for the
feathered blend (see ``blend.py``). Windows are spread evenly, so the overlap is shared out instead
of piling up on the last row or column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from srtool.errors import UsageError

__all__ = [
    "DEFAULT_OVERLAP",
    "Tile",
    "TileGrid",
    "plan_tiles",
    "axis_starts",
    "fitted_window",
    "round_to_multiple",
]

DEFAULT_OVERLAP = 32
"""Input pixels neighbouring windows share unless told otherwise: ``srtool upscale`` and
``srtool evaluate`` both tile with it (the CLI takes its ``--overlap`` default from here)."""


@dataclass(frozen=True)
class Tile:
    """One window in input (low-resolution) pixel coordinates, half-open ``[y0, y1) x [x0, x1)``."""

    y0: int
    y1: int
    x0: int
    x1: int
    row: int
    col: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0


@dataclass(frozen=True)
class TileGrid:
    """Windows covering an image, row by row; all windows share one size."""

    height: int
    width: int
    tile_height: int
    tile_width: int
    overlap: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @property
    def tiles(self) -> list[Tile]:
        return [
            Tile(y, y + self.tile_height, x, x + self.tile_width, r, c)
            for r, y in enumerate(self.rows)
            for c, x in enumerate(self.cols)
        ]

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def row_tiles(self, row: int) -> list[Tile]:
        y = self.rows[row]
        return [
            Tile(y, y + self.tile_height, x, x + self.tile_width, row, c)
            for c, x in enumerate(self.cols)
        ]


def round_to_multiple(value: int, multiple: int) -> int:
    """Round ``value`` up to a multiple of ``multiple``."""
    return -(-value // multiple) * multiple


def axis_starts(length: int, window: int, overlap: int) -> tuple[int, ...]:
    """Start offsets of windows of size ``window`` covering ``[0, length)``.

    Consecutive windows overlap by at least ``overlap``; the first starts at 0, the last ends at
    ``length`` and the rest are spread evenly between them.
    """
    if window >= length:
        return (0,)
    if overlap >= window:
        raise UsageError(f"overlap ({overlap}) must be smaller than the tile size ({window})")
    count = math.ceil((length - overlap) / (window - overlap))
    count = max(count, 2)
    last = length - window
    return tuple(round(i * last / (count - 1)) for i in range(count))


def plan_tiles(height: int, width: int, tile: int, overlap: int, multiple_of: int = 1) -> TileGrid:
    """Plan windows of at most ``tile x tile`` over an image (``tile == 0``: the whole image).

    The image must already be padded to a multiple of ``multiple_of``; window sizes are kept at
    multiples of it so every window satisfies the model's size rule.
    """
    if height <= 0 or width <= 0:
        raise UsageError(f"cannot tile an empty image ({width}x{height})")
    if tile < 0 or overlap < 0:
        raise UsageError("tile size and overlap must not be negative")
    if height % multiple_of or width % multiple_of:
        raise UsageError(f"image {width}x{height} is not padded to a multiple of {multiple_of}")
    if tile == 0:
        tile_h, tile_w = height, width
    else:
        tile = max(round_to_multiple(tile, multiple_of), multiple_of)
        overlap = min(overlap, max(tile - multiple_of, 0))
        tile_h = fitted_window(height, tile, overlap, multiple_of)
        tile_w = fitted_window(width, tile, overlap, multiple_of)
    return TileGrid(
        height=height,
        width=width,
        tile_height=tile_h,
        tile_width=tile_w,
        overlap=overlap,
        rows=axis_starts(height, tile_h, overlap),
        cols=axis_starts(width, tile_w, overlap),
    )


def fitted_window(length: int, tile: int, overlap: int, multiple_of: int = 1) -> int:
    """The smallest window (<= ``tile``) that covers ``length`` with as few windows as ``tile``.

    Windows of exactly ``tile`` would often overshoot: 2000 px in 512 px windows with 32 px
    overlap needs five windows, which 426 px windows cover just as well with far less overlap.
    """
    if tile >= length:
        return length
    count = math.ceil((length - overlap) / (tile - overlap))
    window = math.ceil((length - overlap) / count) + overlap
    return min(round_to_multiple(window, multiple_of), tile)
