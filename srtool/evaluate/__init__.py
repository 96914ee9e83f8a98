"""``srtool evaluate``: benchmark scores with the protocol published tables use.

- :mod:`~srtool.evaluate.benchmarks` — benchmark sets, the protocol's pixel steps, their LR;
- :mod:`~srtool.evaluate.methods` — baselines, ONNX models, checkpoints, the LPIPS hook;
- :mod:`~srtool.evaluate.lpips` — LPIPS v0.1 (AlexNet): the network, its weights, their download;
- :mod:`~srtool.evaluate.grid` — the grid check: periodic energy at the scale's pixel period;
- :mod:`~srtool.evaluate.protocol` — :func:`evaluate`, the driver;
- :mod:`~srtool.evaluate.results` — scores and the report;
- :mod:`~srtool.evaluate.reports` — JSON / CSV / Markdown writers and comparison sheets.

Importing this package never imports torch.
"""

from __future__ import annotations

from srtool.evaluate.benchmarks import (
    BASELINES,
    BenchmarkSet,
    benchmark_from_folders,
    benchmark_from_name,
)
from srtool.evaluate.protocol import evaluate
from srtool.evaluate.results import (
    PROTOCOL,
    EvaluationReport,
    ImageScore,
    MethodInfo,
    MethodScore,
    ProgressEvent,
)

__all__ = [
    "BASELINES",
    "PROTOCOL",
    "BenchmarkSet",
    "EvaluationReport",
    "ImageScore",
    "MethodInfo",
    "MethodScore",
    "ProgressEvent",
    "benchmark_from_folders",
    "benchmark_from_name",
    "evaluate",
]
