"""``srtool train`` end to end through the Typer app: recipe by name and file, --set, --steps,
--resume (data remembered from the run), errors as one line with exit code 2."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from srtool.cli import app
from srtool.train.patches import read_rgb8
from srtool.train.run import RunDir

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
def _one_thread(one_torch_thread: None) -> None:
    """Every test and module fixture here runs torch on one thread (see ``one_torch_thread``)."""


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
    saved = json.loads((out / "run.json").read_text())
    assert saved["data"] == [os.path.relpath(t91, out)]  # relative to the run folder
    assert RunDir(out).read_args().data == [str(t91)]

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
    saved = RunDir(work / "run").read_args()
    assert saved.data == [str(work / "t91")] and saved.data_root is None
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "--resume", "--out", "work/run", "--steps", "4", "-q"])
    assert res.exit_code == 0, res.output
    from srtool.models.checkpoint import load_checkpoint_meta

    meta = load_checkpoint_meta(work / "run" / "checkpoints" / "step_0000004.safetensors")
    assert meta["training"]["data"] == [str(work / "t91")]
    assert meta["training"]["train_images"] == 3


class _Payload:
    """Unpickling this would create a file: proof of whether a loader ran pickle."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


_PERCEPTUAL = [
    "--set",
    "loss.perceptual_weight=1",
    "--set",
    "loss.perceptual_layers={conv1_2 = 1.0}",
]
_BAD_SETTINGS = {
    "negative seed": (["--set", "train.seed=-1"], "train.seed must be in 0 .."),
    "huge seed": (["--set", "train.seed=99999999999999999999"], "train.seed must be in 0 .."),
    "workers": (["--set", "data.num_workers=-5"], "data.num_workers must be in 0 .. 1024"),
    "batch": (["--set", "data.batch_size=100000000"], "HR pixels per step, beyond the 268435456"),
    "hparams": (["--set", "model.hparams={features = -3}"], "compact: invalid hyper-parameters"),
    "vgg pickle": (["--vgg-weights", "VGG", *_PERCEPTUAL], "not a readable safetensors file"),
    "init pickle": (["--init-from", "EVIL"], "refused to load: it calls the Python global io.open"),
    "latin-1 recipe": (["LATIN1"], "not a UTF-8 text file (byte"),
}


@pytest.mark.parametrize("case", sorted(_BAD_SETTINGS))
def test_bad_settings_are_usage_errors_before_any_image_is_loaded(
    t91: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """Out-of-range recipe values, a non-UTF-8 recipe, bad hyper-parameters, a pickle given as
    VGG or --init-from weights: exit 2 with one error line, and no training image decoded."""
    from srtool.train import patches

    def no_loading(*args, **kwargs):
        raise RuntimeError("training images were loaded")

    monkeypatch.setattr(patches, "load_pairs", no_loading)
    marker = tmp_path / "pwned"
    files = {"VGG": tmp_path / "vgg.safetensors", "EVIL": tmp_path / "evil.pth"}
    files["VGG"].write_bytes(pickle.dumps({"features.0.weight": _Payload(str(marker))}))
    torch.save({"body.0.weight": _Payload(str(marker))}, files["EVIL"])
    files["LATIN1"] = tmp_path / "latin1.toml"
    files["LATIN1"].write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    extra, message = _BAD_SETTINGS[case]
    extra = [str(files.get(arg, arg)) for arg in extra]
    recipe = [] if case == "latin-1 recipe" else ["compact_x4"]
    args = [*recipe, "--data", str(t91), "--out", str(tmp_path / "run"), "--steps", "2"]
    res = CliRunner().invoke(app, ["train", *args, "--device", "cpu", *TINY, *extra])
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert message in text, res.output
    assert text.count("error:") == 1 and "Traceback" not in text, res.output
    assert "training images were loaded" not in text
    assert not marker.exists()


def test_progress_view_rate_limits_per_step_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-step events redraw at most ~10 times a second, and the last step always shows."""
    from srtool.cli import train as train_cli
    from srtool.train.loop import TrainEvent

    clock = [0.0]
    monkeypatch.setattr(train_cli.time, "monotonic", lambda: clock[0])
    view = train_cli._ProgressView(quiet=True)
    with view:
        view(TrainEvent("start", 0, 100, {"device": "cpu", "amp": "off", "world_size": 1,
                                          "train_images": 1, "val_images": 0}))  # fmt: skip
        for step in range(1, 101):
            clock[0] += 0.01  # 100 steps a second
            view(TrainEvent("progress", step, 100, {"eta_s": (100 - step) * 0.01}))
        assert 10 <= view.updates <= 12
        assert view.progress.tasks[0].completed == 100


def test_a_run_moved_with_its_data_resumes_from_anywhere(
    t91: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run.json keeps folders relative to the run folder: a project moved (or cloned) with its
    data beside it, as committed run folders are, resumes on the same images."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(t91, project / "data" / "t91")
    runner = CliRunner()
    monkeypatch.chdir(project)
    args = ["compact_x4", "--data", "data/t91", "--out", "runs/a", "--device", "cpu", *TINY]
    res = runner.invoke(app, ["train", *args, "--steps", "2", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads((project / "runs" / "a" / "run.json").read_text())["data"] == [
        "../../data/t91"
    ]
    moved = tmp_path / "elsewhere" / "project"
    moved.parent.mkdir()
    shutil.move(str(project), moved)
    monkeypatch.chdir(tmp_path)
    out = moved / "runs" / "a"
    res = runner.invoke(app, ["train", "--resume", "--out", str(out), "--steps", "4", "-q"])
    assert res.exit_code == 0, res.output
    from srtool.models.checkpoint import load_checkpoint_meta

    meta = load_checkpoint_meta(out / "checkpoints" / "step_0000004.safetensors")
    assert meta["training"]["data"] == [str(moved / "data" / "t91")]


def test_run_json_with_absolute_folders_still_resumes(tmp_path: Path) -> None:
    """Runs written before folders were kept relative hold absolute paths: read as they are."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(
        json.dumps({"data": ["/data/t91", "DIV2K"], "val": "/data/set5", "data_root": None})
    )
    args = RunDir(tmp_path / "run").read_args()
    assert args.data == ["/data/t91", "DIV2K"] and args.val == "/data/set5"
