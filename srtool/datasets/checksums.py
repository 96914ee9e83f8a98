"""Reference checksums of the known datasets and verification of a local copy.

The MD5 lists are package data (``md5/<name>.md5``, one ``"md5  file"`` line per file, as
``md5sum`` writes it): the copies the published bicubic baselines were reproduced on; a copy whose
files differ gives numbers that are not comparable with published tables.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from srtool.datasets.registry import Dataset, get, resolve
from srtool.hashing import file_digest
from srtool.imageio import list_images

log = logging.getLogger("srtool")


@cache
def _md5_table() -> dict[str, dict[str, str]]:
    tables = {}
    for entry in resources.files("srtool.datasets").joinpath("md5").iterdir():
        if entry.name.endswith(".md5"):
            rows = (line.split(None, 1) for line in entry.read_text("utf-8").splitlines() if line)
            tables[entry.name[: -len(".md5")]] = {fname.strip(): md5 for md5, fname in rows}
    return tables


def md5_list(name: str) -> dict[str, str] | None:
    """``{file name: md5}`` of the reference copy of ``name``, or None when none is recorded."""
    return _md5_table().get(get(name).name)


@dataclass(frozen=True)
class VerifyResult:
    """How a local copy compares with the reference file list.

    When the dataset has a reference list, the copy must be exactly it: the same image names
    with the same MD5s, none missing and no other image. Extra images count as a difference
    because evaluation and training read every image in the folder, so one more file changes
    the set that is scored. Files that are not images of the dataset (a README, ``Thumbs.db``)
    are ignored, as everything else ignores them.
    """

    name: str
    folder: Path
    files: int
    reference: bool  # a reference md5 list exists for this dataset
    mismatched: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reference and not self.mismatched and not self.missing and not self.extra

    def summary(self) -> str:
        if not self.reference:
            return f"{self.files} files; no reference checksums for this dataset"
        if self.ok:
            return f"{self.files} files; all match the reference checksums"
        parts = []
        if self.mismatched:
            parts.append(f"{len(self.mismatched)} differ ({', '.join(self.mismatched[:5])})")
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({', '.join(self.missing[:5])})")
        if self.extra:
            parts.append(
                f"{len(self.extra)} not in the reference list ({', '.join(self.extra[:5])})"
            )
        return f"{self.files} files; " + "; ".join(parts)


def verify_folder(ds: Dataset, folder: Path) -> VerifyResult:
    """Compare the images of ``ds`` in ``folder`` with the reference list, when one exists."""
    files = list_images(folder, ds.suffixes)
    table = _md5_table().get(ds.name)
    if not table:
        return VerifyResult(ds.name, folder, len(files), reference=False)
    names = {p.name for p in files}
    mismatched = tuple(
        sorted(p.name for p in files if p.name in table and file_digest(p, "md5") != table[p.name])
    )
    missing = tuple(sorted(set(table) - names))
    extra = tuple(sorted(names - set(table)))
    return VerifyResult(ds.name, folder, len(files), True, mismatched, missing, extra)


def verify(name: str, data_root: str | os.PathLike[str] | None = None) -> VerifyResult:
    """Compare the local copy of ``name`` with its reference MD5 list, file by file."""
    ds = get(name)
    return verify_folder(ds, resolve(ds.name, data_root))
