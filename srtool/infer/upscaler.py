"""The upscaler: one image in, one upscaled image out, tiled and blended without seams.

Pixels stay in their stored integer dtype until a tile is cut out, so a large photo never exists
as a whole float image on the input side; on the output side ``FeatherCanvas`` quantises finished
rows straight into the output dtype.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from srtool.errors import ModelError, OutOfMemoryError, UsageError
from srtool.infer.blend import FeatherCanvas
from srtool.infer.onnx_session import ModelInfo, OnnxModel, cuda_free_memory
from srtool.infer.tiling import DEFAULT_OVERLAP, TileGrid, plan_tiles

__all__ = [
    "Upscaler",
    "TileProgress",
    "auto_tile_size",
    "free_memory_bytes",
    "pad_to_multiple",
    "tensor_values_per_pixel",
    "max_tile_side",
    "MAX_TENSOR_VALUES",
]

log = logging.getLogger("srtool")

TileProgress = Callable[[int, int], None]
"""Called as ``on_tile(done, total)`` after each batch of tiles."""

MIN_TILE = 32
# Largest automatic tile on CPU. Bigger tiles save little overlap work but lose cache locality
# (see the README's performance section for the measurement behind this value).
CPU_TILE_CAP = 512
GPU_TILE_CAP = 1024
DEFAULT_CUDA_BATCH = 4
#: Free GPU memory assumed when the driver cannot say: small enough for any CUDA card in use.
CUDA_FREE_GUESS = 4 * 1024**3
#: Values one tensor of a session call may hold: cuDNN's tensor descriptors refuse 2^31 and more,
#: and onnxruntime's CUDA element-wise kernels index with int32 (past it they crash or leave
#: outputs unwritten). On CPU such a tensor is 8 GiB of float32, far beyond what a tile is for.
MAX_TENSOR_VALUES = 2**31 - 1


def free_memory_bytes(device: str, index: int = 0) -> int:
    """Memory available for activations on ``device`` (a conservative guess when unknown).

    CUDA: ``cuMemGetInfo`` of device ``index`` as CUDA numbers it (``CUDA_VISIBLE_DEVICES``
    applies), through the driver library.
    """
    if device == "cuda":
        free = cuda_free_memory(index)
        if free is None:
            log.debug(
                "cannot read free memory of cuda:%d from the driver: assuming %d GiB",
                index,
                CUDA_FREE_GUESS // 1024**3,
            )
            return CUDA_FREE_GUESS
        return free
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


def tensor_values_per_pixel(info: ModelInfo) -> float:
    """Values of the largest single tensor of one call, per input pixel of one tile.

    The model's measured peak activation when its metadata records it (``srtool export`` does);
    else, as a bound, a feature map of its width (64 when unknown) at the output resolution, which
    is where ESRGAN-style nets keep full-width layers. Never less than the input or the output.
    """
    scale2 = info.scale * info.scale
    if info.activation_per_pixel is not None:
        peak = info.activation_per_pixel
    else:
        peak = (info.features or 64) * scale2
    return max(peak, 3 * scale2, info.in_channels)


def max_tile_side(info: ModelInfo, batch: int = 1) -> int:
    """Largest square tile (a multiple of the model's size rule) for which a call of ``batch``
    tiles keeps every tensor below ``MAX_TENSOR_VALUES``; 0 when not even the smallest does."""
    per_pixel = tensor_values_per_pixel(info) * max(batch, 1)
    side = math.isqrt(int(MAX_TENSOR_VALUES / per_pixel))
    while side > 0 and side * side * per_pixel >= MAX_TENSOR_VALUES:
        side -= 1
    return side // info.multiple_of * info.multiple_of


def auto_tile_size(info: ModelInfo, device: str, free_bytes: int, batch: int) -> int:
    """Largest tile whose activations fit a fraction of free memory, capped per device and so
    that no tensor of a call holds ``MAX_TENSOR_VALUES`` or more.

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
    side = max(side, MIN_TILE * 2)
    limit = max_tile_side(info, batch)
    if side > limit:  # only for models with a huge per-pixel peak: keep every tensor legal
        side = max(limit // 32 * 32 or limit, info.multiple_of)
    return side


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Mirror-pad the bottom and right edges so both sides are multiples of ``multiple``."""
    h, w = image.shape[:2]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not pad_h and not pad_w:
        return image
    mode = "reflect" if pad_h < h and pad_w < w else "edge"
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)


def _fill_chw(target: np.ndarray, tile: np.ndarray) -> None:
    """Write one HxWxC integer or float tile into ``target``, a float32 CxHxW slot of the batch
    buffer, in [0, 1] with the slot's channels (a grey tile is repeated into 3 channels). The
    same values as :func:`_to_chw_float`, without an intermediate array."""
    chw = tile.transpose(2, 0, 1)
    first = target[: chw.shape[0]]
    np.copyto(first, chw, casting="unsafe")
    if tile.dtype != np.float32:
        first *= np.float32(1.0 / np.iinfo(tile.dtype).max)
    if target.shape[0] > chw.shape[0]:
        target[chw.shape[0] :] = first[:1]


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
    the smaller setting is kept for the rest of the run. ``memory_share``: the fraction of free
    memory automatic tiles may plan with (workers that run side by side split it).
    """

    def __init__(
        self,
        model: OnnxModel,
        *,
        tile: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
        batch: int | None = None,
        memory_share: float = 1.0,
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
        self._memory_share = memory_share  # of free memory, when workers share it
        self._capped_tile = False  # warned once that a tile was cut to the tensor limit
        self._batch_buffer = np.empty((0,), dtype=np.float32)

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
                free = free_memory_bytes(self.model.device, self.model.device_index)
                self._free_bytes = int(free * self._memory_share)
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
            grid = self._within_tensor_limit(grid)
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

    def _call_values(self, grid: TileGrid, batch: int) -> float:
        """Values in the largest tensor of one call over ``grid`` (batches stay within a row)."""
        tiles = min(batch, len(grid.cols))
        return tiles * grid.tile_height * grid.tile_width * tensor_values_per_pixel(self.info)

    def _within_tensor_limit(self, grid: TileGrid) -> TileGrid:
        """``grid``, or a finer one, such that no tensor of a call reaches ``MAX_TENSOR_VALUES``.

        Fewer tiles per call first (kept for the run); when one tile alone is too big (``--tile
        0`` on a huge image, a large ``--tile N``, a model with full-width high-resolution
        layers), smaller tiles for this image, with one warning per run.
        """
        settings = self._settings
        if self._call_values(grid, settings.batch) < MAX_TENSOR_VALUES:
            return grid
        if settings.batch > 1:
            one = self._call_values(grid, 1)
            before = min(settings.batch, len(grid.cols))
            settings.batch = max(int((MAX_TENSOR_VALUES - 1) // one), 1)
            log.warning(
                "%d tiles of %dx%d per call would hold over 2^31 values in one tensor: "
                "running %d per call",
                before,
                grid.tile_width,
                grid.tile_height,
                settings.batch,
            )
            if one < MAX_TENSOR_VALUES:
                return grid
        side = max_tile_side(self.info, 1)
        if side < self.info.multiple_of or side < 1:
            raise ModelError(
                f"model {self.info.name}: even a {self.info.multiple_of}px tile would hold over "
                "2^31 values in one tensor"
            )
        log_fn = log.debug if self._capped_tile else log.warning
        self._capped_tile = True
        log_fn(
            "a %dx%d tile would hold over 2^31 values in one tensor of %s: using %dpx tiles",
            grid.tile_width,
            grid.tile_height,
            self.info.name,
            side,
        )
        return plan_tiles(grid.height, grid.width, side, self.overlap, self.info.multiple_of)

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

    def _input_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 NCHW batch array kept across calls (and images) of one tile shape: tiles
        are written straight into it instead of being stacked into a fresh array each call."""
        if self._batch_buffer.shape != shape:
            self._batch_buffer = np.empty(shape, dtype=np.float32)
        return self._batch_buffer

    def _run_grid(
        self,
        image: np.ndarray,
        grid: TileGrid,
        dtype: np.dtype,
        on_tile: TileProgress | None,
    ) -> np.ndarray:
        """Run every tile, ``batch`` tiles per call in row-major order: a call may hold the end
        of one row and the start of the next (the canvas is told when each row is complete)."""
        channels = image.shape[2]
        canvas = FeatherCanvas(grid, self.scale, channels, dtype)
        tiles = grid.tiles
        total = len(tiles)
        batch = min(self._settings.batch, total)
        last_col = len(grid.cols) - 1
        buffer = self._input_buffer(
            (batch, self.info.in_channels, grid.tile_height, grid.tile_width)
        )
        for start in range(0, total, batch):
            chunk = tiles[start : start + batch]
            inputs = buffer[: len(chunk)]
            for slot, t in zip(inputs, chunk):
                _fill_chw(slot, image[t.y0 : t.y1, t.x0 : t.x1])
            outputs = self.model.run(inputs)
            self._check_output(outputs, grid)
            for tile, out in zip(chunk, outputs):
                if channels == 1 and out.shape[0] != 1:
                    out = out.mean(axis=0, keepdims=True)
                canvas.add(tile, out)
                if tile.col == last_col:
                    canvas.finish_row(tile.row)
            if on_tile is not None:
                on_tile(start + len(chunk), total)
        return canvas.output

    def _check_output(self, outputs: np.ndarray, grid: TileGrid) -> None:
        expected = (grid.tile_height * self.scale, grid.tile_width * self.scale)
        if outputs.shape[2:] != expected:
            raise ModelError(
                f"model {self.info.name} gave a {outputs.shape[3]}x{outputs.shape[2]} "
                f"output for a {grid.tile_width}x{grid.tile_height} input: "
                f"it is not a x{self.scale} model"
            )

    # -- several images per call --------------------------------------------------------------
    def images_per_call(self, height: int, width: int, channels: int = 3) -> int:
        """How many images of this size :meth:`render_many` runs per session call: the batch
        when one tile covers such an image (a video frame, a small photo), else 1."""
        if self._settings.batch <= 1 or (self.info.in_channels == 1 and channels == 3):
            return 1
        padded_h = -(-height // self.info.multiple_of) * self.info.multiple_of
        padded_w = -(-width // self.info.multiple_of) * self.info.multiple_of
        tile = self.tile_for(padded_h, padded_w)
        if tile and (padded_h > tile or padded_w > tile):
            return 1
        return self._settings.batch

    def render_many(self, images: list[np.ndarray], *, dtype: np.dtype) -> list[np.ndarray]:
        """:meth:`render` for several images of one size, as few session calls as
        :meth:`images_per_call` allows; the same pixels as rendering them one by one."""
        if not images:
            return []
        height, width, channels = images[0].shape
        per_call = self.images_per_call(height, width, channels)
        if per_call <= 1 or any(image.shape != images[0].shape for image in images):
            return [self.render(image, dtype=dtype) for image in images]
        try:
            return self._render_whole_batched(images, dtype, per_call)
        except OutOfMemoryError:
            if not self._shrink_after_oom(
                plan_tiles(
                    *pad_to_multiple(images[0], self.info.multiple_of).shape[:2],
                    0,
                    self.overlap,
                    self.info.multiple_of,
                )
            ):
                raise
            return [self.render(image, dtype=dtype) for image in images]

    def _render_whole_batched(
        self, images: list[np.ndarray], dtype: np.dtype, per_call: int
    ) -> list[np.ndarray]:
        height, width, channels = images[0].shape
        s = self.scale
        results: list[np.ndarray] = []
        for start in range(0, len(images), per_call):
            group = [
                pad_to_multiple(image, self.info.multiple_of)
                for image in images[start : start + per_call]
            ]
            grid = plan_tiles(*group[0].shape[:2], 0, self.overlap, self.info.multiple_of)
            buffer = self._input_buffer(
                (per_call, self.info.in_channels, grid.tile_height, grid.tile_width)
            )
            inputs = buffer[: len(group)]
            for slot, image in zip(inputs, group):
                _fill_chw(slot, image)
            outputs = self.model.run(inputs)
            self._check_output(outputs, grid)
            for out in outputs:
                if channels == 1 and out.shape[0] != 1:
                    out = out.mean(axis=0, keepdims=True)
                canvas = FeatherCanvas(grid, s, channels, dtype)
                canvas.add(grid.tiles[0], out)
                result = canvas.output
                if result.shape[0] != height * s or result.shape[1] != width * s:
                    result = np.ascontiguousarray(result[: height * s, : width * s])
                results.append(result)
        return results
