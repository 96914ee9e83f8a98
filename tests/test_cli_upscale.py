"""`srtool upscale` end to end through the CLI, on real files and real onnxruntime sessions."""

from __future__ import annotations

import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from onnx_factory import build_sr_model
from PIL import Image
from typer.testing import CliRunner

from srtool.cli import app
from srtool.infer.catalog import DEFAULT_MODEL_FOR_SCALE

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
    models, x3, x4 = tmp_path / "models", DEFAULT_MODEL_FOR_SCALE[3], DEFAULT_MODEL_FOR_SCALE[4]
    build_sr_model(models / x4 / "model.onnx", scale=4)
    monkeypatch.setattr("srtool.infer.catalog.shipped_models", lambda: {x4: models / x4})
    result = run(str(photo_dir / "baby.png"), str(tmp_path / "o"), "--scale", "3")
    assert result.exit_code == 0, result.output
    assert f"{x3} is not installed: using {x4}" in " ".join(result.output.split())
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
    models, x2, x4 = tmp_path / "models", DEFAULT_MODEL_FOR_SCALE[2], DEFAULT_MODEL_FOR_SCALE[4]
    build_sr_model(models / x2 / "model.onnx", scale=2)
    monkeypatch.setattr("srtool.infer.catalog.shipped_models", lambda: {x2: models / x2})
    result = run(str(photo_dir / "baby.png"), str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert f"{x4} is not installed: using {x2}" in " ".join(result.output.split())
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


def _srtool(*args: str) -> list[str]:
    return [sys.executable, "-m", "srtool", "upscale", *args]


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


@pytest.fixture(scope="module")
def baboons(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """12 photos of 500x480 (rotated copies): a batch that takes a few seconds."""
    src = tmp_path_factory.mktemp("baboons")
    image = Image.open(shared_data / "Set14" / "baboon.png").convert("RGB")
    for i in range(12):
        image.rotate(90 * (i % 4), expand=True).save(src / f"img{i:02d}.png")
    return src


def _wait_for_outputs(out: Path, count: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if len(list(out.glob("img*.png"))) >= count:
            return
        time.sleep(0.005)


def test_killed_run_leaves_no_truncated_output(
    tmp_path: Path, baboons: Path, tiny_model_x2: Path
) -> None:
    """SIGKILL at seeded random points of successive runs (the first a plain run, then
    --skip-existing reruns): every visible output decodes fully at every kill; a last rerun with
    --skip-existing finishes the batch with outputs bit-identical to an uninterrupted run and no
    temporary file left anywhere."""
    rng = random.Random(20240611)
    args = ["--model", str(tiny_model_x2), "--threads", "1", "--tile", "128"]
    clean = tmp_path / "clean"
    result = run(str(baboons), str(clean), *args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    kills = 0
    for attempt in range(3):
        before = len(list(out.glob("img*.png")))
        cmd = _srtool(str(baboons), str(out), *args, *(["--skip-existing"] if attempt else []))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_outputs(out, before + rng.randint(1, 3), proc)
        time.sleep(rng.uniform(0.0, 0.15))
        if proc.poll() is None:
            kills += 1
        proc.kill()
        proc.wait()
        visible = sorted(out.glob("img*.png"))
        if attempt == 0:
            assert len(visible) < 12, "the run finished before it could be interrupted"
        for path in visible:
            with Image.open(path) as im:
                im.load()  # raises on a truncated file
                assert im.size == (1000, 960) or im.size == (960, 1000)
    assert kills >= 1
    result = run(str(baboons), str(out), *args, "--skip-existing")
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("img*.png"))) == 12
    for path in sorted(clean.glob("img*.png")):
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name
    # the reruns rewrote any file whose write was killed and removed the temporary files
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_sigterm_stops_like_ctrl_c_with_a_summary(
    tmp_path: Path, baboons: Path, tiny_model_x2: Path
) -> None:
    """SIGTERM (a service manager, a cluster's pre-emption) stops `upscale` as Ctrl-C does: the
    file being written is finished, the summary is printed, exit 130, no temporary file."""
    out = tmp_path / "out"
    cmd = _srtool(str(baboons), str(out), "--model", str(tiny_model_x2), "--threads", "1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_outputs(out, 1, proc)
    assert proc.poll() is None, "the run ended before SIGTERM"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    done = int(re.search(r"(\d+) done, 0 skipped, 0 failed, (\d+) not processed", stdout)[1])
    assert done == len(list(out.glob("img*.png"))) and 1 <= done < 12
    assert _hidden(out) == []


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


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e9", "17", "0", "-1"])
def test_outscale_out_of_range_is_a_usage_error(
    photo_dir: Path, tmp_path: Path, tiny_model_x2: Path, value: str
) -> None:
    out = tmp_path / "o"
    result = run(str(photo_dir), str(out), "--model", str(tiny_model_x2), f"--outscale={value}")
    assert result.exit_code == 2, result.output
    assert "--outscale must be a number above 0 and at most 16" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_absurd_thread_count_is_a_usage_error(
    photo_dir: Path, tmp_path: Path, tiny_model_x2: Path
) -> None:
    for value in ("100000", "99999999999999999999"):  # a crash and an exit-1 error before
        result = run(
            str(photo_dir), str(tmp_path / "o"), "--model", str(tiny_model_x2), "--threads", value
        )
        assert result.exit_code == 2, result.output


def test_suffix_cannot_leave_the_output_folder(
    photo_dir: Path, tmp_path: Path, tiny_model_x2: Path
) -> None:
    out = tmp_path / "a" / "b" / "out"
    result = run(str(photo_dir), str(out), "--model", str(tiny_model_x2), "--suffix", "/../../x")
    assert result.exit_code == 2 and "--suffix" in result.output, result.output
    assert [p for p in tmp_path.rglob("*") if p.is_file() and "photos" not in p.parts] == []


def test_plain_output_is_one_line_per_file_whatever_the_names(
    tmp_path: Path, tiny_model_x2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a pipe: no wrapping at 80 columns, a newline in a name escaped, and Python warnings
    from any thread (numpy, Pillow) logged at debug level instead of printed."""
    import numpy as np

    from srtool.infer import pipeline as pipeline_module

    src = tmp_path / "in"
    src.mkdir()
    long = "a-very-long-file-name-" * 5
    Image.new("RGB", (24, 16)).save(src / f"{long}.png")
    Image.new("RGB", (24, 16)).save(src / "line\nbreak.png")
    (src / f"{long}-broken.png").write_bytes(b"not an image at all")
    (src / "bad\nname.png").write_bytes(b"")
    real_read, real_upscale = pipeline_module.read_media, pipeline_module.upscale_picture

    def read(path, **kwargs):  # noqa: ANN001, ANN003
        warnings.warn("Truncated File Read", UserWarning, stacklevel=1)  # (the reader thread)
        return real_read(path, **kwargs)

    def upscale(*args, **kwargs):  # noqa: ANN002, ANN003
        np.float32(1) / np.float32(0)  # RuntimeWarning: divide by zero
        return real_upscale(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "read_media", read)
    monkeypatch.setattr(pipeline_module, "upscale_picture", upscale)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(
            app,
            ["upscale", str(src), str(tmp_path / "out"), "--model", str(tiny_model_x2)]
            + ["--device", "cpu"],
            env={"COLUMNS": "80"},
        )
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert len(lines) == 5, result.output  # 2 done, 2 failed, the summary
    assert sum(line.startswith("failed ") for line in lines) == 2
    assert any(line.startswith("failed bad\\nname.png: ") for line in lines)
    assert any(" done line\\nbreak.png -> " in line for line in lines)
    assert "2 done, 0 skipped, 2 failed" in lines[-1]
    assert [str(w.message) for w in caught] == []
    assert "Warning" not in result.output
    result = runner.invoke(
        app,
        ["upscale", str(src), str(tmp_path / "out2"), "--model", str(tiny_model_x2), "-v"],
    )
    assert "RuntimeWarning: divide by zero" in result.output  # --verbose shows them


def _unprivileged(cmd: list[str]) -> list[str]:
    """As root, drop the capabilities that let root ignore file permissions, so that a folder
    of mode 000 is unreadable to the command as it is to any user."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file permissions cannot take effect")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", *cmd]


def test_odd_entries_are_reported_and_never_block_the_batch(
    tmp_path: Path, tiny_model_x2: Path
) -> None:
    """A symlink loop, a FIFO, a link to /dev/zero and an unreadable sub-folder each get one
    failed line; a valid photo with a 250-byte name is upscaled; the run ends with exit 1."""
    src = tmp_path / "in"
    (src / "locked").mkdir(parents=True)
    Image.new("RGB", (24, 16)).save(src / "ok.png")
    long_name = "L" * 246 + ".png"
    Image.new("RGB", (24, 16)).save(src / long_name)
    Image.new("RGB", (24, 16)).save(src / "locked" / "hidden-away.png")
    (src / "a.png").symlink_to("b.png")
    (src / "b.png").symlink_to("a.png")
    os.mkfifo(src / "pipe.png")
    (src / "zero.png").symlink_to("/dev/zero")
    out = tmp_path / "out"
    cmd = _unprivileged(
        _srtool(str(src), str(out), "--model", str(tiny_model_x2), "--device", "cpu")
    )
    (src / "locked").chmod(0)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        (src / "locked").chmod(0o755)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = sorted(line.split(":")[0] for line in proc.stderr.splitlines())
    assert failed == [
        "failed a.png",
        "failed b.png",
        "failed locked/",
        "failed pipe.png",
        "failed zero.png",
    ], proc.stderr
    assert "2 done, 0 skipped, 5 failed" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([long_name, "ok.png"])


@pytest.fixture()
def nearly_full_disk(tmp_path: Path) -> Iterator[tuple[Path, object]]:
    """A folder with about 80 KB free: a 512 KB tmpfs (root) that a filler file fills up, or,
    where mounting is not possible, a file-size limit for the child process (each file over
    24 KB fails with "File too large"). Yields the folder and the child's pre-exec function."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount"):
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(folder)], capture_output=True
        )
        mounted = proc.returncode == 0
    try:
        if mounted:
            (folder / "filler").write_bytes(b"\0" * (512 - 80) * 1024)
            yield folder, None
        else:

            def limit() -> None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (24 * 1024, 24 * 1024))

            yield folder, limit
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def test_disk_full_reports_every_file_and_never_hangs(
    tmp_path: Path, shared_data: Path, tiny_model_x2: Path, nearly_full_disk
) -> None:
    """Writes fail for lack of space (PNG: OSError; TIFF: libtiff's RuntimeError, which used to
    kill the writer thread and hang the batch): each file is reported once, nothing partial is
    left, exit 1."""
    folder, preexec = nearly_full_disk
    src = tmp_path / "in"
    src.mkdir()
    baboon = Image.open(shared_data / "Set14" / "baboon.png").convert("RGB")
    names = [f"p{i}.png" for i in range(3)] + [f"t{i}.tif" for i in range(4)]
    for i, name in enumerate(names):
        crop = baboon.crop((i * 40, i * 30, i * 40 + 96, i * 30 + 72))
        crop.save(src / name, **({"compression": "tiff_lzw"} if name.endswith("tif") else {}))
    out = folder / "out"
    proc = subprocess.run(
        _srtool(str(src), str(out), "--model", str(tiny_model_x2), "--device", "cpu"),
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=preexec,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    done = {line.split()[2] for line in proc.stdout.splitlines() if " done " in line}
    # (libtiff prints its own "Error writing TIFF header." besides: image I/O's to silence)
    failures = [line for line in proc.stderr.splitlines() if line.startswith("failed ")]
    failed = {line.split()[1].rstrip(":") for line in failures}
    assert len(failures) == len(failed)  # one line each
    assert done | failed == set(names) and not done & failed, proc.stdout + proc.stderr
    assert any(name.endswith(".tif") for name in failed)
    assert f"{len(done)} done, 0 skipped, {len(failed)} failed" in proc.stdout
    noise = [line for line in proc.stderr.splitlines() if not line.startswith("failed ")]
    assert not noise, noise  # libtiff's own "Error writing TIFF header." stays off the terminal
    assert _hidden(out) == []
    for name in done:
        with Image.open(out / name) as im:
            im.load()
            assert im.size == (192, 144)


def test_int8_runs_the_int8_sibling_on_cpu(photo_dir: Path, tmp_path: Path) -> None:
    """--int8 runs PATH.int8.onnx beside --model PATH.onnx (the same output as naming it), and
    says so once when there is none."""
    fp32 = build_sr_model(tmp_path / "m" / "model.onnx", scale=2, seed=1)
    int8 = build_sr_model(tmp_path / "m" / "model.int8.onnx", scale=2, seed=3)
    src = str(photo_dir / "baby.png")
    outs = {}
    for name, args in {
        "fp32": ["--model", str(fp32)],
        "int8": ["--model", str(fp32), "--int8"],
        "named": ["--model", str(int8)],
    }.items():
        result = run(src, str(tmp_path / name), *args, "--device", "cpu")
        assert result.exit_code == 0, result.output
        assert "variant" not in result.output and "runs on CPU" not in result.output
        outs[name] = np.asarray(Image.open(tmp_path / name / "baby.png"))
    assert np.array_equal(outs["int8"], outs["named"])
    assert not np.array_equal(outs["int8"], outs["fp32"])
    solo = build_sr_model(tmp_path / "solo.onnx", scale=2)
    result = run(src, str(tmp_path / "solo"), "--model", str(solo), "--int8", "--device", "cpu")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert text.count("solo has no int8 variant (solo.int8.onnx): running it in fp32") == 1
