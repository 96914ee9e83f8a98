"""``benchmarks/quality_speed.py``: PSNR from srtool's evaluate, speed rows, the table, the plot
and its JSON / Markdown, on Set5 with tiny models."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from onnx_factory import build_sr_model
from PIL import Image

from srtool.environment import cpu_name
from srtool.errors import UsageError
from srtool.evaluate import evaluate

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quality_speed.py"


@pytest.fixture(scope="module")
def quality_speed() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("quality_speed", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_quality_speed_on_set5(
    quality_speed: ModuleType,
    shared_data: Path,
    tiny_model_x4: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("matplotlib")
    exports = tmp_path / "exports"
    build_sr_model(  # the shipped model of the test's exports folder
        exports / "tiny-x2" / "model.onnx", scale=2, metadata={"srtool.params": "1234"}
    )
    build_sr_model(exports / "tiny-x2" / "model.int8.onnx", scale=2, seed=2)  # its --int8 file
    wide = build_sr_model(tmp_path / "wide.onnx", scale=2, features=16, seed=1)
    out = tmp_path / "results"
    argv = ["--bench", "Set5", "--rounds", "1", "--warmup", "0", "--size", "64x48"]
    argv += ["--data-root", str(shared_data), "--exports", str(exports), "--out", str(out)]
    argv += ["--model", f"wide-x2={wide}", "--model", str(tiny_model_x4)]
    result = quality_speed.main(argv)

    rows = result["rows"]
    assert [(r["label"], r["kind"], r["scale"]) for r in rows] == [
        ("bicubic", "bicubic", 2),
        ("tiny-x2", "shipped", 2),
        ("tiny-x2 int8", "shipped", 2),
        ("wide-x2", "extra", 2),
        ("bicubic", "bicubic", 4),
        ("tiny-x4", "extra", 4),
    ]
    by = {(r["label"], r["scale"]): r for r in rows}
    # PSNR is srtool evaluate's: the published bicubic rows, and a model's own evaluate score
    assert by["bicubic", 2]["psnr_y"] == pytest.approx(33.67, abs=0.01)
    assert by["bicubic", 4]["psnr_y"] == pytest.approx(28.43, abs=0.01)
    direct = evaluate(["Set5"], [str(wide)], scale=2, data_root=shared_data, with_ms_ssim=False)
    assert by["wide-x2", 2]["psnr_y"] == pytest.approx(direct.score("Set5", "wide").mean("psnr_y"))
    assert by["tiny-x2", 2]["params"] == 1234 and by["wide-x2", 2]["params"] is None
    for r in rows:
        assert r["mpix_s"] > 0 and r["ms"] > 0
        assert r["mpix_s"] == pytest.approx(64 * 48 * r["scale"] ** 2 / 1e6 / (r["ms"] / 1000))
    assert by["tiny-x2", 2]["ratio"] == pytest.approx(1.0)
    assert by["wide-x2", 2]["ratio"] == pytest.approx(
        by["wide-x2", 2]["mpix_s"] / by["tiny-x2", 2]["mpix_s"]
    )
    assert by["tiny-x4", 4]["ratio"] is None  # no shipped x4 model to compare with
    assert result["speed"]["threads"] == 1 and result["environment"]["cpu"] == cpu_name()

    printed = capsys.readouterr().out
    assert f"CPU: {cpu_name()}" in printed
    table = printed[printed.index("model ") :].splitlines()
    assert table[0].split() == "model scale params PSNR-Y Set5 MPix/s speed vs shipped".split()
    assert table[3].split()[:3] == ["tiny-x2", "x2", "1,234"]
    assert table[3].split()[-2:] == ["1.00x", "tiny-x2"]

    png = out / "quality-speed-Set5.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        assert image.format == "PNG" and min(image.size) > 100
    saved = json.loads((out / "quality-speed-Set5.json").read_text())
    assert saved["rows"] == rows
    md = (out / "quality-speed-Set5.md").read_text()
    assert "| wide-x2 | x2 | - |" in md and md.count("\n| ") == 2 + len(rows)


def test_quality_speed_clear_failures(
    quality_speed: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UsageError, match="LABEL=FILE"):
        quality_speed.gather(tmp_path, [f"x={tmp_path / 'missing.onnx'}"])
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else find_spec(name, *a),
    )
    with pytest.raises(SystemExit, match="needs matplotlib"):
        quality_speed.require_matplotlib()


def test_png_encode_benchmark_compares_the_writers(tmp_path: Path) -> None:
    """``benchmarks/png_encode.py`` on a real photo: a row per encoder and the ratios, and
    srtool's PNG decodes to the same pixels as the source (the faster settings are lossless)."""
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    from srtool.imageio import Picture, write_image

    photo = Path(__file__).parent / "data" / "photos" / "coffee.png"
    script = SCRIPT.parent / "png_encode.py"
    run = subprocess.run(
        [sys.executable, str(script), str(photo), "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "CPU:" in run.stdout and "srtool/opencv: speed x" in run.stdout
    assert all(f"{name} " in run.stdout for name in ("srtool", "opencv", "pillow"))
    pixels = np.asarray(Image.open(photo).convert("RGB"))
    write_image(tmp_path / "out.png", Picture(pixels))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), pixels)


def test_upscale_benchmark_runs_the_cli_plan(tmp_path: Path, tiny_model_x2: Path) -> None:
    """``benchmarks/upscale_bench.py`` over 8 real-image crops: the pipeline row runs the CPU
    workers asked for, at the PNG level asked for, against the bare session."""
    import subprocess

    photo = Path(__file__).parent / "data" / "photos" / "coffee.png"
    folder = tmp_path / "images"
    folder.mkdir()
    with Image.open(photo) as image:
        for i in range(8):
            image.convert("RGB").crop((8 * i, 0, 8 * i + 48, 40)).save(folder / f"c{i}.png")
    numbers = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "upscale_bench.py"), "--model", str(tiny_model_x2),
         "--images", str(folder), "--count", "8", "--workers", "2", "--png-level", "0",
         "--png-deflate", "zlib-ng",
         "--rounds", "1", "--repeat", "1", "--json", str(numbers)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "png: zlib_ng.zlib_ng level 0" in run.stdout and "2 worker(s)" in run.stdout
    results = json.loads(numbers.read_text())
    assert results["pipeline"]["files"] == 8 and results["pipeline"]["workers"] == 2
    assert results["pipeline"]["mpix_s"] > 0 and results["session"]["mpix_s"] > 0
