"""Inference: models found by name or path, run tiled on onnxruntime, over folders of images.

Importing the package costs nothing (the CLI reads ``DEFAULT_OVERLAP`` for its option defaults
when it starts); onnxruntime and numpy load when a model does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from srtool.infer.catalog import ModelRef, resolve_model, variant_name
from srtool.infer.tiling import DEFAULT_OVERLAP

if TYPE_CHECKING:
    from pathlib import Path

    from srtool.infer.onnx_session import OnnxModel
    from srtool.infer.upscaler import Upscaler

__all__ = [
    "DEFAULT_OVERLAP",
    "UpscalePlan",
    "plan_upscale",
    "load_upscaler",
    "Upscaler",
    "OnnxModel",
]


def __getattr__(name: str) -> Any:
    """``Upscaler`` and ``OnnxModel`` import numpy, so they load on first use."""
    if name == "Upscaler":
        from srtool.infer.upscaler import Upscaler

        return Upscaler
    if name == "OnnxModel":
        from srtool.infer.onnx_session import OnnxModel

        return OnnxModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class UpscalePlan:
    """What ``srtool upscale`` runs: the upscaler, the final size factor, and what to tell the user.

    ``outscale`` is the one asked for; or, when a shipped model of another scale stands in for a
    default that is not installed, the scale that was asked for (the output is resized to it).
    ``notices`` are one-line messages for the user: about the model chosen (a stand-in, no fp16
    variant), then the session's own (``OnnxModel.notices``, e.g. running on CPU).
    """

    upscaler: Upscaler
    outscale: float | None
    notices: tuple[str, ...] = ()
    upscalers: tuple[Upscaler, ...] = ()  # one per device of a device list; else (upscaler,)

    def __post_init__(self) -> None:
        if not self.upscalers:
            object.__setattr__(self, "upscalers", (self.upscaler,))


def plan_upscale(
    model: str | None = None,
    *,
    scale: int | None = None,
    outscale: float | None = None,
    device: str = "auto",
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    batch: int | None = None,
    fp16: bool = False,
    threads: int | None = None,
    int8: bool = False,
    cpu_workers: int = 1,
) -> UpscalePlan:
    """The model and the final size for a shipped model name, an ONNX path, or the shipped default
    for ``scale`` (4 when unset).

    Without ``outscale``, a default model that is not installed is replaced by the nearest shipped
    scale, and the plan's ``outscale`` resizes its output to the scale asked for; an explicit
    ``outscale`` keeps the exact-model rule. ``tile``: None sizes tiles from free memory, ``0``
    runs whole images. ``device`` may list several GPUs (``cuda:0,1``, ``cuda:all``): then the
    plan holds one upscaler per device (``upscalers``), for ``run_batch``. ``cpu_workers``: when
    the model runs on the CPU, that many upscalers share its threads (``threads`` or every core)
    and its memory, each taking its own files in ``run_batch`` (see
    :func:`~srtool.infer.pipeline.cpu_worker_count`); never more workers than threads.
    """
    from srtool.errors import UsageError
    from srtool.infer.onnx_session import cpu_thread_count, expand_devices

    devices = expand_devices(device)  # a bad list fails before the model is looked up
    ref = resolve_model(model, scale, fp16=fp16, int8=int8, allow_other_scale=outscale is None)
    if cpu_workers < 1:
        raise UsageError("--workers must be at least 1")
    upscalers = tuple(
        _open(ref, model, scale, one, tile, overlap, batch, threads) for one in devices
    )
    if ref.stands_in_for is not None:
        outscale = float(ref.stands_in_for)
    notices = tuple(n for n in (ref.notice, *upscalers[0].model.notices) if n)
    total = threads or cpu_thread_count()
    workers = min(cpu_workers, total)
    if workers > 1 and len(upscalers) == 1 and upscalers[0].model.device == "cpu":
        shares = [total // workers + (i < total % workers) for i in range(workers)]  # 3 -> 2, 1
        upscalers = tuple(
            _open(ref, model, scale, "cpu", tile, overlap, batch, share, 1 / workers)
            for share in shares
        )
    return UpscalePlan(upscalers[0], outscale, notices, upscalers)


def load_upscaler(
    model: str | None = None,
    *,
    scale: int | None = None,
    device: str = "auto",
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    batch: int | None = None,
    fp16: bool = False,
    threads: int | None = None,
    int8: bool = False,
) -> Upscaler:
    """Just the ``Upscaler``, for exactly the model asked for (no stand-in), as in
    :func:`plan_upscale`; for scripts and tests, where nobody reads the notices."""
    ref = resolve_model(model, scale, fp16=fp16, int8=int8)
    return _open(ref, model, scale, device, tile, overlap, batch, threads)


def _open(
    ref: ModelRef,
    model: str | None,
    scale: int | None,
    device: str,
    tile: int | None,
    overlap: int,
    batch: int | None,
    threads: int | None,
    memory_share: float = 1.0,
) -> Upscaler:
    from srtool.errors import UsageError
    from srtool.infer.onnx_session import parse_device
    from srtool.infer.upscaler import Upscaler

    kind = parse_device(device)[0]
    if ref.variant == "int8":
        onnx_model = _open_int8(ref, device, kind, threads)
    else:
        onnx_model = _open_fp16_or_fp32(ref, device, kind, threads)
    if model is not None and scale is not None and onnx_model.info.scale != scale:
        raise UsageError(
            f"{ref.name} is a x{onnx_model.info.scale} model but --scale {scale} was given; "
            "use --outscale for a different final size"
        )
    return Upscaler(onnx_model, tile=tile, overlap=overlap, batch=batch, memory_share=memory_share)


def _base_name(ref: ModelRef, path: Path) -> str:
    """The model's name for the file that actually runs (``compact-x4-fp16`` -> ``compact-x4``
    when the fp32 model runs instead)."""
    base = ref.name.removesuffix(f"-{ref.variant}") if ref.variant else ref.name
    variant = variant_name(path)
    return f"{base}-{variant}" if variant else base


def _open_fp16_or_fp32(ref: ModelRef, device: str, kind: str, threads: int | None) -> OnnxModel:
    """fp16 runs on GPUs only: on a CPU (asked for, or all ``auto`` found) the fp32 model."""
    from srtool.infer.onnx_session import OnnxModel

    cpu_note = "fp16 runs slower than fp32 on CPU: running the fp32 model"
    fp32 = ref.fp32_path
    if fp32 is not None and kind == "cpu":
        onnx_model = OnnxModel(fp32, device=device, name=_base_name(ref, fp32), threads=threads)
        onnx_model.notices.insert(0, cpu_note)
        return onnx_model
    onnx_model = OnnxModel(ref.path, device=device, name=ref.name, threads=threads)
    if fp32 is not None and onnx_model.device == "cpu":
        # auto found no usable GPU: the CPU provider would upcast the fp16 graph, slower
        notices = onnx_model.notices
        onnx_model = OnnxModel(fp32, device="cpu", name=_base_name(ref, fp32), threads=threads)
        onnx_model.notices[:0] = [*notices, cpu_note]
    return onnx_model


def _open_int8(ref: ModelRef, device: str, kind: str, threads: int | None) -> OnnxModel:
    """int8 runs on CPUs only: on a GPU (asked for, or found by ``auto``) the fp32 model, or
    the fp16 variant when ``--fp16`` was asked for too."""
    from srtool.infer.onnx_session import OnnxModel

    if kind == "cpu":
        return OnnxModel(ref.path, device=device, name=ref.name, threads=threads)
    gpu = ref.gpu_path or ref.fp32_path
    onnx_model = OnnxModel(gpu, device=device, name=_base_name(ref, gpu), threads=threads)
    if onnx_model.device == "cpu":  # auto found no usable GPU: int8 is the CPU's model
        notices = onnx_model.notices
        onnx_model = OnnxModel(ref.path, device="cpu", name=ref.name, threads=threads)
        onnx_model.notices[:0] = notices
        return onnx_model
    precision = "fp16 variant" if gpu != ref.fp32_path else "fp32 model"
    onnx_model.notices.insert(
        0, f"int8 runs on CPU only: running the {precision} on {onnx_model.device}"
    )
    return onnx_model
