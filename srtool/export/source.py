"""What can be exported: an nn.Module, an srtool checkpoint, a run folder or a community file.

:func:`resolve_source` turns any of them into a float32 CPU model in eval mode plus what is known
about it (architecture, hyper-parameters, scale, channels, training summary, content hash).
Re-parameterisable networks (``span``) are collapsed to their deployed form first
(:func:`srtool.models.deploy`): the exported graph has one plain convolution per block, and its
hyper-parameters say ``deploy = true``.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from srtool.errors import ModelError
from srtool.hashing import file_digest

__all__ = ["ResolvedSource", "portable", "resolve_source", "training_summary"]

log = logging.getLogger("srtool")


@dataclass
class ResolvedSource:
    """A model ready to export (float32, eval, CPU) and what is known about it."""

    model: Any
    kind: str
    label: str
    path: Path | None
    sha256: str | None
    arch: str
    hparams: dict[str, Any] | None
    scale: int
    in_channels: int
    out_channels: int
    multiple_of: int
    training: dict[str, Any] | None
    #: what a quantisation-aware run recorded for the int8 export (srtool.train.qat)
    quantization: dict[str, Any] | None = None


def training_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """The short, JSON-able training summary that goes into metadata and the model card."""
    recipe = meta.get("recipe") if isinstance(meta.get("recipe"), dict) else {}
    summary: dict[str, Any] = {
        "step": meta.get("step"),
        "weights": meta.get("weights"),
        "checkpoint_created": meta.get("created"),
    }
    for key in ("name", "description"):
        if isinstance(recipe.get(key), str):
            summary[f"recipe_{key}"] = recipe[key]
    for key in ("val_psnr", "val_ssim"):  # what the training loop records with best.safetensors
        if isinstance(meta.get(key), int | float):
            summary[key] = meta[key]
    if isinstance(meta.get("training"), dict):
        summary.update(meta["training"])
    return portable({k: v for k, v in summary.items() if v is not None})


def portable(training: dict[str, Any]) -> dict[str, Any]:
    """``training`` with file paths reduced to their last component: a model's metadata and card
    say which data and weights it came from, not where they sat on the machine that trained it."""
    out = dict(training)
    if isinstance(out.get("data"), list):
        out["data"] = [PurePath(str(d)).name for d in out["data"]]
    if isinstance(out.get("init_from"), str):
        out["init_from"] = PurePath(out["init_from"]).name
    return out


def resolve_source(source: Any) -> ResolvedSource:
    """Turn any accepted SOURCE into a model plus its description (see :func:`export_onnx`)."""
    from torch import nn

    from srtool.models import deploy

    if isinstance(source, nn.Module):
        model = copy.deepcopy(source).float().cpu().eval()
        scale = getattr(model, "scale", None)
        if not isinstance(scale, int):
            raise ModelError(
                f"{type(source).__name__} has no integer .scale; wrap it or save a checkpoint"
            )
        hparams = getattr(model, "hparams", None)
        in_ch = int((hparams or {}).get("in_channels", 3))
        from srtool.models.checkpoint import tensors_sha256

        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        sha256 = tensors_sha256(state)  # of the weights as given, before any collapse
        deploy(model)
        hparams = getattr(model, "hparams", None)
        return ResolvedSource(
            model=model,
            kind="module",
            label=f"{type(source).__name__} (in-memory module)",
            path=None,
            sha256=sha256,
            arch=str(getattr(model, "arch", type(model).__name__.lower())),
            hparams=dict(hparams) if isinstance(hparams, dict) else None,
            scale=scale,
            in_channels=in_ch,
            out_channels=int((hparams or {}).get("out_channels", in_ch)),
            multiple_of=int(getattr(model, "multiple_of", 1)),
            training=None,
        )

    path = Path(source)
    if not path.exists():
        raise ModelError(f"export source not found: {path}")
    from srtool.models.checkpoint import is_checkpoint, load_checkpoint
    from srtool.train.run import RunDir

    kind = "checkpoint"
    if path.is_dir():
        path, kind = RunDir(path).export_checkpoint(), "run"
        log.info("run folder %s: exporting %s", source, path.name)
    if kind == "run" or (path.suffix.lower() == ".safetensors" and is_checkpoint(path)):
        model, meta = load_checkpoint(path, prefer_ema=True)
        deploy(model)
        return ResolvedSource(
            model=model.float().eval(),
            kind=kind,
            label=str(path),
            path=path,
            sha256=file_digest(path),
            arch=meta["arch"],
            hparams=dict(getattr(model, "hparams", meta["hparams"])),
            scale=int(model.scale),
            in_channels=int(meta["hparams"].get("in_channels", 3)),
            out_channels=int(meta["hparams"].get("out_channels", 3)),
            multiple_of=int(model.multiple_of),
            training=training_summary(meta),
            quantization=meta.get("quantization")
            if isinstance(meta.get("quantization"), dict)
            else None,
        )

    from srtool.models.community import load_community

    found = load_community(path)
    return ResolvedSource(
        model=found.model,
        kind="community",
        label=str(path),
        path=path,
        sha256=file_digest(path),
        arch=found.arch,
        hparams=found.hparams,
        scale=found.scale,
        in_channels=found.in_channels,
        out_channels=found.out_channels,
        multiple_of=found.multiple_of,
        training={
            "source": "community model file",
            "file": path.name,
            "architecture": found.spandrel_name,
            "tags": found.tags,
            "detected_by": "spandrel",
        },
    )


# -- torch -> onnx ------------------------------------------------------------------------------
