"""Benchmark evaluation with the protocol published tables use (design notes §4).

For every HR image: crop it to a multiple of the scale ("modcrop"); make its LR with
MATLAB-style antialiased bicubic on uint8 (:mod:`srtool.resize`) unless an LR folder is given;
upscale the LR with each method; clip and round the result to uint8; crop ``scale`` pixels from
every edge; measure PSNR and SSIM on BT.601 luma (:mod:`srtool.metrics`). A benchmark's score is
the mean over its images. With this the bicubic baseline reproduces published tables (Set5 x4
28.43 dB, BSD100 x4 25.96 dB), so a model's row is comparable with papers. For models meant
for real photos, ``degradation="realistic"`` makes the LR by a fixed second-order degradation
seeded per image instead (:func:`srtool.evaluate.benchmarks.realistic_lr`).

Methods are the baselines ``bicubic`` (MATLAB), ``lanczos`` (Pillow's Lanczos-3) and ``nearest``,
shipped model names and ONNX files (loaded by :func:`srtool.infer.plan_upscale` and run by
:func:`srtool.infer.picture.network_pass`, the code path of ``srtool upscale``), and srtool /
community PyTorch checkpoints, which are exported to a temporary ONNX file first so that they run
through that same path (only then is torch imported).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from srtool.environment import cpu_name
from srtool.errors import ImageReadError, ModelError, UsageError, first_line
from srtool.evaluate.benchmarks import (
    BASELINES,
    BenchmarkSet,
    benchmark_from_folders,
    benchmark_from_name,
    make_lr,
    read_u8,
)
from srtool.evaluate.grid import grid_ratio
from srtool.evaluate.methods import (
    Method,
    baseline_method,
    lpips_metric,
    neural_method,
)
from srtool.evaluate.results import (
    DEGRADATIONS,
    EvaluationReport,
    ImageScore,
    MethodInfo,
    MethodScore,
    ProgressEvent,
    protocol_for,
)
from srtool.metrics import ms_ssim, psnr, ssim
from srtool.resize import modcrop

log = logging.getLogger("srtool")

GRID_NOTE = (
    "Grid: the SR image's spectral energy at the period-{period} frequencies (k H/{period}, "
    "l W/{period}) in excess of its neighbourhood, over the HR image's energy there, on Y with a "
    "Hann window; about 0-1: no grid of the network's own, > 1: a periodic pattern (the "
    "pixel-shuffle grid)"
)
_LR_MADE = {"bicubic": "MATLAB bicubic", "realistic": "realistic (seeded, per image)"}


def _environment(methods: Sequence[Method]) -> dict[str, Any]:
    from srtool import __version__

    env: dict[str, Any] = {
        "srtool": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": cpu_name(),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if any(m.info.kind != "baseline" for m in methods):
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
        env["devices"] = sorted({m.info.device for m in methods if m.info.device})
    return env


def _safe_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", label).strip("_") or "model"


def _benchmark_sets(
    benchmarks: Sequence[str],
    data_root: str | os.PathLike[str] | None,
    hr_dir: str | os.PathLike[str] | None,
    lr_dir: str | os.PathLike[str] | None,
    download: bool,
) -> list[BenchmarkSet]:
    """Resolve every benchmark before any model is loaded, so a missing one fails fast."""
    sets = [benchmark_from_name(b, data_root, download=download) for b in benchmarks]
    if hr_dir is not None:
        sets.append(benchmark_from_folders(hr_dir, lr_dir))
    elif lr_dir is not None:
        raise UsageError("--lr needs --hr (the HR images it is compared with)")
    if not sets:
        raise UsageError("nothing to evaluate: give --bench NAME[,NAME...] or --hr DIR")
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise UsageError(f"a benchmark is listed twice: {', '.join(names)}")
    return sets


def _scale_from_lr(sets: Sequence[BenchmarkSet]) -> int | None:
    """The scale implied by a given LR folder (HR side / LR side of its first pair)."""
    for bench in sets:
        if bench.lr:
            hr_path = bench.hr[0]
            hr, lr = read_u8(hr_path), read_u8(bench.lr[hr_path.name])
            return max(1, round(hr.shape[0] / lr.shape[0]))
    return None


def _default_models(scale: int) -> tuple[list[str], str]:
    """The shipped default model for ``scale`` when installed, and a note saying what ran."""
    from srtool.infer.catalog import DEFAULT_MODEL_FOR_SCALE, shipped_models

    name = DEFAULT_MODEL_FOR_SCALE.get(scale)
    if name is not None and name in shipped_models():
        return [name], (
            f"no --model given: the shipped {name} is compared with bicubic "
            "(--model NAME|FILE for others, repeatable)"
        )
    return [], f"no --model given and no shipped x{scale} model installed: only bicubic is scored"


def _methods(
    models: Sequence[str],
    *,
    scale: int | None,
    sets: Sequence[BenchmarkSet],
    variants: Sequence[tuple[bool, int]],
    device: str,
    tile: int | None,
    workdir: Path,
) -> tuple[list[Method], int]:
    """Bicubic first, then the other baselines asked for, then each network with its
    variants, in the order given; returns them with the scale of the evaluation."""
    requested = list(dict.fromkeys(models))  # keep order, drop repeats
    per_model = {
        model: neural_method(
            model, scale=scale, device=device, tile=tile, workdir=workdir, variants=variants
        )
        for model in requested
        if model.lower() not in BASELINES
    }
    neural = [m for group in per_model.values() for m in group]
    scales = sorted({m.info.scale for m in neural if m.info.scale})
    if len(scales) > 1:
        raise UsageError(
            "models of different scales cannot share one table: "
            + ", ".join(f"{m.info.label} x{m.info.scale}" for m in neural[:: len(variants)])
        )
    scale = scale or (scales[0] if scales else None) or _scale_from_lr(sets) or 4
    chosen = {m.lower() for m in requested}
    methods = [baseline_method(b, scale) for b in BASELINES if b == "bicubic" or b in chosen]
    methods += neural
    labels = [m.info.label for m in methods]
    for i, label in enumerate(labels):  # two files with one stem still get distinct rows
        if labels.count(label) > 1:
            methods[i].info = _relabel(methods[i].info, f"{label}#{labels[:i].count(label) + 1}")
    return methods, scale


def evaluate(
    benchmarks: Sequence[str] = (),
    models: Sequence[str] = (),
    *,
    scale: int | None = None,
    data_root: str | os.PathLike[str] | None = None,
    hr_dir: str | os.PathLike[str] | None = None,
    lr_dir: str | os.PathLike[str] | None = None,
    rgb: bool = False,
    with_ms_ssim: bool = True,
    lpips: bool = False,
    lpips_weights: str | os.PathLike[str] | None = None,
    grid: bool = False,
    degradation: str = "bicubic",
    tta: bool = False,
    back_projection: int = 0,
    device: str = "auto",
    tile: int | None = None,
    save_images: str | os.PathLike[str] | None = None,
    download: bool = False,
    progress: Callable[[ProgressEvent], None] | None = None,
    default_model: bool = False,
) -> EvaluationReport:
    """Evaluate ``models`` (and the bicubic baseline, always) on benchmarks by the protocol.

    ``benchmarks`` are registry names resolved under ``data_root`` (fetched first when missing
    and ``download`` is set); ``hr_dir`` (with optional ``lr_dir``) adds any folder. ``scale``
    defaults to the models' scale, else that of the given LR images, else 4. ``tta`` /
    ``back_projection`` add, for every network, rows with the x8 self-ensemble and / or
    back-projection iterations next to its plain row, so their effect on quality and time is
    measured. ``degradation`` makes the LR images (where none are given) by MATLAB bicubic, the
    published protocol, or by srtool's seeded ``realistic`` second-order degradation. ``lpips``
    (or ``lpips_weights``, a file) adds LPIPS v0.1 AlexNet (:mod:`srtool.evaluate.lpips`);
    ``download`` also fetches its weights when they are missing. ``grid`` adds the grid check
    (:func:`srtool.evaluate.grid.grid_ratio`, period = scale): each SR image's periodic energy at
    the pixel-shuffle frequencies over its HR image's, about 0-1 without a grid. ``save_images``
    writes each SR image and a comparison sheet per image. Models run through ``srtool
    upscale``'s network pass (``srtool.infer.picture.network_pass``). With ``default_model``
    and no ``models`` (``srtool evaluate`` without ``--model``), the shipped default model for
    the scale is compared with bicubic, and a note says so.
    """
    if back_projection < 0:
        raise UsageError("--back-projection must be >= 0")
    if scale is not None and scale < 1:
        raise UsageError("--scale must be a positive integer")
    if degradation not in DEGRADATIONS:
        raise UsageError(f"--degradation {degradation}: choose {' or '.join(DEGRADATIONS)}")
    sets = _benchmark_sets(benchmarks, data_root, hr_dir, lr_dir, download)
    sets = [replace(s, degradation=degradation) for s in sets]
    variants = [(False, 0)]  # (tta, back-projection iterations) rows per network
    if tta:
        variants.append((True, 0))
    if back_projection:
        variants.append((False, back_projection))
    if tta and back_projection:
        variants.append((True, back_projection))
    notes: list[str] = []
    if default_model and not models:
        models, note = _default_models(scale or _scale_from_lr(sets) or 4)
        notes.append(note)
    metrics = ["psnr_y", "ssim_y"] + (["ms_ssim_y"] if with_ms_ssim else [])
    metrics += ["psnr_rgb", "ssim_rgb"] if rgb else []
    lpips_fn = None
    if lpips or lpips_weights:
        lpips_fn, lpips_note = lpips_metric(lpips_weights, download=download)
        notes.append(lpips_note)
        metrics += ["lpips"] if lpips_fn is not None else []
    else:
        notes.append("LPIPS not computed (add --lpips)")

    with tempfile.TemporaryDirectory(prefix="srtool-eval-") as tmp:
        methods, scale = _methods(
            models,
            scale=scale,
            sets=sets,
            variants=variants,
            device=device,
            tile=tile,
            workdir=Path(tmp),
        )
    grid_period = scale if grid and scale >= 2 else 0
    if grid:
        metrics += ["grid"] if grid_period else []
        notes.append(
            GRID_NOTE.format(period=scale)
            if grid_period
            else "grid check not computed: it needs a scale of 2 or more"
        )
    if (tta or back_projection) and all(m.info.kind == "baseline" for m in methods):
        notes.append("--tta/--back-projection apply to networks; none was given")
    for method in methods:  # first-call set-up stays out of the timings
        if method.warm is not None:
            method.warm()

    report = EvaluationReport(
        scale=scale,
        metrics=metrics,
        benchmarks=[],
        methods=[m.info for m in methods],
        scores=[],
        notes=notes,
        protocol=protocol_for(degradation),
        degradation=degradation,
        environment=_environment(methods),
    )
    run = _Run(
        methods=methods,
        scale=scale,
        rgb=rgb,
        with_ms_ssim=with_ms_ssim,
        lpips_fn=lpips_fn,
        grid_period=grid_period,
        out_dir=Path(save_images) if save_images is not None else None,
        progress=progress,
        total=sum(len(s.hr) for s in sets) * len(methods),
    )
    for bench in sets:
        _evaluate_benchmark(bench, run, report)
    return report


@dataclass
class _Run:
    methods: list[Method]
    scale: int
    rgb: bool
    with_ms_ssim: bool
    lpips_fn: Callable[[np.ndarray, np.ndarray], float] | None
    grid_period: int
    out_dir: Path | None
    progress: Callable[[ProgressEvent], None] | None
    total: int
    done: int = 0


def _evaluate_benchmark(bench: BenchmarkSet, run: _Run, report: EvaluationReport) -> None:
    """Every image of one benchmark through every method; appends scores and notes."""
    scale = run.scale
    scores = {m.info.label: MethodScore(bench.name, m.info.label) for m in run.methods}
    report.scores += list(scores.values())
    greys = small = 0
    failed: list[str] = []
    for hr_path in bench.hr:
        try:
            hr = modcrop(read_u8(hr_path), scale)
            if min(hr.shape[:2]) < 2 * scale + 11:
                raise UsageError(f"{hr_path}: too small for x{scale} evaluation")
            lr = _lr_for(bench, hr_path, hr, scale)
        except ImageReadError as exc:  # one unreadable image: report it, score the others
            reason = first_line(exc)
            log.error("%s: %s", bench.name, reason)
            failed.append(hr_path.name)
            report.failed.append({"benchmark": bench.name, "image": hr_path.name, "error": reason})
            run.done += len(run.methods)
            if run.progress is not None:
                run.progress(ProgressEvent(bench.name, hr_path.name, "-", run.done, run.total))
            continue
        grey = hr.shape[2] == 1
        greys += grey
        outputs: list[tuple[str, np.ndarray, float]] = []
        for method in run.methods:
            start = time.perf_counter()
            sr = method.run(lr)
            seconds = time.perf_counter() - start
            if sr.shape != hr.shape:
                raise ModelError(
                    f"{method.info.label} gave {sr.shape} for {hr_path.name}, expected {hr.shape}"
                )
            score = _measure(
                hr, sr, scale, run.rgb, run.with_ms_ssim, run.lpips_fn, run.grid_period
            )
            score.image, score.seconds, score.grey = hr_path.name, seconds, grey
            small += run.with_ms_ssim and score.ms_ssim_y is None
            scores[method.info.label].images.append(score)
            outputs.append((method.info.label, sr, score.psnr_y))
            run.done += 1
            if run.progress is not None:
                run.progress(
                    ProgressEvent(bench.name, hr_path.name, method.info.label, run.done, run.total)
                )
        if run.out_dir is not None:
            report.saved += _save_outputs(run.out_dir, bench.name, scale, hr_path, hr, lr, outputs)
    report.benchmarks.append(
        {
            "name": bench.name,
            "folder": str(bench.folder),
            "images": len(bench.hr) - len(failed),
            "lr": "given" if bench.lr else _LR_MADE[bench.degradation],
            "checksums": bench.checksums,
            "reference_copy": bench.comparable,
            "failed": failed,
        }
    )
    if failed:
        report.notes.append(
            f"{bench.name}: {len(failed)} image(s) could not be read and are left out of every "
            f"mean: {', '.join(failed)}"
        )
    if greys:
        report.notes.append(f"{bench.name}: {greys} greyscale image(s) measured on their channel")
    if small:
        report.notes.append(
            f"{bench.name}: MS-SSIM left out for {small // len(run.methods)} image(s) under "
            "176 px a side"
        )
    if bench.comparable is False:
        report.notes.append(
            f"{bench.name}: this copy differs from the reference ({bench.checksums}); "
            "scores are not comparable with published tables"
        )


def _relabel(info: MethodInfo, label: str) -> MethodInfo:
    data = asdict(info)
    data["label"] = label
    return MethodInfo(**data)


def _lr_for(bench: BenchmarkSet, hr_path: Path, hr: np.ndarray, scale: int) -> np.ndarray:
    if bench.lr is None:
        return make_lr(hr, scale, hr_path.name, bench.degradation)
    lr = read_u8(bench.lr[hr_path.name])
    want = (hr.shape[0] // scale, hr.shape[1] // scale)
    if lr.shape[:2] != want:
        raise UsageError(
            f"{bench.lr[hr_path.name].name} is {lr.shape[1]}x{lr.shape[0]}, but x{scale} of "
            f"{hr_path.name} (cropped to {hr.shape[1]}x{hr.shape[0]}) needs {want[1]}x{want[0]}"
        )
    if lr.shape[2] != hr.shape[2]:
        raise UsageError(f"{hr_path.name}: HR and LR differ in colour channels")
    return lr


def _measure(
    hr: np.ndarray,
    sr: np.ndarray,
    scale: int,
    rgb: bool,
    with_ms_ssim: bool,
    lpips_fn: Callable[[np.ndarray, np.ndarray], float] | None,
    grid_period: int = 0,
) -> ImageScore:
    score = ImageScore(
        image="",
        psnr_y=psnr(sr, hr, crop_border=scale),
        ssim_y=ssim(sr, hr, crop_border=scale),
        seconds=0.0,
        out_pixels=int(sr.shape[0] * sr.shape[1]),
    )
    if with_ms_ssim:
        value = ms_ssim(sr, hr, crop_border=scale)
        score.ms_ssim_y = None if math.isnan(value) else value
    if rgb:
        score.psnr_rgb = psnr(sr, hr, crop_border=scale, y_only=False)
        score.ssim_rgb = ssim(sr, hr, crop_border=scale, y_only=False)
    if lpips_fn is not None:
        c = scale
        score.lpips = lpips_fn(sr[c:-c, c:-c], hr[c:-c, c:-c])
    if grid_period:
        try:
            score.grid = grid_ratio(sr, hr, grid_period, crop_border=scale)
        except UsageError as exc:  # too small for the check: left out of the mean
            log.debug("grid check skipped: %s", exc)
    return score


def _save_outputs(
    out_dir: Path,
    bench: str,
    scale: int,
    hr_path: Path,
    hr: np.ndarray,
    lr: np.ndarray,
    outputs: list[tuple[str, np.ndarray, float]],
) -> list[str]:
    from srtool.evaluate.reports import comparison_sheet
    from srtool.imageio import Picture, write_image

    base = out_dir / bench / f"x{scale}"
    written = []
    for label, sr, _ in outputs:
        path = base / _safe_name(label) / f"{hr_path.stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, Picture(pixels=sr))
        written.append(str(path))
    sheet = comparison_sheet(hr, lr, outputs, scale, title=f"{bench} {hr_path.stem} x{scale}")
    path = base / "compare" / f"{hr_path.stem}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, Picture(pixels=sheet))
    written.append(str(path))
    return written
