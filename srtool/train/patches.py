"""Training data: decode once into memory, then cut random patches with no per-step disk I/O.

Two kinds of source folder:

* an **HR folder** (images only): LR is made from HR. Deterministic degradations (``bicubic``,
  ``gaussian``) are computed once per whole image at load time, exactly as the evaluation
  protocol makes its LR; ``practical`` degradations are drawn per patch.
* a **paired folder**: a folder with an ``HR`` (or ``GT``) sub-folder and an LR sub-folder named
  ``LR``, ``LQ``, ``X4``, ``LRx4``, ``LR_x4`` or ``LR_bicubic/X4`` (for scale 4; case does not
  matter). Files are matched by name, tolerating suffixes such as ``x4``, ``_LR``/``_HR`` and
  ``_SRF_4``, never by sort order; a pair whose sizes do not agree with the scale is reported and
  skipped.

Which patch a training step sees is a pure function of ``(seed, step)``: the
:class:`PatchSampler` walks a seeded permutation of the images per epoch and gives every patch
its own seed, so crops, flips and degradations are the same with any number of DataLoader
workers or DDP ranks, and a resumed run sees exactly the data the uninterrupted one would have.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from srtool.errors import DataError, ImageReadError
from srtool.imageio import list_images, read_image, to_8bit
from srtool.resize import modcrop
from srtool.train import degrade

if TYPE_CHECKING:
    import torch

    from srtool.train.config import DegradationConfig

__all__ = [
    "ImagePair",
    "DataSummary",
    "pair_key",
    "match_pairs",
    "find_pair_dirs",
    "resolve_source",
    "read_rgb8",
    "load_pairs",
    "split_validation",
    "make_validation",
    "PatchDataset",
    "PatchSampler",
    "patchable",
    "worker_init",
]

log = logging.getLogger("srtool")


@dataclass(frozen=True)
class ImagePair:
    """One decoded training image. ``hr`` is uint8 HxWx3 cropped to a multiple of the scale;
    ``lr`` is its uint8 LR, or ``None`` when LR is drawn per patch (practical degradation).
    ``file`` is the HR file's name (what seeds a 'realistic' validation LR); ``paired`` says the LR
    was read from a file rather than made."""

    name: str
    hr: np.ndarray
    lr: np.ndarray | None
    file: str = ""
    paired: bool = False


@dataclass
class DataSummary:
    """What was loaded and what was left out, for the run log and the user."""

    sources: list[str] = field(default_factory=list)
    images: int = 0
    paired: int = 0
    skipped: list[str] = field(default_factory=list)
    cache_mb: float = 0.0


# --------------------------------------------------------------------------- files and names

_SUFFIX = re.compile(
    r"[_\-. ]?(?:x\d+|srf_?\d+|lrx?\d*|hrx?\d*|lq|gt|bicubic)$", flags=re.IGNORECASE
)


def pair_key(stem: str) -> str:
    """File stem with scale/role suffixes removed: ``0001x4`` and ``img_001_SRF_4_LR`` give
    ``0001`` and ``img_001``; the key of a stem with no such suffix is the stem itself."""
    key = stem.lower()
    while True:
        shorter = _SUFFIX.sub("", key)
        if shorter == key or not shorter:
            return key
        key = shorter


def match_pairs(
    hr_files: Sequence[Path], lr_files: Sequence[Path]
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Match HR and LR files by :func:`pair_key`. Returns the pairs (in HR name order) and a
    list of problems (unmatched or ambiguous files), which the caller reports."""
    problems: list[str] = []

    def index(files: Sequence[Path], role: str) -> dict[str, Path]:
        out: dict[str, Path] = {}
        clashes: dict[str, list[str]] = {}
        for f in files:
            key = pair_key(f.stem)
            if key in out:
                clashes.setdefault(key, [out[key].name]).append(f.name)
            else:
                out[key] = f
        for key, names in clashes.items():
            problems.append(f"{role} files {', '.join(names)} share the name key {key!r}")
            del out[key]
        return out

    hr_by, lr_by = index(hr_files, "HR"), index(lr_files, "LR")
    pairs = [(hr_by[k], lr_by[k]) for k in sorted(hr_by) if k in lr_by]
    problems += [f"{hr_by[k].name}: no LR file matches" for k in sorted(set(hr_by) - set(lr_by))]
    problems += [f"{lr_by[k].name}: no HR file matches" for k in sorted(set(lr_by) - set(hr_by))]
    return pairs, problems


def find_pair_dirs(folder: Path, scale: int) -> tuple[Path, Path] | None:
    """``(hr_dir, lr_dir)`` when ``folder`` has the paired layout, else ``None``."""
    subdirs = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    hr = subdirs.get("hr") or subdirs.get("gt")
    if hr is None:
        return None
    for name in ("lr", "lq", f"x{scale}", f"lrx{scale}", f"lr_x{scale}"):
        if name in subdirs:
            return hr, subdirs[name]
    if "lr_bicubic" in subdirs:
        inner = {p.name.lower(): p for p in subdirs["lr_bicubic"].iterdir() if p.is_dir()}
        if f"x{scale}" in inner:
            return hr, inner[f"x{scale}"]
    return None


def resolve_source(spec: str, data_root: str | Path | None = None) -> Path:
    """A ``--data`` value: an existing folder, or a dataset name for ``srtool.datasets``."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise DataError(f"{spec}: not a folder (give a folder of images or a dataset name)")
    looks_like_name = "/" not in spec and "\\" not in spec and not spec.startswith(".")
    if looks_like_name:
        try:
            from srtool.datasets import resolve
        except ImportError:
            resolve = None
        if resolve is not None:
            return Path(resolve(spec, data_root))
    raise DataError(f"{spec}: no such folder")


def read_rgb8(path: Path) -> np.ndarray:
    """Decode an image to uint8 HxWx3 RGB (grey is replicated, alpha dropped, 16-bit rounded)."""
    pixels = to_8bit(read_image(path).pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels[..., :3], dtype=np.uint8)


# --------------------------------------------------------------------------- loading


def _deterministic_lr(hr: np.ndarray, scale: int, cfg: DegradationConfig) -> np.ndarray | None:
    if cfg.kind == "bicubic":
        return degrade.bicubic(hr, scale)
    if cfg.kind == "gaussian":
        return degrade.gaussian_decimate(hr, scale, cfg.blur_sigma)
    return None


def load_pairs(
    folders: Sequence[Path],
    *,
    scale: int,
    degradation: DegradationConfig,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[ImagePair], DataSummary]:
    """Decode every image of ``folders`` once (threads), make deterministic LR, and report."""
    summary = DataSummary(sources=[str(f) for f in folders])
    jobs: list[tuple[str, Path, Path | None]] = []
    for folder in folders:
        dirs = find_pair_dirs(folder, scale)
        if dirs is not None:
            pairs, problems = match_pairs(list_images(dirs[0]), list_images(dirs[1]))
            summary.skipped += [f"{folder.name}: {p}" for p in problems]
            jobs += [(f"{folder.name}/{hr.stem}", hr, lr) for hr, lr in pairs]
            continue
        files = list_images(folder)
        if not files:
            raise DataError(
                f"{folder}: no images found (expected image files, or HR/ and LR/ sub-folders)"
            )
        jobs += [(f"{folder.name}/{f.stem}", f, None) for f in files]

    def load(job: tuple[str, Path, Path | None]) -> ImagePair | str:
        name, hr_path, lr_path = job
        try:
            hr = read_rgb8(hr_path)
            if lr_path is not None:
                lr = read_rgb8(lr_path)
                (h, w), (H, W) = lr.shape[:2], hr.shape[:2]
                if H // scale != h or W // scale != w:
                    return (
                        f"{name}: HR {W}x{H} does not match LR {w}x{h} at scale {scale} "
                        f"(expected LR {W // scale}x{H // scale})"
                    )
                hr = np.ascontiguousarray(hr[: h * scale, : w * scale])
                return ImagePair(name, hr, lr, hr_path.name, True)
            hr = np.ascontiguousarray(modcrop(hr, scale))
            if min(hr.shape[:2]) < scale:
                return f"{name}: smaller than the scale"
            return ImagePair(name, hr, _deterministic_lr(hr, scale, degradation), hr_path.name)
        except ImageReadError as exc:
            return f"{name}: {exc}"

    out: list[ImagePair] = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i, result in enumerate(pool.map(load, jobs)):
            if isinstance(result, str):
                summary.skipped.append(result)
            else:
                out.append(result)
            if progress is not None:
                progress(i + 1, len(jobs))
    for line in summary.skipped:
        log.warning("skipped %s", line)
    summary.images = len(out)
    summary.paired = sum(1 for j in jobs if j[2] is not None)
    nbytes = sum(p.hr.nbytes + (p.lr.nbytes if p.lr is not None else 0) for p in out)
    summary.cache_mb = nbytes / 2**20
    return out, summary


def split_validation(
    pairs: list[ImagePair], count: int, seed: int
) -> tuple[list[ImagePair], list[ImagePair]]:
    """Hold out ``count`` images (a seeded choice) for validation: ``(train, val)``."""
    if count <= 0 or len(pairs) < 2:
        return pairs, []
    count = min(count, len(pairs) // 2)
    chosen = set(np.random.default_rng([seed, 1]).choice(len(pairs), count, replace=False).tolist())
    train = [p for i, p in enumerate(pairs) if i not in chosen]
    val = [p for i, p in enumerate(pairs) if i in chosen]
    return train, val


def make_validation(
    pairs: Sequence[ImagePair],
    *,
    scale: int,
    degradation: DegradationConfig,
    crop: int,
    seed: int,
    realistic: bool = False,
) -> list[ImagePair]:
    """Validation pairs with a fixed LR each: centre-cropped to ``crop`` HR px (0: whole image),
    practical degradations drawn once from a per-image seed so every validation is comparable.
    With ``realistic``, LR images not read from files are made as ``srtool evaluate
    --degradation realistic`` makes them (seeded by the file name), before the crop."""
    from srtool.evaluate.benchmarks import realistic_lr

    out = []
    for i, p in enumerate(pairs):
        hr, lr = p.hr, p.lr
        if realistic and not p.paired:
            lr = realistic_lr(hr, scale, p.file or p.name)
        if crop > 0:
            c = max(scale, crop - crop % scale) // scale
            lh, lw = hr.shape[0] // scale, hr.shape[1] // scale
            y, x = max(0, (lh - c) // 2), max(0, (lw - c) // 2)
            hr = hr[y * scale : (y + c) * scale, x * scale : (x + c) * scale]
            lr = lr[y : y + c, x : x + c] if lr is not None else None
        if lr is None:
            params = degrade.sample_practical(np.random.default_rng([seed, 2, i]), degradation)
            lr_f = degrade.apply_practical(hr.astype(np.float32) / 255.0, params, scale)
            lr = np.clip(np.rint(lr_f * 255.0), 0, 255).astype(np.uint8)
        out.append(
            ImagePair(p.name, np.ascontiguousarray(hr), np.ascontiguousarray(lr), p.file, p.paired)
        )
    return out


# --------------------------------------------------------------------------- patches


def _augment(arrays: list[np.ndarray], rng: np.random.Generator, flip: bool, rot: bool):
    hflip = flip and rng.random() < 0.5
    vflip = flip and rng.random() < 0.5
    transpose = rot and rng.random() < 0.5
    out = []
    for a in arrays:
        if hflip:
            a = a[:, ::-1]
        if vflip:
            a = a[::-1]
        if transpose:  # with the flips this reaches all eight 90-degree rotations/reflections
            a = a.transpose(1, 0, 2)
        out.append(a)
    return out


class PatchDataset:
    """Indexable by ``(image_index, patch_seed)`` (what :class:`PatchSampler` yields); returns
    ``(lr, hr)`` float32 CHW tensors in [0, 1]. A torch ``Dataset`` by duck typing, so this module
    imports torch only when a patch is made."""

    def __init__(
        self,
        pairs: Sequence[ImagePair],
        *,
        scale: int,
        patch_size: int,
        degradation: DegradationConfig,
        flip: bool = True,
        rot90: bool = True,
    ) -> None:
        if patch_size % scale:
            raise DataError(f"patch size {patch_size} is not a multiple of scale {scale}")
        self.pairs = list(pairs)
        self.scale = scale
        self.patch_size = patch_size
        self.degradation = degradation
        self.flip, self.rot90 = flip, rot90

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        index, seed = key
        pair = self.pairs[index]
        rng = np.random.default_rng(seed)
        s, lp = self.scale, self.patch_size // self.scale
        lh, lw = pair.hr.shape[0] // s, pair.hr.shape[1] // s
        y, x = int(rng.integers(0, lh - lp + 1)), int(rng.integers(0, lw - lp + 1))
        hr = pair.hr[y * s : (y + lp) * s, x * s : (x + lp) * s]
        if pair.lr is not None:
            lr = pair.lr[y : y + lp, x : x + lp]
            lr, hr = _augment([lr, hr], rng, self.flip, self.rot90)
            lr_f = lr.astype(np.float32) / 255.0
        else:
            (hr,) = _augment([hr], rng, self.flip, self.rot90)
            params = degrade.sample_practical(rng, self.degradation)
            lr_f = degrade.apply_practical(hr.astype(np.float32) / 255.0, params, s)
        hr_f = hr.astype(np.float32) / 255.0
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))  # noqa: E731
        return to_t(lr_f), to_t(hr_f)


class PatchSampler:
    """Infinite batch sampler: batch ``step`` of rank ``rank`` as ``[(image_index, seed), ...]``.

    The global stream position ``p`` (``batch_size`` patches per step summed over ranks) maps to
    image ``perm_e[p % n]`` of the seeded permutation of epoch ``e = p // n`` and to the patch seed
    ``(seed, p)``. Rank ``r`` takes the ``r``-th slice of each global batch, so the ranks together
    see exactly what one process with the global batch sees (DistributedSampler's disjoint
    sharding, plus exact resumption from any step).
    """

    def __init__(
        self,
        num_images: int,
        *,
        global_batch: int,
        seed: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_images < 1:
            raise DataError("no training images")
        if global_batch % world_size:
            raise DataError(
                f"batch size {global_batch} is not divisible by the {world_size} processes"
            )
        self.n, self.global_batch, self.seed = num_images, global_batch, seed
        self.start_step, self.rank, self.world = start_step, rank, world_size
        self.local = global_batch // world_size
        self._perms: dict[int, np.ndarray] = {}

    def _image(self, position: int) -> int:
        epoch = position // self.n
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, 0, epoch]).permutation(self.n)}
        return int(self._perms[epoch][position % self.n])

    def batch(self, step: int) -> list[tuple[int, int]]:
        first = step * self.global_batch + self.rank * self.local
        out = []
        for p in range(first, first + self.local):
            patch_seed = int(np.random.SeedSequence([self.seed, 3, p]).generate_state(1)[0])
            out.append((self._image(p), patch_seed))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


def patchable(
    pairs: Sequence[ImagePair], patch_size: int, summary: DataSummary | None = None
) -> list[ImagePair]:
    """Pairs large enough for one ``patch_size`` HR patch; the others are reported as skipped."""
    out = []
    for p in pairs:
        if min(p.hr.shape[:2]) >= patch_size:
            out.append(p)
        elif summary is not None:
            h, w = p.hr.shape[:2]
            summary.skipped.append(f"{p.name}: {w}x{h} is smaller than the {patch_size} px patch")
    return out


def single_threaded_opencv() -> None:
    """Make OpenCV single-threaded in this process (and in processes forked from it later).

    Called in the training process before DataLoader workers are forked: a forked child that
    changes OpenCV's thread count after the parent's thread pool has run waits forever for pool
    threads that do not exist in the child (seen with the validation set's degradations).
    """
    import cv2

    cv2.setNumThreads(1)


def worker_init(worker_id: int) -> None:
    """DataLoader worker set-up: OpenCV single-threaded. Patches are small and the workers
    already run in parallel; OpenCV's own thread pool on top only oversubscribes the cores.
    (A no-op in forked workers when the parent called ``single_threaded_opencv`` first.)"""
    single_threaded_opencv()
