"""A training run folder: the one place that knows its layout.

Layout::

    recipe.toml                  the fully resolved recipe (defaults + file + --set)
    run.json                     --data / --val / --data-root of the run (what --resume reuses;
                                 folders relative to the run folder, dataset names as names)
    metrics.jsonl, metrics.csv   one row per log interval / validation
    curves.png                   losses and validation PSNR over steps
    tensorboard/                 event files, when tensorboard is installed
    checkpoints/step_0005000.safetensors   weights (raw + EMA) + JSON metadata (keep_last kept)
    checkpoints/best.safetensors           best validation score so far
    checkpoints/last.state.pt              everything --resume needs (plain tensors and dicts)

``srtool train`` (fresh or ``--resume``), ``srtool export RUN`` and ``srtool evaluate --model RUN``
all go through :class:`RunDir`; nothing else spells these names. Every file is written atomically
(:mod:`srtool.atomic`): a crash leaves at most a hidden temporary file, never a truncated one.
Importing this module does not import torch; saving and loading weights or state does.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srtool.atomic import atomic_write_bytes
from srtool.errors import ModelError, UsageError

if TYPE_CHECKING:
    from torch import nn

    from srtool.train.config import Recipe

__all__ = ["RunArgs", "RunDir", "RunPlan", "plan_run"]

log = logging.getLogger("srtool")

_STEP_FILE = re.compile(r"step_(\d+)\.safetensors$")


_RELATIVE = "relative to this run folder"


@dataclass(frozen=True)
class RunArgs:
    """The data a run was started with, so that ``--resume`` needs only ``--out``."""

    data: list[str]
    val: str | None = None
    data_root: str | None = None


class RunDir:
    """A training run folder (see the module docstring for its layout)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- where things are ------------------------------------------------------------------

    @property
    def recipe_path(self) -> Path:
        return self.path / "recipe.toml"

    @property
    def args_path(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics_jsonl(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def curves_path(self) -> Path:
        return self.path / "curves.png"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def state_path(self) -> Path:
        return self.checkpoints / "last.state.pt"

    @property
    def best_path(self) -> Path:
        return self.checkpoints / "best.safetensors"

    def step_path(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:07d}.safetensors"

    # -- starting and resuming -------------------------------------------------------------

    def holds_run(self) -> bool:
        """True when a resumable run is here."""
        return self.state_path.exists()

    def check_new(self) -> None:
        """A fresh run must not overwrite one."""
        if self.holds_run():
            raise UsageError(
                f"{self.path} already holds a run; pass --resume to continue it or choose "
                "another --out"
            )

    def write_recipe(self, recipe: Recipe) -> None:
        from srtool.train.config import recipe_to_toml

        self.checkpoints.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.recipe_path, recipe_to_toml(recipe).encode("utf-8"))

    def write_args(self, args: RunArgs) -> None:
        """``run.json``: folders relative to the run folder, so a run folder kept with the
        project (and its data beside it, as they were) resumes from any working folder and
        any checkout location."""
        self.path.mkdir(parents=True, exist_ok=True)
        raw = {
            "data": [self._to_file(d) for d in args.data],
            "val": self._to_file(args.val) if args.val is not None else None,
            "data_root": self._to_file(args.data_root) if args.data_root else None,
            "folders": _RELATIVE,
        }
        atomic_write_bytes(self.args_path, json.dumps(raw, indent=1).encode("utf-8"))

    def _to_file(self, value: str) -> str:
        if not Path(value).is_absolute():
            return value  # a dataset name
        try:
            rel = os.path.relpath(value, self.path.absolute())
        except ValueError:  # another drive (Windows): only an absolute path reaches it
            return value
        return rel if rel.startswith(("./", "../")) else f"./{rel}"

    def _from_file(self, value: str, relative: bool) -> str:
        if relative and value.startswith(("./", "../")):
            return os.path.normpath(self.path.absolute() / value)
        return value

    def read_args(self) -> RunArgs | None:
        """The saved ``run.json``, or None when the run has none (older runs, other tools)."""
        if not self.args_path.is_file():
            return None
        try:
            raw = json.loads(self.args_path.read_text(encoding="utf-8"))
            relative = raw.get("folders") == _RELATIVE  # older runs: absolute paths
            val, root = raw.get("val"), raw.get("data_root")
            return RunArgs(
                data=[self._from_file(str(d), relative) for d in raw["data"]],
                val=self._from_file(val, relative) if val is not None else None,
                data_root=self._from_file(root, relative) if root else None,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{self.args_path} is damaged ({exc}); pass --data again") from None

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every row of ``metrics.jsonl`` (log intervals and validations), in order."""
        if not self.metrics_jsonl.is_file():
            return []
        lines = self.metrics_jsonl.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    # -- weights and state -----------------------------------------------------------------

    def save_weights(
        self, path: Path, model: nn.Module, ema: nn.Module | None, meta: dict[str, Any]
    ) -> Path:
        """A self-describing safetensors checkpoint (raw weights, plus EMA ones when kept);
        loaders prefer the EMA."""
        from srtool.models.checkpoint import save_checkpoint

        return save_checkpoint(path, model, meta=meta, ema=ema)

    def save_state(self, state: dict[str, Any]) -> None:
        from srtool.train.state import save_state

        save_state(self.state_path, state)

    def load_state(self) -> dict[str, Any]:
        """The resume state; when it is damaged, the error names the newest intact step
        checkpoint and how to continue from it."""
        from srtool.train.state import DamagedState, load_state

        try:
            return load_state(self.state_path)
        except DamagedState as exc:
            raise DamagedState(f"{exc}; {self._fallback_hint()}") from None

    def latest_intact_checkpoint(self) -> Path | None:
        """The newest ``step_*.safetensors`` that passes every check of the loader."""
        from srtool.models.checkpoint import load_state

        for path in reversed(self.step_checkpoints()):
            try:
                load_state(path)
            except ModelError:
                continue
            return path
        return None

    def _fallback_hint(self) -> str:
        found = self.latest_intact_checkpoint()
        if found is None:
            return "no intact step_*.safetensors is left to continue from: start the run again"
        return (
            f"the newest intact weights are {found}: continue from them in a new run with "
            f"`srtool train {self.recipe_path} --init-from {found} --data ... --out NEW_DIR` "
            "(the optimiser, learning-rate schedule and step count start afresh)"
        )

    def step_checkpoints(self) -> list[Path]:
        """``step_*.safetensors``, oldest step first."""
        found = ((_STEP_FILE.match(p.name), p) for p in self.checkpoints.glob("step_*.safetensors"))
        return [p for _, p in sorted((int(m.group(1)), p) for m, p in found if m)]

    def prune(self, keep_last: int) -> list[Path]:
        """Delete all but the ``keep_last`` newest step checkpoints; returns what was removed."""
        steps = self.step_checkpoints()
        removed = steps[: max(0, len(steps) - keep_last)]
        for p in removed:
            p.unlink(missing_ok=True)
        return removed

    def export_checkpoint(self) -> Path:
        """The checkpoint to export: the best, else the latest, of those that are intact.

        Looks at srtool checkpoints (``*.safetensors``) in the folder and in ``checkpoints/``.
        "Best" is a file whose name starts with ``best`` or whose metadata says
        ``"best": true``; otherwise the one with the highest ``step`` (then the newest file).
        A file that fails the loader's checks (truncated, corrupt) is passed over with a
        warning for the next in that order.
        """
        from srtool.models.checkpoint import is_checkpoint, load_checkpoint_meta, load_state

        if not self.path.is_dir():
            raise ModelError(f"training run folder not found: {self.path}")
        candidates = []
        for folder in (self.path, self.checkpoints):
            if folder.is_dir():
                candidates += [p for p in sorted(folder.glob("*.safetensors")) if is_checkpoint(p)]
        if not candidates:
            raise ModelError(
                f"{self.path}: no srtool checkpoint (*.safetensors) in it or in checkpoints/"
            )

        def rank(p: Path) -> tuple[int, int, float]:
            try:
                meta = load_checkpoint_meta(p)
            except ModelError:
                return (-1, -1, 0.0)  # tried last; the loader then says what is wrong
            best = p.name.startswith("best") or meta.get("best") is True
            step = meta.get("step") if isinstance(meta.get("step"), int) else -1
            return (int(best), step, p.stat().st_mtime)

        ordered = sorted(candidates, key=rank, reverse=True)
        problems = []
        for path in ordered:
            try:
                load_state(path)
            except ModelError as exc:
                problems.append(str(exc))
                continue
            for problem in problems:
                log.warning("skipping a damaged checkpoint: %s; using %s", problem, path.name)
            return path
        raise ModelError(f"{self.path}: no intact checkpoint: {problems[0]}")


@dataclass(frozen=True)
class RunPlan:
    """What ``srtool train`` runs: the resolved recipe, the run folder and the data arguments."""

    recipe: Recipe
    run: RunDir
    args: RunArgs


def plan_run(
    recipe: str | None,
    out: str | os.PathLike[str] | None,
    *,
    resume: bool,
    data: list[str],
    val: str | None,
    data_root: str | os.PathLike[str] | None,
    overrides: list[str],
    write: bool = True,
) -> RunPlan:
    """Resolve a ``srtool train`` command line into a recipe, a run folder and its data.

    ``recipe`` is a file or a shipped name (default: the built-in defaults; with ``resume``: the
    run's own ``recipe.toml``). A fresh run must not overwrite another one, and records its data
    arguments in ``run.json`` (when ``write``: rank 0 only) so ``--resume`` needs only ``--out``.
    """
    from srtool.train.config import find_recipe, load_recipe

    recipe_path = find_recipe(recipe) if recipe is not None else None
    if resume:
        if out is None:
            raise UsageError("--resume needs --out RUN_DIR (the run to continue)")
        if recipe_path is None:
            recipe_path = RunDir(out).recipe_path
            if not recipe_path.is_file():
                raise UsageError(f"nothing to resume: {recipe_path} does not exist")
    config = load_recipe(recipe_path, overrides)
    if out is None:
        name = recipe_path.stem if recipe_path is not None else config.name
        out = Path("runs") / re.sub(r"[^\w.-]+", "_", name)
    run = RunDir(out)
    if not resume:
        run.check_new()
    saved = run.read_args() if resume and not data else None
    if saved is not None:
        data, val = saved.data, val or saved.val
        data_root = data_root or saved.data_root
    if not data:
        raise UsageError("--data is required: a folder of training images or a dataset name")
    args = RunArgs(
        [_absolute_folder(d) for d in data],
        _absolute_folder(val) if val is not None else None,
        str(Path(data_root).expanduser().absolute()) if data_root else None,
    )
    if write and not resume:
        _check_named_datasets([*args.data, *([args.val] if args.val else [])], args.data_root)
        run.write_args(args)
    return RunPlan(config, run, args)


def _check_named_datasets(values: list[str], data_root: str | None) -> None:
    """A known dataset name that is not on disk is an error before the run folder exists (it
    says where to put the files and how to fetch them), so a failed start leaves nothing."""
    from srtool import datasets

    for value in values:
        if Path(value).exists():
            continue
        try:
            datasets.get(value)
        except datasets.DatasetMissingError:
            continue  # not a dataset name: the data loader reports it
        datasets.resolve(value, data_root)


def _absolute_folder(spec: str) -> str:
    """A ``--data`` / ``--val`` value as ``run.json`` keeps it: an existing folder as an absolute
    path, so that ``--resume`` from another working folder reads the same images (a relative
    name would no longer be a folder there, and could silently become a dataset name), and
    anything else (a dataset name) unchanged."""
    path = Path(spec).expanduser()
    return str(path.absolute()) if path.is_dir() else spec
