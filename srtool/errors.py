"""Exceptions raised by srtool's library code; the CLI turns each into one line and an exit code."""

from __future__ import annotations

__all__ = [
    "SrtoolError",
    "UsageError",
    "ModelError",
    "ImageReadError",
    "ImageWriteError",
    "DeviceError",
    "OutOfMemoryError",
    "DataError",
    "first_line",
    "missing_module",
    "require_train_extra",
    "TRAIN_EXTRA_INSTALL",
]


class SrtoolError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with when this error ends a command."""

    exit_code = 1


class UsageError(SrtoolError):
    """The user asked for something impossible: missing path, bad flag value, conflicting flags."""

    exit_code = 2


class ModelError(UsageError):
    """A model file is missing, unreadable, or does not follow the model contract."""


class DeviceError(UsageError):
    """The requested execution device is not available."""


class ImageReadError(SrtoolError):
    """An input image could not be decoded (corrupt, truncated, unsupported, too large)."""


class ImageWriteError(SrtoolError):
    """An output image could not be encoded or written."""


class OutOfMemoryError(SrtoolError):
    """The inference backend ran out of memory for one call (the caller may retry smaller)."""


class DataError(SrtoolError):
    """A dataset is missing, incomplete or fails its checksum."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of ``exc``'s message, white space folded, at most ``limit``
    characters; the exception's type name when it has no message. For one-line user errors
    built from third-party exceptions, whose messages can run to pages."""
    for line in str(exc).splitlines():
        text = " ".join(line.split())
        if text:
            return text[:limit]
    return type(exc).__name__


TRAIN_EXTRA_INSTALL = 'pip install "srtool[train]"'


def missing_module(name: str) -> bool:
    """True when ``name`` cannot be imported (not installed, or blocked in ``sys.modules``)."""
    import importlib.util
    import sys

    if name in sys.modules:
        return sys.modules[name] is None
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def require_train_extra(what: str, hint: str = "") -> None:
    """Raise a one-line :class:`UsageError` (exit 2) when PyTorch, which ``what`` needs, is
    missing: it names the install command (and ``hint``, another way, when given)."""
    if missing_module("torch"):
        extra = f" ({hint})" if hint else ""
        raise UsageError(f"{what} needs PyTorch: {TRAIN_EXTRA_INSTALL}{extra}")
