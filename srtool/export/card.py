"""The markdown model card written next to every exported ONNX model.

A card says where the weights came from, what the network is and costs, and how faithfully the
ONNX file reproduces PyTorch — the questions a user asks before trusting a downloaded model.
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from srtool.export.report import ExportReport, ParityResult

__all__ = ["format_db", "render_card"]


def _portable_path(label: str) -> str:
    """A source as the user named it, but no absolute path of the exporting machine."""
    return PurePath(label).name if PurePath(label).is_absolute() else label


def format_db(value: float | None) -> str:
    if value is None:
        return "—"
    return "identical" if math.isinf(value) else f"{value:.2f} dB"


def _parity_rows(rows: list[ParityResult]) -> list[str]:
    lines = [
        "| variant | provider | input (N×C×H×W) | max abs error | PSNR vs PyTorch fp32 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        shape = "×".join(str(v) for v in r.shape)
        lines.append(
            f"| {r.variant} | {r.provider} | {shape} | {r.max_abs:.3g} | {format_db(r.psnr_db)} |"
        )
    return lines


def render_card(report: ExportReport) -> str:
    """Markdown text of the model card for ``report``."""
    name = report.out_path.name
    stem = report.out_path.stem
    # exports/<name>/model.onnx: the folder names the model
    title = report.out_path.parent.name if stem == "model" and report.out_path.parent.name else stem
    lines = [
        f"# {title}",
        "",
        f"`{report.arch}` x{report.scale} super-resolution model, exported by srtool "
        f"{report.metadata.get('srtool.version', '')}.",
        "",
        "| | |",
        "| --- | --- |",
        f"| source | `{_portable_path(report.source)}` ({report.source_kind}) |",
    ]
    if report.source_sha256:
        label = "weights SHA-256" if report.source_kind == "module" else "source SHA-256"
        lines.append(f"| {label} | `{report.source_sha256}` |")
    lines += [
        f"| architecture | `{report.arch}` |",
        f"| scale | x{report.scale} |",
        f"| channels | {report.in_channels} in, {report.in_channels} out, values in [0, 1] |",
        f"| input sides | multiple of {report.multiple_of} |",
        f"| parameters | {report.params:,} |",
        f"| MACs per output pixel | {report.macs_per_output_pixel:,.0f} |",
        f"| exporter | {report.metadata.get('srtool.exporter', report.exporter)} |",
        f"| file size | {report.size_bytes / 1e6:.2f} MB |",
    ]
    if report.hparams:
        lines.append(f"| hyper-parameters | `{json.dumps(report.hparams, sort_keys=True)}` |")
    if report.training:
        lines.append(f"| training | `{json.dumps(report.training, sort_keys=True)}` |")
    lines += ["", "## Parity with PyTorch", ""]
    parity = list(report.parity) + [r for v in report.variants for r in v.parity]
    if parity:
        lines += _parity_rows(parity)
    else:
        lines.append("Not checked (exported with parity checking disabled).")
    for variant in report.variants:
        lines += ["", f"## {variant.precision}", ""]
        where = f"`{variant.path.name}`" if variant.path else "not written"
        lines.append(f"- file: {where} — {variant.note}")
        if variant.psnr_fp32 is not None:
            lines += [
                f"- PSNR-Y on `{variant.eval_dir}` ({variant.eval_images} images, "
                f"LR by {variant.lr_resize}): fp32 {variant.psnr_fp32:.3f} dB, "
                f"{variant.precision} {variant.psnr_variant:.3f} dB "
                f"(Δ {variant.psnr_delta:+.3f} dB)",
                f"- wall time on those images (onnxruntime CPU, best of 3): fp32 "
                f"{variant.seconds_fp32:.3f} s, "
                f"{variant.precision} {variant.seconds_variant:.3f} s "
                f"(speed-up {variant.speedup:.2f}x)",
                f"- {variant.precision} against fp32 on those images: PSNR "
                f"{format_db(variant.fidelity_psnr)}, max abs error {variant.fidelity_max_abs:.3g}",
                f"- calibrated on {variant.calib_crops} random crops",
            ]
    lines += [
        "",
        "## Use",
        "",
        "```",
        f"srtool upscale photos/ upscaled/ --model {name}",
        "```",
        "",
    ]
    return "\n".join(lines)
