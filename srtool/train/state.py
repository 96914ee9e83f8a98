"""Run-folder files written atomically: training state for ``--resume`` and weight checkpoints.

Layout of a run folder::

    recipe.toml                  the fully resolved recipe
    metrics.jsonl, metrics.csv   one row per log interval / validation
    curves.png                   losses and validation PSNR over steps
    checkpoints/step_0005000.safetensors   weights (raw + EMA) + JSON metadata (keep_last kept)
    checkpoints/best.safetensors           best validation score so far
    checkpoints/last.state.pt              everything --resume needs (plain tensors and dicts)

A crash can leave at most a hidden temporary file behind, never a truncated checkpoint: every
file is written through :mod:`srtool.atomic` (beside its final name, fsynced, renamed).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from srtool.atomic import atomic_output
from srtool.errors import UsageError

__all__ = ["STATE_NAME", "save_state", "load_state", "save_weights", "prune_checkpoints"]

STATE_NAME = "last.state.pt"
_STEP_FILE = re.compile(r"step_(\d+)\.safetensors$")


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the resume state (tensors, dicts, lists, numbers, strings only) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict[str, Any]:
    """Read a resume state with ``weights_only=True``: no code runs while loading it."""
    if not path.is_file():
        raise UsageError(f"nothing to resume: {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged state is one user-facing error
        raise UsageError(f"cannot read training state {path}: {exc}") from None


def save_weights(
    path: Path, model: torch.nn.Module, ema: torch.nn.Module | None, meta: dict[str, Any]
) -> Path:
    """A self-describing safetensors checkpoint (raw weights, plus EMA ones when kept), written
    atomically by ``srtool.models.checkpoint.save_checkpoint``; loaders prefer the EMA."""
    from srtool.models.checkpoint import save_checkpoint

    return save_checkpoint(path, model, meta=meta, ema=ema)


def prune_checkpoints(folder: Path, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest ``step_*.safetensors``; returns what was removed."""
    found = ((_STEP_FILE.match(p.name), p) for p in folder.glob("step_*.safetensors"))
    steps = sorted((int(m.group(1)), p) for m, p in found if m)
    removed = [p for _, p in steps[: max(0, len(steps) - keep_last)]]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed
