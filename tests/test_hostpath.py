"""The host side of inference: reused and IO-bound buffers, tiles batched across rows, the
separable blend, several frames per call, parallel writers. Each is checked against the plain
way of doing the same thing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from onnx_factory import build_sr_model
from PIL import Image

from srtool.infer import load_upscaler
from srtool.infer import pipeline as pipeline_module
from srtool.infer.blend import tile_weights
from srtool.infer.jobs import collect_jobs
from srtool.infer.pipeline import BatchOptions, encoder_count, run_batch
from srtool.infer.tiling import plan_tiles
from srtool.infer.upscaler import pad_to_multiple


@pytest.fixture(scope="module")
def model_x2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostpath") / "m-x2.onnx"
    return build_sr_model(path, scale=2, convs=4, features=8, seed=5)


def _image(height: int, width: int, dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    """Smooth content with noise: realistic for blending, not a constant."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(xs / 7.0), np.cos(ys / 5.0), np.sin((xs + ys) / 11.0)], axis=2)
    values = 0.5 + 0.35 * base + rng.normal(0, 0.05, base.shape)
    values = np.clip(values, 0, 1)
    if dtype == np.float32:
        return values.astype(np.float32)
    peak = np.iinfo(dtype).max
    return np.round(values * peak).astype(dtype)


def _reference(model_path: Path, image: np.ndarray, tile: int, overlap: int) -> np.ndarray:
    """The tiled upscale done the old, plain way: each tile stacked into a fresh float array,
    ``session.run``, the 2-D feather weights accumulated with a weight plane over the whole
    output, divided, then rounded into the image's dtype."""
    up = load_upscaler(str(model_path), device="cpu", tile=tile, overlap=overlap)
    session = up.model.session
    name = session.get_inputs()[0].name
    s = up.scale
    padded = pad_to_multiple(image, up.info.multiple_of)
    grid = plan_tiles(padded.shape[0], padded.shape[1], tile, overlap, up.info.multiple_of)
    acc = np.zeros((3, grid.height * s, grid.width * s), dtype=np.float32)
    weight = np.zeros((grid.height * s, grid.width * s), dtype=np.float32)
    for t in grid.tiles:
        chw = padded[t.y0 : t.y1, t.x0 : t.x1].transpose(2, 0, 1).astype(np.float32)
        if image.dtype != np.float32:
            chw *= 1.0 / np.iinfo(image.dtype).max
        (out,) = session.run(None, {name: np.stack([chw])})
        rows, cols = tile_weights(grid, t, s)
        w = np.multiply.outer(rows, cols)
        acc[:, t.y0 * s : t.y1 * s, t.x0 * s : t.x1 * s] += out[0] * w
        weight[t.y0 * s : t.y1 * s, t.x0 * s : t.x1 * s] += w
    values = (acc / weight).transpose(1, 2, 0)[: image.shape[0] * s, : image.shape[1] * s]
    if image.dtype == np.float32:
        return np.clip(values, 0, 1)
    peak = float(np.iinfo(image.dtype).max)
    return np.clip(values * peak + 0.5, 0, peak + 0.49).astype(image.dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiled_output_matches_the_plain_way(model_x2: Path, dtype: type) -> None:
    """The reused buffers, IO binding and separable normalisation change no pixel by more
    than one step (8 and 16 bit), and float output by less than 60 dB."""
    image = _image(90, 131, dtype)
    reference = _reference(model_x2, image, tile=40, overlap=12)
    up = load_upscaler(str(model_x2), device="cpu", tile=40, overlap=12)
    first = up.render(image, dtype=image.dtype)
    again = up.render(image, dtype=image.dtype)  # second image: the bound, reused buffers
    assert first.shape == reference.shape == (180, 262, 3)
    for out in (first, again):
        diff = np.abs(out.astype(np.float64) - reference.astype(np.float64))
        if dtype == np.float32:
            mse = float(np.mean(diff**2))
            assert mse == 0 or 10 * np.log10(1.0 / mse) >= 60
        else:
            assert diff.max() <= 1
            assert np.mean(diff > 0) < 0.01  # and almost every sample exactly equal
    np.testing.assert_array_equal(first, again)


def test_batch_spans_rows(model_x2: Path) -> None:
    """batch=3 over a grid of 2 tiles per row: calls hold the end of one row and the start of
    the next, and the image equals the one of batch=1."""
    image = _image(100, 70, np.uint8, seed=1)
    single = load_upscaler(str(model_x2), device="cpu", tile=40, overlap=8, batch=1)
    batched = load_upscaler(str(model_x2), device="cpu", tile=40, overlap=8, batch=3)
    grid = plan_tiles(100, 70, 40, 8)
    assert len(grid.cols) == 2 and len(grid.rows) >= 3
    calls: list[int] = []
    real_run = batched.model.run

    def counting(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape[0])
        return real_run(batch)

    batched.model.run = counting  # type: ignore[method-assign]
    progress: list[tuple[int, int]] = []
    out = batched.render(image, dtype=np.uint8, on_tile=lambda d, t: progress.append((d, t)))
    total = len(grid)
    assert calls == [3] * (total // 3) + ([total % 3] if total % 3 else [])
    assert progress[-1] == (total, total)
    reference = single.render(image, dtype=np.uint8)
    assert np.abs(out.astype(int) - reference.astype(int)).max() <= 1


def test_bound_buffers_are_reused_per_shape(model_x2: Path) -> None:
    """IO binding keeps one set of buffers per input shape (a few shapes at most); results of
    every shape, in any order, equal the plain session's."""
    model = load_upscaler(str(model_x2), device="cpu").model
    session = model.session
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(3)
    shapes = [(1, 3, 16, 24), (2, 3, 16, 24), (1, 3, 20, 12), (1, 3, 16, 24), (3, 3, 8, 8)]
    seen: dict[tuple[int, ...], list[int]] = {}
    for shape in shapes * 2:
        batch = rng.random(shape, dtype=np.float32)
        (expected,) = session.run(None, {name: batch})
        out = model.run(batch)
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
        seen.setdefault(shape, []).append(id(out))
    bound = model._bound
    assert len(bound.slots) <= bound.MAX_SLOTS
    # A shape seen before, still kept, returns its kept output buffer.
    last = (3, 3, 8, 8)
    again = model.run(rng.random(last, dtype=np.float32))
    assert again is bound.slots[last].host_out


def test_fp16_io_model_uses_half_buffers(tmp_path: Path) -> None:
    path = build_sr_model(tmp_path / "half.onnx", scale=2, fp16_io=True)
    up = load_upscaler(str(path), device="cpu", tile=16, overlap=4)
    image = _image(40, 30, np.uint8, seed=4)
    first = up.render(image, dtype=np.uint8)
    second = up.render(image, dtype=np.uint8)
    np.testing.assert_array_equal(first, second)
    slots = list(up.model._bound.slots.values())
    assert slots and all(s.host_in is None or s.host_in.dtype == np.float16 for s in slots)
    assert any(s.host_out is not None and s.host_out.dtype == np.float16 for s in slots)


def _count_calls(up) -> list[int]:  # noqa: ANN001
    """The batch sizes of ``up``'s session calls, recorded as they happen."""
    calls: list[int] = []
    real_run = up.model.run

    def counting(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape[0])
        return real_run(batch)

    up.model.run = counting
    return calls


def test_render_many_batches_whole_frames(model_x2: Path) -> None:
    """Frames that fit one tile go through the session several per call, with the same pixels
    as one by one; frames that need tiling are rendered one by one."""
    frames = [_image(24, 32, np.uint8, seed=i) for i in range(5)]
    up = load_upscaler(str(model_x2), device="cpu", tile=64, batch=2)
    calls = _count_calls(up)
    assert up.images_per_call(24, 32) == 2
    outs = up.render_many(frames, dtype=np.uint8)
    assert calls == [2, 2, 1]
    plain = load_upscaler(str(model_x2), device="cpu", tile=64)
    for frame, out in zip(frames, outs):
        expected = plain.render(frame, dtype=np.uint8)
        assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
    assert up.images_per_call(100, 100) == 1  # needs tiles
    assert load_upscaler(str(model_x2), device="cpu", tile=64).images_per_call(24, 32) == 1


def test_video_frames_share_calls(tmp_path: Path, model_x2: Path) -> None:
    av = pytest.importorskip("av")
    from test_video import make_clip, probe

    (tmp_path / "in").mkdir()
    clip = make_clip(tmp_path / "in" / "clip.mp4", frames=7, width=32, height=24, audio=False)
    del av
    out = tmp_path / "out"
    up = load_upscaler(str(model_x2), device="cpu", tile=64, batch=3)
    calls = _count_calls(up)
    summary = run_batch(collect_jobs(clip.parent, out), up)
    assert summary.done == 1, summary.failed
    assert calls == [3, 3, 1]
    info = probe(out / "clip.mp4")
    assert info["frames"] == 7 and info["size"] == (64, 48)


def test_encoder_count() -> None:
    assert encoder_count(1) == 1 and encoder_count(2) == 1
    assert encoder_count(16) == 8 and encoder_count(64) == 8


def test_parallel_writers_report_every_file(
    tmp_path: Path, model_x2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four writers over many files, one of which fails to encode: every file gets its result,
    in job order; the failed one leaves no file (nor a temporary), the others are complete;
    writes really overlap."""
    source = tmp_path / "in"
    source.mkdir()
    rng = np.random.default_rng(0)
    for index in range(24):
        pixels = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(source / f"{index:02d}.png")
    monkeypatch.setattr(pipeline_module, "encoder_count", lambda cores=None: 4)
    real_write = pipeline_module.write_image
    active, peak = [0], [0]
    guard = threading.Lock()

    def write(path, picture, **kwargs):  # noqa: ANN001, ANN003
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.02)
            if Path(path).name == "07.png":
                raise RuntimeError("encoder exploded")
            return real_write(path, picture, **kwargs)
        finally:
            with guard:
                active[0] -= 1

    monkeypatch.setattr(pipeline_module, "write_image", write)
    out = tmp_path / "out"
    jobs = collect_jobs(source, out)
    up = load_upscaler(str(model_x2), device="cpu")
    summary = run_batch(jobs, up, BatchOptions())
    assert [r.job.name for r in summary.results] == [job.name for job in jobs]
    failed = summary.failed
    assert len(failed) == 1 and "encoder exploded" in failed[0].reason
    assert summary.done == 23
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{i:02d}.png" for i in range(24) if i != 7)
    for name in written:
        with Image.open(out / name) as image:
            assert image.size == (32, 24)
    assert peak[0] > 1


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_store_chw_interleaves_like_the_plain_transpose(dtype: type, channels: int) -> None:
    """Quantising a band of CHW floats into HWC output: the interleaving fast path writes into
    the band of the output it is given (nothing outside it), the same samples as numpy's
    transpose copy, and a strided (non-contiguous) target takes the numpy path to the same
    result."""
    from srtool.infer.blend import _store_chw

    rng = np.random.default_rng(channels)
    values = rng.uniform(-0.2, 1.2, size=(channels, 37, 53)).astype(np.float32)
    peak = 1.0 if dtype == np.float32 else float(np.iinfo(dtype).max)
    expected = np.clip(values.transpose(1, 2, 0), 0.0, 1.0)
    if dtype != np.float32:
        expected = np.floor(expected * peak + 0.5).astype(dtype)
    output = np.zeros((60, 53, channels), dtype)
    _store_chw(output[10:47], values.copy())
    assert np.array_equal(output[10:47], expected)
    assert not output[:10].any() and not output[47:].any()
    strided = np.zeros((37, 106, channels), dtype)[:, ::2]
    _store_chw(strided, values.copy())
    assert np.array_equal(strided, expected)
