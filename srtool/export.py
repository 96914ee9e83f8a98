"""PyTorch -> ONNX: the bridge from trained (or downloaded) weights to what ``srtool upscale`` runs.

``export_onnx`` accepts an nn.Module, an srtool checkpoint, a training run folder or a community
model file, writes an ONNX model that follows design.md §2 (input ``lr``, output ``sr``, float32
NCHW RGB in [0, 1], dynamic batch/height/width, self-describing ``metadata_props``), proves that
onnxruntime reproduces PyTorch on two input sizes (one odd), optionally adds fp16 and int8
variants, and writes a model card beside it.

Exporter choice: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript) by default. It is
the maintained exporter — the TorchScript one is deprecated and warns that it "will be removed" —
and with ``Dim.AUTO`` on batch, height and width it keeps all three symbolic (including the
``4 * k`` constraint of pixel-unshuffle models) and emits a clean graph (no Identity/Constant
debris). Measured on torch 2.15: both exporters give identical ops after onnxruntime's fusions,
identical speed, fp32 parity ~1e-7, and dynamic H/W that work at odd sizes for srtool's nets.
``exporter="torchscript"`` stays available for community architectures torch.export cannot
capture. Neither exporter can represent a Python ``if`` on the input size: both silently keep the
branch the example input took. That is why every export is verified — the input axes must be
symbolic, ``onnx.checker`` must pass, and onnxruntime must match PyTorch on an odd size (37x53)
the exporter never saw; a mismatch fails the export and nothing is written.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from srtool import __version__
from srtool.atomic import atomic_write_bytes
from srtool.errors import ModelError, UsageError

__all__ = [
    "DEFAULT_PARITY_SIZES",
    "ExportReport",
    "ParityResult",
    "ResolvedSource",
    "VariantReport",
    "export_onnx",
    "resolve_source",
    "variant_path",
]

log = logging.getLogger("srtool")

Exporter = Literal["dynamo", "torchscript"]
#: (batch, height, width) of the parity inputs: a regular size and an odd one.
DEFAULT_PARITY_SIZES: tuple[tuple[int, int, int], ...] = ((1, 64, 64), (2, 37, 53))
_PROTOBUF_LIMIT = 2**31 - 1


# -- reports ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParityResult:
    """onnxruntime output of one variant vs PyTorch fp32 on one input."""

    variant: str  #: "fp32", "fp16" or "int8"
    provider: str  #: onnxruntime execution provider, e.g. "CPU"
    shape: tuple[int, int, int, int]  #: input N, C, H, W
    max_abs: float
    psnr_db: float  #: over [0, 1]; inf when identical

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "provider": self.provider,
            "shape": list(self.shape),
            "max_abs": self.max_abs,
            "psnr_db": None if math.isinf(self.psnr_db) else round(self.psnr_db, 2),
        }


@dataclass
class VariantReport:
    """An fp16 or int8 variant: where it went (None if rejected), how it compares to fp32."""

    precision: str
    path: Path | None
    accepted: bool
    note: str
    parity: list[ParityResult] = field(default_factory=list)
    size_bytes: int = 0
    #: int8 only: PSNR-Y (dB) of fp32 and int8 on the evaluation folder, and their wall times.
    eval_dir: Path | None = None
    eval_images: int = 0
    psnr_fp32: float | None = None
    psnr_variant: float | None = None
    seconds_fp32: float | None = None
    seconds_variant: float | None = None
    lr_resize: str = ""
    calib_crops: int = 0
    #: int8 only: int8 against fp32 outputs on the evaluation images (PSNR over [0, 1]).
    fidelity_psnr: float | None = None
    fidelity_max_abs: float | None = None

    @property
    def psnr_delta(self) -> float | None:
        if self.psnr_fp32 is None or self.psnr_variant is None:
            return None
        return self.psnr_variant - self.psnr_fp32

    @property
    def speedup(self) -> float | None:
        if not self.seconds_fp32 or not self.seconds_variant:
            return None
        return self.seconds_fp32 / self.seconds_variant


@dataclass
class ExportReport:
    """Everything ``export_onnx`` did and measured."""

    out_path: Path
    card_path: Path | None
    source: str
    source_kind: str  #: "module", "checkpoint", "run" or "community"
    source_sha256: str | None
    arch: str
    hparams: dict[str, Any] | None
    scale: int
    in_channels: int
    multiple_of: int
    params: int
    macs_per_output_pixel: float
    exporter: str
    opset: int
    size_bytes: int
    parity: list[ParityResult]
    variants: list[VariantReport]
    metadata: dict[str, str]
    training: dict[str, Any] | None
    seconds: float = 0.0


# -- sources ----------------------------------------------------------------------------------


@dataclass
class ResolvedSource:
    """A model ready to export (float32, eval, CPU) and what is known about it."""

    model: Any
    kind: str
    label: str
    path: Path | None
    sha256: str | None
    arch: str
    hparams: dict[str, Any] | None
    scale: int
    in_channels: int
    out_channels: int
    multiple_of: int
    training: dict[str, Any] | None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _training_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """The short, JSON-able training summary that goes into metadata and the model card."""
    recipe = meta.get("recipe") if isinstance(meta.get("recipe"), dict) else {}
    summary: dict[str, Any] = {
        "step": meta.get("step"),
        "weights": meta.get("weights"),
        "checkpoint_created": meta.get("created"),
    }
    for key in ("name", "description"):
        if isinstance(recipe.get(key), str):
            summary[f"recipe_{key}"] = recipe[key]
    for key in ("val_psnr", "val_ssim"):  # what the training loop records with best.safetensors
        if isinstance(meta.get(key), int | float):
            summary[key] = meta[key]
    if isinstance(meta.get("training"), dict):
        summary.update(meta["training"])
    return {k: v for k, v in summary.items() if v is not None}


def resolve_source(source: Any) -> ResolvedSource:
    """Turn any accepted SOURCE into a model plus its description (see :func:`export_onnx`)."""
    from torch import nn

    if isinstance(source, nn.Module):
        model = copy.deepcopy(source).float().cpu().eval()
        scale = getattr(model, "scale", None)
        if not isinstance(scale, int):
            raise ModelError(
                f"{type(source).__name__} has no integer .scale; wrap it or save a checkpoint"
            )
        hparams = getattr(model, "hparams", None)
        in_ch = int((hparams or {}).get("in_channels", 3))
        from srtool.models.checkpoint import tensors_sha256

        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        return ResolvedSource(
            model=model,
            kind="module",
            label=f"{type(source).__name__} (in-memory module)",
            path=None,
            sha256=tensors_sha256(state),
            arch=str(getattr(model, "arch", type(model).__name__.lower())),
            hparams=dict(hparams) if isinstance(hparams, dict) else None,
            scale=scale,
            in_channels=in_ch,
            out_channels=int((hparams or {}).get("out_channels", in_ch)),
            multiple_of=int(getattr(model, "multiple_of", 1)),
            training=None,
        )

    path = Path(source)
    if not path.exists():
        raise ModelError(f"export source not found: {path}")
    from srtool.models.checkpoint import find_run_checkpoint, is_checkpoint, load_checkpoint

    kind = "checkpoint"
    if path.is_dir():
        path, kind = find_run_checkpoint(path), "run"
        log.info("run folder %s: exporting %s", source, path.name)
    if kind == "run" or (path.suffix.lower() == ".safetensors" and is_checkpoint(path)):
        model, meta = load_checkpoint(path, prefer_ema=True)
        return ResolvedSource(
            model=model.float().eval(),
            kind=kind,
            label=str(path),
            path=path,
            sha256=_file_sha256(path),
            arch=meta["arch"],
            hparams=meta["hparams"],
            scale=int(model.scale),
            in_channels=int(meta["hparams"].get("in_channels", 3)),
            out_channels=int(meta["hparams"].get("out_channels", 3)),
            multiple_of=int(model.multiple_of),
            training=_training_summary(meta),
        )

    from srtool.models.community import load_community

    found = load_community(path)
    return ResolvedSource(
        model=found.model,
        kind="community",
        label=str(path),
        path=path,
        sha256=_file_sha256(path),
        arch=found.arch,
        hparams=found.hparams,
        scale=found.scale,
        in_channels=found.in_channels,
        out_channels=found.out_channels,
        multiple_of=found.multiple_of,
        training={
            "source": "community model file",
            "file": path.name,
            "architecture": found.spandrel_name,
            "tags": found.tags,
            "detected_by": "spandrel",
        },
    )


# -- torch -> onnx ------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep the exporters' progress lines and deprecation chatter out of the user's terminal.

    They are re-logged at debug level (``srtool export --verbose`` shows them).
    """
    names = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript", "onnx_ir")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for item in caught:
            log.debug("exporter: %s", str(item.message).splitlines()[0][:300])
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _torch_to_onnx(model: Any, src: ResolvedSource, *, opset: int, exporter: Exporter) -> Any:
    """Export to an in-memory ModelProto with symbolic batch/height/width."""
    import onnx
    import torch

    m = max(src.multiple_of, 1)
    example = torch.rand(2, src.in_channels, _round_up(24, m), _round_up(40, m))
    with tempfile.TemporaryDirectory(prefix="srtool-export-") as tmp, _quiet_exporter():
        target = Path(tmp) / "model.onnx"
        common = (model, (example,), str(target))
        named = {"input_names": ["lr"], "output_names": ["sr"], "opset_version": opset}
        try:
            if exporter == "dynamo":
                from torch.export import Dim

                auto = {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}
                torch.onnx.export(
                    *common,
                    **named,
                    dynamo=True,
                    dynamic_shapes=(auto,),
                    external_data=False,
                    optimize=True,
                    verbose=False,
                )
            elif exporter == "torchscript":
                torch.onnx.export(
                    *common,
                    **named,
                    dynamo=False,
                    dynamic_axes={"lr": {0: "batch", 2: "height", 3: "width"}, "sr": {0: "batch"}},
                    do_constant_folding=True,
                )
            else:
                raise UsageError(f"unknown exporter '{exporter}': use dynamo or torchscript")
        except (UsageError, ModelError):
            raise
        except Exception as exc:  # the exporters raise a zoo of types
            other = "torchscript" if exporter == "dynamo" else "dynamo"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ModelError(
                f"the {exporter} exporter cannot export {src.arch}: {first} "
                f"(try --exporter {other})"
            ) from exc
        proto = onnx.load(str(target), load_external_data=True)
    return proto


def _finalise_graph(proto: Any, src: ResolvedSource) -> None:
    """Name the axes, check they are symbolic, and stamp producer info."""
    graph = proto.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ModelError(
            f"exported graph has {len(graph.input)} inputs and {len(graph.output)} outputs; "
            "an upscaler needs exactly one of each"
        )
    dims = graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ModelError(f"exported input has rank {len(dims)}; an NCHW image batch needs 4")
    rename: dict[str, str] = {}
    for axis, name in ((0, "batch"), (2, "height"), (3, "width")):
        if not dims[axis].dim_param:
            raise ModelError(
                f"the exporter fixed input axis {name} to {dims[axis].dim_value}: this model "
                "cannot be exported with a dynamic size (try the other --exporter)"
            )
        rename[dims[axis].dim_param] = name

    pattern = re.compile(r"\b(" + "|".join(map(re.escape, rename)) + r")\b")

    def fix(value_info: Any) -> None:
        for dim in value_info.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda mt: rename[mt.group(1)], dim.dim_param)

    for value_info in [*graph.input, *graph.output, *graph.value_info]:
        fix(value_info)
    out_dims = graph.output[0].type.tensor_type.shape.dim
    if len(out_dims) == 4:
        s = src.scale
        for axis, name in ((0, "batch"), (2, "height"), (3, "width")):
            out_dims[axis].Clear()
            out_dims[axis].dim_param = name if s == 1 or axis == 0 else f"{s}*{name}"
    proto.producer_name = "srtool"
    proto.producer_version = __version__
    proto.doc_string = f"srtool {src.arch} x{src.scale} super-resolution model"


def _metadata(
    src: ResolvedSource,
    *,
    params: int,
    macs: float,
    peak: float,
    exporter: str,
    opset: int,
    precision: str,
) -> dict[str, str]:
    import torch

    meta = {
        "srtool.scale": str(src.scale),
        "srtool.arch": src.arch,
        "srtool.in_channels": str(src.in_channels),
        "srtool.out_channels": str(src.out_channels),
        "srtool.multiple_of": str(max(src.multiple_of, 1)),
        "srtool.value_range": "0-1",
        "srtool.version": __version__,
        "srtool.precision": precision,
        "srtool.params": str(params),
        "srtool.macs_per_output_pixel": str(round(macs)),
        "srtool.peak_activation_per_input_pixel": str(round(peak)),
        "srtool.exporter": f"torch.onnx {exporter} (torch {torch.__version__}, opset {opset})",
        "srtool.training": json.dumps(src.training or {}, sort_keys=True),
        "srtool.source_kind": src.kind,
    }
    if src.hparams is not None:
        meta["srtool.hparams"] = json.dumps(src.hparams, sort_keys=True)
        if isinstance(src.hparams.get("features"), int):
            meta["srtool.features"] = str(src.hparams["features"])
    if src.path is not None:
        meta["srtool.source"] = src.path.name
    if src.sha256:
        meta["srtool.source_sha256" if src.path else "srtool.weights_sha256"] = src.sha256
    return meta


def _set_metadata(proto: Any, meta: dict[str, str]) -> None:
    kept = [p for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    for entry in kept:
        proto.metadata_props.add(key=entry.key, value=entry.value)
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)


def _serialise_checked(proto: Any) -> bytes:
    import onnx

    data = proto.SerializeToString()
    if len(data) > _PROTOBUF_LIMIT:
        raise ModelError("the model exceeds ONNX's 2 GB single-file limit")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelError(f"onnx.checker rejects the exported model: {exc}") from exc
    return data


# -- parity -------------------------------------------------------------------------------------


def _session(model_bytes_or_path: bytes | Path, provider: str = "CPUExecutionProvider") -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = (
        model_bytes_or_path if isinstance(model_bytes_or_path, bytes) else str(model_bytes_or_path)
    )
    try:
        return ort.InferenceSession(source, options, providers=[provider])
    except Exception as exc:
        raise ModelError(f"onnxruntime cannot load the exported model: {exc}") from exc


def _compare(reference: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    diff = got.astype(np.float64) - reference.astype(np.float64)
    max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
    mse = float(np.mean(diff**2)) if diff.size else 0.0
    return max_abs, (math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse))


def _parity_inputs(
    src: ResolvedSource, sizes: tuple[tuple[int, int, int], ...]
) -> list[np.ndarray]:
    """Seeded uniform noise: harsher than photos (every weight matters), and reproducible."""
    rng = np.random.default_rng(20240601)
    m = max(src.multiple_of, 1)
    return [
        rng.random((n, src.in_channels, _round_up(h, m), _round_up(w, m)), dtype=np.float32)
        for n, h, w in sizes
    ]


def _torch_outputs(model: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        return [model(torch.from_numpy(x)).numpy() for x in inputs]


def _parity(
    session: Any, variant: str, inputs: list[np.ndarray], references: list[np.ndarray]
) -> list[ParityResult]:
    provider = session.get_providers()[0].replace("ExecutionProvider", "")
    results = []
    for x, ref in zip(inputs, references, strict=True):
        (out,) = session.run(["sr"], {"lr": x})
        if out.shape != ref.shape:
            raise ModelError(
                f"{variant} ONNX output shape {out.shape} differs from PyTorch's {ref.shape} "
                f"for input {x.shape}: the export specialised a size"
            )
        max_abs, psnr = _compare(ref, out)
        results.append(ParityResult(variant, provider, tuple(x.shape), max_abs, psnr))
    return results


def _cuda_available() -> bool:
    try:
        import onnxruntime as ort

        from srtool.infer.onnx_session import cuda_device_count
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers() and cuda_device_count() > 0


# -- the entry point ----------------------------------------------------------------------------


def variant_path(out_path: Path, precision: str) -> Path:
    """Where the fp16 / int8 variant of ``model.onnx`` goes: ``model.fp16.onnx``."""
    return out_path.with_name(f"{out_path.stem}.{precision}{out_path.suffix}")


def export_onnx(
    source: Any,
    out_path: str | os.PathLike[str],
    *,
    opset: int = 17,
    fp16: bool = False,
    int8_calib_dir: str | os.PathLike[str] | None = None,
    int8_eval_dir: str | os.PathLike[str] | None = None,
    int8_max_loss_db: float = 0.05,
    int8_crops: int = 32,
    int8_crop_size: int = 64,
    check_parity: bool = True,
    parity_atol: float = 1e-3,
    parity_sizes: tuple[tuple[int, int, int], ...] = DEFAULT_PARITY_SIZES,
    fp16_min_psnr: float = 40.0,
    exporter: Exporter = "dynamo",
    write_card: bool = True,
) -> ExportReport:
    """Export SOURCE to ONNX at ``out_path`` (written atomically) and verify it.

    Args:
        source: an ``nn.Module`` with ``.scale`` (srtool models have it), an srtool checkpoint
            (``.safetensors``; EMA weights when present), a training run folder (its best, else
            latest, checkpoint), or a community ``.pth`` / ``.pt`` / ``.safetensors`` file whose
            architecture spandrel detects (pickles are read with ``weights_only=True``).
        out_path: the fp32 model. Variants go beside it: ``<stem>.fp16.onnx``,
            ``<stem>.int8.onnx``; the model card is ``<stem>.md``.
        opset: ONNX opset (>= 17).
        fp16: also write an fp16 model with float32 inputs/outputs (for GPUs). It is kept when its
            PSNR against PyTorch fp32 is at least ``fp16_min_psnr``.
        int8_calib_dir: also write a static int8 QDQ model (for CPUs) calibrated on
            ``int8_crops`` random ``int8_crop_size`` crops of the images in this folder.
        int8_eval_dir: HR images on which the int8 PSNR cost and speed-up are measured (Set5 is
            the usual choice); defaults to the calibration folder. The int8 model is kept only
            when it loses at most ``int8_max_loss_db`` dB PSNR-Y against fp32.
        check_parity: run PyTorch and onnxruntime on ``parity_sizes`` inputs and fail when any
            output differs by more than ``parity_atol`` (fp32).
        exporter: "dynamo" (default, torch.export based) or "torchscript" (legacy tracer).
        write_card: write the markdown model card.

    Raises ModelError for unreadable sources, failed exports and parity failures, UsageError for
    bad arguments, DataError for unusable calibration folders.
    """
    started = time.perf_counter()
    out_path = Path(out_path)
    if opset < 17:
        raise UsageError(f"--opset {opset}: srtool's ONNX contract needs opset 17 or newer")
    if out_path.suffix.lower() != ".onnx":
        raise UsageError(f"output must be a .onnx file, got {out_path.name}")
    if out_path.is_dir():
        raise UsageError(f"output {out_path} is a folder; give a file name ending in .onnx")
    calib_dir = Path(int8_calib_dir) if int8_calib_dir is not None else None
    if calib_dir is not None and not calib_dir.is_dir():
        raise UsageError(f"--int8 calibration folder not found: {calib_dir}")
    eval_dir = Path(int8_eval_dir) if int8_eval_dir is not None else calib_dir
    if eval_dir is not None and not eval_dir.is_dir():
        raise UsageError(f"int8 evaluation folder not found: {eval_dir}")

    src = resolve_source(source)
    if src.in_channels not in (1, 3) or src.out_channels != src.in_channels:
        raise ModelError(
            f"{src.arch}: {src.in_channels} -> {src.out_channels} channels; srtool's ONNX "
            "contract is 1 or 3 channels in and out"
        )
    from srtool.models.profile import measure_cost

    m = max(src.multiple_of, 1)
    cost = measure_cost(
        src.model, in_channels=src.in_channels, size=(_round_up(32, m), _round_up(48, m))
    )
    proto = _torch_to_onnx(src.model, src, opset=opset, exporter=exporter)
    _finalise_graph(proto, src)
    actual_opset = max(
        (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0
    )
    base_meta = dict(
        params=cost.params,
        macs=cost.macs_per_output_pixel,
        peak=cost.peak_activation_per_input_pixel,
        exporter=exporter,
        opset=actual_opset,
    )
    meta = _metadata(src, precision="fp32", **base_meta)
    _set_metadata(proto, meta)
    data = _serialise_checked(proto)

    inputs = _parity_inputs(src, parity_sizes) if (check_parity or fp16) else []
    references = _torch_outputs(src.model, inputs) if inputs else []
    parity: list[ParityResult] = []
    if check_parity:
        parity = _parity(_session(data), "fp32", inputs, references)
        worst = max(parity, key=lambda r: r.max_abs)
        if worst.max_abs > parity_atol:
            raise ModelError(
                f"onnxruntime and PyTorch disagree: max abs error {worst.max_abs:.3g} "
                f"(> {parity_atol:g}) at input {worst.shape}, PSNR {worst.psnr_db:.1f} dB; "
                "the export is wrong, nothing was written"
            )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_path, data)
    log.info("wrote %s (%d bytes)", out_path, len(data))

    variants: list[VariantReport] = []
    if fp16:
        variants.append(
            _fp16_variant(proto, src, out_path, inputs, references, base_meta, fp16_min_psnr)
        )
    if calib_dir is not None and eval_dir is not None:
        variants.append(
            _int8_variant(
                out_path,
                src,
                calib_dir,
                eval_dir,
                base_meta,
                int8_max_loss_db=int8_max_loss_db,
                crops=int8_crops,
                crop_size=int8_crop_size,
            )
        )

    report = ExportReport(
        out_path=out_path,
        card_path=None,
        source=src.label,
        source_kind=src.kind,
        source_sha256=src.sha256,
        arch=src.arch,
        hparams=src.hparams,
        scale=src.scale,
        in_channels=src.in_channels,
        multiple_of=max(src.multiple_of, 1),
        params=cost.params,
        macs_per_output_pixel=cost.macs_per_output_pixel,
        exporter=exporter,
        opset=actual_opset,
        size_bytes=len(data),
        parity=parity,
        variants=variants,
        metadata=meta,
        training=src.training,
    )
    if write_card:
        from srtool.export_card import render_card

        card = out_path.with_suffix(".md")
        report.card_path = card
        atomic_write_bytes(card, render_card(report).encode("utf-8"))
    report.seconds = time.perf_counter() - started
    return report


def _fp16_variant(
    proto: Any,
    src: ResolvedSource,
    out_path: Path,
    inputs: list[np.ndarray],
    references: list[np.ndarray],
    base_meta: dict[str, Any],
    min_psnr: float,
) -> VariantReport:
    from srtool.export_quant import to_fp16

    half = to_fp16(proto)
    _set_metadata(half, _metadata(src, precision="fp16", **base_meta))
    data = _serialise_checked(half)
    parity = _parity(_session(data), "fp16", inputs, references)
    if _cuda_available():
        parity += _parity(_session(data, "CUDAExecutionProvider"), "fp16", inputs, references)
        note = "checked on CPU and CUDA"
    else:
        note = "checked on the CPU provider only; its speed and accuracy on CUDA are not verified"
    worst = min(r.psnr_db for r in parity)
    path = variant_path(out_path, "fp16")
    if worst < min_psnr:
        path.unlink(missing_ok=True)
        return VariantReport(
            "fp16", None, False, f"rejected: {worst:.1f} dB < {min_psnr:g} dB against fp32", parity
        )
    atomic_write_bytes(path, data)
    return VariantReport("fp16", path, True, note, parity, size_bytes=len(data))


def _int8_variant(
    out_path: Path,
    src: ResolvedSource,
    calib_dir: Path,
    eval_dir: Path,
    base_meta: dict[str, Any],
    *,
    int8_max_loss_db: float,
    crops: int,
    crop_size: int,
) -> VariantReport:
    import onnx

    from srtool.export_quant import calibration_crops, measure_int8, to_int8

    calib = calibration_crops(
        calib_dir,
        channels=src.in_channels,
        crop=crop_size,
        count=crops,
        multiple_of=max(src.multiple_of, 1),
    )
    path = variant_path(out_path, "int8")
    with tempfile.TemporaryDirectory(prefix="srtool-int8-", dir=out_path.parent) as tmp:
        tmp_out = Path(tmp) / "int8.onnx"
        to_int8(out_path, tmp_out, calib)
        quant = onnx.load(str(tmp_out))
    _set_metadata(quant, _metadata(src, precision="int8", **base_meta))
    data = _serialise_checked(quant)
    # No noise-input parity rows for int8: activation ranges are calibrated on photos, so noise
    # is out of range by design; fidelity is measured against fp32 on the evaluation images.
    int8_session, fp32_session = _session(data), _session(out_path)

    def runner(session: Any) -> Any:
        return lambda x: session.run(["sr"], {"lr": x})[0]

    measured = measure_int8(
        runner(fp32_session),
        runner(int8_session),
        eval_dir,
        scale=src.scale,
        channels=src.in_channels,
        multiple_of=max(src.multiple_of, 1),
    )
    loss = -measured.psnr_delta
    accepted = loss <= int8_max_loss_db
    if accepted:
        atomic_write_bytes(path, data)
        note = f"PSNR cost {loss:.3f} dB <= {int8_max_loss_db:g} dB"
    else:
        path.unlink(missing_ok=True)
        note = f"rejected: loses {loss:.3f} dB PSNR-Y (> {int8_max_loss_db:g} dB allowed)"
    return VariantReport(
        "int8",
        path if accepted else None,
        accepted,
        note,
        size_bytes=len(data),
        eval_dir=eval_dir,
        eval_images=measured.images,
        psnr_fp32=measured.psnr_fp32,
        psnr_variant=measured.psnr_int8,
        seconds_fp32=measured.seconds_fp32,
        seconds_variant=measured.seconds_int8,
        lr_resize=measured.lr_resize,
        calib_crops=len(calib),
        fidelity_psnr=measured.fidelity_psnr,
        fidelity_max_abs=measured.fidelity_max_abs,
    )
