"""Shared fixtures: paths to the shared real images and small real ONNX models."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SHARED_WEIGHTS = REPO_ROOT.parent / "shared" / "weights"
sys.path.insert(0, str(TESTS_DIR))

from onnx_factory import build_sr_model  # noqa: E402


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
def shared_weights() -> Path:
    if not (SHARED_WEIGHTS / "realesr-animevideov3_x4.pth").is_file():
        pytest.skip(f"shared weights not found at {SHARED_WEIGHTS}")
    return SHARED_WEIGHTS


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared benchmark images not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_photos() -> Path:
    return TESTS_DIR / "data" / "photos"


@pytest.fixture(scope="session")
def tiny_model_x2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sr_model(tmp_path_factory.mktemp("models") / "tiny-x2.onnx", scale=2)


@pytest.fixture(scope="session")
def tiny_model_x4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sr_model(tmp_path_factory.mktemp("models") / "tiny-x4.onnx", scale=4, convs=4)
