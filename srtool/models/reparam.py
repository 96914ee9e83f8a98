"""Structural re-parameterisation: train with extra linear branches, deploy one plain conv.

A re-parameterisable block (:class:`RepConv3x3`) is a sum of linear branches during training —
SPAN's expanded ``1x1 -> 3x3 -> 1x1`` chain, a ``1x1`` conv and, where the input and output
widths agree, the identity — and every one of them is a linear map over the same 3x3
neighbourhood, so their sum is exactly one 3x3 convolution. :meth:`RepConv3x3.fused` computes
that convolution (in float64, then cast back) and :func:`deploy` swaps every block of a network
for it, so the deployed network is plain ``nn.Conv2d`` layers: a clean ``state_dict`` and a
clean ONNX graph, and the same function as the training graph to float rounding.

Papers: X. Ding et al., "RepVGG: Making VGG-style ConvNets Great Again", CVPR 2021 (3x3 + 1x1
+ identity branches folded into one 3x3 conv); X. Zhang, H. Zeng, L. Zhang, "Edge-oriented
Convolution Block for Real-time Super Resolution on Mobile Devices" (ECBSR), ACM MM 2021
(expand-then-squeeze ``1x1 -> 3x3`` branches for SR); C. Wan et al., "Swift Parameter-free
Attention Network for Efficient Super-Resolution" (SPAN), CVPRW 2024 (Conv3XC: ``1x1 -> 3x3 ->
1x1`` with a widening gain, plus a 1x1 skip).

Exactness at image borders: the first ``1x1`` of the expanded branch has no bias. A bias there
would turn the 3x3's zero padding into "bias padding" at the border, which one padded 3x3 conv
cannot reproduce (SPAN's Conv3XC is exact only in the interior for that reason); without it the
fold is exact everywhere, and nothing is lost inside the image because that bias could be moved
into the 3x3's bias anyway.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RepConv3x3", "deploy", "fuse_children"]


class RepConv3x3(nn.Module):
    """A 3x3 convolution (stride 1, zero padding 1) trained as a sum of linear branches.

    Branches: ``expand_in`` (1x1, no bias) -> ``expand_mid`` (3x3, ``expand`` times wider) ->
    ``expand_out`` (1x1); ``skip`` (1x1); and the identity when ``identity`` and
    ``in_channels == out_channels``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, expand: int = 2, identity: bool = True
    ) -> None:
        super().__init__()
        if expand < 1:
            raise ValueError(f"expand must be >= 1, got {expand}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.identity = identity and in_channels == out_channels
        mid_in, mid_out = in_channels * expand, out_channels * expand
        self.expand_in = nn.Conv2d(in_channels, mid_in, 1, bias=False)
        self.expand_mid = nn.Conv2d(mid_in, mid_out, 3, 1, 1)
        self.expand_out = nn.Conv2d(mid_out, out_channels, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand_out(self.expand_mid(self.expand_in(x))) + self.skip(x)
        return out + x if self.identity else out

    @torch.no_grad()
    def fused_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The equivalent 3x3 ``(weight, bias)``, in float64."""
        w1 = self.expand_in.weight.double()[:, :, 0, 0]  # (mid_in, in)
        w2 = self.expand_mid.weight.double()  # (mid_out, mid_in, 3, 3)
        w3 = self.expand_out.weight.double()[:, :, 0, 0]  # (out, mid_out)
        weight = torch.einsum("om,mnhw,ni->oihw", w3, w2, w1)
        bias = w3 @ self.expand_mid.bias.double() + self.expand_out.bias.double()
        weight[:, :, 1, 1] += self.skip.weight.double()[:, :, 0, 0]
        bias = bias + self.skip.bias.double()
        if self.identity:
            weight[:, :, 1, 1] += torch.eye(self.out_channels, dtype=weight.dtype, device=w1.device)
        return weight, bias

    @torch.no_grad()
    def fused(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` computing what this block computes (same device and dtype)."""
        weight, bias = self.fused_kernel()
        ref = self.skip.weight
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, 1, 1)
        conv = conv.to(device=ref.device, dtype=ref.dtype)
        conv.weight.copy_(weight.to(ref.dtype))
        conv.bias.copy_(bias.to(ref.dtype))
        conv.train(self.training)
        return conv

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, identity={self.identity}"


def fuse_children(module: nn.Module) -> nn.Module:
    """Replace, in place and recursively, every child that has ``fused()`` by its result."""
    for name, child in list(module.named_children()):
        if callable(getattr(child, "fused", None)):
            setattr(module, name, child.fused())
        else:
            fuse_children(child)
    return module


def deploy(model: nn.Module) -> nn.Module:
    """Collapse every re-parameterisable part of ``model`` in place; returns ``model``.

    Calls ``reparameterize()`` on every submodule that has one (outermost first), then folds any
    block still left that offers ``fused()``. Idempotent, and a no-op for networks without such
    blocks (``compact``, ``rrdbnet``, ...), so an exporter may call it on any generator.
    """
    for module in list(model.modules()):
        hook = getattr(module, "reparameterize", None)
        if callable(hook):
            hook()
    return fuse_children(model)
