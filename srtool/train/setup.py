"""Everything a training run needs before its first step: the stop signal, device and numerics,
the data, the networks with their losses and optimisers. :mod:`srtool.train.loop` calls these in
order; each returns a small dataclass so the loop reads its ingredients by name."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srtool.errors import DeviceError, UsageError
from srtool.train import distributed as sr_dist
from srtool.train import losses, patches
from srtool.train.config import Recipe
from srtool.train.weights import apply_freeze, load_init

__all__ = [
    "Networks",
    "Numerics",
    "TrainingData",
    "build_networks",
    "load_training_data",
    "make_loader",
    "resolve_amp",
    "resolve_device",
    "resolve_numerics",
    "resolve_workers",
    "adam",
    "stop_requests",
    "subnormals_as_zero",
    "sync_batchnorm",
]

log = logging.getLogger("srtool")


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


# --------------------------------------------------------------------------- device, numerics


def resolve_device(name: str, dist_info: sr_dist.DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda: no CUDA device is available (use --device cpu)")
        if name == "cuda":
            name = f"cuda:{dist_info.local_rank}"
        elif dist_info.enabled:
            raise UsageError(
                f"--device {name} under torchrun would put every rank on one GPU; use --device "
                "cuda (each rank takes the GPU of its LOCAL_RANK)"
            )
        index, count = torch.device(name).index or 0, torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"--device {name}: {count} CUDA device(s) found")
        torch.cuda.set_device(torch.device(name))
    elif name != "cpu":
        raise UsageError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N")
    return torch.device(name)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``train.amp`` on ``device`` (``None``: full fp32).

    ``auto`` means bf16 on CUDA devices that support it natively (Ampere and newer; fp16 on older
    ones, where bf16 is only emulated and slow) and fp32 on CPU: on the CPU measured
    (training/README.md) bf16 autocast made training steps about 1.6x slower.
    """
    if amp == "off":
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if native else torch.float16
    if amp == "fp16" and device.type != "cuda":
        raise UsageError("train.amp = 'fp16' needs CUDA; use 'bf16' or 'off' on CPU")
    return torch.bfloat16 if amp == "bf16" else torch.float16


@dataclass
class Numerics:
    """Where and in which precision the run computes."""

    device: torch.device
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format
    scaler: torch.amp.GradScaler

    @property
    def amp_name(self) -> str:
        return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = self.amp_dtype or torch.float32
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.amp_dtype is not None)


@contextlib.contextmanager
def subnormals_as_zero(enabled: bool = True) -> Iterator[None]:
    """Compute subnormal floats as zero on the CPU (x86 FTZ/DAZ) inside the block, then restore
    the previous mode. A no-op where the CPU cannot, or with ``enabled`` false.

    Late in a run, with a small learning rate, some gradients fall below float32's smallest
    normal number (1.2e-38), and every CPU operation on a subnormal takes a slow microcode path:
    efficient-x4's steps went from 0.59 to 3.4 s on one thread at step 33,500, and back to 0.59 s
    with this. Values that small are far below anything an 8- or 16-bit image can show."""
    if not enabled:
        yield
        return
    was = _flushing_subnormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was)


def _flushing_subnormals() -> bool:
    """Whether the CPU computes subnormal floats as zero now."""
    return bool((torch.tensor([1e-39], dtype=torch.float32) * 1.0).item() == 0)


def resolve_numerics(recipe: Recipe, device: str, dist_info: sr_dist.DistInfo) -> Numerics:
    dev = resolve_device(device, dist_info)
    if dev.type == "cuda":  # every training step has the same shapes: let cuDNN pick once
        torch.backends.cudnn.benchmark = True
    amp_dtype = resolve_amp(recipe.train.amp, dev)
    # "auto" is on for every device: channels-last measured faster on CUDA and on CPU
    use_cl = recipe.train.channels_last != "off"
    return Numerics(
        device=dev,
        amp_dtype=amp_dtype,
        memory_format=torch.channels_last if use_cl else torch.contiguous_format,
        scaler=torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16),
    )


# --------------------------------------------------------------------------- data


@dataclass
class TrainingData:
    """Decoded, cached images: the training patches' source and the validation set."""

    folders: list[Path]
    train: list[patches.ImagePair]
    val: list[patches.ImagePair]
    dataset: patches.PatchDataset
    skipped: list[str]

    @property
    def fingerprint(self) -> str:
        """Names and sizes of the training images: a resume warns when they changed."""
        h = hashlib.sha256()
        for p in self.train:
            h.update(f"{p.name}:{p.hr.shape}".encode())
        return h.hexdigest()[:16]


def load_training_data(
    recipe: Recipe,
    data: Sequence[str],
    val: str | None,
    data_root: str | Path | None,
    progress: Callable[[int, int], None],
) -> TrainingData:
    """Decode every image once, make deterministic LR, split off validation, keep the images that
    hold a patch."""
    r, s = recipe, recipe.model.scale
    folders = [patches.resolve_source(d, data_root) for d in data]
    pairs, summary = patches.load_pairs(
        folders, scale=s, degradation=r.degradation, progress=progress
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
        val_pairs,
        scale=s,
        degradation=r.degradation,
        crop=r.data.val_crop,
        seed=r.train.seed,
        realistic=r.data.val_degradation == "realistic",
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
    return TrainingData(folders, train_pairs, val_pairs, dataset, list(summary.skipped))


MAX_AUTO_WORKERS = 16


def resolve_workers(setting: int | str, device: torch.device) -> int:
    """``data.num_workers``: a number is used as given; ``auto`` is 2 on CPU (the cores train
    the network there, and 2 measured best) and, on CUDA, every core of this rank's share of the
    machine but one (the cores torch may use, split between torchrun's ``LOCAL_WORLD_SIZE``
    processes), between 2 and 16: the degradations of a ``practical`` recipe starve a GPU fed by
    two workers."""
    if setting != "auto":
        return int(setting)
    if device.type != "cuda":
        return 2
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    local = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1), 1)
    return max(2, min(cores // local - 1, MAX_AUTO_WORKERS))


def make_loader(
    data: TrainingData,
    recipe: Recipe,
    start_step: int,
    dist_info: sr_dist.DistInfo,
    device: torch.device,
) -> torch.utils.data.DataLoader:
    """Batches whose content is a pure function of ``(train.seed, step)``, from ``start_step``."""
    sampler = patches.PatchSampler(
        len(data.dataset),
        global_batch=recipe.data.batch_size,
        seed=recipe.train.seed,
        start_step=start_step,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
    )
    workers = resolve_workers(recipe.data.num_workers, device)
    if recipe.data.num_workers == "auto":
        log.info("data: %d loader workers (data.num_workers = auto)", workers)
    if workers > 0:
        patches.single_threaded_opencv()  # before the fork, or workers can deadlock
    return torch.utils.data.DataLoader(
        data.dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=patches.worker_init,
        # its own generator: creating the iterator must not draw from the global RNG, or a
        # resumed run's random numbers would be shifted by one draw
        generator=torch.Generator().manual_seed(recipe.train.seed),
    )


# --------------------------------------------------------------------------- networks


@dataclass
class Networks:
    """Generator (+ EMA copy), discriminator for GAN recipes, their optimisers and the losses.

    ``g_train`` / ``d_train`` are what forward and backward go through: the DDP wrappers when
    distributed, else the networks themselves.
    """

    g: nn.Module
    ema: nn.Module | None
    d: nn.Module | None
    g_train: nn.Module
    d_train: nn.Module | None
    g_params: list[nn.Parameter]
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    pixel_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    perceptual: nn.Module | None
    init_meta: dict[str, Any]
    frozen: list[str]


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm replaced by SyncBatchNorm (weights and statistics kept)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def adam(params: list[nn.Parameter], **options: Any) -> torch.optim.Optimizer:
    """Adam, fused where torch has the kernel for the device (CUDA, CPU): one kernel per step,
    and a step the training loop skips (a non-finite loss) is skipped on the device through the
    optimiser's ``found_inf``, without the host waiting for the GPU. Elsewhere the plain Adam."""
    try:
        return torch.optim.Adam(params, fused=True, **options)
    except (RuntimeError, ValueError, TypeError) as exc:  # no fused kernel for this device
        log.debug("fused Adam unavailable (%s): using the plain one", exc)
        return torch.optim.Adam(params, **options)


def _deployed_for_qat(g: nn.Module, init_from: str | Path | None, recipe: Recipe) -> dict[str, Any]:
    """Quantisation-aware fine-tuning trains the deployed network: load ``--init-from`` (a
    training-time checkpoint, collapsed after loading, or an already deployed one), collapse
    the re-parameterisable blocks, and swap the convolutions for fake-int8 ones."""
    from srtool.models.checkpoint import is_checkpoint, load_checkpoint_meta
    from srtool.models.reparam import deploy
    from srtool.train.qat import prepare_qat

    init_meta: dict[str, Any] = {}
    if init_from is not None:
        if is_checkpoint(init_from) and load_checkpoint_meta(init_from)["hparams"].get("deploy"):
            deploy(g)
        init_meta = load_init(g, init_from, recipe)
    deploy(g)
    q = recipe.quant
    prepare_qat(g, percentile=q.percentile, momentum=q.momentum, keep_float=q.keep_float)
    return init_meta


def build_networks(
    recipe: Recipe,
    num: Numerics,
    dist_info: sr_dist.DistInfo,
    *,
    init_from: str | Path | None,
    freeze: Sequence[str],
    vgg_weights: str | Path | None,
) -> Networks:
    from srtool.models import build

    r, dev, fmt = recipe, num.device, num.memory_format
    g = build(r.model.arch, scale=r.model.scale, **r.model.hparams)
    if r.quant.qat:
        init_meta = _deployed_for_qat(g, init_from, r)
    else:
        init_meta = load_init(g, init_from, r) if init_from is not None else {}
    frozen = apply_freeze(g, freeze)
    g = g.to(dev, memory_format=fmt)
    ema = copy.deepcopy(g).requires_grad_(False).eval() if r.train.ema_decay > 0 else None
    g_params = [p for p in g.parameters() if p.requires_grad]
    opt_g = adam(g_params, lr=r.optim.lr, betas=r.optim.betas, weight_decay=r.optim.weight_decay)
    pixel_fn = losses.pixel_loss(
        r.loss.pixel, eps=r.loss.charbonnier_eps, alpha=r.loss.msssim_alpha
    )
    perceptual = None
    if r.loss.perceptual_weight > 0:
        perceptual = losses.PerceptualLoss(
            layer_weights=r.loss.perceptual_layers,
            criterion=r.loss.perceptual_criterion,
            weights=vgg_weights,
            pooling=r.loss.perceptual_pooling,
        ).to(dev, memory_format=fmt)
    d = opt_d = None
    if r.is_gan:
        d = build(r.discriminator.arch, **r.discriminator.hparams).to(dev, memory_format=fmt)
        opt_d = adam(list(d.parameters()), lr=r.optim.lr_d, betas=r.optim.betas)
    if dist_info.enabled and dev.type == "cuda":
        # BatchNorm statistics over the global batch, as one process would see them (SRResNet,
        # the VGG discriminator); SyncBatchNorm exists for CUDA only, so CPU ranks keep their own.
        # The parameters stay the same objects, so the optimisers built above still hold them.
        g = sync_batchnorm(g)
        d = sync_batchnorm(d) if d is not None else None
    g_train, d_train = g, d
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [dev.index] if dev.type == "cuda" else None
        g_train = DDP(g, device_ids=ids)
        d_train = DDP(d, device_ids=ids) if d is not None else None
    return Networks(
        g, ema, d, g_train, d_train, g_params, opt_g, opt_d, pixel_fn, perceptual, init_meta, frozen
    )
