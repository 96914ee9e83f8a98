"""Download, check and install a dataset; an interrupted or corrupt download leaves nothing."""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import secrets
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from srtool.cache import CHUNK, ProgressFn, download
from srtool.datasets.checksums import verify_folder
from srtool.datasets.registry import (
    DOWNLOADS,
    MAX_EXTRACTED_BYTES,
    Dataset,
    DatasetMissingError,
    Source,
    get,
    locate,
    missing_message,
    resolve_root,
)
from srtool.errors import DataError
from srtool.hashing import file_digest
from srtool.imageio import list_images

log = logging.getLogger("srtool")


def _safe_relative(name: str) -> PurePosixPath | None:
    """The member path as a safe relative path, or None when it must not be extracted."""
    norm = name.replace("\\", "/")
    path = PurePosixPath(norm)
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in path.parts:
        return None
    parts = [p for p in path.parts if p not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def _members(archive: Path) -> Iterator[tuple[str, bool, int, Callable[[], IO[bytes]]]]:
    """(name, is_regular_file, size, opener) for every member of a zip or tar archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                mode = (info.external_attr >> 16) & 0o170000
                regular = not info.is_dir() and mode in (0, 0o100000)
                yield info.filename, regular, info.file_size, lambda i=info: zf.open(i)
        return
    try:
        tf = tarfile.open(archive)  # noqa: SIM115 - closed below; generator keeps it open
    except tarfile.TarError as exc:
        raise DataError(f"{archive.name} is neither a zip nor a tar archive ({exc})") from exc
    with tf:
        for info in tf:
            yield info.name, info.isfile(), info.size, lambda i=info: tf.extractfile(i)


def _extract(archive: Path, member: str, staging: Path) -> int:
    """Extract the regular files below ``member`` into ``staging``; returns the file count.

    Any member whose path is absolute or climbs out with ``..`` fails the whole extraction
    (an archive built that way is hostile or broken), and so does a member that needs a folder
    where the archive put a file (or the reverse); links and devices are skipped.
    """
    prefix = _safe_relative(member) if member else None
    total = count = 0
    for name, regular, size, opener in _members(archive):
        rel = _safe_relative(name)
        if rel is None:
            if name.strip("./") == "":
                continue
            raise DataError(f"{archive.name}: refusing unsafe path in archive: {name!r}")
        if not regular:
            continue
        if prefix is not None:
            if rel.parts[: len(prefix.parts)] != prefix.parts:
                continue
            rel = PurePosixPath(*rel.parts[len(prefix.parts) :])
        total += size
        if total > MAX_EXTRACTED_BYTES:
            raise DataError(f"{archive.name}: archive expands beyond {MAX_EXTRACTED_BYTES} bytes")
        target = staging.joinpath(*rel.parts)
        if staging.resolve() not in target.resolve().parents:
            raise DataError(f"{archive.name}: refusing unsafe path in archive: {name!r}")
        clash = next((p for p in target.parents if p.is_relative_to(staging) and p.is_file()), None)
        if clash is not None or target.is_dir():
            where = clash.relative_to(staging) if clash is not None else rel
            raise DataError(
                f"{archive.name}: holds both a file and a folder named {str(where)!r} "
                "(a broken archive; nothing was installed)"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        src = opener()
        if src is None:
            continue
        with src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
        count += 1
    return count


def _find_image_folder(ds: Dataset, staging: Path) -> Path | None:
    """The extracted folder holding the dataset: the one with the most matching images."""
    best, best_n = None, 0
    for folder in [staging, *sorted(p for p in staging.rglob("*") if p.is_dir())]:
        n = len(list_images(folder, ds.suffixes))
        if n > best_n:
            best, best_n = folder, n
    return best


def fetch(
    name: str,
    data_root: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    timeout: float = 60.0,
    progress: ProgressFn | None = None,
) -> Path:
    """Download, verify and install dataset ``name`` under the data root; returns its folder.

    ``url`` replaces the registry's address (a mirror, or a local copy in tests) and ``sha256``
    pins the archive (the registry's own pin applies only to its own URL). Without any pin the
    archive's SHA-256 is logged so it can be pinned next time. An archive already in
    ``<root>/.downloads`` is reused (after the same check when pinned; ``force`` downloads it
    again), so datasets that share one archive download it once.
    """
    ds = get(name)
    root = resolve_root(data_root)
    present = locate(ds, root)
    if present is not None and not force:
        if len(list_images(present, ds.suffixes)) >= ds.count:
            log.info("%s already present in %s", ds.name, present)
            return present
    if url is None and ds.source is None:
        raise DatasetMissingError(missing_message(ds, root))
    source = ds.source if url is None else Source(url, ds.source.member if ds.source else "")
    assert source is not None
    expected = (sha256 or (ds.source.sha256 if url is None and ds.source else None) or "").lower()

    downloads = root / DOWNLOADS
    downloads.mkdir(parents=True, exist_ok=True)
    try:
        return _fetch_into(ds, source, expected, root, downloads, force, timeout, progress)
    except BaseException:
        with contextlib.suppress(OSError):
            downloads.rmdir()  # only when empty: a failed fetch leaves no empty .downloads/
        raise


def _fetch_into(
    ds: Dataset,
    source: Source,
    expected: str,
    root: Path,
    downloads: Path,
    force: bool,
    timeout: float,
    progress: ProgressFn | None,
) -> Path:
    archive_name = Path(urllib.parse.urlparse(source.url).path).name or f"{ds.name}.archive"
    archive = downloads / archive_name
    if archive.is_file() and (force or (expected and file_digest(archive) != expected)):
        archive.unlink()
    if not archive.is_file():
        tmp, got = download(
            source.url, downloads, timeout=timeout, progress=progress, prefix=".part-"
        )
        if expected and got != expected:
            tmp.unlink(missing_ok=True)
            raise DataError(
                f"checksum mismatch for {source.url}: expected sha256 {expected}, got {got}; "
                "the download is corrupt or the file changed upstream (nothing was installed)"
            )
        if not expected:
            log.warning(
                "%s has no pinned checksum; its sha256 is %s (pass --sha256 to pin it)",
                source.url,
                got,
            )
        os.replace(tmp, archive)

    # os.mkdir, not mkdtemp: the folder becomes the dataset, so it gets the umask's permissions
    # (mkdtemp's 0700 would hide a shared data root's datasets from other users)
    staging = root / f".staging-{ds.name}-{secrets.token_hex(6)}"
    staging.mkdir()
    try:
        return _install(ds, archive, source, staging, root)
    except DataError:
        archive.unlink(missing_ok=True)  # damaged or not the dataset: never reuse it
        raise
    except OSError as exc:  # disk full, permissions: the archive may be fine, so it is kept
        raise DataError(
            f"could not install {ds.name} from {archive.name}: {exc} (nothing was installed)"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _install(ds: Dataset, archive: Path, source: Source, staging: Path, root: Path) -> Path:
    """Extract, check the count and reference checksums, then move into place with one rename."""
    damaged = (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError)
    member = source.member
    try:
        n = _extract(archive, member, staging)
    except damaged as exc:
        raise DataError(f"{archive.name} is damaged: {exc} (nothing was installed)") from exc
    if n == 0:
        raise DataError(f"{archive.name} holds no files under '{member}' (nothing was installed)")
    folder = _find_image_folder(ds, staging)
    found = len(list_images(folder, ds.suffixes)) if folder else 0
    if folder is None or found < ds.count:
        raise DataError(
            f"{archive.name} holds {found} {ds.name} images, expected {ds.count} "
            "(nothing was installed)"
        )
    check = verify_folder(ds, folder)
    if check.reference and not check.ok:
        if source.reference or check.mismatched:
            raise DataError(
                f"{ds.name} from {archive.name} fails its reference checksums: "
                f"{check.summary()} (nothing was installed)"
            )
        log.warning(
            "%s from %s is not the reference copy (%s); its file count was checked, and scores "
            "on it are not comparable with published tables",
            ds.name,
            archive.name,
            check.summary(),
        )
    if not check.reference:
        log.info("%s: no reference checksums for this dataset; count checked only", ds.name)
    target = root / ds.folder
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # --force: swap the old copy out, then delete it
        old = Path(tempfile.mkdtemp(prefix=f".old-{ds.name}-", dir=root))
        os.replace(target, old / "data")
        os.replace(folder, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(folder, target)
    return target
