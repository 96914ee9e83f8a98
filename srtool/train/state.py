"""The resume state of a training run (``RunDir.state_path``), written atomically and checksummed.

It holds plain tensors, dicts, lists, numbers and strings only, and is read with
``weights_only=True``, so loading it runs no code. A crash can leave at most a hidden temporary
file behind, never a truncated state (see :mod:`srtool.atomic`).

``torch.load`` does not check the CRCs of the zip it reads, so a flipped byte in a tensor record
would load as a silently different optimiser or RNG state. The state therefore carries a SHA-256
of its own content under ``sha256`` (names, types, dtypes, shapes and bytes, in order), computed
before writing and checked after reading; the file stays one plain ``torch.save`` file, written
in one atomic step. A state without the entry (written by an older srtool) loads with a warning.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from srtool.atomic import atomic_output
from srtool.errors import UsageError

__all__ = ["DamagedState", "load_state", "save_state", "state_digest"]

log = logging.getLogger("srtool")

_DIGEST_KEY = "sha256"


class DamagedState(UsageError):
    """The resume state is missing its content, unreadable, or fails its checksum."""


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}|".encode())
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, list | tuple):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}|".encode())
        for value in obj:
            _feed(h, value)
    elif obj is None or isinstance(obj, bool | int | float | str | bytes):
        h.update(f"{type(obj).__name__}:{obj!r}|".encode())
    else:
        h.update(f"{type(obj).__qualname__}:{obj!r}|".encode())


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 over everything in ``state`` except its own ``sha256`` entry."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != _DIGEST_KEY})
    return h.hexdigest()


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the resume state (tensors, dicts, lists, numbers, strings only) atomically, with
    the SHA-256 of its content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {k: v for k, v in state.items() if k != _DIGEST_KEY}
    record[_DIGEST_KEY] = state_digest(record)
    with atomic_output(path) as tmp:
        torch.save(record, tmp)


def load_state(path: Path) -> dict[str, Any]:
    """Read a resume state with ``weights_only=True`` (no code runs) and check its SHA-256.

    Raises :class:`DamagedState` with a one-line reason for an empty, truncated, foreign or
    modified file.
    """
    from srtool.models.pickled import TorchFileError, load_weights_only

    if not path.is_file():
        raise UsageError(f"nothing to resume: {path} does not exist")
    try:
        state = load_weights_only(path)
    except TorchFileError as exc:
        raise DamagedState(f"cannot read training state {path}: {exc}") from None
    if not isinstance(state, dict) or "step" not in state:
        raise DamagedState(f"cannot read training state {path}: it is not an srtool state")
    digest = state.pop(_DIGEST_KEY, None)
    if digest is None:
        log.warning("%s has no checksum (written by an older srtool): not verified", path)
    elif digest != state_digest(state):
        raise DamagedState(
            f"training state {path} fails its SHA-256 check: the file is corrupt or was "
            "modified after it was written"
        )
    return state
