"""Benchmark evaluation with the protocol published tables use (design notes §4).

For every HR image: crop it to a multiple of the scale ("modcrop"); make its LR with
MATLAB-style antialiased bicubic on uint8 (:mod:`srtool.resize`) unless an LR folder is given;
upscale the LR with each method; clip and round the result to uint8; crop ``scale`` pixels from
every edge; measure PSNR and SSIM on BT.601 luma (:mod:`srtool.metrics`). A benchmark's score is
the mean over its images. With this the bicubic baseline reproduces published tables (Set5 x4
28.43 dB, BSD100 x4 25.96 dB), so a model's row is comparable with papers.

Methods are the baselines ``bicubic`` (MATLAB), ``lanczos`` (Pillow's Lanczos-3) and ``nearest``,
shipped model names and ONNX files (run through :func:`srtool.infer.load_upscaler`, the code path
of ``srtool upscale``), and srtool / community PyTorch checkpoints, which are exported to a
temporary ONNX file first so that they run through that same path (only then is torch imported).
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from srtool import datasets
from srtool.errors import ModelError, UsageError
from srtool.infer.enhance import describe as describe_enhancement
from srtool.infer.enhance import enhance
from srtool.metrics import ms_ssim, psnr, ssim
from srtool.resize import imresize

__all__ = [
    "BASELINES",
    "PROTOCOL",
    "BenchmarkSet",
    "ImageScore",
    "MethodInfo",
    "MethodScore",
    "EvaluationReport",
    "ProgressEvent",
    "benchmark_from_name",
    "benchmark_from_folders",
    "evaluate",
    "modcrop",
    "quantise",
]

log = logging.getLogger("srtool")

BASELINES = ("bicubic", "lanczos", "nearest")
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
PROTOCOL = (
    "HR cropped to a multiple of the scale; LR by MATLAB-style antialiased bicubic on uint8 "
    "(rounded after each pass) unless given; SR clipped and rounded to uint8; `scale` pixels "
    "cropped from every edge; PSNR/SSIM on BT.601 Y (16-235, not rounded); SSIM with an 11x11 "
    "Gaussian window (sigma 1.5), valid region; greyscale images on their single channel; "
    "scores are means over images"
)


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class BenchmarkSet:
    """The HR images of one benchmark (and given LR images, matched by name, if any)."""

    name: str
    folder: Path
    hr: tuple[Path, ...]
    lr: dict[str, Path] | None = None  # HR file name -> LR file
    checksums: str | None = None  # how the copy compares with the reference file list
    comparable: bool | None = None  # True when it is the reference copy


def benchmark_from_name(
    name: str,
    data_root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
) -> BenchmarkSet:
    """A registered benchmark under the data root, checked against its reference checksums.

    With ``download`` a missing benchmark is fetched (and verified) first; without it the
    error says where to put the files and which command downloads them.
    """
    ds = datasets.get(name)
    try:
        folder = datasets.resolve(ds.name, data_root)
    except datasets.DatasetMissingError:
        if not download:
            raise
        log.warning("%s is missing: downloading it", ds.name)
        datasets.fetch(ds.name, data_root)
        folder = datasets.resolve(ds.name, data_root)
    check = datasets.verify(ds.name, data_root)
    return BenchmarkSet(
        name=ds.name,
        folder=folder,
        hr=tuple(datasets.list_images(folder, ds.suffixes)),
        checksums=check.summary(),
        comparable=check.ok if check.reference else None,
    )


def benchmark_from_folders(
    hr_dir: str | os.PathLike[str], lr_dir: str | os.PathLike[str] | None = None
) -> BenchmarkSet:
    """Any folder of HR images, optionally with LR images matched by file name (suffixes such
    as ``x4``, ``_LR`` or ``_SRF_4`` tolerated, never by sort order)."""
    hr_path = Path(hr_dir)
    if not hr_path.is_dir():
        raise UsageError(f"--hr {hr_path}: no such folder")
    hr = tuple(datasets.list_images(hr_path))
    if not hr:
        raise UsageError(f"--hr {hr_path}: no images found")
    lr_map = None
    if lr_dir is not None:
        lr_path = Path(lr_dir)
        if not lr_path.is_dir():
            raise UsageError(f"--lr {lr_path}: no such folder")
        from srtool.data import match_pairs

        pairs, problems = match_pairs(list(hr), datasets.list_images(lr_path))
        for problem in problems:
            log.warning("%s", problem)
        if not pairs:
            raise UsageError(f"no LR image in {lr_path} matches an HR image in {hr_path} by name")
        lr_map = {h.name: lo for h, lo in pairs}
        hr = tuple(h for h in hr if h.name in lr_map)
    return BenchmarkSet(name=hr_path.name, folder=hr_path, hr=hr, lr=lr_map)


def _read_u8(path: Path) -> np.ndarray:
    """HxWxC uint8 (C = 3, or 1 for greyscale files); 16-bit rounded to 8, alpha dropped."""
    from srtool.imageio import read_image, to_8bit

    pixels = to_8bit(read_image(path).pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return np.ascontiguousarray(pixels)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop bottom/right so both sides are multiples of ``scale`` (the papers' ``modcrop``)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def quantise(img: np.ndarray) -> np.ndarray:
    """float in [0, 1] -> uint8, clipped, rounded half up (MATLAB's ``im2uint8``)."""
    scaled = np.clip(np.asarray(img, dtype=np.float32) * np.float32(255.0), 0.0, 255.0)
    return (scaled + np.float32(0.5)).astype(np.uint8)


# ----------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class MethodInfo:
    """What a report says about one row: the method and where it came from."""

    label: str
    kind: str  # "baseline" | "onnx" | "checkpoint"
    source: str
    scale: int | None = None
    arch: str | None = None
    device: str | None = None
    enhancement: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Method:
    info: MethodInfo
    run: Callable[[np.ndarray], np.ndarray]  # uint8 HxWxC LR -> uint8 SR
    warm: Callable[[], None] | None = None


def _baseline(name: str, scale: int) -> _Method:
    if name == "bicubic":

        def run(lr: np.ndarray) -> np.ndarray:
            return imresize(lr, scale)

        source = "MATLAB-style bicubic (a = -0.5), srtool.resize"
    elif name == "lanczos":
        from PIL import Image

        def run(lr: np.ndarray) -> np.ndarray:
            planes = [
                np.asarray(
                    Image.fromarray(lr[..., c]).resize(
                        (lr.shape[1] * scale, lr.shape[0] * scale), Image.Resampling.LANCZOS
                    )
                )
                for c in range(lr.shape[2])
            ]
            return np.stack(planes, axis=-1)

        source = "Lanczos-3 (Pillow)"
    else:

        def run(lr: np.ndarray) -> np.ndarray:
            return np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)

        source = "nearest neighbour (pixel replication)"
    return _Method(MethodInfo(label=name, kind="baseline", source=source, scale=None), run)


def _label_for(model: str) -> str:
    path = Path(model)
    if path.suffix.lower() in (".onnx", *CHECKPOINT_SUFFIXES) or os.sep in model or "/" in model:
        stem = path.stem.split(".")[0]
        return path.parent.name if stem in ("model", "best", "latest", "") else stem
    return model


def _checkpoint_to_onnx(path: Path, workdir: Path) -> Path:
    """Export a PyTorch checkpoint to ONNX so it runs through the same inference path."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise ModelError(
            f"{path.name}: evaluating a PyTorch checkpoint needs torch "
            "(pip install 'srtool[train]'), or export it with `srtool export` first"
        )
    from srtool.export import export_onnx

    out = workdir / f"{path.stem}.onnx"
    log.info("exporting %s to a temporary ONNX model", path)
    # The TorchScript exporter takes well under a second where the dynamo one takes ~10 s; the
    # graph computes the same function. Where a torch release no longer has it, use dynamo.
    try:
        export_onnx(path, out, check_parity=False, write_card=False, exporter="torchscript")
    except (ImportError, NotImplementedError, RuntimeError) as exc:
        log.info("TorchScript export unavailable (%s); using the dynamo exporter", exc)
        export_onnx(path, out, check_parity=False, write_card=False)
    return out


def _neural(
    model: str,
    *,
    scale: int | None,
    device: str,
    tile: int | str | None,
    workdir: Path,
    variants: Sequence[tuple[bool, int]],
) -> list[_Method]:
    from srtool.infer import load_upscaler

    path = Path(model).expanduser()
    kind = "onnx"
    target = model
    if path.suffix.lower() in CHECKPOINT_SUFFIXES or path.is_dir():
        if not path.exists():
            raise ModelError(f"model file not found: {path}")
        target = str(_checkpoint_to_onnx(path, workdir))
        kind = "checkpoint"
    upscaler = load_upscaler(target, scale=scale, device=device, tile=tile)
    for notice in getattr(upscaler.model, "notices", []):
        log.info("%s", notice)
    info = upscaler.info
    model_scale = upscaler.scale
    label = _label_for(model)
    meta = info.metadata
    details = {
        k: meta[k] for k in ("srtool.params", "srtool.version", "srtool.source_sha256") if k in meta
    }

    def upscale(img: np.ndarray) -> np.ndarray:
        return upscaler.upscale(img)

    def warm() -> None:
        side = max(16, info.multiple_of)
        upscale(np.zeros((side, side, 3), np.float32))

    methods = []
    for tta, bp in variants:

        def run(lr: np.ndarray, tta: bool = tta, bp: int = bp) -> np.ndarray:
            lr_f = lr.astype(np.float32) * np.float32(1.0 / 255.0)
            return quantise(enhance(upscale, lr_f, scale=model_scale, tta=tta, back_projection=bp))

        suffix = describe_enhancement(tta, bp)
        methods.append(
            _Method(
                MethodInfo(
                    label=label + suffix,
                    kind=kind,
                    source=str(path) if kind == "checkpoint" or path.exists() else model,
                    scale=model_scale,
                    arch=info.arch,
                    device=getattr(upscaler.model, "device", None),
                    enhancement=suffix.lstrip("+"),
                    details=details,
                ),
                run,
                warm,
            )
        )
    return methods


# ----------------------------------------------------------------------------- LPIPS


def _lpips_metric() -> tuple[Callable[[np.ndarray, np.ndarray], float] | None, str]:
    """An LPIPS (AlexNet) function when everything it needs is on this machine, else a reason.

    Needs torch, the ``lpips`` package (its linear-layer weights ship with it) and torchvision's
    AlexNet weights already in the torch cache: nothing is downloaded during an evaluation.
    """
    import importlib.util

    for module in ("torch", "torchvision", "lpips"):
        if importlib.util.find_spec(module) is None:
            return None, f"LPIPS skipped: the '{module}' package is not installed"
    torch_home = Path(
        os.environ.get("TORCH_HOME")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torch"
    )
    weights = list((torch_home / "hub" / "checkpoints").glob("alexnet-*.pth"))
    if not weights:
        return None, (
            f"LPIPS skipped: AlexNet weights not in the torch cache ({torch_home}/hub/checkpoints)"
        )
    import lpips  # noqa: F401 - presence checked above
    import torch

    net = lpips.LPIPS(net="alex", verbose=False).eval()

    def score(a: np.ndarray, b: np.ndarray) -> float:
        def tensor(x: np.ndarray) -> Any:
            if x.shape[2] == 1:
                x = np.repeat(x, 3, axis=2)
            t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).float()
            return (t / 127.5 - 1.0)[None]

        with torch.no_grad():
            return float(net(tensor(a), tensor(b)).item())

    return score, "LPIPS (AlexNet, lower is better)"


# ----------------------------------------------------------------------------- results


@dataclass
class ImageScore:
    image: str
    psnr_y: float
    ssim_y: float
    seconds: float
    out_pixels: int
    ms_ssim_y: float | None = None
    psnr_rgb: float | None = None
    ssim_rgb: float | None = None
    lpips: float | None = None
    grey: bool = False


METRIC_FIELDS = ("psnr_y", "ssim_y", "ms_ssim_y", "psnr_rgb", "ssim_rgb", "lpips")
LOWER_IS_BETTER = frozenset({"lpips"})


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else None


@dataclass
class MethodScore:
    """One method on one benchmark: per-image scores and their means."""

    benchmark: str
    method: str
    images: list[ImageScore] = field(default_factory=list)

    def mean(self, metric: str) -> float | None:
        return _mean([getattr(s, metric) for s in self.images])

    @property
    def seconds_per_image(self) -> float:
        return float(np.mean([s.seconds for s in self.images])) if self.images else 0.0

    @property
    def mpix_per_second(self) -> float:
        total = sum(s.seconds for s in self.images)
        return sum(s.out_pixels for s in self.images) / 1e6 / total if total > 0 else math.inf

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"benchmark": self.benchmark, "method": self.method}
        out["images"] = len(self.images)
        for metric in METRIC_FIELDS:
            out[metric] = self.mean(metric)
        out["seconds_per_image"] = self.seconds_per_image
        out["mpix_per_s"] = self.mpix_per_second
        return out


@dataclass
class EvaluationReport:
    """Everything an evaluation measured, in the order it was asked for."""

    scale: int
    metrics: list[str]
    benchmarks: list[dict[str, Any]]
    methods: list[MethodInfo]
    scores: list[MethodScore]
    notes: list[str]
    protocol: str = PROTOCOL
    environment: dict[str, Any] = field(default_factory=dict)
    saved: list[str] = field(default_factory=list)

    def score(self, benchmark: str, method: str) -> MethodScore:
        for s in self.scores:
            if s.benchmark == benchmark and s.method == method:
                return s
        raise KeyError((benchmark, method))

    def best(self, benchmark: str, metric: str) -> float | None:
        """The best mean of ``metric`` on ``benchmark`` (max, or min for LPIPS)."""
        values = [
            v for s in self.scores if s.benchmark == benchmark and (v := s.mean(metric)) is not None
        ]
        if not values:
            return None
        return min(values) if metric in LOWER_IS_BETTER else max(values)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "scale": self.scale,
                "protocol": self.protocol,
                "metrics": self.metrics,
                "benchmarks": self.benchmarks,
                "methods": [asdict(m) for m in self.methods],
                "results": [
                    {**s.summary(), "per_image": [asdict(i) for i in s.images]} for s in self.scores
                ],
                "notes": self.notes,
                "environment": self.environment,
                "saved_images": self.saved,
            }
        )


def _jsonable(value: Any) -> Any:
    """Non-finite floats become None (JSON has no inf/NaN); paths become strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


@dataclass(frozen=True)
class ProgressEvent:
    benchmark: str
    image: str
    method: str
    done: int
    total: int


# ----------------------------------------------------------------------------- driver


def cpu_name() -> str:
    """The CPU model (speed numbers mean little without it)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _environment(methods: Sequence[_Method]) -> dict[str, Any]:
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
            hr, lr = _read_u8(hr_path), _read_u8(bench.lr[hr_path.name])
            return max(1, round(hr.shape[0] / lr.shape[0]))
    return None


def _methods(
    models: Sequence[str],
    *,
    scale: int | None,
    sets: Sequence[BenchmarkSet],
    variants: Sequence[tuple[bool, int]],
    device: str,
    tile: int | str | None,
    workdir: Path,
) -> tuple[list[_Method], int]:
    """Bicubic first, then the other baselines asked for, then each network with its
    variants, in the order given; returns them with the scale of the evaluation."""
    requested = list(dict.fromkeys(models))  # keep order, drop repeats
    per_model = {
        model: _neural(
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
    methods = [_baseline(b, scale) for b in BASELINES if b == "bicubic" or b in chosen]
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
    tta: bool = False,
    back_projection: int = 0,
    device: str = "auto",
    tile: int | str | None = "auto",
    save_images: str | os.PathLike[str] | None = None,
    download: bool = False,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> EvaluationReport:
    """Evaluate ``models`` (and the bicubic baseline, always) on benchmarks by the protocol.

    ``benchmarks`` are registry names resolved under ``data_root`` (fetched first when missing
    and ``download`` is set); ``hr_dir`` (with optional ``lr_dir``) adds any folder. ``scale``
    defaults to the models' scale, else that of the given LR images, else 4. ``tta`` /
    ``back_projection`` add, for every network, rows with the x8 self-ensemble and / or
    back-projection iterations next to its plain row, so their effect on quality and time is
    measured. ``save_images`` writes each SR image and a comparison sheet per image. Models run
    through ``srtool.infer.load_upscaler``.
    """
    if back_projection < 0:
        raise UsageError("--back-projection must be >= 0")
    if scale is not None and scale < 1:
        raise UsageError("--scale must be a positive integer")
    sets = _benchmark_sets(benchmarks, data_root, hr_dir, lr_dir, download)
    variants = [(False, 0)]  # (tta, back-projection iterations) rows per network
    if tta:
        variants.append((True, 0))
    if back_projection:
        variants.append((False, back_projection))
    if tta and back_projection:
        variants.append((True, back_projection))
    notes: list[str] = []
    metrics = ["psnr_y", "ssim_y"] + (["ms_ssim_y"] if with_ms_ssim else [])
    metrics += ["psnr_rgb", "ssim_rgb"] if rgb else []
    lpips_fn = None
    if lpips:
        lpips_fn, lpips_note = _lpips_metric()
        notes.append(lpips_note)
        metrics += ["lpips"] if lpips_fn is not None else []
    else:
        notes.append(
            "LPIPS not computed (add --lpips; it needs torch, the lpips package and cached "
            "AlexNet weights)"
        )

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
        environment=_environment(methods),
    )
    run = _Run(
        methods=methods,
        scale=scale,
        rgb=rgb,
        with_ms_ssim=with_ms_ssim,
        lpips_fn=lpips_fn,
        out_dir=Path(save_images) if save_images is not None else None,
        progress=progress,
        total=sum(len(s.hr) for s in sets) * len(methods),
    )
    for bench in sets:
        _evaluate_benchmark(bench, run, report)
    return report


@dataclass
class _Run:
    methods: list[_Method]
    scale: int
    rgb: bool
    with_ms_ssim: bool
    lpips_fn: Callable[[np.ndarray, np.ndarray], float] | None
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
    for hr_path in bench.hr:
        hr = modcrop(_read_u8(hr_path), scale)
        if min(hr.shape[:2]) < 2 * scale + 11:
            raise UsageError(f"{hr_path}: too small for x{scale} evaluation")
        lr = _lr_for(bench, hr_path, hr, scale)
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
            score = _measure(hr, sr, scale, run.rgb, run.with_ms_ssim, run.lpips_fn)
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
            "images": len(bench.hr),
            "lr": "given" if bench.lr else "MATLAB bicubic",
            "checksums": bench.checksums,
            "reference_copy": bench.comparable,
        }
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
        return imresize(hr, 1.0 / scale)
    lr = _read_u8(bench.lr[hr_path.name])
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
    from srtool.imageio import Picture, write_image
    from srtool.reports import comparison_sheet

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
