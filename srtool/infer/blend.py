"""Feathered blending of overlapping tile outputs into one image, finished band by band.

Each tile's output is weighted by a separable raised-cosine ramp across the overlap it shares with
a neighbour, and the weight never reaches zero (``WEIGHT_FLOOR``), so no output pixel is left
without a contribution and no seam line appears where a pure tent window would give zero weight.
The sum is normalised by the summed weights.

Tiles arrive row by row. Once a row is done, output rows that no later tile touches are final:
they are normalised, quantised to the output dtype and stored, and the float accumulator moves
down. So the float working memory is one band of tiles, not the whole upscaled image.
"""

from __future__ import annotations

import numpy as np

from srtool.infer.tiling import Tile, TileGrid

__all__ = ["WEIGHT_FLOOR", "feather_ramp", "tile_weights", "FeatherCanvas"]

WEIGHT_FLOOR = 1e-3


def feather_ramp(length: int) -> np.ndarray:
    """Raised-cosine ramp rising from ``WEIGHT_FLOOR`` towards 1 over ``length`` samples."""
    position = (np.arange(length, dtype=np.float64) + 0.5) / length
    ramp = 0.5 - 0.5 * np.cos(np.pi * position)
    return (WEIGHT_FLOOR + (1.0 - WEIGHT_FLOOR) * ramp).astype(np.float32)


def _axis_weights(size: int, overlap: int, feather_start: bool, feather_end: bool) -> np.ndarray:
    """Weights along one axis of a tile of ``size`` output pixels.

    At a feathered edge the outer quarter of the overlap keeps the floor weight (those pixels saw
    the zero padding beyond the tile edge), the middle half rises as a raised cosine, and the
    rest is 1. Two neighbours overlapping by ``overlap`` thus cross-fade in the middle of their
    shared band, each fading out before its own edge.
    """
    weights = np.ones(size, dtype=np.float32)
    overlap = min(overlap, size // 2 if feather_start and feather_end else size)
    if overlap <= 0:
        return weights
    margin = overlap // 4
    ramp = np.full(overlap, WEIGHT_FLOOR, dtype=np.float32)
    ramp[margin : overlap - margin] = feather_ramp(overlap - 2 * margin)
    ramp[overlap - margin :] = 1.0
    if feather_start:
        weights[:overlap] = ramp
    if feather_end:
        weights[size - overlap :] = np.minimum(weights[size - overlap :], ramp[::-1])
    return weights


def tile_weights(grid: TileGrid, tile: Tile, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column weights (output resolution) of one tile; the 2-D weight is their product.

    Edges on the image border keep weight 1: only edges shared with a neighbour are feathered.
    """
    overlap = grid.overlap * scale
    rows = _axis_weights(tile.height * scale, overlap, tile.row > 0, tile.row < len(grid.rows) - 1)
    cols = _axis_weights(tile.width * scale, overlap, tile.col > 0, tile.col < len(grid.cols) - 1)
    return rows, cols


def _store_chw(target_hwc: np.ndarray, values_chw: np.ndarray) -> None:
    """Write float CHW samples into an HWC array of any dtype, clipping and rounding in place.

    ``values_chw`` is scratch: it is overwritten. One pass converts, transposes and stores.
    """
    dtype = target_hwc.dtype
    if dtype.kind == "f":
        np.clip(values_chw, 0.0, 1.0, out=values_chw)
    else:
        peak = float(np.iinfo(dtype).max)
        values_chw *= peak
        values_chw += 0.5
        np.clip(values_chw, 0.0, peak + 0.49, out=values_chw)
    np.copyto(target_hwc, values_chw.transpose(1, 2, 0), casting="unsafe")


class FeatherCanvas:
    """Accumulates weighted tile outputs of one image and emits finished rows in ``dtype``.

    Tile outputs arrive as float32 CxHxW (the network's layout) and are accumulated in that
    layout; the conversion to the HxWxC output happens once per finished band.
    """

    def __init__(self, grid: TileGrid, scale: int, channels: int, dtype: np.dtype) -> None:
        self.grid = grid
        self.scale = scale
        self.output = np.empty((grid.height * scale, grid.width * scale, channels), dtype=dtype)
        self._single = len(grid) == 1
        band_height = grid.tile_height * scale
        if self._single:  # one tile covers the image: no blending to do
            self._band = np.empty((0, 0, 0), dtype=np.float32)
            self._weight = np.empty((0, 0), dtype=np.float32)
        else:
            self._band = np.zeros((channels, band_height, grid.width * scale), dtype=np.float32)
            self._weight = np.zeros((band_height, grid.width * scale), dtype=np.float32)
        self._band_top = 0
        self._cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray] | None] = {}
        self._scratch = np.empty((0, 0), dtype=np.float32)

    def _weights(self, tile: Tile) -> np.ndarray | None:
        """This tile's 2-D feather weights (None where they are all 1), in a scratch buffer
        that the next call overwrites. Only the 1-D profiles are cached: caching 2-D weights
        per tile would hold a float32 copy of the whole output."""
        key = (tile.row, tile.col)
        if key not in self._cache:
            rows, cols = tile_weights(self.grid, tile, self.scale)
            flat = rows.min() == 1.0 and cols.min() == 1.0
            self._cache[key] = None if flat else (rows, cols)
        profiles = self._cache[key]
        if profiles is None:
            return None
        rows, cols = profiles
        if self._scratch.shape != (rows.size, cols.size):
            self._scratch = np.empty((rows.size, cols.size), dtype=np.float32)
        return np.multiply.outer(rows, cols, out=self._scratch)

    def add(self, tile: Tile, pixels: np.ndarray) -> None:
        """Add one tile's output: float32 ``channels x tile.height*scale x tile.width*scale``.

        ``pixels`` is used as scratch space and must not be used by the caller afterwards.
        """
        if self._single:
            _store_chw(self.output, pixels)
            return
        s = self.scale
        if tile.y0 * s != self._band_top:
            raise ValueError("tiles must be added row by row, finishing each row before the next")
        x0, x1 = tile.x0 * s, tile.x1 * s
        weight = self._weights(tile)
        if weight is None:
            self._band[:, :, x0:x1] += pixels
            self._weight[:, x0:x1] += 1.0
        else:
            pixels *= weight
            self._band[:, :, x0:x1] += pixels
            self._weight[:, x0:x1] += weight

    def finish_row(self, row: int) -> None:
        """Finalise the output rows that tiles of later rows no longer touch."""
        if self._single:
            return
        s = self.scale
        rows = self.grid.rows
        next_top = rows[row + 1] * s if row + 1 < len(rows) else self.grid.height * s
        done = next_top - self._band_top
        finished = self._band[:, :done]
        finished /= self._weight[:done]
        _store_chw(self.output[self._band_top : next_top], finished)
        keep = self._band.shape[1] - done
        self._band[:, :keep] = self._band[:, done:]
        self._band[:, keep:] = 0.0
        self._weight[:keep] = self._weight[done:]
        self._weight[keep:] = 0.0
        self._band_top = next_top
