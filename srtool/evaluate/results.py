"""The results of an evaluation: per-image and per-method scores, the report and its JSON."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("srtool")

_LR_BICUBIC = "LR by MATLAB-style antialiased bicubic on uint8 (rounded after each pass)"
_LR_REALISTIC = (
    "LR by srtool's 'realistic' degradation (Real-ESRGAN-style second order: blur, resize, "
    "noise, JPEG, twice, then resize to HR/scale and JPEG, srtool.train.degrade with fixed "
    "settings; its random choices seeded by each image's file name, so every run makes the same "
    "LR)"
)
_PROTOCOL = (
    "HR cropped to a multiple of the scale; {lr} unless given; SR clipped and rounded to uint8; "
    "`scale` pixels cropped from every edge; PSNR/SSIM on BT.601 Y (16-235, not rounded); SSIM "
    "with an 11x11 Gaussian window (sigma 1.5), valid region; greyscale images on their single "
    "channel; scores are means over images"
)
#: How LR images are made from HR ones when no LR folder is given (``--degradation``).
DEGRADATIONS = {"bicubic": _LR_BICUBIC, "realistic": _LR_REALISTIC}
PROTOCOL = _PROTOCOL.format(lr=_LR_BICUBIC)


def protocol_for(degradation: str) -> str:
    """The protocol paragraph of a report whose LR images come from ``degradation``."""
    return _PROTOCOL.format(lr=DEGRADATIONS[degradation])


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
    grid: float | None = None
    grey: bool = False


METRIC_FIELDS = ("psnr_y", "ssim_y", "ms_ssim_y", "psnr_rgb", "ssim_rgb", "lpips", "grid")
LOWER_IS_BETTER = frozenset({"lpips", "grid"})


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
    degradation: str = "bicubic"
    environment: dict[str, Any] = field(default_factory=dict)
    saved: list[str] = field(default_factory=list)
    #: images that could not be read: ``{"benchmark", "image", "error"}``, left out of the means
    failed: list[dict[str, str]] = field(default_factory=list)

    def score(self, benchmark: str, method: str) -> MethodScore:
        for s in self.scores:
            if s.benchmark == benchmark and s.method == method:
                return s
        raise KeyError((benchmark, method))

    def best(self, benchmark: str, metric: str) -> float | None:
        """The best mean of ``metric`` on ``benchmark`` (max, or min for LPIPS and grid)."""
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
                "degradation": self.degradation,
                "metrics": self.metrics,
                "benchmarks": self.benchmarks,
                "methods": [asdict(m) for m in self.methods],
                "results": [
                    {**s.summary(), "per_image": [asdict(i) for i in s.images]} for s in self.scores
                ],
                "notes": self.notes,
                "failed": self.failed,
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
