"""Benchmark sets (a registry name or HR/LR folders) and the protocol's pixel steps."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srtool import datasets
from srtool.errors import UsageError
from srtool.imageio import list_images

log = logging.getLogger("srtool")

BASELINES = ("bicubic", "lanczos", "nearest")


@dataclass(frozen=True)
class BenchmarkSet:
    """The HR images of one benchmark (and given LR images, matched by name, if any)."""

    name: str
    folder: Path
    hr: tuple[Path, ...]
    lr: dict[str, Path] | None = None  # HR file name -> LR file
    checksums: str | None = None  # how the copy compares with the reference file list
    comparable: bool | None = None  # True when it is the reference copy


def benchmark_from_name(
    name: str,
    data_root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
) -> BenchmarkSet:
    """A registered benchmark under the data root, checked against its reference checksums.

    With ``download`` a missing benchmark is fetched (and verified) first; without it the
    error says where to put the files and which command downloads them.
    """
    ds = datasets.get(name)
    try:
        folder = datasets.resolve(ds.name, data_root)
    except datasets.DatasetMissingError:
        if not download:
            raise
        log.warning("%s is missing: downloading it", ds.name)
        datasets.fetch(ds.name, data_root)
        folder = datasets.resolve(ds.name, data_root)
    check = datasets.verify(ds.name, data_root)
    return BenchmarkSet(
        name=ds.name,
        folder=folder,
        hr=tuple(list_images(folder, ds.suffixes)),
        checksums=check.summary(),
        comparable=check.ok if check.reference else None,
    )


def benchmark_from_folders(
    hr_dir: str | os.PathLike[str], lr_dir: str | os.PathLike[str] | None = None
) -> BenchmarkSet:
    """Any folder of HR images, optionally with LR images matched by file name (suffixes such
    as ``x4``, ``_LR`` or ``_SRF_4`` tolerated, never by sort order)."""
    hr_path = Path(hr_dir)
    if not hr_path.is_dir():
        raise UsageError(f"--hr {hr_path}: no such folder")
    hr = tuple(list_images(hr_path))
    if not hr:
        raise UsageError(f"--hr {hr_path}: no images found")
    lr_map = None
    if lr_dir is not None:
        lr_path = Path(lr_dir)
        if not lr_path.is_dir():
            raise UsageError(f"--lr {lr_path}: no such folder")
        from srtool.train.patches import match_pairs

        pairs, problems = match_pairs(list(hr), list_images(lr_path))
        for problem in problems:
            log.warning("%s", problem)
        if not pairs:
            raise UsageError(f"no LR image in {lr_path} matches an HR image in {hr_path} by name")
        lr_map = {h.name: lo for h, lo in pairs}
        hr = tuple(h for h in hr if h.name in lr_map)
    return BenchmarkSet(name=hr_path.name, folder=hr_path, hr=hr, lr=lr_map)


def read_u8(path: Path) -> np.ndarray:
    """HxWxC uint8 (C = 3, or 1 for greyscale files); 16-bit rounded to 8, alpha dropped."""
    from srtool.imageio import read_image, to_8bit

    pixels = to_8bit(read_image(path).pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return np.ascontiguousarray(pixels)
