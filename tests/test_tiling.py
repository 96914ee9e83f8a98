"""Tile layout arithmetic and the feathered blend weights."""

from __future__ import annotations

import numpy as np
import pytest

from srtool.errors import UsageError
from srtool.infer.blend import WEIGHT_FLOOR, FeatherCanvas, tile_weights
from srtool.infer.tiling import axis_starts, fitted_window, plan_tiles


@pytest.mark.parametrize(
    "length,window,overlap",
    [(100, 100, 8), (101, 32, 8), (1000, 128, 16), (17, 8, 3), (2000, 426, 32), (64, 48, 40)],
)
def test_axis_starts_cover_with_overlap(length: int, window: int, overlap: int) -> None:
    starts = axis_starts(length, window, overlap)
    assert starts[0] == 0
    assert starts[-1] + min(window, length) == length
    for a, b in zip(starts, starts[1:]):
        assert a < b
        assert a + window - b >= overlap  # neighbours share at least `overlap` pixels


def test_fitted_window_shrinks_without_adding_windows() -> None:
    assert fitted_window(2000, 512, 32) == 426
    assert len(axis_starts(2000, 426, 32)) == len(axis_starts(2000, 512, 32))
    assert fitted_window(300, 512, 32) == 300
    assert fitted_window(1000, 512, 32, multiple_of=8) % 8 == 0


def test_plan_tiles_whole_image_and_grid() -> None:
    whole = plan_tiles(50, 70, 0, 16)
    assert len(whole) == 1 and whole.tile_height == 50 and whole.tile_width == 70
    grid = plan_tiles(480, 500, 128, 32)
    assert grid.tile_height <= 128 and grid.tile_width <= 128
    covered = np.zeros((480, 500), dtype=int)
    for t in grid.tiles:
        assert (t.height, t.width) == (grid.tile_height, grid.tile_width)
        covered[t.y0 : t.y1, t.x0 : t.x1] += 1
    assert covered.min() >= 1


def test_plan_tiles_rejects_bad_values() -> None:
    with pytest.raises(UsageError):
        plan_tiles(0, 10, 8, 2)
    with pytest.raises(UsageError):
        plan_tiles(10, 10, -1, 2)
    with pytest.raises(UsageError):
        plan_tiles(10, 12, 8, 2, multiple_of=4)  # not padded


def test_plan_tiles_respects_multiple_of() -> None:
    grid = plan_tiles(96, 200, 50, 8, multiple_of=4)
    assert grid.tile_height % 4 == 0 and grid.tile_width % 4 == 0


def test_weights_never_zero_and_border_edges_flat() -> None:
    grid = plan_tiles(300, 300, 100, 16)
    for tile in grid.tiles:
        rows, cols = tile_weights(grid, tile, 2)
        assert rows.min() >= WEIGHT_FLOOR and cols.min() >= WEIGHT_FLOOR
        if tile.row == 0:
            assert rows[0] == 1.0
        else:
            assert rows[0] == pytest.approx(WEIGHT_FLOOR)
        if tile.col == len(grid.cols) - 1:
            assert cols[-1] == 1.0


def test_canvas_reassembles_constant_tiles_exactly() -> None:
    """Tiles that all agree must blend back to exactly that image (weights normalise)."""
    rng = np.random.default_rng(1)
    image = rng.random((90, 110, 3), dtype=np.float32)
    scale = 2
    big = image.repeat(scale, 0).repeat(scale, 1)
    grid = plan_tiles(90, 110, 40, 12)
    canvas = FeatherCanvas(grid, scale, 3, np.float32)
    for row in range(len(grid.rows)):
        for tile in grid.row_tiles(row):
            canvas.add(
                tile,
                big[tile.y0 * 2 : tile.y1 * 2, tile.x0 * 2 : tile.x1 * 2].transpose(2, 0, 1).copy(),
            )
        canvas.finish_row(row)
    np.testing.assert_allclose(canvas.output, big, atol=1e-6)


def test_canvas_quantises_to_uint16() -> None:
    grid = plan_tiles(10, 10, 0, 0)
    canvas = FeatherCanvas(grid, 1, 1, np.uint16)
    canvas.add(grid.tiles[0], np.full((1, 10, 10), 0.5, np.float32))
    canvas.finish_row(0)
    assert canvas.output.dtype == np.uint16
    assert int(canvas.output[0, 0, 0]) == 32768
