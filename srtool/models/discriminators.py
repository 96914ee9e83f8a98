"""Discriminators for adversarial training: SRGAN's VGG-style classifier and Real-ESRGAN's U-Net.

``vgg`` (Ledig et al., 2017) judges a whole crop: eight 3x3 conv blocks 64 -> 512 channels, stride
2 every other block, BatchNorm (not on the first), LeakyReLU 0.2, then dense 1024, LeakyReLU, dense
1. SRGAN fixes the crop to 96x96 so the last feature map is 6x6x512. Here an adaptive average pool
to ``pool_size`` x ``pool_size`` sits before the dense layers instead: at a 96x96 crop with the
default ``pool_size=6`` the pool is the identity and the network is exactly SRGAN's; other crop
sizes (128, 192, ...) work without changing the dense layer's shape, so one recipe value (the crop)
does not silently change the architecture. Inputs need sides >= 16.

``unet_sn`` (Wang et al., Real-ESRGAN 2021) judges every pixel: a U-Net with three stride-2 convs
down and bilinear x2 steps up, skip connections, spectral normalisation on every conv but the
first and last. Per-pixel realness gives the generator local gradients, which matters for the
complex degradations of real-world training. Inputs need sides that are multiples of 8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from srtool.models.hparams import records_hparams

__all__ = ["VGGDiscriminator", "UNetDiscriminatorSN"]


class VGGDiscriminator(nn.Module):
    """SRGAN's discriminator; returns one logit per image, shape (N, 1).

    Args:
        in_channels: image channels.
        features: channels of the first block (doubled every two blocks, up to 8x).
        pool_size: side of the adaptive pool before the dense layers (6 = SRGAN at 96x96).
        batch_norm: BatchNorm after every conv except the first (SRGAN has it).
    """

    arch = "vgg"
    kind = "discriminator"
    multiple_of = 1
    scale = 1

    @records_hparams
    def __init__(
        self,
        *,
        in_channels: int = 3,
        features: int = 64,
        pool_size: int = 6,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if min(in_channels, features, pool_size) < 1:
            raise ValueError("vgg: in_channels, features and pool_size must be >= 1")
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(8):
            out = features * 2 ** (i // 2)
            stride = 2 if i % 2 else 1
            norm = batch_norm and i > 0
            layers.append(nn.Conv2d(channels, out, 3, stride, 1, bias=not norm))
            if norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * pool_size * pool_size, 1024),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(1024, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's spectral-norm U-Net discriminator; returns logits of shape (N, 1, H, W).

    Args:
        in_channels: image channels.
        features: channels at full resolution (x2, x4, x8 deeper).
        skip_connection: add encoder features to the decoder (Real-ESRGAN does).
    """

    arch = "unet_sn"
    kind = "discriminator"
    multiple_of = 8
    scale = 1

    @records_hparams
    def __init__(
        self, *, in_channels: int = 3, features: int = 64, skip_connection: bool = True
    ) -> None:
        super().__init__()
        if min(in_channels, features) < 1:
            raise ValueError("unet_sn: in_channels and features must be >= 1")
        self.skip_connection = skip_connection
        f = features

        def sn(cin: int, cout: int, kernel: int, stride: int) -> nn.Module:
            return spectral_norm(nn.Conv2d(cin, cout, kernel, stride, 1, bias=False))

        self.conv0 = nn.Conv2d(in_channels, f, 3, 1, 1)
        self.conv1 = sn(f, f * 2, 4, 2)
        self.conv2 = sn(f * 2, f * 4, 4, 2)
        self.conv3 = sn(f * 4, f * 8, 4, 2)
        self.conv4 = sn(f * 8, f * 4, 3, 1)
        self.conv5 = sn(f * 4, f * 2, 3, 1)
        self.conv6 = sn(f * 2, f, 3, 1)
        self.conv7 = sn(f, f, 3, 1)
        self.conv8 = sn(f, f, 3, 1)
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def act(t: torch.Tensor) -> torch.Tensor:
            return F.leaky_relu(t, negative_slope=0.2)

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = act(self.conv5(up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = act(self.conv6(up(x5)))
        if self.skip_connection:
            x6 = x6 + x0
        out = act(self.conv7(x6))
        out = act(self.conv8(out))
        return self.conv9(out)
