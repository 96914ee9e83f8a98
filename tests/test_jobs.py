"""Planning a batch: folder walks, filters, mirrored output tree, never clobbering inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from srtool.errors import UsageError
from srtool.infer.jobs import collect_jobs, input_problem


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    for name in [
        "a.png",
        "b.JPG",
        "sub/c.webp",
        "sub/deeper/d.tif",
        "notes.txt",
        ".hidden.png",
        "Thumbs.db",
        ".DS_Store",
        ".cache/e.png",
        "sub/desktop.ini",
    ]:
        touch(root / name)
    return root


def test_recursive_walk_mirrors_tree_and_ignores_junk(tree: Path, tmp_path: Path) -> None:
    jobs = collect_jobs(tree, tmp_path / "out")
    assert [j.name for j in jobs] == ["a.png", "b.JPG", "sub/c.webp", "sub/deeper/d.tif"]
    assert jobs[3].target == tmp_path / "out" / "sub" / "deeper" / "d.tif"
    assert [j.format for j in jobs] == ["png", "jpeg", "webp", "tiff"]


def test_no_recursive_glob_and_ext(tree: Path, tmp_path: Path) -> None:
    assert [j.name for j in collect_jobs(tree, tmp_path / "o", recursive=False)] == [
        "a.png",
        "b.JPG",
    ]
    assert [j.name for j in collect_jobs(tree, tmp_path / "o", pattern="sub/*")] == [
        "sub/c.webp",
        "sub/deeper/d.tif",
    ]
    assert [j.name for j in collect_jobs(tree, tmp_path / "o", extensions={"jpg", ".tif"})] == [
        "b.JPG",
        "sub/deeper/d.tif",
    ]
    with pytest.raises(UsageError, match="unsupported extension"):
        collect_jobs(tree, tmp_path / "o", extensions={"psd"})


def test_format_and_suffix(tree: Path, tmp_path: Path) -> None:
    jobs = collect_jobs(tree, tmp_path / "o", fmt="png", suffix="_x4")
    assert [j.target.name for j in jobs] == ["a_x4.png", "b_x4.png", "c_x4.png", "d_x4.png"]
    assert {j.format for j in jobs} == {"png"}
    jpg = collect_jobs(tree, tmp_path / "o", fmt="jpg")
    assert jpg[0].target.name == "a.jpg" and jpg[0].format == "jpeg"
    with pytest.raises(UsageError, match="unknown --format"):
        collect_jobs(tree, tmp_path / "o", fmt="psd")


def test_output_inside_input_is_not_walked(tree: Path) -> None:
    out = tree / "upscaled"
    touch(out / "a.png")  # an output of an earlier run
    jobs = collect_jobs(tree, out)
    assert all(not j.source.is_relative_to(out) for j in jobs)
    assert len(jobs) == 4


def test_inputs_are_never_overwritten(tree: Path) -> None:
    with pytest.raises(UsageError, match="overwrite input"):
        collect_jobs(tree, tree)
    jobs = collect_jobs(tree, tree, suffix="_x4")
    assert jobs[0].target == tree / "a_x4.png"


def test_colliding_outputs_are_flagged(tmp_path: Path) -> None:
    root = tmp_path / "in"
    touch(root / "photo.png")
    touch(root / "photo.jpg")
    jobs = collect_jobs(root, tmp_path / "out", fmt="png")
    assert jobs[0].conflict is None
    assert jobs[1].conflict and "same output file" in jobs[1].conflict


def test_single_file_to_file_or_folder(tree: Path, tmp_path: Path) -> None:
    (job,) = collect_jobs(tree / "a.png", tmp_path / "big.jpg")
    assert job.target == tmp_path / "big.jpg" and job.format == "jpeg"
    (job,) = collect_jobs(tree / "a.png", tmp_path / "outdir")
    assert job.target == tmp_path / "outdir" / "a.png"
    with pytest.raises(UsageError, match="not found"):
        collect_jobs(tree / "missing.png", tmp_path / "o")
    with pytest.raises(UsageError, match="not a supported image"):
        collect_jobs(tree / "notes.txt", tmp_path / "o")


def test_symlink_loop_is_one_failed_entry_not_the_end_of_the_batch(tmp_path: Path) -> None:
    root = tmp_path / "in"
    touch(root / "c.png")
    (root / "a.png").symlink_to("b.png")
    (root / "b.png").symlink_to("a.png")
    (root / "gone.png").symlink_to("nowhere.png")  # dangling: reported when read, as before
    jobs = collect_jobs(root, tmp_path / "out")
    assert [(j.name, j.conflict) for j in jobs] == [
        ("a.png", "symlink loop"),
        ("b.png", "symlink loop"),
        ("c.png", None),
        ("gone.png", None),
    ]


def test_only_regular_files_are_inputs(tmp_path: Path) -> None:
    """A FIFO or a device named like an image would block the reader or never end."""
    root = tmp_path / "in"
    touch(root / "real.png")
    os.mkfifo(root / "pipe.png")
    (root / "zero.png").symlink_to("/dev/zero")
    jobs = {j.name: j.conflict for j in collect_jobs(root, tmp_path / "out")}
    assert jobs == {
        "pipe.png": "not a regular file (a FIFO)",
        "real.png": None,
        "zero.png": "not a regular file (a character device)",
    }
    assert input_problem(root / "real.png") is None
    with pytest.raises(UsageError, match="not a regular file"):
        collect_jobs(root / "pipe.png", tmp_path / "out")


@pytest.mark.parametrize("suffix", ["/../../escape", "/x", "..", "_a\\b", "_x\0"])
def test_suffix_is_a_name_fragment(tree: Path, tmp_path: Path, suffix: str) -> None:
    with pytest.raises(UsageError, match="--suffix"):
        collect_jobs(tree, tmp_path / "out", suffix=suffix)
    with pytest.raises(UsageError, match="--suffix"):
        collect_jobs(tree / "a.png", tmp_path / "out", suffix=suffix)


def test_every_target_is_inside_output(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for job in collect_jobs(tree, out, suffix="_x4.v2"):
        assert os.path.commonpath([out, job.target]) == str(out)
