"""Any model file as an ONNX model: PyTorch / safetensors files converted once and cached.

``srtool upscale --model x.pth`` (and ``evaluate``, and ``srtool models add``) convert a PyTorch
or safetensors file — a community model spandrel detects, or an srtool checkpoint — to ONNX
through :func:`srtool.export.export_onnx`, the path of ``srtool export``. That needs torch (the
``train`` extra); the result is cached by the SHA-256 of the file under the model cache,
``$SRTOOL_MODEL_CACHE``, else the platform's cache folder (``~/.cache/srtool/models`` on Linux,
``~/Library/Caches/srtool/models`` on macOS, ``%LOCALAPPDATA%\\srtool\\Cache\\models`` on
Windows): ``<sha256[:16]>/model.onnx`` plus ``model.json`` (name, source, scale, arch, params).
The next run finds it by hash, or by name, without torch.

A cache entry appears complete or not at all: it is built in a hidden staging folder of the
cache and renamed into place. ``add_model`` downloads with urllib, streaming to a temporary file
while hashing it, and checks the SHA-256 when one is given or the catalogue pins one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srtool.cache import ProgressFn, download, user_cache_dir
from srtool.errors import DataError, ModelError, UsageError, require_train_extra
from srtool.hashing import file_digest

__all__ = [
    "CATALOGUE",
    "CachedModel",
    "CatalogueEntry",
    "TORCH_SUFFIXES",
    "add_model",
    "cache_root",
    "cached_models",
    "convert_cached",
    "find_cached",
    "is_torch_file",
]

log = logging.getLogger("srtool")

TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")
INFO_FILE = "model.json"
MODEL_FILE = "model.onnx"
KEY_CHARS = 16


@dataclass(frozen=True)
class CatalogueEntry:
    """A well-known community model: its official address and, where verified, its SHA-256."""

    name: str
    url: str
    scale: int
    arch: str
    description: str
    sha256: str | None = None


_REAL_ESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download/"

CATALOGUE: dict[str, CatalogueEntry] = {
    e.name: e
    for e in (
        CatalogueEntry(
            "realesr-animevideov3",
            _REAL_ESRGAN + "v0.2.5.0/realesr-animevideov3.pth",
            4,
            "Real-ESRGAN Compact",
            "anime video frames, small and fast (Real-ESRGAN)",
            sha256="4e1e09ba96d08bd4b8455e8897c3242a3501e3766f359941ea894122e158a932",
        ),
        CatalogueEntry(
            "realesr-general-x4v3",
            _REAL_ESRGAN + "v0.2.5.0/realesr-general-x4v3.pth",
            4,
            "Real-ESRGAN Compact",
            "general photos, small (Real-ESRGAN)",
        ),
        CatalogueEntry(
            "RealESRGAN_x4plus",
            _REAL_ESRGAN + "v0.1.0/RealESRGAN_x4plus.pth",
            4,
            "ESRGAN (RRDBNet, 23 blocks)",
            "general photos, the classic Real-ESRGAN model",
        ),
        CatalogueEntry(
            "RealESRGAN_x2plus",
            _REAL_ESRGAN + "v0.2.1/RealESRGAN_x2plus.pth",
            2,
            "ESRGAN (RRDBNet, 23 blocks)",
            "general photos at x2 (Real-ESRGAN)",
        ),
        CatalogueEntry(
            "RealESRGAN_x4plus_anime_6B",
            _REAL_ESRGAN + "v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
            4,
            "ESRGAN (RRDBNet, 6 blocks)",
            "anime illustrations (Real-ESRGAN)",
        ),
    )
}


@dataclass(frozen=True)
class CachedModel:
    """One converted model in the cache."""

    name: str
    path: Path  # the ONNX file
    sha256: str  # of the source file
    source: str
    scale: int | None = None
    arch: str | None = None
    params: int | None = None
    created: float = 0.0

    @property
    def folder(self) -> Path:
        return self.path.parent

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())


def default_cache_root() -> Path:
    """The per-user cache folder for converted models, by platform convention."""
    return user_cache_dir("models")


def cache_root() -> Path:
    """``$SRTOOL_MODEL_CACHE`` if set, else :func:`default_cache_root`."""
    env = os.environ.get("SRTOOL_MODEL_CACHE")
    return Path(env).expanduser() if env else default_cache_root()


def is_torch_file(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in TORCH_SUFFIXES


def _read_entry(folder: Path) -> CachedModel | None:
    info, onnx = folder / INFO_FILE, folder / MODEL_FILE
    if not (info.is_file() and onnx.is_file()):
        return None
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
        return CachedModel(
            name=str(data["name"]),
            path=onnx,
            sha256=str(data["sha256"]),
            source=str(data.get("source", "")),
            scale=data.get("scale"),
            arch=data.get("arch"),
            params=data.get("params"),
            created=float(data.get("created", 0.0)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        log.debug("ignoring unreadable cache entry %s", folder)
        return None


def cached_models(root: Path | None = None) -> list[CachedModel]:
    """Every complete entry of the cache, by name."""
    root = cache_root() if root is None else root
    if not root.is_dir():
        return []
    found = [_read_entry(child) for child in root.iterdir() if not child.name.startswith(".")]
    return sorted((m for m in found if m is not None), key=lambda m: (m.name.lower(), m.created))


def find_cached(name: str, root: Path | None = None) -> CachedModel | None:
    """The cached model called ``name`` (the newest when several are), or None."""
    matches = [m for m in cached_models(root) if m.name == name]
    if not matches:
        matches = [m for m in cached_models(root) if m.name.lower() == name.lower()]
    return max(matches, key=lambda m: m.created) if matches else None


def _by_hash(sha256: str, root: Path) -> CachedModel | None:
    return _read_entry(root / sha256[:KEY_CHARS])


def _export(path: Path, out: Path) -> Any:
    from srtool.export import export_onnx

    # The TorchScript exporter takes about a second where the dynamo one takes ~10 s; both are
    # checked against PyTorch on two input sizes. Where a torch release lacks it, use dynamo.
    try:
        return export_onnx(path, out, write_card=False, exporter="torchscript")
    except (ImportError, NotImplementedError) as exc:
        log.info("TorchScript export unavailable (%s); using the dynamo exporter", exc)
        return export_onnx(path, out, write_card=False)


def convert_cached(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    source: str | None = None,
    sha256: str | None = None,
) -> tuple[CachedModel, bool]:
    """The cached ONNX conversion of the PyTorch / safetensors file ``path``, converting it
    first when the cache has no entry for its content; returns (entry, converted now).

    ``name`` (default: the file's stem) and ``source`` (default: the file's path) are recorded;
    an existing entry under another name keeps its name unless ``name`` is given. Raises
    :class:`UsageError` naming ``pip install "srtool[train]"`` when a conversion is needed and
    torch is missing, :class:`ModelError` when the file is not a model srtool can convert.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    sha256 = sha256 or file_digest(path)
    root = cache_root()
    hit = _by_hash(sha256, root)
    if hit is not None:
        if name and hit.name != name:
            hit = _rename(hit, name)
        return hit, False
    require_train_extra(
        f"{path.name} is a PyTorch/safetensors file: converting it to ONNX",
        f"or convert it elsewhere with `srtool export {path.name} -o {path.stem}.onnx` "
        "and pass the .onnx file",
    )
    fresh_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        log.info("converting %s to ONNX (cached in %s)", path, root)
        report = _export(path, staging / MODEL_FILE)
        info = {
            "name": name or path.stem,
            "source": source or str(path.resolve()),
            "sha256": sha256,
            "scale": report.scale,
            "arch": report.arch,
            "params": report.params,
            "created": time.time(),
        }
        (staging / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        target = root / sha256[:KEY_CHARS]
        try:
            os.rename(staging, target)
        except OSError:  # another process cached the same file meanwhile: use theirs
            if _read_entry(target) is None:
                raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if fresh_root:  # a failed first conversion leaves no empty cache folder behind
            with contextlib.suppress(OSError):
                root.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    entry = _read_entry(target)
    if entry is None:  # pragma: no cover - written just above
        raise ModelError(f"could not cache the conversion of {path.name} in {root}")
    return entry, True


def _rename(entry: CachedModel, name: str) -> CachedModel:
    info = entry.folder / INFO_FILE
    data = json.loads(info.read_text(encoding="utf-8"))
    data["name"] = name
    tmp = info.with_name(f".{INFO_FILE}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, info)
    return _read_entry(entry.folder) or entry


# ----------------------------------------------------------------------------- models add


def _is_url(text: str) -> bool:
    return urllib.parse.urlsplit(text).scheme in ("http", "https")


@dataclass(frozen=True)
class AddResult:
    model: CachedModel
    converted: bool
    sha256: str
    pinned: bool  # the hash was checked against a given or catalogued value


def _check_hex(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise UsageError(f"--sha256 {sha256}: expected 64 hexadecimal digits")
    return value


def add_model(
    what: str,
    *,
    sha256: str | None = None,
    name: str | None = None,
    timeout: float = 60.0,
    progress: ProgressFn | None = None,
) -> AddResult:
    """Fetch (a catalogue name or an http(s) URL) or take (a local path) a model file, check its
    SHA-256 (given, else the catalogue's pin), convert it to ONNX and cache it under ``name``.

    A download goes to a temporary file in the cache, hashed while it streams; a checksum
    mismatch removes it and raises :class:`DataError` with nothing cached.
    """
    expected = _check_hex(sha256)
    entry = CATALOGUE.get(what) or next(
        (e for e in CATALOGUE.values() if e.name.lower() == what.lower()), None
    )
    url = entry.url if entry is not None else what if _is_url(what) else None
    if entry is not None:
        expected = expected or entry.sha256
        name = name or entry.name
    if url is None:
        path = Path(what).expanduser()
        if not path.is_file():
            known = ", ".join(CATALOGUE)
            raise UsageError(
                f"{what}: not a file, an http(s) address or a catalogue name ({known})"
            )
        if not is_torch_file(path):
            raise UsageError(
                f"{path.name}: expected a PyTorch or safetensors file "
                f"({', '.join(TORCH_SUFFIXES)}); an .onnx file runs as it is with --model"
            )
        actual = file_digest(path)
        _verify(actual, expected, path.name)
        model, converted = convert_cached(path, name=name, sha256=actual)
        return AddResult(model, converted, actual, expected is not None)

    root = cache_root()
    hit = _by_hash(expected, root) if expected is not None else None
    if hit is not None:  # already cached: nothing to download
        if name and hit.name != name:
            hit = _rename(hit, name)
        return AddResult(hit, False, expected or hit.sha256, True)
    require_train_extra(
        "converting a downloaded model to ONNX",
        "or download it yourself, run `srtool export FILE -o FILE.onnx` where torch is "
        "installed, and pass the .onnx file",
    )
    suffix = Path(urllib.parse.urlsplit(url).path).suffix.lower()
    if suffix not in TORCH_SUFFIXES:
        suffix = ".pth"
    stem = Path(urllib.parse.urlsplit(url).path).stem or "model"
    root.mkdir(parents=True, exist_ok=True)
    tmp, actual = download(url, root, timeout=timeout, progress=progress, suffix=suffix)
    try:
        _verify(actual, expected, url)
        model, converted = convert_cached(tmp, name=name or stem, source=url, sha256=actual)
    finally:
        tmp.unlink(missing_ok=True)
    return AddResult(model, converted, actual, expected is not None)


def _verify(actual: str, expected: str | None, what: str) -> None:
    if expected is not None and actual != expected:
        raise DataError(
            f"checksum mismatch for {what}: SHA-256 {actual}, expected {expected}; "
            "nothing was cached"
        )
