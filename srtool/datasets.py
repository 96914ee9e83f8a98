"""Known datasets: where they live on disk, what they must contain, and how to download them.

Datasets are looked up by name under a **data root**: ``--data-root`` if given, else the
``SRTOOL_DATA`` environment variable, else the platform's cache folder (``~/.cache/srtool/data``
on Linux, ``~/Library/Caches/srtool/data`` on macOS, ``%LOCALAPPDATA%\\srtool\\Cache\\data`` on
Windows). Each dataset has one canonical folder under the root (``Set5``, ``DIV2K/DIV2K_train_HR``)
and accepts the common other layouts (EDSR's ``benchmark/B100/HR``), so a copy a user already
has can be pointed at rather than downloaded again.

``fetch`` downloads an archive with urllib, streams it to a temporary file while hashing it,
checks the pinned SHA-256 when one is known, extracts only regular files and refuses any member
that would land outside the target (absolute paths, ``..``, links), checks the file count and,
where the copy has the reference file names, every file's MD5, and only then moves the folder
into place with one rename: an interrupted or corrupt download never leaves a half dataset.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import IO

from srtool.errors import DataError

__all__ = [
    "DATASETS",
    "IMAGE_SUFFIXES",
    "Dataset",
    "DatasetMissingError",
    "Source",
    "VerifyResult",
    "resolve_root",
    "default_data_root",
    "fetch",
    "get",
    "list_images",
    "locate",
    "md5_list",
    "resolve",
    "verify",
]

log = logging.getLogger("srtool")

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm")
DOWNLOADS = ".downloads"
_CHUNK = 1 << 20
# A guard against archive bombs: no known dataset comes near this once extracted.
MAX_EXTRACTED_BYTES = 64 << 30


class DatasetMissingError(DataError):
    """A named dataset is absent or incomplete: the user has to fetch it or point at it."""

    exit_code = 2


@dataclass(frozen=True)
class Source:
    """Where a dataset can be downloaded from.

    ``member`` is the folder inside the archive holding the images ("" when they are found by
    looking for the folder with the expected number of images). ``sha256`` pins the archive;
    ``verified`` says whether the URL and layout were checked by the project (a URL that was
    not could not be reached from where the registry was written; the download still has its
    file count and, for reference copies, per-file checksums checked).
    """

    url: str
    member: str = ""
    sha256: str | None = None
    verified: bool = False
    note: str = ""


@dataclass(frozen=True)
class Dataset:
    """A registry entry: what the dataset is and what a complete copy looks like."""

    name: str
    kind: str  # "benchmark" | "train" | "valid"
    folder: str  # canonical location under the data root
    count: int
    description: str
    citation: str
    suffixes: tuple[str, ...] = (".png",)
    aliases: tuple[str, ...] = ()
    layouts: tuple[str, ...] = ()  # other accepted locations under the data root
    source: Source | None = None
    manual: str = ""  # how to obtain it when there is no direct download
    licence: str = "research and education"

    @property
    def candidates(self) -> tuple[str, ...]:
        return (self.folder, *self.layouts)


_EDSR_BENCHMARK = "https://cv.snu.ac.kr/research/EDSR/benchmark.tar"
_DIV2K = "http://data.vision.ee.ethz.ch/cvl/DIV2K/"

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            name="Set5",
            kind="benchmark",
            folder="Set5",
            count=5,
            description="5 images (baby, bird, butterfly, head, woman)",
            citation="Bevilacqua et al., BMVC 2012",
            layouts=("Set5/HR", "benchmark/Set5/HR"),
            source=Source(_EDSR_BENCHMARK, "benchmark/Set5/HR", note="EDSR benchmark.tar"),
        ),
        Dataset(
            name="Set14",
            kind="benchmark",
            folder="Set14",
            count=14,
            description="14 images; bridge is greyscale",
            citation="Zeyde et al., Curves and Surfaces 2010",
            layouts=("Set14/HR", "benchmark/Set14/HR"),
            source=Source(_EDSR_BENCHMARK, "benchmark/Set14/HR", note="EDSR benchmark.tar"),
        ),
        Dataset(
            name="BSD100",
            kind="benchmark",
            folder="BSD100",
            count=100,
            description="the 100 BSDS300 test images (480x320 / 320x480)",
            citation="Martin et al., ICCV 2001",
            aliases=("B100", "BSDS100"),
            layouts=("B100", "BSD100/HR", "B100/HR", "benchmark/B100/HR"),
            source=Source(_EDSR_BENCHMARK, "benchmark/B100/HR", note="EDSR benchmark.tar"),
        ),
        Dataset(
            name="Urban100",
            kind="benchmark",
            folder="Urban100",
            count=100,
            description="100 urban scenes with regular structure",
            citation="Huang et al., CVPR 2015",
            layouts=("Urban100/HR", "benchmark/Urban100/HR"),
            source=Source(_EDSR_BENCHMARK, "benchmark/Urban100/HR", note="EDSR benchmark.tar"),
        ),
        Dataset(
            name="Manga109",
            kind="benchmark",
            folder="Manga109",
            count=109,
            description="109 manga volume covers",
            citation="Matsui et al., Multimedia Tools and Applications 2017",
            layouts=("Manga109/HR", "benchmark/Manga109/HR"),
            manual="Manga109 is given out on request at http://www.manga109.org/en/download.html",
            licence="academic use on request",
        ),
        Dataset(
            name="DIV2K-valid",
            kind="benchmark",
            folder="DIV2K/DIV2K_valid_HR",
            count=100,
            description="the 100 DIV2K validation images (2K)",
            citation="Agustsson & Timofte, CVPRW 2017",
            aliases=("DIV2K_valid", "DIV2K_valid_HR", "DIV2K-val"),
            layouts=("DIV2K_valid_HR",),
            source=Source(_DIV2K + "DIV2K_valid_HR.zip", "DIV2K_valid_HR"),
            licence="non-commercial research",
        ),
        Dataset(
            name="DIV2K",
            kind="train",
            folder="DIV2K/DIV2K_train_HR",
            count=800,
            description="the 800 DIV2K training images (2K)",
            citation="Agustsson & Timofte, CVPRW 2017",
            aliases=("DIV2K_train", "DIV2K_train_HR", "DIV2K-train"),
            layouts=("DIV2K_train_HR",),
            source=Source(_DIV2K + "DIV2K_train_HR.zip", "DIV2K_train_HR"),
            licence="non-commercial research",
        ),
        Dataset(
            name="T91",
            kind="train",
            folder="T91",
            count=91,
            description="91 small images, the SRCNN training set",
            citation="Yang et al., IEEE TIP 2010",
            suffixes=(".bmp",),
            aliases=("91-image", "Yang91"),
            source=Source(
                "http://mmlab.ie.cuhk.edu.hk/projects/SRCNN/SRCNN_train.zip", "", note="SRCNN"
            ),
        ),
        Dataset(
            name="BSD200",
            kind="train",
            folder="BSD200",
            count=200,
            description="the 200 BSDS300 training images (481x321); with T91, the '291' set",
            citation="Martin et al., ICCV 2001",
            aliases=("BSDS200",),
            suffixes=(".png", ".jpg"),
            source=Source(
                "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/"
                "BSDS300-images.tgz",
                "BSDS300/images/train",
                note="official BSDS300 archive (JPEG originals, not the PNG reference copy)",
            ),
            licence="non-commercial research",
        ),
        Dataset(
            name="BSDS500_test",
            kind="train",
            folder="BSDS500_test",
            count=200,
            description="the 200 BSDS500 test images (none is in BSD100)",
            citation="Arbelaez et al., TPAMI 2011",
            manual="decode the BSDS500 test JPEGs (BSR_bsds500.tgz, BSR/BSDS500/data/images/test) "
            "to PNG",
            licence="non-commercial research",
        ),
        Dataset(
            name="DIV2K_test_LRx4",
            kind="train",
            folder="DIV2K_test_LRx4",
            count=100,
            description="the official x4 bicubic inputs of the 100 DIV2K test images",
            citation="Agustsson & Timofte, CVPRW 2017",
            manual="the DIV2K test LR x4 images (NTIRE 2017, DIV2K_test_LR_bicubic/X4) as PNG",
            licence="non-commercial research",
        ),
    )
}


# ----------------------------------------------------------------------------- lookup


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def get(name: str) -> Dataset:
    """The registry entry for ``name`` (case, ``-`` and ``_`` do not matter; aliases accepted)."""
    wanted = _key(name)
    for ds in DATASETS.values():
        if wanted in {_key(ds.name), *(_key(a) for a in ds.aliases)}:
            return ds
    known = ", ".join(DATASETS)
    raise DatasetMissingError(f"unknown dataset '{name}'; known datasets: {known}")


def default_data_root() -> Path:
    """The per-user cache folder for datasets, by platform convention."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "srtool" / "Cache" / "data"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "srtool" / "data"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "srtool" / "data"


def resolve_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit`` (``--data-root``) > ``$SRTOOL_DATA`` > :func:`default_data_root`."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("SRTOOL_DATA")
    if env:
        return Path(env).expanduser()
    return default_data_root()


def list_images(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (hidden files ignored)."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    )


def locate(ds: Dataset, root: Path) -> Path | None:
    """The first accepted folder under ``root`` that holds images of ``ds``, or None."""
    for rel in ds.candidates:
        folder = root / rel
        if list_images(folder, ds.suffixes):
            return folder
    return None


def _missing_message(ds: Dataset, root: Path) -> str:
    where = root / ds.folder
    how = f"put its {ds.count} {'/'.join(ds.suffixes)} files in {where}"
    if ds.source is not None:
        return (
            f"dataset {ds.name} not found under {root}: run `srtool data fetch {ds.name}` "
            f"(downloads {ds.source.url}; `srtool evaluate --download` does it too), or {how} "
            "(choose the root with --data-root or SRTOOL_DATA)"
        )
    manual = f" ({ds.manual})" if ds.manual else ""
    return (
        f"dataset {ds.name} not found under {root}: {how}{manual} "
        "(choose the root with --data-root or SRTOOL_DATA)"
    )


def resolve(name: str, data_root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding dataset ``name``'s images; raises :class:`DatasetMissingError` saying
    where to put the files (or which command fetches them) when it is absent or incomplete."""
    ds = get(name)
    root = resolve_root(data_root)
    folder = locate(ds, root)
    if folder is None:
        raise DatasetMissingError(_missing_message(ds, root))
    found = len(list_images(folder, ds.suffixes))
    if found < ds.count:
        raise DatasetMissingError(
            f"dataset {ds.name} in {folder} is incomplete: {found} of {ds.count} images; "
            f"run `srtool data fetch {ds.name} --force` or complete the folder"
        )
    if found > ds.count:
        log.warning("%s: %d images in %s, expected %d", ds.name, found, folder, ds.count)
    return folder


# ----------------------------------------------------------------------------- checksums


@cache
def _md5_table() -> dict[str, dict[str, str]]:
    from srtool.dataset_checksums import MD5_LISTS

    tables = {}
    for name, text in MD5_LISTS.items():
        rows = (line.split(None, 1) for line in text.splitlines() if line.strip())
        tables[name] = {fname.strip(): md5 for md5, fname in rows}
    return tables


def md5_list(name: str) -> dict[str, str] | None:
    """``{file name: md5}`` of the reference copy of ``name``, or None when none is recorded."""
    return _md5_table().get(get(name).name)


def _file_md5(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - integrity against a published list, not security
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    """How a local copy compares with the reference file list."""

    name: str
    folder: Path
    files: int
    reference: bool  # a reference md5 list exists and its file names are the copy's
    mismatched: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reference and not self.mismatched and not self.missing

    def summary(self) -> str:
        if not self.reference:
            return f"{self.files} files; no reference checksums for this copy"
        if self.ok:
            return f"{self.files} files; all match the reference checksums"
        parts = []
        if self.mismatched:
            parts.append(f"{len(self.mismatched)} differ ({', '.join(self.mismatched[:5])})")
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({', '.join(self.missing[:5])})")
        return f"{self.files} files; " + "; ".join(parts)


def _verify_folder(ds: Dataset, folder: Path) -> VerifyResult:
    files = list_images(folder, ds.suffixes)
    table = _md5_table().get(ds.name)
    names = {p.name for p in files}
    if not table or not names & set(table):
        return VerifyResult(ds.name, folder, len(files), reference=False)
    mismatched = tuple(
        sorted(p.name for p in files if p.name in table and _file_md5(p) != table[p.name])
    )
    missing = tuple(sorted(set(table) - names))
    return VerifyResult(ds.name, folder, len(files), True, mismatched, missing)


def verify(name: str, data_root: str | os.PathLike[str] | None = None) -> VerifyResult:
    """Compare the local copy of ``name`` with its reference MD5 list, file by file."""
    ds = get(name)
    return _verify_folder(ds, resolve(ds.name, data_root))


# ----------------------------------------------------------------------------- download

ProgressFn = Callable[[int, int | None], None]


def _download(
    url: str, dest_dir: Path, *, timeout: float, progress: ProgressFn | None
) -> tuple[Path, str, str]:
    """Stream ``url`` into a temporary file in ``dest_dir``; returns (path, sha256, md5)."""
    sha, md5 = hashlib.sha256(), hashlib.md5()  # noqa: S324
    fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "srtool"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                sha.update(chunk)
                md5.update(chunk)
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
    return tmp, sha.hexdigest(), md5.hexdigest()


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
    (an archive built that way is hostile or broken); links and devices are skipped.
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
        target.parent.mkdir(parents=True, exist_ok=True)
        src = opener()
        if src is None:
            continue
        with src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
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
        raise DatasetMissingError(_missing_message(ds, root))
    source = ds.source if url is None else Source(url, ds.source.member if ds.source else "")
    assert source is not None
    expected = (sha256 or (ds.source.sha256 if url is None and ds.source else None) or "").lower()

    downloads = root / DOWNLOADS
    downloads.mkdir(parents=True, exist_ok=True)
    archive_name = Path(urllib.parse.urlparse(source.url).path).name or f"{ds.name}.archive"
    archive = downloads / archive_name
    if archive.is_file() and (force or (expected and _sha256(archive) != expected)):
        archive.unlink()
    if not archive.is_file():
        tmp, got, _ = _download(source.url, downloads, timeout=timeout, progress=progress)
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

    staging = Path(tempfile.mkdtemp(prefix=f".staging-{ds.name}-", dir=root))
    try:
        return _install(ds, archive, source.member, staging, root)
    except DataError:
        archive.unlink(missing_ok=True)  # damaged or not the dataset: never reuse it
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _install(ds: Dataset, archive: Path, member: str, staging: Path, root: Path) -> Path:
    """Extract, check the count and reference checksums, then move into place with one rename."""
    damaged = (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError)
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
    check = _verify_folder(ds, folder)
    if check.reference and (check.mismatched or check.missing):
        raise DataError(
            f"{ds.name} from {archive.name} fails its reference checksums: "
            f"{check.summary()} (nothing was installed)"
        )
    if not check.reference:
        log.info("%s: this copy has no reference checksums; count checked only", ds.name)
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()
