"""The upscaler: one image in, one upscaled image out, tiled and blended without seams.

Pixels stay in their stored integer dtype until a tile is cut out, so a large photo never exists
as a whole float image on the input side; on the output side ``FeatherCanvas`` quantises finished
rows straight into the output dtype.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from srtool.errors import ModelError, OutOfMemoryError, UsageError
from srtool.infer.blend import FeatherCanvas
from srtool.infer.onnx_session import ModelInfo, OnnxModel
from srtool.infer.tiling import DEFAULT_OVERLAP, TileGrid, plan_tiles

__all__ = ["Upscaler", "TileProgress", "auto_tile_size", "free_memory_bytes", "pad_to_multiple"]

log = logging.getLogger("srtool")

TileProgress = Callable[[int, int], None]
"""Called as ``on_tile(done, total)`` after each batch of tiles."""

MIN_TILE = 32
# Largest automatic tile on CPU. Bigger tiles save little overlap work but lose cache locality
# (see the README's performance section for the measurement behind this value).
CPU_TILE_CAP = 512
GPU_TILE_CAP = 1024
DEFAULT_CUDA_BATCH = 4


def free_memory_bytes(device: str, index: int = 0) -> int:
    """Memory available for activations on ``device`` (a conservative guess when unknown)."""
    if device == "cuda":
        smi = shutil.which("nvidia-smi")
        if smi:
            try:
                out = subprocess.run(
                    [
                        smi,
                        "--query-gpu=memory.free",
                        "--format=csv,noheader,nounits",
                        "-i",
                        str(index),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=True,
                ).stdout
                return int(out.strip().splitlines()[0]) * 1024 * 1024
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                pass
        return 4 * 1024**3
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2 * 1024**3


def auto_tile_size(info: ModelInfo, device: str, free_bytes: int, batch: int) -> int:
    """Largest tile whose activations fit a fraction of free memory, capped per device.

    The activation estimate is per input pixel, in float32: the model's measured peak
    activation when its metadata records it (``srtool export`` does), else a few feature maps of
    its width (64 when unknown); plus the upscaled output.
    """
    if info.activation_per_pixel is not None:
        activations = 2 * info.activation_per_pixel
    else:
        activations = 4 * (info.features or 64)
    bytes_per_pixel = 4 * (activations + 2 * 3 * info.scale * info.scale)
    budget = free_bytes * (0.5 if device == "cuda" else 0.25) / max(batch, 1)
    side = int(math.sqrt(max(budget, 0) / bytes_per_pixel))
    cap = GPU_TILE_CAP if device == "cuda" else CPU_TILE_CAP
    side = min(side, cap) // 32 * 32
    return max(side, MIN_TILE * 2)


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Mirror-pad the bottom and right edges so both sides are multiples of ``multiple``."""
    h, w = image.shape[:2]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not pad_h and not pad_w:
        return image
    mode = "reflect" if pad_h < h and pad_w < w else "edge"
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)


def _to_chw_float(tile: np.ndarray, in_channels: int) -> np.ndarray:
    """One HxWxC integer or float tile -> float32 CxHxW in [0, 1] with the model's channels."""
    chw = tile.transpose(2, 0, 1)
    if tile.dtype == np.float32:
        out = np.ascontiguousarray(chw)
    else:
        out = chw.astype(np.float32)
        out *= 1.0 / np.iinfo(tile.dtype).max
    if out.shape[0] == 1 and in_channels == 3:
        out = np.repeat(out, 3, axis=0)
    return out


@dataclass
class _Settings:
    tile: int | None
    batch: int


class Upscaler:
    """Runs one ONNX model over whole images of any size.

    ``tile``: ``None`` picks from free memory, ``0`` runs the whole image in one call, ``N`` uses
    windows of at most NxN input pixels. ``overlap``: input pixels shared by neighbouring windows.
    ``batch``: windows per session call (``None``: 1 on CPU, where batching does not help, and
    several on CUDA). On out-of-memory the batch, then the tile, is halved and the image retried;
    the smaller setting is kept for the rest of the run.
    """

    def __init__(
        self,
        model: OnnxModel,
        *,
        tile: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
        batch: int | None = None,
    ) -> None:
        if tile is not None and tile < 0:
            raise UsageError("--tile must be 0 (whole image), a positive size, or auto")
        if overlap < 0:
            raise UsageError("--overlap must not be negative")
        if batch is not None and batch < 1:
            raise UsageError("--batch must be at least 1")
        self.model = model
        self.overlap = overlap
        default_batch = DEFAULT_CUDA_BATCH if model.device == "cuda" else 1
        self._settings = _Settings(tile=tile, batch=batch or default_batch)
        self._free_bytes: int | None = None

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    @property
    def scale(self) -> int:
        return self.model.info.scale

    def tile_for(self, height: int, width: int) -> int:
        """The tile size used for an image of this size (0 = whole image in one call)."""
        tile = self._settings.tile
        if tile is None:
            if self._free_bytes is None:
                self._free_bytes = free_memory_bytes(self.model.device, self.model.device_index)
            tile = auto_tile_size(
                self.info, self.model.device, self._free_bytes, self._settings.batch
            )
            self._settings.tile = tile
        return tile

    def upscale(self, image: np.ndarray) -> np.ndarray:
        """float32 HxWxC in [0, 1] -> float32 (H*scale)x(W*scale)xC in [0, 1]."""
        return self.render(image, dtype=np.float32)

    def render(
        self,
        image: np.ndarray,
        *,
        dtype: np.dtype = np.float32,
        on_tile: TileProgress | None = None,
    ) -> np.ndarray:
        """Upscale an HxWxC image (C = 1 or 3; uint8, uint16 or float32 in [0, 1]).

        Returns the upscaled image in ``dtype`` (float in [0, 1], or integers at full range),
        with as many channels as the input.
        """
        if image.ndim != 3 or image.shape[2] not in (1, 3):
            raise UsageError(f"expected an HxWx1 or HxWx3 image, got shape {image.shape}")
        if self.info.in_channels == 1 and image.shape[2] == 3:
            planes = [self.render(image[:, :, c : c + 1], dtype=dtype) for c in range(3)]
            return np.concatenate(planes, axis=2)
        height, width = image.shape[:2]
        padded = pad_to_multiple(image, self.info.multiple_of)
        while True:
            tile = self.tile_for(*padded.shape[:2])
            grid = plan_tiles(
                padded.shape[0], padded.shape[1], tile, self.overlap, self.info.multiple_of
            )
            try:
                output = self._run_grid(padded, grid, dtype, on_tile)
                break
            except OutOfMemoryError:
                if not self._shrink_after_oom(grid):
                    raise
        s = self.scale
        if output.shape[0] != height * s or output.shape[1] != width * s:
            output = np.ascontiguousarray(output[: height * s, : width * s])
        return output

    def _shrink_after_oom(self, grid: TileGrid) -> bool:
        settings = self._settings
        if settings.batch > 1:
            settings.batch //= 2
            log.warning("out of memory: retrying with %d tiles per call", settings.batch)
            return True
        current = max(grid.tile_height, grid.tile_width)
        if current // 2 < MIN_TILE:
            return False
        settings.tile = current // 2
        log.warning("out of memory: retrying with %dpx tiles", settings.tile)
        return True

    def _run_grid(
        self,
        image: np.ndarray,
        grid: TileGrid,
        dtype: np.dtype,
        on_tile: TileProgress | None,
    ) -> np.ndarray:
        channels = image.shape[2]
        canvas = FeatherCanvas(grid, self.scale, channels, dtype)
        total, done = len(grid), 0
        batch = self._settings.batch
        in_channels = self.info.in_channels
        for row in range(len(grid.rows)):
            tiles = grid.row_tiles(row)
            for start in range(0, len(tiles), batch):
                chunk = tiles[start : start + batch]
                inputs = np.stack(
                    [_to_chw_float(image[t.y0 : t.y1, t.x0 : t.x1], in_channels) for t in chunk]
                )
                outputs = self.model.run(inputs)
                expected = (grid.tile_height * self.scale, grid.tile_width * self.scale)
                if outputs.shape[2:] != expected:
                    raise ModelError(
                        f"model {self.info.name} gave a {outputs.shape[3]}x{outputs.shape[2]} "
                        f"output for a {grid.tile_width}x{grid.tile_height} input: "
                        f"it is not a x{self.scale} model"
                    )
                for tile, out in zip(chunk, outputs):
                    if channels == 1 and out.shape[0] != 1:
                        out = out.mean(axis=0, keepdims=True)
                    canvas.add(tile, out)
                done += len(chunk)
                if on_tile is not None:
                    on_tile(done, total)
            canvas.finish_row(row)
        return canvas.output
