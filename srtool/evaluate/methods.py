"""The methods an evaluation compares: baselines (bicubic, lanczos, nearest), ONNX models and
PyTorch checkpoints (exported to a temporary ONNX file so they run the ``srtool upscale`` path),
and the optional LPIPS metric."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srtool.errors import ModelError
from srtool.evaluate.results import MethodInfo
from srtool.imageio import from_float
from srtool.infer.catalog import variant_name
from srtool.infer.picture import describe, network_pass
from srtool.resize import imresize

log = logging.getLogger("srtool")

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")


@dataclass
class Method:
    info: MethodInfo
    run: Callable[[np.ndarray], np.ndarray]  # uint8 HxWxC LR -> uint8 SR
    warm: Callable[[], None] | None = None


def baseline_method(name: str, scale: int) -> Method:
    if name == "bicubic":

        def run(lr: np.ndarray) -> np.ndarray:
            return imresize(lr, scale)

        source = "MATLAB-style bicubic (a = -0.5), srtool.resize"
    elif name == "lanczos":
        from PIL import Image

        def run(lr: np.ndarray) -> np.ndarray:
            planes = [
                np.asarray(
                    Image.fromarray(lr[..., c]).resize(
                        (lr.shape[1] * scale, lr.shape[0] * scale), Image.Resampling.LANCZOS
                    )
                )
                for c in range(lr.shape[2])
            ]
            return np.stack(planes, axis=-1)

        source = "Lanczos-3 (Pillow)"
    else:

        def run(lr: np.ndarray) -> np.ndarray:
            return np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)

        source = "nearest neighbour (pixel replication)"
    return Method(MethodInfo(label=name, kind="baseline", source=source, scale=None), run)


def label_for(model: str) -> str:
    """A table row's name: the model's name, or a file's (its folder's for ``model.onnx`` and
    the like), with ``-fp16`` / ``-int8`` for a reduced-precision variant
    (``exports/efficient-x4/model.int8.onnx``: ``efficient-x4-int8``)."""
    path = Path(model)
    if path.suffix.lower() in (".onnx", *CHECKPOINT_SUFFIXES) or os.sep in model or "/" in model:
        stem = path.stem.split(".")[0]
        name = path.parent.name if stem in ("model", "best", "latest", "") else stem
        variant = variant_name(path)
        return f"{name}-{variant}" if variant else name
    return model


def _checkpoint_to_onnx(path: Path, workdir: Path) -> Path:
    """Export a PyTorch checkpoint (a file: through the model cache; a run folder: to a
    temporary file) to ONNX so it runs through the same inference path."""
    from srtool.errors import require_train_extra

    if path.is_file():
        from srtool.infer.modelcache import convert_cached

        entry, _ = convert_cached(path)
        return entry.path
    require_train_extra(
        f"evaluating the run folder {path.name}", "or export it with `srtool export` first"
    )
    from srtool.export import export_onnx

    out = workdir / f"{path.name}.onnx"
    log.info("exporting %s to a temporary ONNX model", path)
    # The TorchScript exporter takes well under a second where the dynamo one takes ~10 s; the
    # graph computes the same function. Where a torch release no longer has it, use dynamo.
    try:
        export_onnx(path, out, check_parity=False, write_card=False, exporter="torchscript")
    except (ImportError, NotImplementedError, RuntimeError) as exc:
        log.info("TorchScript export unavailable (%s); using the dynamo exporter", exc)
        export_onnx(path, out, check_parity=False, write_card=False)
    return out


def neural_method(
    model: str,
    *,
    scale: int | None,
    device: str,
    tile: int | None,
    workdir: Path,
    variants: Sequence[tuple[bool, int]],
) -> list[Method]:
    from srtool.infer import plan_upscale

    path = Path(model).expanduser()
    kind = "onnx"
    target = model
    if path.suffix.lower() in CHECKPOINT_SUFFIXES or path.is_dir():
        if not path.exists():
            raise ModelError(f"model file not found: {path}")
        target = str(_checkpoint_to_onnx(path, workdir))
        kind = "checkpoint"
    plan = plan_upscale(target, scale=scale, device=device, tile=tile)  # a named model: exact
    for notice in plan.notices:
        log.info("%s", notice)
    upscaler = plan.upscaler
    info = upscaler.info
    model_scale = upscaler.scale
    label = label_for(model)
    meta = info.metadata
    details = {
        k: meta[k] for k in ("srtool.params", "srtool.version", "srtool.source_sha256") if k in meta
    }

    def warm() -> None:
        side = max(16, info.multiple_of)
        upscaler.upscale(np.zeros((side, side, 3), np.float32))

    methods = []
    for tta, bp in variants:

        def run(lr: np.ndarray, tta: bool = tta, bp: int = bp) -> np.ndarray:
            # the network pass of `srtool upscale`, on float input: the protocol's own rounding
            lr_f = lr.astype(np.float32) * np.float32(1.0 / 255.0)
            return from_float(network_pass(lr_f, upscaler, tta=tta, back_projection=bp), 8)

        suffix = describe(tta, bp)
        methods.append(
            Method(
                MethodInfo(
                    label=label + suffix,
                    kind=kind,
                    source=str(path) if kind == "checkpoint" or path.exists() else model,
                    scale=model_scale,
                    arch=info.arch,
                    device=getattr(upscaler.model, "device", None),
                    enhancement=suffix.lstrip("+"),
                    details=details,
                ),
                run,
                warm,
            )
        )
    return methods


# ----------------------------------------------------------------------------- LPIPS


def lpips_metric(
    weights: str | os.PathLike[str] | None = None, *, download: bool = False
) -> tuple[Callable[[np.ndarray, np.ndarray], float] | None, str]:
    """srtool's LPIPS v0.1 (AlexNet, :mod:`srtool.evaluate.lpips`) when torch and the weights
    are here, else None and one line saying what is missing and how to get it. ``download``
    builds missing weights from the official releases (checksum-verified) first."""
    import importlib.util

    for module in ("torch", "safetensors"):
        if importlib.util.find_spec(module) is None:
            return None, (
                f"LPIPS not computed: it needs the '{module}' package (pip install 'srtool[train]')"
            )
    from srtool.evaluate import lpips

    path = lpips.find_weights(weights)
    if path is None:
        if not download:
            return None, f"LPIPS not computed: {lpips.missing_message()}"
        log.warning("LPIPS weights missing: downloading them")
        path = lpips.download_weights()
    net = lpips.LPIPS.load(path)
    return net.distance, (
        f"LPIPS v0.1 (AlexNet) on RGB after the border crop, lower is better ({path})"
    )
