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
