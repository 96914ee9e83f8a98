"""Inference: models found by name or path, run tiled on onnxruntime, over folders of images."""

from __future__ import annotations

from srtool.infer.catalog import resolve_model
from srtool.infer.onnx_session import OnnxModel
from srtool.infer.upscaler import DEFAULT_OVERLAP, Upscaler

__all__ = ["load_upscaler", "Upscaler", "OnnxModel"]


def load_upscaler(
    model: str | None = None,
    *,
    scale: int | None = None,
    device: str = "auto",
    tile: int | str | None = "auto",
    overlap: int = DEFAULT_OVERLAP,
    batch: int | None = None,
    fp16: bool = False,
    threads: int | None = None,
    allow_other_scale: bool = False,
) -> Upscaler:
    """Build an ``Upscaler`` for a shipped model name, an ONNX path, or the default for ``scale``.

    This is the path ``srtool upscale`` and ``srtool evaluate`` share. ``tile="auto"`` (or None)
    sizes tiles from free memory; ``0`` runs whole images. With ``allow_other_scale`` a missing
    default model for ``scale`` is replaced by another shipped scale (``Upscaler.scale`` then
    differs from ``scale`` and the caller resizes to it).
    """
    ref = resolve_model(model, scale, fp16=fp16, allow_other_scale=allow_other_scale)
    onnx_model = OnnxModel(ref.path, device=device, name=ref.name, threads=threads)
    if ref.notice:
        onnx_model.notices.append(ref.notice)
    if model is not None and scale is not None and onnx_model.info.scale != scale:
        from srtool.errors import UsageError

        raise UsageError(
            f"{ref.name} is a x{onnx_model.info.scale} model but --scale {scale} was given; "
            "use --outscale for a different final size"
        )
    tile_size = None if tile in (None, "auto") else int(tile)
    return Upscaler(onnx_model, tile=tile_size, overlap=overlap, batch=batch)
