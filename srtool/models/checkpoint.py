"""Self-describing model checkpoints: safetensors weights plus JSON metadata, never pickle.

One ``.safetensors`` file holds everything needed to rebuild the network: the header's
``__metadata__["srtool"]`` entry is a JSON document with the format version, architecture name,
hyper-parameters, scale, training step, the resolved recipe, whether EMA weights are present, and
a SHA-256 over all tensors. Raw weights are stored under their state-dict names — so tools that
read plain safetensors (spandrel, chaiNNer) see an ordinary state dict — and EMA weights, when
given, under ``ema/<name>`` (``/`` never occurs in PyTorch state-dict keys).

Why not ``torch.save``: unpickling a downloaded file can run arbitrary code. Why the checksum:
safetensors validates its header but not the tensor bytes, and a flipped bit in a weight would
otherwise load silently as a subtly broken model.

Optimiser, scheduler and RNG state for resuming training are not model weights and are saved
beside the checkpoint by the training loop; :func:`load_checkpoint_meta` reads a checkpoint's
metadata without touching its tensors.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import struct
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srtool import __version__
from srtool.atomic import atomic_write_bytes
from srtool.errors import ModelError, first_line
from srtool.models import arch_class, build

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "EMA_PREFIX",
    "is_checkpoint",
    "load_checkpoint",
    "load_checkpoint_meta",
    "load_state",
    "save_checkpoint",
    "tensors_sha256",
]

log = logging.getLogger("srtool")

CHECKPOINT_FORMAT = "srtool-checkpoint"
CHECKPOINT_VERSION = 1
EMA_PREFIX = "ema/"
_META_KEY = "srtool"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit
#: Keys save_checkpoint computes itself; values passed in ``meta`` under these names are replaced.
_RESERVED = (
    "format",
    "format_version",
    "arch",
    "kind",
    "hparams",
    "scale",
    "multiple_of",
    "ema",
    "params",
    "srtool_version",
    "created",
    "tensors_sha256",
)


def _unwrap(model: nn.Module) -> nn.Module:
    """The module whose state-dict keys are canonical (strips torch.compile and DDP wrappers)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # torch.compile
        elif isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _plain_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``tensors`` in sorted-name order.

    Independent of file layout, so it is computed on the tensors before writing and after
    reading. ``tensors`` must be contiguous CPU tensors.
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    meta: Mapping[str, Any] | None = None,
    ema: nn.Module | Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` (and optionally its EMA copy) as an srtool checkpoint, atomically.

    Args:
        path: destination ``.safetensors`` file (parent folders are created).
        model: a registered srtool architecture (has ``arch`` and ``hparams``); compile and DDP
            wrappers are removed first.
        meta: JSON-serialisable extra metadata — conventionally ``step`` (int), ``recipe`` (the
            resolved recipe as a dict) and ``training`` (a short summary: data, metrics, time).
        ema: EMA weights of the same architecture (a module or a state dict), stored beside the
            raw weights; loaders prefer them.

    Returns the path written.
    """
    path = Path(path)
    net = _unwrap(model)
    arch = getattr(net, "arch", None)
    hparams = getattr(net, "hparams", None)
    if not isinstance(arch, str) or not isinstance(hparams, dict):
        raise ModelError(
            f"cannot save {type(net).__name__}: only registered srtool architectures "
            "(with .arch and .hparams) can be saved as checkpoints"
        )
    arch_class(arch)  # the name must be in the registry, or the file could never be loaded
    tensors = _plain_state(net.state_dict())
    if ema is not None:
        ema_state = _unwrap(ema).state_dict() if isinstance(ema, nn.Module) else ema
        ema_state = _plain_state(ema_state)
        if ema_state.keys() != tensors.keys():
            raise ModelError("EMA weights do not have the same keys as the model")
        for key, value in ema_state.items():
            if value.shape != tensors[key].shape:
                raise ModelError(
                    f"EMA tensor {key} has shape {tuple(value.shape)}, "
                    f"model has {tuple(tensors[key].shape)}"
                )
            tensors[EMA_PREFIX + key] = value

    record: dict[str, Any] = {k: v for k, v in (meta or {}).items() if k not in _RESERVED}
    record.setdefault("step", None)
    record.setdefault("recipe", None)
    record.update(
        format=CHECKPOINT_FORMAT,
        format_version=CHECKPOINT_VERSION,
        arch=arch,
        kind=getattr(net, "kind", "generator"),
        hparams=hparams,
        scale=getattr(net, "scale", None),
        multiple_of=getattr(net, "multiple_of", 1),
        ema=ema is not None,
        params=sum(p.numel() for p in net.parameters()),
        srtool_version=__version__,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        tensors_sha256=tensors_sha256(tensors),
    )
    try:
        text = json.dumps(record, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"checkpoint metadata is not JSON-serialisable: {exc}") from exc

    from safetensors.torch import save

    seen: set[int] = set()
    for key, value in tensors.items():  # safetensors refuses tensors that share storage
        ptr = value.untyped_storage().data_ptr()
        if ptr in seen and value.numel():
            tensors[key] = value.clone()
        seen.add(ptr)
    data = save(tensors, metadata={_META_KEY: text, "format": "pt"})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    log.debug("saved %s checkpoint %s (%d tensors)", arch, path, len(tensors))
    return path


def _read_header(path: Path) -> dict[str, Any]:
    """The safetensors JSON header, read with plain file IO (cheap; validates nothing else)."""
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise ModelError(f"{path.name}: not a safetensors file (only {len(raw)} bytes)")
        (size,) = struct.unpack("<Q", raw)
        if size > _MAX_HEADER or size > path.stat().st_size - 8:
            raise ModelError(f"{path.name}: not a safetensors file (bad header length {size})")
        blob = fh.read(size)
    try:
        header = json.loads(blob)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path.name}: corrupt safetensors header ({exc})") from exc
    if not isinstance(header, dict):
        raise ModelError(f"{path.name}: corrupt safetensors header (not a JSON object)")
    return header


def is_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a safetensors file carrying srtool checkpoint metadata."""
    try:
        header = _read_header(Path(path))
    except (ModelError, OSError):
        return False
    return _META_KEY in (header.get("__metadata__") or {})


def load_checkpoint_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of an srtool checkpoint, without loading its tensors (or importing pickle).

    Raises :class:`ModelError` when the file is missing, not safetensors, or not an srtool
    checkpoint (e.g. a community model: those go through ``srtool export``'s importer).
    """
    path = Path(path)
    return _meta_of(path, _read_header(path))


def _meta_of(path: Path, header: dict[str, Any]) -> dict[str, Any]:
    text = (header.get("__metadata__") or {}).get(_META_KEY)
    if text is None:
        raise ModelError(
            f"{path.name}: a safetensors file without srtool metadata (not an srtool checkpoint; "
            "community weights can be converted with `srtool export`)"
        )
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise ModelError(f"{path.name}: the srtool metadata is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path.name}: the srtool metadata is not a checkpoint description")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelError(f"{path.name}: bad checkpoint format_version {version!r}")
    if version > CHECKPOINT_VERSION:
        raise ModelError(
            f"{path.name}: checkpoint format {version} was written by a newer srtool "
            f"(this one reads up to {CHECKPOINT_VERSION}); upgrade srtool"
        )
    for key, kind in (("arch", str), ("hparams", dict), ("tensors_sha256", str)):
        if not isinstance(meta.get(key), kind):
            raise ModelError(f"{path.name}: checkpoint metadata lacks a valid '{key}'")
    return meta


#: safetensors dtype names -> torch dtypes (the ones a state dict can hold)
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _header_tensors(path: Path, header: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors the header announces, as ``meta``-device tensors of their dtype and shape
    (nothing is allocated or read)."""
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        dtype = _DTYPES.get(entry.get("dtype")) if isinstance(entry, dict) else None
        if (
            dtype is None
            or not isinstance(shape, list)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        ):
            raise ModelError(f"{path.name}: corrupt safetensors header (bad entry for {name!r})")
        out[name] = torch.empty(shape, dtype=dtype, device="meta")
    return out


class _TooBig(Exception):
    """Raised inside a model constructor by :func:`_build_budget`."""


@contextlib.contextmanager
def _build_budget(count: int, elements: int) -> Iterator[None]:
    """Abort a model build (raising :class:`_TooBig` from inside the constructor) once it has
    registered many more parameters and buffers, or values, than the file holds: a tampered
    ``hparams`` can describe a network of millions of layers or billions of weights, and even
    on the ``meta`` device building it would take minutes."""
    from torch.nn.modules.module import (
        register_module_buffer_registration_hook,
        register_module_parameter_registration_hook,
    )

    owner = threading.get_ident()
    max_count, max_elements = 2 * count + 64, 2 * elements + (1 << 20)
    seen: dict[tuple[int, str], int] = {}  # re-registering a name (spectral norm does) replaces
    total = [0]

    def hook(module: nn.Module, name: str, value: torch.Tensor | None) -> None:
        if value is None or threading.get_ident() != owner:
            return
        key = (id(module), name)
        total[0] += value.numel() - seen.get(key, 0)
        seen[key] = value.numel()
        if len(seen) > max_count or total[0] > max_elements:
            raise _TooBig

    handles = [
        register_module_parameter_registration_hook(hook),
        register_module_buffer_registration_hook(hook),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _reference(path: Path, meta: dict[str, Any], raw: dict[str, torch.Tensor]) -> nn.Module:
    """The network the metadata describes, built on the ``meta`` device (no memory) and only as
    far as the file's own size allows."""
    count, elements = len(raw), sum(t.numel() for t in raw.values())
    try:
        with _build_budget(count, elements), torch.device("meta"):
            return build(meta["arch"], **meta["hparams"])
    except _TooBig:
        raise ModelError(
            f"{path.name}: its metadata describes a far bigger network than the "
            f"{count} tensors ({elements} values) the file holds: the file is corrupt or was "
            "modified after it was written"
        ) from None
    except ModelError as exc:
        raise ModelError(f"{path.name}: metadata describes an unbuildable model: {exc}") from exc
    except (RuntimeError, OverflowError, MemoryError) as exc:
        raise ModelError(
            f"{path.name}: metadata describes an unbuildable model: {first_line(exc)}"
        ) from exc


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{path.name}: cannot read the tensors ({exc})") from exc


def _check_against(
    path: Path, model: nn.Module, state: Mapping[str, torch.Tensor], label: str
) -> None:
    """Name exactly which keys are missing, unexpected or of the wrong shape."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {_few(unexpected)}")
    for key in sorted(set(expected) & set(state)):
        if expected[key].shape != state[key].shape:
            problems.append(
                f"{key} has shape {tuple(state[key].shape)}, "
                f"the architecture needs {tuple(expected[key].shape)}"
            )
        elif expected[key].dtype.is_floating_point != state[key].dtype.is_floating_point:
            problems.append(f"{key} has dtype {state[key].dtype}")
    if problems:
        raise ModelError(
            f"{path.name}: {label} weights do not match the {getattr(model, 'arch', '?')} "
            f"architecture its metadata describes: {'; '.join(problems[:4])}"
            + (f" (and {len(problems) - 4} more)" if len(problems) > 4 else "")
        )


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


def load_state(
    path: str | os.PathLike[str], *, prefer_ema: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Verified state dict and metadata of a checkpoint (EMA weights when present and preferred).

    The returned metadata gains ``weights`` ("ema" or "raw") and ``path``. Everything the file
    claims is checked: its arch and hyper-parameters build a model, every tensor matches that
    model's keys and shapes, and the tensor checksum matches. The model is first built on the
    ``meta`` device and compared with the tensors the header announces, so a tampered header
    is refused before anything the size of the described network is allocated or read.
    """
    path = Path(path)
    header = _read_header(path)
    meta = _meta_of(path, header)
    announced = _header_tensors(path, header)
    raw_meta = {k: v for k, v in announced.items() if not k.startswith(EMA_PREFIX)}
    ema_meta = {k[len(EMA_PREFIX) :]: v for k, v in announced.items() if k.startswith(EMA_PREFIX)}
    reference = _reference(path, meta, raw_meta)
    _check_against(path, reference, raw_meta, "the")
    if ema_meta:
        _check_against(path, reference, ema_meta, "the EMA")
    if bool(ema_meta) != bool(meta.get("ema")):
        raise ModelError(
            f"{path.name}: metadata says ema={meta.get('ema')} but the file "
            f"{'has' if ema_meta else 'has no'} EMA weights"
        )
    tensors = _read_tensors(path)
    raw = {k: v for k, v in tensors.items() if not k.startswith(EMA_PREFIX)}
    ema = {k[len(EMA_PREFIX) :]: v for k, v in tensors.items() if k.startswith(EMA_PREFIX)}
    _check_against(path, reference, raw, "the")
    if ema:
        _check_against(path, reference, ema, "the EMA")
    if tensors_sha256(tensors) != meta["tensors_sha256"]:
        raise ModelError(
            f"{path.name}: the weights fail their SHA-256 check: the file is corrupt or was "
            "modified after it was written"
        )
    use_ema = prefer_ema and bool(ema)
    meta = dict(meta, weights="ema" if use_ema else "raw", path=str(path))
    return (ema if use_ema else raw), meta


def load_checkpoint(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu", prefer_ema: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint describes, from the checkpoint alone.

    Returns ``(model, meta)`` with the model in eval mode on ``device``; ``meta["weights"]`` says
    whether EMA or raw weights were loaded. Never unpickles. Raises :class:`ModelError` naming the
    problem for missing, truncated, corrupt, tampered or mismatched files.
    """
    state, meta = load_state(path, prefer_ema=prefer_ema)
    model = build(meta["arch"], **meta["hparams"])
    model.load_state_dict(state, strict=True)
    model.eval()
    return model.to(device), meta
