"""The upscaler on real onnxruntime sessions: seams, dtypes, channels, probing, OOM retry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx_factory import build_sr_model
from PIL import Image

from srtool.errors import DeviceError, ModelError, OutOfMemoryError, UsageError
from srtool.infer import load_upscaler
from srtool.infer.onnx_session import cuda_device_count


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.fixture(scope="module")
def deep_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten 3x3 convs: a receptive field of 10 px, deeper than the tile edge margin."""
    path = tmp_path_factory.mktemp("deep") / "deep-x4.onnx"
    return build_sr_model(path, scale=4, convs=10, features=16, seed=3)


@pytest.fixture(scope="module")
def photo(shared_data: Path) -> np.ndarray:
    image = Image.open(shared_data / "Set14" / "baboon.png").convert("RGB")
    return np.asarray(image)[:200, :230]


def test_tiled_matches_untiled_above_50db(deep_model: Path, photo: np.ndarray) -> None:
    whole = load_upscaler(str(deep_model), tile=0, device="cpu").upscale(
        photo.astype(np.float32) / 255
    )
    tiled_upscaler = load_upscaler(str(deep_model), tile=64, overlap=32, device="cpu")
    tiled = tiled_upscaler.upscale(photo.astype(np.float32) / 255)
    assert tiled.shape == whole.shape == (800, 920, 3)
    assert psnr(whole, tiled) > 50.0


def test_tiles_without_overlap_do_show_seams(deep_model: Path, photo: np.ndarray) -> None:
    """The check above is meaningful: with no overlap the same model leaves visible seams."""
    img = photo.astype(np.float32) / 255
    whole = load_upscaler(str(deep_model), tile=0, device="cpu").upscale(img)
    seamy = load_upscaler(str(deep_model), tile=64, overlap=0, device="cpu").upscale(img)
    assert psnr(whole, seamy) < 45.0


def test_render_keeps_dtype_and_channels(tiny_model_x2: Path) -> None:
    up = load_upscaler(str(tiny_model_x2), device="cpu", tile=24, overlap=8)
    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, (30, 41, 3), dtype=np.uint16)
    out16 = up.render(rgb16, dtype=np.uint16)
    assert out16.dtype == np.uint16 and out16.shape == (60, 82, 3)
    grey8 = rng.integers(0, 256, (33, 20, 1), dtype=np.uint8)
    whole = load_upscaler(str(tiny_model_x2), device="cpu", tile=0)
    out_grey = whole.render(grey8, dtype=np.uint8)
    assert out_grey.shape == (66, 40, 1) and out_grey.dtype == np.uint8
    # the grey result is the channel mean of the model's output on the replicated grey image
    raw = whole.model.run(
        np.repeat(grey8.transpose(2, 0, 1)[None] / 255.0, 3, axis=1).astype(np.float32)
    )
    expected = np.clip(raw[0].mean(axis=0), 0, 1)[:, :, None]
    assert np.abs(out_grey / 255.0 - expected).max() <= 0.5 / 255 + 1e-6


def test_tiny_and_odd_images(tiny_model_x2: Path) -> None:
    up = load_upscaler(str(tiny_model_x2), device="cpu", tile=16, overlap=4)
    for h, w in [(1, 1), (2, 3), (17, 1), (37, 53)]:
        out = up.upscale(np.full((h, w, 3), 0.25, np.float32))
        assert out.shape == (2 * h, 2 * w, 3)


def test_multiple_of_padding_is_cropped(tmp_path: Path) -> None:
    path = build_sr_model(tmp_path / "m8.onnx", scale=2, metadata={"srtool.multiple_of": "8"})
    up = load_upscaler(str(path), device="cpu", tile=0)
    assert up.info.multiple_of == 8
    out = up.upscale(np.random.default_rng(1).random((13, 21, 3), dtype=np.float32))
    assert out.shape == (26, 42, 3)


def test_scale_probed_without_metadata(tmp_path: Path) -> None:
    path = build_sr_model(
        tmp_path / "plain.onnx", scale=3, with_srtool_metadata=False, input_name="input"
    )
    up = load_upscaler(str(path), device="cpu")
    assert up.scale == 3 and "srtool.scale" not in up.info.metadata  # found by a trial run
    assert up.upscale(np.zeros((5, 7, 3), np.float32)).shape == (15, 21, 3)


def test_fp16_io_model_runs(tmp_path: Path) -> None:
    path = build_sr_model(tmp_path / "half.onnx", scale=2, fp16_io=True)
    out = load_upscaler(str(path), device="cpu").upscale(np.full((8, 8, 3), 0.5, np.float32))
    assert out.dtype == np.float32 and out.shape == (16, 16, 3)


def test_scale_flag_must_match_model(tiny_model_x2: Path) -> None:
    with pytest.raises(UsageError, match="x2 model"):
        load_upscaler(str(tiny_model_x2), scale=4)


def test_bad_model_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_upscaler(str(tmp_path / "missing.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        load_upscaler(str(junk))


@pytest.mark.skipif(cuda_device_count() > 0, reason="checks the no-GPU error path")
def test_cuda_request_without_gpu_is_a_clear_error(tiny_model_x2: Path) -> None:
    with pytest.raises(DeviceError):
        load_upscaler(str(tiny_model_x2), device="cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        load_upscaler(str(tiny_model_x2), device="tpu")
    up = load_upscaler(str(tiny_model_x2), device="auto")
    assert up.model.device == "cpu" and up.model.notices


def test_out_of_memory_halves_batch_then_tile(tiny_model_x2: Path) -> None:
    """A backend OOM on large calls makes the upscaler retry smaller, with the same result."""
    up = load_upscaler(str(tiny_model_x2), device="cpu", tile=128, overlap=8, batch=2)
    real_run = up.model.run
    calls: list[tuple[int, ...]] = []

    def run_with_memory_limit(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape)
        if batch.shape[0] * batch.shape[2] * batch.shape[3] > 48 * 48:
            raise OutOfMemoryError("cpu out of memory: simulated")
        return real_run(batch)

    up.model.run = run_with_memory_limit  # type: ignore[method-assign]
    image = np.random.default_rng(2).random((100, 90, 3), dtype=np.float32)
    out = up.upscale(image)
    reference = load_upscaler(str(tiny_model_x2), device="cpu", tile=48, overlap=8).upscale(image)
    assert out.shape == (200, 180, 3)
    assert psnr(out, reference) > 50
    assert up._settings.batch == 1 and up.tile_for(100, 90) <= 64
