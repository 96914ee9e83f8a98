"""Reduced-precision variants of an exported fp32 ONNX model: fp16 for GPUs, static int8 for CPUs.

fp16: weights and activations in half precision with float32 inputs and outputs (onnxruntime's
own converter, ``keep_io_types=True``), so callers feed the same arrays as for fp32. Halves the
file and, on GPUs with tensor cores, roughly doubles speed; on CPUs it brings nothing.

int8: static QDQ quantisation with per-channel weight scales (onnxruntime.quantization), only the
convolutions quantised (element-wise ops, the nearest-neighbour skip and the pixel shuffle stay in
float, where quantising brings no speed and costs accuracy). Activation ranges are calibrated on
real photos — random crops at the size the model will see them — with the 99.99th-percentile
method: plain min/max ranges are stretched by rare outliers, which measurably costs PSNR on SR nets
(0.18 dB vs 0.05 dB on a 16-conv Compact x4, Set5). The cost is then *measured*: PSNR on an
HR image folder (Set5 by default in the CLI docs) with bicubic-downscaled inputs, fp32 against
int8, plus wall time of both sessions on the same inputs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from srtool.errors import DataError, ModelError
from srtool.imageio import SUPPORTED_SUFFIXES, from_float, list_images, read_image, to_8bit
from srtool.metrics import psnr
from srtool.resize import imresize

__all__ = [
    "Int8Measurement",
    "calibration_crops",
    "conv_tensors",
    "measure_int8",
    "qat_overrides",
    "to_fp16",
    "to_int8",
    "toposort",
]

log = logging.getLogger("srtool")

LR_RESIZE = "srtool.resize.imresize (MATLAB bicubic)"


def toposort(graph: Any) -> None:
    """Order ``graph.node`` topologically in place (some converters append nodes at the end)."""
    available = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ModelError(f"ONNX graph has unresolvable inputs at node {rest[0].name}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def to_fp16(model: Any) -> Any:
    """An fp16 copy of an fp32 ONNX model whose inputs and outputs stay float32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    source = onnx.ModelProto()
    source.CopyFrom(model)
    # Stale float32 shape annotations would contradict the converted types; ORT re-infers them.
    del source.graph.value_info[:]
    converted = convert_float_to_float16(source, keep_io_types=True)
    del converted.graph.value_info[:]
    toposort(converted.graph)
    return converted


# -- images -----------------------------------------------------------------------------------


def _images_in(folder: Path) -> list[Path]:
    """Image files directly in ``folder``; an unusable folder is a :class:`DataError`."""
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    files = list_images(folder)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(sorted(SUPPORTED_SUFFIXES))})")
    return files


def _read_uint8(path: Path, channels: int) -> np.ndarray:
    """An 8-bit HxWxC array (C = ``channels``: 3 RGB, 1 grey); alpha is dropped."""
    pixels = to_8bit(np.asarray(read_image(path).pixels))
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if channels == 3 and pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    elif channels == 1 and pixels.shape[2] >= 3:
        rgb = pixels[..., :3].astype(np.float32)
        grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        pixels = np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None]
    return np.ascontiguousarray(pixels[..., :channels])


def calibration_crops(
    folder: Path, *, channels: int, crop: int, count: int, multiple_of: int = 1, seed: int = 0
) -> list[np.ndarray]:
    """``count`` seeded random ``crop``-sized crops, float32 1xCxHxW in [0, 1], spread over the
    folder's images (round robin, so every image contributes)."""
    crop = max(multiple_of, crop // multiple_of * multiple_of)
    rng = np.random.default_rng(seed)
    files = _images_in(folder)
    crops: list[np.ndarray] = []
    for i in range(count):
        img = _read_uint8(files[i % len(files)], channels)
        h, w = img.shape[:2]
        ch, cw = (
            min(crop, h // multiple_of * multiple_of),
            min(crop, w // multiple_of * multiple_of),
        )
        if ch < multiple_of or cw < multiple_of:
            continue
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        patch = img[y : y + ch, x : x + cw].astype(np.float32) / 255.0
        crops.append(np.ascontiguousarray(patch.transpose(2, 0, 1)[None]))
    if not crops:
        raise DataError(f"{folder}: images are too small to calibrate on")
    return crops


# -- int8 -------------------------------------------------------------------------------------


def to_int8(
    fp32_path: Path,
    out_path: Path,
    crops: list[np.ndarray],
    *,
    input_name: str = "lr",
    percentile: float = 99.99,
    ranges: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    keep_float: Sequence[str] = (),
) -> None:
    """Static QDQ int8 quantisation of the convolutions, per-channel weights, calibrated on
    ``crops``. Writes ``out_path`` (callers write to a temporary path and move it).

    ``ranges`` (``{conv module name: {"input": [lo, hi], "output": [lo, hi]}}``, what
    quantisation-aware training recorded, see :mod:`srtool.train.qat`) replace the calibrated
    ranges of those tensors; ``keep_float`` names convolutions left in float. Convolutions are
    found by their weight's name (``<module>.weight``, as the exporter names initialisers)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items: Iterator[np.ndarray] = iter(crops)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self._items, None)
            return None if item is None else {input_name: item}

    prepared = out_path.with_name(out_path.stem + ".pre.onnx")
    try:
        # Folds constants and fixes shapes so each Conv gets its own QDQ pair.
        chatter = io.StringIO()  # onnxruntime.quantization prints its progress
        with contextlib.redirect_stdout(chatter):
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        extra: dict[str, Any] = {"CalibPercentile": percentile}
        exclude: list[str] = []
        if ranges or keep_float:
            overrides, exclude = qat_overrides(prepared, ranges or {}, keep_float)
            extra["TensorQuantOverrides"] = overrides
        with contextlib.redirect_stdout(chatter):
            quantize_static(
                str(prepared),
                str(out_path),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["Conv"],
                nodes_to_exclude=exclude,
                calibrate_method=CalibrationMethod.Percentile,
                extra_options=extra,
            )
        for line in chatter.getvalue().splitlines():
            log.debug("quantisation: %s", line)
    except ModelError:
        raise
    except Exception as exc:  # onnxruntime.quantization raises assorted types
        raise ModelError(f"int8 quantisation failed: {type(exc).__name__}: {exc}") from exc
    finally:
        prepared.unlink(missing_ok=True)


def conv_tensors(model_path: Path) -> dict[str, tuple[str, str, str]]:
    """``{module name: (node name, input tensor, output tensor)}`` of an ONNX graph's Conv
    nodes, the module named after the weight initialiser (``blocks.0.convs.1.weight``)."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    found = {}
    for node in graph.node:
        weight = node.input[1] if node.op_type == "Conv" and len(node.input) > 1 else ""
        if weight.endswith(".weight"):
            found[weight.removesuffix(".weight")] = (node.name, node.input[0], node.output[0])
    return found


def qat_overrides(
    model_path: Path,
    ranges: Mapping[str, Mapping[str, Sequence[float]]],
    keep_float: Sequence[str],
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """onnxruntime ``TensorQuantOverrides`` (``rmin``/``rmax`` per activation tensor) and the
    Conv nodes to leave in float, for the ranges a quantisation-aware run recorded."""
    convs = conv_tensors(model_path)
    missing = sorted(set(ranges) - set(convs)) + sorted(set(keep_float) - set(convs))
    if missing:
        raise ModelError(
            f"int8: the checkpoint's quantisation ranges name convolutions the ONNX graph lacks "
            f"({', '.join(missing[:4])}); export without them (--int8-recalibrate)"
        )
    overrides: dict[str, list[dict[str, Any]]] = {}
    for module, entry in ranges.items():
        _, tensor_in, tensor_out = convs[module]
        for tensor, key in ((tensor_out, "output"), (tensor_in, "input")):
            if key in entry and tensor not in overrides:
                lo, hi = (float(v) for v in entry[key])
                overrides[tensor] = [
                    {"rmin": np.array(lo, dtype=np.float32), "rmax": np.array(hi, dtype=np.float32)}
                ]
    return overrides, [convs[m][0] for m in keep_float]


@dataclass(frozen=True)
class Int8Measurement:
    """PSNR (Y channel, dB, ``scale`` pixels cropped) and wall time of fp32 vs int8."""

    images: int
    psnr_fp32: float
    psnr_int8: float
    seconds_fp32: float
    seconds_int8: float
    lr_resize: str
    #: int8 output against fp32 output (RGB, [0, 1], unrounded) over all images.
    fidelity_psnr: float
    fidelity_max_abs: float

    @property
    def psnr_delta(self) -> float:
        return self.psnr_int8 - self.psnr_fp32

    @property
    def speedup(self) -> float:
        return self.seconds_fp32 / self.seconds_int8 if self.seconds_int8 > 0 else math.nan


def measure_int8(
    run_fp32: Callable[[np.ndarray], np.ndarray],
    run_int8: Callable[[np.ndarray], np.ndarray],
    folder: Path,
    *,
    scale: int,
    channels: int,
    multiple_of: int = 1,
    repeats: int = 3,
) -> Int8Measurement:
    """PSNR cost and speed-up of int8 over fp32 on the HR images in ``folder``.

    Each HR image is cropped to a multiple of ``scale * multiple_of``, downscaled by bicubic,
    upscaled by both models, rounded to uint8 and compared with the HR image (design.md §4).
    Timing: the two sessions alternate on each image ``repeats`` times and the fastest run of
    each counts, which keeps the comparison fair on a busy machine.
    """
    unit = scale * multiple_of
    p32, p8, t32, t8 = [], [], 0.0, 0.0
    sq_err, count, max_abs = 0.0, 0, 0.0
    for path in _images_in(folder):
        hr = _read_uint8(path, channels)
        h, w = hr.shape[0] // unit * unit, hr.shape[1] // unit * unit
        if h == 0 or w == 0:
            continue
        hr = hr[:h, :w]
        lr = np.asarray(imresize(hr, 1.0 / scale), dtype=np.uint8)
        batch = np.ascontiguousarray(lr.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        best = {"fp32": math.inf, "int8": math.inf}
        outputs: dict[str, np.ndarray] = {}
        for _ in range(max(repeats, 1)):
            for name, run in (("fp32", run_fp32), ("int8", run_int8)):
                start = time.perf_counter()
                outputs[name] = run(batch)
                best[name] = min(best[name], time.perf_counter() - start)
        t32, t8 = t32 + best["fp32"], t8 + best["int8"]
        diff = outputs["int8"].astype(np.float64) - outputs["fp32"].astype(np.float64)
        sq_err, count = sq_err + float(np.sum(diff**2)), count + diff.size
        max_abs = max(max_abs, float(np.max(np.abs(diff))))
        for name, scores in (("fp32", p32), ("int8", p8)):
            sr = from_float(outputs[name][0].transpose(1, 2, 0), 8)
            scores.append(float(psnr(sr, hr, crop_border=scale, y_only=channels == 3)))
    if not p32:
        raise DataError(f"{folder}: no image large enough to measure on")
    return Int8Measurement(
        images=len(p32),
        psnr_fp32=float(np.mean(p32)),
        psnr_int8=float(np.mean(p8)),
        seconds_fp32=t32,
        seconds_int8=t8,
        lr_resize=LR_RESIZE,
        fidelity_psnr=math.inf if sq_err == 0 else 10.0 * math.log10(count / sq_err),
        fidelity_max_abs=max_abs,
    )
