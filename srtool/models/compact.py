"""Compact: a fast VGG-style generator that does all its work at the low-resolution size.

Structure (identical to Real-ESRGAN's ``SRVGGNetCompact``, including state-dict key names, so
community "Compact" weights load into it unchanged and srtool's compact checkpoints load in
spandrel): ``body`` = conv3x3(in -> F), PReLU, ``convs`` x [conv3x3(F -> F), PReLU],
conv3x3(F -> out * s * s); then PixelShuffle(s) plus the nearest-upsampled input, so the network
learns only the residual over a blocky upscale. The last convolution starts by ICNR (Aitken et
al. 2017, "Checkerboard artifact free sub-pixel convolution", :mod:`srtool.models.icnr`), so a
network built from scratch has no period-``scale`` grid before training.

Why this is the CPU model: every convolution runs on the small LR grid (cost per output pixel is
``~9 * F * F * (convs + 1) / s**2`` MACs), there is no normalisation, no attention, no HR-size
convolution, and the graph exports to a plain Conv/PRelu chain that onnxruntime fuses well.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srtool.models.hparams import records_hparams
from srtool.models.icnr import icnr_

__all__ = ["Compact"]


class Compact(nn.Module):
    """VGG-style compact super-resolution network (SRVGGNetCompact-equivalent).

    Args:
        scale: upscaling factor (1-4). ``1`` gives a same-size restoration network.
        in_channels: input image channels (3 for RGB, 1 for grey).
        out_channels: output image channels; must equal ``in_channels`` for the input skip.
        features: channels of every hidden convolution.
        convs: hidden ``features -> features`` convolutions between the first and the last one
            (Real-ESRGAN's ``num_conv``; its animevideov3 model uses 16, realesr-general 32).
    """

    arch = "compact"
    kind = "generator"
    multiple_of = 1

    @records_hparams
    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        features: int = 64,
        convs: int = 16,
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 3, 4):
            raise ValueError(f"compact: scale must be 1, 2, 3 or 4, got {scale}")
        if in_channels != out_channels:
            raise ValueError(
                "compact: out_channels must equal in_channels (nearest-upsampled skip)"
            )
        if features < 1 or convs < 0 or in_channels < 1:
            raise ValueError("compact: features and in_channels must be >= 1, convs >= 0")
        self.scale = scale
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, features, 3, 1, 1),
            nn.PReLU(num_parameters=features),
        ]
        for _ in range(convs):
            layers += [nn.Conv2d(features, features, 3, 1, 1), nn.PReLU(num_parameters=features)]
        layers.append(nn.Conv2d(features, out_channels * scale * scale, 3, 1, 1))
        icnr_(layers[-1], scale)  # ICNR (Aitken et al. 2017): a fresh network starts grid-free
        # A ModuleList (not Sequential) keeps the ``body.N`` key names of the reference model.
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        if self.scale == 1:
            return out + x
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")
