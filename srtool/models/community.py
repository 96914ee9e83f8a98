"""Community model files (ESRGAN, Real-ESRGAN Compact, SwinIR, SPAN, ...) through spandrel.

Users hold thousands of ``.pth`` / ``.safetensors`` files from model databases. spandrel detects
their architecture from state-dict keys and shapes; srtool reads the state dict itself first so the
loading rules are its own: safetensors is read directly, and pickled files only with
``torch.load(weights_only=True)`` — PyTorch's allow-list unpickler, which builds tensors and plain
containers and refuses every other global, so a malicious file cannot run code. (spandrel's own
file loader uses a different restricted unpickler and executes TorchScript ``.pt`` archives; both
are bypassed here.)

Real-ESRGAN Compact weights are converted into srtool's :class:`~srtool.models.compact.Compact`,
which has the same structure and key names, so they export, fine-tune and checkpoint like any
srtool model. Other architectures are used as spandrel builds them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from srtool.errors import ModelError

__all__ = ["CommunityModel", "COMMUNITY_SUFFIXES", "load_community", "read_state_dict"]

log = logging.getLogger("srtool")

COMMUNITY_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


@dataclass(frozen=True)
class CommunityModel:
    """A community model ready to run: float32, eval mode, on the CPU."""

    model: nn.Module
    arch: str  #: srtool's name ("compact" when converted) or "spandrel.<Id>"
    spandrel_id: str
    spandrel_name: str
    scale: int
    in_channels: int
    out_channels: int
    multiple_of: int
    purpose: str
    converted: bool
    tags: list[str] = field(default_factory=list)
    hparams: dict | None = None


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a pickle via ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in COMMUNITY_SUFFIXES:
        raise ModelError(
            f"{path.name}: unsupported model file type '{suffix}' "
            f"(expected one of {', '.join(COMMUNITY_SUFFIXES)})"
        )
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"{path.name}: not a readable safetensors file ({exc})") from exc
    from srtool.models.pickled import TorchFileError, load_weights_only

    try:
        state = load_weights_only(path)
    except TorchFileError as exc:
        raise ModelError(f"{path.name}: {exc}") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path.name}: holds a {type(state).__name__}, not a state dict")
    return state


def load_community(path: str | os.PathLike[str]) -> CommunityModel:
    """Detect and build the model in a community weights file (raises ModelError if unknown)."""
    path = Path(path)
    state = read_state_dict(path)
    try:
        import spandrel
    except ImportError as exc:  # pragma: no cover - spandrel is in the train extra
        raise ModelError(
            "community model files need spandrel: pip install 'srtool[train]'"
        ) from exc
    state = spandrel.canonicalize_state_dict(state)
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError as exc:
        raise ModelError(
            f"{path.name}: spandrel does not recognise this architecture "
            "(it supports ESRGAN, Real-ESRGAN Compact, SwinIR, SPAN, HAT, DAT and many more)"
        ) from exc
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{path.name}: spandrel could not build the model ({exc})") from exc
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ModelError(f"{path.name}: a {descriptor.architecture.name} model is not an upscaler")
    if descriptor.purpose not in ("SR", "Restoration"):
        raise ModelError(
            f"{path.name}: a {descriptor.purpose} model ({descriptor.architecture.name}) "
            "is not a plain image-to-image upscaler"
        )
    if descriptor.input_channels != descriptor.output_channels:
        raise ModelError(
            f"{path.name}: {descriptor.input_channels} input but {descriptor.output_channels} "
            "output channels; srtool needs image in, image out"
        )
    arch_id = str(descriptor.architecture.id)
    info = {
        "spandrel_id": arch_id,
        "spandrel_name": descriptor.architecture.name,
        "scale": int(descriptor.scale),
        "in_channels": int(descriptor.input_channels),
        "out_channels": int(descriptor.output_channels),
        "multiple_of": int(descriptor.size_requirements.multiple_of or 1),
        "purpose": str(descriptor.purpose),
        "tags": list(descriptor.tags),
    }
    net = descriptor.model.float().eval()
    converted = _as_srtool_compact(net) if arch_id == "Compact" else None
    if converted is not None:
        log.debug("%s: Real-ESRGAN Compact converted to srtool's compact", path.name)
        return CommunityModel(
            model=converted, arch="compact", converted=True, hparams=converted.hparams, **info
        )
    return CommunityModel(model=net, arch=f"spandrel.{arch_id}", converted=False, **info)


def _as_srtool_compact(net: nn.Module) -> nn.Module | None:
    """srtool's Compact with ``net``'s weights, or None when the layouts differ (non-PReLU)."""
    from srtool.models.compact import Compact

    if getattr(net, "act_type", "prelu") != "prelu":
        return None
    try:
        ours = Compact(
            scale=int(net.upscale),
            in_channels=int(net.num_in_ch),
            out_channels=int(net.num_out_ch),
            features=int(net.num_feat),
            convs=int(net.num_conv),
        )
        ours.load_state_dict(net.state_dict(), strict=True)
    except (AttributeError, RuntimeError, ValueError):
        return None
    return ours.eval()
