"""LPIPS v0.1 with AlexNet (Zhang et al. 2018): the learned perceptual distance SR papers report
beside PSNR and SSIM (lower is better), computed by srtool from one weights file.

The distance: both images RGB in [-1, 1], shifted and scaled by LPIPS's fixed
(-0.030, -0.088, -0.188) / (0.458, 0.448, 0.450); the five ReLU outputs of torchvision's ImageNet
AlexNet convolutions (``features.{0,3,6,8,10}``, max-pools before the second and third); each
tap unit-normalised over channels (``f / (||f|| + 1e-10)``), the squared difference weighted per
channel by the v0.1 calibration ("lin") weights, averaged over space; the five summed. This is
``lpips.LPIPS(net="alex")`` of richzhang/PerceptualSimilarity with its defaults (``spatial``
off), reproduced to float32 rounding without depending on that package.

The weights (``lpips_alex_v0.1.safetensors``: the ten trunk tensors plus
``lin{0..4}.model.1.weight``, float32) are looked for, offline, in this order:

1. an explicit path (``srtool evaluate --lpips-weights``), the file or a folder holding it;
2. the ``SRTOOL_LPIPS_WEIGHTS`` environment variable (likewise);
3. srtool's weights cache, beside the data cache: ``~/.cache/srtool/weights`` on Linux
   (``$XDG_CACHE_HOME`` honoured), ``~/Library/Caches/srtool/weights`` on macOS,
   ``%LOCALAPPDATA%\\srtool\\Cache\\weights`` on Windows.

:func:`download_weights` (``srtool evaluate --lpips --download``) builds the file from the two
official releases, torchvision's ``alexnet-owt-7be5be79.pth`` and the LPIPS authors' ``alex.pth``,
each read with ``torch.load(weights_only=True)`` so a download cannot run code; it keeps only the
tensors above, checks their SHA-256 (:func:`srtool.models.checkpoint.tensors_sha256`: names,
dtypes, shapes and bytes in sorted-name order) against :data:`WEIGHTS_SHA256`, and only then
writes the cache file atomically. Every load checks the same digest, so a number labelled LPIPS
never comes from other weights.

Importing this module does not import torch; building :class:`LPIPS` does (``srtool[train]``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from srtool.errors import DataError, ModelError, UsageError

if TYPE_CHECKING:
    import torch

__all__ = [
    "ALEXNET_URL",
    "LIN_URL",
    "LPIPS",
    "WEIGHTS_ENV",
    "WEIGHTS_NAME",
    "WEIGHTS_SHA256",
    "download_weights",
    "find_weights",
    "lpips_distance",
    "missing_message",
    "weights_cache_dir",
]

log = logging.getLogger("srtool")

WEIGHTS_NAME = "lpips_alex_v0.1.safetensors"
WEIGHTS_ENV = "SRTOOL_LPIPS_WEIGHTS"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
LIN_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth"
#: ``tensors_sha256`` of the 15 float32 tensors below, as torchvision and the LPIPS authors
#: publish them (computed once from a verified copy of both releases).
WEIGHTS_SHA256 = "277e5b9110c9b2352cd3fa1a59f331c22521c1da26a209985770676054d62f89"

_CONVS = (0, 3, 6, 8, 10)  # torchvision alexnet().features indices of the five convolutions
_STRIDE_PAD = ((4, 2), (1, 2), (1, 1), (1, 1), (1, 1))
_TRUNK_KEYS = tuple(f"features.{i}.{p}" for i in _CONVS for p in ("weight", "bias"))
_LIN_KEYS = tuple(f"lin{k}.model.1.weight" for k in range(5))
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


# ----------------------------------------------------------------------------- finding the file


def weights_cache_dir() -> Path:
    """srtool's per-user weights folder: ``weights`` beside the default data cache."""
    from srtool.cache import user_cache_dir

    return user_cache_dir("weights")


def _in(path: Path) -> Path:
    return path / WEIGHTS_NAME if path.is_dir() else path


def find_weights(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The weights file: ``explicit`` > ``$SRTOOL_LPIPS_WEIGHTS`` > the weights cache; None when
    none holds it. An explicit path that does not exist is an error, not a fall-through."""
    if explicit:
        path = _in(Path(explicit).expanduser())
        if not path.is_file():
            raise UsageError(f"--lpips-weights {explicit}: no such file")
        return path
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        path = _in(Path(env).expanduser())
        if path.is_file():
            return path
    path = weights_cache_dir() / WEIGHTS_NAME
    return path if path.is_file() else None


def missing_message() -> str:
    """One line: where the weights were looked for and how to get them."""
    env = os.environ.get(WEIGHTS_ENV)
    looked = f"${WEIGHTS_ENV}={env}" if env else f"${WEIGHTS_ENV} (unset)"
    return (
        f"weights {WEIGHTS_NAME} not found (looked at {looked} and in "
        f"{weights_cache_dir()}): add --download to build them once from torchvision's AlexNet "
        "and the LPIPS v0.1 release (about 240 MB, checksum-verified), or pass --lpips-weights FILE"
    )


# ----------------------------------------------------------------------------- download


def download_weights(
    folder: str | os.PathLike[str] | None = None,
    *,
    alexnet_url: str | None = None,
    lin_url: str | None = None,
    timeout: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Build ``WEIGHTS_NAME`` in ``folder`` (default: the weights cache) from the official
    releases (``alexnet_url`` / ``lin_url``: default :data:`ALEXNET_URL` / :data:`LIN_URL`, or
    a mirror) and return its path. The kept tensors must match :data:`WEIGHTS_SHA256`; on any
    failure nothing is written and the downloaded files are removed (:class:`DataError`)."""
    import torch
    from safetensors.torch import save

    from srtool.atomic import atomic_write_bytes
    from srtool.cache import download
    from srtool.errors import first_line
    from srtool.models.checkpoint import tensors_sha256

    alexnet_url, lin_url = alexnet_url or ALEXNET_URL, lin_url or LIN_URL
    target_dir = Path(folder).expanduser() if folder is not None else weights_cache_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for url, keys in ((alexnet_url, _TRUNK_KEYS), (lin_url, _LIN_KEYS)):
        log.info("downloading %s", url)
        part, _ = download(url, target_dir, timeout=timeout, progress=progress, prefix=".part-")
        try:
            state = torch.load(part, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same refusal
            raise DataError(
                f"{url} is not a PyTorch weights file ({first_line(exc)}); nothing was cached"
            ) from exc
        finally:
            part.unlink(missing_ok=True)
        absent = [k for k in keys if not isinstance(state, dict) or k not in state]
        if absent:
            raise DataError(f"{url} lacks {', '.join(absent)}; nothing was cached")
        tensors.update({k: state[k].detach().contiguous() for k in keys})
    got = tensors_sha256(tensors)
    if got != WEIGHTS_SHA256:
        raise DataError(
            f"LPIPS weights from {alexnet_url} and {lin_url} do not match the pinned checksum "
            f"(tensor sha256 {got}, expected {WEIGHTS_SHA256}); nothing was cached"
        )
    meta = {
        "format": "LPIPS v0.1 AlexNet (srtool)",
        "trunk_source": alexnet_url,
        "lin_source": lin_url,
        "tensors_sha256": got,
        "input_convention": "RGB NCHW in [-1, 1], then (x - shift) / scale",
    }
    target = target_dir / WEIGHTS_NAME
    atomic_write_bytes(target, save(tensors, metadata=meta))
    log.info("LPIPS weights written to %s", target)
    return target


# ----------------------------------------------------------------------------- the network


class LPIPS:
    """LPIPS v0.1 AlexNet on one device. ``forward`` is differentiable (a loss or a batch
    metric); calling the object gives a float for two images (see :meth:`distance`)."""

    def __init__(self, tensors: dict[str, torch.Tensor], device: str | torch.device = "cpu"):
        import torch

        self.device = torch.device(device)
        self._w = {k: v.to(self.device, torch.float32) for k, v in tensors.items()}
        self._shift = torch.tensor(_SHIFT, device=self.device).view(1, 3, 1, 1)
        self._scale = torch.tensor(_SCALE, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"
    ) -> LPIPS:
        """From ``path`` (default: :func:`find_weights`), checked against
        :data:`WEIGHTS_SHA256`."""
        from safetensors.torch import load_file

        from srtool.models.checkpoint import tensors_sha256

        file = find_weights(path)
        if file is None:
            raise ModelError(f"LPIPS {missing_message()}")
        try:
            state = load_file(str(file))
        except Exception as exc:  # noqa: BLE001 - a damaged file says so in one line
            raise ModelError(f"{file}: not a safetensors file ({exc})") from exc
        tensors = {k: state[k].contiguous() for k in (*_TRUNK_KEYS, *_LIN_KEYS) if k in state}
        got = tensors_sha256(tensors)
        if got != WEIGHTS_SHA256:
            raise ModelError(
                f"{file}: not the LPIPS v0.1 AlexNet weights (tensor sha256 {got[:16]}..., "
                f"expected {WEIGHTS_SHA256[:16]}...)"
            )
        return cls(tensors, device)

    def to(self, device: str | torch.device) -> LPIPS:
        return LPIPS(self._w, device)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image distances (shape N) of NCHW RGB batches in [-1, 1]."""
        fx, fy = self._taps(x), self._taps(y)
        total = x.new_zeros(x.shape[0])
        for k, (a, b) in enumerate(zip(fx, fy)):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            weight = self._w[f"lin{k}.model.1.weight"]  # 1 x C x 1 x 1, a 1x1 conv
            total = total + ((a - b).pow(2) * weight).sum(1).mean((1, 2))
        return total

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        import torch.nn.functional as F

        h = (x - self._shift) / self._scale
        taps = []
        for k, (i, (stride, pad)) in enumerate(zip(_CONVS, _STRIDE_PAD)):
            if k in (1, 2):
                h = F.max_pool2d(h, 3, 2)
            w, b = self._w[f"features.{i}.weight"], self._w[f"features.{i}.bias"]
            h = F.relu(F.conv2d(h, w, b, stride=stride, padding=pad))
            taps.append(h)
        return taps

    def distance(self, a: Any, b: Any) -> float:
        """LPIPS of two images (the mean over a batch), without gradients.

        Each is a numpy array or torch tensor: uint8 HxWxC (C = 3, or 1 for greyscale), a numpy
        float HxWxC in [0, 1], or a float tensor CHW / NCHW in [0, 1] (srtool's training
        convention).
        """
        import torch

        with torch.no_grad():
            return float(self.forward(self._input(a), self._input(b)).mean().item())

    __call__ = distance

    def _input(self, img: Any) -> torch.Tensor:
        import torch

        if isinstance(img, np.ndarray):  # numpy: always HxWxC
            img = np.ascontiguousarray(img)
            img, hwc = torch.from_numpy(img if img.flags.writeable else img.copy()), True
        else:  # torch: uint8 HxWxC as decoded, float (N)CHW as in training
            hwc = img.dtype == torch.uint8
        if hwc:
            if img.ndim == 2:
                img = img[..., None]
            if img.ndim != 3:
                raise ValueError(f"expected an HxWxC image, got shape {tuple(img.shape)}")
            img = img.permute(2, 0, 1)
        unit = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
        if unit.ndim == 3:
            unit = unit[None]
        if unit.ndim != 4 or unit.shape[1] not in (1, 3):
            raise ValueError(f"expected RGB or greyscale images, got shape {tuple(img.shape)}")
        if unit.shape[1] == 1:
            unit = unit.expand(-1, 3, -1, -1)
        return unit.to(self.device) * 2.0 - 1.0


@lru_cache(maxsize=4)
def _cached(path: str | None, device: str) -> LPIPS:
    return LPIPS.load(path, device)


def lpips_distance(
    a: Any, b: Any, *, weights: str | os.PathLike[str] | None = None, device: str = "cpu"
) -> float:
    """LPIPS v0.1 (AlexNet) between two images, lower is more similar; the network is loaded
    once per weights file and device. Inputs as for :meth:`LPIPS.distance`; for validation
    during training, e.g. ``lpips_distance(sr_u8, hr_u8)`` with HxWx3 uint8 arrays."""
    return _cached(str(weights) if weights is not None else None, device).distance(a, b)
