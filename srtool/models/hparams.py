"""Hyper-parameters recorded once: the keyword-only arguments a network was built with.

``build(model.arch, **model.hparams)`` must rebuild a network exactly (that is how checkpoints
describe themselves), so ``hparams`` is taken from the constructor call itself — defaults
filled in — rather than from a dict written by hand beside the signature.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["records_hparams"]

Init = TypeVar("Init", bound=Callable[..., None])


def records_hparams(init: Init) -> Init:
    """Decorate a network's ``__init__`` so that ``self.hparams`` holds its keyword-only
    arguments as called, defaults included."""
    signature = inspect.signature(init)
    names = [n for n, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY]

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        init(self, *args, **kwargs)
        self.hparams = {name: bound.arguments[name] for name in names}

    return wrapper  # type: ignore[return-value]
