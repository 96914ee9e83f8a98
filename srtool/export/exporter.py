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

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from srtool.atomic import atomic_write_bytes
from srtool.errors import ModelError, UsageError
from srtool.export.graph import (
    Exporter,
    finalise_graph,
    model_metadata,
    serialise_checked,
    set_metadata,
    torch_to_onnx,
)
from srtool.export.parity import (
    DEFAULT_PARITY_SIZES,
    cuda_session,
    measure_parity,
    ort_session,
    parity_inputs,
    torch_outputs,
)
from srtool.export.report import ExportReport, ParityResult, VariantReport
from srtool.export.source import ResolvedSource, resolve_source
from srtool.infer.tiling import round_to_multiple

__all__ = ["export_onnx", "variant_path"]

log = logging.getLogger("srtool")


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
    int8_recalibrate: bool = False,
    int8_source: Any = None,
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
        int8_recalibrate: calibrate every activation range on the photos even when the
            checkpoint carries the ranges of quantisation-aware training (which are used by
            default, with the convolutions that run kept in float).
        int8_source: quantise this checkpoint (typically the quantisation-aware fine-tune of
            ``source``: same architecture and scale) instead of ``source``; the int8 model is
            still measured against ``source``'s fp32 model, which is what ships beside it.
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
    src8 = None
    if int8_source is not None:
        if calib_dir is None:
            raise UsageError("--int8-from needs --int8 CALIB_DIR")
        src8 = resolve_source(int8_source)
        mine = (src.arch, src.scale, src.in_channels, src.hparams)
        theirs = (src8.arch, src8.scale, src8.in_channels, src8.hparams)
        if mine != theirs:
            raise UsageError(
                f"--int8-from {src8.label}: {src8.arch} x{src8.scale} {src8.hparams} is not the "
                f"network of {src.label} ({src.arch} x{src.scale} {src.hparams})"
            )
    if src.in_channels not in (1, 3) or src.out_channels != src.in_channels:
        raise ModelError(
            f"{src.arch}: {src.in_channels} -> {src.out_channels} channels; srtool's ONNX "
            "contract is 1 or 3 channels in and out"
        )
    from srtool.models.profile import measure_cost

    m = max(src.multiple_of, 1)
    cost = measure_cost(
        src.model,
        in_channels=src.in_channels,
        size=(round_to_multiple(32, m), round_to_multiple(48, m)),
    )
    proto = torch_to_onnx(src.model, src, opset=opset, exporter=exporter)
    finalise_graph(proto, src)
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
    meta = model_metadata(src, precision="fp32", **base_meta)
    set_metadata(proto, meta)
    data = serialise_checked(proto)

    inputs = parity_inputs(src, parity_sizes) if (check_parity or fp16) else []
    references = torch_outputs(src.model, inputs) if inputs else []
    parity: list[ParityResult] = []
    if check_parity:
        parity = measure_parity(ort_session(data), "fp32", inputs, references)
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
                recalibrate=int8_recalibrate,
                int8_src=src8,
                opset=opset,
                exporter=exporter,
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
        from srtool.export.card import render_card

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
    from srtool.export.quantize import to_fp16

    half = to_fp16(proto)
    set_metadata(half, model_metadata(src, precision="fp16", **base_meta))
    data = serialise_checked(half)
    parity = measure_parity(ort_session(data), "fp16", inputs, references)
    # The CPU provider has no fp16 kernels for these nets: it inserts casts and computes in fp32,
    # so its rows show the cost of rounding the weights, not of fp16 arithmetic.
    cpu_rows = "the CPU rows check weight rounding only (the CPU provider computes in fp32)"
    cuda, why_not = cuda_session(data)
    if cuda is not None:
        parity += measure_parity(cuda, "fp16", inputs, references)
        note = f"fp16 arithmetic checked on CUDA; {cpu_rows}"
    else:
        note = (
            f"checked on the CPU provider only ({why_not}): {cpu_rows}; fp16 arithmetic, "
            "its accuracy and its speed on CUDA are not verified"
        )
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
    recalibrate: bool = False,
    int8_src: ResolvedSource | None = None,
    opset: int = 17,
    exporter: str = "dynamo",
) -> VariantReport:
    import onnx

    from srtool.export.quantize import calibration_crops, measure_int8, to_int8

    calib = calibration_crops(
        calib_dir,
        channels=src.in_channels,
        crop=crop_size,
        count=crops,
        multiple_of=max(src.multiple_of, 1),
    )
    path = variant_path(out_path, "int8")
    fp32_of_src = src
    with tempfile.TemporaryDirectory(prefix="srtool-int8-", dir=out_path.parent) as tmp:
        tmp_out = Path(tmp) / "int8.onnx"
        fp32_in = out_path
        if int8_src is not None:  # another checkpoint of the same network is quantised
            src, fp32_in = int8_src, Path(tmp) / "source.onnx"
            proto = torch_to_onnx(src.model, src, opset=opset, exporter=exporter)
            finalise_graph(proto, src)
            atomic_write_bytes(fp32_in, serialise_checked(proto))
        qat = src.quantization if not recalibrate else None
        if qat:
            log.info(
                "int8: activation ranges of quantisation-aware training%s",
                f", {', '.join(qat.get('keep_float') or [])} in float"
                if qat.get("keep_float")
                else "",
            )
            to_int8(
                fp32_in,
                tmp_out,
                calib,
                percentile=float(qat.get("percentile", 99.99)),
                ranges=qat.get("ranges") or {},
                keep_float=list(qat.get("keep_float") or []),
            )
        else:
            to_int8(fp32_in, tmp_out, calib)
        quant = onnx.load(str(tmp_out))
    set_metadata(quant, model_metadata(src, precision="int8", **base_meta))
    data = serialise_checked(quant)
    # No noise-input parity rows for int8: activation ranges are calibrated on photos, so noise
    # is out of range by design; fidelity is measured against fp32 on the evaluation images.
    int8_session, fp32_session = ort_session(data), ort_session(out_path)

    def runner(session: Any) -> Any:
        return lambda x: session.run(["sr"], {"lr": x})[0]

    measured = measure_int8(
        runner(fp32_session),
        runner(int8_session),
        eval_dir,
        scale=fp32_of_src.scale,
        channels=fp32_of_src.in_channels,
        multiple_of=max(fp32_of_src.multiple_of, 1),
    )
    loss = -measured.psnr_delta
    accepted = loss <= int8_max_loss_db
    if accepted:
        atomic_write_bytes(path, data)
        note = f"PSNR cost {loss:.3f} dB <= {int8_max_loss_db:g} dB"
        if qat:
            note += "; quantisation-aware ranges"
        if int8_src is not None:
            note += f"; quantised from {int8_src.label}"
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
