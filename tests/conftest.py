"""Shared fixtures: paths to the shared real images and weights, small real ONNX models, and a
local HTTP server for download tests."""

from __future__ import annotations

import functools
import http.server
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SHARED_WEIGHTS = REPO_ROOT.parent / "shared" / "weights"
sys.path.insert(0, str(TESTS_DIR))

from onnx_factory import build_sr_model  # noqa: E402


def _cuda_unusable_reason() -> str | None:
    """Why the ``gpu`` tests cannot run here, or None when a CUDA session really runs on CUDA
    (provider listed, a device, and a session that kept the CUDA provider: srtool's own check)."""
    import tempfile

    import numpy as np

    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "this onnxruntime has no CUDA provider"
    from srtool.errors import SrtoolError
    from srtool.infer.onnx_session import OnnxModel, cuda_device_count

    if cuda_device_count() == 0:
        return "no CUDA device"
    with tempfile.TemporaryDirectory() as folder:
        path = build_sr_model(Path(folder) / "probe.onnx", scale=2)
        try:
            model = OnnxModel(path, device="cuda")
            model.run(np.zeros((1, 3, 8, 8), np.float32))
        except SrtoolError as exc:
            return f"CUDA is not usable: {exc}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``gpu`` tests run only where onnxruntime really runs on CUDA; elsewhere they are skipped
    with the reason (``pytest -m gpu`` on a GPU machine runs exactly them)."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    reason = _cuda_unusable_reason()
    if reason is None:
        return
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason=f"gpu test: {reason}"))


@pytest.fixture(autouse=True)
def _restore_srtool_logger() -> Iterator[None]:
    """CLI commands configure the ``srtool`` logger (handler, level, no propagation); undo it
    after each test so later tests' ``caplog`` sees library warnings whatever ran before."""
    logger = logging.getLogger("srtool")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture(autouse=True)
def _model_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Converted models go to a cache folder of the test session, never the user's own."""
    monkeypatch.setenv("SRTOOL_MODEL_CACHE", str(tmp_path_factory.getbasetemp() / "model-cache"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared benchmark images not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    """The shared weights folder (``lpips_alex_v0.1.safetensors``, the community
    ``realesr-animevideov3_x4.pth`` and others, see its README)."""
    needed = ("lpips_alex_v0.1.safetensors", "realesr-animevideov3_x4.pth")
    if not all((SHARED_WEIGHTS / name).is_file() for name in needed):
        pytest.skip(f"shared weights not found at {SHARED_WEIGHTS}")
    return SHARED_WEIGHTS


@pytest.fixture(scope="session")
def sample_photos() -> Path:
    return TESTS_DIR / "data" / "photos"


@pytest.fixture(scope="session")
def tiny_model_x2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sr_model(tmp_path_factory.mktemp("models") / "tiny-x2.onnx", scale=2)


@pytest.fixture(scope="session")
def tiny_model_x4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sr_model(tmp_path_factory.mktemp("models") / "tiny-x4.onnx", scale=4, convs=4)


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving the files of a temporary folder."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", folder
    finally:
        httpd.shutdown()
        httpd.server_close()


class Hang(BaseException):
    """Raised in the main thread by the watchdog: not an Exception, so nothing swallows it."""


@pytest.fixture()
def watchdog() -> Iterator[None]:
    """Fails a test that would hang (a batch whose threads never finish) after 60 s."""

    def expired(signum: int, frame: object) -> None:
        raise Hang("the batch did not finish within 60 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def vgg_file() -> Path:
    """VGG19 conv1_1 ... conv3_1 (ImageNet, Oxford release): enough for VGG22/VGG31 losses."""
    path = SHARED_WEIGHTS / "vgg19_conv1_1-conv3_1_oxford.safetensors"
    if not path.is_file():
        pytest.skip(f"truncated VGG19 weights not found at {path}")
    return path


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on shared cores every OpenMP barrier
    waits for a descheduled thread (a 4x16x8x8 BatchNorm was measured at 24 ms with 2 threads)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def t91(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six real T91 images cropped to 64x64, written as PNG into a temporary folder: training
    data for tiny models (modules that need other crops define their own ``t91``)."""
    from PIL import Image

    from srtool.train.patches import read_rgb8

    folder = tmp_path_factory.mktemp("t91")
    for f in sorted((shared_data / "T91").glob("*.bmp"))[:6]:
        Image.fromarray(read_rgb8(f)[:64, :64]).save(folder / f"{f.stem}.png")
    return folder
