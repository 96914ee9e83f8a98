"""Does onnxruntime reproduce PyTorch? Seeded noise inputs (one odd size), both run, compared."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from srtool.errors import ModelError, first_line
from srtool.export.report import ParityResult
from srtool.infer.tiling import round_to_multiple

if TYPE_CHECKING:
    from srtool.export.source import ResolvedSource

__all__ = [
    "DEFAULT_PARITY_SIZES",
    "compare",
    "ort_session",
    "cuda_available",
    "cuda_session",
    "measure_parity",
    "parity_inputs",
    "torch_outputs",
]

#: (batch, height, width) of the parity inputs: a regular size and an odd one.
DEFAULT_PARITY_SIZES: tuple[tuple[int, int, int], ...] = ((1, 64, 64), (2, 37, 53))


def ort_session(model_bytes_or_path: bytes | Path, provider: str = "CPUExecutionProvider") -> Any:
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


def compare(reference: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    diff = got.astype(np.float64) - reference.astype(np.float64)
    max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
    mse = float(np.mean(diff**2)) if diff.size else 0.0
    return max_abs, (math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse))


def parity_inputs(src: ResolvedSource, sizes: tuple[tuple[int, int, int], ...]) -> list[np.ndarray]:
    """Seeded uniform noise: harsher than photos (every weight matters), and reproducible."""
    rng = np.random.default_rng(20240601)
    m = max(src.multiple_of, 1)
    return [
        rng.random(
            (n, src.in_channels, round_to_multiple(h, m), round_to_multiple(w, m)), dtype=np.float32
        )
        for n, h, w in sizes
    ]


def torch_outputs(model: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        return [model(torch.from_numpy(x)).numpy() for x in inputs]


def measure_parity(
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
        max_abs, psnr = compare(ref, out)
        results.append(ParityResult(variant, provider, tuple(x.shape), max_abs, psnr))
    return results


def cuda_available() -> bool:
    try:
        import onnxruntime as ort

        from srtool.infer.onnx_session import cuda_device_count
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers() and cuda_device_count() > 0


def cuda_session(model_bytes_or_path: bytes | Path, index: int = 0) -> tuple[Any | None, str]:
    """A session that really runs on CUDA device ``index``, or ``(None, why not)``.

    The CUDA libraries are preloaded as for ``srtool upscale``. A listed CUDA provider and a GPU
    are no proof: onnxruntime quietly puts a session on the CPU when the provider cannot start
    (missing CUDA libraries, an old driver), so the session's own providers are checked; a
    verified session gets ``disable_fallback()``, so a failing call raises instead of moving to
    the CPU provider.
    """
    if not cuda_available():
        return None, "no CUDA device or no CUDA provider"
    import onnxruntime as ort

    from srtool.infer.onnx_session import _quiet_logs, preload_cuda_libraries

    preload_cuda_libraries(ort)
    options = ort.SessionOptions()
    options.log_severity_level = _quiet_logs(ort)
    source = (
        model_bytes_or_path if isinstance(model_bytes_or_path, bytes) else str(model_bytes_or_path)
    )
    providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(source, options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - reported as the reason, the CPU rows still stand
        return None, f"onnxruntime could not start a CUDA session: {first_line(exc)}"
    active = session.get_providers()
    if not active or active[0] != "CUDAExecutionProvider":
        return None, f"onnxruntime could not start a CUDA session (it ran on {', '.join(active)})"
    session.disable_fallback()
    return session, ""
