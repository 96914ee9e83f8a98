"""``srtool doctor`` on CPU: no driver, a stub NVIDIA driver (``libcuda.so.1`` answering the
driver API with one 80 GiB GPU, so "a driver but no working CUDA" is testable without a GPU),
an old driver, and CUDA libraries missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cuda_stub import build_stub_driver

from srtool.doctor import CUDA_FIX, required_cuda_libraries


def _stub_driver(folder: Path, version: int = 13000) -> Path:
    return build_stub_driver(folder, version=version)


def _doctor(*args: str, driver: Path | None = None, prelude: str = "") -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES",)}
    env["COLUMNS"] = "250"
    env["LD_LIBRARY_PATH"] = str(driver) if driver else "/nonexistent"
    argv = ["srtool", "doctor", *args]
    code = f"{prelude}\nimport sys\nfrom srtool.cli import main\nsys.argv = {argv!r}\nmain()"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    return done.returncode, done.stdout + done.stderr


pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the stub driver is a Linux .so")


def test_without_a_driver_cpu_works_and_cuda_says_why_not() -> None:
    rc, out = _doctor("--device", "cpu")
    assert rc == 0 and "--device cpu: works" in out
    rc, out = _doctor("--device", "cuda")
    assert rc == 1
    assert "no NVIDIA GPU found" in out and "--device cuda: does not work" in out
    assert "Traceback" not in out


def test_stub_driver_reports_the_gpu_and_the_reason_cuda_fails(tmp_path: Path) -> None:
    driver = _stub_driver(tmp_path / "driver")
    rc, out = _doctor("--device", "cuda", driver=driver)
    assert "Stub GPU, 70.0 GiB free of 80.0 GiB" in out
    assert "NVIDIA driver" in out and "CUDA 13.0" in out
    # a stub cannot run kernels: the CUDA session must fail, named, with exit 1
    assert rc == 1 and "CUDA session" in out and "fails" in out
    assert "onnxruntime cannot use CUDA" in out
    assert "Traceback" not in out
    rc, out = _doctor(driver=driver)  # auto: falls back to CPU, which works
    assert rc == 0 and "auto runs on CPU" in out and "--device auto: works" in out
    rc, out = _doctor("--device", "cuda:1", driver=driver)
    assert rc == 1 and "cuda:1 requested but 1 GPU(s) found" in out


def test_missing_cuda_libraries_are_named_with_the_install_command(tmp_path: Path) -> None:
    driver = _stub_driver(tmp_path / "driver")
    prelude = (
        "import srtool.doctor as d\n"
        "d._loadable = lambda soname: soname != 'libcurand.so.10'\n"
        "d._cuda_session = lambda ort, index: (False, 'libcurand.so.10: cannot open shared object')"
    )
    rc, out = _doctor("--device", "cuda", driver=driver, prelude=prelude)
    assert rc == 1
    assert "libcurand.so.10" in out and "missing" in out
    assert "onnxruntime cannot use CUDA: missing libcurand.so.10" in out
    assert f"fix: {CUDA_FIX}" in out


def test_an_old_driver_is_named_with_the_branch_it_needs(tmp_path: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("the installed onnxruntime has no CUDA provider to check a driver against")
    driver = _stub_driver(tmp_path / "driver", version=12040)
    rc, out = _doctor("--device", "cuda", driver=driver)
    assert rc == 1 and "the NVIDIA driver supports CUDA 12.4" in out and "R580" in out


def test_required_libraries_follow_the_cuda_major() -> None:
    thirteen = dict(required_cuda_libraries("13.0"))
    assert thirteen["libcublasLt.so.13"] == "nvidia-cublas"
    assert thirteen["libcudnn.so.9"] == "nvidia-cudnn-cu13"
    assert thirteen["libcufft.so.12"] == "nvidia-cufft"
    twelve = dict(required_cuda_libraries("12.8"))
    assert twelve["libcudart.so.12"] == "nvidia-cuda-runtime-cu12"
    assert twelve["libcufft.so.11"] == "nvidia-cufft-cu12"
