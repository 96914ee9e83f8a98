"""srtool's per-user cache (datasets, converted models, metric weights) and the one way files get
into it from the network: streamed to a temporary file beside their destination while hashed, so
a checksum can be verified before anything is installed."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from srtool.errors import DataError

__all__ = ["CHUNK", "ProgressFn", "download", "user_cache_dir"]

CHUNK = 1 << 20
#: ``progress(bytes_done, bytes_total_or_None)``
ProgressFn = Callable[[int, int | None], None]


def user_cache_dir(kind: str) -> Path:
    """``<platform cache folder>/srtool/<kind>``: ``~/.cache/srtool/<kind>`` on Linux (honouring
    ``XDG_CACHE_HOME``), ``~/Library/Caches/srtool/<kind>`` on macOS,
    ``%LOCALAPPDATA%\\srtool\\Cache\\<kind>`` on Windows."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "srtool" / "Cache" / kind
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "srtool" / kind
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "srtool" / kind


def download(
    url: str,
    dest_dir: Path,
    *,
    timeout: float,
    progress: ProgressFn | None = None,
    prefix: str = ".download-",
    suffix: str = "",
) -> tuple[Path, str]:
    """Stream ``url`` into a hidden temporary file in ``dest_dir``; returns (path, sha256).

    A short or failed download removes the file and raises :class:`DataError`; the caller
    verifies the hash and renames (or removes) the file.
    """
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "srtool"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if total is not None and done != total:
            raise DataError(f"download of {url} stopped after {done} of {total} bytes")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"could not download {url}: {reason}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest()
