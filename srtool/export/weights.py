"""Plain weights: ``srtool export --format safetensors|pth``.

A state dict under the network's own key names and nothing else — for an srtool checkpoint the
EMA weights (when present) without the ``ema/`` prefix and without srtool's metadata — so that
spandrel (chaiNNer, ComfyUI, traiNNer) loads the file. srtool's ``compact`` has the key names of
Real-ESRGAN's SRVGGNetCompact, so it loads there as "RealESRGAN Compact"; other srtool
architectures keep srtool's key names. Re-parameterisable networks are written in their training
form (the form their architecture's loaders expect).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srtool.atomic import atomic_output
from srtool.errors import ModelError, UsageError

__all__ = ["WEIGHT_FORMATS", "WeightsReport", "export_weights"]

WEIGHT_FORMATS = ("safetensors", "pth")


@dataclass(frozen=True)
class WeightsReport:
    out_path: Path
    fmt: str
    arch: str
    scale: int
    tensors: int
    params: int
    size_bytes: int


def _model_of(source: Any) -> tuple[Any, str, int]:
    from torch import nn

    if isinstance(source, nn.Module):
        scale = getattr(source, "scale", None)
        if not isinstance(scale, int):
            raise ModelError(f"{type(source).__name__} has no integer .scale")
        return source, str(getattr(source, "arch", type(source).__name__.lower())), scale
    path = Path(source)
    if not path.exists():
        raise ModelError(f"export source not found: {path}")
    from srtool.models.checkpoint import is_checkpoint, load_checkpoint

    if path.is_dir():
        from srtool.train.run import RunDir

        path = RunDir(path).export_checkpoint()
    if path.suffix.lower() == ".safetensors" and is_checkpoint(path):
        model, meta = load_checkpoint(path, prefer_ema=True)
        return model, str(meta["arch"]), int(model.scale)
    from srtool.models.community import load_community

    found = load_community(path)
    return found.model, found.arch, found.scale


def export_weights(
    source: Any, out_path: str | os.PathLike[str], fmt: str | None = None
) -> WeightsReport:
    """Write SOURCE's weights (see :func:`srtool.export.export_onnx` for what SOURCE may be) as a
    plain state dict to ``out_path``: ``safetensors`` or ``pth`` (``torch.save`` of a dict of
    tensors), chosen by ``fmt`` or the file's suffix. Written atomically."""
    import torch

    out_path = Path(out_path)
    fmt = (fmt or out_path.suffix.lstrip(".")).lower()
    if fmt == "pt":
        fmt = "pth"
    if fmt not in WEIGHT_FORMATS:
        raise UsageError(f"--format {fmt}: plain weights are safetensors or pth")
    if out_path.is_dir():
        raise UsageError(f"output {out_path} is a folder; give a file name")
    model, arch, scale = _model_of(source)
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    if not state:
        raise ModelError(f"{arch}: the model has no weights to write")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_path) as tmp:
        if fmt == "safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp), metadata={"arch": arch, "scale": str(scale)})
        else:
            torch.save(state, str(tmp))
    return WeightsReport(
        out_path=out_path,
        fmt=fmt,
        arch=arch,
        scale=scale,
        tensors=len(state),
        params=sum(int(v.numel()) for v in state.values()),
        size_bytes=out_path.stat().st_size,
    )
