"""Training: typed recipes (:mod:`srtool.train.config`) and the loop (:mod:`srtool.train.loop`).

Importing this package is cheap; torch is imported by the loop module, on first use of
:func:`train`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from srtool.train.config import Recipe, load_recipe

if TYPE_CHECKING:
    from srtool.train.loop import TrainEvent, TrainResult

__all__ = ["Recipe", "load_recipe", "train", "TrainEvent", "TrainResult"]


def train(*args: Any, **kwargs: Any) -> TrainResult:
    """See :func:`srtool.train.loop.train`."""
    from srtool.train.loop import train as _train

    return _train(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name in ("TrainEvent", "TrainResult"):
        from srtool.train import loop

        return getattr(loop, name)
    raise AttributeError(name)
