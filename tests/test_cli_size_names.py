"""`srtool upscale --width/--height` (fit inside a box) and `--name` (output name templates)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from srtool.cli import app
from srtool.infer.jobs import check_name_template, collect_jobs
from srtool.infer.picture import fit_size, output_size

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["upscale", *args])


def photo(path: Path, size: tuple[int, int] = (40, 20)) -> Path:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def test_fit_size_keeps_aspect_inside_the_box() -> None:
    assert fit_size(20, 40, (100, None)) == (50, 100)
    assert fit_size(20, 40, (None, 30)) == (30, 60)
    assert fit_size(20, 40, (100, 30)) == (30, 60)  # the height binds
    assert fit_size(20, 40, (60, 1000)) == (30, 60)  # the width binds
    assert output_size(20, 40, 2, None, (60, None)) == (30, 60)
    assert output_size(20, 40, 2, 1.5) == (30, 60)


@pytest.mark.parametrize(
    ("args", "size"),
    [
        (("--width", "100"), (100, 50)),
        (("--height", "30"), (60, 30)),
        (("--width", "100", "--height", "30"), (60, 30)),
        (("--width", "30"), (30, 15)),  # smaller than the input: the network, then a downscale
    ],
)
def test_width_height_fit_the_output(
    tmp_path: Path, tiny_model_x2: Path, args: tuple[str, ...], size: tuple[int, int]
) -> None:
    src = photo(tmp_path / "in" / "wide.png")
    out = tmp_path / "out"
    result = run(str(src.parent), str(out), "--model", str(tiny_model_x2), *args)
    assert result.exit_code == 0, result.output
    assert Image.open(out / "wide.png").size == size


def test_width_height_apply_to_animations(tmp_path: Path, tiny_model_x2: Path) -> None:
    frames = [Image.new("RGB", (40, 20), (i * 60, 0, 0)) for i in range(3)]
    src = tmp_path / "anim.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = tmp_path / "out"
    result = run(str(src), str(out), "--model", str(tiny_model_x2), "--width", "100")
    assert result.exit_code == 0, result.output
    with Image.open(out / "anim.gif") as anim:
        assert anim.size == (100, 50)
        assert anim.n_frames == 3


def test_width_and_outscale_are_exclusive(tmp_path: Path, tiny_model_x2: Path) -> None:
    src = photo(tmp_path / "a.png")
    result = run(
        str(src), str(tmp_path / "out"), "--model", str(tiny_model_x2), "--width", "80",
        "--outscale", "2",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--outscale" in result.output
    assert not (tmp_path / "out").exists()


def test_a_picture_that_needs_more_than_x16_fails_alone(
    tmp_path: Path, tiny_model_x2: Path
) -> None:
    photo(tmp_path / "in" / "tiny.png", (4, 4))
    photo(tmp_path / "in" / "big.png", (40, 40))
    out = tmp_path / "out"
    result = run(str(tmp_path / "in"), str(out), "--model", str(tiny_model_x2), "--width", "100")
    assert result.exit_code == 1
    assert "x16" in result.output
    assert Image.open(out / "big.png").size == (100, 100)
    assert not (out / "tiny.png").exists()


def test_name_template_fields(tmp_path: Path, tiny_model_x2: Path) -> None:
    src = photo(tmp_path / "in" / "sub" / "cat.png")
    out = tmp_path / "out"
    result = run(
        str(tmp_path / "in"), str(out), "--model", str(tiny_model_x2), "--format", "jpg",
        "--name", "{stem}_x{scale}_{model}.{ext}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "sub" / f"cat_x2_{tiny_model_x2.stem}.jpg").is_file()
    assert src.is_file()


def test_name_template_scale_follows_outscale_and_ext_is_added(
    tmp_path: Path, tiny_model_x2: Path
) -> None:
    src = photo(tmp_path / "cat.png")
    out = tmp_path / "out"
    result = run(
        str(src), str(out), "--model", str(tiny_model_x2), "--outscale", "1.5",
        "--name", "{stem}-{scale}x",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert Image.open(out / "cat-1.5x.png").size == (60, 30)


@pytest.mark.parametrize(
    "template", ["../{stem}.{ext}", "sub/{stem}", "a\\b", "{stem}..{ext}", "{nope}", "{0}", ""]
)
def test_bad_name_templates_are_usage_errors(
    tmp_path: Path, tiny_model_x2: Path, template: str
) -> None:
    src = photo(tmp_path / "in" / "cat.png")
    out = tmp_path / "out"
    result = run(str(src.parent), str(out), "--model", str(tiny_model_x2), "--name", template)
    assert result.exit_code == 2, result.output
    assert "--name" in result.output
    assert not out.exists() or not any(out.rglob("*.png"))


def test_name_and_suffix_are_exclusive(tmp_path: Path, tiny_model_x2: Path) -> None:
    src = photo(tmp_path / "cat.png")
    result = run(
        str(src), str(tmp_path / "out"), "--model", str(tiny_model_x2), "--suffix", "_x2",
        "--name", "{stem}.{ext}",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--suffix" in result.output


def test_name_template_in_the_library(tmp_path: Path) -> None:
    src = photo(tmp_path / "in" / "cat.png")
    jobs = collect_jobs(
        src.parent, tmp_path / "out", name="{stem}_{scale}x", name_fields={"scale": "4"}
    )
    assert [job.target.name for job in jobs] == ["cat_4x.png"]
    check_name_template("{stem}_x{scale}.{ext}")
