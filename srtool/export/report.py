"""What an export did and measured: the reports ``export_onnx`` returns and the card renders."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ExportReport", "ParityResult", "VariantReport"]


@dataclass(frozen=True)
class ParityResult:
    """onnxruntime output of one variant vs PyTorch fp32 on one input."""

    variant: str  #: "fp32", "fp16" or "int8"
    provider: str  #: onnxruntime execution provider, e.g. "CPU"
    shape: tuple[int, int, int, int]  #: input N, C, H, W
    max_abs: float
    psnr_db: float  #: over [0, 1]; inf when identical


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
