"""SRResNet: the SRGAN generator (Ledig et al., 2017), with an optional BatchNorm-free variant.

conv9x9 + PReLU; ``blocks`` residual blocks (conv3x3-BN-PReLU-conv3x3-BN plus skip); conv3x3-BN
and a long skip from the first conv; sub-pixel upsampling (conv to 4F channels, PixelShuffle(2),
PReLU) once per x2 — or once with PixelShuffle(3) for x3 —; final conv9x9.

``batch_norm=False`` drops every BatchNorm: ESRGAN showed BN produces artefacts and hurts
generalisation when train and test statistics differ, and BN-free nets are cheaper to run. With
BN, export and inference use the running statistics (``model.eval()``), which ONNX folds into the
convs, so both variants cost the same at inference time.
"""

from __future__ import annotations

import torch
from torch import nn

from srtool.models.hparams import records_hparams

__all__ = ["SRResNet", "ResidualBlock"]

_UPSAMPLE_STEPS = {1: (), 2: (2,), 3: (3,), 4: (2, 2)}


def _norm(features: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(features) if batch_norm else nn.Identity()


class ResidualBlock(nn.Module):
    """conv-BN-PReLU-conv-BN with an identity skip."""

    def __init__(self, *, features: int = 64, batch_norm: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, 1, 1, bias=not batch_norm)
        self.bn1 = _norm(features, batch_norm)
        self.act = nn.PReLU(num_parameters=features)
        self.conv2 = nn.Conv2d(features, features, 3, 1, 1, bias=not batch_norm)
        self.bn2 = _norm(features, batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class SRResNet(nn.Module):
    """The SRGAN generator.

    Args:
        scale: upscaling factor: 1, 2, 3 or 4.
        in_channels / out_channels: image channels (3 for RGB).
        features: channels of the trunk (64 in SRGAN).
        blocks: residual blocks (16 in SRGAN).
        batch_norm: keep SRGAN's BatchNorm layers (``False``: the BN-free variant).
    """

    arch = "srresnet"
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
        blocks: int = 16,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if scale not in _UPSAMPLE_STEPS:
            raise ValueError(f"srresnet: scale must be 1, 2, 3 or 4, got {scale}")
        if min(in_channels, out_channels, features) < 1 or blocks < 0:
            raise ValueError("srresnet: channel counts must be >= 1 and blocks >= 0")
        self.scale = scale
        self.conv_first = nn.Conv2d(in_channels, features, 9, 1, 4)
        self.act_first = nn.PReLU(num_parameters=features)
        self.body = nn.Sequential(
            *(ResidualBlock(features=features, batch_norm=batch_norm) for _ in range(blocks))
        )
        self.conv_body = nn.Conv2d(features, features, 3, 1, 1, bias=not batch_norm)
        self.bn_body = _norm(features, batch_norm)
        upsample: list[nn.Module] = []
        for step in _UPSAMPLE_STEPS[scale]:
            upsample += [
                nn.Conv2d(features, features * step * step, 3, 1, 1),
                nn.PixelShuffle(step),
                nn.PReLU(num_parameters=features),
            ]
        self.upsample = nn.Sequential(*upsample)
        self.conv_last = nn.Conv2d(features, out_channels, 9, 1, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.act_first(self.conv_first(x))
        feat = feat + self.bn_body(self.conv_body(self.body(feat)))
        return self.conv_last(self.upsample(feat))
