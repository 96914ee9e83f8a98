"""onnxruntime sessions: provider choice, thread counts, model metadata and batched runs.

``OnnxModel.run`` takes and returns float32 NCHW batches in [0, 1] and hides the model's own
input/output names, dtypes and value range. It does not see images: the array <-> tensor
conversion happens at two points of the upscaler, ``upscaler._fill_chw`` (an HxWxC integer or
float tile -> a float32 CxHxW slot of the reused batch buffer) and ``blend._store_chw`` (blended
float CxHxW -> HxWxC rows in the output dtype). Runs of an input shape seen before go through IO
binding with kept buffers (:class:`_BoundRuns`).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import math
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from srtool.errors import DeviceError, ModelError, OutOfMemoryError, first_line

__all__ = [
    "ModelInfo",
    "OnnxModel",
    "read_metadata",
    "cuda_device_count",
    "cuda_free_memory",
    "preload_cuda_libraries",
    "cpu_thread_count",
    "parse_device",
    "expand_devices",
]

log = logging.getLogger("srtool")

_PROBE_SIZE = 16
MAX_SCALE = 16
MAX_MULTIPLE_OF = 64
MAX_FEATURES = 4096
MAX_ACTIVATION = 1e9  # peak activation values per input pixel
MAX_VALUE = 65535.0  # the widest value range: 16-bit samples
# How an allocation failure reads in onnxruntime's messages: its arenas ("Failed to allocate memory
# for requested buffer"), the CUDA runtime ("CUDA failure 2: out of memory",
# cudaErrorMemoryAllocation), cuBLAS / cuDNN / cuFFT / cuRAND handles and workspaces
# (CUBLAS_STATUS_ALLOC_FAILED, CUDNN_STATUS_ALLOC_FAILED, cuDNN 9's
# CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED, CURAND_STATUS_ALLOCATION_FAILED) and the
# host (std::bad_alloc). All of them are worth a retry with smaller tiles.
_OOM_MARKERS = (
    "out of memory",
    "failed to allocate",
    "cudaerrormemoryallocation",
    "bad_alloc",
    "alloc_failed",
    "allocation_failed",
    "allocation failed",
)


@dataclass(frozen=True)
class ModelInfo:
    """What the upscaler needs to know about a model, read from its metadata or probed."""

    name: str
    path: Path
    scale: int
    in_channels: int = 3
    multiple_of: int = 1
    arch: str = "unknown"
    value_range: tuple[float, float] = (0.0, 1.0)
    features: int | None = None
    activation_per_pixel: float | None = None  # peak activation values per input pixel
    metadata: dict[str, str] = field(default_factory=dict)


def _quiet_logs(ort: Any) -> int:
    """onnxruntime writes its own log lines (with raw colour codes) straight to stderr; every
    failure srtool cares about also comes back as an exception, reported in one line. Show only
    fatal ones, or errors too when srtool logs at debug level (``--verbose``). Returns the
    severity for a session's options and sets it for onnxruntime's default logger."""
    severity = 3 if log.isEnabledFor(logging.DEBUG) else 4
    try:
        ort.set_default_logger_severity(severity)
    except Exception as exc:  # noqa: BLE001 - an older onnxruntime: keep its default
        log.debug("onnxruntime.set_default_logger_severity failed: %s", exc)
    return severity


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file, read through onnxruntime (no onnx package needed)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = _quiet_logs(ort)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
        raise ModelError(f"cannot load ONNX model {path}: {first_line(exc)}") from exc
    return dict(session.get_modelmeta().custom_metadata_map)


def _int_meta(
    path: Path, meta: dict[str, str], key: str, default: int | None, low: int, high: int
) -> int | None:
    """An integer metadata value in [low, high], or ``default`` when the key is absent."""
    if key not in meta:
        return default
    text = meta[key]
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ModelError(
            f"{path.name}: bad metadata {key}={text[:40]!r} (an integer from {low} to {high})"
        )
    return value


def _float_meta(path: Path, meta: dict[str, str], key: str, high: float) -> float | None:
    """A finite positive metadata number up to ``high``, or None when the key is absent."""
    if key not in meta:
        return None
    text = meta[key]
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= high):
        raise ModelError(
            f"{path.name}: bad metadata {key}={text[:40]!r} (a positive number up to {high:g})"
        )
    return value


_RANGE = re.compile(r"\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*-\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*")


def _value_range(path: Path, meta: dict[str, str]) -> tuple[float, float]:
    """``srtool.value_range``: "LOW-HIGH" (default "0-1"), finite, HIGH - LOW at least 1, both
    within +-65535 (e.g. "0-1", "0-255", "-1-1")."""
    key = "srtool.value_range"
    text = meta.get(key, "0-1")
    match = _RANGE.fullmatch(text)
    try:
        low, high = (float(match.group(1)), float(match.group(2))) if match else (0.0, 0.0)
    except ValueError:
        low = high = 0.0
    if not (-MAX_VALUE <= low and low + 1 <= high <= MAX_VALUE):
        raise ModelError(
            f"{path.name}: bad metadata {key}={text[:40]!r} "
            "(LOW-HIGH with HIGH - LOW >= 1, e.g. 0-1 or 0-255)"
        )
    return low, high


def cpu_thread_count() -> int:
    """Cores this process may use (respects affinity masks and container CPU sets)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def cuda_driver() -> ctypes.CDLL | None:
    """The NVIDIA driver library, initialised; None when there is none (or it cannot start)."""
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        return driver if driver.cuInit(0) == 0 else None
    return None


def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports; 0 when there is no driver or no device.

    onnxruntime-gpu lists the CUDA provider whether or not a GPU exists, so ask the driver.
    """
    driver = cuda_driver()
    count = ctypes.c_int(0)
    if driver is None or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def context_free_memory(driver: ctypes.CDLL, device: ctypes.c_int) -> int | None:
    """Free memory of one device, asked through its primary context, which is released again
    (onnxruntime's sessions share that context, so this neither creates a second one nor tears
    theirs down). None when the driver cannot say."""
    try:
        ctx = ctypes.c_void_p()
        if driver.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), device) != 0:
            return None
        try:
            if driver.cuCtxPushCurrent_v2(ctx) != 0:
                return None
            free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
            ok = driver.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)) == 0
            driver.cuCtxPopCurrent_v2(ctypes.byref(ctypes.c_void_p()))
            return free.value if ok else None
        finally:
            release = getattr(driver, "cuDevicePrimaryCtxRelease_v2", None)
            release = release or getattr(driver, "cuDevicePrimaryCtxRelease", None)
            if release is not None:
                release(device)
    except AttributeError:  # a driver library without these entry points
        return None


def cuda_free_memory(index: int = 0) -> int | None:
    """Free memory of CUDA device ``index`` in bytes, from the driver API (``cuMemGetInfo``).

    The driver numbers devices as CUDA programs see them, honouring ``CUDA_VISIBLE_DEVICES`` and
    ``CUDA_DEVICE_ORDER`` (``nvidia-smi -i N`` does not). None when there is no driver, no such
    device, or the driver cannot say.
    """
    driver = cuda_driver()
    if driver is None:
        return None
    device = ctypes.c_int(0)
    try:
        if driver.cuDeviceGet(ctypes.byref(device), index) != 0:
            return None
    except AttributeError:
        return None
    return context_free_memory(driver, device)


def preload_cuda_libraries(ort: Any) -> None:
    """onnxruntime's loader for pip-installed CUDA libraries (``onnxruntime.preload_dlls``), run
    before any CUDA session; what it prints about missing libraries never reaches the user (the
    session's provider check reports the failure instead)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            preload()
        except Exception as exc:  # noqa: BLE001 - missing CUDA wheels: the session reports it
            log.debug("onnxruntime.preload_dlls failed: %s", exc)


def parse_device(device: str) -> tuple[str, int]:
    """``auto | cpu | cuda | cuda:N`` -> (kind, index)."""
    device = device.strip().lower()
    if device in ("auto", "cpu", "cuda"):
        return device, 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return "cuda", int(device[5:])
    raise DeviceError(f"unknown device '{device}': use auto, cpu, cuda or cuda:N")


def expand_devices(device: str) -> list[str]:
    """``--device`` as the list of devices to open, one session each.

    ``auto``, ``cpu``, ``cuda`` and ``cuda:N`` are one device (returned as given, checked when the
    session opens); ``cuda:0,1`` lists several GPUs and ``cuda:all`` means every device the
    driver reports (``CUDA_VISIBLE_DEVICES`` applies). A list is checked here, before any model
    loads: each index must exist, none twice. Raises :class:`DeviceError` in one line.
    """
    text = device.strip().lower()
    if not text.startswith("cuda:") or (text[5:] != "all" and "," not in text):
        try:
            parse_device(text)  # the single forms are checked again when the session opens
        except DeviceError:
            raise DeviceError(
                f"unknown device '{device.strip()}': use auto, cpu, cuda, cuda:N, a list such as "
                "cuda:0,1, or cuda:all"
            ) from None
        return [text]
    spec = text[5:]
    count = cuda_device_count()
    if spec == "all":
        if count == 0:
            raise DeviceError("--device cuda:all: no CUDA device found")
        return [f"cuda:{i}" for i in range(count)]
    parts = [part.strip() for part in spec.split(",")]
    if not all(part.isdigit() for part in parts):
        raise DeviceError(
            f"unknown device '{device.strip()}': use cuda:N, a list such as cuda:0,1, or cuda:all"
        )
    indices = [int(part) for part in parts]
    twice = sorted({i for i in indices if indices.count(i) > 1})
    if twice:
        raise DeviceError(f"--device {device.strip()}: cuda:{twice[0]} is listed twice")
    missing = [i for i in indices if i >= count]
    if missing:
        found = f"{count} CUDA device(s) found" if count else "no CUDA device found"
        shown = ", ".join(str(i) for i in missing)
        raise DeviceError(f"--device {device.strip()}: CUDA device {shown} requested but {found}")
    return [f"cuda:{i}" for i in indices]


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _OOM_MARKERS)


_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class OnnxModel:
    """One onnxruntime session for the whole run, on CUDA when asked and available, else CPU.

    ``notices`` collects one-line messages the CLI shows the user (e.g. a CPU fallback).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "auto",
        name: str | None = None,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}")
        self.notices: list[str] = []
        kind, index = parse_device(device)
        providers = self._providers(ort, kind, index)

        options = ort.SessionOptions()
        options.log_severity_level = _quiet_logs(ort)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or cpu_thread_count()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:
            raise ModelError(f"cannot load ONNX model {self.path}: {first_line(exc)}") from exc

        active = self.session.get_providers()
        self.device = "cuda" if active and active[0] == "CUDAExecutionProvider" else "cpu"
        if kind == "cuda" and self.device != "cuda":
            raise DeviceError(f"CUDA was requested but onnxruntime could not use it ({active})")
        if kind == "auto" and providers[0][0] == "CUDAExecutionProvider" and self.device != "cuda":
            self.notices.append("CUDA is present but onnxruntime could not use it: running on CPU")
        if self.device == "cuda":
            # onnxruntime's Python run() would otherwise retry a failed call on the CPU provider
            # (with a print), while srtool still reports and sizes tiles for CUDA
            self.session.disable_fallback()
        self.device_index = index if self.device == "cuda" else 0

        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelError(f"{self.path.name}: expected one image input, found {len(inputs)}")
        self._input = inputs[0]
        self._output_name = outputs[0].name
        self._input_type = _NUMPY_TYPES.get(self._input.type)
        if self._input_type is None:
            raise ModelError(f"{self.path.name}: unsupported input type {self._input.type}")
        self._bound = _BoundRuns(self.session, self._input.name, self._output_name)
        self.info = self._read_info(name or self.path.stem)

    # -- provider choice -------------------------------------------------------------------
    def _providers(self, ort: Any, kind: str, index: int) -> list[Any]:
        cpu = ("CPUExecutionProvider", {})
        if kind == "cpu":
            return [cpu]
        has_provider = "CUDAExecutionProvider" in ort.get_available_providers()
        devices = cuda_device_count() if has_provider else 0
        if kind == "cuda" and not has_provider:
            raise DeviceError(
                "CUDA requested but this onnxruntime has no CUDA provider (install onnxruntime-gpu)"
            )
        if kind == "cuda" and index >= devices:
            found = f"{devices} CUDA device(s) found" if devices else "no CUDA device found"
            raise DeviceError(f"CUDA device {index} requested but {found}")
        if kind == "auto" and devices == 0:
            self.notices.append("no CUDA device found: running on CPU")
            return [cpu]
        preload_cuda_libraries(ort)
        cuda_options = {
            "device_id": index,
            "cudnn_conv_algo_search": "HEURISTIC",
            # Automatic tiles are sized from the driver's free memory; the default arena growth
            # (kNextPowerOfTwo) would round a 1.1 GiB request up to 2 GiB and run out first.
            "arena_extend_strategy": "kSameAsRequested",
        }
        return [("CUDAExecutionProvider", cuda_options), cpu]

    # -- metadata --------------------------------------------------------------------------
    def _read_info(self, name: str) -> ModelInfo:
        """The model's ``srtool.*`` metadata, each value checked and bounded: a model file is
        input like any other, and an absurd scale or padding rule would cost gigabytes per image.
        """
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        shape = self._input.shape
        channels = shape[1] if len(shape) == 4 and isinstance(shape[1], int) else None
        in_channels = _int_meta(self.path, meta, "srtool.in_channels", channels or 3, 1, 3)
        if in_channels not in (1, 3):
            where = " (srtool.in_channels)" if "srtool.in_channels" in meta else ""
            raise ModelError(
                f"{self.path.name}: {in_channels}-channel input is not supported{where}"
            )
        multiple_of = _int_meta(self.path, meta, "srtool.multiple_of", 1, 1, MAX_MULTIPLE_OF)
        features = _int_meta(self.path, meta, "srtool.features", None, 1, MAX_FEATURES)
        activation = _float_meta(
            self.path, meta, "srtool.peak_activation_per_input_pixel", MAX_ACTIVATION
        )
        value_range = _value_range(self.path, meta)
        if "srtool.scale" in meta:
            scale = _int_meta(self.path, meta, "srtool.scale", 1, 1, MAX_SCALE)
        else:
            scale = self._probe_scale(in_channels, multiple_of)
        return ModelInfo(
            name=name,
            path=self.path,
            scale=scale,
            in_channels=in_channels,
            multiple_of=multiple_of,
            arch=meta.get("srtool.arch", "unknown"),
            value_range=value_range,
            features=features,
            activation_per_pixel=activation,
            metadata=meta,
        )

    def _probe_scale(self, channels: int, multiple_of: int) -> int:
        """Infer the scale of a model without srtool metadata from one tiny run.

        The probe starts at the smallest input the model allows (``multiple_of`` pixels square)
        and doubles only while the model refuses the size (reflection padding needs a few
        pixels), so even an absurd x1000 model costs megabytes, not gigabytes; scales above
        ``MAX_SCALE`` are refused.
        """
        size = multiple_of
        while True:
            probe = np.full((1, channels, size, size), 0.5, dtype=np.float32)
            try:
                out = self._run_raw(probe)
                break
            except OutOfMemoryError as exc:
                raise ModelError(
                    f"{self.path.name}: cannot infer the scale: a {size}x{size} input ran out of "
                    f"memory ({exc}); not a usable upscaling model"
                ) from exc
            except ModelError:
                if size * 2 > max(_PROBE_SIZE, multiple_of):
                    raise
                size *= 2
        if out.ndim != 4 or out.shape[2] % size or out.shape[3] % size:
            raise ModelError(
                f"{self.path.name}: cannot infer the scale: a {size}x{size} input gave "
                f"output shape {tuple(out.shape)}"
            )
        if out.shape[2] != out.shape[3]:
            raise ModelError(f"{self.path.name}: output is not a uniform upscale of the input")
        scale = out.shape[2] // size
        if not 1 <= scale <= MAX_SCALE:
            raise ModelError(
                f"{self.path.name}: the model upscales x{scale}; srtool runs x1 to x{MAX_SCALE}"
            )
        return scale

    # -- running ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _run_errors(self) -> Iterator[None]:
        """onnxruntime's errors of a run as srtool's: out of memory (retried by the upscaler
        with smaller calls) or a failing model."""
        try:
            yield
        except Exception as exc:
            if _is_oom(exc):
                raise OutOfMemoryError(f"{self.device} out of memory: {first_line(exc)}") from exc
            raise ModelError(f"{self.path.name} failed to run: {first_line(exc)}") from exc

    def _run_raw(self, batch: np.ndarray) -> np.ndarray:
        feed = batch if batch.dtype == self._input_type else batch.astype(self._input_type)
        with self._run_errors():
            (out,) = self.session.run([self._output_name], {self._input.name: feed})
        return out

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run a float32 NCHW batch in [0, 1]; returns float32 NCHW (not clipped).

        Calls of a shape seen before go through IO binding with buffers kept for that shape
        (see :class:`_BoundRuns`): the returned array is then one of those buffers, valid until
        the next call with the same shape. Callers consume it (or copy it) before running again.
        """
        low, high = self.info.value_range
        if (low, high) != (0.0, 1.0):
            batch = batch * (high - low) + low
        out = self._run_bound(batch)
        if (low, high) != (0.0, 1.0):
            out = (out - low) / (high - low)
        return out

    def _run_bound(self, batch: np.ndarray) -> np.ndarray:
        """``_run_raw`` through the reused buffers; float32 out whatever the model's output."""
        with self._run_errors():
            return self._bound.run(
                self.session, batch, self._input_type, self.device, self.device_index
            )


class _Slot:
    """The buffers of one input shape: host (and on CUDA device) input and output."""

    def __init__(self, session: Any, shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.out_shape = out_shape
        self.binding = session.io_binding()
        self.host_in: np.ndarray | None = None  # the model's input dtype, when not float32
        self.host_out: np.ndarray | None = None  # the model's output dtype (CPU: bound)
        self.out32: np.ndarray | None = None  # float32 copy of a float16 output
        self.device_in: Any = None  # OrtValue on the GPU
        self.device_out: Any = None


class _BoundRuns:
    """Session runs with IO binding and buffers reused across calls of one input shape.

    The first call of a shape runs plainly (``session.run``), which also tells the output's
    shape and dtype. Later calls of that shape bind:

    - on CPU, the caller's input array and a kept output array, both by pointer: onnxruntime
      reads and writes them in place (no copy in, no fresh output allocation);
    - on CUDA, device buffers created once with ``OrtValue.ortvalue_from_shape_and_type(...,
      "cuda", device_id)``: the input is copied host to device into the kept buffer, the output
      stays on the device until one copy out;
    - a float16-input model gets float16 in (converted into a kept host buffer, half the bytes
      to move), and a float16 output is converted once into a kept float32 array.

    At most ``MAX_SLOTS`` shapes are kept (the least recently used is dropped), which bounds the
    memory held: a folder of photos of many sizes keeps the last few.
    """

    MAX_SLOTS = 3

    def __init__(self, session: Any, input_name: str, output_name: str) -> None:
        self.session = session  # the session the kept bindings belong to
        self.input_name = input_name
        self.output_name = output_name
        self.slots: dict[tuple[int, ...], _Slot] = {}

    def run(
        self, session: Any, batch: np.ndarray, input_type: type, device: str, device_index: int
    ) -> np.ndarray:
        if session is not self.session:  # a new session: the kept bindings were for the old one
            self.session, self.slots = session, {}
        shape = tuple(batch.shape)
        slot = self.slots.pop(shape, None)
        if slot is None:
            feed = batch if batch.dtype == input_type else batch.astype(input_type)
            (out,) = self.session.run([self.output_name], {self.input_name: feed})
            self._remember(shape, tuple(out.shape))
            return out if out.dtype == np.float32 else out.astype(np.float32)
        self.slots[shape] = slot  # most recently used last
        return self._run_slot(slot, batch, input_type, device, device_index)

    def _remember(self, shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        while len(self.slots) >= self.MAX_SLOTS:
            self.slots.pop(next(iter(self.slots)))
        self.slots[shape] = _Slot(self.session, shape, out_shape)

    def _output_type(self) -> type:
        return _NUMPY_TYPES.get(self.session.get_outputs()[0].type, np.float32)

    def _run_slot(
        self, slot: _Slot, batch: np.ndarray, input_type: type, device: str, device_index: int
    ) -> np.ndarray:
        import onnxruntime as ort

        feed = batch
        if batch.dtype != input_type or not batch.flags.c_contiguous:
            if slot.host_in is None:
                slot.host_in = np.empty(slot.shape, dtype=input_type)
            np.copyto(slot.host_in, batch, casting="unsafe")
            feed = slot.host_in
        out_type = self._output_type()
        binding = slot.binding
        if device == "cuda":
            if slot.device_in is None:
                slot.device_in = ort.OrtValue.ortvalue_from_shape_and_type(
                    list(slot.shape), input_type, "cuda", device_index
                )
                slot.device_out = ort.OrtValue.ortvalue_from_shape_and_type(
                    list(slot.out_shape), out_type, "cuda", device_index
                )
                binding.bind_ortvalue_input(self.input_name, slot.device_in)
                binding.bind_ortvalue_output(self.output_name, slot.device_out)
            slot.device_in.update_inplace(feed)  # host -> device, into the kept buffer
            self.session.run_with_iobinding(binding)
            out = slot.device_out.numpy()  # the one copy device -> host
        else:
            if slot.host_out is None:
                slot.host_out = np.empty(slot.out_shape, dtype=out_type)
                binding.bind_output(
                    self.output_name,
                    "cpu",
                    0,
                    out_type,
                    list(slot.out_shape),
                    slot.host_out.ctypes.data,
                )
            binding.bind_input(
                self.input_name, "cpu", 0, input_type, list(slot.shape), feed.ctypes.data
            )
            self.session.run_with_iobinding(binding)
            out = slot.host_out
        if out.dtype == np.float32:
            return out
        if slot.out32 is None:
            slot.out32 = np.empty(slot.out_shape, dtype=np.float32)
        np.copyto(slot.out32, out)
        return slot.out32
