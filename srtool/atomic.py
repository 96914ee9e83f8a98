"""Atomic file writes: a file either appears complete under its name or not at all.

Data goes to a hidden temporary file in the target's folder (same file system, so the final
rename is atomic), is fsynced, then renamed over the target. On any exception, Ctrl-C included,
the temporary file is removed and the target is left as it was. A process killed outright can
leave only a hidden temporary file, which :func:`remove_stale_temporaries` clears on the next
write of the same target.
"""

from __future__ import annotations

import glob
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_output", "atomic_write_bytes", "remove_stale_temporaries"]


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends cleanly, fsync it and rename it
    over ``path``. On any exception (KeyboardInterrupt included) the temporary file is removed and
    ``path`` is left as it was.

    The temporary name is ``.{name}.srtool-tmp-<random>{suffix}``: hidden, so folder walks skip
    it, and it keeps the suffix so tools that pick a format from the name still work. It is in the
    same folder so the final rename is atomic (same file system).
    """
    target = Path(path)
    temp = target.with_name(f".{target.name}.srtool-tmp-{secrets.token_hex(6)}{target.suffix}")
    # O_EXCL: never clobber another writer's temporary file; 0o666 lets the umask decide the mode
    # exactly as for a normal file (mkstemp would leave outputs readable by their owner only).
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    os.close(fd)
    try:
        yield temp
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        try:
            temp.unlink()
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(target.parent)


def remove_stale_temporaries(path: str | os.PathLike[str]) -> int:
    """Delete temporary files that a killed earlier write of ``path`` left behind.

    Only names :func:`atomic_output` makes for this exact target are touched. Returns how many.
    """
    target = Path(path)
    removed = 0
    for stale in target.parent.glob(f".{glob.escape(target.name)}.srtool-tmp-*"):
        try:
            stale.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows it (POSIX)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path) as temp:
        with open(temp, "wb") as handle:
            handle.write(data)
