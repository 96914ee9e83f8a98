"""Benchmark sets (a registry name or HR/LR folders) and the protocol's pixel steps."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from srtool import datasets
from srtool.errors import UsageError
from srtool.imageio import list_images

if TYPE_CHECKING:
    from srtool.train.degrade import PracticalParams

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
    degradation: str = "bicubic"  # how LR images are made when none are given (make_lr)


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


# ----------------------------------------------------------------------------- making LR


def realistic_seed(name: str) -> int:
    """The seed of an image's 'realistic' degradation: from its file name only, so the same
    image gets the same LR in every run, on every machine, in any benchmark order."""
    digest = hashlib.sha256(f"srtool-realistic-v1:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def realistic_params(name: str) -> PracticalParams:
    """Every random choice of image ``name``'s 'realistic' degradation: the training code's
    practical degradation with Real-ESRGAN's ranges, always second order, drawn from
    :func:`realistic_seed`. The settings are spelled out here, not taken from the training
    defaults, so the benchmark does not move when a recipe default does."""
    from srtool.train.config import DegradationConfig
    from srtool.train.degrade import sample_practical

    cfg = DegradationConfig(
        kind="practical",
        blur_prob=1.0,
        blur_sigma_range=(0.2, 3.0),
        resize_range=(0.15, 1.5),
        noise_prob=1.0,
        gaussian_noise_range=(1.0, 30.0),
        poisson_prob=0.5,
        gray_noise_prob=0.4,
        jpeg_prob=1.0,
        jpeg_range=(30, 95),
        second_order_prob=1.0,
    )
    return sample_practical(np.random.default_rng(realistic_seed(name)), cfg)


def realistic_lr(hr: np.ndarray, scale: int, name: str) -> np.ndarray:
    """uint8 LR from uint8 ``hr`` (a multiple of ``scale``) by :func:`realistic_params`."""
    from srtool.train.degrade import apply_practical

    lr = apply_practical(hr.astype(np.float32) / 255.0, realistic_params(name), scale)
    return np.clip(np.rint(lr * 255.0), 0, 255).astype(np.uint8)


def make_lr(hr: np.ndarray, scale: int, name: str, degradation: str = "bicubic") -> np.ndarray:
    """The LR image the protocol makes from (mod-cropped) ``hr``: MATLAB bicubic, or the
    seeded 'realistic' degradation of image file ``name``."""
    from srtool.resize import imresize

    if degradation == "bicubic":
        return imresize(hr, 1.0 / scale)
    if degradation == "realistic":
        return realistic_lr(hr, scale, name)
    raise UsageError(f"unknown degradation {degradation!r}: choose bicubic or realistic")
