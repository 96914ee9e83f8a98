"""Cost of a network: parameters, multiply-accumulates per output pixel, peak activation size.

MACs come from PyTorch's own FLOP counter (convolutions, linear layers and matrix products,
attention included; element-wise ops are not counted, as is customary), measured on a real
forward pass at a small size and divided by the output pixels, so the figure is exact for
convolutional nets at any size and architecture-agnostic (it works for spandrel's models too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ModelCost", "count_parameters", "measure_cost"]


@dataclass(frozen=True)
class ModelCost:
    """``macs_per_output_pixel`` per output pixel of a single image (batch 1).

    ``peak_activation_per_input_pixel``: the largest single module output, in float values per
    input pixel — a guide for choosing tile sizes from free memory.
    """

    params: int
    macs_per_output_pixel: float
    peak_activation_per_input_pixel: float


def count_parameters(model: nn.Module) -> int:
    """Trainable and frozen parameters, each shared tensor counted once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def measure_cost(
    model: nn.Module, *, in_channels: int = 3, size: tuple[int, int] = (32, 48)
) -> ModelCost:
    """Run ``model`` once on a ``size`` input (batch 1, on its own device) and count its cost."""
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.rand(1, in_channels, *size, device=device, dtype=dtype)
    peak = 0

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal peak
        if isinstance(output, torch.Tensor):
            peak = max(peak, output.numel())

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    out_pixels = out.shape[-1] * out.shape[-2]
    return ModelCost(
        params=count_parameters(model),
        macs_per_output_pixel=counter.get_total_flops() / 2 / out_pixels,
        peak_activation_per_input_pixel=max(peak, out.numel()) / (size[0] * size[1]),
    )
