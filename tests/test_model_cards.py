"""The shipped PSNR models' cards are what `training/make_card.py` makes of their training records.

A card is assembled from the run folder, the export card, `srtool evaluate`'s table, the speed
benchmark's JSON and `commands.sh`; one edited by hand, or records changed without re-making the
card, would show here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PSNR_MODELS = [f"{family}-x{scale}" for family in ("compact", "efficient") for scale in (2, 3, 4)]


def _make_card():
    spec = importlib.util.spec_from_file_location("make_card", ROOT / "training" / "make_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", PSNR_MODELS)
def test_card_is_made_from_the_training_records(name: str) -> None:
    card = (ROOT / "exports" / name / "card.md").read_text(encoding="utf-8")
    folder = ROOT / "training" / name
    status = card.splitlines()[2]
    made = _make_card().render(name, folder / "evaluate.md", folder / "bench.json", status)
    assert made == card, f"re-make it: python training/make_card.py {name} ..."


@pytest.mark.parametrize("name", PSNR_MODELS)
def test_card_has_an_int8_section_exactly_when_an_int8_file_ships(name: str) -> None:
    card = (ROOT / "exports" / name / "card.md").read_text(encoding="utf-8")
    ships = (ROOT / "exports" / name / "model.int8.onnx").is_file()
    sections = [line for line in card.splitlines() if line == "## int8"]
    if ships:
        assert sections == ["## int8"]
        assert "- file: `model.int8.onnx` — PSNR cost" in card
        assert f"| {name}-int8 |" in card  # its own srtool evaluate row
    else:
        assert "- file: `model.int8.onnx` — PSNR cost" not in card


def test_section_helpers() -> None:
    module = _make_card()
    card = "# t\n\n## A\na\n\n## int8\nx\ny\n\n## B\nb"
    assert module._section(card, "## int8") == "x\ny"
    assert module._without_section(card, "## int8") == "# t\n\n## A\na\n\n## B\nb"
    assert module._section(card, "## none") == ""
    assert module._without_section(card, "## none") == card
    assert module._section("## int8\nlast", "## int8") == "last"
