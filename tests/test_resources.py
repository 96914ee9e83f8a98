"""Shipped models and recipes are found installed and from a source checkout that shadows the
installed package (``python -m srtool`` in the repository root after ``pip install .``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from srtool import resources
from srtool.infer.catalog import shipped_models
from srtool.train.config import find_recipe, shipped_recipes

ROOT = Path(__file__).resolve().parents[1]


def test_installed_packages_are_used_when_present() -> None:
    assert (resources.exports_dir() / "compact-x4" / "model.onnx").is_file()
    assert (resources.recipes_dir() / "compact_x4.toml").is_file()


def test_a_checkout_without_the_mapped_packages_uses_its_own_folders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(package: str) -> Path:
        raise ModuleNotFoundError(f"No module named {package!r}")

    monkeypatch.setattr(resources.resources, "files", missing)
    assert resources.exports_dir() == ROOT / "exports"
    assert resources.recipes_dir() == ROOT / "training" / "recipes"
    assert "compact-x4" in shipped_models()
    assert "compact_x4" in shipped_recipes()
    assert find_recipe("compact_x4") == ROOT / "training" / "recipes" / "compact_x4.toml"
