"""Network weights at the edges of a run: ``--init-from`` (same or another scale, srtool
checkpoints or plain state dicts), ``--freeze`` globs, and the EMA copy of the generator."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from srtool.errors import UsageError, first_line

if TYPE_CHECKING:
    from srtool.train.config import Recipe

__all__ = ["apply_freeze", "ema_update", "load_init"]

log = logging.getLogger("srtool")


def apply_freeze(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Freeze parameters whose name matches a pattern (``fnmatch``), except those matching a
    ``!pattern``. Returns the frozen names; a pattern that matches nothing is an error."""
    if not patterns:
        return []
    names = [n for n, _ in model.named_parameters()]
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]
    for pat in include + exclude:
        if not any(fnmatch.fnmatchcase(n, pat) for n in names):
            tops = sorted({n.split(".")[0] for n in names})
            raise UsageError(
                f"--freeze {pat!r} matches no parameter; top-level names: {', '.join(tops)}"
            )
    frozen = []
    for name, p in model.named_parameters():
        if any(fnmatch.fnmatchcase(name, pat) for pat in include) and not any(
            fnmatch.fnmatchcase(name, pat) for pat in exclude
        ):
            p.requires_grad_(False)
            frozen.append(name)
    if len(frozen) == len(names):
        raise UsageError("--freeze froze every parameter: nothing left to train")
    return frozen


def load_init(model: nn.Module, path: str | Path, recipe: Recipe) -> dict[str, Any]:
    """Copy weights from ``path`` into ``model``: an srtool checkpoint (same arch and scale; EMA
    weights preferred), or a plain state dict in safetensors / PyTorch format, such as Real-ESRGAN
    or BasicSR releases (``params_ema``, ``params`` and ``state_dict`` wrappers are unwrapped).
    Key names and shapes must match the recipe's network exactly: nothing is loaded partially."""
    from srtool.models.checkpoint import is_checkpoint, load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--init-from {path}: no such file")
    if is_checkpoint(path):
        source, meta = load_checkpoint(path)
        arch, scale = getattr(source, "arch", None), getattr(source, "scale", None)
        if arch != recipe.model.arch:
            raise UsageError(
                f"--init-from {path}: it is {arch} x{scale}, the recipe trains "
                f"{recipe.model.arch} x{recipe.model.scale}"
            )
        state, meta = source.state_dict(), dict(meta or {})
        if scale != recipe.model.scale:
            state, fresh = _cross_scale_state(model, state, recipe, scale, path)
            log.warning(
                "--init-from %s: x%s weights for a x%s network; the scale-specific %s start fresh",
                path,
                scale,
                recipe.model.scale,
                ", ".join(fresh),
            )
            meta["init_fresh"] = fresh
    else:
        state, meta = _plain_state_dict(path), {"source": "state_dict"}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:600]
        raise UsageError(
            f"--init-from {path}: weights do not fit {recipe.model.arch} "
            f"{recipe.model.hparams or ''} x{recipe.model.scale}: {detail}"
        ) from None
    return meta


def _cross_scale_state(
    model: nn.Module,
    source: dict[str, torch.Tensor],
    recipe: Recipe,
    source_scale: int,
    path: Path,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Weights for ``model`` from the same network trained at another scale (the way x3/x4
    models are commonly started from a x2 one): every tensor whose shape does not depend on the
    scale is copied; the scale-specific ones (the upsampler's) keep ``model``'s initialisation,
    and their names are returned."""
    from srtool.models import build

    twin = build(recipe.model.arch, scale=source_scale, **recipe.model.hparams).state_dict()
    if set(source) != set(twin) or any(source[k].shape != twin[k].shape for k in twin):
        raise UsageError(
            f"--init-from {path}: its network differs from the recipe's "
            f"{recipe.model.arch} {recipe.model.hparams or ''} beyond the scale"
        )
    target = model.state_dict()
    fresh = sorted(k for k in target if k not in twin or twin[k].shape != target[k].shape)
    merged = {k: (target[k] if k in fresh else source[k]) for k in target}
    return merged, fresh


def _plain_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file or a PyTorch file (never unpickling code)."""
    from srtool.models.pickled import TorchFileError, load_weights_only

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise UsageError(
                f"--init-from {path}: not a readable safetensors file ({first_line(exc, 200)})"
            ) from None
    else:
        try:
            state = load_weights_only(path)
        except TorchFileError as exc:
            raise UsageError(f"--init-from {path}: {exc}") from None
    for key in ("params_ema", "params", "state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"--init-from {path}: no state dict of tensors in the file")
    return {k.removeprefix("module."): v for k, v in state.items()}


@torch.no_grad()
def ema_update(
    ema: nn.Module, model: nn.Module, decay: float, step: int, keep: torch.Tensor | None = None
) -> None:
    """EMA with a warm-up (``min(decay, (1 + step) / (10 + step))``) so short runs and early
    validations are not dominated by the initial weights.

    ``keep``, a 0-d device tensor, scales the update: 1 updates, 0 leaves the parameters as they
    are (a skipped step), decided on the device without waiting for it."""
    d = min(decay, (1 + step) / (10 + step))
    ema_p = [p for p in ema.parameters()]
    model_p = [p.detach() for p in model.parameters()]
    if keep is None:
        torch._foreach_lerp_(ema_p, model_p, 1.0 - d)
    else:
        weight = keep.to(dtype=torch.float32) * (1.0 - d)
        torch._foreach_lerp_(ema_p, model_p, [weight.to(p.dtype) for p in ema_p])
    for eb, mb in zip(ema.buffers(), model.buffers(), strict=True):
        eb.copy_(mb)
