"""``srtool export``: trained (or downloaded) weights -> a self-describing, verified ONNX model.

- :mod:`~srtool.export.source` — module, checkpoint, run folder or community file;
- :mod:`~srtool.export.graph` — torch -> ONNX with symbolic axes, metadata, ``onnx.checker``;
- :mod:`~srtool.export.parity` — onnxruntime against PyTorch on seeded inputs;
- :mod:`~srtool.export.quantize` — fp16 and int8 variants and what int8 costs;
- :mod:`~srtool.export.card` — the markdown model card;
- :mod:`~srtool.export.exporter` — :func:`export_onnx`, which runs them in order.

Importing this package does not import torch or onnx; exporting does.
"""

from __future__ import annotations

from srtool.export.exporter import export_onnx, variant_path
from srtool.export.parity import DEFAULT_PARITY_SIZES
from srtool.export.report import ExportReport, ParityResult, VariantReport
from srtool.export.source import ResolvedSource, resolve_source

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
