"""Quantisation-aware fine-tuning: a tiny SPAN trained in fake int8 from an un-collapsed
checkpoint, its checkpoint (deployed, plain, with activation ranges), resume, and the int8 export
that uses those ranges and matches the fake-int8 network."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from srtool.errors import UsageError
from srtool.models import build
from srtool.models.checkpoint import load_checkpoint, load_checkpoint_meta
from srtool.train import load_recipe
from srtool.train.loop import TrainingInterrupted, train
from srtool.train.qat import QuantConv2d, load_quant_ranges, prepare_qat, quant_ranges

SPAN = "{features = 8, blocks = 1, convs = 2}"
BASE = [
    "model.arch=span",
    f"model.hparams={SPAN}",
    "data.patch_size=32",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.val_count=2",
    "train.log_every=1",
    "train.val_every=2",
    "train.save_every=2",
    "train.amp=off",
]
QAT = ["quant.qat=true", "train.ema_decay=0", "optim.lr=1e-4"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread: None) -> None:
    """Every test and module fixture here runs torch on one thread (see ``one_torch_thread``)."""


@pytest.fixture(scope="module")
def psnr_checkpoint(t91: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny un-collapsed SPAN after a few PSNR steps."""
    out = tmp_path_factory.mktemp("psnr")
    recipe = load_recipe(None, BASE + ["train.steps=4", "optim.lr=3e-3", "train.save_every=4"])
    res = train(recipe, data=[str(t91)], out_dir=out, device="cpu")
    assert load_checkpoint_meta(res.last_checkpoint)["hparams"]["deploy"] is False
    return res.last_checkpoint


@pytest.fixture(scope="module")
def qat_run(t91: Path, psnr_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qat")
    recipe = load_recipe(None, BASE + QAT + ["train.steps=4", "quant.keep_float=['head']"])
    train(recipe, data=[str(t91)], out_dir=out, device="cpu", init_from=psnr_checkpoint)
    return out


def test_qat_checkpoint_is_a_plain_deployed_checkpoint_with_ranges(qat_run: Path) -> None:
    path = qat_run / "checkpoints" / "step_0000004.safetensors"
    model, meta = load_checkpoint(path)
    assert meta["hparams"]["deploy"] is True
    assert all(
        type(m) is torch.nn.Conv2d for m in model.modules() if isinstance(m, torch.nn.Conv2d)
    )
    plain = build("span", scale=4, features=8, blocks=1, convs=2, deploy=True)
    assert model.state_dict().keys() == plain.state_dict().keys()
    q = meta["quantization"]
    assert q["keep_float"] == ["head"] and q["percentile"] == 99.999
    ranges = q["ranges"]
    names = [n for n, m in plain.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert sorted(ranges) == sorted(names)
    # one range per tensor: an input that is another conv's output has none of its own
    assert "input" not in ranges["blocks.0.convs.0"]  # head's output
    assert "input" not in ranges["upsampler.0"]  # fuse's output
    assert "input" not in ranges["head"]  # float: the image is not quantised
    assert {"input", "output"} <= set(ranges["blocks.0.convs.1"])  # after the LeakyReLU
    lo, hi = ranges["blocks.0.convs.1"]["input"]
    assert lo < 0 < hi and -lo < 0.2 * hi  # LeakyReLU output: slope 0.05 below zero


def test_qat_validates_the_fake_int8_network(qat_run: Path) -> None:
    import json

    lines = (qat_run / "metrics.jsonl").read_text().splitlines()
    val = [json.loads(line) for line in lines if "val_psnr" in line]
    assert [r["step"] for r in val] == [2, 4] and all(np.isfinite(r["val_psnr"]) for r in val)


def test_qat_can_start_from_a_deployed_checkpoint(t91: Path, qat_run: Path, tmp_path: Path) -> None:
    recipe = load_recipe(None, BASE + QAT + ["train.steps=2"])
    init = qat_run / "checkpoints" / "step_0000004.safetensors"
    res = train(recipe, data=[str(t91)], out_dir=tmp_path / "again", device="cpu", init_from=init)
    _, meta = load_checkpoint(res.last_checkpoint)
    assert meta["hparams"]["deploy"] is True and meta["quantization"]["keep_float"] == []


def test_qat_resume_restores_the_ranges(t91: Path, psnr_checkpoint: Path, tmp_path: Path) -> None:
    recipe = load_recipe(None, BASE + QAT + ["train.steps=4", "train.save_every=4"])
    common = dict(data=[str(t91)], device="cpu", init_from=psnr_checkpoint)
    train(recipe, out_dir=tmp_path / "straight", **common)

    def interrupt(event) -> None:
        if event.kind == "step" and event.step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train(recipe, out_dir=tmp_path / "split", progress=interrupt, **common)
    train(recipe, out_dir=tmp_path / "split", resume=True, data=[str(t91)], device="cpu")
    a = load_checkpoint_meta(tmp_path / "straight" / "checkpoints" / "step_0000004.safetensors")
    b = load_checkpoint_meta(tmp_path / "split" / "checkpoints" / "step_0000004.safetensors")

    def flat(meta: dict) -> list[float]:
        ranges = meta["quantization"]["ranges"]
        return [
            v for name in sorted(ranges) for key in sorted(ranges[name]) for v in ranges[name][key]
        ]

    assert flat(a) == pytest.approx(flat(b))
    assert a["tensors_sha256"] == b["tensors_sha256"]


def test_freeze_after_holds_the_ranges() -> None:
    torch.manual_seed(0)
    model = build("span", scale=2, features=8, blocks=1, convs=1, deploy=True)
    prepare_qat(model)
    model.train()
    model(torch.rand(1, 3, 16, 16))
    first = quant_ranges(model)
    from srtool.train.qat import set_observing

    set_observing(model, False)
    model(torch.rand(1, 3, 16, 16) * 3)
    assert quant_ranges(model) == first
    set_observing(model, True)
    model(torch.rand(1, 3, 16, 16) * 3)
    assert quant_ranges(model) != first
    twin = build("span", scale=2, features=8, blocks=1, convs=1, deploy=True)
    prepare_qat(twin)
    load_quant_ranges(twin, first)
    assert quant_ranges(twin) == first
    assert all(isinstance(m, QuantConv2d) for m in twin.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("quant.percentile=40", "quant.percentile"),
        ("quant.momentum=0", "quant.momentum"),
        ("quant.freeze_after=-1", "quant.freeze_after"),
    ],
)
def test_bad_quant_settings_are_refused(override: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_recipe(None, BASE + QAT + [override])


def test_keep_float_must_name_a_conv(t91: Path, psnr_checkpoint: Path, tmp_path: Path) -> None:
    recipe = load_recipe(None, BASE + QAT + ["train.steps=1", "quant.keep_float=['nope']"])
    with pytest.raises(UsageError, match="nope is not a convolution"):
        train(
            recipe, data=[str(t91)], out_dir=tmp_path / "r", device="cpu", init_from=psnr_checkpoint
        )


def test_int8_export_uses_the_qat_ranges_and_matches_the_fake_int8_net(
    qat_run: Path, t91: Path, tmp_path: Path
) -> None:
    import onnx
    import onnxruntime as ort

    from srtool.export import export_onnx
    from srtool.export.quantize import calibration_crops

    path = qat_run / "checkpoints" / "step_0000004.safetensors"
    report = export_onnx(path, tmp_path / "model.onnx", int8_calib_dir=t91, int8_max_loss_db=100.0)
    (variant,) = report.variants
    assert variant.accepted and "quantisation-aware ranges" in variant.note
    int8 = tmp_path / "model.int8.onnx"
    graph = onnx.load(str(int8)).graph
    float_convs = [n for n in graph.node if n.op_type == "Conv" and n.input[1] == "head.weight"]
    assert len(float_convs) == 1  # keep_float: the head's weight is not dequantised
    # the exported int8 graph computes what the fake-int8 network computed in training
    model, meta = load_checkpoint(path)
    q = meta["quantization"]
    prepare_qat(model, keep_float=q["keep_float"])
    load_quant_ranges(model, q["ranges"])
    model.eval()
    x = calibration_crops(t91, channels=3, crop=32, count=2, seed=1)[0]
    with torch.no_grad():
        fake = model(torch.from_numpy(x)).numpy()

    def run(p: Path) -> np.ndarray:
        return ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(
            None, {"lr": x}
        )[0]

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))

    real, fp32 = run(int8), run(tmp_path / "model.onnx")
    assert psnr(fake, real) > psnr(fp32, real) + 6.0
    # --int8-recalibrate ignores the recorded ranges
    again = export_onnx(
        path,
        tmp_path / "re" / "model.onnx",
        int8_calib_dir=t91,
        int8_max_loss_db=100.0,
        int8_recalibrate=True,
    )
    assert "quantisation-aware" not in again.variants[0].note


def test_int8_from_quantises_the_qat_checkpoint_against_the_psnr_fp32(
    qat_run: Path, psnr_checkpoint: Path, t91: Path, tmp_path: Path
) -> None:
    from srtool.export import export_onnx

    qat = qat_run / "checkpoints" / "step_0000004.safetensors"
    report = export_onnx(
        psnr_checkpoint,
        tmp_path / "model.onnx",
        int8_calib_dir=t91,
        int8_max_loss_db=100.0,
        int8_source=qat,
        check_parity=False,
        write_card=False,
    )
    (variant,) = report.variants
    assert variant.accepted and f"quantised from {qat}" in variant.note
    assert "quantisation-aware ranges" in variant.note
    assert report.metadata["srtool.precision"] == "fp32"
    other = tmp_path / "other.safetensors"
    build_other = build("span", scale=4, features=4, blocks=1, convs=2)
    from srtool.models.checkpoint import save_checkpoint

    save_checkpoint(other, build_other)
    with pytest.raises(UsageError, match="is not the network of"):
        export_onnx(psnr_checkpoint, tmp_path / "x.onnx", int8_calib_dir=t91, int8_source=other)
