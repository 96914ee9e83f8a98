"""srtool's networks: an explicit registry of generators and discriminators.

Every architecture lives in its own file, takes keyword-only hyper-parameters with defaults and
records them in ``model.hparams``, so ``build(model.arch, **model.hparams)`` rebuilds it exactly —
which is how checkpoints describe themselves. Each model also carries ``arch``, ``kind``
("generator" or "discriminator"), ``scale`` and ``multiple_of`` (input sides must be a multiple of
it; 1 means any size).

Re-parameterisable generators (``span``) train with extra linear branches; :func:`deploy` folds
them into plain convolutions before export (a no-op for the others).

This package imports torch; the upscale path never imports it (it runs exported ONNX models).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from srtool.errors import ModelError
from srtool.models.compact import Compact
from srtool.models.discriminators import UNetDiscriminatorSN, VGGDiscriminator
from srtool.models.reparam import deploy
from srtool.models.rrdbnet import RRDBNet
from srtool.models.span import SPAN
from srtool.models.srresnet import SRResNet

__all__ = [
    "ARCHS",
    "DISCRIMINATORS",
    "Compact",
    "RRDBNet",
    "SPAN",
    "SRResNet",
    "UNetDiscriminatorSN",
    "VGGDiscriminator",
    "arch_class",
    "build",
    "deploy",
]

#: Generators by name: the networks srtool trains, exports and ships.
ARCHS: dict[str, type[nn.Module]] = {
    "srresnet": SRResNet,
    "rrdbnet": RRDBNet,
    "compact": Compact,
    "span": SPAN,
}

#: Discriminators by name, for adversarial training.
DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "vgg": VGGDiscriminator,
    "unet_sn": UNetDiscriminatorSN,
}


def arch_class(arch: str) -> type[nn.Module]:
    """The class registered under ``arch`` (generator or discriminator)."""
    cls = ARCHS.get(arch) or DISCRIMINATORS.get(arch)
    if cls is None:
        raise ModelError(
            f"unknown architecture '{arch}': generators are {', '.join(sorted(ARCHS))}; "
            f"discriminators are {', '.join(sorted(DISCRIMINATORS))}"
        )
    return cls


def build(arch: str, **hparams: Any) -> nn.Module:
    """Construct the registered architecture ``arch`` with keyword hyper-parameters.

    Unknown names, unknown hyper-parameters and invalid values raise :class:`ModelError` naming
    what is wrong and what is accepted.
    """
    cls = arch_class(arch)
    accepted = [
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise ModelError(
            f"{arch}: unknown hyper-parameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted)}"
        )
    try:
        return cls(**hparams)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{arch}: invalid hyper-parameters {hparams}: {exc}") from exc
