"""ICNR: initialising the convolution before a pixel shuffle so that it starts free of the grid.

After A. Aitken, C. Ledig, L. Theis, J. Caballero, Z. Wang, W. Shi, "Checkerboard artifact free
sub-pixel convolution: A note on sub-pixel convolution, resize convolution and convolution
resize", arXiv:1707.02937, 2017 ("ICNR": initialised to convolution NN resize).

A convolution with ``C * s * s`` outputs followed by ``PixelShuffle(s)`` computes the ``s x s``
output phases of each of the ``C`` channels with ``s * s`` independent kernels. Initialised
independently they disagree from the first step, and the output carries a pattern of period
``s`` (the checkerboard) that training must first unlearn, which a perceptual or adversarial
objective may never do. ICNR draws one kernel per output channel (``C`` of them, in the layer's
own default way) and gives it to all ``s * s`` phases of that channel: at initialisation the
sub-pixel convolution then equals a convolution followed by nearest-neighbour upsampling, which
has no energy at all at the grid frequencies ``k / s`` cycles per pixel. Training moves the
phases apart only where that lowers the loss.

Written for srtool from the paper.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["icnr_"]


@torch.no_grad()
def icnr_(conv: nn.Conv2d, scale: int) -> nn.Conv2d:
    """Re-initialise ``conv`` (whose output feeds ``nn.PixelShuffle(scale)``) by ICNR, in place.

    The ``out_channels / scale**2`` base kernels and biases are drawn by the layer's own
    ``reset_parameters`` (PyTorch's default Kaiming-uniform), so the weight scale is unchanged;
    each is repeated for the ``scale**2`` consecutive channels PixelShuffle turns into one output
    channel's sub-pixel positions. Returns ``conv``.
    """
    phases = scale * scale
    if scale < 1 or conv.out_channels % phases:
        raise ValueError(
            f"ICNR: {conv.out_channels} output channels are not a multiple of scale² = {phases}"
        )
    if phases == 1:  # no pixel shuffle to speak of: the default initialisation is ICNR
        return conv
    base = nn.Conv2d(
        conv.in_channels,
        conv.out_channels // phases,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    # PixelShuffle reads input channel c * s² + i * s + j as output channel c at phase (i, j)
    conv.weight.copy_(base.weight.repeat_interleave(phases, dim=0))
    if conv.bias is not None:
        conv.bias.copy_(base.bias.repeat_interleave(phases, dim=0))
    return conv
