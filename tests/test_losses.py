"""Losses: known values, finiteness and gradients, VGG input convention, adversarial forms."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from srtool.errors import UsageError
from srtool.train import losses
from srtool.train.patches import read_rgb8


@pytest.fixture(scope="module")
def pair(shared_data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    img = read_rgb8(shared_data / "BSD200" / "100075.png")[:64, :64]
    hr = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)[None]
    noisy = hr + 0.05 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))
    return noisy.clamp(0, 1), hr


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread: None) -> None:
    """Every test and module fixture here runs torch on one thread (see ``one_torch_thread``)."""


def test_pixel_losses_known_values() -> None:
    hr = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    sr = hr + 0.1
    assert math.isclose(float(losses.pixel_loss("l1")(sr, hr)), 0.1, rel_tol=1e-5)
    assert math.isclose(float(losses.pixel_loss("mse")(sr, hr)), 0.01, rel_tol=1e-4)
    assert math.isclose(
        float(losses.pixel_loss("charbonnier", eps=1e-3)(sr, hr)),
        math.sqrt(0.01 + 1e-6),
        rel_tol=1e-4,
    )
    assert float(losses.pixel_loss("msssim_l1")(hr, hr)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(UsageError, match="valid: l1, mse, charbonnier, msssim_l1"):
        losses.pixel_loss("l2")


def test_ms_ssim_agrees_with_the_numpy_metric(shared_data: Path) -> None:
    from srtool.metrics import ms_ssim as np_ms_ssim
    from srtool.metrics import rgb_to_y

    a = read_rgb8(shared_data / "BSD200" / "100075.png")[:192, :192]
    b = np.clip(a.astype(int) + np.random.default_rng(0).integers(-20, 21, a.shape), 0, 255)
    b = b.astype(np.uint8)
    ref = np_ms_ssim(a, b, y_only=True)
    ya, yb = (torch.from_numpy(rgb_to_y(x).astype(np.float32) / 255)[None, None] for x in (a, b))
    ours = float(losses.ms_ssim(ya, yb)[0])
    assert ours == pytest.approx(ref, abs=2e-4)
    assert 0.5 < ours < 1.0


def test_msssim_l1_mix(pair) -> None:
    sr, hr = pair
    value = float(losses.MSSSIML1Loss(alpha=0.84)(sr, hr))
    expected = 0.84 * (1 - float(losses.ms_ssim(sr, hr).mean())) + 0.16 * float(F.l1_loss(sr, hr))
    assert value == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["l1", "mse", "charbonnier", "msssim_l1"])
def test_pixel_losses_give_finite_gradients(name: str, pair) -> None:
    sr, hr = pair
    x = sr.clone().requires_grad_(True)
    loss = losses.pixel_loss(name)(x, hr)
    loss.backward()
    assert torch.isfinite(loss) and float(loss.detach()) > 0
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_vgg_layer_names() -> None:
    assert losses.VGG19_LAYERS[0] == "conv1_1" and losses.VGG19_LAYERS[8] == "relu2_2"
    assert losses.VGG19_LAYERS[34] == "conv5_4" and losses.VGG19_LAYERS[35] == "relu5_4"
    with pytest.raises(UsageError, match="unknown VGG19 layer"):
        losses.VGGFeatures(layers=("conv6_1",), input_mean=(0, 0, 0), input_std=(1, 1, 1))


def test_vgg_oxford_weights_use_their_input_convention(vgg_file: Path, pair) -> None:
    from safetensors.torch import load_file

    _, hr = pair
    net = losses.load_vgg19_features(("conv1_1", "relu2_2"), vgg_file)
    state = load_file(str(vgg_file))
    mean = state["meta.rgb_mean_0_255"].view(1, 3, 1, 1)
    expected = F.conv2d(
        hr * 255 - mean, state["features.0.weight"], state["features.0.bias"], padding=1
    )
    assert torch.allclose(net(hr)["conv1_1"], expected, rtol=1e-4, atol=1e-2)


def test_vgg_file_without_deep_layers_fails_clearly(vgg_file: Path) -> None:
    with pytest.raises(UsageError, match="hold layers up to conv3_1"):
        losses.load_vgg19_features(("conv5_4",), vgg_file)
    with pytest.raises(UsageError, match="VGG weights not found"):
        losses.load_vgg19_features(("conv1_1",), vgg_file.with_name("missing.safetensors"))


def test_perceptual_loss(vgg_file: Path, pair) -> None:
    sr, hr = pair
    loss = losses.PerceptualLoss(
        layer_weights={"relu2_2": 1.0, "conv3_1": 0.5}, criterion="l1", weights=vgg_file
    )
    assert float(loss(hr, hr)) == 0.0
    x = sr.clone().requires_grad_(True)
    value = loss(x, hr)
    value.backward()
    assert float(value.detach()) > 0 and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in loss.vgg.parameters())
    loss.train()
    assert not loss.vgg.training


def test_adversarial_known_values() -> None:
    zeros = torch.zeros(4, 1)
    ln2 = math.log(2)
    assert float(losses.d_loss("vanilla", zeros, zeros)) == pytest.approx(2 * ln2)
    assert float(losses.g_loss("vanilla", zeros, zeros)) == pytest.approx(ln2)
    # relativistic: only differences to the other side's mean matter
    real, fake = torch.full((4, 1), 3.0), torch.full((4, 1), 3.0)
    assert float(losses.d_loss("ragan", real, fake)) == pytest.approx(ln2)
    assert float(losses.g_loss("ragan", real, fake)) == pytest.approx(ln2)
    real, fake = torch.tensor([[2.0], [4.0]]), torch.tensor([[1.0], [-1.0]])
    assert float(losses.d_loss("wgan_gp", real, fake)) == pytest.approx(0.0 - 3.0)
    assert float(losses.g_loss("wgan_gp", real, fake)) == pytest.approx(-0.0)
    # a confident discriminator: D loss small, generator loss large
    sure_real, sure_fake = torch.full((4, 1), 10.0), torch.full((4, 1), -10.0)
    assert float(losses.d_loss("vanilla", sure_real, sure_fake)) < 1e-3
    assert float(losses.g_loss("vanilla", sure_real, sure_fake)) > 9.0
    with pytest.raises(UsageError, match="valid: vanilla, ragan, wgan_gp"):
        losses.d_loss("hinge", zeros, zeros)


class _Linear(torch.nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).sum(dim=(1, 2, 3))[:, None]


def test_gradient_penalty_of_a_linear_critic() -> None:
    w = torch.full((1, 3, 4, 4), 0.5)  # ||grad|| = ||w|| = 0.5 * sqrt(48) everywhere
    disc = _Linear(w)
    real, fake = torch.rand(3, 3, 4, 4), torch.rand(3, 3, 4, 4)
    gp = losses.gradient_penalty(disc, real, fake, weight=10.0)
    assert float(gp.detach()) == pytest.approx(10.0 * (0.5 * math.sqrt(48) - 1) ** 2, rel=1e-5)
    gp.backward()
    assert disc.w.grad is not None and torch.isfinite(disc.w.grad).all()


def test_ms_ssim_is_computed_in_float32_under_autocast(pair) -> None:
    """bf16 autocast made MS-SSIM exceed 1 and the loss go negative (E[x^2] - mu^2 cancels)."""
    sr, hr = pair
    sr = (hr + 0.01 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    exact = losses.ms_ssim(sr, hr)
    loss_fn = losses.pixel_loss("msssim_l1")
    exact_loss = loss_fn(sr, hr)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = losses.ms_ssim(sr, hr)
        mixed_loss = loss_fn(sr, hr)
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed, exact, atol=1e-6)
    assert float(mixed_loss) == pytest.approx(float(exact_loss), abs=1e-6)
    assert 0 < float(mixed_loss)


def test_gradient_penalty_is_float32_under_autocast() -> None:
    """Under autocast the critic's convolutions would run in low precision; the penalty (and the
    gradient it differentiates) must be the float32 one."""
    torch.manual_seed(0)
    critic = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(8, 1, 3)
    )
    real, fake = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    torch.manual_seed(1)
    exact = losses.gradient_penalty(critic, real, fake)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = losses.gradient_penalty(critic, real, fake)
    assert mixed.dtype == torch.float32
    assert float(mixed.detach()) == pytest.approx(float(exact.detach()), rel=1e-6)


def test_vgg_average_pooling_averages_what_max_pooling_picks(vgg_file: Path, pair) -> None:
    """``pooling="avg"``: the same convolutions, the pools averaged; features before the first
    pool are unchanged, those after it are the average-pooled activations."""
    sr, _ = pair
    layers = ("relu1_2", "conv2_1")
    plain = losses.load_vgg19_features(layers, vgg_file)
    averaged = losses.load_vgg19_features(layers, vgg_file, pooling="avg")
    assert any(isinstance(m, torch.nn.AvgPool2d) for m in averaged.features)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in averaged.features)
    a, b = plain(sr), averaged(sr)
    torch.testing.assert_close(a["relu1_2"], b["relu1_2"])
    conv2_1 = averaged.features[VGG_CONV2_1]
    torch.testing.assert_close(b["conv2_1"], conv2_1(F.avg_pool2d(b["relu1_2"], 2)))
    assert not torch.allclose(a["conv2_1"], b["conv2_1"])
    with pytest.raises(UsageError, match="unknown VGG pooling"):
        losses.load_vgg19_features(layers, vgg_file, pooling="median")


VGG_CONV2_1 = losses.VGG19_LAYERS.index("conv2_1")


def test_phase_loss_sees_a_grid_and_nothing_else() -> None:
    gen = torch.Generator().manual_seed(3)
    hr = torch.rand(2, 3, 64, 64, generator=gen)
    assert float(losses.phase_loss(hr + 0.1, hr, 4)) == pytest.approx(0.0, abs=1e-7)
    pattern = torch.rand(4, 4, generator=gen) * 0.02  # one offset per sub-pixel phase
    grid = pattern.repeat(16, 16)
    expected = float((pattern - pattern.mean()).abs().mean())
    assert float(losses.phase_loss(hr + grid, hr, 4)) == pytest.approx(expected, rel=1e-5)
    # at x2 the same x4 pattern is not a period-2 grid everywhere: smaller, not zero
    assert 0 < float(losses.phase_loss(hr + grid, hr, 2)) < expected
    x = (hr + grid).requires_grad_(True)
    losses.phase_loss(x, hr, 4).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
