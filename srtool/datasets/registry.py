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
where the dataset has a reference MD5 list, that the images are exactly that list (names and
MD5s, none missing, none extra), and only then moves the folder into place with one rename: an
interrupted, corrupt or substituted download never leaves a half or fake dataset.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from srtool.cache import user_cache_dir
from srtool.errors import DataError
from srtool.imageio import list_images

log = logging.getLogger("srtool")

DOWNLOADS = ".downloads"
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
    file count and, for reference copies, per-file checksums checked). ``reference`` says
    whether the archive holds the copy the dataset's reference MD5 list describes: then (and
    for every ``--url`` mirror) the extracted images must be exactly that list; when not (the
    BSDS300 JPEG originals), the count is checked and a file named as in the list must still
    match its MD5.
    """

    url: str
    member: str = ""
    sha256: str | None = None
    verified: bool = False
    note: str = ""
    reference: bool = True
    size_mb: int | None = None  # the archive's download size, when known


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
    images_mb: float | None = None  # what its images take once installed (the reference copy)

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
            images_mb=0.9,
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
            images_mb=5,
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
            images_mb=27,
            source=Source(
                _EDSR_BENCHMARK,
                "benchmark/B100/HR",
                note="EDSR benchmark.tar; its file names are not known to be the reference "
                "list's img_NNN.png",
                reference=False,
            ),
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
            source=Source(_DIV2K + "DIV2K_valid_HR.zip", "DIV2K_valid_HR", size_mb=449),
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
            source=Source(_DIV2K + "DIV2K_train_HR.zip", "DIV2K_train_HR", size_mb=3530),
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
                reference=False,
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
    return user_cache_dir("data")


def resolve_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit`` (``--data-root``) > ``$SRTOOL_DATA`` > :func:`default_data_root`."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("SRTOOL_DATA")
    if env:
        return Path(env).expanduser()
    return default_data_root()


def locate(ds: Dataset, root: Path) -> Path | None:
    """The first accepted folder under ``root`` that holds images of ``ds``, or None."""
    for rel in ds.candidates:
        folder = root / rel
        if list_images(folder, ds.suffixes):
            return folder
    return None


def download_size(ds: Dataset) -> str:
    """What a download of ``ds`` costs, as far as it is known, for messages and listings."""
    if ds.source is not None and ds.source.size_mb:
        return f"about {ds.source.size_mb:,} MB"
    sharing = [
        d for d in DATASETS.values() if ds.source and d.source and d.source.url == ds.source.url
    ]
    if len(sharing) > 1:
        kinds = "benchmarks" if all(d.kind == "benchmark" for d in sharing) else "datasets"
        size = f"an archive of several {kinds}, download size not recorded"
    else:
        size = "download size not recorded"
    if ds.images_mb:
        size += f"; its images take about {ds.images_mb:g} MB"
    return size


def missing_message(ds: Dataset, root: Path) -> str:
    where = root / ds.folder
    how = f"put its {ds.count} {'/'.join(ds.suffixes)} files in {where}"
    if ds.source is not None:
        size = download_size(ds)
        also = (
            f"; `srtool evaluate --bench {ds.name} --download` does it too"
            if ds.kind == "benchmark"
            else ""
        )
        return (
            f"dataset {ds.name} not found under {root}: run `srtool data fetch {ds.name}` "
            f"(downloads {ds.source.url}, {size}{also}), or {how} "
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
        raise DatasetMissingError(missing_message(ds, root))
    found = len(list_images(folder, ds.suffixes))
    if found < ds.count:
        raise DatasetMissingError(
            f"dataset {ds.name} in {folder} is incomplete: {found} of {ds.count} images; "
            f"run `srtool data fetch {ds.name} --force` or complete the folder"
        )
    if found > ds.count:
        log.warning("%s: %d images in %s, expected %d", ds.name, found, folder, ds.count)
    return folder
