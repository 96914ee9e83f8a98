"""Any model file: .pth/.safetensors converted once and cached, ``srtool models``, plain-weights
export for spandrel, and one-line answers when the train extra (torch) is missing."""

from __future__ import annotations

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
from srtool.infer import modelcache

ANIME = "realesr-animevideov3_x4.pth"
ANIME_SHA256 = "4e1e09ba96d08bd4b8455e8897c3242a3501e3766f359941ea894122e158a932"
REPO = Path(__file__).resolve().parent.parent

# Runs the CLI with torch hidden, as on a base install without the train extra.
NO_TORCH = (
    "import sys; sys.modules['torch'] = None; from srtool.cli import app; "
    "app(sys.argv[1:], prog_name='srtool')"
)


def _text(result) -> str:  # noqa: ANN001 - Rich wraps lines at the console width
    return " ".join(result.output.split())


def _no_torch(args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SRTOOL_MODEL_CACHE": str(cache),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "300",
    }
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture()
def small_photo(tmp_path: Path, sample_photos: Path) -> Path:
    path = tmp_path / "small.png"
    with Image.open(sample_photos / "chelsea.png") as im:
        im.convert("RGB").crop((100, 50, 148, 90)).save(path)
    return path


def test_catalogue_pins_the_shared_official_file(shared_weights: Path) -> None:
    from srtool.hashing import file_digest

    entry = modelcache.CATALOGUE["realesr-animevideov3"]
    assert entry.sha256 == ANIME_SHA256 == file_digest(shared_weights / ANIME)
    assert entry.url.startswith("https://github.com/xinntao/Real-ESRGAN/releases/download/")
    for e in modelcache.CATALOGUE.values():
        assert e.sha256 is None or len(e.sha256) == 64


def test_upscale_pth_is_converted_once_then_runs_without_torch(
    tmp_path: Path, shared_weights: Path, small_photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("spandrel")
    cache = tmp_path / "cache"
    monkeypatch.setenv("SRTOOL_MODEL_CACHE", str(cache))
    weights = shared_weights / ANIME
    runner = CliRunner()
    first = runner.invoke(
        app, ["upscale", str(small_photo), str(tmp_path / "a.png"), "--model", str(weights)]
    )
    assert first.exit_code == 0, first.output
    assert "converted" in _text(first) and "cached" in _text(first)
    with Image.open(tmp_path / "a.png") as im:
        assert im.size == (48 * 4, 40 * 4)
    folder = cache / ANIME_SHA256[:16]
    info = json.loads((folder / "model.json").read_text())
    assert (info["name"], info["scale"], info["arch"], info["sha256"]) == (
        "realesr-animevideov3_x4",
        4,
        "compact",
        ANIME_SHA256,
    )
    assert info["params"] > 0 and (folder / "model.onnx").is_file()
    assert sorted(p.name for p in cache.iterdir()) == [folder.name]  # no staging leftovers

    # The next runs reuse the cache, by file or by name, with torch unavailable.
    for model in (str(weights), "realesr-animevideov3_x4"):
        out = tmp_path / f"b-{len(model)}.png"
        done = _no_torch(["upscale", str(small_photo), str(out), "--model", model], tmp_path, cache)
        assert done.returncode == 0, done.stderr
        assert "converted" not in done.stderr
        a, b = np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(out))
        assert np.array_equal(a, b)


def test_pth_without_torch_is_one_line_and_leaves_nothing(
    tmp_path: Path, shared_weights: Path, small_photo: Path
) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out.png"
    args = ["upscale", str(small_photo), str(out), "--model", str(shared_weights / ANIME)]
    done = _no_torch(args, tmp_path, cache)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "srtool[train]"' in lines[0]
    assert f"srtool export {ANIME} -o" in lines[0] and "Protobuf" not in done.stderr
    assert not cache.exists() and not out.exists()


def test_models_add_over_http_checks_the_checksum(
    tmp_path: Path,
    shared_weights: Path,
    small_photo: Path,
    server: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("spandrel")
    base, www = server
    shutil.copy(shared_weights / ANIME, www / ANIME)
    url = f"{base}/{ANIME}"
    cache = tmp_path / "cache"
    monkeypatch.setenv("SRTOOL_MODEL_CACHE", str(cache))
    runner = CliRunner()

    wrong = runner.invoke(app, ["models", "add", url, "--sha256", "0" * 64, "--name", "anime"])
    assert wrong.exit_code == 1 and "checksum mismatch" in _text(wrong)
    assert "nothing was cached" in _text(wrong)
    assert not cache.exists() or not any(cache.iterdir())

    good = runner.invoke(app, ["models", "add", url, "--sha256", ANIME_SHA256, "--name", "anime"])
    assert good.exit_code == 0, good.output
    assert "(verified)" in _text(good) and "--model anime" in _text(good)
    assert [p.name for p in cache.iterdir()] == [ANIME_SHA256[:16]]
    entry = modelcache.find_cached("anime")
    assert entry is not None and entry.source == url and entry.scale == 4

    listed = runner.invoke(app, ["models", "list"], env={"COLUMNS": "300"})
    assert listed.exit_code == 0, listed.output
    text = _text(listed)
    assert "compact-x4" in text and "anime" in text and "621,424" in text and url in text
    assert "RealESRGAN_x4plus" in text  # a well-known model not yet added
    assert "efficient-x4" in text and "default for --scale 4" in text

    used = runner.invoke(
        app, ["upscale", str(small_photo), str(tmp_path / "o.png"), "--model", "anime"]
    )
    assert used.exit_code == 0, used.output

    # A local path without a pin: added, and the hash is printed as not pinned.
    again = runner.invoke(app, ["models", "add", str(shared_weights / ANIME), "--name", "anim2"])
    assert again.exit_code == 0, again.output
    assert ANIME_SHA256 in _text(again) and "not pinned" in _text(again)
    assert "already cached" in _text(again)


def test_unknown_name_mentions_models_add(tmp_path: Path) -> None:
    from srtool.errors import ModelError
    from srtool.infer.catalog import resolve_model

    with pytest.raises(ModelError, match="srtool models add RealESRGAN_x4plus"):
        resolve_model("RealESRGAN_x4plus", None)


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_plain_weights_export_loads_in_spandrel(tmp_path: Path, fmt: str) -> None:
    spandrel = pytest.importorskip("spandrel")
    import torch

    from srtool.models import build
    from srtool.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build("compact", scale=4, features=16, convs=3).eval()
    with torch.no_grad():  # a distinct EMA copy: the export must take the EMA weights
        ema = build("compact", scale=4, features=16, convs=3).eval()
    ckpt = save_checkpoint(tmp_path / "ckpt.safetensors", model, ema=ema, meta={})
    out = tmp_path / f"plain.{fmt}"
    result = CliRunner().invoke(app, ["export", str(ckpt), "-o", str(out), "--format", fmt])
    assert result.exit_code == 0, result.output
    assert "plain" in _text(result)
    loaded = spandrel.ModelLoader(device="cpu").load_from_file(str(out))
    assert loaded.scale == 4 and loaded.architecture.name == "RealESRGAN Compact"
    x = torch.rand(1, 3, 13, 17)
    with torch.no_grad():
        ours, theirs = ema(x), loaded.model.eval()(x)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert not torch.allclose(model(x), theirs, atol=1e-3)


def test_train_extra_missing_is_one_line_and_leaves_nothing(
    tmp_path: Path, shared_weights: Path
) -> None:
    cache = tmp_path / "cache"
    (tmp_path / "hr").mkdir()
    cases = {
        "train": ["train", "--data", str(tmp_path / "hr")],
        "export": ["export", str(shared_weights / ANIME), "-o", str(tmp_path / "x.onnx")],
        "export-weights": ["export", str(shared_weights / ANIME), "-o", str(tmp_path / "x.pth")],
    }
    for what, args in cases.items():
        done = _no_torch(args, tmp_path, cache)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (what, done.stderr)
        assert len(lines) == 1 and 'pip install "srtool[train]"' in lines[0], (what, lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr"]  # no runs/, no outputs


def test_evaluate_checkpoint_without_torch(
    tmp_path: Path, shared_data: Path, shared_weights: Path
) -> None:
    args = ["evaluate", "--bench", "Set5", "--data-root", str(shared_data)]
    done = _no_torch([*args, "--model", str(shared_weights / ANIME)], tmp_path, tmp_path / "c")
    assert done.returncode == 2, done.stderr
    assert 'pip install "srtool[train]"' in done.stderr and len(done.stderr.splitlines()) == 1


def test_train_with_a_missing_dataset_leaves_no_run_folder(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", "--data", "DIV2K", "--data-root", str(tmp_path / "root"), "-o", str(run)]
    )
    assert result.exit_code == 2, result.output
    assert "srtool data fetch DIV2K" in _text(result) and "about 3,530 MB" in _text(result)
    assert "evaluate" not in _text(result)
    assert not run.exists()


def test_missing_benchmark_names_size_or_download_command(tmp_path: Path) -> None:
    from srtool import datasets

    with pytest.raises(datasets.DatasetMissingError) as info:
        datasets.resolve("Set14", tmp_path)
    assert "srtool evaluate --bench Set14 --download" in str(info.value)
    with pytest.raises(datasets.DatasetMissingError, match="about 449 MB"):
        datasets.resolve("DIV2K-valid", tmp_path)


def test_evaluate_without_model_compares_the_default_with_bicubic(shared_data: Path) -> None:
    from srtool.evaluate import evaluate
    from srtool.infer.catalog import DEFAULT_MODEL_FOR_SCALE

    default = DEFAULT_MODEL_FOR_SCALE[4]
    report = evaluate(["Set5"], data_root=shared_data, with_ms_ssim=False, default_model=True)
    assert [m.label for m in report.methods] == ["bicubic", default]
    assert any("no --model given" in note for note in report.notes)
    ours, bicubic = (report.score("Set5", m).mean("psnr_y") for m in (default, "bicubic"))
    assert ours > bicubic


def test_an_unknown_architecture_caches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("spandrel")
    from srtool.errors import ModelError
    from srtool.infer.catalog import resolve_model

    monkeypatch.setenv("SRTOOL_MODEL_CACHE", str(tmp_path / "cache"))
    weird = tmp_path / "weird.pth"
    torch.save({"encoder.layer.weight": torch.zeros(4, 4)}, weird)
    with pytest.raises(ModelError, match="does not recognise"):
        resolve_model(str(weird), None)
    assert not (tmp_path / "cache").exists()
