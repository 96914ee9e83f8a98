"""Command-line interface: ``upscale | evaluate | export | train | models | data | doctor``."""

from __future__ import annotations

from srtool.cli import data as _data  # noqa: F401
from srtool.cli import doctor as _doctor  # noqa: F401
from srtool.cli import evaluate as _evaluate  # noqa: F401
from srtool.cli import export as _export  # noqa: F401
from srtool.cli import models as _models  # noqa: F401
from srtool.cli import train as _train  # noqa: F401
from srtool.cli import upscale as _upscale  # noqa: F401  (registers the command)
from srtool.cli._app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
