"""Small real ONNX super-resolution models built with onnx.helper, for tests that need a model.

The network is a genuine convolutional SR net (3x3 convs with ReLU, a conv to 3*s*s channels,
DepthToSpace, plus a nearest-upsampled skip), so tiling and blending are tested against real
receptive fields. Weights are seeded random values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_sr_model(
    path: Path,
    *,
    scale: int = 2,
    features: int = 8,
    convs: int = 3,
    metadata: dict[str, str] | None = None,
    with_srtool_metadata: bool = True,
    seed: int = 0,
    input_name: str = "lr",
    fp16_io: bool = False,
) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev, prev_ch = input_name, 3
    if fp16_io:
        nodes.append(helper.make_node("Cast", [input_name], ["x32"], to=TensorProto.FLOAT))
        prev = "x32"
    for i in range(convs):
        out_ch = features if i < convs - 1 else 3 * scale * scale
        std = np.sqrt(2.0 / (prev_ch * 9)) * (0.5 if i == convs - 1 else 1.0)
        w = (rng.standard_normal((out_ch, prev_ch, 3, 3)) * std).astype(np.float32)
        b = (rng.standard_normal(out_ch) * 0.01).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(
            helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1])
        )
        prev, prev_ch = f"c{i}", out_ch
        if i < convs - 1:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("DepthToSpace", [prev], ["up"], blocksize=scale, mode="CRD"))
    inits.append(numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales"))
    skip_in = "x32" if fp16_io else input_name
    nodes.append(helper.make_node("Resize", [skip_in, "", "scales"], ["skip"], mode="nearest"))
    out_name = "sr32" if fp16_io else "sr"
    nodes.append(helper.make_node("Add", ["up", "skip"], [out_name]))
    if fp16_io:
        nodes.append(helper.make_node("Cast", ["sr32"], ["sr"], to=TensorProto.FLOAT16))
    io_type = TensorProto.FLOAT16 if fp16_io else TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "tiny_sr",
        [helper.make_tensor_value_info(input_name, io_type, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("sr", io_type, ["N", 3, "H2", "W2"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {}
    if with_srtool_metadata:
        meta = {
            "srtool.scale": str(scale),
            "srtool.arch": "tiny_test",
            "srtool.in_channels": "3",
            "srtool.multiple_of": "1",
            "srtool.value_range": "0-1",
            "srtool.features": str(features),
        }
    meta.update(metadata or {})
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
