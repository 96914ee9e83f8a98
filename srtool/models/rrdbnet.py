"""RRDBNet: the ESRGAN generator (Wang et al., 2018), as BasicSR and Real-ESRGAN define it.

Residual-in-Residual Dense Blocks: each RDB has five 3x3 convs with dense connections (growth
``growth`` channels each, LeakyReLU 0.2), its output scaled by ``residual_scale`` (0.2) and added to
its input; three RDBs make an RRDB, whose output is scaled and added again. No BatchNorm (ESRGAN
showed BN causes artefacts in GAN training). A trunk conv and a long skip follow the blocks; each
upsampling step is nearest-neighbour interpolation followed by a conv (which avoids the checkerboard
pattern of transposed convs), then an HR conv and the final conv.

State-dict key names follow BasicSR (``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``,
``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``), which is what most community ESRGAN weights
use. Scales: 4 (two x2 steps), 3 (one x3 step), 2 (one x2 step), 1 (no step). With
``unshuffle=True`` (scales 1 and 2, as Real-ESRGAN's x2plus model) the input is pixel-unshuffled by
``4 // scale`` and the body runs at that smaller size before two x2 steps — cheaper by 4x (x2) or
16x (x1), and the input then needs sides that are multiples of ``4 // scale``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srtool.models.hparams import records_hparams

__all__ = ["RRDBNet", "RRDB", "ResidualDenseBlock"]

_UPSAMPLE_STEPS = {1: (), 2: (2,), 3: (3,), 4: (2, 2)}


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope=0.2)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; output = x + residual_scale * conv5(...)."""

    def __init__(
        self, *, features: int = 64, growth: int = 32, residual_scale: float = 0.2
    ) -> None:
        super().__init__()
        self.residual_scale = residual_scale
        self.conv1 = nn.Conv2d(features, growth, 3, 1, 1)
        self.conv2 = nn.Conv2d(features + growth, growth, 3, 1, 1)
        self.conv3 = nn.Conv2d(features + 2 * growth, growth, 3, 1, 1)
        self.conv4 = nn.Conv2d(features + 3 * growth, growth, 3, 1, 1)
        self.conv5 = nn.Conv2d(features + 4 * growth, features, 3, 1, 1)
        # ESRGAN's "smaller initialisation": Kaiming-normal scaled by 0.1 keeps each residual
        # branch close to zero at the start, so a deep stack of blocks trains stably.
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            nn.init.kaiming_normal_(conv.weight, a=0.0, mode="fan_in")
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = _lrelu(self.conv1(x))
        x2 = _lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = _lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = _lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * self.residual_scale + x


class RRDB(nn.Module):
    """Residual in Residual Dense Block: three RDBs and a scaled residual around them."""

    def __init__(
        self, *, features: int = 64, growth: int = 32, residual_scale: float = 0.2
    ) -> None:
        super().__init__()
        self.residual_scale = residual_scale
        self.rdb1 = ResidualDenseBlock(
            features=features, growth=growth, residual_scale=residual_scale
        )
        self.rdb2 = ResidualDenseBlock(
            features=features, growth=growth, residual_scale=residual_scale
        )
        self.rdb3 = ResidualDenseBlock(
            features=features, growth=growth, residual_scale=residual_scale
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rdb3(self.rdb2(self.rdb1(x)))
        return out * self.residual_scale + x


class RRDBNet(nn.Module):
    """The ESRGAN generator.

    Args:
        scale: upscaling factor: 1, 2, 3 or 4.
        in_channels / out_channels: image channels (3 for RGB).
        features: trunk channels (64 in ESRGAN).
        blocks: number of RRDBs (23 in ESRGAN).
        growth: channels added by each dense conv (32 in ESRGAN).
        residual_scale: factor on every residual branch (0.2 in ESRGAN).
        unshuffle: for scales 1 and 2, pixel-unshuffle the input by ``4 // scale`` and upsample x4
            (Real-ESRGAN's x2plus layout). Required for scale 1 to do anything useful cheaply.
    """

    arch = "rrdbnet"
    kind = "generator"

    @records_hparams
    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        features: int = 64,
        blocks: int = 23,
        growth: int = 32,
        residual_scale: float = 0.2,
        unshuffle: bool = False,
    ) -> None:
        super().__init__()
        if scale not in _UPSAMPLE_STEPS:
            raise ValueError(f"rrdbnet: scale must be 1, 2, 3 or 4, got {scale}")
        if unshuffle and scale not in (1, 2):
            raise ValueError("rrdbnet: unshuffle applies to scales 1 and 2 only")
        if min(in_channels, out_channels, features, growth) < 1 or blocks < 0:
            raise ValueError("rrdbnet: channel counts must be >= 1 and blocks >= 0")
        self.scale = scale
        self.unshuffle_factor = 4 // scale if unshuffle else 1
        self.multiple_of = self.unshuffle_factor
        self.steps = _UPSAMPLE_STEPS[4] if unshuffle else _UPSAMPLE_STEPS[scale]
        first_in = in_channels * self.unshuffle_factor**2
        self.conv_first = nn.Conv2d(first_in, features, 3, 1, 1)
        self.body = nn.Sequential(
            *(
                RRDB(features=features, growth=growth, residual_scale=residual_scale)
                for _ in range(blocks)
            )
        )
        self.conv_body = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(features, features, 3, 1, 1) if len(self.steps) >= 1 else None
        self.conv_up2 = nn.Conv2d(features, features, 3, 1, 1) if len(self.steps) >= 2 else None
        self.conv_hr = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_last = nn.Conv2d(features, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = x
        if self.unshuffle_factor > 1:
            feat = F.pixel_unshuffle(feat, self.unshuffle_factor)
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        for step, conv in zip(self.steps, (self.conv_up1, self.conv_up2), strict=False):
            feat = _lrelu(conv(F.interpolate(feat, scale_factor=step, mode="nearest")))
        return self.conv_last(_lrelu(self.conv_hr(feat)))
