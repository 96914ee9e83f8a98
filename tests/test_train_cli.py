"""``srtool train`` end to end through the Typer app: recipe by name and file, --set, --steps,
--resume (data remembered from the run), errors as one line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from srtool.cli import app
from srtool.train.patches import read_rgb8

TINY = [
    "--set",
    "model.hparams={features = 8, convs = 1}",
    "--set",
    "data.patch_size=32",
    "--set",
    "data.batch_size=2",
    "--set",
    "data.num_workers=0",
    "--set",
    "data.val_count=1",
    "--set",
    "train.val_every=2",
    "--set",
    "train.save_every=2",
    "--set",
    "train.log_every=1",
    "--set",
    "optim.warmup_steps=0",
]


@pytest.fixture(scope="module")
def t91(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("t91")
    for f in sorted((shared_data / "T91").glob("*.bmp"))[:4]:
        Image.fromarray(read_rgb8(f)[:48, :48]).save(folder / f"{f.stem}.png")
    return folder


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on shared cores every OpenMP barrier
    waits for a descheduled thread (a 4x16x8x8 BatchNorm was measured at 24 ms with 2 threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_train_then_resume(t91: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "train",
            "compact_x4",
            "--data",
            str(t91),
            "--out",
            str(out),
            "--steps",
            "2",
            "--device",
            "cpu",
            *TINY,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "srtool train: compact_x4" in res.output and "best val" in res.output
    assert "srtool export" in res.output
    assert (out / "checkpoints" / "step_0000002.safetensors").exists()
    assert json.loads((out / "run.json").read_text())["data"] == [str(t91)]

    res = runner.invoke(app, ["train", "--out", str(out), "--steps", "4"])
    assert res.exit_code == 2
    assert "already holds a run; pass --resume" in " ".join(res.output.split())

    res = runner.invoke(
        app, ["train", "--resume", "--out", str(out), "--steps", "4", "--device", "cpu"]
    )
    assert res.exit_code == 0, res.output
    assert "resumed at 2" in res.output
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [s for s in steps] == [1, 2, 2, 3, 4, 4]  # train rows and validation rows


def test_recipe_file_and_errors(t91: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    recipe = tmp_path / "mine.toml"
    recipe.write_text('name = "mine"\n[model]\narch = "compact"\nscale = 2\n')
    res = runner.invoke(
        app,
        [
            "train",
            str(recipe),
            "--data",
            str(t91),
            "--out",
            str(tmp_path / "r"),
            "--steps",
            "1",
            "--device",
            "cpu",
            *TINY,
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.output.strip() == ""  # --quiet
    cases = [
        (
            ["train", str(recipe), "--data", str(t91), "--set", "optim.lrr=1"],
            "unknown key optim.lrr; valid keys of optim: lr",
        ),
        (["train", "no_such_recipe", "--data", str(t91)], "recipe not found: no_such_recipe"),
        (["train", str(recipe)], "--data is required"),
        (["train", str(recipe), "--data", str(tmp_path / "nope")], "no such folder"),
        (["train", "--resume"], "--resume needs --out"),
    ]
    for args, message in cases:
        res = runner.invoke(app, args)
        assert res.exit_code in (1, 2), (args, res.output)
        assert message in " ".join(res.output.split()), res.output


def test_help_lists_every_flag() -> None:
    res = CliRunner().invoke(app, ["train", "--help"])
    assert res.exit_code == 0
    for flag in (
        "--data",
        "--val",
        "--out",
        "--steps",
        "--device",
        "--set",
        "--resume",
        "--init-from",
        "--freeze",
        "--data-root",
        "--vgg-weights",
    ):
        assert flag in res.output


def test_resume_from_another_folder_keeps_the_same_data(
    t91: Path, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run.json keeps a folder given as a relative path as an absolute one, so resuming from
    another working folder, where the relative name would be the registry's T91 dataset, still
    trains on the run's own images."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(t91, work / "t91")
    root = tmp_path / "root"
    root.mkdir()
    (root / "T91").symlink_to(shared_data / "T91")  # a registry dataset called t91 too
    monkeypatch.setenv("SRTOOL_DATA", str(root))
    runner = CliRunner()
    monkeypatch.chdir(work)
    args = ["compact_x4", "--data", "t91", "--out", "run", "--device", "cpu", *TINY]
    res = runner.invoke(app, ["train", *args, "--steps", "2", "-q"])
    assert res.exit_code == 0, res.output
    saved = json.loads((work / "run" / "run.json").read_text())
    assert saved["data"] == [str(work / "t91")] and saved["data_root"] is None
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "--resume", "--out", "work/run", "--steps", "4", "-q"])
    assert res.exit_code == 0, res.output
    from srtool.models.checkpoint import load_checkpoint_meta

    meta = load_checkpoint_meta(work / "run" / "checkpoints" / "step_0000004.safetensors")
    assert meta["training"]["data"] == [str(work / "t91")]
    assert meta["training"]["train_images"] == 3
