"""Atomic file writes: a file either appears complete under its name or not at all.

Data goes to a hidden temporary file in the target's folder (same file system, so the final
rename is atomic), is fsynced, then renamed over the target. On any exception, Ctrl-C included,
the temporary file is removed and the target is left as it was. A process killed outright can
leave only a hidden temporary file, which :func:`remove_stale_temporaries` clears later.

A writer holds an exclusive ``flock`` on its temporary file until the rename, so that clearing
leftovers never removes the temporary file of another live process writing the same target (two
runs into one folder). Where ``fcntl`` is missing (Windows), or the file system refuses locks,
only temporary files older than :data:`STALE_AGE_SECONDS` count as leftovers.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "STALE_AGE_SECONDS",
    "atomic_output",
    "atomic_write_bytes",
    "remove_stale_temporaries",
    "temporary_prefix",
]

STALE_AGE_SECONDS = 15 * 60
"""Where a temporary file cannot be locked, it is a leftover only when older than this."""

_MARK = ".srtool-tmp-"
_RANDOM_CHARS = 12  # secrets.token_hex(6)
_MAX_SUFFIX_BYTES = 16
_BUSY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)


def _name_max(folder: Path) -> int:
    try:
        return min(os.pathconf(folder, "PC_NAME_MAX"), 255)
    except (OSError, ValueError, AttributeError):  # no pathconf, or the folder is missing
        return 255


def _temp_suffix(target: Path) -> str:
    suffix = target.suffix
    return suffix if len(os.fsencode(suffix)) <= _MAX_SUFFIX_BYTES else ""


def temporary_prefix(path: str | os.PathLike[str]) -> str:
    """The start of every temporary file name :func:`atomic_output` uses for ``path``.

    ``.{name}.srtool-tmp-``, or, when the whole temporary name would not fit in the file system's
    name limit (NAME_MAX, 255 bytes), ``.{start of name}~{hash of name}.srtool-tmp-``: a target
    whose own name is legal always gets a legal temporary name.
    """
    target = Path(path)
    name = target.name
    fixed = len(os.fsencode(f".{_MARK}{'0' * _RANDOM_CHARS}{_temp_suffix(target)}"))
    limit = _name_max(target.parent)
    if len(os.fsencode(name)) + fixed <= limit:
        return f".{name}{_MARK}"
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    budget = max(limit - fixed - 1 - len(digest), 0)
    head = name
    while len(os.fsencode(head)) > budget:
        head = head[:-1]
    return f".{head}~{digest}{_MARK}"


def _lock(fd: int) -> bool:
    """Take the exclusive lock a writer holds on its temporary file; False when another process
    holds it (one clearing leftovers), True when taken or when the file system has no locks."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno not in _BUSY  # no locks on this file system: stale files go by age
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        mine, there = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _create_temporary(target: Path) -> tuple[Path, int | None]:
    """A new temporary file for ``target`` and the open, locked descriptor that keeps it ours
    (None where there are no locks: on Windows an open file could not be renamed)."""
    prefix, suffix = temporary_prefix(target), _temp_suffix(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = target.with_name(f"{prefix}{secrets.token_hex(_RANDOM_CHARS // 2)}{suffix}")
        # O_EXCL: never clobber another writer's temporary file; 0o666 lets the umask decide the
        # mode exactly as for a normal file (mkstemp would leave outputs readable by their owner
        # only).
        fd = os.open(temp, flags, 0o666)
        if fcntl is None:
            os.close(fd)
            return temp, None
        # Between the create and the lock another process clearing leftovers could have taken
        # this (still unlocked) file for stale and removed it: then start again.
        if _lock(fd) and _same_file(fd, temp):
            return temp, fd
        os.close(fd)


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends cleanly, fsync it and rename it
    over ``path``. On any exception (KeyboardInterrupt included) the temporary file is removed and
    ``path`` is left as it was.

    The temporary name is ``.{name}.srtool-tmp-<random>{suffix}`` (see :func:`temporary_prefix`
    for long names): hidden, so folder walks skip it, and it keeps the suffix so tools that pick a
    format from the name still work. It is in the same folder so the final rename is atomic (same
    file system). The block must write the file in place (open it by name), not replace it: the
    writer's lock is on that file.
    """
    target = Path(path)
    temp, fd = _create_temporary(target)
    try:
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
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock, after the rename
    _fsync_folder(target.parent)


def _remove_if_leftover(path: Path, now: float) -> bool:
    """Remove ``path`` when it is a temporary file that no live writer holds."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # gone, a link, or not ours to read: leave it
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in _BUSY:  # a live writer holds it
                    return False
            else:  # nobody writes it; remove it while holding the lock
                if not _same_file(fd, path):
                    return False
                path.unlink()
                return True
        if now - info.st_mtime <= STALE_AGE_SECONDS:  # no locks here: only an old file is stale
            return False
    except OSError:
        return False
    finally:
        os.close(fd)
    try:
        path.unlink()  # (closed first: Windows cannot remove an open file)
    except OSError:
        return False
    return True


def remove_stale_temporaries(path: str | os.PathLike[str]) -> int:
    """Delete temporary files that a killed earlier write of ``path`` left behind.

    Only names :func:`atomic_output` makes for this exact target are touched, and only files no
    live writer holds (see the module's notes). Returns how many were removed.
    """
    target = Path(path)
    now = time.time()
    pattern = f"{glob.escape(temporary_prefix(target))}*"
    return sum(_remove_if_leftover(stale, now) for stale in target.parent.glob(pattern))


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
