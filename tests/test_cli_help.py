"""Every command's --help shows an example; the long ones group their options in panels."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from srtool.cli import app

runner = CliRunner()

PANELS = {
    ("upscale",): [
        "Model",
        "Size and names",
        "Tiling and performance",
        "Input selection",
        "Output",
        "Quality",
        "Video",
    ],
    ("evaluate",): ["Benchmarks and data", "Models", "Scores", "Output files", "Performance"],
    ("train",): ["Data", "Recipe and run", "Model and weights", "Device"],
    ("export",): ["Output", "Quantisation (int8)", "Checks"],
    ("doctor",): [],
    ("data", "list"): [],
    ("data", "fetch"): [],
    ("data", "verify"): [],
    ("models", "list"): [],
    ("models", "add"): [],
}


@pytest.mark.parametrize("command", list(PANELS), ids=" ".join)
def test_help_has_an_example_and_panels(command: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"srtool {' '.join(command)}" in result.output  # the example runs this command
    for panel in PANELS[command]:
        assert f"─ {panel} ─" in result.output, panel


def test_upscale_help_names_the_new_size_and_name_options() -> None:
    result = runner.invoke(app, ["upscale", "--help"], env={"COLUMNS": "120"})
    for option in ("--width", "--height", "--name", "--outscale", "--suffix"):
        assert option in result.output


@pytest.mark.parametrize("command", [(), *PANELS], ids=lambda c: " ".join(c) or "srtool")
def test_flags_show_no_value_and_arguments_read_as_in_the_readme(command: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output  # a flag takes no value
    assert "{" not in result.output.splitlines()[1]  # usage: INPUT OUTPUT, not {input} {output}


def test_usage_names_arguments_in_upper_case_and_the_root_lists_upscale_first() -> None:
    usage = runner.invoke(app, ["upscale", "--help"], env={"COLUMNS": "200"}).output
    assert "Usage: srtool upscale [OPTIONS] INPUT OUTPUT" in usage
    root = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    listed = [
        line.split()[1] for line in root.splitlines() if line.startswith("│ ") and "  " in line
    ]
    commands = [name for name in listed if not name.startswith("-")]
    assert commands[:3] == ["upscale", "evaluate", "train"], commands


@pytest.mark.parametrize(
    ("command", "option", "choices"),
    [
        (("evaluate",), "--degradation", "bicubic|realistic"),
        (("evaluate",), "--device", "auto|cpu|cuda[:N]"),
        (("export",), "--format", "onnx|safetensors|pth"),
        (("export",), "--exporter", "dynamo|torchscript"),
        (("doctor",), "--device", "auto|cpu|cuda[:N]"),
        (("upscale",), "--device", "auto|cpu|cuda[:N]|cuda:0,1|cuda:all"),
        (("upscale",), "--format", "keep|png|jpg|webp|tiff|gif|heic|avif"),
        (("upscale",), "--alpha", "resize|model"),
        (("upscale",), "--codec", "h264|h265|av1|vp9"),
        (("upscale",), "--tile", "auto|0|N"),
        (("upscale",), "--shard", "K/N"),
    ],
)
def test_choices_are_shown_in_the_type_column(
    command: tuple[str, ...], option: str, choices: str
) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    row = next(
        line
        for line in result.output.splitlines()
        if line.startswith("│") and f" {option} " in line
    )
    assert choices in row
