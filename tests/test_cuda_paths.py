"""CUDA-only behaviour, tested on CPU: tensors kept below 2^31 values, allocation failures of
cuBLAS / cuDNN treated as out-of-memory, free GPU memory from the driver API (a stub driver),
``disable_fallback`` on verified CUDA sessions, honest fp16 parity, and ``--fp16`` never ignored.
The same paths on a real GPU are in ``test_cuda.py`` (marked ``gpu``)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cuda_stub import GIB, build_stub_driver, load_stub_driver
from onnx_factory import build_sr_model

import srtool.infer.onnx_session as onnx_session
import srtool.infer.upscaler as upscaler_mod
from srtool.errors import OutOfMemoryError
from srtool.infer import load_upscaler, plan_upscale
from srtool.infer.catalog import resolve_model
from srtool.infer.onnx_session import ModelInfo, OnnxModel
from srtool.infer.upscaler import (
    MAX_TENSOR_VALUES,
    auto_tile_size,
    free_memory_bytes,
    max_tile_side,
)

LIMIT = 2**31


def _info(**kw: Any) -> ModelInfo:
    return ModelInfo(name="m", path=Path("m.onnx"), **kw)


# -- C3: no tensor of 2^31 values or more ------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "free"),
    [
        (_info(scale=4, features=64, activation_per_pixel=1024), 141 * 10**9),  # RRDBNet, H200
        (_info(scale=4, features=64, activation_per_pixel=1024), 80 * GIB),
        (_info(scale=4, features=64), 141 * 10**9),  # no recorded peak: 64 maps at HR size
        (_info(scale=4, features=48, activation_per_pixel=48), 141 * 10**9),  # compact
    ],
)
@pytest.mark.parametrize("batch", [1, 4, 8])
def test_auto_tile_keeps_every_call_below_2_31_values(
    info: ModelInfo, free: int, batch: int
) -> None:
    tile = auto_tile_size(info, "cuda", free, batch)
    peak = max(info.activation_per_pixel or info.features * info.scale**2, 3 * info.scale**2)
    assert batch * tile * tile * peak < LIMIT
    assert tile >= 64


def test_max_tile_side_is_the_largest_legal_square() -> None:
    info = _info(scale=4, activation_per_pixel=1024, multiple_of=4)
    side = max_tile_side(info, 2)
    assert side % 4 == 0
    assert 2 * side * side * 1024 < LIMIT <= 2 * (side + 4) ** 2 * 1024


class _CallSpy:
    """Records the input shape of every session call of a real model."""

    def __init__(self, model: OnnxModel) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self._run = model.run
        model.run = self  # type: ignore[method-assign]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        return self._run(batch)


@pytest.fixture(scope="module")
def peaky_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A x2 model that records a peak of 100 values per input pixel."""
    path = tmp_path_factory.mktemp("peaky") / "peaky-x2.onnx"
    meta = {"srtool.peak_activation_per_input_pixel": "100"}
    return build_sr_model(path, scale=2, features=8, metadata=meta)


@pytest.mark.parametrize("tile", [0, 160])
def test_whole_image_and_big_explicit_tiles_are_cut_to_the_tensor_limit(
    peaky_model: Path, tile: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    image = np.random.default_rng(1).random((150, 190, 3), dtype=np.float32)
    reference = load_upscaler(str(peaky_model), tile=0, device="cpu").upscale(image)
    limit = 100 * 64 * 64 + 1  # one 64x64 tile per call at most
    monkeypatch.setattr(upscaler_mod, "MAX_TENSOR_VALUES", limit)
    up = load_upscaler(str(peaky_model), tile=tile, device="cpu")
    spy = _CallSpy(up.model)
    with caplog.at_level(logging.WARNING, logger="srtool"):
        out = up.upscale(image)
        up.upscale(image)  # a second image: the warning is not repeated
    assert spy.shapes and all(n * h * w * 100 < limit for n, _, h, w in spy.shapes)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2^31 values" in warnings[0] and "64px tiles" in warnings[0]
    np.testing.assert_allclose(out, reference, atol=2e-3)  # the overlap hides the tile edges


def test_batch_is_reduced_before_the_tile(
    peaky_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    image = np.random.default_rng(2).random((48, 400, 3), dtype=np.float32)
    monkeypatch.setattr(upscaler_mod, "MAX_TENSOR_VALUES", 100 * 48 * 48 * 2 + 1)
    up = load_upscaler(str(peaky_model), tile=48, overlap=8, batch=8, device="cpu")
    spy = _CallSpy(up.model)
    with caplog.at_level(logging.WARNING, logger="srtool"):
        up.upscale(image)
    assert {shape[2:] for shape in spy.shapes} == {(48, 48)}  # the tile size is kept
    assert max(shape[0] for shape in spy.shapes) == 2
    assert "running 2 per call" in caplog.text


def test_real_limit_is_2_31() -> None:
    assert MAX_TENSOR_VALUES == LIMIT - 1


# -- C5: allocation failures of CUDA libraries are out-of-memory --------------------------------


MESSAGES = [
    "CUBLAS failure 3: CUBLAS_STATUS_ALLOC_FAILED ; GPU=0 ; hostname=x ; expr=cublasCreate(&h);",
    "CUDNN failure 4: CUDNN_STATUS_ALLOC_FAILED ; GPU=0 ; expr=cudnnCreate(&h);",
    "CUDNN failure 4001: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED ; GPU=0",
    "CURAND failure 102: CURAND_STATUS_ALLOCATION_FAILED",
    "CUFFT failure 2: CUFFT_ALLOC_FAILED",
    "CUDA failure 2: out of memory ; GPU=0",
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer",
]


@pytest.mark.parametrize("message", MESSAGES)
def test_cuda_library_allocation_failures_retry_with_smaller_tiles(
    tiny_model_x2: Path,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    up = load_upscaler(str(tiny_model_x2), tile=0, device="cpu")
    real_run = up.model.session.run
    calls = {"n": 0}

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError(message)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(up.model.session, "run", failing_once)
    image = np.random.default_rng(3).random((100, 100, 3), dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="srtool"):
        out = up.upscale(image)
    assert out.shape == (200, 200, 3)
    assert "out of memory: retrying with 50px tiles" in caplog.text


def test_other_failures_are_not_out_of_memory(tiny_model_x2: Path) -> None:
    model = OnnxModel(tiny_model_x2, device="cpu")
    assert not onnx_session._is_oom(RuntimeError("CUDNN_STATUS_BAD_PARAM"))
    assert not onnx_session._is_oom(RuntimeError("CUBLAS_STATUS_NOT_SUPPORTED"))
    with pytest.raises(OutOfMemoryError):

        class _Session:
            def run(self, *args: Any) -> Any:
                raise RuntimeError("CUBLAS_STATUS_ALLOC_FAILED")

        model.session = _Session()
        model.run(np.zeros((1, 3, 8, 8), np.float32))


# -- S4: free GPU memory from the driver API ---------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="the stub driver is a Linux .so")
def test_free_gpu_memory_comes_from_the_driver_of_the_device_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = 12_345_678_901
    folder = build_stub_driver(tmp_path / "driver", devices=2, free_bytes=free)
    driver = load_stub_driver(folder)
    monkeypatch.setattr(onnx_session, "cuda_driver", lambda: driver)
    assert free_memory_bytes("cuda", 0) == free
    assert free_memory_bytes("cuda", 1) == free + GIB  # device 1's own context was asked
    assert driver.stub_contexts_held() == 0  # every primary context retained was released
    # no such device: the conservative guess, with a debug line
    assert free_memory_bytes("cuda", 5) == upscaler_mod.CUDA_FREE_GUESS


def test_without_a_driver_the_free_memory_is_a_logged_guess(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(onnx_session, "cuda_driver", lambda: None)
    with caplog.at_level(logging.DEBUG, logger="srtool"):
        assert free_memory_bytes("cuda", 0) == 4 * GIB
    assert "cannot read free memory of cuda:0" in caplog.text


@pytest.mark.skipif(sys.platform != "linux", reason="the stub driver is a Linux .so")
def test_auto_tiles_are_sized_from_the_driver_in_a_fresh_process(tmp_path: Path) -> None:
    """The real loader (``libcuda.so.1`` found through the library path), not nvidia-smi."""
    folder = build_stub_driver(tmp_path / "driver", devices=2, free_bytes=3 * GIB)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["LD_LIBRARY_PATH"] = str(folder)
    env["PATH"] = "/nonexistent"  # no nvidia-smi either way
    code = (
        "from srtool.infer.upscaler import free_memory_bytes as f\n"
        "print(f('cuda', 0), f('cuda', 1))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(3 * GIB), str(4 * GIB)]


# -- S7: verified CUDA sessions do not fall back to CPU ----------------------------------------


class _PretendCuda:
    """A real CPU session that, when CUDA was asked for, reports the CUDA provider first; records
    disable_fallback."""

    created: list[_PretendCuda] = []

    def __init__(self, real: Any, source: Any, options: Any, providers: Any) -> None:
        self._real = real(source, options, providers=["CPUExecutionProvider"])
        self.asked = providers
        self.fallback_disabled = False
        _PretendCuda.created.append(self)

    def get_providers(self) -> list[str]:
        names = [p[0] if isinstance(p, tuple) else p for p in self.asked or []]
        if "CUDAExecutionProvider" in names:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def disable_fallback(self) -> None:
        self.fallback_disabled = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture()
def pretend_cuda(monkeypatch: pytest.MonkeyPatch) -> list[_PretendCuda]:
    import onnxruntime as ort

    real = ort.InferenceSession
    _PretendCuda.created = []
    monkeypatch.setattr(
        ort,
        "InferenceSession",
        lambda source, options=None, providers=None: _PretendCuda(real, source, options, providers),
    )
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(onnx_session, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(ort, "preload_dlls", lambda: None, raising=False)
    return _PretendCuda.created


def test_cuda_sessions_get_disable_fallback(
    tiny_model_x2: Path, pretend_cuda: list[_PretendCuda]
) -> None:
    model = OnnxModel(tiny_model_x2, device="cuda")
    assert model.device == "cuda"
    assert pretend_cuda[-1].asked[0][0] == "CUDAExecutionProvider"
    assert pretend_cuda[-1].fallback_disabled


def test_cuda_arena_grows_by_what_is_asked(
    tiny_model_x2: Path, pretend_cuda: list[_PretendCuda]
) -> None:
    """Tiles are planned from free memory: an arena that doubles past the request would not fit."""
    OnnxModel(tiny_model_x2, device="cuda:0")
    name, options = pretend_cuda[-1].asked[0]
    assert name == "CUDAExecutionProvider"
    assert options["arena_extend_strategy"] == "kSameAsRequested"
    assert options["device_id"] == 0


def test_cpu_sessions_keep_onnxruntime_defaults(tiny_model_x2: Path) -> None:
    model = OnnxModel(tiny_model_x2, device="cpu")
    assert model.device == "cpu" and model.session._enable_fallback


# -- S3: --fp16 is never ignored silently -------------------------------------------------------


@pytest.fixture()
def model_pair(tmp_path: Path) -> tuple[Path, Path]:
    fp32 = build_sr_model(tmp_path / "mine" / "model.onnx", scale=2, seed=1)
    fp16 = build_sr_model(tmp_path / "mine" / "model.fp16.onnx", scale=2, seed=2)
    return fp32, fp16


def test_fp16_with_a_model_path_uses_the_fp16_sibling(model_pair: tuple[Path, Path]) -> None:
    fp32, fp16 = model_pair
    ref = resolve_model(str(fp32), None, fp16=True)
    assert ref.path == fp16 and ref.fp32_path == fp32 and ref.notice is None
    assert resolve_model(str(fp32), None).path == fp32
    assert resolve_model(str(fp16), None, fp16=True).path == fp16  # already the fp16 file


def test_fp16_with_a_model_path_without_a_sibling_says_it_runs_fp32(tmp_path: Path) -> None:
    path = build_sr_model(tmp_path / "solo.onnx", scale=2)
    ref = resolve_model(str(path), None, fp16=True)
    assert ref.path == path
    assert ref.notice == "solo has no fp16 variant (solo.fp16.onnx): running it in fp32"


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_fp16_on_cpu_runs_fp32_with_one_notice(
    model_pair: tuple[Path, Path], device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_session, "cuda_device_count", lambda: 0)
    fp32, _ = model_pair
    plan = plan_upscale(str(fp32), device=device, fp16=True)
    assert plan.upscaler.model.path == fp32 and plan.upscaler.model.device == "cpu"
    notes = [n for n in plan.notices if "fp16" in n]
    assert notes == ["fp16 runs slower than fp32 on CPU: running the fp32 model"]
    assert plan.upscaler.info.name == "model"


def test_fp16_on_cuda_runs_the_fp16_sibling(
    model_pair: tuple[Path, Path], pretend_cuda: list[_PretendCuda]
) -> None:
    fp32, fp16 = model_pair
    plan = plan_upscale(str(fp32), device="cuda", fp16=True)
    assert plan.upscaler.model.path == fp16 and plan.notices == ()


# -- --int8: the CPU's variant, picked by the same rule as --fp16 ------------------------------


@pytest.fixture()
def model_trio(tmp_path: Path) -> tuple[Path, Path, Path]:
    fp32 = build_sr_model(tmp_path / "mine" / "model.onnx", scale=2, seed=1)
    fp16 = build_sr_model(tmp_path / "mine" / "model.fp16.onnx", scale=2, seed=2)
    int8 = build_sr_model(tmp_path / "mine" / "model.int8.onnx", scale=2, seed=3)
    return fp32, fp16, int8


def test_int8_with_a_model_path_uses_the_int8_sibling(model_trio: tuple[Path, Path, Path]) -> None:
    fp32, fp16, int8 = model_trio
    ref = resolve_model(str(fp32), None, int8=True)
    assert (ref.path, ref.fp32_path, ref.variant, ref.notice) == (int8, fp32, "int8", None)
    assert ref.name == "model-int8" and ref.gpu_path == fp32
    assert resolve_model(str(int8), None, int8=True).path == int8  # already the int8 file
    both = resolve_model(str(fp32), None, int8=True, fp16=True)
    assert (both.path, both.gpu_path) == (int8, fp16)


def test_int8_without_a_sibling_says_it_runs_fp32(tmp_path: Path) -> None:
    path = build_sr_model(tmp_path / "solo.onnx", scale=2)
    ref = resolve_model(str(path), None, int8=True)
    assert ref.path == path and ref.variant is None
    assert ref.notice == "solo has no int8 variant (solo.int8.onnx): running it in fp32"


def test_int8_without_a_sibling_falls_back_to_fp16_when_asked(tmp_path: Path) -> None:
    fp32 = build_sr_model(tmp_path / "model.onnx", scale=2, seed=1)
    fp16 = build_sr_model(tmp_path / "model.fp16.onnx", scale=2, seed=2)
    ref = resolve_model(str(fp32), None, int8=True, fp16=True)
    assert ref.path == fp16 and ref.variant == "fp16"
    assert ref.notice == "model has no int8 variant (model.int8.onnx)"


def test_int8_of_a_shipped_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "models" / "mine-x2"
    fp32 = build_sr_model(folder / "model.onnx", scale=2, seed=1)
    int8 = build_sr_model(folder / "model.int8.onnx", scale=2, seed=3)
    monkeypatch.setenv("SRTOOL_MODELS", str(tmp_path / "models"))
    ref = resolve_model("mine-x2", None, int8=True)
    assert (ref.path, ref.fp32_path, ref.shipped, ref.name) == (int8, fp32, True, "mine-x2-int8")


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_int8_on_cpu_runs_the_int8_sibling(
    model_trio: tuple[Path, Path, Path], device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_session, "cuda_device_count", lambda: 0)
    fp32, _, int8 = model_trio
    plan = plan_upscale(str(fp32), device=device, int8=True)
    assert plan.upscaler.model.path == int8 and plan.upscaler.model.device == "cpu"
    assert not [n for n in plan.notices if "int8" in n or "fp16" in n]
    assert load_upscaler(str(fp32), device=device, int8=True).model.path == int8


@pytest.mark.parametrize(("fp16", "expected"), [(False, 0), (True, 1)])
def test_int8_on_cuda_runs_fp32_or_fp16_with_one_notice(
    model_trio: tuple[Path, Path, Path], pretend_cuda: list[_PretendCuda], fp16: bool, expected: int
) -> None:
    plan = plan_upscale(str(model_trio[0]), device="cuda", int8=True, fp16=fp16)
    assert plan.upscaler.model.path == model_trio[expected]
    precision = "fp16 variant" if fp16 else "fp32 model"
    assert plan.notices == (f"int8 runs on CPU only: running the {precision} on cuda",)


# -- S2: fp16 parity says what it checked --------------------------------------------------------


def _export_fp16(tmp_path: Path) -> Any:
    torch = pytest.importorskip("torch")
    from srtool.export import export_onnx
    from srtool.models import build

    torch.manual_seed(0)
    model = build("compact", scale=2, features=8, convs=2).eval()
    return export_onnx(model, tmp_path / "model.onnx", fp16=True)


def test_fp16_parity_on_cpu_says_it_checks_weight_rounding_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CUDA provider and a driver that cannot start a session (here: no GPU at all, but the
    check is told there is one) must not produce a 'checked on CUDA' claim."""
    import srtool.export.parity as parity

    monkeypatch.setattr(parity, "cuda_available", lambda: True)
    report = _export_fp16(tmp_path)
    (variant,) = report.variants
    assert {r.provider for r in variant.parity} == {"CPU"}
    assert "CPU provider only" in variant.note and "weight rounding only" in variant.note
    assert "not verified" in variant.note and "checked on CUDA" not in variant.note
    card = (tmp_path / "model.md").read_text()
    assert "weight rounding only" in card and "CPU and CUDA" not in card


def test_fp16_parity_on_a_verified_cuda_session_is_labelled_cuda(
    tmp_path: Path, pretend_cuda: list[_PretendCuda]
) -> None:
    report = _export_fp16(tmp_path)
    (variant,) = report.variants
    providers = [r.provider for r in variant.parity]
    assert providers.count("CUDA") == 2 and providers.count("CPU") == 2  # a row per input
    assert variant.note.startswith("fp16 arithmetic checked on CUDA")
    cuda_sessions = [
        s for s in pretend_cuda if s.asked and s.asked[0][0] == "CUDAExecutionProvider"
    ]
    assert cuda_sessions and all(s.fallback_disabled for s in cuda_sessions)
