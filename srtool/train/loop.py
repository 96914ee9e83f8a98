"""The training loop: :func:`train` reads top to bottom, PSNR and GAN stages alike.

Everything that differs between SRResNet-MSE, SRGAN, ESRGAN-PSNR, ESRGAN and the compact models
is a value in the recipe (losses and weights, discriminator, schedule), never a subclass. The
helpers above :func:`train` build things; the loop itself is the one function below them.

Numerics: Adam; learning rate from :func:`lr_factor` (constant, step or cosine, linear warm-up);
EMA of the generator (what checkpoints and validation use); autocast (bf16/fp16 on CUDA with a
GradScaler for fp16, bf16 on CPU when asked); gradient-norm clipping; a guard that skips any step
whose loss or gradient is not finite and stops the run, state saved, after ``max_bad_steps``.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import hashlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from srtool.errors import DeviceError, SrtoolError, UsageError
from srtool.train import distributed as sr_dist
from srtool.train import losses, patches
from srtool.train.config import Recipe, recipe_to_dict, recipe_to_toml
from srtool.train.curves import MetricsLog, plot_curves
from srtool.train.state import STATE_NAME, load_state, prune_checkpoints, save_state, save_weights

__all__ = [
    "TrainEvent",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "train",
    "lr_factor",
    "resolve_amp",
]

log = logging.getLogger("srtool")


class TrainingDiverged(SrtoolError):
    """Too many steps had a non-finite loss or gradient; the state before them was saved."""


class TrainingInterrupted(SrtoolError):
    """SIGINT (Ctrl-C) or SIGTERM (e.g. a cluster's pre-emption notice) stopped the run after a
    completed step whose state was saved; ``--resume`` continues from it."""

    exit_code = 130


@contextlib.contextmanager
def stop_requests() -> Iterator[threading.Event]:
    """An event set by the first SIGINT/SIGTERM, so the loop can finish its step and save.

    A second Ctrl-C aborts at once. Handlers are only installed from the main thread (Python's
    rule) and the previous ones are restored on exit.
    """
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: object) -> None:
        if event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        event.set()
        log.warning(
            "%s: finishing this step and saving the state (Ctrl-C again to abort)",
            signal.Signals(signum).name,
        )

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass(frozen=True)
class TrainEvent:
    """Progress report. ``kind``: ``load`` (images decoded so far / total), ``start``, ``step``
    (a log interval: losses, it/s, patches/s, lr, eta_s), ``val`` (val_psnr, val_ssim, best),
    ``save`` (path) or ``done``."""

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


# --------------------------------------------------------------------------- building blocks


def resolve_device(name: str, dist_info: sr_dist.DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda: no CUDA device is available (use --device cpu)")
        if name == "cuda":
            name = f"cuda:{dist_info.local_rank}"
        torch.cuda.set_device(torch.device(name))
    elif name != "cpu":
        raise UsageError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N")
    return torch.device(name)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``train.amp`` on ``device`` (``None``: full fp32).

    ``auto`` means bf16 on CUDA devices that support it (fp16 otherwise) and fp32 on CPU: on the
    CPU measured (training/README.md) bf16 autocast made training steps about 1.6x slower.
    """
    if amp == "off":
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "fp16" and device.type != "cuda":
        raise UsageError("train.amp = 'fp16' needs CUDA; use 'bf16' or 'off' on CPU")
    return torch.bfloat16 if amp == "bf16" else torch.float16


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
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise UsageError(f"--init-from {path}: not a readable weights file ({exc})") from None
    for key in ("params_ema", "params", "state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"--init-from {path}: no state dict of tensors in the file")
    return {k.removeprefix("module."): v for k, v in state.items()}


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """EMA with a warm-up (``min(decay, (1 + step) / (10 + step))``) so short runs and early
    validations are not dominated by the initial weights."""
    d = min(decay, (1 + step) / (10 + step))
    ema_p = [p for p in ema.parameters()]
    model_p = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_p, model_p, 1.0 - d)
    for eb, mb in zip(ema.buffers(), model.buffers(), strict=True):
        eb.copy_(mb)


@torch.no_grad()
def validate(
    model: nn.Module, pairs: Sequence[patches.ImagePair], scale: int, device: torch.device
) -> tuple[float, float]:
    """Mean PSNR-Y / SSIM-Y over ``pairs`` with the evaluation protocol (SR rounded to uint8,
    ``scale`` border pixels cropped)."""
    from srtool.metrics import psnr, ssim

    was_training = model.training
    model.eval()
    ps, ss = [], []
    for pair in pairs:
        lr = torch.from_numpy(pair.lr.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        sr = torch.nan_to_num(model(lr.to(device)), nan=0.0).clamp_(0, 1)  # NaN scores low
        sr8 = (sr[0].permute(1, 2, 0).float().cpu().numpy() * 255.0).round().astype(np.uint8)
        ps.append(psnr(sr8, pair.hr, crop_border=scale, y_only=True))
        ss.append(ssim(sr8, pair.hr, crop_border=scale, y_only=True))
    model.train(was_training)
    return float(np.mean(ps)), float(np.mean(ss))


def _fingerprint(pairs: Sequence[patches.ImagePair]) -> str:
    h = hashlib.sha256()
    for p in pairs:
        h.update(f"{p.name}:{p.hr.shape}".encode())
    return h.hexdigest()[:16]


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _not_finite(loss: torch.Tensor, grad_norm: torch.Tensor | None) -> torch.Tensor:
    """1.0 (a one-element tensor on the loss's device) when the loss or the gradient norm is
    NaN/Inf, else 0.0; computed without a host synchronisation."""
    ok = torch.isfinite(loss.detach()).all()
    if grad_norm is not None:
        ok = ok & torch.isfinite(grad_norm).all()
    return (~ok).float().reshape(1)


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

    With ``resume`` the run continues from ``out_dir/checkpoints/last.state.pt`` exactly as if
    it had not stopped (same steps, data, random numbers). Launched under ``torchrun`` it trains
    with DDP, one process per device; ``data.batch_size`` is the global batch.
    """
    emit = progress or (lambda event: None)
    t_start = time.perf_counter()
    r, s = recipe, recipe.model.scale

    # ---- processes, device, numerics -------------------------------------------------------
    dev_kind = (
        "cuda"
        if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    dist_info = sr_dist.init_distributed(dev_kind)
    batches = None
    stops = stop_requests()
    stop_event = stops.__enter__()
    try:
        dev = resolve_device(device, dist_info)
        amp_dtype = resolve_amp(r.train.amp, dev)
        amp_name = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype]
        scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
        # "auto" is on for every device: channels-last measured faster on CUDA and on CPU
        use_cl = r.train.channels_last != "off"
        fmt = torch.channels_last if use_cl else torch.contiguous_format
        main = dist_info.is_main
        run_dir = Path(out_dir)
        ckpt_dir = run_dir / "checkpoints"
        state_path = ckpt_dir / STATE_NAME
        if not resume and state_path.exists():  # checked on every rank, so all of them stop
            raise UsageError(
                f"{run_dir} already holds a run; pass --resume to continue it or choose "
                "another --out"
            )
        if main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "recipe.toml").write_text(recipe_to_toml(r), encoding="utf-8")
        torch.manual_seed(r.train.seed)

        # ---- data: decode once, cache, split ----------------------------------------------
        folders = [patches.resolve_source(d, data_root) for d in data]
        pairs, summary = patches.load_pairs(
            folders,
            scale=s,
            degradation=r.degradation,
            progress=lambda i, n: emit(TrainEvent("load", i, n)),
        )
        if val is not None:
            val_pairs, val_summary = patches.load_pairs(
                [patches.resolve_source(val, data_root)], scale=s, degradation=r.degradation
            )
            summary.skipped += val_summary.skipped
        else:
            pairs, val_pairs = patches.split_validation(pairs, r.data.val_count, r.train.seed)
        train_pairs = patches.patchable(pairs, r.data.patch_size, summary)
        if len(train_pairs) < max(1, r.data.min_patch_images):
            raise UsageError(
                f"only {len(train_pairs)} training image(s) hold a {r.data.patch_size} px patch"
                f" ({len(summary.skipped)} skipped); add data or lower data.patch_size"
            )
        val_pairs = patches.make_validation(
            val_pairs, scale=s, degradation=r.degradation, crop=r.data.val_crop, seed=r.train.seed
        )
        dataset = patches.PatchDataset(
            train_pairs,
            scale=s,
            patch_size=r.data.patch_size,
            degradation=r.degradation,
            flip=r.data.flip,
            rot90=r.data.rot90,
        )
        log.info(
            "data: %d training images (%.0f MB cached), %d validation, %d skipped",
            len(train_pairs),
            summary.cache_mb,
            len(val_pairs),
            len(summary.skipped),
        )

        # ---- networks, losses, optimisers --------------------------------------------------
        from srtool.models import build

        g = build(r.model.arch, scale=s, **r.model.hparams)
        init_meta = load_init(g, init_from, r) if init_from is not None else {}
        frozen = apply_freeze(g, freeze)
        g = g.to(dev, memory_format=fmt)
        ema = copy.deepcopy(g).requires_grad_(False).eval() if r.train.ema_decay > 0 else None
        g_params = [p for p in g.parameters() if p.requires_grad]
        opt_g = torch.optim.Adam(
            g_params, lr=r.optim.lr, betas=r.optim.betas, weight_decay=r.optim.weight_decay
        )
        pixel_fn = losses.pixel_loss(
            r.loss.pixel, eps=r.loss.charbonnier_eps, alpha=r.loss.msssim_alpha
        )
        perceptual = None
        if r.loss.perceptual_weight > 0:
            perceptual = losses.PerceptualLoss(
                layer_weights=r.loss.perceptual_layers,
                criterion=r.loss.perceptual_criterion,
                weights=vgg_weights,
            ).to(dev, memory_format=fmt)
        d = opt_d = None
        if r.is_gan:
            d = build(r.discriminator.arch, **r.discriminator.hparams).to(dev, memory_format=fmt)
            opt_d = torch.optim.Adam(d.parameters(), lr=r.optim.lr_d, betas=r.optim.betas)
        g_train, d_train = g, d  # what forward/backward go through (DDP wrappers when distributed)
        if dist_info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [dev.index] if dev.type == "cuda" else None
            g_train = DDP(g, device_ids=ids)
            d_train = DDP(d, device_ids=ids) if d is not None else None

        # ---- resume ------------------------------------------------------------------------
        start_step, bad_steps, best = 0, 0, {"step": None, "psnr": None, "ssim": None}
        rows: list[dict[str, Any]] = []
        fingerprint = _fingerprint(train_pairs)
        if resume:
            st = load_state(state_path)
            g.load_state_dict(st["g"])
            opt_g.load_state_dict(st["opt_g"])
            if ema is not None:
                ema.load_state_dict(st["ema"])
            if d is not None:
                d.load_state_dict(st["d"])
                opt_d.load_state_dict(st["opt_d"])
            scaler.load_state_dict(st["scaler"])
            _set_rng_state(st["rng"], dev)
            start_step, bad_steps, best, rows = st["step"], st["bad_steps"], st["best"], st["rows"]
            t_start -= st.get("time_s", 0.0)  # time_s in the log counts the whole run
            if st.get("data") != fingerprint:
                log.warning("resuming with different training images: data order will differ")
            old = {k: v for k, v in st["recipe"].items() if k != "train"}
            if old != {k: v for k, v in recipe_to_dict(r).items() if k != "train"}:
                log.warning("resuming with a recipe that differs from the saved one")
        metrics = MetricsLog(run_dir, rows) if main else None

        def meta(step: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
            return {
                "step": step,
                "recipe": recipe_to_dict(r),
                "training": {
                    "recipe": r.name,
                    "steps": step,
                    "data": [str(f) for f in folders],
                    "train_images": len(train_pairs),
                    "patch_size": r.data.patch_size,
                    "batch_size": r.data.batch_size,
                    "degradation": r.degradation.kind,
                    "init_from": str(init_from) if init_from else None,
                    "init_from_step": init_meta.get("step"),
                    "frozen": len(frozen),
                    "best_val": best,
                    "world_size": dist_info.world_size,
                },
                **(extra or {}),
            }

        def save(step: int) -> Path:
            """Weights of ``step`` (EMA when enabled) + the resume state; rank 0 only."""
            path = ckpt_dir / f"step_{step:07d}.safetensors"
            save_weights(path, g, ema, meta(step))
            save_state(
                state_path,
                {
                    "step": step,
                    "g": g.state_dict(),
                    "opt_g": opt_g.state_dict(),
                    "ema": ema.state_dict() if ema is not None else {},
                    "d": d.state_dict() if d is not None else {},
                    "opt_d": opt_d.state_dict() if opt_d is not None else {},
                    "scaler": scaler.state_dict(),
                    "rng": _rng_state(dev),
                    "bad_steps": bad_steps,
                    "best": best,
                    "rows": metrics.rows,
                    "recipe": recipe_to_dict(r),
                    "data": fingerprint,
                    "time_s": time.perf_counter() - t_start,
                },
            )
            prune_checkpoints(ckpt_dir, r.train.keep_last)
            metrics.flush()
            emit(TrainEvent("save", step, r.train.steps, {"path": str(path)}))
            return path

        # ---- data order: a pure function of (seed, step) ----------------------------------
        sampler = patches.PatchSampler(
            len(dataset),
            global_batch=r.data.batch_size,
            seed=r.train.seed,
            start_step=start_step,
            rank=dist_info.rank,
            world_size=dist_info.world_size,
        )
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=r.data.num_workers,
            pin_memory=dev.type == "cuda",
            worker_init_fn=patches.worker_init,
            # its own generator: creating the iterator must not draw from the global RNG, or a
            # resumed run's random numbers would be shifted by one draw
            generator=torch.Generator().manual_seed(r.train.seed),
        )
        batches = iter(loader)

        # ---- the loop ----------------------------------------------------------------------
        emit(
            TrainEvent(
                "start",
                start_step,
                r.train.steps,
                {
                    "train_images": len(train_pairs),
                    "val_images": len(val_pairs),
                    "device": str(dev),
                    "amp": amp_name,
                    "world_size": dist_info.world_size,
                },
            )
        )
        g_train.train()
        if d_train is not None:
            d_train.train()
        autocast = lambda: torch.autocast(  # noqa: E731
            dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        )
        sums: dict[str, torch.Tensor] = {}
        n_sums, t_log, step_log = 0, time.perf_counter(), start_step
        last_path: Path | None = None
        patches_per_s = 0.0
        step = start_step
        for step in range(start_step, r.train.steps):
            factor = lr_factor(step, r)
            for group in opt_g.param_groups:
                group["lr"] = r.optim.lr * factor
            if opt_d is not None:
                for group in opt_d.param_groups:
                    group["lr"] = r.optim.lr_d * factor
            lr_img, hr = next(batches)
            lr_img = lr_img.to(dev, non_blocking=True).contiguous(memory_format=fmt)
            hr = hr.to(dev, non_blocking=True).contiguous(memory_format=fmt)

            # -- generator step: pixel + perceptual (+ adversarial after the D warm-up)
            gan_on = d is not None and step >= r.loss.d_warmup_steps
            if d is not None:
                d.requires_grad_(False)
            with autocast():
                sr = g_train(lr_img)
                terms = {}
                if r.loss.pixel_weight > 0:
                    terms["pixel"] = r.loss.pixel_weight * pixel_fn(sr.float(), hr)
                if perceptual is not None:
                    terms["perceptual"] = r.loss.perceptual_weight * perceptual(sr, hr)
                if gan_on:
                    real_logits = d(hr).detach() if r.loss.adversarial == "ragan" else None
                    fake_logits = d(sr)
                    terms["adv"] = r.loss.adversarial_weight * losses.g_loss(
                        r.loss.adversarial, real_logits, fake_logits
                    )
            loss_g = sum(terms.values())
            opt_g.zero_grad(set_to_none=True)
            scaler.scale(loss_g).backward()
            scaler.unscale_(opt_g)
            clip = r.optim.grad_clip if r.optim.grad_clip > 0 else float("inf")
            gnorm = torch.nn.utils.clip_grad_norm_(g_params, clip)
            # every rank must agree to skip (one rank's NaN would otherwise desynchronise them);
            # this is the step's one host-device synchronisation
            bad = _not_finite(loss_g, None if scaler.is_enabled() else gnorm)
            g_ok = not bool(sr_dist.all_reduce_max(bad, dist_info).item())
            if g_ok:
                scaler.step(opt_g)
            else:  # skipped: no update of G, D or EMA; the batch counts as consumed
                bad_steps += 1
                opt_g.zero_grad(set_to_none=True)
                log.warning(
                    "step %d: non-finite loss or gradient, step skipped (%d of %d allowed)",
                    step + 1,
                    bad_steps,
                    r.train.max_bad_steps,
                )
                if bad_steps > r.train.max_bad_steps:
                    if main:
                        save(step + 1)
                    raise TrainingDiverged(
                        f"training diverged: {bad_steps} steps had a non-finite loss or gradient "
                        f"(last at step {step + 1}); state saved in {state_path}. Lower optim.lr, "
                        "set optim.grad_clip, or try train.amp = 'off'."
                    )

            # -- discriminator step (GAN recipes): real HR against detached SR
            if d is not None and g_ok:
                d.requires_grad_(True)
                with autocast():
                    real_logits = d_train(hr)
                    fake_logits = d_train(sr.detach())
                    loss_d = losses.d_loss(r.loss.adversarial, real_logits, fake_logits)
                    if r.loss.adversarial == "wgan_gp":
                        loss_d = loss_d + losses.gradient_penalty(
                            d, hr, sr, weight=r.loss.gp_weight
                        )
                opt_d.zero_grad(set_to_none=True)
                scaler.scale(loss_d).backward()
                scaler.unscale_(opt_d)
                dnorm = torch.nn.utils.clip_grad_norm_(d.parameters(), clip)
                d_bad = _not_finite(loss_d, None if scaler.is_enabled() else dnorm)
                if bool(sr_dist.all_reduce_max(d_bad, dist_info).item()):
                    opt_d.zero_grad(set_to_none=True)
                    bad_steps += 1
                    log.warning("step %d: non-finite discriminator loss, D step skipped", step + 1)
                else:
                    scaler.step(opt_d)
                    terms["d"] = loss_d.detach()
                    terms["d_real"] = real_logits.detach().float().mean()
                    terms["d_fake"] = fake_logits.detach().float().mean()
            scaler.update()
            if ema is not None and g_ok:
                ema_update(ema, g, r.train.ema_decay, step)

            # -- bookkeeping: logs, validation, checkpoints (rank 0 writes)
            if g_ok:  # summed on the device; read once per log interval
                terms["g"] = loss_g
                for key, value in terms.items():
                    value = value.detach().float()
                    sums[key] = sums[key] + value if key in sums else value
                n_sums += 1
            done = step + 1
            last = done == r.train.steps
            if (done % r.train.log_every == 0 or last) and n_sums:
                keys = sorted(sums)
                avg = torch.stack([sums[k] for k in keys]).double() / n_sums
                avg = sr_dist.all_reduce_sum(avg, dist_info) / dist_info.world_size
                now = time.perf_counter()
                its = (done - step_log) / max(now - t_log, 1e-9)
                patches_per_s = its * r.data.batch_size
                row = {
                    "step": done,
                    **{
                        (k if k.startswith("d_") else "loss_" + k): float(v)
                        for k, v in zip(keys, avg.tolist(), strict=True)
                    },
                }
                row.update(
                    lr=r.optim.lr * factor,
                    it_s=its,
                    patches_s=patches_per_s,
                    time_s=time.perf_counter() - t_start,
                )
                if main:
                    metrics.add(row)
                emit(
                    TrainEvent(
                        "step",
                        done,
                        r.train.steps,
                        {
                            **row,
                            "eta_s": (r.train.steps - done) / max(its, 1e-9),
                            "bad_steps": bad_steps,
                        },
                    )
                )
                sums, n_sums, t_log, step_log = {}, 0, now, done
            t_pause = time.perf_counter()  # validation and saving do not count in it/s
            if val_pairs and (done % r.train.val_every == 0 or last):
                if main:
                    vp, vs = validate(ema if ema is not None else g, val_pairs, s, dev)
                    score = vp if r.train.best_metric == "psnr" else vs
                    prev = best[r.train.best_metric]
                    improved = prev is None or score > prev
                    if improved:
                        best = {"step": done, "psnr": vp, "ssim": vs}
                        save_weights(
                            ckpt_dir / "best.safetensors",
                            g,
                            ema,
                            meta(done, {"best": True, "val_psnr": vp, "val_ssim": vs}),
                        )
                    metrics.add({"step": done, "val_psnr": vp, "val_ssim": vs})
                    plot_curves(metrics.rows, run_dir / "curves.png", r.name)
                    emit(
                        TrainEvent(
                            "val",
                            done,
                            r.train.steps,
                            {
                                "val_psnr": vp,
                                "val_ssim": vs,
                                "best_psnr": best["psnr"],
                                "improved": improved,
                            },
                        )
                    )
                sr_dist.barrier(dist_info)
            if done % r.train.save_every == 0 or last:
                if main:
                    last_path = save(done)
                sr_dist.barrier(dist_info)
            t_log += time.perf_counter() - t_pause
            stop = torch.tensor([float(stop_event.is_set())], device=dev)
            if not last and bool(sr_dist.all_reduce_max(stop, dist_info).item()):
                if main and done % r.train.save_every != 0:
                    save(done)
                sr_dist.barrier(dist_info)
                raise TrainingInterrupted(
                    f"interrupted after step {done} of {r.train.steps}; state saved in "
                    f"{state_path}: continue with `srtool train --resume --out {run_dir}`"
                )

        # ---- the end ----------------------------------------------------------------------
        curves = None
        if main:
            curves = plot_curves(metrics.rows, run_dir / "curves.png", r.name)
            metrics.close()
            if last_path is None:
                found = sorted(ckpt_dir.glob("step_*.safetensors"))
                last_path = found[-1] if found else None
        train_rows = [row for row in (metrics.rows if main else []) if "loss_g" in row]
        final_losses = {
            k: v
            for k, v in (train_rows[-1] if train_rows else {}).items()
            if k.startswith(("loss_", "d_"))
        }
        best_path = ckpt_dir / "best.safetensors"
        emit(TrainEvent("done", r.train.steps, r.train.steps))
        return TrainResult(
            run_dir=run_dir,
            recipe=r,
            steps=r.train.steps,
            start_step=start_step,
            seconds=time.perf_counter() - t_start,
            patches_per_s=patches_per_s,
            last_checkpoint=last_path,
            best_checkpoint=best_path if best_path.exists() else None,
            best_step=best["step"],
            best_psnr=best["psnr"],
            best_ssim=best["ssim"],
            final_losses=final_losses,
            bad_steps=bad_steps,
            train_images=len(train_pairs),
            val_images=len(val_pairs),
            skipped=list(summary.skipped),
            device=str(dev),
            amp=amp_name,
            world_size=dist_info.world_size,
            curves=curves,
        )
    finally:
        # drop the loader iterator now (stopping its workers) even when an exception keeps this
        # frame alive in a traceback
        batches = None  # noqa: F841
        stops.__exit__(None, None, None)
        sr_dist.shutdown(dist_info)
