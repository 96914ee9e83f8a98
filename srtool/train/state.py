"""The resume state of a training run (``RunDir.state_path``), written atomically.

It holds plain tensors, dicts, lists, numbers and strings only, and is read with
``weights_only=True``, so loading it runs no code. A crash can leave at most a hidden temporary
file behind, never a truncated state (see :mod:`srtool.atomic`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from srtool.atomic import atomic_output
from srtool.errors import UsageError

__all__ = ["load_state", "save_state"]


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
