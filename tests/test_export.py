"""srtool export: the ONNX contract, parity, every kind of source, fp16/int8 variants, the CLI.

Every export here is real (torch.onnx + onnxruntime); models are tiny so the file stays fast on
two CPU cores. The community model and the Set5 images come from ../shared and are skipped with
a reason where that folder is absent.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from srtool.cli import app  # noqa: E402
from srtool.errors import ModelError, UsageError  # noqa: E402
from srtool.export import export_onnx, variant_path  # noqa: E402
from srtool.models import ARCHS, build, deploy  # noqa: E402
from srtool.models.checkpoint import save_checkpoint  # noqa: E402

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
COMPACT_PTH = SHARED / "weights" / "realesr-animevideov3_x4.pth"
SET5 = SHARED / "data" / "Set5"

TINY = {
    "srresnet": {"features": 8, "blocks": 1},
    "rrdbnet": {"features": 8, "blocks": 1, "growth": 4},
    "compact": {"features": 8, "convs": 2},
    "span": {"features": 8, "blocks": 1, "convs": 2},
}
REQUIRED_METADATA = {
    "srtool.scale",
    "srtool.arch",
    "srtool.in_channels",
    "srtool.multiple_of",
    "srtool.value_range",
    "srtool.version",
    "srtool.training",
    "srtool.params",
    "srtool.macs_per_output_pixel",
}


def tiny(arch: str, seed: int = 0, **extra: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build(arch, **TINY[arch], **extra).eval()


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(["sr"], {"lr": x})[0]


def run_torch(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def require_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared test asset not found: {path}")
    return path


# -- the ONNX contract, for every registered generator -----------------------------------------


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_export_contract_and_parity(tmp_path: Path, arch: str) -> None:
    model = tiny(arch, scale=3 if arch == "compact" else 4)
    out = tmp_path / f"{arch}.onnx"
    report = export_onnx(model, out)

    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["lr"]
    assert [o.name for o in proto.graph.output] == ["sr"]
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17

    meta = metadata(out)
    assert REQUIRED_METADATA <= set(meta)
    assert meta["srtool.scale"] == str(model.scale) and meta["srtool.arch"] == arch
    assert meta["srtool.value_range"] == "0-1" and meta["srtool.multiple_of"] == "1"
    deployed = {"deploy": True} if "deploy" in model.hparams else {}  # re-parameterisable nets
    assert json.loads(meta["srtool.hparams"]) == {**model.hparams, **deployed}
    shipped = deploy(copy.deepcopy(model))  # what is exported: re-parameterisable nets collapsed
    assert int(meta["srtool.params"]) == sum(p.numel() for p in shipped.parameters())

    # The built-in check ran on two sizes, one odd, and found fp32 noise only.
    assert [r.shape for r in report.parity] == [(1, 3, 64, 64), (2, 3, 37, 53)]
    assert all(r.max_abs < 1e-4 and r.psnr_db > 80 for r in report.parity)
    # An independent check at a third size nobody has used yet.
    x = np.random.default_rng(1).random((1, 3, 19, 23), dtype=np.float32)
    got, want = run_onnx(out, x), run_torch(model, x)
    assert got.shape == (1, 3, 19 * model.scale, 23 * model.scale)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{arch}.md", f"{arch}.onnx"]


def test_metadata_is_read_back_by_the_upscale_engine(tmp_path: Path) -> None:
    from srtool.infer.onnx_session import OnnxModel, read_metadata

    model = tiny("rrdbnet", scale=2, unshuffle=True)
    out = tmp_path / "x2.onnx"
    report = export_onnx(model, out)
    assert report.multiple_of == 2
    meta = read_metadata(out)
    assert meta == metadata(out) and meta["srtool.multiple_of"] == "2"
    engine = OnnxModel(out, device="cpu")
    assert (engine.info.scale, engine.info.multiple_of, engine.info.arch) == (2, 2, "rrdbnet")
    assert engine.info.metadata["srtool.scale"] == "2"  # from metadata, not from a trial run
    x = np.random.default_rng(2).random((1, 3, 38, 54), dtype=np.float32)  # odd multiples of 2
    np.testing.assert_allclose(engine.run(x), run_torch(model, x), atol=1e-4)


# -- sources -----------------------------------------------------------------------------------


def test_checkpoint_source_uses_ema_weights_and_records_training(tmp_path: Path) -> None:
    raw, ema = tiny("compact", seed=1, scale=2), tiny("compact", seed=2, scale=2)
    recipe = {"name": "compact-x2-psnr", "train": {"steps": 10}}
    ckpt = save_checkpoint(
        tmp_path / "ck.safetensors", raw, ema=ema, meta={"step": 10, "recipe": recipe}
    )
    out = tmp_path / "model.onnx"
    report = export_onnx(ckpt, out, fp16=False)
    assert report.source_kind == "checkpoint" and report.arch == "compact"
    x = np.random.default_rng(3).random((1, 3, 21, 17), dtype=np.float32)
    np.testing.assert_allclose(run_onnx(out, x), run_torch(ema, x), atol=1e-5)
    meta = metadata(out)
    training = json.loads(meta["srtool.training"])
    assert training["step"] == 10 and training["weights"] == "ema"
    assert training["recipe_name"] == "compact-x2-psnr"
    import hashlib

    assert meta["srtool.source_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    card = out.with_suffix(".md").read_text()
    assert "ck.safetensors" in card and "MACs per output pixel" in card and "37×53" in card


def test_run_folder_source_takes_the_best_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    save_checkpoint(
        run / "checkpoints" / "last.safetensors", tiny("compact", seed=1), meta={"step": 200}
    )
    best = tiny("compact", seed=2)
    save_checkpoint(run / "checkpoints" / "best.safetensors", best, meta={"step": 100})
    out = tmp_path / "m.onnx"
    report = export_onnx(run, out, write_card=False)
    assert report.source_kind == "run" and report.source.endswith("best.safetensors")
    x = np.random.default_rng(4).random((1, 3, 9, 11), dtype=np.float32)
    np.testing.assert_allclose(run_onnx(out, x), run_torch(best, x), atol=1e-5)
    assert not out.with_suffix(".md").exists()


def test_community_compact_matches_spandrel(tmp_path: Path) -> None:
    """The shared Real-ESRGAN Compact file: srtool's import equals spandrel's own module, and the
    ONNX export equals both."""
    import spandrel

    from srtool.models.community import load_community

    path = require_shared(COMPACT_PTH)
    found = load_community(path)
    assert found.converted and found.arch == "compact" and found.scale == 4
    assert found.hparams == {
        "scale": 4,
        "in_channels": 3,
        "out_channels": 3,
        "features": 64,
        "convs": 16,
    }
    reference = spandrel.ModelLoader(device="cpu").load_from_file(path).model.eval()
    crop = _real_crop(24, 20)
    ours, theirs = run_torch(found.model, crop), run_torch(reference, crop)
    np.testing.assert_array_equal(ours, theirs)

    out = tmp_path / "anime.onnx"
    report = export_onnx(path, out)
    assert report.source_kind == "community" and report.macs_per_output_pixel == 38700
    np.testing.assert_allclose(run_onnx(out, crop), theirs, atol=1e-5)
    meta = metadata(out)
    assert meta["srtool.arch"] == "compact" and meta["srtool.source"] == path.name
    assert json.loads(meta["srtool.training"])["architecture"] == "RealESRGAN Compact"


def test_community_safetensors_and_spandrel_only_architectures(tmp_path: Path) -> None:
    """A plain .safetensors community file; an ESRGAN file exported as spandrel builds it."""
    from safetensors.torch import save_file

    from srtool.models.community import load_community

    state = torch.load(require_shared(COMPACT_PTH), map_location="cpu", weights_only=True)
    plain = tmp_path / "compact.safetensors"
    save_file({k: v.contiguous() for k, v in state["params"].items()}, plain)
    assert load_community(plain).hparams["convs"] == 16

    torch.manual_seed(0)
    esrgan = build("rrdbnet", features=8, blocks=1, growth=16).eval()
    torch.save(esrgan.state_dict(), tmp_path / "esrgan_x4.pth")
    out = tmp_path / "esrgan.onnx"
    with pytest.raises(ModelError, match="spandrel could not build|does not recognise"):
        export_onnx(tmp_path / "esrgan_x4.pth", out)  # growth 16: spandrel reads only 32
    esrgan = build("rrdbnet", features=8, blocks=1, growth=32).eval()
    torch.save(esrgan.state_dict(), tmp_path / "esrgan_x4.pth")
    # The legacy exporter here: it is the documented fallback for community architectures.
    report = export_onnx(tmp_path / "esrgan_x4.pth", out, exporter="torchscript")
    assert (
        report.exporter == "torchscript"
        and report.arch == "spandrel.ESRGAN"
        and report.scale == 4
        and report.hparams is None
    )
    x = np.random.default_rng(6).random((1, 3, 11, 13), dtype=np.float32)
    np.testing.assert_allclose(run_onnx(out, x), run_torch(esrgan, x), atol=1e-5)


def _real_crop(h: int, w: int) -> np.ndarray:
    from PIL import Image

    img = np.asarray(Image.open(require_shared(SET5) / "baby.png").convert("RGB"))
    patch = img[100 : 100 + h, 200 : 200 + w].astype(np.float32) / 255.0
    return np.ascontiguousarray(patch.transpose(2, 0, 1)[None])


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_community_pickles_are_loaded_weights_only(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"body.0.weight": _Payload(str(marker))}, evil)
    with pytest.raises(ModelError, match="refused to load"):
        export_onnx(evil, tmp_path / "x.onnx")
    assert not marker.exists() and not (tmp_path / "x.onnx").exists()
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps({"w": _Payload(str(marker))}))
    with pytest.raises(ModelError):
        export_onnx(raw, tmp_path / "x.onnx")
    assert not marker.exists()


def test_unknown_community_architecture_is_a_clear_error(tmp_path: Path) -> None:
    weird = tmp_path / "weird.pth"
    torch.save({"encoder.layer.weight": torch.zeros(4, 4)}, weird)
    with pytest.raises(ModelError, match="spandrel does not recognise"):
        export_onnx(weird, tmp_path / "x.onnx")
    with pytest.raises(ModelError, match="unsupported model file type"):
        (tmp_path / "m.h5").write_bytes(b"x")
        export_onnx(tmp_path / "m.h5", tmp_path / "x.onnx")
    with pytest.raises(ModelError, match="not found"):
        export_onnx(tmp_path / "missing.pth", tmp_path / "x.onnx")


# -- verification catches broken exports --------------------------------------------------------


class _SizeBranch(torch.nn.Module):
    """Takes a Python branch on the input width: exporters bake in the example's branch."""

    scale = 2
    multiple_of = 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.interpolate(self.conv(x), scale_factor=2, mode="nearest")
        return y if x.shape[-1] % 2 == 0 else y + 0.5


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_parity_check_refuses_a_silently_specialised_export(tmp_path: Path, exporter: str) -> None:
    out = tmp_path / "bad.onnx"
    with pytest.raises(ModelError, match=r"disagree: max abs error 0\.5 .*\(2, 3, 37, 53\)"):
        export_onnx(_SizeBranch(), out, exporter=exporter)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temp files
    # Without the check the broken file is written: the check is what protects users.
    export_onnx(_SizeBranch(), out, exporter=exporter, check_parity=False)
    assert out.exists()


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    model = tiny("compact")
    with pytest.raises(UsageError, match="opset 17"):
        export_onnx(model, tmp_path / "m.onnx", opset=16)
    with pytest.raises(UsageError, match=r"\.onnx"):
        export_onnx(model, tmp_path / "m.bin")
    with pytest.raises(UsageError, match="calibration folder not found"):
        export_onnx(model, tmp_path / "m.onnx", int8_calib_dir=tmp_path / "nope")
    with pytest.raises(ModelError, match="no integer .scale"):
        export_onnx(torch.nn.Conv2d(3, 3, 3), tmp_path / "m.onnx")


# -- variants ----------------------------------------------------------------------------------


def test_fp16_variant_keeps_float32_io(tmp_path: Path) -> None:
    model = tiny("srresnet", scale=2)
    out = tmp_path / "model.onnx"
    report = export_onnx(model, out, fp16=True)
    (variant,) = report.variants
    assert variant.accepted and variant.path == variant_path(out, "fp16") == tmp_path / (
        "model.fp16.onnx"
    )
    proto = onnx.load(str(variant.path))
    onnx.checker.check_model(proto, full_check=True)
    float_t, half_t = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert proto.graph.input[0].type.tensor_type.elem_type == float_t
    assert proto.graph.output[0].type.tensor_type.elem_type == float_t
    conv_weights = {n.input[1] for n in proto.graph.node if n.op_type == "Conv"}
    assert {i.data_type for i in proto.graph.initializer if i.name in conv_weights} == {half_t}
    assert metadata(variant.path)["srtool.precision"] == "fp16"
    assert [r.shape for r in variant.parity] == [(1, 3, 64, 64), (2, 3, 37, 53)]
    assert all(40 < r.psnr_db < 200 and r.max_abs < 0.05 for r in variant.parity)
    x = np.random.default_rng(5).random((1, 3, 13, 11), dtype=np.float32)
    got = run_onnx(variant.path, x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, run_torch(model, x), atol=0.05)


def test_int8_variant_is_quantised_per_channel_and_measured(tmp_path: Path) -> None:
    set5 = require_shared(SET5)
    model = tiny("compact", scale=4)
    out = tmp_path / "model.onnx"
    report = export_onnx(
        model,
        out,
        int8_calib_dir=set5,
        int8_crops=4,
        int8_crop_size=32,
        int8_max_loss_db=math.inf,
    )
    (variant,) = report.variants
    assert variant.precision == "int8" and variant.accepted
    assert variant.path == tmp_path / "model.int8.onnx"
    proto = onnx.load(str(variant.path))
    ops = [n.op_type for n in proto.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {i.name: i for i in proto.graph.initializer}
    weight_scales = [
        inits[n.input[1]]
        for n in proto.graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in inits
        and inits[n.input[0]].data_type == onnx.TensorProto.INT8
    ]
    assert weight_scales and all(len(s.dims) == 1 and s.dims[0] > 1 for s in weight_scales)
    assert metadata(variant.path)["srtool.precision"] == "int8"
    assert variant.eval_images == 5 and variant.calib_crops == 4
    assert math.isfinite(variant.psnr_fp32) and math.isfinite(variant.psnr_variant)
    assert variant.speedup > 0 and 0 < variant.fidelity_psnr < 200
    card = out.with_suffix(".md").read_text()
    assert "## int8" in card and "speed-up" in card


def test_int8_variant_beyond_the_loss_budget_is_not_written(tmp_path: Path) -> None:
    set5 = require_shared(SET5)
    out = tmp_path / "model.onnx"
    stale = variant_path(out, "int8")
    stale.write_bytes(b"old")
    report = export_onnx(
        tiny("compact", scale=4),
        out,
        int8_calib_dir=set5,
        int8_eval_dir=set5,
        int8_crops=2,
        int8_crop_size=32,
        int8_max_loss_db=-100.0,
        check_parity=False,
    )
    (variant,) = report.variants
    assert not variant.accepted and variant.path is None and "rejected" in variant.note
    assert not stale.exists() and out.exists()


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_exports_a_checkpoint_and_prints_parity(tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path / "ck.safetensors", tiny("compact", scale=2), meta={"step": 1})
    out = tmp_path / "out" / "model.onnx"
    result = CliRunner().invoke(app, ["export", str(ckpt), "-o", str(out), "--fp16"])
    assert result.exit_code == 0, result.output
    assert "exported" in result.output and "parity with PyTorch fp32" in result.output
    assert "2×3×37×53" in result.output and "fp16" in result.output
    assert out.exists() and variant_path(out, "fp16").exists() and out.with_suffix(".md").exists()
    assert metadata(out)["srtool.scale"] == "2"


def test_cli_no_parity_and_errors(tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path / "ck.safetensors", tiny("compact"), meta={})
    runner = CliRunner()
    result = runner.invoke(
        app, ["export", str(ckpt), "-o", str(tmp_path / "m.onnx"), "--no-parity", "--no-card"]
    )
    assert result.exit_code == 0, result.output
    assert "parity not checked" in result.output and not (tmp_path / "m.md").exists()

    missing = runner.invoke(app, ["export", str(tmp_path / "nope.pth"), "-o", "x.onnx"])
    assert missing.exit_code == 2 and "error:" in missing.output and "not found" in missing.output
    lonely = runner.invoke(
        app, ["export", str(ckpt), "-o", str(tmp_path / "n.onnx"), "--int8-eval", str(tmp_path)]
    )
    assert lonely.exit_code == 2 and "--int8-eval needs --int8" in lonely.output
    bad_opset = runner.invoke(app, ["export", str(ckpt), "-o", "x.onnx", "--opset", "13"])
    assert bad_opset.exit_code == 2
