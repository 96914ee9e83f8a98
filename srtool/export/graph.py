"""PyTorch module -> checked ONNX graph: export with symbolic batch/height/width, name the axes,
stamp srtool's metadata, and serialise only what ``onnx.checker`` accepts."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from srtool import __version__
from srtool.errors import ModelError, UsageError, first_line
from srtool.infer.tiling import round_to_multiple

if TYPE_CHECKING:
    from srtool.export.source import ResolvedSource

__all__ = [
    "Exporter",
    "finalise_graph",
    "model_metadata",
    "quiet_exporter",
    "serialise_checked",
    "set_metadata",
    "torch_to_onnx",
]

log = logging.getLogger("srtool")

Exporter = Literal["dynamo", "torchscript"]
_PROTOBUF_LIMIT = 2**31 - 1


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Keep the exporters' progress lines and deprecation chatter out of the user's terminal.

    They are re-logged at debug level (``srtool export --verbose`` shows them).
    """
    names = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript", "onnx_ir")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for item in caught:
            log.debug("exporter: %s", str(item.message).splitlines()[0][:300])
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def torch_to_onnx(model: Any, src: ResolvedSource, *, opset: int, exporter: Exporter) -> Any:
    """Export to an in-memory ModelProto with symbolic batch/height/width."""
    import onnx
    import torch

    m = max(src.multiple_of, 1)
    example = torch.rand(2, src.in_channels, round_to_multiple(24, m), round_to_multiple(40, m))
    with tempfile.TemporaryDirectory(prefix="srtool-export-") as tmp, quiet_exporter():
        target = Path(tmp) / "model.onnx"
        common = (model, (example,), str(target))
        named = {"input_names": ["lr"], "output_names": ["sr"], "opset_version": opset}
        try:
            if exporter == "dynamo":
                from torch.export import Dim

                auto = {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}
                torch.onnx.export(
                    *common,
                    **named,
                    dynamo=True,
                    dynamic_shapes=(auto,),
                    external_data=False,
                    optimize=True,
                    verbose=False,
                )
            elif exporter == "torchscript":
                torch.onnx.export(
                    *common,
                    **named,
                    dynamo=False,
                    dynamic_axes={"lr": {0: "batch", 2: "height", 3: "width"}, "sr": {0: "batch"}},
                    do_constant_folding=True,
                )
            else:
                raise UsageError(f"unknown exporter '{exporter}': use dynamo or torchscript")
        except (UsageError, ModelError):
            raise
        except Exception as exc:  # the exporters raise a zoo of types
            other = "torchscript" if exporter == "dynamo" else "dynamo"
            raise ModelError(
                f"the {exporter} exporter cannot export {src.arch}: {first_line(exc)} "
                f"(try --exporter {other})"
            ) from exc
        proto = onnx.load(str(target), load_external_data=True)
    return proto


def finalise_graph(proto: Any, src: ResolvedSource) -> None:
    """Name the axes, check they are symbolic, and stamp producer info."""
    graph = proto.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ModelError(
            f"exported graph has {len(graph.input)} inputs and {len(graph.output)} outputs; "
            "an upscaler needs exactly one of each"
        )
    dims = graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ModelError(f"exported input has rank {len(dims)}; an NCHW image batch needs 4")
    rename: dict[str, str] = {}
    for axis, name in ((0, "batch"), (2, "height"), (3, "width")):
        if not dims[axis].dim_param:
            raise ModelError(
                f"the exporter fixed input axis {name} to {dims[axis].dim_value}: this model "
                "cannot be exported with a dynamic size (try the other --exporter)"
            )
        rename[dims[axis].dim_param] = name

    pattern = re.compile(r"\b(" + "|".join(map(re.escape, rename)) + r")\b")

    def fix(value_info: Any) -> None:
        for dim in value_info.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda mt: rename[mt.group(1)], dim.dim_param)

    for value_info in [*graph.input, *graph.output, *graph.value_info]:
        fix(value_info)
    out_dims = graph.output[0].type.tensor_type.shape.dim
    if len(out_dims) == 4:
        s = src.scale
        for axis, name in ((0, "batch"), (2, "height"), (3, "width")):
            out_dims[axis].Clear()
            out_dims[axis].dim_param = name if s == 1 or axis == 0 else f"{s}*{name}"
    proto.producer_name = "srtool"
    proto.producer_version = __version__
    proto.doc_string = f"srtool {src.arch} x{src.scale} super-resolution model"


def model_metadata(
    src: ResolvedSource,
    *,
    params: int,
    macs: float,
    peak: float,
    exporter: str,
    opset: int,
    precision: str,
) -> dict[str, str]:
    import torch

    meta = {
        "srtool.scale": str(src.scale),
        "srtool.arch": src.arch,
        "srtool.in_channels": str(src.in_channels),
        "srtool.out_channels": str(src.out_channels),
        "srtool.multiple_of": str(max(src.multiple_of, 1)),
        "srtool.value_range": "0-1",
        "srtool.version": __version__,
        "srtool.precision": precision,
        "srtool.params": str(params),
        "srtool.macs_per_output_pixel": str(round(macs)),
        "srtool.peak_activation_per_input_pixel": str(round(peak)),
        "srtool.exporter": f"torch.onnx {exporter} (torch {torch.__version__}, opset {opset})",
        "srtool.training": json.dumps(src.training or {}, sort_keys=True),
        "srtool.source_kind": src.kind,
    }
    if src.hparams is not None:
        meta["srtool.hparams"] = json.dumps(src.hparams, sort_keys=True)
        if isinstance(src.hparams.get("features"), int):
            meta["srtool.features"] = str(src.hparams["features"])
    if src.path is not None:
        meta["srtool.source"] = src.path.name
    if src.sha256:
        meta["srtool.source_sha256" if src.path else "srtool.weights_sha256"] = src.sha256
    return meta


def set_metadata(proto: Any, meta: dict[str, str]) -> None:
    kept = [p for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    for entry in kept:
        proto.metadata_props.add(key=entry.key, value=entry.value)
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)


def serialise_checked(proto: Any) -> bytes:
    import onnx

    data = proto.SerializeToString()
    if len(data) > _PROTOBUF_LIMIT:
        raise ModelError("the model exceeds ONNX's 2 GB single-file limit")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelError(f"onnx.checker rejects the exported model: {exc}") from exc
    return data
