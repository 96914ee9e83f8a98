"""The CUDA paths on a real GPU (``pytest -m gpu``); skipped automatically where onnxruntime
cannot run a session on CUDA (see ``conftest.py``). Their CPU counterparts, with fakes and a stub
driver, are in ``test_cuda_paths.py``; ``benchmarks/gpu_check.sh`` covers the rest on a GPU."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
from onnx_factory import build_sr_model

import srtool.infer.upscaler as upscaler_mod
from srtool.infer import load_upscaler, plan_upscale
from srtool.infer.onnx_session import OnnxModel, cuda_free_memory

pytestmark = pytest.mark.gpu


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(7).random((181, 243, 3), dtype=np.float32)


def test_cuda_session_runs_on_cuda_without_cpu_fallback(tiny_model_x4: Path) -> None:
    model = OnnxModel(tiny_model_x4, device="cuda")
    assert model.device == "cuda"
    assert model.session.get_providers()[0] == "CUDAExecutionProvider"
    assert model.session._enable_fallback is False  # disable_fallback() was called


def test_cuda_output_matches_cpu(tiny_model_x4: Path, image: np.ndarray) -> None:
    gpu = load_upscaler(str(tiny_model_x4), device="cuda", tile=96).upscale(image)
    cpu = load_upscaler(str(tiny_model_x4), device="cpu", tile=96).upscale(image)
    assert np.isfinite(gpu).all()
    assert psnr(gpu, cpu) > 45  # TF32 convolutions: close, not bit-identical


def test_free_memory_comes_from_the_driver() -> None:
    free = cuda_free_memory(0)
    assert free is not None and free > 0
    assert upscaler_mod.free_memory_bytes("cuda", 0) == pytest.approx(free, rel=0.2)


def test_tensor_limit_on_cuda_cuts_the_whole_image(
    tiny_model_x4: Path,
    image: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    whole = load_upscaler(str(tiny_model_x4), device="cuda", tile=0)
    reference = whole.upscale(image)
    monkeypatch.setattr(upscaler_mod, "MAX_TENSOR_VALUES", 48 * 64 * 64 * 16 + 1)
    capped = load_upscaler(str(tiny_model_x4), device="cuda", tile=0)
    assert capped.model.device == "cuda"
    with caplog.at_level(logging.WARNING, logger="srtool"):
        out = capped.upscale(image)
    assert "2^31 values" in caplog.text
    assert psnr(out, reference) > 50


def test_fp16_sibling_runs_on_cuda(tmp_path: Path, image: np.ndarray) -> None:
    onnx = pytest.importorskip("onnx")
    from srtool.export.quantize import to_fp16

    fp32 = build_sr_model(tmp_path / "model.onnx", scale=2)
    onnx.save(to_fp16(onnx.load(str(fp32))), str(tmp_path / "model.fp16.onnx"))
    plan = plan_upscale(str(fp32), device="cuda", fp16=True)
    assert plan.upscaler.model.path.name == "model.fp16.onnx" and plan.notices == ()
    half = plan.upscaler.upscale(image)
    full = load_upscaler(str(fp32), device="cuda").upscale(image)
    assert np.isfinite(half).all() and psnr(half, full) > 40


def test_fp16_export_parity_is_measured_on_cuda(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from srtool.export import export_onnx
    from srtool.models import build

    torch.manual_seed(0)
    report = export_onnx(
        build("compact", scale=2, features=8, convs=2).eval(), tmp_path / "m.onnx", fp16=True
    )
    (variant,) = report.variants
    cuda_rows = [r for r in variant.parity if r.provider == "CUDA"]
    assert len(cuda_rows) == 2 and all(r.psnr_db > 40 for r in cuda_rows)
    assert variant.note.startswith("fp16 arithmetic checked on CUDA")
