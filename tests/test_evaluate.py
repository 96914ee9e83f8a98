"""``srtool evaluate``: the published bicubic baselines, models compared through the CLI, report
files parsed back, clear failures, and the TTA / back-projection functions."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from srtool.cli import app
from srtool.errors import UsageError
from srtool.evaluate import evaluate
from srtool.imageio import from_float
from srtool.infer.picture import back_project, enhance, tta_upscale
from srtool.metrics import psnr
from srtool.resize import imresize, modcrop


def _text(result) -> str:  # noqa: ANN001 - Rich wraps lines at the console width
    return " ".join(result.output.split())


@pytest.mark.parametrize(
    ("bench", "scale", "expected"),
    [("Set5", 4, 28.43), ("Set5", 2, 33.67), ("Set14", 4, 26.00), ("BSD100", 4, 25.96)],
)
def test_bicubic_baseline_matches_published(
    shared_data: Path, bench: str, scale: int, expected: float
) -> None:
    report = evaluate([bench], [], scale=scale, data_root=shared_data, with_ms_ssim=False)
    score = report.score(bench, "bicubic")
    assert len(score.images) == {"Set5": 5, "Set14": 14, "BSD100": 100}[bench]
    assert score.mean("psnr_y") == pytest.approx(expected, abs=0.02)
    assert report.benchmarks[0]["reference_copy"] is True


def test_cli_compares_models_and_writes_reports(
    shared_data: Path, tiny_model_x4: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--bench",
            "Set5",
            "--model",
            str(tiny_model_x4),
            "--model",
            "nearest",
            "--data-root",
            str(shared_data),
            "--rgb",
            "--per-image",
            "--json",
            str(out / "r.json"),
            "--csv",
            str(out / "r.csv"),
            "--markdown",
            str(out / "r.md"),
            "--save-images",
            str(out / "img"),
        ],
    )
    assert result.exit_code == 0, result.output
    text = _text(result)
    assert "PSNR-Y" in text and "tiny-x4" in text and "28.43" in text

    data = json.loads((out / "r.json").read_text())
    assert data["scale"] == 4
    assert [m["label"] for m in data["methods"]] == ["bicubic", "nearest", "tiny-x4"]
    rows = {r["method"]: r for r in data["results"]}
    assert rows["bicubic"]["psnr_y"] == pytest.approx(28.43, abs=0.02)
    assert rows["nearest"]["psnr_y"] < rows["bicubic"]["psnr_y"]
    assert len(rows["tiny-x4"]["per_image"]) == 5
    assert rows["tiny-x4"]["mpix_per_s"] > 0 and rows["tiny-x4"]["psnr_rgb"] is not None
    assert any("LPIPS not computed" in n for n in data["notes"])

    with open(out / "r.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 3 * (1 + 5)  # a mean row and five image rows per method
    mean = next(r for r in table if r["method"] == "bicubic" and r["image"] == "mean")
    assert float(mean["psnr_y"]) == pytest.approx(rows["bicubic"]["psnr_y"], abs=1e-5)

    markdown = (out / "r.md").read_text()
    assert "| bicubic | **28.43** / **0.8111** |" in markdown
    assert "Per image, Set5" in markdown and "Protocol:" in markdown

    sheet = Image.open(out / "img" / "Set5" / "x4" / "compare" / "bird.png")
    assert sheet.mode == "RGB" and sheet.width > 512
    sr = np.asarray(Image.open(out / "img" / "Set5" / "x4" / "tiny-x4" / "bird.png"))
    hr = modcrop(np.asarray(Image.open(shared_data / "Set5" / "bird.png")), 4)
    assert psnr(sr, hr, crop_border=4) == pytest.approx(rows["tiny-x4"]["per_image"][1]["psnr_y"])


def test_given_lr_folder_matches_generated_lr(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "matlab_bicubic" / "Set5" / "image_SRF_4"
    if not source.is_dir():
        pytest.skip(f"{source} missing")
    (tmp_path / "hr").mkdir()
    (tmp_path / "lr").mkdir()
    for path in source.glob("*_HR.png"):
        shutil.copy(path, tmp_path / "hr")
    for path in source.glob("*_LR.png"):
        shutil.copy(path, tmp_path / "lr")
    given = evaluate(hr_dir=tmp_path / "hr", lr_dir=tmp_path / "lr", with_ms_ssim=False)
    made = evaluate(["Set5"], data_root=shared_data, with_ms_ssim=False)
    assert given.benchmarks[0]["lr"] == "given"
    assert given.score("hr", "bicubic").mean("psnr_y") == pytest.approx(
        made.score("Set5", "bicubic").mean("psnr_y"), abs=1e-9
    )


def test_missing_benchmark_and_bad_requests(
    tmp_path: Path, shared_data: Path, tiny_model_x2: Path
) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--bench", "Urban100", "--data-root", str(tmp_path)])
    assert result.exit_code == 2
    text = _text(result)
    assert "srtool data fetch Urban100" in text and str(tmp_path / "Urban100") in text
    result = runner.invoke(app, ["evaluate", "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "nothing to evaluate" in _text(result)
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--bench",
            "Set5",
            "--data-root",
            str(shared_data),
            "--model",
            str(tiny_model_x2),
            "--scale",
            "4",
        ],
    )
    assert result.exit_code == 2 and "x2 model" in _text(result)
    with pytest.raises(UsageError, match="no images"):
        evaluate(hr_dir=tmp_path)


def test_tta_and_back_projection_rows(shared_data: Path, tiny_model_x4: Path) -> None:
    report = evaluate(
        ["Set5"],
        [str(tiny_model_x4)],
        data_root=shared_data,
        tta=True,
        back_projection=2,
        with_ms_ssim=False,
    )
    labels = [m.label for m in report.methods]
    assert labels == ["bicubic", "tiny-x4", "tiny-x4+TTA", "tiny-x4+BP2", "tiny-x4+TTA+BP2"]
    plain = report.score("Set5", "tiny-x4")
    tta = report.score("Set5", "tiny-x4+TTA")
    bp = report.score("Set5", "tiny-x4+BP2")
    # A random-weight network is far from bicubic-consistent: both must change its output,
    # and back-projection pulls it towards the LR it came from.
    assert tta.mean("psnr_y") != plain.mean("psnr_y")
    assert bp.mean("psnr_y") > plain.mean("psnr_y")


def test_evaluate_does_not_import_torch(shared_data: Path, tiny_model_x4: Path) -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from srtool.cli import app; "
        f"r = CliRunner().invoke(app, ['evaluate', '--bench', 'Set5', '--model', "
        f"{str(tiny_model_x4)!r}, '--data-root', {str(shared_data)!r}, '--no-ms-ssim']); "
        "assert r.exit_code == 0, r.output; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ----------------------------------------------------------------------------- enhance


def _photo() -> np.ndarray:
    path = Path(__file__).parent / "data" / "photos" / "astronaut.png"
    img = np.asarray(Image.open(path).convert("RGB"))[:96, :80]
    return img.astype(np.float32) / 255.0


def test_tta_of_an_equivariant_upscaler_is_itself() -> None:
    lr = _photo()

    def nearest(img: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)

    np.testing.assert_allclose(tta_upscale(nearest, lr), nearest(lr), atol=1e-6)


def test_tta_averages_the_eight_symmetries() -> None:
    lr = _photo()[:40, :24]
    calls: list[tuple[int, ...]] = []

    def shifted(img: np.ndarray) -> np.ndarray:  # not equivariant: moves content right by one
        calls.append(img.shape)
        return np.roll(img, 1, axis=1)

    out = tta_upscale(shifted, lr)
    assert len(calls) == 8 and {(40, 24, 3), (24, 40, 3)} == set(calls)
    # Shifts in the 4 directions cancel to the average of the four neighbours.
    expected = (np.roll(lr, 1, 1) + np.roll(lr, -1, 1) + np.roll(lr, 1, 0) + np.roll(lr, -1, 0)) / 4
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_back_projection_restores_lr_consistency() -> None:
    hr = _photo()
    lr = imresize(hr, 0.25)
    blurry = np.clip(imresize(imresize(lr, 0.5), 8), 0, 1)  # a poor x4 estimate

    def error(sr: np.ndarray) -> float:
        return float(np.abs(imresize(sr, 0.25) - lr).mean())

    once = back_project(lr, blurry, 4, 1)
    thrice = back_project(lr, blurry, 4, 3)
    assert error(thrice) < error(once) < error(blurry)
    assert psnr(thrice, hr) > psnr(blurry, hr)
    np.testing.assert_array_equal(back_project(lr, blurry, 4, 0), blurry.astype(np.float32))
    grey = enhance(lambda x: imresize(x, 4), lr[..., :1], scale=4, tta=True, back_projection=1)
    assert grey.shape == (96, 80, 1)
    with pytest.raises(ValueError, match="not x4"):
        back_project(lr, hr[:-4], 4, 1)


def test_quantise_rounds_half_up_and_clips() -> None:
    values = np.array([-0.1, 0.0, 0.5 / 255, 1.49 / 255, 1.0, 1.2], np.float32)
    assert from_float(values, 8).tolist() == [0, 0, 1, 1, 255, 255]


def test_checkpoint_runs_through_the_onnx_path(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from srtool.models import build
    from srtool.models.checkpoint import save_checkpoint

    ckpt = save_checkpoint(
        tmp_path / "tiny.safetensors", build("compact", scale=2, features=8, convs=2), meta={}
    )
    report = evaluate(["Set5"], [str(ckpt)], data_root=shared_data, with_ms_ssim=False)
    info = report.methods[1]
    assert (info.label, info.kind, info.scale, report.scale) == ("tiny", "checkpoint", 2, 2)
    score = report.score("Set5", "tiny")
    assert len(score.images) == 5 and 5 < score.mean("psnr_y") < 60


def test_lpips_column_in_every_report(
    shared_data: Path, shared_weights: Path, tiny_model_x4: Path, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    from srtool.evaluate.lpips import lpips_distance

    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--bench",
            "Set5",
            "--model",
            str(tiny_model_x4),
            "--data-root",
            str(shared_data),
            "--lpips-weights",  # implies --lpips
            str(shared_weights / "lpips_alex_v0.1.safetensors"),
            "--no-ms-ssim",
            "--per-image",
            "--json",
            str(out / "r.json"),
            "--csv",
            str(out / "r.csv"),
            "--markdown",
            str(out / "r.md"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "LPIPS" in result.output
    data = json.loads((out / "r.json").read_text())
    assert data["metrics"] == ["psnr_y", "ssim_y", "lpips"]
    rows = {r["method"]: r for r in data["results"]}
    # published for bicubic Set5 x4 (AlexNet LPIPS, 8-bit, border cropped): about 0.34
    assert rows["bicubic"]["lpips"] == pytest.approx(0.3435, abs=2e-3)
    assert rows["tiny-x4"]["lpips"] > rows["bicubic"]["lpips"]  # random weights look worse
    # each value is srtool's LPIPS of the rounded SR and the HR, both border-cropped
    hr = modcrop(np.asarray(Image.open(shared_data / "Set5" / "bird.png")), 4)
    sr = imresize(imresize(hr, 0.25), 4)
    bird = next(i for i in rows["bicubic"]["per_image"] if i["image"] == "bird.png")
    assert bird["lpips"] == pytest.approx(
        lpips_distance(sr[4:-4, 4:-4], hr[4:-4, 4:-4], weights=shared_weights), abs=1e-6
    )

    with open(out / "r.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    mean = next(r for r in table if r["method"] == "bicubic" and r["image"] == "mean")
    assert float(mean["lpips"]) == pytest.approx(rows["bicubic"]["lpips"], abs=1e-6)
    markdown = (out / "r.md").read_text()
    assert "LPIPS (lower is better):" in markdown
    assert f"| bicubic | **{rows['bicubic']['lpips']:.4f}** |" in markdown  # lowest is bold
    assert any(n.startswith("LPIPS v0.1 (AlexNet)") for n in data["notes"])


# ----------------------------------------------------------------------------- realistic LR


# OpenCV's thread pool does not survive fork(): once this process has run OpenCV's threaded
# resizes and filters on whole images, the forked DataLoader workers of the training tests that
# run later in the same pytest process deadlock (their worker_init calls cv2.setNumThreads). The
# realistic LR, OpenCV on whole images, is therefore made in subprocesses here.


def _python(code: str, hash_seed: str = "0") -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return done.stdout


def test_realistic_lr_is_fixed_per_image(shared_data: Path) -> None:
    from srtool.evaluate.benchmarks import realistic_params, realistic_seed

    code = (
        "import hashlib, json, numpy as np; from PIL import Image; "
        "from srtool.evaluate.benchmarks import make_lr; from srtool.resize import modcrop; "
        f"hr = modcrop(np.asarray(Image.open({str(shared_data / 'Set5' / 'baby.png')!r})), 4); "
        "lrs = {'baby': make_lr(hr, 4, 'baby.png', 'realistic'), "
        "'again': make_lr(hr, 4, 'baby.png', 'realistic'), "
        "'bicubic': make_lr(hr, 4, 'baby.png', 'bicubic'), "
        "'other': make_lr(hr, 4, 'other.png', 'realistic'), "
        "'grey': make_lr(hr[..., :1], 4, 'baby.png', 'realistic')}; "
        "print(json.dumps({k: [hashlib.sha256(v.tobytes()).hexdigest(), v.shape, str(v.dtype)] "
        "for k, v in lrs.items()}))"
    )
    first = json.loads(_python(code, "1"))
    assert first == json.loads(_python(code, "2"))  # the same in another process
    assert first["baby"] == first["again"]  # deterministic
    assert first["baby"][1:] == [[128, 128, 3], "uint8"] and first["grey"][1] == [128, 128, 1]
    assert first["baby"][0] != first["bicubic"][0]
    assert first["baby"][0] != first["other"][0]  # seeded by the file name
    # the seed comes from the file name alone (SHA-256, not Python's salted hash): the same
    # in every process and on every machine
    assert realistic_seed("baby.png") == 3042193822670970006
    # and the choices drawn from it are pinned: a change to the sampler or to the settings moves
    # every realistic score, so it must show up here (and be noted in the changelog)
    params = realistic_params("baby.png")
    assert [
        (s.resize_mode, s.noise, s.noise_gray, s.noise_seed, s.jpeg) for s in params.stages
    ] == [
        ("area", "gaussian", True, 1301092929, 88),
        ("bicubic", "gaussian", True, 1353105450, 46),
    ]
    assert (params.final_mode, params.final_jpeg) == ("bilinear", 48)
    stage = params.stages[0]
    assert stage.blur == pytest.approx((2.282574238, 0.528430875, 0.769969619))
    assert (stage.resize, stage.noise_level) == pytest.approx((0.332648275, 4.130411711))


def test_realistic_degradation_in_the_report(shared_data: Path, tmp_path: Path) -> None:
    from srtool.evaluate import PROTOCOL

    bicubic = evaluate(["Set5"], data_root=shared_data, with_ms_ssim=False)
    assert bicubic.protocol == PROTOCOL and bicubic.degradation == "bicubic"
    assert bicubic.benchmarks[0]["lr"] == "MATLAB bicubic"
    with pytest.raises(UsageError, match="bicubic or realistic"):
        evaluate(["Set5"], data_root=shared_data, degradation="jpeg")
    reports = []
    for run in ("first", "again"):
        out = tmp_path / f"{run}.json"
        _python(
            "from srtool.evaluate import evaluate; from srtool.evaluate.reports import write_json; "
            f"write_json(evaluate(['Set5'], data_root={str(shared_data)!r}, with_ms_ssim=False, "
            f"degradation='realistic'), {str(out)!r})"
        )
        reports.append(json.loads(out.read_text()))
    first, again = reports
    (row,) = first["results"]
    assert [i["psnr_y"] for i in row["per_image"]] == [
        i["psnr_y"] for i in again["results"][0]["per_image"]
    ]
    assert row["psnr_y"] < 25  # far harder than the bicubic protocol's 28.43 dB
    assert "'realistic' degradation" in first["protocol"] and "MATLAB" not in first["protocol"]
    assert first["degradation"] == "realistic"
    assert first["benchmarks"][0]["lr"].startswith("realistic")


def test_realistic_lpips_without_weights_imports_no_torch(
    shared_data: Path, tmp_path: Path
) -> None:
    """--lpips where no weights are found says so in one line, still without importing torch."""
    code = (
        "import sys; from typer.testing import CliRunner; from srtool.cli import app; "
        f"r = CliRunner().invoke(app, ['evaluate', '--hr', {str(shared_data / 'Set5')!r}, "
        "'--degradation', 'realistic', '--lpips', '--no-ms-ssim']); "
        "assert r.exit_code == 0, r.output; "
        "assert 'LPIPS not computed: weights' in ' '.join(r.output.split()), r.output; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    env = {k: v for k, v in os.environ.items() if k != "SRTOOL_LPIPS_WEIGHTS"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=env)


def test_a_corrupt_image_is_reported_and_the_rest_scored(shared_data: Path, tmp_path: Path) -> None:
    """One truncated HR image: listed as failed (table, JSON, notes), the other four scored,
    exit 1."""
    hr = tmp_path / "hr"
    shutil.copytree(shared_data / "Set5", hr)
    (hr / "bird.png").write_bytes((hr / "bird.png").read_bytes()[:3000])
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--hr",
            str(hr),
            "--no-ms-ssim",
            "--per-image",
            "--json",
            str(tmp_path / "r.json"),
        ],
    )
    assert result.exit_code == 1, result.output
    text = _text(result)
    assert "failed hr bird.png:" in text and "truncated PNG" in text
    assert "(4 images, LR MATLAB bicubic)" in text and "Traceback" not in text
    data = json.loads((tmp_path / "r.json").read_text())
    assert [f["image"] for f in data["failed"]] == ["bird.png"]
    assert data["benchmarks"][0]["failed"] == ["bird.png"]
    scored = [i["image"] for i in data["results"][0]["per_image"]]
    assert scored == ["baby.png", "butterfly.png", "head.png", "woman.png"]
    assert any("1 image(s) could not be read" in note for note in data["notes"])


@pytest.mark.parametrize(
    "model,label",
    [
        ("efficient-x4", "efficient-x4"),
        ("exports/efficient-x4/model.onnx", "efficient-x4"),
        ("exports/efficient-x4/model.int8.onnx", "efficient-x4-int8"),
        ("exports/compact-x4/model.fp16.onnx", "compact-x4-fp16"),
        ("runs/demo/checkpoints/best.safetensors", "checkpoints"),
        ("mine.int8.onnx", "mine-int8"),
    ],
)
def test_row_labels_name_the_model_and_its_precision(model: str, label: str) -> None:
    """An int8 or fp16 file beside its fp32 model gets its own row name, not ``name#2``."""
    from srtool.evaluate.methods import label_for

    assert label_for(model) == label
