"""The grid-free filter after the pixel shuffle (Sugawara et al. 2018): whatever the sub-pixel
phases do, the output has no period-``scale`` grid (checked with the grid check on a real photo
and on a flat input), it keeps the state dict of the network without it, and it exports to ONNX
with the same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from srtool.evaluate.benchmarks import read_u8  # noqa: E402
from srtool.evaluate.grid import grid_ratio  # noqa: E402
from srtool.models import build  # noqa: E402
from srtool.models.gridfree import grid_free_taps  # noqa: E402
from srtool.resize import imresize, modcrop  # noqa: E402

HPARAMS = {"features": 16, "blocks": 1, "convs": 2}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_taps_null_every_grid_frequency_and_keep_the_input_band(scale: int) -> None:
    taps = grid_free_taps(scale)
    n = len(taps)
    assert n % 2 == 1 and np.allclose(taps, taps[::-1]) and abs(taps.sum() - 1) < 1e-12
    offsets = np.arange(n) - n // 2

    def response(f: float) -> float:
        return abs(np.sum(taps * np.exp(-2j * np.pi * f * offsets)))

    assert all(response(k / scale) < 1e-12 for k in range(1, scale))
    assert min(response(f) for f in np.linspace(0, 0.5 / scale, 50)) >= 0.5 - 1e-9


def _scrambled_phases(model: torch.nn.Module) -> None:
    """Give every sub-pixel phase its own kernel and bias: the network that draws a grid."""
    torch.manual_seed(3)
    model.upsampler[0].reset_parameters()


def _sr(model: torch.nn.Module, lr: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(lr.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        return model.eval()(x)[0].permute(1, 2, 0).numpy().astype(np.float64)


def test_filter_removes_the_grid_of_disagreeing_phases(shared_data: Path) -> None:
    hr = modcrop(read_u8(shared_data / "Set14" / "lenna.png"), 4)[:320, :320]
    lr = imresize(hr, 0.25)
    torch.manual_seed(0)
    plain = build("span", scale=4, **HPARAMS)
    _scrambled_phases(plain)
    filtered = build("span", scale=4, grid_free=True, **HPARAMS)
    filtered.load_state_dict(plain.state_dict())  # same weights, same keys
    with_grid = grid_ratio(_sr(plain, lr), hr, 4, crop_border=4)
    without = grid_ratio(_sr(filtered, lr), hr, 4, crop_border=4)
    assert with_grid > 1.0
    assert without < 0.05 and with_grid > 100 * max(without, 1e-4)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_flat_input_gives_a_flat_output_whatever_the_phases(scale: int) -> None:
    torch.manual_seed(1)
    model = build("span", scale=scale, grid_free=True, **HPARAMS)
    _scrambled_phases(model)
    with torch.no_grad():
        plain_tail = model.upsampler[1](model.upsampler[0](torch.randn(1, 16, 12, 12)))
        out = model.upsampler(torch.full((1, 16, 12, 12), 0.3))
    assert plain_tail.std() > 0.01  # the phases disagree...
    inner = out[..., 8:-8, 8:-8]  # clear of the zero-padded border of the conv and the filter
    assert (
        float((inner - inner.mean(dim=(-2, -1), keepdim=True)).abs().max()) < 1e-6
    )  # ...and the output is flat


def test_filter_survives_collapse_and_export(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from srtool.export import export_onnx
    from srtool.models.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(2)
    model = build("span", scale=4, grid_free=True, **HPARAMS)
    _scrambled_phases(model)
    save_checkpoint(tmp_path / "g.safetensors", model)
    loaded, _ = load_checkpoint(tmp_path / "g.safetensors")
    assert loaded.hparams["grid_free"] is True
    report = export_onnx(loaded, tmp_path / "g.onnx", write_card=False)
    x = np.random.default_rng(0).random((1, 3, 23, 31), dtype=np.float32)
    session = ort.InferenceSession(str(report.out_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x)).numpy()
    assert got.shape == (1, 3, 92, 124)
    assert np.abs(got - want).max() < 1e-4
