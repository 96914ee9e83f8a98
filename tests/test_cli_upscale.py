"""`srtool upscale` end to end through the CLI, on real files and real onnxruntime sessions."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from onnx_factory import build_sr_model
from PIL import Image
from typer.testing import CliRunner

from srtool.cli import app

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, ["upscale", *args], env=env)


@pytest.fixture()
def photo_dir(tmp_path: Path, shared_data: Path) -> Path:
    """Real photos (downscaled Set5 crops keep the suite fast) in a nested folder."""
    root = tmp_path / "photos"
    (root / "nested").mkdir(parents=True)
    for i, name in enumerate(["baby", "bird", "butterfly"]):
        image = Image.open(shared_data / "Set5" / f"{name}.png").convert("RGB")
        image = image.crop((0, 0, 96, 80))
        target = root / ("nested" if i == 2 else "") / f"{name}.png"
        image.save(target)
    return root


def test_folder_upscale_mirrors_tree(photo_dir: Path, tmp_path: Path, tiny_model_x2: Path) -> None:
    out = tmp_path / "out"
    result = run(str(photo_dir), str(out), "--model", str(tiny_model_x2))
    assert result.exit_code == 0, result.output
    produced = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert produced == ["baby.png", "bird.png", "nested/butterfly.png"]
    assert Image.open(out / "nested" / "butterfly.png").size == (192, 160)
    assert "3 done, 0 skipped, 0 failed" in result.output


def test_bad_files_reported_batch_continues(
    photo_dir: Path, tmp_path: Path, tiny_model_x2: Path
) -> None:
    (photo_dir / "empty.png").write_bytes(b"")
    (photo_dir / "text.jpg").write_text("this is not an image")
    good = (photo_dir / "baby.png").read_bytes()
    (photo_dir / "truncated.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "out"
    result = run(str(photo_dir), str(out), "--model", str(tiny_model_x2))
    assert result.exit_code == 1
    for name in ["empty.png", "text.jpg", "truncated.png"]:
        assert name in result.output
        assert not (out / name).exists()
    assert "Traceback" not in result.output
    assert "3 done, 0 skipped, 3 failed" in result.output
    assert (out / "baby.png").exists() and (out / "nested" / "butterfly.png").exists()


def test_skip_existing_resumes(photo_dir: Path, tmp_path: Path, tiny_model_x2: Path) -> None:
    out = tmp_path / "out"
    assert run(str(photo_dir / "baby.png"), str(out), "--model", str(tiny_model_x2)).exit_code == 0
    before = (out / "baby.png").stat().st_mtime_ns
    result = run(str(photo_dir), str(out), "--model", str(tiny_model_x2), "--skip-existing")
    assert result.exit_code == 0
    assert "2 done, 1 skipped" in result.output
    assert (out / "baby.png").stat().st_mtime_ns == before


def test_outscale_format_quality_suffix(
    photo_dir: Path, tmp_path: Path, tiny_model_x2: Path
) -> None:
    src = photo_dir / "bird.png"
    out = tmp_path / "out"
    result = run(
        str(src),
        str(out),
        "--model",
        str(tiny_model_x2),
        "--outscale",
        "1.5",
        "--format",
        "jpg",
        "--quality",
        "80",
        "--suffix",
        "_big",
    )
    assert result.exit_code == 0, result.output
    image = Image.open(out / "bird_big.jpg")
    assert image.format == "JPEG" and image.size == (144, 120)
    result = run(str(src), str(out / "x8.png"), "--model", str(tiny_model_x2), "--outscale", "8")
    assert result.exit_code == 0, result.output
    assert Image.open(out / "x8.png").size == (768, 640)


def test_sixteen_bit_grey_and_alpha_survive(tmp_path: Path, tiny_model_x2: Path) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    import cv2

    rgb16 = rng.integers(0, 65536, (20, 24, 3), dtype=np.uint16)
    cv2.imwrite(str(src / "deep.png"), rgb16[:, :, ::-1])
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8), "L").save(src / "grey.png")
    rgba = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    rgba[:10, :, 3] = 0
    rgba[10:, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(src / "alpha.png")
    out = tmp_path / "out"
    for alpha_mode in ("resize", "model"):
        result = run(
            str(src), str(out / alpha_mode), "--model", str(tiny_model_x2), "--alpha", alpha_mode
        )
        assert result.exit_code == 0, result.output
        deep = cv2.imread(str(out / alpha_mode / "deep.png"), cv2.IMREAD_UNCHANGED)
        assert deep.dtype == np.uint16 and deep.shape == (40, 48, 3)
        assert Image.open(out / alpha_mode / "grey.png").mode == "L"
        alpha = np.asarray(Image.open(out / alpha_mode / "alpha.png"))
        assert alpha.shape == (40, 48, 4)
        if alpha_mode == "resize":  # (the test model has random weights: no values to expect)
            assert alpha[:16, :, 3].max() < 40 and alpha[24:, :, 3].min() > 215


def test_usage_errors_exit_2(photo_dir: Path, tmp_path: Path, tiny_model_x2: Path) -> None:
    cases = [
        [str(tmp_path / "missing"), str(tmp_path / "o"), "--model", str(tiny_model_x2)],
        [str(photo_dir), str(tmp_path / "o"), "--model", str(tmp_path / "nope.onnx")],
        [str(photo_dir), str(tmp_path / "o"), "--model", "no-such-model"],
        [str(photo_dir), str(tmp_path / "o"), "--model", str(tiny_model_x2), "--tile", "big"],
        [str(photo_dir), str(tmp_path / "o"), "--scale", "5"],
        [str(photo_dir), str(tmp_path / "o"), "--model", str(tiny_model_x2), "--alpha", "x"],
        [str(photo_dir), str(photo_dir), "--model", str(tiny_model_x2)],
        [str(photo_dir), str(tmp_path / "o"), "--model", str(tiny_model_x2), "--device", "tpu"],
    ]
    for args in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_shipped_model_lookup(
    photo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    build_sr_model(models / "compact-x2" / "model.onnx", scale=2)
    env = {"SRTOOL_MODELS": str(models)}
    result = run(str(photo_dir / "baby.png"), str(tmp_path / "o"), "--scale", "2", env=env)
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "o" / "baby.png").size == (192, 160)
    monkeypatch.setattr("srtool.infer.catalog.shipped_models", lambda: {})
    result = run(str(photo_dir / "baby.png"), str(tmp_path / "o2"), "--scale", "3")
    assert result.exit_code == 2 and "not installed" in result.output


def test_missing_scale_uses_nearest_shipped_model(
    photo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    build_sr_model(models / "compact-x4" / "model.onnx", scale=4)
    monkeypatch.setattr(
        "srtool.infer.catalog.shipped_models", lambda: {"compact-x4": models / "compact-x4"}
    )
    result = run(str(photo_dir / "baby.png"), str(tmp_path / "o"), "--scale", "3")
    assert result.exit_code == 0, result.output
    assert "compact-x3 is not installed: using compact-x4" in " ".join(result.output.split())
    assert Image.open(tmp_path / "o" / "baby.png").size == (96 * 3, 80 * 3)
    # an explicit --outscale keeps the exact-model rule: no silent stand-in
    result = run(
        str(photo_dir / "baby.png"), str(tmp_path / "p"), "--scale", "3", "--outscale", "3"
    )
    assert result.exit_code == 2 and "not installed" in result.output


def test_stand_in_for_the_default_scale_resizes_to_x4(
    photo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --scale the default is x4: a stand-in's output is resized to x4 as the note says."""
    models = tmp_path / "models"
    build_sr_model(models / "compact-x2" / "model.onnx", scale=2)
    monkeypatch.setattr(
        "srtool.infer.catalog.shipped_models", lambda: {"compact-x2": models / "compact-x2"}
    )
    result = run(str(photo_dir / "baby.png"), str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert "compact-x4 is not installed: using compact-x2" in " ".join(result.output.split())
    assert Image.open(tmp_path / "o" / "baby.png").size == (96 * 4, 80 * 4)


def test_quiet_and_plain_logs(photo_dir: Path, tmp_path: Path, tiny_model_x2: Path) -> None:
    result = run(str(photo_dir), str(tmp_path / "o"), "--model", str(tiny_model_x2), "--quiet")
    assert result.exit_code == 0 and result.output.strip() == ""
    result = run(str(photo_dir), str(tmp_path / "p"), "--model", str(tiny_model_x2))
    lines = [line for line in result.output.splitlines() if " done " in line]
    assert len(lines) == 3  # one line per file when not on a terminal


def _script(*args: str) -> list[str]:
    code = (
        "import sys\n"
        "from srtool.cli import main\n"
        f"sys.argv = ['srtool', *{list(args)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(code)\n"
    )
    return [sys.executable, "-c", code]


def test_help_and_upscale_never_import_torch(
    photo_dir: Path, tmp_path: Path, tiny_model_x2: Path
) -> None:
    for args in (
        ["--help"],
        ["upscale", "--help"],
        ["upscale", str(photo_dir), str(tmp_path / "o"), "--model", str(tiny_model_x2)],
    ):
        proc = subprocess.run(_script(*args), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr + proc.stdout


def test_killed_run_leaves_no_truncated_output(
    tmp_path: Path, shared_data: Path, tiny_model_x2: Path
) -> None:
    """SIGKILL in the middle of a batch: every visible output decodes fully; a rerun with
    --skip-existing finishes the rest."""
    src = tmp_path / "src"
    src.mkdir()
    image = Image.open(shared_data / "Set14" / "baboon.png").convert("RGB")
    for i in range(12):
        image.rotate(90 * (i % 4), expand=True).save(src / f"img{i:02d}.png")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "srtool",
        "upscale",
        str(src),
        str(out),
        "--model",
        str(tiny_model_x2),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not any(out.glob("img*.png")) and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    visible = sorted(out.glob("img*.png"))
    assert len(visible) < 12, "the run finished before it could be interrupted"
    for path in visible:
        with Image.open(path) as im:
            im.load()  # raises on a truncated file
            assert im.size == (1000, 960) or im.size == (960, 1000)
    result = run(str(src), str(out), "--model", str(tiny_model_x2), "--skip-existing")
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("img*.png"))) == 12
    # the rerun rewrote the file whose write was killed and removed that write's temporary file
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_tta_and_back_projection(photo_dir: Path, tmp_path: Path, tiny_model_x2: Path) -> None:
    from srtool.imageio import read_image
    from srtool.infer import load_upscaler
    from srtool.infer.picture import enhance

    src = photo_dir / "bird.png"
    result = run(
        str(src),
        str(tmp_path / "e"),
        "--model",
        str(tiny_model_x2),
        "--tta",
        "--back-projection",
        "2",
        "--tile",
        "0",
    )
    assert result.exit_code == 0, result.output
    got = read_image(tmp_path / "e" / "bird.png").pixels.astype(np.float64)
    up = load_upscaler(str(tiny_model_x2), device="cpu", tile=0)
    lr = read_image(src).pixels.astype(np.float32) / 255
    expected = enhance(up.upscale, lr, scale=2, tta=True, back_projection=2)
    assert np.abs(got / 255 - expected).max() <= 0.5 / 255 + 1e-6
    plain = up.upscale(lr)
    assert np.abs(plain - expected).max() > 0.01  # the options really change the result
