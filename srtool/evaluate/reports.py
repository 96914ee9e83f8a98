"""Writers for evaluation reports (JSON, CSV, Markdown) and the visual comparison sheet.

The Markdown is meant to be pasted into a model card: one table of PSNR / SSIM (Y) per
benchmark with the best value in bold, one of speed, the protocol in one paragraph, and the
notes (skipped metrics, copies that differ from the reference) so no number travels without
its conditions.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from srtool.evaluate.results import EvaluationReport

__all__ = [
    "METRIC_LABELS",
    "format_metric",
    "write_json",
    "write_csv",
    "write_markdown",
    "to_markdown",
    "comparison_sheet",
]

METRIC_LABELS = {
    "psnr_y": "PSNR-Y",
    "ssim_y": "SSIM-Y",
    "ms_ssim_y": "MS-SSIM-Y",
    "psnr_rgb": "PSNR-RGB",
    "ssim_rgb": "SSIM-RGB",
    "lpips": "LPIPS",
    "grid": "Grid",
}


def format_metric(metric: str, value: float | None) -> str:
    """Two decimals for dB, four for similarity indices; '-' for missing, 'inf' for identical."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.2f}" if metric.startswith("psnr") else f"{value:.4f}"


def _write_text(path: str | os.PathLike[str], text: str) -> Path:
    from srtool.atomic import atomic_write_bytes

    out = Path(path)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, text.encode("utf-8"))
    return out


def write_json(report: EvaluationReport, path: str | os.PathLike[str]) -> Path:
    """Everything: settings, per-benchmark means, per-image scores, notes, environment."""
    return _write_text(path, json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")


def write_csv(
    report: EvaluationReport, path: str | os.PathLike[str], *, per_image: bool = False
) -> Path:
    """One row per benchmark and method (image ``mean``), plus one per image with ``per_image``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["benchmark", "scale", "method", "image", *report.metrics, "seconds", "mpix_per_s"]
    )
    for score in report.scores:
        means = [_csv_value(score.mean(m)) for m in report.metrics]
        writer.writerow(
            [
                score.benchmark,
                report.scale,
                score.method,
                "mean",
                *means,
                f"{score.seconds_per_image:.6f}",
                f"{score.mpix_per_second:.4f}",
            ]
        )
        if per_image:
            for img in score.images:
                values = [_csv_value(getattr(img, m)) for m in report.metrics]
                mpix = img.out_pixels / 1e6 / img.seconds if img.seconds > 0 else math.inf
                writer.writerow(
                    [
                        score.benchmark,
                        report.scale,
                        score.method,
                        img.image,
                        *values,
                        f"{img.seconds:.6f}",
                        f"{mpix:.4f}",
                    ]
                )
    return _write_text(path, buf.getvalue())


def _csv_value(value: float | None) -> str:
    if value is None or math.isnan(value):
        return ""
    return "inf" if math.isinf(value) else f"{value:.6f}"


def to_markdown(report: EvaluationReport, *, per_image: bool = False) -> str:
    """A model-card section: quality per benchmark (best in bold), speed, protocol, notes."""
    from srtool.evaluate.results import LOWER_IS_BETTER

    benches = [b["name"] for b in report.benchmarks]
    methods = [m.label for m in report.methods]
    lines = [f"### Benchmarks, x{report.scale}", ""]
    quality = [m for m in report.metrics if m not in ("lpips", "grid")]
    pairs = [("psnr_y", "ssim_y"), ("psnr_rgb", "ssim_rgb")]
    for psnr_key, ssim_key in pairs:
        if psnr_key not in quality:
            continue
        label = f"{METRIC_LABELS[psnr_key]} (dB) / {METRIC_LABELS[ssim_key]}"
        lines += [f"{label}:", ""]
        lines.append("| Method | " + " | ".join(benches) + " |")
        lines.append("| --- |" + " --- |" * len(benches))
        for method in methods:
            cells = []
            for bench in benches:
                score = report.score(bench, method)
                cells.append(
                    _bold(report, bench, psnr_key, score.mean(psnr_key))
                    + " / "
                    + _bold(report, bench, ssim_key, score.mean(ssim_key))
                )
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    extra = [m for m in report.metrics if m in ("ms_ssim_y", "lpips", "grid")]
    for metric in extra:
        arrow = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
        if metric == "grid":
            arrow += f"; period-{report.scale} energy over the HR's, > 1: a grid"
        lines += [f"{METRIC_LABELS[metric]} ({arrow}):", ""]
        lines.append("| Method | " + " | ".join(benches) + " |")
        lines.append("| --- |" + " --- |" * len(benches))
        for method in methods:
            cells = [
                _bold(report, b, metric, report.score(b, method).mean(metric)) for b in benches
            ]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    devices = ", ".join(report.environment.get("devices", [])) or "cpu"
    lines += [
        f"Speed ({report.environment.get('processor', '?')}, "
        f"{report.environment.get('cpu_count', '?')} CPUs, device {devices}): "
        "seconds per image / output megapixels per second",
        "",
        "| Method | " + " | ".join(benches) + " |",
        "| --- |" + " --- |" * len(benches),
    ]
    for method in methods:
        cells = []
        for bench in benches:
            score = report.score(bench, method)
            cells.append(f"{score.seconds_per_image:.3f} s / {score.mpix_per_second:.2f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("")
    if per_image:
        for bench in benches:
            lines += [f"Per image, {bench} (PSNR-Y / SSIM-Y):", ""]
            lines.append("| Image | " + " | ".join(methods) + " |")
            lines.append("| --- |" + " --- |" * len(methods))
            images = [s.image for s in report.score(bench, methods[0]).images]
            for i, image in enumerate(images):
                cells = []
                for method in methods:
                    img = report.score(bench, method).images[i]
                    cells.append(
                        f"{format_metric('psnr_y', img.psnr_y)} / "
                        f"{format_metric('ssim_y', img.ssim_y)}"
                    )
                lines.append(f"| {image} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += [f"Protocol: {report.protocol}.", ""]
    for b in report.benchmarks:
        where = f"{b['name']}: {b['images']} images, LR {b['lr']}"
        if b.get("checksums"):
            where += f"; {b['checksums']}"
        lines.append(f"- {where}")
    for note in report.notes:
        lines.append(f"- {note}")
    env = report.environment
    lines.append(f"- srtool {env.get('srtool', '?')}, {env.get('date', '')}")
    return "\n".join(lines) + "\n"


def _bold(report: EvaluationReport, bench: str, metric: str, value: float | None) -> str:
    text = format_metric(metric, value)
    best = report.best(bench, metric)
    if value is not None and best is not None and text == format_metric(metric, best):
        return f"**{text}**"
    return text


def write_markdown(
    report: EvaluationReport, path: str | os.PathLike[str], *, per_image: bool = False
) -> Path:
    return _write_text(path, to_markdown(report, per_image=per_image))


# ----------------------------------------------------------------------------- comparison sheet

_PANEL = 256
_LABEL_H = 34
_GAP = 6
_COLUMNS = 4


def _detail_crop(hr: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left of the ``side`` x ``side`` window with the most gradient energy (where SR
    methods differ most), searched on a coarse grid."""
    grey = hr.astype(np.float32).mean(axis=2)
    energy = np.abs(np.diff(grey, axis=0))[:, :-1] + np.abs(np.diff(grey, axis=1))[:-1, :]
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = energy.shape
    step = max(side // 4, 1)
    best, best_yx = -1.0, (0, 0)
    for y in range(0, max(h - side, 0) + 1, step):
        for x in range(0, max(w - side, 0) + 1, step):
            y1, x1 = min(y + side, h), min(x + side, w)
            total = integral[y1, x1] - integral[y, x1] - integral[y1, x] + integral[y, x]
            if total > best:
                best, best_yx = float(total), (y, x)
    return best_yx


def comparison_sheet(
    hr: np.ndarray,
    lr: np.ndarray,
    outputs: Sequence[tuple[str, np.ndarray, float]],
    scale: int,
    *,
    title: str = "",
) -> np.ndarray:
    """An RGB uint8 sheet: the HR image with the crop marked, then the same detailed crop of
    HR, LR (pixel-replicated) and each method's output, zoomed with nearest neighbour so
    pixels stay visible, each labelled with its PSNR-Y."""
    from PIL import Image, ImageDraw, ImageFont

    def rgb(img: np.ndarray) -> np.ndarray:
        return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img

    h, w = hr.shape[:2]
    side = max(scale, min(96, h // 2, w // 2) // scale * scale)
    y, x = _detail_crop(rgb(hr), side)
    y, x = y // scale * scale, x // scale * scale
    zoom = max(1, _PANEL // side)

    def crop(img: np.ndarray, factor: int = 1) -> Image.Image:
        c = rgb(img)
        if factor > 1:  # LR: the same region at LR size, replicated to HR size
            c = c[y // factor : (y + side) // factor, x // factor : (x + side) // factor]
            c = np.repeat(np.repeat(c, factor, axis=0), factor, axis=1)
        else:
            c = c[y : y + side, x : x + side]
        tile = Image.fromarray(np.ascontiguousarray(c))
        return tile.resize((side * zoom, side * zoom), Image.Resampling.NEAREST)

    panel = side * zoom
    thumb = Image.fromarray(np.ascontiguousarray(rgb(hr)))
    thumb.thumbnail((panel, panel), Image.Resampling.LANCZOS)
    f = thumb.width / w
    ImageDraw.Draw(thumb).rectangle(
        [x * f, y * f, (x + side) * f, (y + side) * f], outline=(255, 40, 40), width=2
    )
    panels = [(thumb, "HR (full)", ""), (crop(hr), "HR", "")]
    panels.append((crop(lr, scale), "LR (nearest)", ""))
    for label, sr, value in outputs:
        shown = "inf" if math.isinf(value) else f"{value:.2f} dB"
        panels.append((crop(sr), label, shown))

    cols = min(_COLUMNS, len(panels))
    rows = math.ceil(len(panels) / cols)
    title_h = 24 if title else 0
    sheet = Image.new(
        "RGB",
        (cols * (panel + _GAP) + _GAP, title_h + rows * (panel + _LABEL_H + _GAP) + _GAP),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    if title:
        draw.text((_GAP, 6), title, fill=(0, 0, 0), font=font)
    for i, (img, label, value) in enumerate(panels):
        r, c = divmod(i, cols)
        px = _GAP + c * (panel + _GAP)
        py = title_h + _GAP + r * (panel + _LABEL_H + _GAP)
        sheet.paste(img, (px + (panel - img.width) // 2, py + (panel - img.height) // 2))
        draw.text((px, py + panel + 3), label[:40], fill=(0, 0, 0), font=font)
        if value:
            draw.text((px, py + panel + 17), value, fill=(90, 90, 90), font=font)
    return np.asarray(sheet)
