"""The batch pipeline under failure: dying workers, Ctrl-C with a stuck reader, an output that
cannot be written, leftovers of killed runs. Each run has a watchdog: a hang fails the test."""

from __future__ import annotations

import _thread
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from srtool.atomic import temporary_prefix
from srtool.cli import app
from srtool.infer import load_upscaler
from srtool.infer import pipeline as pipeline_module
from srtool.infer.jobs import collect_jobs
from srtool.infer.pipeline import BatchInterrupted, BatchOptions, run_batch

runner = CliRunner()


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in "abcd":
        pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{name}.png")
    return root


def upscale(*args: str):
    return runner.invoke(app, ["upscale", *args])


def failed_line(output: str, name: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(f"failed {name}")]
    assert len(lines) == 1, output
    return lines[0]


def test_unexpected_read_and_write_errors_fail_one_file_each(
    photos: Path, tmp_path: Path, tiny_model_x2: Path, monkeypatch: pytest.MonkeyPatch, watchdog
) -> None:
    """A decoder raising RuntimeError or MemoryError, an encoder raising RuntimeError (libtiff on
    a full disk): each is that file's failure, and the batch goes on to the end."""
    real_read, real_write = pipeline_module.read_media, pipeline_module.write_image

    def read(path, **kwargs):  # noqa: ANN001, ANN003
        if Path(path).name == "b.png":
            raise RuntimeError("decoder exploded")
        if Path(path).name == "c.png":
            raise MemoryError
        return real_read(path, **kwargs)

    def write(path, picture, **kwargs):  # noqa: ANN001, ANN003
        if Path(path).name == "d.png":
            raise RuntimeError("tiff codec initialization failed")
        return real_write(path, picture, **kwargs)

    monkeypatch.setattr(pipeline_module, "read_media", read)
    monkeypatch.setattr(pipeline_module, "write_image", write)
    out = tmp_path / "out"
    result = upscale(str(photos), str(out), "--model", str(tiny_model_x2))
    assert result.exit_code == 1, result.output
    assert "decoder exploded" in failed_line(result.output, "b.png")
    assert "not enough memory" in failed_line(result.output, "c.png")
    assert "tiff codec initialization failed" in failed_line(result.output, "d.png")
    assert "1 done, 0 skipped, 3 failed" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]


class _ThreadKiller(BaseException):
    """Escapes any per-file handling: the worker thread dies."""


@pytest.mark.parametrize("stage", ["read", "write"])
def test_a_dead_worker_ends_the_batch_with_a_summary(
    stage: str,
    photos: Path,
    tmp_path: Path,
    tiny_model_x2: Path,
    monkeypatch: pytest.MonkeyPatch,
    watchdog,
) -> None:
    """Whatever kills the reader or the writer thread, the run ends: the files it never finished
    are reported as failed, the summary is printed and the exit code is 1."""
    name = "read_media" if stage == "read" else "write_image"
    real = getattr(pipeline_module, name)

    def dying(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if Path(path).name == "b.png":
            raise _ThreadKiller("worker gone")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pipeline_module, name, dying)
    out = tmp_path / "out"
    result = upscale(str(photos), str(out), "--model", str(tiny_model_x2))
    assert result.exit_code == 1, result.output
    what = "reading" if stage == "read" else "writing"
    for unfinished in ("b.png", "c.png", "d.png"):
        assert f"not processed: {what} stopped" in failed_line(result.output, unfinished)
    assert "1 done, 0 skipped, 3 failed" in result.output
    assert (out / "a.png").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_first_ctrl_c_stops_a_batch_whose_reader_is_stuck(
    photos: Path, tmp_path: Path, tiny_model_x2: Path, monkeypatch: pytest.MonkeyPatch, watchdog
) -> None:
    """A read that never returns (a FIFO, a hung network share) must not make Ctrl-C wait."""
    real_read = pipeline_module.read_media
    stuck, release = threading.Event(), threading.Event()

    def read(path, **kwargs):  # noqa: ANN001, ANN003
        if Path(path).name == "b.png":
            stuck.set()
            release.wait(120)
        return real_read(path, **kwargs)

    monkeypatch.setattr(pipeline_module, "read_media", read)
    out = tmp_path / "out"
    jobs = collect_jobs(photos, out)
    upscaler = load_upscaler(str(tiny_model_x2), device="cpu", threads=1)

    def press_ctrl_c() -> None:
        stuck.wait(20)
        deadline = time.monotonic() + 20
        while not (out / "a.png").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        _thread.interrupt_main()

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(BatchInterrupted) as stopped:
            run_batch(jobs, upscaler, BatchOptions())
    finally:
        release.set()
    assert time.monotonic() - started < 15
    summary = stopped.value.summary
    assert summary.interrupted and summary.done == 1 and summary.not_processed == 3
    assert [p.name for p in out.iterdir()] == ["a.png"]


# ------------------------------------------------------------------ output that cannot be written


@pytest.fixture()
def read_only_output(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody can write: a read-only tmpfs as root (permissions do not stop root),
    mode 0555 otherwise. It already holds the outputs of an earlier run of `photos`."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = False
    if os.geteuid() == 0:
        if shutil.which("mount") is None:
            pytest.skip("root without mount(8): cannot make a folder root cannot write")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {proc.stderr.decode().strip()}")
        mounted = True
    try:
        for name in "abcd":
            Image.new("RGB", (64, 48)).save(folder / f"{name}.png")
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        else:
            folder.chmod(0o555)
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)
        else:
            folder.chmod(0o755)


def test_read_only_output_fails_before_any_decoding(
    photos: Path,
    read_only_output: Path,
    tiny_model_x2: Path,
    monkeypatch: pytest.MonkeyPatch,
    watchdog,
) -> None:
    decoded: list[Path] = []
    real_read = pipeline_module.read_media

    def read(path, **kwargs):  # noqa: ANN001, ANN003
        decoded.append(Path(path))
        return real_read(path, **kwargs)

    monkeypatch.setattr(pipeline_module, "read_media", read)
    result = upscale(
        str(photos), str(read_only_output / "sub"), "--model", str(tiny_model_x2), "--device", "cpu"
    )
    assert result.exit_code == 2, result.output
    assert "cannot write to" in result.output and "no output can be written" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert decoded == []
    # with --skip-existing there is nothing to write: every file is skipped, exit 0
    result = upscale(
        str(photos), str(read_only_output), "--model", str(tiny_model_x2), "--skip-existing"
    )
    assert result.exit_code == 0, result.output
    assert "0 done, 4 skipped, 0 failed" in result.output


def test_skip_existing_clears_leftovers_of_skipped_targets(
    photos: Path, tmp_path: Path, tiny_model_x2: Path
) -> None:
    """A run killed while overwriting an output leaves a temporary file beside the complete
    older output; a later --skip-existing run skips that target and must remove the leftover."""
    out = tmp_path / "out"
    assert upscale(str(photos), str(out), "--model", str(tiny_model_x2)).exit_code == 0
    target = out / "b.png"
    before = target.read_bytes()
    stale = out / f"{temporary_prefix(target)}0123456789ab.png"
    stale.write_bytes(before[:100])
    result = upscale(str(photos), str(out), "--model", str(tiny_model_x2), "--skip-existing")
    assert result.exit_code == 0 and "0 done, 4 skipped" in result.output
    assert not stale.exists() and target.read_bytes() == before
