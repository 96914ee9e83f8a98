"""``srtool evaluate``: the published bicubic baselines, models compared through the CLI, report
files parsed back, clear failures, and the TTA / back-projection functions."""

from __future__ import annotations

import csv
import json
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


def test_lpips_is_measured_or_clearly_skipped(shared_data: Path, tmp_path: Path) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    shutil.copy(shared_data / "Set5" / "bird.png", hr)
    report = evaluate(hr_dir=hr, lpips=True, with_ms_ssim=False)
    values = [img.lpips for img in report.score("hr", "bicubic").images]
    if "lpips" in report.metrics:
        assert all(v is not None and 0.0 <= v <= 1.0 for v in values)
    else:
        assert values == [None]
        assert any(n.startswith("LPIPS skipped:") for n in report.notes), report.notes


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
