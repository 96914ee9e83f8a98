"""A model file is input like any other: hostile ``srtool.*`` metadata and absurd graphs are
refused with one ModelError naming the problem, before they cost memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx_factory import build_sr_model
from typer.testing import CliRunner

from srtool.cli import app
from srtool.errors import ModelError
from srtool.infer.onnx_session import OnnxModel


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("srtool.scale", "1000000"),
        ("srtool.scale", "0"),
        ("srtool.scale", "four"),
        ("srtool.multiple_of", "8192"),
        ("srtool.multiple_of", "0"),
        ("srtool.in_channels", "2"),
        ("srtool.features", "-3"),
        ("srtool.features", "1e9"),
        ("srtool.value_range", "0-0"),
        ("srtool.value_range", "1-0"),
        ("srtool.value_range", "0-1e-30"),
        ("srtool.value_range", "nan-1"),
        ("srtool.value_range", "0-inf"),
        ("srtool.value_range", "0-1e9"),
        ("srtool.value_range", "zero to one"),
        ("srtool.peak_activation_per_input_pixel", "-1e30"),
        ("srtool.peak_activation_per_input_pixel", "0"),
        ("srtool.peak_activation_per_input_pixel", "nan"),
        ("srtool.peak_activation_per_input_pixel", "inf"),
    ],
)
def test_hostile_metadata_is_refused_naming_the_key(tmp_path: Path, key: str, value: str) -> None:
    path = build_sr_model(tmp_path / "m.onnx", metadata={key: value})
    with pytest.raises(ModelError, match=key.replace(".", r"\.")):
        OnnxModel(path, device="cpu")


@pytest.mark.parametrize("value_range", ["0-1", "0-255", "-1-1", " 0 - 65535 "])
def test_sane_value_ranges_are_accepted(tmp_path: Path, value_range: str) -> None:
    path = build_sr_model(tmp_path / "m.onnx", metadata={"srtool.value_range": value_range})
    model = OnnxModel(path, device="cpu")
    out = model.run(np.full((1, 3, 8, 8), 0.5, np.float32))
    assert out.shape == (1, 3, 16, 16) and np.isfinite(out).all()


def _resize_model(path: Path, factor: int) -> Path:
    """A metadata-free model that only resizes by ``factor``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    scales = numpy_helper.from_array(np.array([1, 1, factor, factor], np.float32), "scales")
    graph = helper.make_graph(
        [helper.make_node("Resize", ["lr", "", "scales"], ["sr"], mode="nearest")],
        "resize",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["N", 3, "H2", "W2"])],
        [scales],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_scale_probe_is_tiny_and_absurd_scales_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe of a metadata-free x1000 model used to take 3 GB (a 16x16 input); it now runs
    on the smallest input the model takes and refuses the scale."""
    probed: list[tuple[int, ...]] = []
    real_run = OnnxModel._run_raw

    def run_raw(self, batch):  # noqa: ANN001
        probed.append(batch.shape)
        return real_run(self, batch)

    monkeypatch.setattr(OnnxModel, "_run_raw", run_raw)
    with pytest.raises(ModelError, match="x1000"):
        OnnxModel(_resize_model(tmp_path / "x1000.onnx", 1000), device="cpu")
    assert probed == [(1, 3, 1, 1)]
    assert OnnxModel(_resize_model(tmp_path / "x3.onnx", 3), device="cpu").info.scale == 3


def test_hostile_model_through_the_cli_is_a_usage_error(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (20, 16)).save(tmp_path / "a.png")
    path = build_sr_model(tmp_path / "m.onnx", metadata={"srtool.multiple_of": "8192"})
    result = CliRunner().invoke(
        app, ["upscale", str(tmp_path / "a.png"), str(tmp_path / "o"), "--model", str(path)]
    )
    assert result.exit_code == 2, result.output
    assert "srtool.multiple_of" in result.output and "Traceback" not in result.output


def test_onnxruntime_log_lines_stay_out_of_stderr(tmp_path: Path, capfd) -> None:  # noqa: ANN001
    """A failing run is one ModelError; onnxruntime's own coloured log line must not reach
    stderr besides it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = numpy_helper.from_array(np.array([1, 3, 16, 16], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["lr", "shape"], ["sr"])],
        "fixed",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["N", 3, "H2", "W2"])],
        [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "srtool.scale", "1"
    onnx.save(model, str(tmp_path / "fixed.onnx"))
    session = OnnxModel(tmp_path / "fixed.onnx", device="cpu")
    capfd.readouterr()
    with pytest.raises(ModelError, match="failed to run"):
        session.run(np.zeros((1, 3, 20, 20), np.float32))
    assert capfd.readouterr().err == ""
