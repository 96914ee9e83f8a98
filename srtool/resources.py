"""Where srtool's shipped files are: the ONNX models (``exports/``) and training recipes.

Installed, they are the packages ``srtool.exports`` and ``srtool.recipes``. Run from a source
checkout whose ``srtool/`` folder shadows the installed package (``python -m srtool`` in the
repository root), those packages do not exist in the source tree, so the checkout's own top-level
``exports/`` and ``training/recipes/`` folders are used instead.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["exports_dir", "recipes_dir"]

_CHECKOUT = Path(__file__).resolve().parent.parent


def _package_dir(package: str, checkout_folder: Path) -> Path:
    try:
        return Path(str(resources.files(package)))
    except ModuleNotFoundError:
        return checkout_folder


def exports_dir() -> Path:
    """The folder of shipped models (one sub-folder per model)."""
    return _package_dir("srtool.exports", _CHECKOUT / "exports")


def recipes_dir() -> Path:
    """The folder of shipped training recipes (``*.toml``)."""
    return _package_dir("srtool.recipes", _CHECKOUT / "training" / "recipes")
