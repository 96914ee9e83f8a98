"""ICNR (Aitken et al. 2017) for the convolution before the pixel shuffle: a freshly built x4
network's output has no period-4 grid, while the same network with independently initialised
phases has one (measured with the grid check on a real photo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from srtool.evaluate.benchmarks import read_u8  # noqa: E402
from srtool.evaluate.grid import grid_ratio  # noqa: E402
from srtool.models import build  # noqa: E402
from srtool.models.icnr import icnr_  # noqa: E402
from srtool.resize import imresize, modcrop  # noqa: E402


def _last_conv(model: torch.nn.Module) -> torch.nn.Conv2d:
    return model.upsampler[0] if model.arch == "span" else model.body[-1]


def _grid_of(model: torch.nn.Module, lr: np.ndarray, hr: np.ndarray) -> float:
    """The grid score of what the network computes: span's whole output; compact's output less
    its nearest-upsampled input skip (blocky by design, the same for any initialisation)."""
    x = torch.from_numpy(lr.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        sr = model.eval()(x)
        if model.arch == "compact":
            sr = sr - torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest")
    # the raw (unclipped) output of an untrained network, on the 0-1 scale
    return grid_ratio(sr[0].permute(1, 2, 0).numpy().astype(np.float64), hr, 4, crop_border=4)


@pytest.mark.parametrize(
    ("arch", "hparams"),
    [
        ("span", {"features": 48, "blocks": 4, "convs": 2}),
        ("compact", {"features": 32, "convs": 4}),
    ],
)
def test_fresh_x4_network_has_no_grid(shared_data: Path, arch: str, hparams: dict) -> None:
    hr = modcrop(read_u8(shared_data / "Set14" / "lenna.png"), 4)[:320, :320]
    lr = imresize(hr, 0.25)
    torch.manual_seed(0)
    model = build(arch, scale=4, **hparams)
    icnr = _grid_of(model, lr, hr)
    _last_conv(model).reset_parameters()  # PyTorch's default: 16 independent phases
    default = _grid_of(model, lr, hr)
    assert icnr < 0.05
    assert default > 1.0 and default > 50 * max(icnr, 1e-3)


def test_icnr_phases_share_kernels() -> None:
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(8, 3 * 16, 3, padding=1)
    icnr_(conv, 4)
    w, b = conv.weight.view(3, 16, 8, 3, 3), conv.bias.view(3, 16)
    assert torch.equal(w, w[:, :1].expand_as(w)) and torch.equal(b, b[:, :1].expand_as(b))
    # same scale as PyTorch's default initialisation (Kaiming-uniform, a = sqrt(5))
    bound = 1 / np.sqrt(8 * 9)
    weight = conv.weight.detach()
    assert float(weight.abs().max()) <= bound and float(weight.std()) > bound / 3
    # nearest-neighbour upsampling at initialisation: every 4x4 output block is constant
    y = torch.nn.PixelShuffle(4)(conv(torch.randn(1, 8, 6, 6)))
    blocks = y.view(1, 3, 6, 4, 6, 4)
    assert torch.allclose(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks), atol=1e-6)
    with pytest.raises(ValueError, match="multiple"):
        icnr_(torch.nn.Conv2d(8, 10, 3), 2)
