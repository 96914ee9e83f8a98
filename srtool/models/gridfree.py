"""A fixed filter after the pixel shuffle that makes a sub-pixel upsampler grid-free by structure.

After Y. Sugawara, S. Shiota, H. Kiya, "Super-resolution using convolutional neural networks
without any checkerboard artifacts", ICIP 2018, and "Checkerboard artifacts free convolutional
neural networks", APSIPA Trans. 2019: following the upsampling layer with the zero-order hold
(an ``s x s`` box filter) guarantees that no input produces a period-``s`` pattern.

Why it works: a ``PixelShuffle(s)`` tail computes the ``s x s`` output phases with their own
kernels, so the network can put energy at the grid frequencies ``k / s`` cycles per pixel
(``0 < k < s``) — the checkerboard that perceptual and adversarial losses keep pushing for
(``training/photo-x4/README.md``). The ``s``-tap box has a zero at every one of those
frequencies: whatever the phases do, the filtered output has none of it, and on a flat input
every output pixel averages each phase once. ICNR (:mod:`srtool.models.icnr`) only *starts* a
network grid-free; this filter keeps it so through any training.

Here the 1-D kernel is the ``s``-tap box, convolved with ``[1, 1] / 2`` when ``s`` is even so
that it has an odd length and a centre (no half-pixel shift): ``[1, 2, 1] / 4`` for x2,
``[1, 1, 1] / 3`` for x3, ``[1, 2, 2, 2, 1] / 8`` for x4; applied separably to each channel,
with the image edge replicated. Every frequency the low-resolution input carries (below
``1 / (2 s)`` cycles per output pixel) passes with at least 60 % of its amplitude (x4; 67 % x3,
50 % x2), which the layers before can make up; only what lies above it, which a network invents,
is notched at the grid frequencies. The filter has no parameters (a non-persistent buffer):
state dicts of the same network without it load unchanged, so a trained generator can be
fine-tuned with it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GridFreeFilter", "grid_free_taps"]


def grid_free_taps(scale: int) -> np.ndarray:
    """The 1-D kernel for ``scale`` (float64, sums to 1, odd length, symmetric)."""
    if scale < 2:
        return np.ones(1)
    taps = np.ones(scale) / scale
    if scale % 2 == 0:
        taps = np.convolve(taps, [0.5, 0.5])
    return taps


class GridFreeFilter(nn.Module):
    """Depthwise ``k x k`` filter of :func:`grid_free_taps` (edge replicated); identity for x1."""

    def __init__(self, channels: int, scale: int) -> None:
        super().__init__()
        taps = torch.tensor(grid_free_taps(scale), dtype=torch.float32)
        kernel = torch.outer(taps, taps).expand(channels, 1, -1, -1).contiguous()
        self.register_buffer("kernel", kernel, persistent=False)
        self.pad = (len(taps) - 1) // 2
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad == 0:
            return x
        x = F.pad(x, (self.pad,) * 4, mode="replicate")
        return F.conv2d(x, self.kernel.to(x.dtype), groups=self.channels)
