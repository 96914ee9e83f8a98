"""``srtool train``: typed recipes in, checkpoints out.

- :mod:`~srtool.train.config` — recipes: frozen dataclasses, TOML, ``--set`` overrides;
- :mod:`~srtool.train.run` — the run folder (:class:`~srtool.train.run.RunDir`) and its layout;
- :mod:`~srtool.train.patches` — training images: pairing, cache, patches, seeded sampling;
- :mod:`~srtool.train.degrade` — LR synthesis (bicubic, Gaussian, practical 2nd-order);
- :mod:`~srtool.train.losses` — pixel, perceptual (VGG) and adversarial losses;
- :mod:`~srtool.train.setup` — device, numerics, data and networks before the first step;
- :mod:`~srtool.train.weights` — ``--init-from``, ``--freeze`` and the EMA;
- :mod:`~srtool.train.loop` — the :class:`~srtool.train.loop.Trainer`, one step, the loop;
- :mod:`~srtool.train.state`, :mod:`~srtool.train.curves`, :mod:`~srtool.train.distributed` —
  resume state, metrics and curves, torchrun.

Importing this package is cheap: torch comes with :mod:`~srtool.train.loop` and the modules
it uses, not with the package.
"""

from __future__ import annotations

from srtool.train.config import Recipe, load_recipe

__all__ = ["Recipe", "load_recipe"]
