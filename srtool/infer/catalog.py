"""Finding models: shipped or cached ones by name or scale, or any model file by path.

A PyTorch / safetensors file is converted to ONNX once and cached (:mod:`srtool.infer.modelcache`).

Shipped models live in ``exports/<name>/model.onnx`` (installed as the ``srtool.exports``
package), optionally with ``model.fp16.onnx`` for GPUs and ``model.int8.onnx`` for CPUs beside
it. ``SRTOOL_MODELS`` may name extra folders (``os.pathsep``-separated) laid out the same way;
they are searched first.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from srtool.errors import ModelError, UsageError
from srtool.infer.modelcache import (
    CATALOGUE,
    TORCH_SUFFIXES,
    cached_models,
    convert_cached,
    find_cached,
    is_torch_file,
)
from srtool.resources import exports_dir

__all__ = [
    "DEFAULT_MODEL_FOR_SCALE",
    "ModelRef",
    "VARIANTS",
    "fp16_sibling",
    "variant_sibling",
    "variant_name",
    "model_dirs",
    "shipped_models",
    "resolve_model",
]

log = logging.getLogger("srtool")

DEFAULT_MODEL_FOR_SCALE = {2: "efficient-x2", 3: "efficient-x3", 4: "efficient-x4"}
MODEL_FILE = "model.onnx"


#: Reduced-precision variants ``srtool export`` writes beside ``model.onnx``, and what runs them.
VARIANTS = {"fp16": "GPUs", "int8": "CPUs"}


@dataclass(frozen=True)
class ModelRef:
    """One ONNX file to run. ``stands_in_for``: the scale that was asked for, when this model of
    another scale stands in for a default that is not installed (its output is resized to it).

    When ``path`` is a reduced-precision variant, ``variant`` names it (``fp16``, ``int8``) and
    ``fp32_path`` is the fp32 model, which runs where the variant does not pay (fp16 on a CPU,
    int8 on a GPU); ``gpu_path`` is what an int8 model hands a GPU instead (the fp16 variant
    when ``--fp16`` was also asked for and exists, else ``fp32_path``)."""

    name: str
    path: Path
    shipped: bool
    notice: str | None = None
    stands_in_for: int | None = None
    fp32_path: Path | None = None
    variant: str | None = None
    gpu_path: Path | None = None


def variant_sibling(path: Path, variant: str) -> Path:
    """Where a variant of an ONNX file lives: ``model.onnx`` -> ``model.fp16.onnx`` /
    ``model.int8.onnx`` (the names ``srtool export --fp16 / --int8`` write)."""
    return path.with_name(f"{path.stem}.{variant}.onnx")


def fp16_sibling(path: Path) -> Path:
    """``model.onnx`` -> ``model.fp16.onnx`` (see :func:`variant_sibling`)."""
    return variant_sibling(path, "fp16")


def variant_name(path: Path) -> str | None:
    """The variant an ONNX file name says it is (``x.int8.onnx``: ``int8``), else None."""
    lower = path.name.lower()
    return next((v for v in VARIANTS if lower.endswith(f".{v}.onnx")), None)


def _variant_of(ref: ModelRef, variant: str) -> ModelRef:
    """``ref`` switched to its ``variant`` (``fp16``/``int8``) when one lies beside it, else with
    a notice that the model runs in fp32 (``--fp16`` / ``--int8`` is never ignored silently)."""
    if variant_name(ref.path) == variant:
        return ref  # already the variant's file
    sibling = variant_sibling(ref.path, variant)
    if sibling.is_file():
        name = f"{ref.name}-{variant}"
        gpu = ref.path if variant == "int8" else None
        return ModelRef(
            name, sibling, ref.shipped, ref.notice, ref.stands_in_for, ref.path, variant, gpu
        )
    notice = f"{ref.name} has no {variant} variant ({sibling.name}): running it in fp32"
    if ref.notice:
        notice = f"{ref.notice}; {notice}"
    return ModelRef(ref.name, ref.path, ref.shipped, notice, ref.stands_in_for)


def _pick_variant(ref: ModelRef, *, fp16: bool, int8: bool) -> ModelRef:
    """The variant asked for. ``int8`` (for CPUs) wins; with ``fp16`` too, a GPU runs the fp16
    variant instead (``gpu_path``), and a model without int8 variant runs its fp16 one."""
    if not int8:
        return _variant_of(ref, "fp16") if fp16 else ref
    picked = _variant_of(ref, "int8")
    if not fp16:
        return picked
    half = _variant_of(ref, "fp16")
    if picked.variant == "int8":
        return dataclasses.replace(picked, gpu_path=half.path) if half.variant else picked
    missing = f"{ref.name} has no int8 variant ({variant_sibling(ref.path, 'int8').name})"
    return dataclasses.replace(half, notice="; ".join(n for n in (half.notice, missing) if n))


def model_dirs() -> list[Path]:
    """Folders holding shipped-style model folders, in search order."""
    dirs = [Path(p) for p in os.environ.get("SRTOOL_MODELS", "").split(os.pathsep) if p]
    return [*dirs, exports_dir()]


def shipped_models() -> dict[str, Path]:
    """Every installed model folder by name (first found wins)."""
    found: dict[str, Path] = {}
    for folder in model_dirs():
        if not folder.is_dir():
            continue
        for child in sorted(folder.iterdir()):
            if (child / MODEL_FILE).is_file():
                found.setdefault(child.name, child)
    return found


def _looks_like_path(model: str) -> bool:
    lower = model.lower()
    return lower.endswith((".onnx", *TORCH_SUFFIXES)) or os.sep in model or "/" in model


def _converted(path: Path) -> ModelRef:
    """A PyTorch / safetensors file: its cached ONNX conversion (converted now if needed)."""
    entry, converted = convert_cached(path)
    note = f"converted {path.name} to ONNX, cached in {entry.folder}" if converted else None
    return ModelRef(name=path.stem, path=entry.path, shipped=False, notice=note)


def _stand_in(scale: int, installed: dict[str, Path]) -> str | None:
    """The shipped default nearest above ``scale`` (its output is then reduced), else the
    nearest below (run twice, then reduced); None when no default model is installed."""
    others = [s for s, name in DEFAULT_MODEL_FOR_SCALE.items() if name in installed and s != scale]
    above = sorted(s for s in others if s > scale)
    below = sorted((s for s in others if s < scale), reverse=True)
    best = (above or below or [None])[0]
    return None if best is None else DEFAULT_MODEL_FOR_SCALE[best]


def resolve_model(
    model: str | None,
    scale: int | None,
    *,
    fp16: bool = False,
    int8: bool = False,
    allow_other_scale: bool = False,
) -> ModelRef:
    """Turn ``--model`` / ``--scale`` into one ONNX file.

    With no model the shipped default for ``scale`` (4 when unset) is used. When that one is not
    installed and ``allow_other_scale`` is set, the nearest other shipped default stands in, and
    ``stands_in_for`` records the scale asked for (its output is resized to it). A name that is
    not a shipped model and not an existing file is an error listing what is installed.
    ``fp16`` / ``int8`` pick the variant beside the model (``model.fp16.onnx``,
    ``model.int8.onnx``), or leave a notice that the fp32 model runs.
    """
    if model is None:
        scale = 4 if scale is None else scale
        if scale not in DEFAULT_MODEL_FOR_SCALE:
            valid = ", ".join(str(s) for s in DEFAULT_MODEL_FOR_SCALE)
            raise UsageError(
                f"no shipped model for x{scale} (shipped scales: {valid}); "
                "use --outscale for other factors or --model for your own model"
            )
        model = DEFAULT_MODEL_FOR_SCALE[scale]
        installed = shipped_models()
        if model not in installed:
            stand_in = _stand_in(scale, installed) if allow_other_scale else None
            if stand_in is None:
                raise ModelError(
                    f"the default x{scale} model '{model}' is not installed; "
                    "pass --model PATH.onnx (any ONNX super-resolution model works)"
                )
            ref = resolve_model(stand_in, None, fp16=fp16, int8=int8)
            note = f"{model} is not installed: using {stand_in} and resizing its output to x{scale}"
            if ref.notice:
                note = f"{note}; {ref.notice}"
            return dataclasses.replace(ref, notice=note, stands_in_for=scale)
    candidate = Path(model).expanduser()
    if candidate.is_file():
        if is_torch_file(candidate):
            ref = _converted(candidate)
        else:
            ref = ModelRef(name=candidate.stem, path=candidate, shipped=False)
        return _pick_variant(ref, fp16=fp16, int8=int8)
    if _looks_like_path(model):
        raise ModelError(f"model file not found: {model}")
    installed = shipped_models()
    if model not in installed:
        cached = find_cached(model)
        if cached is not None:
            ref = ModelRef(name=cached.name, path=cached.path, shipped=False)
            return _pick_variant(ref, fp16=fp16, int8=int8)
        names = ", ".join(sorted(installed)) or "none installed"
        cached_names = ", ".join(sorted({m.name for m in cached_models()})) or "none"
        hint = f"; `srtool models add {model}` fetches it" if model in CATALOGUE else ""
        raise ModelError(
            f"unknown model '{model}' (shipped: {names}; cached: {cached_names}; or give a "
            f".onnx, .pth or .safetensors file{hint})"
        )
    ref = ModelRef(name=model, path=installed[model] / MODEL_FILE, shipped=True)
    return _pick_variant(ref, fp16=fp16, int8=int8)
