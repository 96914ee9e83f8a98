"""``srtool evaluate``: benchmark scores as papers compute them, models side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from srtool.cli._app import (
    QuietOption,
    VerboseOption,
    app,
    cli_errors,
    console,
    parse_tile,
    setup_logging,
)

if TYPE_CHECKING:
    from srtool.evaluate import EvaluationReport, ProgressEvent


def _split(values: list[str] | None) -> list[str]:
    """``--bench Set5,Set14 --bench BSD100`` -> [Set5, Set14, BSD100]."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


@app.command()
def evaluate(
    bench: Annotated[
        list[str] | None,
        typer.Option(
            "--bench",
            "-b",
            help="Benchmarks by name, comma-separated or repeated: Set5, Set14, BSD100, "
            "Urban100, Manga109, DIV2K-valid (see `srtool data list`).",
            rich_help_panel="Benchmarks and data",
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Model to evaluate, repeatable: a shipped or cached model name, an ONNX file, "
            "a .pth/.safetensors file or srtool checkpoint (converted once and cached; needs "
            "torch), or a baseline: bicubic, lanczos, nearest. The bicubic row is always "
            "present. Default: the shipped model for the scale.",
            rich_help_panel="Models",
        ),
    ] = None,
    scale: Annotated[
        int | None,
        typer.Option(
            help="Scale factor (default: the models' scale, else that of --lr images, else 4).",
            rich_help_panel="Models",
        ),
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(
            help="Folder holding the benchmarks "
            "(default: $SRTOOL_DATA, else the user cache folder).",
            show_default=False,
            rich_help_panel="Benchmarks and data",
        ),
    ] = None,
    hr: Annotated[
        Path | None,
        typer.Option(
            help="Evaluate on any folder of HR images.",
            show_default=False,
            rich_help_panel="Benchmarks and data",
        ),
    ] = None,
    lr: Annotated[
        Path | None,
        typer.Option(
            help="With --hr: use these LR images (matched by file name) instead of making them.",
            show_default=False,
            rich_help_panel="Benchmarks and data",
        ),
    ] = None,
    rgb: Annotated[
        bool, typer.Option("--rgb", help="Also report PSNR/SSIM on RGB.", rich_help_panel="Scores")
    ] = False,
    ms_ssim: Annotated[
        bool,
        typer.Option("--ms-ssim/--no-ms-ssim", help="Report MS-SSIM-Y.", rich_help_panel="Scores"),
    ] = True,
    lpips: Annotated[
        bool,
        typer.Option(
            "--lpips",
            help="Report LPIPS v0.1 (AlexNet; lower is better). Needs torch and its weights: "
            "--lpips-weights, $SRTOOL_LPIPS_WEIGHTS or the srtool weights cache; with "
            "--download they are fetched and checksum-verified once.",
            rich_help_panel="Scores",
        ),
    ] = False,
    lpips_weights: Annotated[
        Path | None,
        typer.Option(
            "--lpips-weights",
            help="LPIPS weights file (lpips_alex_v0.1.safetensors) or its folder; implies --lpips.",
            show_default=False,
        ),
    ] = None,
    grid: Annotated[
        bool,
        typer.Option(
            "--grid",
            help="Report the grid check (lower is better): each SR image's energy at the "
            "period-SCALE frequencies of a pixel-shuffle grid, in excess of its neighbourhood, "
            "over the HR image's energy there; about 0-1 without a grid, > 1 a visible one.",
            rich_help_panel="Scores",
        ),
    ] = False,
    degradation: Annotated[
        str,
        typer.Option(
            metavar="bicubic|realistic",
            help="How LR images are made from HR: bicubic (MATLAB, the published protocol) or "
            "realistic (blur, resize, noise and JPEG, twice, seeded per image).",
        ),
    ] = "bicubic",
    per_image: Annotated[
        bool,
        typer.Option(
            "--per-image", help="Show (and write) scores for every image.", rich_help_panel="Scores"
        ),
    ] = False,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json", help="Write the full report as JSON.", rich_help_panel="Output files"
        ),
    ] = None,
    csv_path: Annotated[
        Path | None,
        typer.Option("--csv", help="Write scores as CSV.", rich_help_panel="Output files"),
    ] = None,
    markdown: Annotated[
        Path | None,
        typer.Option(
            "--markdown",
            help="Write a Markdown table for a model card.",
            rich_help_panel="Output files",
        ),
    ] = None,
    save_images: Annotated[
        Path | None,
        typer.Option(
            help="Write SR images and a comparison sheet per image into this folder.",
            rich_help_panel="Output files",
        ),
    ] = None,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta",
            help="Add rows with the x8 self-ensemble (flips/rotations).",
            rich_help_panel="Enhancements",
        ),
    ] = False,
    back_projection: Annotated[
        int,
        typer.Option(
            "--back-projection",
            min=0,
            help="Add rows with N iterations of back-projection.",
            rich_help_panel="Enhancements",
        ),
    ] = 0,
    download: Annotated[
        bool,
        typer.Option(
            "--download",
            help="Fetch missing benchmarks and, with --lpips, its weights (checksum-verified) "
            "first.",
            rich_help_panel="Benchmarks and data",
        ),
    ] = False,
    device: Annotated[
        str,
        typer.Option(
            metavar="auto|cpu|cuda[:N]",
            help="auto, cpu, cuda or cuda:N.",
            rich_help_panel="Performance",
        ),
    ] = "auto",
    tile: Annotated[
        str,
        typer.Option(
            metavar="auto|0|N",
            help="Tile size in LR pixels, 0 for whole images, or auto.",
            rich_help_panel="Performance",
        ),
    ] = "auto",
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Score models on super-resolution benchmarks with the published protocol.

    HR cropped to a multiple of the scale, LR by MATLAB-style bicubic, SR rounded to 8 bits,
    SCALE border pixels ignored, PSNR and SSIM on the BT.601 luma: numbers comparable with
    papers (--degradation realistic: a fixed, harder LR for real-photo models). Example:
    srtool evaluate --bench Set5,Set14 --model compact-x4 --markdown card.md
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from srtool.evaluate import evaluate as run_evaluation
    from srtool.evaluate import reports

    setup_logging(verbose, quiet)
    with cli_errors(verbose):
        tile_size = parse_tile(tile)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=quiet,
        ) as bar:
            task = bar.add_task("evaluating", total=None)

            def on_progress(event: ProgressEvent) -> None:
                bar.update(
                    task,
                    completed=event.done,
                    total=event.total,
                    description=f"{event.benchmark} {event.image} {event.method}",
                )

            report = run_evaluation(
                _split(bench),
                _split(model),
                scale=scale,
                data_root=data_root,
                hr_dir=hr,
                lr_dir=lr,
                rgb=rgb,
                with_ms_ssim=ms_ssim,
                lpips=lpips,
                lpips_weights=lpips_weights,
                grid=grid,
                degradation=degradation,
                tta=tta,
                back_projection=back_projection,
                device=device,
                tile=tile_size,
                save_images=save_images,
                download=download,
                progress=on_progress,
                default_model=model is None,
            )
        written = []
        if json_path is not None:
            written.append(reports.write_json(report, json_path))
        if csv_path is not None:
            written.append(reports.write_csv(report, csv_path, per_image=per_image))
        if markdown is not None:
            written.append(reports.write_markdown(report, markdown, per_image=per_image))
        if not quiet:
            _render(report, per_image)
            for path in written:
                console.print(f"wrote {path}")
            if save_images is not None:
                console.print(f"wrote {len(report.saved)} images under {save_images}")
        if report.failed:  # the others were scored and reported; the run still failed
            raise typer.Exit(1)


def _render(r: EvaluationReport, per_image: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from srtool.evaluate.reports import METRIC_LABELS, format_metric

    for b in r.benchmarks:
        name = b["name"]
        table = Table(
            title=f"{name} x{r.scale}  ({b['images']} images, LR {b['lr']})",
            title_justify="left",
        )
        table.add_column("method", no_wrap=True)
        for metric in r.metrics:
            table.add_column(METRIC_LABELS[metric], justify="right")
        table.add_column("s/img", justify="right")
        table.add_column("MPix/s", justify="right")
        for info in r.methods:
            score = r.score(name, info.label)
            cells = []
            for metric in r.metrics:
                value = score.mean(metric)
                text = format_metric(metric, value)
                best = r.best(name, metric)
                if value is not None and best is not None and text == format_metric(metric, best):
                    text = f"[bold]{text}[/]"
                cells.append(text)
            cells += [f"{score.seconds_per_image:.3f}", f"{score.mpix_per_second:.2f}"]
            table.add_row(info.label, *cells)
        console.print(table)
        if per_image:
            detail = Table(title=f"{name} per image (PSNR-Y / SSIM-Y)", title_justify="left")
            detail.add_column("image")
            labels = [m.label for m in r.methods]
            for label in labels:
                detail.add_column(label, justify="right")
            rows = [r.score(name, label).images for label in labels]
            for i, first in enumerate(rows[0]):
                detail.add_row(
                    first.image,
                    *(
                        f"{format_metric('psnr_y', imgs[i].psnr_y)} / "
                        f"{format_metric('ssim_y', imgs[i].ssim_y)}"
                        for imgs in rows
                    ),
                )
            for image in b.get("failed", []):
                detail.add_row(escape(image), *(["[red]failed[/]"] * len(labels)))
            console.print(detail)
    for item in r.failed:
        console.print(
            f"[red]failed[/] {escape(item['benchmark'])} {escape(item['image'])}: "
            f"{escape(item['error'])}",
            highlight=False,
        )
    for note in r.notes:
        console.print(f"[dim]note: {note}[/]")
