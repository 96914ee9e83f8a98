"""Losses for super-resolution training: pixel, MS-SSIM mix, VGG19 perceptual, adversarial.

Inputs are float NCHW RGB in [0, 1]. Each loss is a small module or function with no hidden
configuration, so a recipe names it and its weight and nothing else. References: SRGAN (Ledig et
al. 2017: MSE pre-training, VGG content loss, BCE adversarial), ESRGAN (Wang et al. 2018: L1,
VGG features before activation, relativistic average GAN), Zhao et al. 2017 (MS-SSIM + L1 with
alpha 0.84), Gulrajani et al. 2017 (WGAN-GP, penalty weight 10).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from srtool.errors import UsageError, first_line

__all__ = [
    "VGG19_LAYERS",
    "charbonnier",
    "ms_ssim",
    "MSSSIML1Loss",
    "pixel_loss",
    "VGGFeatures",
    "PerceptualLoss",
    "load_vgg19_features",
    "d_loss",
    "g_loss",
    "gradient_penalty",
]

log = logging.getLogger("srtool")


def charbonnier(sr: Tensor, hr: Tensor, eps: float = 1e-3) -> Tensor:
    """mean(sqrt((sr - hr)^2 + eps^2)): L1 that stays differentiable at zero (LapSRN)."""
    return torch.sqrt((sr - hr) ** 2 + eps * eps).mean()


# --------------------------------------------------------------------------- MS-SSIM

_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gauss_window(size: int, sigma: float, channels: int, ref: Tensor) -> Tensor:
    r = torch.arange(size, dtype=torch.float32, device=ref.device) - size // 2
    g = torch.exp(-(r**2) / (2 * sigma * sigma))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).to(ref.dtype)
    return w.expand(channels, 1, size, size).contiguous()


def _ssim_parts(x: Tensor, y: Tensor, win: Tensor) -> tuple[Tensor, Tensor]:
    c = x.shape[1]
    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = F.conv2d(x, win, groups=c), F.conv2d(y, win, groups=c)
    sxx = F.conv2d(x * x, win, groups=c) - mu_x**2
    syy = F.conv2d(y * y, win, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, win, groups=c) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (lum * cs).mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def ms_ssim(x: Tensor, y: Tensor, *, win_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Multi-scale SSIM (Wang et al. 2003) per image, values in [0, 1] for inputs in [0, 1].

    Uses as many of the standard five scales as the patch allows (the coarsest scale must still
    hold one ``win_size`` window) and renormalises their weights, so 48-192 px training patches
    work; negative contrast terms are clamped at a small epsilon so fractional powers stay real.

    Always computed in float32, autocast or not: E[x^2] - mu^2 cancels catastrophically in bf16
    (MS-SSIM above 1, a negative loss).
    """
    with torch.autocast(x.device.type, enabled=False):
        return _ms_ssim_fp32(x.float(), y.float(), win_size, sigma)


def _ms_ssim_fp32(x: Tensor, y: Tensor, win_size: int, sigma: float) -> Tensor:
    side = min(x.shape[-2:])
    if side < win_size:
        raise ValueError(f"MS-SSIM needs patches of at least {win_size} px, got {side}")
    levels = min(len(_MS_WEIGHTS), int(math.floor(math.log2(side / win_size))) + 1)
    weights = torch.tensor(_MS_WEIGHTS[:levels], device=x.device)
    weights = weights / weights.sum()
    win = _gauss_window(win_size, sigma, x.shape[1], x)
    values = []
    for level in range(levels):
        ssim, cs = _ssim_parts(x, y, win)
        values.append(ssim if level == levels - 1 else cs)
        if level < levels - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stack = torch.stack(values, dim=0).clamp_min(1e-6)
    return torch.prod(stack ** weights[:, None], dim=0)


class MSSSIML1Loss(nn.Module):
    """alpha * (1 - MS-SSIM) + (1 - alpha) * L1, alpha = 0.84 (Zhao et al. 2017)."""

    def __init__(self, *, alpha: float = 0.84) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        l1 = F.l1_loss(sr.float(), hr.float())
        return self.alpha * (1.0 - ms_ssim(sr, hr).mean()) + (1.0 - self.alpha) * l1


def pixel_loss(name: str, *, eps: float = 1e-3, alpha: float = 0.84) -> Callable[..., Tensor]:
    """The pixel loss a recipe names: ``l1``, ``mse``, ``charbonnier`` or ``msssim_l1``."""
    if name == "l1":
        return F.l1_loss
    if name == "mse":
        return F.mse_loss
    if name == "charbonnier":
        return lambda sr, hr: charbonnier(sr, hr, eps)
    if name == "msssim_l1":
        return MSSSIML1Loss(alpha=alpha)
    raise UsageError(f"unknown pixel loss {name!r}; valid: l1, mse, charbonnier, msssim_l1")


# --------------------------------------------------------------------------- VGG19


def _vgg19_layer_names() -> list[str]:
    names = []
    for block, convs in enumerate((2, 2, 4, 4, 4), start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


VGG19_LAYERS: tuple[str, ...] = tuple(_vgg19_layer_names())
"""Names of ``torchvision.models.vgg19().features`` modules, by index (conv1_1 is 0)."""

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    """The front of VGG19's ``features`` up to the deepest requested layer, frozen, in eval mode.

    ``input_mean``/``input_std`` describe the weights' input convention as affine maps of [0, 1]
    RGB: torchvision's weights want ``(x - imagenet_mean) / imagenet_std``; the original Oxford
    (Caffe/MatConvNet) weights want ``255 x - mean_0_255`` with no std.

    ``pooling="avg"`` replaces VGG's max-pooling by average pooling (as Gatys et al. do for
    style transfer): a max-pool passes its gradient to one pixel in four, a pattern at the
    pooling strides that a pixel-shuffle generator can learn as a grid; an average pool spreads
    it over all four. The features deeper than the first pool then differ from VGG's own.
    """

    def __init__(
        self,
        *,
        layers: tuple[str, ...],
        input_mean: tuple[float, float, float],
        input_std: tuple[float, float, float],
        pooling: str = "max",
    ) -> None:
        super().__init__()
        if pooling not in ("max", "avg"):
            raise UsageError(f"unknown VGG pooling {pooling!r}; valid: max, avg")
        unknown = [n for n in layers if n not in VGG19_LAYERS]
        if unknown:
            raise UsageError(
                f"unknown VGG19 layer(s) {', '.join(unknown)}; valid: conv1_1 … conv5_4, "
                "relu1_1 … relu5_4 (conv = before activation, relu = after)"
            )
        self.layers = tuple(layers)
        last = max(VGG19_LAYERS.index(n) for n in layers)
        modules: list[nn.Module] = []
        in_ch = 3
        widths = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
        for name in VGG19_LAYERS[: last + 1]:
            if name.startswith("conv"):
                out_ch = widths[int(name[4])]
                modules.append(nn.Conv2d(in_ch, out_ch, 3, padding=1))
                in_ch = out_ch
            elif name.startswith("relu"):
                modules.append(nn.ReLU(inplace=False))
            else:
                modules.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
        self.features = nn.Sequential(*modules)
        self.register_buffer("mean", torch.tensor(input_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(input_std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:  # always frozen
        return super().train(False)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = (x - self.mean) / self.std
        wanted = {VGG19_LAYERS.index(n): n for n in self.layers}
        out = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in wanted:
                out[wanted[i]] = x
        return out


def _read_state(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise UsageError(f"VGG weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise UsageError(
                f"cannot read VGG weights {path}: not a readable safetensors file "
                f"({first_line(exc, 200)})"
            ) from None
    from srtool.models.pickled import TorchFileError, load_weights_only

    try:
        state = load_weights_only(path)
    except TorchFileError as exc:
        raise UsageError(f"cannot read VGG weights {path}: {exc}") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_vgg19_features(
    layers: tuple[str, ...], weights: str | Path | None = None, *, pooling: str = "max"
) -> VGGFeatures:
    """VGG19 feature extractor for ``layers``, from ``weights`` (a safetensors or PyTorch state
    dict with torchvision's ``features.N`` keys) or, when ``None``, torchvision's ImageNet
    weights (from the torch cache, downloading them if needed).

    A file holding ``meta.rgb_mean_0_255`` is taken to use the Oxford/Caffe input convention.
    """
    if weights is not None:
        state = _read_state(Path(weights))
    else:
        try:
            from torchvision.models import VGG19_Weights

            state = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
        except Exception as exc:  # noqa: BLE001 - no network, no cache: say what to do
            raise UsageError(
                "the perceptual loss needs VGG19 weights: torchvision's could not be loaded "
                f"({type(exc).__name__}: {exc}); pass --vgg-weights FILE (for layers up to "
                "conv3_1 a truncated VGG19 safetensors file is enough)"
            ) from None
    if "meta.rgb_mean_0_255" in state:
        m = state["meta.rgb_mean_0_255"].double() / 255.0
        mean = (float(m[0]), float(m[1]), float(m[2]))
        std = (1 / 255.0,) * 3
    else:
        mean, std = _IMAGENET_MEAN, _IMAGENET_STD
    net = VGGFeatures(layers=layers, input_mean=mean, input_std=std, pooling=pooling)
    wanted = {k for k in net.state_dict()}
    have = {k: v for k, v in state.items() if k in wanted}
    missing = sorted(wanted - set(have), key=lambda k: int(k.split(".")[1]))
    if missing:
        deepest = max(
            (int(k.split(".")[1]) for k in state if k.startswith("features.")), default=-1
        )
        raise UsageError(
            f"VGG weights hold layers up to {VGG19_LAYERS[deepest] if deepest >= 0 else 'none'}"
            f"; layers {', '.join(layers)} need {', '.join(missing[:4])}"
            f"{' …' if len(missing) > 4 else ''}"
        )
    net.load_state_dict(have)
    return net


class PerceptualLoss(nn.Module):
    """Weighted sum over layers of L1 or MSE between VGG19 features of SR and HR."""

    def __init__(
        self,
        *,
        layer_weights: Mapping[str, float],
        criterion: str = "l1",
        weights: str | Path | None = None,
        pooling: str = "max",
    ) -> None:
        super().__init__()
        if criterion not in ("l1", "mse"):
            raise UsageError(f"unknown perceptual criterion {criterion!r}; valid: l1, mse")
        self.layer_weights = dict(layer_weights)
        self.criterion = F.l1_loss if criterion == "l1" else F.mse_loss
        self.vgg = load_vgg19_features(tuple(self.layer_weights), weights, pooling=pooling)

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        f_sr = self.vgg(sr)
        with torch.no_grad():
            f_hr = self.vgg(hr)
        total = sr.new_zeros((), dtype=torch.float32)
        for name, w in self.layer_weights.items():
            total = total + w * self.criterion(f_sr[name].float(), f_hr[name].float())
        return total


# --------------------------------------------------------------------------- sub-pixel phases


def phase_loss(sr: Tensor, hr: Tensor, scale: int, block: int = 8) -> Tensor:
    """How far the ``scale``x``scale`` sub-pixel phases of the error ``sr - hr`` drift apart.

    A pixel-shuffle generator computes each phase (output pixel ``(i, j)`` of every ``scale``
    square) with its own weights; when they drift apart the output carries a grid of period
    ``scale``. Per ``block``x``block`` LR area, this takes the mean error of each phase, and
    returns the mean absolute deviation of those means from their average over the phases:
    zero for any error that is the same in every phase, large for a grid, and blind to texture
    (which varies within a block). Areas smaller than one block are taken whole.
    """
    n, c, h, w = sr.shape
    hs, ws = h // scale * scale, w // scale * scale
    d = (sr[..., :hs, :ws] - hr[..., :hs, :ws]).float()
    phases = d.reshape(n, c, hs // scale, scale, ws // scale, scale).permute(0, 1, 3, 5, 2, 4)
    phases = phases.reshape(n, c * scale * scale, hs // scale, ws // scale)
    k = max(1, min(block, hs // scale, ws // scale))
    means = F.avg_pool2d(phases, k, k).reshape(n, c, scale * scale, -1)
    return (means - means.mean(dim=2, keepdim=True)).abs().mean()


# --------------------------------------------------------------------------- adversarial

ADVERSARIAL = ("vanilla", "ragan", "wgan_gp")


def _bce(logits: Tensor, target: float) -> Tensor:
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def d_loss(kind: str, real: Tensor, fake: Tensor) -> Tensor:
    """Discriminator loss from its logits on real HR and on (detached) SR.

    ``vanilla``: BCE(real, 1) + BCE(fake, 0). ``ragan``: the relativistic average form, each
    side judged against the other's mean, halved (ESRGAN). ``wgan_gp``: mean(fake) - mean(real);
    the gradient penalty is added by the caller (:func:`gradient_penalty`).
    """
    if kind == "vanilla":
        return _bce(real, 1.0) + _bce(fake, 0.0)
    if kind == "ragan":
        return 0.5 * (_bce(real - fake.mean(), 1.0) + _bce(fake - real.mean(), 0.0))
    if kind == "wgan_gp":
        return fake.float().mean() - real.float().mean()
    raise UsageError(f"unknown adversarial loss {kind!r}; valid: {', '.join(ADVERSARIAL)}")


def g_loss(kind: str, real: Tensor, fake: Tensor) -> Tensor:
    """Generator's adversarial term. ``real`` logits are only used by ``ragan`` (detach them)."""
    if kind == "vanilla":
        return _bce(fake, 1.0)
    if kind == "ragan":
        return 0.5 * (_bce(real - fake.mean(), 0.0) + _bce(fake - real.mean(), 1.0))
    if kind == "wgan_gp":
        return -fake.float().mean()
    raise UsageError(f"unknown adversarial loss {kind!r}; valid: {', '.join(ADVERSARIAL)}")


def gradient_penalty(
    disc: nn.Module, real: Tensor, fake: Tensor, *, weight: float = 10.0
) -> Tensor:
    """WGAN-GP: ``weight * E[(||grad D(x_hat)||_2 - 1)^2]`` on random interpolates x_hat.

    The interpolation draws from torch's global RNG, which the training state saves, so resumed
    runs draw the same numbers. The penalty is computed in float32 outside autocast: the gradient
    of an unscaled fp16 graph can underflow to zero.
    """
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=torch.float32)
    x_hat = (eps * real.detach().float() + (1 - eps) * fake.detach().float()).requires_grad_(True)
    with torch.autocast(real.device.type, enabled=False):
        out = disc(x_hat)
        (grad,) = torch.autograd.grad(out.float().sum(), x_hat, create_graph=True)
    norm = grad.flatten(1).norm(2, dim=1)
    return weight * ((norm - 1) ** 2).mean()
