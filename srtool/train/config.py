"""Training recipes: typed TOML read into frozen dataclasses.

A recipe is a short diff over the defaults below: every section and key is optional, every
unknown key is an error that lists the valid ones, and ``--set section.key=value`` overrides are
parsed as TOML values and checked against the field's type. The resolved recipe (defaults +
file + overrides) is written into each run folder and each checkpoint, so a model always says
exactly how it was made. SRGAN and ESRGAN differ only by values here, never by code.

Why TOML and dataclasses rather than YAML and ``type:`` strings: the schema lives in one place,
typos fail loudly at load time instead of silently falling back to a default, and the standard
library reads it (``tomllib``).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from srtool.errors import UsageError

__all__ = [
    "find_recipe",
    "shipped_recipes",
    "ModelConfig",
    "DiscriminatorConfig",
    "DataConfig",
    "DegradationConfig",
    "LossConfig",
    "OptimConfig",
    "TrainConfig",
    "QuantConfig",
    "Recipe",
    "load_recipe",
    "parse_recipe",
    "apply_overrides",
    "recipe_to_dict",
    "recipe_to_toml",
]


#: Seeds are 64-bit signed TOML integers, and torch and numpy take any of them that is >= 0.
MAX_SEED = 2**63 - 1
#: DataLoader worker processes; far beyond any machine's useful number.
MAX_WORKERS = 1024
#: HR pixels in one step's batch (batch_size x patch_size²): 2**28 is 3 GiB of float32 HR
#: patches alone, before LR, activations and gradients, so more is a typo, not a plan.
MAX_BATCH_PIXELS = 2**28


@dataclass(frozen=True)
class ModelConfig:
    """The generator: a name from ``srtool.models.ARCHS`` and its keyword hyper-parameters."""

    arch: str = "compact"
    scale: int = 4
    hparams: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Used only when ``loss.adversarial`` is not ``"none"``."""

    arch: str = "vgg"
    hparams: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DegradationConfig:
    """How LR patches are made from HR ones when the data is not paired.

    ``bicubic`` is MATLAB's antialiased bicubic (the protocol papers evaluate with);
    ``gaussian`` blurs with a Gaussian of ``blur_sigma`` then keeps every ``scale``-th pixel;
    ``practical`` draws a random blur / resize / noise / JPEG chain per patch, twice when
    ``second_order_prob`` fires (Real-ESRGAN's idea, in small seeded numpy functions); with
    ``clean_prob`` a practical patch's LR is instead the clean bicubic downscale (the paper
    protocol's LR), so a model for real photos also learns to leave clean inputs' detail alone.
    """

    kind: Literal["bicubic", "gaussian", "practical"] = "bicubic"
    blur_sigma: float = 1.5
    blur_prob: float = 1.0
    blur_sigma_range: tuple[float, float] = (0.2, 3.0)
    resize_range: tuple[float, float] = (0.15, 1.5)
    noise_prob: float = 1.0
    gaussian_noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_prob: float = 0.5
    gray_noise_prob: float = 0.4
    jpeg_prob: float = 1.0
    jpeg_range: tuple[int, int] = (30, 95)
    second_order_prob: float = 0.5
    clean_prob: float = 0.0


@dataclass(frozen=True)
class DataConfig:
    """Patches and the validation split.

    Validation LR images: ``val_degradation = "recipe"`` makes them as the training LR (bicubic,
    gaussian, or one practical degradation drawn per image from the run's seed);
    ``"realistic"`` uses ``srtool evaluate --degradation realistic``'s fixed second-order
    degradation seeded by each file name, so a run's validation scores on a benchmark equal
    ``srtool evaluate``'s for it (with ``val_crop = 0``) and stay comparable across recipes.
    """

    patch_size: int = 128
    batch_size: int = 16
    flip: bool = True
    rot90: bool = True
    num_workers: int | Literal["auto"] = "auto"  # auto: 2 on CPU, sized to the cores on CUDA
    val_count: int = 10
    val_crop: int = 0
    val_degradation: Literal["recipe", "realistic"] = "recipe"
    min_patch_images: int = 1


@dataclass(frozen=True)
class LossConfig:
    """Generator objective: ``pixel_weight * pixel + perceptual_weight * VGG + adversarial_weight
    * GAN`` (the adversarial term joins after ``d_warmup_steps`` discriminator-only steps).

    ``perceptual_layers`` maps VGG19 layer names to weights: ``convX_Y`` is taken before the
    activation (ESRGAN), ``reluX_Y`` after it (SRGAN). ``adversarial`` is ``vanilla`` (SRGAN's
    BCE), ``ragan`` (ESRGAN's relativistic average) or ``wgan_gp`` (penalty ``gp_weight``).
    """

    pixel: Literal["l1", "mse", "charbonnier", "msssim_l1"] = "l1"
    pixel_weight: float = 1.0
    charbonnier_eps: float = 1e-3
    msssim_alpha: float = 0.84
    perceptual_weight: float = 0.0
    perceptual_layers: dict[str, float] = field(default_factory=lambda: {"conv5_4": 1.0})
    perceptual_criterion: Literal["l1", "mse"] = "l1"
    perceptual_pooling: Literal["max", "avg"] = "max"  # avg: VGG's pools averaged (dense gradients)
    phase_weight: float = 0.0  # weight of losses.phase_loss (sub-pixel phases kept together)
    adversarial: Literal["none", "vanilla", "ragan", "wgan_gp"] = "none"
    adversarial_weight: float = 0.0
    gp_weight: float = 10.0
    d_warmup_steps: int = 0


@dataclass(frozen=True)
class OptimConfig:
    """Adam for G (and D), and the learning-rate schedule shared by both."""

    lr: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: Literal["constant", "step", "cosine"] = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.5
    min_lr: float = 1e-7
    warmup_steps: int = 0
    grad_clip: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """Length, bookkeeping and numerics of the run.

    ``amp = "auto"`` is bf16 autocast on CUDA and fp32 on CPU, where bf16 autocast measured
    slower; ``channels_last = "auto"`` is channels-last everywhere (it measured faster on CPU
    too); see training/README.md.

    Validation always scores PSNR-Y and SSIM-Y. ``val_lpips`` adds LPIPS v0.1 AlexNet
    (``val_lpips`` in metrics.jsonl; weights from ``$SRTOOL_LPIPS_WEIGHTS`` or srtool's weights
    cache): ``auto`` when the weights are found, ``on`` requires them. ``val_grid`` adds the grid
    check (:mod:`srtool.evaluate.grid`, ``val_grid``): ``auto`` for recipes with a perceptual or
    adversarial loss. ``best_metric`` picks ``best.safetensors``: highest PSNR or SSIM, or lowest
    LPIPS (which needs ``val_lpips``).
    """

    steps: int = 100_000
    seed: int = 0
    ema_decay: float = 0.999
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    max_bad_steps: int = 20
    log_every: int = 50
    val_every: int = 5000
    save_every: int = 5000
    keep_last: int = 3
    best_metric: Literal["psnr", "ssim", "lpips"] = "psnr"
    val_lpips: Literal["auto", "on", "off"] = "auto"
    val_grid: Literal["auto", "on", "off"] = "auto"


@dataclass(frozen=True)
class QuantConfig:
    """Quantisation-aware fine-tuning (``qat = true``): the deployed network is trained through
    the fake-int8 arithmetic of ``srtool export --int8`` (see :mod:`srtool.train.qat`).

    ``percentile`` is the activation-range rule (onnxruntime's percentile calibration),
    ``momentum`` the weight of each batch's ranges in their running average, ``freeze_after``
    the step from which the ranges stop moving (0: never), ``keep_float`` deployed convolution
    names left in float (weights and input), which the int8 export then leaves out too.
    """

    qat: bool = False
    percentile: float = 99.999
    momentum: float = 0.01
    freeze_after: int = 0
    keep_float: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    """A whole training recipe; ``name`` and ``description`` are free text for the run summary."""

    name: str = "custom"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)

    def check(self) -> Recipe:
        """Cross-field rules a type alone cannot express; returns self so calls can chain."""
        scale, patch = self.model.scale, self.data.patch_size
        if scale < 1:
            raise UsageError(f"model.scale must be >= 1, got {scale}")
        if patch % scale:
            raise UsageError(
                f"data.patch_size ({patch}) must be a multiple of model.scale ({scale}); "
                f"try {patch - patch % scale + scale}"
            )
        if patch // scale < 4:
            raise UsageError(f"data.patch_size {patch} is too small for scale {scale}")
        positive = {
            "train.steps": self.train.steps,
            "data.batch_size": self.data.batch_size,
            "train.log_every": self.train.log_every,
            "train.val_every": self.train.val_every,
            "train.save_every": self.train.save_every,
            "train.keep_last": self.train.keep_last,
        }
        for key, value in positive.items():
            if value < 1:
                raise UsageError(f"{key} must be >= 1, got {value}")
        if not 0 <= self.train.seed <= MAX_SEED:
            raise UsageError(f"train.seed must be in 0 .. {MAX_SEED}, got {self.train.seed}")
        workers = self.data.num_workers
        if workers != "auto" and not 0 <= workers <= MAX_WORKERS:
            raise UsageError(
                f"data.num_workers must be in 0 .. {MAX_WORKERS} (0: load in the main process), "
                f"got {self.data.num_workers}"
            )
        pixels = self.data.batch_size * patch * patch
        if pixels > MAX_BATCH_PIXELS:
            raise UsageError(
                f"data.batch_size {self.data.batch_size} x data.patch_size {patch}² is "
                f"{pixels} HR pixels per step, beyond the {MAX_BATCH_PIXELS} any device holds; "
                f"lower data.batch_size (at most {max(1, MAX_BATCH_PIXELS // (patch * patch))} "
                f"at this patch size)"
            )
        d = self.degradation
        for key in (
            "blur_prob",
            "noise_prob",
            "poisson_prob",
            "gray_noise_prob",
            "jpeg_prob",
            "second_order_prob",
            "clean_prob",
        ):
            if not 0.0 <= getattr(d, key) <= 1.0:
                raise UsageError(f"degradation.{key} must be in [0, 1], got {getattr(d, key)}")
        if not 0.0 <= self.train.ema_decay < 1.0:
            raise UsageError(f"train.ema_decay must be in [0, 1), got {self.train.ema_decay}")
        if self.loss.adversarial != "none" and self.loss.adversarial_weight <= 0:
            raise UsageError("loss.adversarial is set but loss.adversarial_weight is 0")
        if self.loss.adversarial == "none" and self.loss.adversarial_weight > 0:
            raise UsageError("loss.adversarial_weight > 0 needs loss.adversarial to be set")
        if self.train.best_metric == "lpips" and self.train.val_lpips == "off":
            raise UsageError("train.best_metric = 'lpips' needs train.val_lpips 'on' or 'auto'")
        if self.optim.schedule == "step" and not self.optim.milestones:
            raise UsageError("optim.schedule = 'step' needs optim.milestones")
        q = self.quant
        if not 50.0 < q.percentile <= 100.0:
            raise UsageError(f"quant.percentile must be in (50, 100], got {q.percentile}")
        if not 0.0 < q.momentum <= 1.0:
            raise UsageError(f"quant.momentum must be in (0, 1], got {q.momentum}")
        if q.freeze_after < 0:
            raise UsageError(f"quant.freeze_after must be >= 0, got {q.freeze_after}")
        if q.qat and self.is_gan:
            raise UsageError("quant.qat fine-tunes with pixel and perceptual losses only, not GANs")
        return self

    @property
    def is_gan(self) -> bool:
        return self.loss.adversarial != "none"

    @property
    def validates_grid(self) -> bool:
        """Whether validation runs the grid check (``train.val_grid``, ``auto``: perceptual or
        adversarial recipes, whose objectives reward the high frequencies a grid adds)."""
        if self.train.val_grid == "auto":
            return self.is_gan or self.loss.perceptual_weight > 0
        return self.train.val_grid == "on"


# --------------------------------------------------------------------------- parsing

_SECTIONS = {f.name: f for f in dataclasses.fields(Recipe)}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is None:
        return getattr(tp, "__name__", str(tp))
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` (as parsed from TOML) against ``tp``; return it in the field's own form."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad() -> UsageError:
        return UsageError(f"{key}: expected {_type_name(tp)}, got {value!r}")

    if tp is Any:
        return value
    if origin is Literal:
        if isinstance(value, bool) and {"on", "off"} <= set(args):  # true/false read as on/off
            value = "on" if value else "off"
        if value not in args:
            raise UsageError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            if option is type(None) and value is None:
                return None
            try:
                return _coerce(value, option, key)
            except UsageError:
                continue
        raise bad()
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        if not math.isfinite(float(value)):
            raise bad()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad()
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise UsageError(f"{key}: expected {len(args)} values, got {len(value)}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in pairs)
    if origin is dict:
        if not isinstance(value, dict):
            raise bad()
        kt, vt = args
        return {_coerce(k, kt, key): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    raise TypeError(f"unsupported recipe field type {tp!r} for {key}")  # a bug in this module


def _build_section(cls: type, table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table (section), got {table!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise UsageError(
            f"unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(f'{where}.{k}' for k in unknown)}; valid keys of {where}: "
            f"{', '.join(names)}"
        )
    values = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in table.items()}
    return cls(**values)


def parse_recipe(data: dict[str, Any]) -> Recipe:
    """Build a checked :class:`Recipe` from a parsed TOML document (a nested dict)."""
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise UsageError(
            f"unknown recipe key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"valid: {', '.join(_SECTIONS)}"
        )
    hints = typing.get_type_hints(Recipe)
    values: dict[str, Any] = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            values[name] = _build_section(tp, value, name)
        else:
            values[name] = _coerce(value, tp, name)
    return Recipe(**values).check()


def _read_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{origin}: not valid TOML: {exc}") from None


def _parse_value(raw: str) -> Any:
    """A ``--set`` value is a TOML value (``3``, ``1e-4``, ``true``, ``[1, 2]``, ``{a = 1}``,
    ``"text"``); anything that does not parse as one is taken as a bare string."""
    try:
        return _read_toml(f"v = {raw}", "--set")["v"]
    except UsageError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Merge ``section.key=value`` (or ``section.key.subkey=value`` for table fields) into a
    copy of the parsed recipe document. Types are checked later, by :func:`parse_recipe`."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"--set expects section.key=value, got {item!r}")
        path, raw = item.split("=", 1)
        parts = [p.strip() for p in path.strip().split(".")]
        hints = typing.get_type_hints(Recipe)
        is_section = parts[0] in hints and dataclasses.is_dataclass(hints[parts[0]])
        if not all(parts) or parts[0] not in hints or (len(parts) == 1) == is_section:
            raise UsageError(
                f"--set {item!r}: expected section.key=value (or name=/description=); "
                f"sections: {', '.join(k for k in hints if dataclasses.is_dataclass(hints[k]))}"
            )
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = _parse_value(raw.strip())
    return out


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped with srtool (``training/recipes/*.toml``)."""
    from srtool.resources import recipes_dir

    folder = recipes_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def find_recipe(spec: str) -> Path:
    """A recipe file path, or the name of a shipped recipe (``esrgan_x4_psnr``)."""
    from srtool.resources import recipes_dir

    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.name == spec:  # a bare name: look among the shipped recipes
        named = recipes_dir() / f"{spec.removesuffix('.toml')}.toml"
        if named.is_file():
            return named
    known = shipped_recipes()
    raise UsageError(
        f"recipe not found: {spec}" + (f"; shipped recipes: {', '.join(known)}" if known else "")
    )


def load_recipe(path: str | Path | None, overrides: list[str] = ()) -> Recipe:
    """Read a recipe file (``None``: the defaults) and apply ``--set`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"recipe not found: {p}")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"{p}: not a UTF-8 text file (byte {exc.start}); a recipe is TOML, which is UTF-8"
            ) from None
        except OSError as exc:
            raise UsageError(f"{p}: cannot read the recipe ({exc.strerror or exc})") from None
        data = _read_toml(text, str(p))
    try:
        return parse_recipe(apply_overrides(data, list(overrides)))
    except UsageError as exc:
        if path is None:
            raise
        raise UsageError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- writing


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain nested dict (tuples as lists): for JSON metadata and for TOML writing."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(recipe))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def recipe_to_toml(recipe: Recipe) -> str:
    """The fully resolved recipe as TOML that :func:`load_recipe` reads back unchanged."""
    d = recipe_to_dict(recipe)
    lines = []
    for key, value in d.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_toml_value(value)}")
    for key, value in d.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
    return "\n".join(lines) + "\n"
