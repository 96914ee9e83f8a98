"""SPAN: a swift, parameter-free-attention efficient SR generator with re-parameterisable convs.

After C. Wan, H. Yu, Z. Li, Y. Chen, Y. Zou, Y. Liu, X. Yin, K. Zuo, "Swift Parameter-free
Attention Network for Efficient Super-Resolution", CVPR Workshops 2024 (winner of the NTIRE 2024
efficient SR challenge's overall-performance track), with the structural re-parameterisation of
X. Ding et al., "RepVGG", CVPR 2021 and X. Zhang et al., "ECBSR", ACM MM 2021 (see
:mod:`srtool.models.reparam`). Written for srtool from the papers.

Structure (all at the low-resolution size; ``Rep`` is a :class:`~srtool.models.reparam.RepConv3x3`,
one plain 3x3 conv once deployed)::

    f0  = Rep(in -> F)(x)
    f_i = SPAB_i(f_{i-1}),  i = 1..blocks
    SPAB(x):  c = Rep(x); c = lrelu(c) ... (convs - 1 activated convs); c = Rep(c)
              out = (c + x) * (sigmoid(c) - 0.5)          # parameter-free attention
    y   = conv1x1(cat[f0, f_B, f_1, Rep(f_B)])            # 4F -> F
    out = PixelShuffle(s)(conv3x3(F -> out * s * s)(y))

The attention map ``sigmoid(c) - 0.5`` is symmetric about zero: it is large where the features
respond strongly (edges, texture) and small on flat regions, with no weights of its own.

Where this differs from the paper:

- activations are LeakyReLU (slope 0.05, as RLFN's) instead of SiLU: onnxruntime's CPU provider
  fuses LeakyReLU (and ReLU) into the preceding convolution, not SiLU;
- each Rep block also has an identity branch when its input and output widths agree (RepVGG),
  and the first 1x1 of its expanded branch has no bias, so the fold is exact at image borders;
- the number of convs per block (``convs``, 3 in the paper) and of blocks are parameters; the
  paper's SPAN has 48 features x 6 blocks;
- the convolution before the pixel shuffle starts by ICNR (Aitken et al. 2017,
  :mod:`srtool.models.icnr`): a fresh network has no period-``scale`` grid, which a perceptual or
  adversarial objective might otherwise keep;
- ``grid_free=True`` adds the fixed filter of :mod:`srtool.models.gridfree` after the pixel
  shuffle (Sugawara et al. 2018): no period-``scale`` grid by construction, for GAN training;
- no mean-shift of the input and no image-level skip. In particular there is no nearest-upsampled
  input skip (``compact``'s): its 4x4 staircase shows on thin diagonal lines.

Deployment: :meth:`SPAN.reparameterize` (or :func:`srtool.models.reparam.deploy`) folds every
Rep block into its plain 3x3 conv in place and records ``deploy=True`` in ``hparams``, so
``build("span", **model.hparams)`` then rebuilds the collapsed structure and its ``state_dict``
loads there. Training saves the un-collapsed graph (``deploy=False``).

Cost of the deployed network per LR pixel: ``9*in*F + (blocks*convs + 1)*9*F*F + 4*F*F +
9*F*out*s*s`` MACs (+ biases); divide by ``s**2`` per output pixel.
"""

from __future__ import annotations

import torch
from torch import nn

from srtool.models.gridfree import GridFreeFilter
from srtool.models.hparams import records_hparams
from srtool.models.icnr import icnr_
from srtool.models.reparam import RepConv3x3, fuse_children

__all__ = ["SPAN", "SPAB"]

NEGATIVE_SLOPE = 0.05


def _conv(in_channels: int, out_channels: int, expand: int, deploy: bool) -> nn.Module:
    if deploy:
        return nn.Conv2d(in_channels, out_channels, 3, 1, 1)
    return RepConv3x3(in_channels, out_channels, expand=expand)


class SPAB(nn.Module):
    """Swift parameter-free attention block: ``convs`` Rep convs, LeakyReLU between them."""

    def __init__(self, features: int, *, convs: int = 3, expand: int = 2, deploy: bool = False):
        super().__init__()
        self.convs = nn.ModuleList(_conv(features, features, expand, deploy) for _ in range(convs))
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for conv in self.convs[:-1]:
            out = self.act(conv(out))
        out = self.convs[-1](out)
        return (out + x) * (torch.sigmoid(out) - 0.5)


class SPAN(nn.Module):
    """Swift Parameter-free Attention Network (see the module docstring).

    Args:
        scale: upscaling factor (1-4).
        in_channels: input image channels (3 for RGB, 1 for grey).
        out_channels: output image channels.
        features: channels of every hidden convolution.
        blocks: SPAB blocks.
        convs: 3x3 convolutions per block (the last one feeds the attention).
        expand: width gain of the training-time ``1x1 -> 3x3 -> 1x1`` branch (SPAN's ``gain``);
            it changes training cost and capacity only, not the deployed network.
        deploy: build the collapsed (plain-conv) network directly, e.g. to load the state dict
            of a network that :meth:`reparameterize` collapsed.
        grid_free: follow the pixel shuffle with the fixed filter of
            :mod:`srtool.models.gridfree`, which has no energy at the period-``scale`` grid
            frequencies (for perceptual / GAN training); it has no parameters, so the state dict
            is the same with or without it.
    """

    arch = "span"
    kind = "generator"
    multiple_of = 1

    @records_hparams
    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        features: int = 48,
        blocks: int = 6,
        convs: int = 3,
        expand: int = 2,
        deploy: bool = False,
        grid_free: bool = False,
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 3, 4):
            raise ValueError(f"span: scale must be 1, 2, 3 or 4, got {scale}")
        if min(in_channels, out_channels, features, blocks, convs, expand) < 1:
            raise ValueError(
                "span: in_channels, out_channels, features, blocks, convs and expand must be >= 1"
            )
        self.scale = scale
        self.head = _conv(in_channels, features, expand, deploy)
        self.blocks = nn.ModuleList(
            SPAB(features, convs=convs, expand=expand, deploy=deploy) for _ in range(blocks)
        )
        self.body_tail = _conv(features, features, expand, deploy)
        self.fuse = nn.Conv2d(features * 4, features, 1)
        tail: list[nn.Module] = [
            nn.Conv2d(features, out_channels * scale * scale, 3, 1, 1),
            nn.PixelShuffle(scale),
        ]
        if grid_free:
            tail.append(GridFreeFilter(out_channels, scale))
        self.upsampler = nn.Sequential(*tail)
        icnr_(self.upsampler[0], scale)  # a network built from scratch starts without a grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0 = self.head(x)
        out = f0
        first = None
        for block in self.blocks:
            out = block(out)
            if first is None:
                first = out
        tail = self.body_tail(out)
        return self.upsampler(self.fuse(torch.cat([f0, out, first, tail], dim=1)))

    def reparameterize(self) -> SPAN:
        """Fold every Rep block into one plain 3x3 conv, in place; idempotent. Returns self."""
        fuse_children(self)
        self.hparams["deploy"] = True
        return self
