"""``srtool train``: parse options, run :func:`srtool.train.loop.train`, show progress."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from srtool.cli._app import (
    QuietOption,
    VerboseOption,
    app,
    cli_errors,
    console,
    setup_logging,
)

if TYPE_CHECKING:
    from srtool.train.loop import TrainEvent, TrainResult

__all__ = ["train"]


def _fmt_s(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _ProgressView:
    """Rich progress bar: step, it/s, patches/s, losses, validation PSNR, ETA.

    It moves on every step (``progress`` events, at most ``1 / min_interval`` redraws a second);
    the losses and speeds shown are those of the last log interval (``step`` events)."""

    min_interval = 0.1  # seconds between two per-step updates

    def __init__(self, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"),
            TextColumn("{task.fields[losses]}"),
            TextColumn("{task.fields[val]}"),
            TextColumn("[dim]ETA {task.fields[eta]}"),
            console=console,
            disable=quiet,
            transient=False,
        )
        self.task = None
        self.val = ""
        self.last_update = float("-inf")
        self.updates = 0  # per-step updates made (for tests)

    def __enter__(self) -> _ProgressView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, event: TrainEvent) -> None:
        p = self.progress
        if event.kind == "load":
            if self.task is None:
                self.task = p.add_task(
                    "loading", total=event.total, speed="", losses="", val="", eta="-"
                )
            p.update(self.task, completed=event.step, total=event.total)
        elif event.kind == "start":
            v = event.values
            if not self.quiet:
                console.print(
                    f"training on {v['device']} (amp {v['amp']}, {v['world_size']} process"
                    f"{'es' if v['world_size'] > 1 else ''}): {v['train_images']} images, "
                    f"{v['val_images']} for validation",
                    highlight=False,
                )
            if self.task is None:
                self.task = p.add_task("", total=1, speed="", losses="", val="", eta="-")
            p.update(self.task, description="train", completed=event.step, total=event.total)
        elif event.kind == "step":
            v = event.values
            losses = " ".join(
                f"{k.removeprefix('loss_')} {val:.4g}"
                for k, val in v.items()
                if k.startswith("loss_")
            )
            p.update(
                self.task,
                completed=event.step,
                speed=f"{v['it_s']:.2f} it/s {v['patches_s']:.0f} patch/s",
                losses=losses,
                eta=_fmt_s(v["eta_s"]),
            )
        elif event.kind == "progress":
            now = time.monotonic()
            if self.task is None or (
                now - self.last_update < self.min_interval and event.step < event.total
            ):
                return
            self.last_update = now
            self.updates += 1
            eta = event.values.get("eta_s")
            fields = {} if eta is None else {"eta": _fmt_s(eta)}
            p.update(self.task, completed=event.step, **fields)
        elif event.kind == "val":
            v = event.values
            self.val = f"val {v['val_psnr']:.2f} dB"
            if "val_lpips" in v:
                self.val += f" LPIPS {v['val_lpips']:.3f}"
            if "val_grid" in v:
                self.val += f" grid {v['val_grid']:.2f}"
            self.val += " *" if v["improved"] else ""
            p.update(self.task, val=self.val)
        elif event.kind == "done":
            p.update(self.task, completed=event.total, eta="0:00")


def render_summary(res: TrainResult, *, show_all_skipped: bool = False) -> None:
    t = Table(
        title=f"srtool train: {escape(res.recipe.name)}",
        show_header=False,
        box=None,
        title_justify="left",
        padding=(0, 2),
    )
    t.add_column(style="bold")
    t.add_column()
    m = res.recipe.model
    t.add_row("run", escape(str(res.run_dir)))
    t.add_row("model", f"{m.arch} x{m.scale} {json.dumps(m.hparams) if m.hparams else ''}")
    resumed = f" (resumed at {res.start_step})" if res.start_step else ""
    t.add_row(
        "steps",
        f"{res.steps}{resumed} in {_fmt_s(res.seconds)}, "
        f"{res.patches_per_s:.1f} patches/s at the end",
    )
    t.add_row("device", f"{res.device}, amp {res.amp}, {res.world_size} process(es)")
    t.add_row(
        "data",
        f"{res.train_images} training images, {res.val_images} validation, "
        f"{len(res.skipped)} skipped",
    )
    if res.final_losses:
        t.add_row(
            "last losses",
            ", ".join(f"{k.removeprefix('loss_')} {v:.4g}" for k, v in res.final_losses.items()),
        )
    if res.best_psnr is not None:
        t.add_row(
            "best val",
            f"{res.best_psnr:.2f} dB PSNR-Y, SSIM-Y {res.best_ssim:.4f} at step {res.best_step}",
        )
    if res.bad_steps:
        t.add_row("skipped steps", f"[yellow]{res.bad_steps} (non-finite loss or gradient)[/]")
    if res.best_checkpoint:
        t.add_row("best", escape(str(res.best_checkpoint)))
    if res.last_checkpoint:
        t.add_row("last", escape(str(res.last_checkpoint)))
    if res.curves:
        t.add_row("curves", escape(str(res.curves)))
    t.add_row("next", escape(f"srtool export {res.run_dir}"))
    console.print(t)
    shown = res.skipped if show_all_skipped else res.skipped[:5]
    for line in shown:
        console.print(f"[yellow]skipped[/] {escape(line)}", highlight=False)
    if len(res.skipped) > len(shown):
        console.print(
            f"[yellow]… and {len(res.skipped) - len(shown)} more skipped (--verbose lists all)[/]"
        )


@app.command(
    epilog="Example: srtool train compact_x4 --data T91 --val Set5 --out runs/demo --steps 20"
)
def train(
    recipe: Annotated[
        str | None,
        typer.Argument(
            help="Recipe TOML file, or a shipped recipe name (compact_x2, compact_x3, "
            "compact_x4, srresnet_x4_mse, srgan_x4, esrgan_x4_psnr, esrgan_x4_gan). Default: the "
            "built-in defaults; with --resume: the run's own recipe.",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            "-d",
            help="Training images: a folder of HR images, a folder with HR/ and LR/ sub-folders "
            "(pairs matched by name), or a dataset name such as DIV2K. Repeat to combine.",
            rich_help_panel="Data",
        ),
    ] = None,
    val: Annotated[
        str | None,
        typer.Option(
            help="Validation images (folder or name); default: hold out "
            "data.val_count training images.",
            rich_help_panel="Data",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Run folder (default: runs/RECIPE_NAME).",
            rich_help_panel="Recipe and run",
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            min=1, help="Total steps (overrides train.steps).", rich_help_panel="Recipe and run"
        ),
    ] = None,
    device: Annotated[
        str, typer.Option(help="auto, cpu, cuda or cuda:N.", rich_help_panel="Device")
    ] = "auto",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a recipe value: section.key=value (a TOML value), e.g. "
            "--set optim.lr=2e-4 --set model.hparams.convs=8. Repeatable.",
            rich_help_panel="Recipe and run",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --out exactly where it stopped.",
            rich_help_panel="Recipe and run",
        ),
    ] = False,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Start from these weights: an srtool checkpoint (e.g. a GAN stage "
            "from a PSNR model) or a state dict (.pth/.safetensors, e.g. a Real-ESRGAN "
            "release) matching the recipe's network. A checkpoint of the same network at "
            "another scale starts every layer but the upsampler's.",
            rich_help_panel="Model and weights",
        ),
    ] = None,
    freeze: Annotated[
        list[str] | None,
        typer.Option(
            help="Freeze parameters whose name matches this glob (e.g. 'conv_first*'); "
            "'!glob' keeps matching ones trainable. Repeatable.",
            rich_help_panel="Model and weights",
        ),
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(
            help="Where dataset names are looked up (default: $SRTOOL_DATA, else "
            "the srtool data cache).",
            rich_help_panel="Data",
        ),
    ] = None,
    vgg_weights: Annotated[
        Path | None,
        typer.Option(
            help="VGG19 weights for the perceptual loss (safetensors or .pth with "
            "torchvision key names) instead of torchvision's download/cache.",
            rich_help_panel="Model and weights",
        ),
    ] = None,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train a super-resolution network from a recipe (PSNR or GAN stage)."""
    setup_logging(verbose, quiet)
    with cli_errors(verbose):
        from srtool.errors import require_train_extra

        require_train_extra("srtool train")  # before any run folder is made
        from srtool.train.distributed import launch_rank
        from srtool.train.loop import train as run_training
        from srtool.train.run import plan_run

        overrides = list(set_ or [])
        if steps is not None:
            overrides.append(f"train.steps={steps}")
        rank0 = launch_rank() == 0
        plan = plan_run(
            recipe,
            out,
            resume=resume,
            data=list(data or []),
            val=val,
            data_root=data_root,
            overrides=overrides,
            write=rank0,
        )
        with _ProgressView(quiet or not rank0) as view:
            result = run_training(
                plan.recipe,
                data=plan.args.data,
                val=plan.args.val,
                out_dir=plan.run.path,
                device=device,
                resume=resume,
                init_from=init_from,
                freeze=list(freeze or []),
                data_root=plan.args.data_root,
                vgg_weights=vgg_weights,
                progress=view,
            )
        if rank0 and not quiet:
            render_summary(result, show_all_skipped=verbose)
