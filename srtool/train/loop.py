"""The training loop: :func:`train` reads top to bottom, PSNR and GAN stages alike.

Everything that differs between SRResNet-MSE, SRGAN, ESRGAN-PSNR, ESRGAN and the compact models
is a value in the recipe (losses and weights, discriminator, schedule), never a subclass.
:mod:`srtool.train.setup` builds the ingredients; :class:`Trainer` holds them with the state a
resume restores; :func:`train_step` is one optimisation step; :func:`train` is the loop.

Numerics: Adam; learning rate from :func:`lr_factor` (constant, step or cosine, linear warm-up);
EMA of the generator (what checkpoints and validation use); autocast (bf16/fp16 on CUDA with a
GradScaler for fp16, bf16 on CPU when asked); gradient-norm clipping; a guard that skips any step
whose loss or gradient is not finite and stops the run, state saved, after ``max_bad_steps``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from srtool.errors import DeviceError, SrtoolError
from srtool.train import distributed as sr_dist
from srtool.train import losses, patches
from srtool.train.config import Recipe, recipe_to_dict
from srtool.train.curves import MetricsLog, plot_curves
from srtool.train.qat import set_observing
from srtool.train.run import RunDir
from srtool.train.setup import (
    Networks,
    Numerics,
    TrainingData,
    build_networks,
    load_training_data,
    make_loader,
    resolve_amp,
    resolve_numerics,
    stop_requests,
    subnormals_as_zero,
)
from srtool.train.weights import ema_update

__all__ = [
    "TrainEvent",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "load_scaler_state",
    "lr_factor",
    "resolve_amp",
    "train",
    "train_step",
    "validate",
    "validation_scores",
]

log = logging.getLogger("srtool")


class TrainingDiverged(SrtoolError):
    """Too many steps had a non-finite loss or gradient; the state before them was saved."""


class TrainingInterrupted(SrtoolError):
    """SIGINT (Ctrl-C) or SIGTERM (e.g. a cluster's pre-emption notice) stopped the run after a
    completed step whose state was saved; ``--resume`` continues from it."""

    exit_code = 130


@dataclass(frozen=True)
class TrainEvent:
    """Progress report. ``kind``: ``load`` (images decoded so far / total), ``start``, ``step``
    (a log interval: losses, it/s, patches/s, lr, eta_s), ``progress`` (after every step: eta_s
    from the host clock only; the losses are those of the last ``step``), ``val`` (val_psnr,
    val_ssim, best), ``save`` (path) or ``done``."""

    kind: str
    step: int
    total: int
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What a finished run reports; the CLI renders it as the one-screen summary."""

    run_dir: Path
    recipe: Recipe
    steps: int
    start_step: int
    seconds: float
    patches_per_s: float
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    best_step: int | None
    best_psnr: float | None
    best_ssim: float | None
    final_losses: dict[str, float]
    bad_steps: int
    train_images: int
    val_images: int
    skipped: list[str]
    device: str
    amp: str
    world_size: int
    curves: Path | None


def lr_factor(step: int, recipe: Recipe) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based)."""
    o, total = recipe.optim, recipe.train.steps
    if o.warmup_steps and step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    if o.schedule == "step":
        return o.gamma ** sum(1 for m in o.milestones if step >= m)
    if o.schedule == "cosine":
        span = max(1, total - o.warmup_steps)
        t = min(1.0, (step - o.warmup_steps) / span)
        floor = min(1.0, o.min_lr / o.lr) if o.lr > 0 else 0.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


@torch.no_grad()
def validate(
    model: nn.Module, pairs: Sequence[patches.ImagePair], scale: int, device: torch.device
) -> tuple[float, float]:
    """Mean PSNR-Y / SSIM-Y over ``pairs`` with the evaluation protocol (SR rounded to uint8,
    ``scale`` border pixels cropped)."""
    scores = validation_scores(model, pairs, scale, device)
    return scores["val_psnr"], scores["val_ssim"]


@torch.no_grad()
def validation_scores(
    model: nn.Module,
    pairs: Sequence[patches.ImagePair],
    scale: int,
    device: torch.device,
    *,
    lpips: Callable[[np.ndarray, np.ndarray], float] | None = None,
    grid: bool = False,
) -> dict[str, float]:
    """``val_psnr`` / ``val_ssim`` (means of PSNR-Y / SSIM-Y over ``pairs`` by the evaluation
    protocol: SR rounded to uint8, ``scale`` border pixels cropped), plus ``val_lpips`` with an
    ``lpips`` function of two uint8 images (border-cropped as ``srtool evaluate`` does) and
    ``val_grid`` (:func:`srtool.evaluate.grid.grid_ratio`, period = scale, the mean over the
    images large enough for it) with ``grid``."""
    from srtool.errors import UsageError
    from srtool.evaluate.grid import grid_ratio
    from srtool.metrics import psnr, ssim

    was_training = model.training
    model.eval()
    values: dict[str, list[float]] = {"val_psnr": [], "val_ssim": []}
    if lpips is not None:
        values["val_lpips"] = []
    c = scale
    for pair in pairs:
        lr = torch.from_numpy(pair.lr.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        sr = torch.nan_to_num(model(lr.to(device)), nan=0.0).clamp_(0, 1)  # NaN scores low
        sr8 = (sr[0].permute(1, 2, 0).float().cpu().numpy() * 255.0).round().astype(np.uint8)
        values["val_psnr"].append(psnr(sr8, pair.hr, crop_border=scale, y_only=True))
        values["val_ssim"].append(ssim(sr8, pair.hr, crop_border=scale, y_only=True))
        if lpips is not None:
            values["val_lpips"].append(lpips(sr8[c:-c, c:-c], pair.hr[c:-c, c:-c]))
        if grid and scale >= 2:
            try:
                values.setdefault("val_grid", []).append(
                    grid_ratio(sr8, pair.hr, scale, crop_border=scale)
                )
            except UsageError:  # an image too small for the check: left out of the mean
                pass
    model.train(was_training)
    return {k: float(np.mean(v)) for k, v in values.items() if v}


def load_scaler_state(scaler: torch.amp.GradScaler, saved: dict[str, Any]) -> None:
    """Restore a GradScaler; a state saved without fp16 AMP (CPU, bf16) holds none, and then the
    scaler starts fresh instead of failing (resuming a bf16 or CPU run with fp16)."""
    if saved:
        scaler.load_state_dict(saved)


def _not_finite(loss: torch.Tensor, grad_norm: torch.Tensor | None) -> torch.Tensor:
    """1.0 (a one-element tensor on the loss's device) when the loss or the gradient norm is
    NaN/Inf, else 0.0; computed without a host synchronisation."""
    ok = torch.isfinite(loss.detach()).all()
    if grad_norm is not None:
        ok = ok & torch.isfinite(grad_norm).all()
    return (~ok).float().reshape(1)


# --------------------------------------------------------------------------- the trainer


@dataclass
class Trainer:
    """A run's ingredients plus the state that ``--resume`` restores and checkpoints describe."""

    recipe: Recipe
    run: RunDir
    dist: sr_dist.DistInfo
    num: Numerics
    data: TrainingData
    nets: Networks
    init_from: str | Path | None
    t_start: float
    start_step: int = 0
    bad_steps: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"step": None, "psnr": None, "ssim": None})
    rows: list[dict[str, Any]] = field(default_factory=list)
    metrics: MetricsLog | None = None
    emit: Callable[[TrainEvent], None] = lambda event: None
    pending_bad: torch.Tensor | None = None  # skipped steps not yet read, on the device
    lpips: Callable[[np.ndarray, np.ndarray], float] | None = None  # validation LPIPS

    def restore(self, state: dict[str, Any] | None = None) -> None:
        """Load the run's resume state (``state``, already read, or the run's file): weights,
        optimisers, scaler, RNG, counters, metrics."""
        st, n = (state if state is not None else self.run.load_state()), self.nets
        n.g.load_state_dict(st["g"])
        load_optimizer_state(n.opt_g, st["opt_g"])
        if n.ema is not None:
            n.ema.load_state_dict(st["ema"])
        if n.d is not None:
            n.d.load_state_dict(st["d"])
            load_optimizer_state(n.opt_d, st["opt_d"])
        load_scaler_state(self.num.scaler, st["scaler"])
        torch.set_rng_state(st["rng"]["torch"])
        if self.num.device.type == "cuda" and "cuda" in st["rng"]:
            torch.cuda.set_rng_state(st["rng"]["cuda"], self.num.device)
        if st.get("qat"):
            from srtool.train.qat import load_quant_ranges

            load_quant_ranges(n.g, st["qat"])
            if n.ema is not None:
                load_quant_ranges(n.ema, st["qat"])
        self.start_step, self.bad_steps = st["step"], st["bad_steps"]
        self.best, self.rows = st["best"], st["rows"]
        self.t_start -= st.get("time_s", 0.0)  # time_s in the log counts the whole run
        if st.get("data") != self.data.fingerprint:
            log.warning("resuming with different training images: data order will differ")
        changed = _recipe_changes(st["recipe"], recipe_to_dict(self.recipe))
        if changed:
            log.warning("resuming with a recipe that differs from the saved one: %s", changed)

    def meta(self, step: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """What a checkpoint of ``step`` says about how it was trained."""
        r = self.recipe
        return {
            "step": step,
            "recipe": recipe_to_dict(r),
            "training": {
                "recipe": r.name,
                "steps": step,
                "data": [str(f) for f in self.data.folders],
                "train_images": len(self.data.train),
                "patch_size": r.data.patch_size,
                "batch_size": r.data.batch_size,
                "degradation": r.degradation.kind,
                "init_from": str(self.init_from) if self.init_from else None,
                "init_from_step": self.nets.init_meta.get("step"),
                "frozen": len(self.nets.frozen),
                "best_val": self.best,
                "world_size": self.dist.world_size,
            },
            **self.quant_meta(),
            **(extra or {}),
        }

    def quant_meta(self) -> dict[str, Any]:
        """``{"quantization": ...}`` for a quantisation-aware run (the ranges of the weights a
        checkpoint holds: the EMA copy's when kept), else nothing."""
        q = self.recipe.quant
        if not q.qat:
            return {}
        from srtool.train.qat import quantization_meta

        net = self.nets.ema if self.nets.ema is not None else self.nets.g
        return {
            "quantization": quantization_meta(net, percentile=q.percentile, keep_float=q.keep_float)
        }

    def save(self, step: int) -> Path:
        """Weights of ``step`` (EMA when enabled) + the resume state; rank 0 only."""
        n, dev = self.nets, self.num.device
        path = self.run.step_path(step)
        self.run.save_weights(path, n.g, n.ema, self.meta(step))
        rng = {"torch": torch.get_rng_state()}
        if dev.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(dev)
        self.run.save_state(
            {
                "step": step,
                "g": n.g.state_dict(),
                "opt_g": n.opt_g.state_dict(),
                "ema": n.ema.state_dict() if n.ema is not None else {},
                "d": n.d.state_dict() if n.d is not None else {},
                "opt_d": n.opt_d.state_dict() if n.opt_d is not None else {},
                "scaler": self.num.scaler.state_dict(),
                "rng": rng,
                "bad_steps": self.bad_steps,
                "best": self.best,
                "rows": self.metrics.rows,
                "recipe": recipe_to_dict(self.recipe),
                "data": self.data.fingerprint,
                "time_s": time.perf_counter() - self.t_start,
                "qat": self.quant_meta().get("quantization", {}).get("ranges"),
            }
        )
        self.run.prune(self.recipe.train.keep_last)
        self.metrics.flush()
        self.emit(TrainEvent("save", step, self.recipe.train.steps, {"path": str(path)}))
        return path

    def validate_and_keep_best(self, step: int) -> None:
        """Score the EMA (else raw) generator; keep ``best.safetensors`` when it improved."""
        r, n = self.recipe, self.nets
        scores = validation_scores(
            n.ema if n.ema is not None else n.g,
            self.data.val,
            r.model.scale,
            self.num.device,
            lpips=self.lpips,
            grid=r.validates_grid,
        )
        metric = r.train.best_metric
        score = scores.get(f"val_{metric}")
        prev = self.best.get(metric)
        lower = metric == "lpips"
        improved = score is not None and (prev is None or (score < prev if lower else score > prev))
        if improved:
            self.best = {"step": step, **{k.removeprefix("val_"): v for k, v in scores.items()}}
            extra = {"best": True, **scores}
            self.run.save_weights(self.run.best_path, n.g, n.ema, self.meta(step, extra))
        self.metrics.add({"step": step, **scores})
        plot_curves(self.metrics.rows, self.run.curves_path, r.name)
        values = {**scores, "best_psnr": self.best["psnr"]}
        self.emit(TrainEvent("val", step, r.train.steps, {**values, "improved": improved}))

    def result(self, last_path: Path | None, patches_per_s: float) -> TrainResult:
        """The summary of a finished run (rank 0 writes the final curves and metrics)."""
        r, main = self.recipe, self.dist.is_main
        curves = None
        if main:
            curves = plot_curves(self.metrics.rows, self.run.curves_path, r.name)
            self.metrics.close()
            if last_path is None:
                found = self.run.step_checkpoints()
                last_path = found[-1] if found else None
        train_rows = [row for row in (self.metrics.rows if main else []) if "loss_g" in row]
        final = train_rows[-1] if train_rows else {}
        best_path = self.run.best_path
        return TrainResult(
            run_dir=self.run.path,
            recipe=r,
            steps=r.train.steps,
            start_step=self.start_step,
            seconds=time.perf_counter() - self.t_start,
            patches_per_s=patches_per_s,
            last_checkpoint=last_path,
            best_checkpoint=best_path if best_path.exists() else None,
            best_step=self.best["step"],
            best_psnr=self.best["psnr"],
            best_ssim=self.best["ssim"],
            final_losses={k: v for k, v in final.items() if k.startswith(("loss_", "d_"))},
            bad_steps=self.bad_steps,
            train_images=len(self.data.train),
            val_images=len(self.data.val),
            skipped=self.data.skipped,
            device=str(self.num.device),
            amp=self.num.amp_name,
            world_size=self.dist.world_size,
            curves=curves,
        )


def validation_lpips(
    recipe: Recipe, device: torch.device
) -> Callable[[np.ndarray, np.ndarray], float] | None:
    """The LPIPS function validation uses (``train.val_lpips``), or None: ``auto`` uses the
    weights where :func:`srtool.evaluate.lpips.find_weights` finds them, ``on`` requires them."""
    from srtool.errors import ModelError
    from srtool.evaluate.lpips import LPIPS, find_weights, missing_message

    setting = recipe.train.val_lpips
    if setting == "off":
        return None
    if find_weights() is None:
        if setting == "on" or recipe.train.best_metric == "lpips":
            raise ModelError(
                f"train.val_lpips / best_metric = 'lpips' need the LPIPS {missing_message()}"
            )
        log.info("validation without LPIPS: %s", missing_message())
        return None
    return LPIPS.load(None, device)


def _setup(
    recipe: Recipe,
    run: RunDir,
    dist_info: sr_dist.DistInfo,
    *,
    data: Sequence[str],
    val: str | None,
    device: str,
    resume: bool,
    init_from: str | Path | None,
    freeze: Sequence[str],
    data_root: str | Path | None,
    vgg_weights: str | Path | None,
    emit: Callable[[TrainEvent], None],
) -> Trainer:
    """Device, run folder, the saved state (with ``resume``), networks, then data.

    Everything a user can get wrong (a damaged state, hyper-parameters, ``--init-from``,
    ``--freeze``, ``--vgg-weights``) fails before the first training image is decoded, which
    can take minutes. Decoding draws no random numbers from torch, so building the networks
    first leaves the sequence of draws (initial weights, then the loop's) as it was.
    """
    t_start = time.perf_counter()
    num = resolve_numerics(recipe, device, dist_info)
    if not resume:  # checked on every rank, so all of them stop
        run.check_new()
    saved = run.load_state() if resume else None
    if recipe.quant.qat and init_from is None and not resume:
        log.warning("quant.qat without --init-from: fake-int8 training from random weights")
    if dist_info.is_main:
        run.write_recipe(recipe)
    torch.manual_seed(recipe.train.seed)
    nets = build_networks(
        recipe, num, dist_info, init_from=init_from, freeze=freeze, vgg_weights=vgg_weights
    )
    training_data = load_training_data(
        recipe, data, val, data_root, lambda i, n: emit(TrainEvent("load", i, n))
    )
    t = Trainer(recipe, run, dist_info, num, training_data, nets, init_from, t_start, emit=emit)
    t.lpips = validation_lpips(recipe, num.device) if training_data.val else None
    if saved is not None:
        t.restore(saved)
    t.metrics = MetricsLog(run, t.rows) if dist_info.is_main else None
    return t


def _recipe_changes(saved: dict[str, Any], now: dict[str, Any]) -> str:
    """The ``section.key`` settings (``train`` aside) that differ between a saved recipe and the
    one resuming it; sections and keys a state saved before they existed lacks count as their
    defaults. Empty when they agree."""
    default = recipe_to_dict(Recipe())
    changes = []
    for section, values in now.items():
        if section == "train" or not isinstance(values, dict):
            continue
        before = {**default.get(section, {}), **saved.get(section, {})}
        for key, value in values.items():
            if before.get(key) != value:
                changes.append(f"{section}.{key} {before.get(key)!r} -> {value!r}")
    return ", ".join(changes)


def load_optimizer_state(opt: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """``opt.load_state_dict(saved)``, keeping how ``opt`` was built to run (fused, foreach).

    A state dict carries its param groups' implementation flags: a run saved with the plain Adam
    would otherwise turn a fused optimiser back into a plain one, which then refuses the
    device-side skip flag (``found_inf``) this loop hands it."""
    opt.load_state_dict(saved)
    for group in opt.param_groups:
        for key in ("fused", "foreach"):
            if key in opt.defaults:
                group[key] = opt.defaults[key]


def _step_unless(num: Numerics, opt: torch.optim.Optimizer, skip: torch.Tensor) -> None:
    """``opt.step()`` (through the GradScaler) that changes nothing where ``skip`` (a one-element
    device flag) is 1, decided on the device: the host does not wait for the GPU.

    With fp16 the flag joins the scaler's own inf check, so the scaler skips the step and lowers
    its scale as for an overflow. Without a scaler, the fused Adam takes it as ``found_inf``
    (parameters, moments and step count untouched); only a non-fused optimiser reads the flag on
    the host."""
    if num.scaler.is_enabled():
        state = getattr(num.scaler, "_per_optimizer_states", {}).get(id(opt), {})
        found = state.get("found_inf_per_device", {})
        if not found:  # a torch without that bookkeeping: decide on the host
            if bool(skip.item()):
                return
        for flag in found.values():
            flag.copy_(torch.maximum(flag, skip.to(flag.device, flag.dtype).reshape(flag.shape)))
        num.scaler.step(opt)
    elif opt.defaults.get("fused"):
        opt.found_inf = skip.reshape(()).float()
        try:
            opt.step()
        finally:
            del opt.found_inf
    elif not bool(skip.item()):
        opt.step()


def _grad_check(params: Sequence[nn.Parameter], clip: float, scaled: bool) -> torch.Tensor | None:
    """Clip the gradients to norm ``clip`` (when > 0) and return a tensor that is non-finite
    when a gradient is. With fp16 (``scaled``) the GradScaler checks the gradients, and without
    clipping there is nothing to compute: None. Without clipping, the norm is only read, never
    applied (no pass multiplying every gradient by 1)."""
    if clip > 0:
        return torch.nn.utils.clip_grad_norm_(params, clip)
    if scaled:
        return None
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else None


def _snapshot(module: nn.Module | None) -> Callable[[torch.Tensor], None]:
    """Copy ``module``'s buffers (BatchNorm statistics, spectral-norm vectors), which a forward
    pass in training mode changes; the returned function puts them back where its flag (a
    one-element device tensor) is 1: a skipped step leaves them as they were, decided on the
    device. Called after the backward pass, which checks the buffers it saw."""
    buffers = list(module.buffers()) if module is not None else []
    saved = [b.detach().clone() for b in buffers]

    def restore(flag: torch.Tensor) -> None:
        keep_old = flag.reshape(()).bool()
        with torch.no_grad():
            for buf, old in zip(buffers, saved, strict=True):
                buf.copy_(torch.where(keep_old, old, buf))

    return restore


def train_step(t: Trainer, step: int, lr_img: torch.Tensor, hr: torch.Tensor) -> dict[str, Any]:
    """One generator step and, for GAN recipes, one discriminator step.

    Returns the loss terms as device tensors (``g`` is the generator's total) and ``kept``: 1 when
    the step was applied, 0 when it was skipped because a loss or gradient was not finite (its
    terms are then 0). Nothing here waits for the device: a skipped step is decided and applied
    on it (every rank agrees through one all-reduce), and counted in ``t.pending_bad``, which
    the loop reads every few steps.
    """
    r, n, num = t.recipe, t.nets, t.num
    # -- generator: pixel + perceptual (+ adversarial after the D warm-up)
    gan_on = n.d is not None and step >= r.loss.d_warmup_steps
    if n.d is not None:
        n.d.requires_grad_(False)
    restore_g, restore_d = _snapshot(n.g), _snapshot(n.d)  # (D also runs in the G step)
    with num.autocast():
        sr = n.g_train(lr_img)
        terms = {}
        if r.loss.pixel_weight > 0:
            terms["pixel"] = r.loss.pixel_weight * n.pixel_fn(sr.float(), hr)
        if n.perceptual is not None:
            terms["perceptual"] = r.loss.perceptual_weight * n.perceptual(sr, hr)
        if r.loss.phase_weight > 0:
            terms["phase"] = r.loss.phase_weight * losses.phase_loss(sr, hr, r.model.scale)
        if gan_on:
            real_logits = n.d(hr).detach() if r.loss.adversarial == "ragan" else None
            fake_logits = n.d(sr)
            terms["adv"] = r.loss.adversarial_weight * losses.g_loss(
                r.loss.adversarial, real_logits, fake_logits
            )
    loss_g = sum(terms.values())
    n.opt_g.zero_grad(set_to_none=True)
    num.scaler.scale(loss_g).backward()
    num.scaler.unscale_(n.opt_g)
    scaled = num.scaler.is_enabled()
    gnorm = _grad_check(n.g_params, r.optim.grad_clip, scaled)
    # every rank must agree to skip (one rank's NaN would otherwise desynchronise them)
    bad = sr_dist.all_reduce_max(_not_finite(loss_g, None if scaled else gnorm), t.dist)
    restore_g(bad)
    _step_unless(num, n.opt_g, bad)  # skipped: no update of G, D or EMA; the batch is consumed
    skipped = bad

    # -- discriminator (GAN recipes): real HR against detached SR
    if n.d is not None:
        n.d.requires_grad_(True)
        with num.autocast():
            real_logits = n.d_train(hr)
            fake_logits = n.d_train(sr.detach())
            loss_d = losses.d_loss(r.loss.adversarial, real_logits, fake_logits)
            if r.loss.adversarial == "wgan_gp":
                loss_d = loss_d + losses.gradient_penalty(n.d, hr, sr, weight=r.loss.gp_weight)
        n.opt_d.zero_grad(set_to_none=True)
        num.scaler.scale(loss_d).backward()
        num.scaler.unscale_(n.opt_d)
        dnorm = _grad_check(list(n.d.parameters()), r.optim.grad_clip, scaled)
        d_bad = sr_dist.all_reduce_max(_not_finite(loss_d, None if scaled else dnorm), t.dist)
        skipped = torch.maximum(bad, d_bad)  # a D step after a skipped G step is skipped too
        restore_d(skipped)  # a skipped step leaves D as it was, statistics too
        _step_unless(num, n.opt_d, skipped)
        d_kept = 1.0 - skipped
        terms["d"] = _masked(loss_d.detach(), d_kept)
        terms["d_real"] = _masked(real_logits.detach().float().mean(), d_kept)
        terms["d_fake"] = _masked(fake_logits.detach().float().mean(), d_kept)
    num.scaler.update()
    kept = 1.0 - bad
    if n.ema is not None:
        ema_update(n.ema, n.g, r.train.ema_decay, step, keep=kept.reshape(()))
    t.pending_bad = skipped.detach() if t.pending_bad is None else t.pending_bad + skipped
    for key in ("pixel", "perceptual", "phase", "adv"):
        if key in terms:
            terms[key] = _masked(terms[key].detach(), kept)
    terms["g"] = _masked(loss_g.detach(), kept)
    terms["kept"] = kept
    return terms


def _masked(value: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """``value`` where ``kept`` is 1, else 0 (even for a NaN value)."""
    value = value.float().reshape(1)
    return torch.where(kept.bool(), value, torch.zeros_like(value))


# --------------------------------------------------------------------------- the loop


def train(
    recipe: Recipe,
    *,
    data: Sequence[str],
    out_dir: str | Path,
    val: str | None = None,
    device: str = "auto",
    resume: bool = False,
    init_from: str | Path | None = None,
    freeze: Sequence[str] = (),
    data_root: str | Path | None = None,
    vgg_weights: str | Path | None = None,
    progress: Callable[[TrainEvent], None] | None = None,
) -> TrainResult:
    """Train the recipe's generator (and discriminator, for a GAN recipe) on ``data`` folders or
    dataset names; write checkpoints, metrics and curves into ``out_dir``.

    With ``resume`` the run continues from the run folder's resume state exactly as if it had
    not stopped (same steps, data, random numbers). Launched under ``torchrun`` it trains with
    DDP, one process per device; ``data.batch_size`` is the global batch.
    """
    emit = progress or (lambda event: None)
    r, run = recipe, RunDir(out_dir)
    dev_kind = (
        "cuda"
        if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    if dev_kind == "cuda" and not torch.cuda.is_available():  # before NCCL, which would fail first
        raise DeviceError(f"--device {device}: no CUDA device is available (use --device cpu)")
    dist_info = sr_dist.init_distributed(dev_kind)
    try:
        with stop_requests() as stop_event, subnormals_as_zero(dev_kind == "cpu"):
            t = _setup(
                r, run, dist_info, data=data, val=val, device=device, resume=resume,
                init_from=init_from, freeze=freeze, data_root=data_root,
                vgg_weights=vgg_weights, emit=emit,
            )  # fmt: skip
            batches = iter(make_loader(t.data, r, t.start_step, dist_info, t.num.device))
            try:
                last_path, patches_per_s = _loop(t, batches, stop_event)
            finally:
                # stop the loader's workers now, even when a traceback keeps this frame alive
                del batches
        result = t.result(last_path, patches_per_s)
        emit(TrainEvent("done", r.train.steps, r.train.steps))
        return result
    finally:
        sr_dist.shutdown(dist_info)


_CHECK_EVERY = 10
"""Steps between the host's reads of the device-side flags (skipped steps; under DDP, a stop
request of any rank): a divergence or a Ctrl-C under torchrun is acted on within this many steps.
"""


def _check_flags(t: Trainer, stop_requested: bool, since: int, done: int) -> bool:
    """One host read of what the device accumulated since step ``since``: skipped steps (logged,
    counted, and a :class:`TrainingDiverged`, state saved, beyond ``max_bad_steps``) and, under
    DDP, whether any rank was asked to stop (every rank reads it at the same steps)."""
    r, dev = t.recipe, t.num.device
    pending = t.pending_bad if t.pending_bad is not None else torch.zeros(1, device=dev)
    flags = torch.cat([pending.reshape(1).float(), torch.tensor([float(stop_requested)]).to(dev)])
    bad, stop = sr_dist.all_reduce_max(flags, t.dist).tolist()  # bad: the same on every rank
    t.pending_bad = None
    if bad:
        t.bad_steps += int(bad)
        log.warning(
            "steps %d-%d: %d step(s) skipped for a non-finite loss or gradient (%d of %d allowed)",
            since + 1,
            done,
            int(bad),
            t.bad_steps,
            r.train.max_bad_steps,
        )
        if t.bad_steps > r.train.max_bad_steps:
            if t.dist.is_main:
                t.save(done)
            raise TrainingDiverged(
                f"training diverged: {t.bad_steps} steps had a non-finite loss or gradient "
                f"(by step {done}); state saved in {t.run.state_path}. Lower optim.lr, "
                "set optim.grad_clip, or try train.amp = 'off'."
            )
    return stop > 0


def _loop(
    t: Trainer, batches: Iterator[Any], stop_event: threading.Event
) -> tuple[Path | None, float]:
    """Steps from ``t.start_step`` to the end: learning rate, step, logs, validation, saves, and a
    clean stop on a signal. Returns the last checkpoint written and the last patches/s."""
    r, n, dist, main = t.recipe, t.nets, t.dist, t.dist.is_main
    dev, fmt = t.num.device, t.num.memory_format
    values = {"train_images": len(t.data.train), "val_images": len(t.data.val)}
    values.update(device=str(dev), amp=t.num.amp_name, world_size=dist.world_size)
    t.emit(TrainEvent("start", t.start_step, r.train.steps, values))
    n.g_train.train()
    if n.d_train is not None:
        n.d_train.train()
    sums: dict[str, torch.Tensor] = {}
    t_log, step_log, step_check = time.perf_counter(), t.start_step, t.start_step
    last_path: Path | None = None
    patches_per_s = 0.0
    for step in range(t.start_step, r.train.steps):
        factor = lr_factor(step, r)
        if r.quant.qat:
            set_observing(n.g, not (r.quant.freeze_after and step >= r.quant.freeze_after))
        for group in n.opt_g.param_groups:
            group["lr"] = r.optim.lr * factor
        if n.opt_d is not None:
            for group in n.opt_d.param_groups:
                group["lr"] = r.optim.lr_d * factor
        lr_img, hr = next(batches)
        lr_img = lr_img.to(dev, non_blocking=True).contiguous(memory_format=fmt)
        hr = hr.to(dev, non_blocking=True).contiguous(memory_format=fmt)
        terms = train_step(t, step, lr_img, hr)
        for key, value in terms.items():  # summed on the device; read once per log interval
            value = value.detach().float().reshape(1)
            sums[key] = sums[key] + value if key in sums else value

        # -- bookkeeping: logs, validation, checkpoints (rank 0 writes)
        done = step + 1
        last = done == r.train.steps
        logging_now = done % r.train.log_every == 0 or last
        saving = done % r.train.save_every == 0 or last
        validating = bool(t.data.val) and (done % r.train.val_every == 0 or last)
        # the host reads the device's flags only every few steps (and before anything is
        # logged or saved), never once per step: the GPU runs ahead of Python in between
        stop_requested = stop_event.is_set() if not dist.enabled else False
        if logging_now or saving or validating or done % _CHECK_EVERY == 0:
            stop_requested = _check_flags(t, stop_event.is_set(), step_check, done)
            step_check = done
        if logging_now and sums:
            keys = sorted(k for k in sums if k != "kept")
            avg = torch.cat([sums[k] for k in keys] + [sums["kept"]]).double()
            avg = (sr_dist.all_reduce_sum(avg, dist) / dist.world_size).tolist()
            kept = avg.pop()  # steps applied: skipped ones add 0 to every term
            now = time.perf_counter()
            its = (done - step_log) / max(now - t_log, 1e-9)
            patches_per_s = its * r.data.batch_size
            if kept > 0:
                row = {"step": done}
                for k, v in zip(keys, avg, strict=True):
                    row[k if k.startswith("d_") else "loss_" + k] = float(v) / kept
                row.update(
                    lr=r.optim.lr * factor,
                    it_s=its,
                    patches_s=patches_per_s,
                    time_s=time.perf_counter() - t.t_start,
                )
                if main:
                    t.metrics.add(row)
                eta = (r.train.steps - done) / max(its, 1e-9)
                extra = {"eta_s": eta, "bad_steps": t.bad_steps}
                t.emit(TrainEvent("step", done, r.train.steps, {**row, **extra}))
            sums, t_log, step_log = {}, now, done
        # every step, cheap: the host clock only (no loss is read from the device here)
        now = time.perf_counter()
        since = done - step_log
        eta = (r.train.steps - done) * (now - t_log) / since if since else None
        t.emit(TrainEvent("progress", done, r.train.steps, {"eta_s": eta}))
        t_pause = time.perf_counter()  # validation and saving do not count in it/s
        if validating:
            if main:
                t.validate_and_keep_best(done)
            sr_dist.barrier(dist)
        if saving:
            if main:
                last_path = t.save(done)
            sr_dist.barrier(dist)
        t_log += time.perf_counter() - t_pause
        if not dist.enabled:  # one process: the host's own flag, at every step
            stop_requested = stop_event.is_set()
        if not last and stop_requested:
            if main and done % r.train.save_every != 0:
                t.save(done)
            sr_dist.barrier(dist)
            raise TrainingInterrupted(
                f"interrupted after step {done} of {r.train.steps}; state saved in "
                f"{t.run.state_path}: continue with `srtool train --resume --out {t.run.path}`"
            )
    return last_path, patches_per_s
