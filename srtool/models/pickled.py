"""Reading PyTorch pickle files (``.pth``, ``.pt``, the resume state) without running code.

Every such read goes through :func:`load_weights_only`: ``torch.load(weights_only=True)``, whose
allow-list unpickler builds tensors and plain containers and refuses every other global, with its
failures turned into one clean line. torch's own refusal is a page of advice ("Re-running
``torch.load`` with ``weights_only`` set to ``False`` will likely succeed...", terminal colour
codes included) that must not reach a user holding a possibly malicious file; what matters is
that the file was refused, that nothing ran, and which global it asked for.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

from srtool.errors import ModelError, first_line

__all__ = ["PickleRefused", "TorchFileError", "load_weights_only", "refusal_reason"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_GLOBAL = re.compile(r"GLOBAL\s+([A-Za-z_][\w.]*)")
_OPCODE = re.compile(r"Unsupported operand (\d+)")
# torch's boilerplate around the one line that says what was refused
_ADVICE = (
    "weights only load failed",
    "in pytorch",
    "re-running",
    "this file can still be loaded",
    "(1)",
    "(2)",
    "please file an issue",
    "check the documentation",
    "please use `torch.serialization",
)


class TorchFileError(ModelError):
    """A PyTorch file that cannot be read (empty, truncated, not a PyTorch file); the message
    is one line without the file name, for the caller to prefix."""


class PickleRefused(TorchFileError):
    """The pickle asks for something other than tensors and plain containers: it was refused
    and nothing in it ran."""


def refusal_reason(exc: BaseException) -> str:
    """One clean line for torch's weights-only refusal ``exc``: the global it asked for when
    torch names one, else the pickle instruction, else torch's own reason without its advice."""
    text = _ANSI.sub("", str(exc))
    found = _GLOBAL.search(text)
    if found:
        return f"it calls the Python global {found.group(1)}, which a weights file never needs"
    found = _OPCODE.search(text)
    if found:
        return f"it uses pickle instruction {found.group(1)}, which weights-only loading refuses"
    for line in text.splitlines():
        line = " ".join(line.replace("WeightsUnpickler error:", "").split())
        if line and not line.lower().startswith(_ADVICE):
            return line[:200]
    return "it holds more than tensors"


def load_weights_only(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``: no code in the file runs.

    Raises :class:`PickleRefused` when the pickle needs anything else (naming the global it
    asked for when torch reports it) and :class:`TorchFileError` for an empty, truncated or
    foreign file, both with a one-line message.
    """
    import torch

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
        if not head:
            raise TorchFileError("the file is empty (0 bytes)")
        if head.startswith(b"PK") and not zipfile.is_zipfile(path):  # the directory is at the end
            raise TorchFileError("the file is truncated (its zip directory is missing)")
    except OSError as exc:
        raise TorchFileError(f"cannot read it ({exc.strerror or exc})") from None
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4 ..." is torch's concern
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            raise PickleRefused(
                f"refused to load: {refusal_reason(exc)} (nothing in the file was run; only "
                "weights-only files are accepted)"
            ) from None
        raise TorchFileError(f"damaged pickle ({first_line(exc, 200)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, KeyError) as exc:
        reason = _ANSI.sub("", first_line(exc, 200))
        if "central directory" in reason or isinstance(exc, EOFError):
            raise TorchFileError("the file is truncated or not a PyTorch file") from None
        if isinstance(exc, KeyError):  # torch's legacy reader on a file of another kind
            raise TorchFileError("not a PyTorch file") from None
        raise TorchFileError(f"not a readable PyTorch file ({reason.split('. ')[0]})") from None
