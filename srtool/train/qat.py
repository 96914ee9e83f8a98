"""Quantisation-aware fine-tuning: train the deployed network through the int8 arithmetic that
``srtool export --int8`` will give it.

onnxruntime's static QDQ quantiser (:func:`srtool.export.quantize.to_int8`: convolutions only,
per-output-channel symmetric int8 weights, per-tensor uint8 activations) puts a
Quantize/Dequantize pair on every convolution's weight, on its input and on its output; every
other consumer of such a tensor (residual adds, the attention's sigmoid, concatenations) reads
the dequantised value too. :func:`prepare_qat` swaps every ``nn.Conv2d`` of a deployed network
for a :class:`QuantConv2d` that computes the same thing in fake quantisation, with
straight-through gradients (``torch.fake_quantize_per_*_affine``):

- weights: per output channel, symmetric, ``scale = max|w| / 127``, codes -127..127 (what the
  quantiser computes for ``QInt8`` weights);
- activations: per tensor, uint8, ``scale = (hi - lo) / 255`` over ``[min(lo, 0), max(hi, 0)]``
  and ``zero_point = round(-lo / scale)``, the quantiser's own formula. ``lo`` and ``hi`` follow
  its percentile calibration (``hi`` the ``percentile``-th percentile of ``|x|`` capped at the
  maximum, ``lo`` the larger of ``-hi`` and the minimum), measured on each training batch and
  averaged with ``momentum``; ``freeze_after`` steps stop the averaging so the last steps
  train against the ranges that will be shipped;
- a convolution's input that is another convolution's (already quantised) output is not
  quantised twice: the tensor has one range, the producer's.

Conv modules named in ``keep_float`` stay float (weights and input), as the quantiser's
``nodes_to_exclude`` leaves them; their output is still quantised where a quantised
convolution reads it, except the network's last convolution, whose output is the image.

The ranges live in non-persistent buffers, so ``state_dict()`` is the plain deployed network's
and checkpoints load anywhere; :func:`quant_ranges` reads them for the checkpoint metadata
(``meta["quantization"]``), which ``srtool export --int8`` hands to the quantiser instead of
calibrating again, so the exported int8 graph is the one that was trained.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from srtool.errors import UsageError

__all__ = [
    "SCHEME",
    "QuantConv2d",
    "load_quant_ranges",
    "prepare_qat",
    "quant_ranges",
    "quantization_meta",
    "set_observing",
]

log = logging.getLogger("srtool")

#: What the metadata's ``scheme`` names: the quantiser settings the fake quantisation mirrors.
SCHEME = "onnx-qdq conv: int8 per-channel symmetric weights, uint8 per-tensor activations"

#: Most elements one range measurement looks at (a strided sample beyond that): keeps the
#: observer's cost small next to the convolution's.
_OBSERVE_MAX = 1 << 20


def _observe(x: torch.Tensor, percentile: float) -> torch.Tensor:
    """``[lo, hi]`` of ``x`` as onnxruntime's percentile calibration computes them."""
    flat = x.detach().float().reshape(-1)
    if flat.numel() > _OBSERVE_MAX:
        flat = flat[:: -(-flat.numel() // _OBSERVE_MAX)]
    mags = flat.abs()
    k = max(1, int(mags.numel() * (1.0 - percentile / 100.0)) + 1)
    k = min(k, mags.numel())
    hi = torch.topk(mags, k, sorted=True).values[-1]
    hi = torch.minimum(hi, flat.max())
    lo = torch.maximum(-hi, flat.min())
    return torch.stack([lo, hi])


def _act_qparams(rng: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(scale, zero_point)`` of the range ``[lo, hi]`` (onnxruntime's compute_scale_zp)."""
    lo = torch.clamp(rng[0], max=0.0)
    hi = torch.clamp(rng[1], min=0.0)
    scale = (hi - lo) / 255.0
    tiny = scale < torch.finfo(torch.float32).tiny
    scale = torch.where(tiny, torch.ones_like(scale), scale)
    zp = torch.where(tiny, torch.zeros_like(lo), torch.round(-lo / scale)).clamp(0, 255)
    return scale.reshape(1).float(), zp.reshape(1).to(torch.int32)


def _fake_quant_act(x: torch.Tensor, rng: torch.Tensor) -> torch.Tensor:
    scale, zp = _act_qparams(rng)
    return torch.fake_quantize_per_tensor_affine(x, scale, zp, 0, 255)


def _fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    amax = w.detach().abs().amax(dim=(1, 2, 3)).float()
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    zp = torch.zeros_like(amax, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zp, 0, -127, 127)


def _mark(t: torch.Tensor) -> torch.Tensor:
    """Note that ``t`` holds quantised values, valid until it is changed in place."""
    t._srtool_quantised = t._version  # type: ignore[attr-defined]
    return t


def _is_marked(t: torch.Tensor) -> bool:
    return getattr(t, "_srtool_quantised", None) == t._version


class QuantConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters, same ``state_dict``) computed in fake int8."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.float_weights = False  # keep_float: weights and input stay float
        self.quant_output = True
        self.percentile = 99.999
        self.momentum = 0.01
        self.observing = True
        for name in ("in_range", "out_range"):
            self.register_buffer(name, torch.zeros(2), persistent=False)
        self.register_buffer("in_seen", torch.zeros((), dtype=torch.bool), persistent=False)
        self.register_buffer("out_seen", torch.zeros((), dtype=torch.bool), persistent=False)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> QuantConv2d:
        q = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        q.weight = conv.weight
        q.bias = conv.bias
        q.train(conv.training)
        return q

    def _update(self, which: str, value: torch.Tensor) -> None:
        rng, seen = getattr(self, f"{which}_range"), getattr(self, f"{which}_seen")
        with torch.no_grad():
            measured = _observe(value, self.percentile)
            blended = torch.lerp(rng, measured, self.momentum)
            rng.copy_(torch.where(seen, blended, measured))
            seen.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        observe = self.training and self.observing
        if not self.float_weights and not _is_marked(x):
            if observe:
                self._update("in", x)
            x = _fake_quant_act(x, self.in_range)
        weight = self.weight if self.float_weights else _fake_quant_weight(self.weight)
        out = self._conv_forward(x, weight, self.bias)
        if not self.quant_output:
            return out
        if observe:
            self._update("out", out)
        return _mark(_fake_quant_act(out, self.out_range))


def _quant_convs(model: nn.Module) -> Iterable[tuple[str, QuantConv2d]]:
    return ((n, m) for n, m in model.named_modules() if isinstance(m, QuantConv2d))


def prepare_qat(
    model: nn.Module,
    *,
    percentile: float = 99.999,
    momentum: float = 0.01,
    keep_float: Iterable[str] = (),
) -> list[str]:
    """Swap every ``nn.Conv2d`` of ``model`` (deployed: plain convs) for a :class:`QuantConv2d`
    sharing its parameters, in place. Returns the names of the swapped convolutions."""
    keep = list(keep_float)
    convs = [(n, m) for n, m in model.named_modules() if type(m) is nn.Conv2d]
    if not convs:
        raise UsageError("quant.qat: the network has no plain convolutions to quantise")
    names = [n for n, _ in convs]
    unknown = [k for k in keep if k not in names]
    if unknown:
        raise UsageError(
            f"quant.keep_float: {', '.join(unknown)} is not a convolution of the deployed "
            f"network; its convolutions: {', '.join(names)}"
        )
    last = names[-1]
    for name, conv in convs:
        q = QuantConv2d.from_conv(conv)
        q.percentile, q.momentum = percentile, momentum
        q.float_weights = name in keep
        q.quant_output = not (name in keep and name == last)
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, q)
    log.info(
        "qat: %d convolutions in fake int8%s",
        len(convs) - len(keep),
        f", {', '.join(keep)} kept float" if keep else "",
    )
    return names


def set_observing(model: nn.Module, on: bool) -> None:
    """Let the range observers average (``on``) or hold their ranges."""
    for _, m in _quant_convs(model):
        m.observing = on


def quant_ranges(model: nn.Module) -> dict[str, dict[str, list[float]]]:
    """``{conv name: {"input": [lo, hi], "output": [lo, hi]}}`` for the ranges observed so far
    (an input quantised as another convolution's output has no range of its own)."""
    out: dict[str, dict[str, list[float]]] = {}
    for name, m in _quant_convs(model):
        entry = {}
        if bool(m.in_seen):
            entry["input"] = [float(v) for v in m.in_range.tolist()]
        if m.quant_output and bool(m.out_seen):
            entry["output"] = [float(v) for v in m.out_range.tolist()]
        out[name] = entry
    return out


def load_quant_ranges(model: nn.Module, ranges: Mapping[str, Mapping[str, Any]]) -> None:
    """Put ranges from :func:`quant_ranges` (a resume state) back into ``model``."""
    for name, m in _quant_convs(model):
        entry = ranges.get(name, {})
        for which, key in (("in", "input"), ("out", "output")):
            if key in entry:
                getattr(m, f"{which}_range").copy_(torch.tensor(entry[key], dtype=torch.float32))
                getattr(m, f"{which}_seen").fill_(True)


def quantization_meta(
    model: nn.Module, *, percentile: float, keep_float: Iterable[str]
) -> dict[str, Any]:
    """What a checkpoint says about the int8 graph it was trained for: the scheme, the
    convolutions left in float and the activation ranges (``srtool export --int8`` uses them)."""
    return {
        "scheme": SCHEME,
        "percentile": percentile,
        "keep_float": list(keep_float),
        "ranges": quant_ranges(model),
    }
