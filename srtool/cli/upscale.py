"""``srtool upscale``: a file or a folder of photos in, upscaled copies out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from srtool.cli._app import (
    QuietOption,
    VerboseOption,
    app,
    cli_errors,
    err_console,
    parse_tile,
    printable,
    setup_logging,
    sigterm_as_interrupt,
    warnings_to_log,
)
from srtool.infer import DEFAULT_OVERLAP


@app.command(
    epilog="Example: srtool upscale photos/ out/ --scale 4 --width 1920 "
    "--name '{stem}_x{scale}.{ext}'"
)
def upscale(
    input: Annotated[
        Path,
        typer.Argument(
            help="An image or video file, or a folder of them (PNG, JPEG, WebP, TIFF, BMP, GIF, "
            "HEIC/HEIF, AVIF; animated GIF/WebP/PNG frame by frame; MP4, MKV, MOV, WebM, AVI)."
        ),
    ],
    output: Annotated[
        Path, typer.Argument(help="Output folder (or output file when INPUT is a file).")
    ],
    scale: Annotated[
        int | None,
        typer.Option(
            "--scale",
            "-s",
            min=2,
            max=4,
            help="Use the shipped model for x2, x3 or x4 (default 4); if that one is not "
            "installed, the nearest shipped scale runs and its output is resized to xN.",
            rich_help_panel="Model",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="A shipped or cached model name (`srtool models list`), an ONNX file, or a "
            ".pth/.pt/.safetensors file (converted to ONNX once and cached; the conversion "
            "needs torch, the train extra).",
            rich_help_panel="Model",
        ),
    ] = None,
    outscale: Annotated[
        float | None,
        typer.Option(
            "--outscale",
            help="Final size factor, above 0 and at most 16 (e.g. 1.5, or 8 with a x4 model = "
            "two passes); a high-quality resize follows the network.",
            rich_help_panel="Size and names",
        ),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option(
            rich_help_panel="Size and names",
            min=1,
            help="Fit the output inside this width, keeping the aspect ratio (with --height: "
            "inside both); the network runs at its scale, then a high-quality resize. "
            "Not with --outscale.",
        ),
    ] = None,
    height: Annotated[
        int | None,
        typer.Option(
            rich_help_panel="Size and names",
            min=1,
            help="Fit the output inside this height, keeping the aspect ratio.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            rich_help_panel="Size and names",
            help="Output file name template, e.g. '{stem}_x{scale}.{ext}'; fields: {stem} "
            "(input name without extension), {ext} (output extension), {scale} (final factor), "
            "{model}; '.{ext}' is added when missing. No '/', '\\' or '..'. Not with --suffix.",
        ),
    ] = None,
    tile: Annotated[
        str,
        typer.Option(
            metavar="auto|0|N",
            help="Tile size in input pixels, 0 for whole images, or auto (from free memory).",
            rich_help_panel="Tiling and performance",
        ),
    ] = "auto",
    overlap: Annotated[
        int,
        typer.Option(
            min=0,
            help="Input pixels shared by neighbouring tiles (blended).",
            rich_help_panel="Tiling and performance",
        ),
    ] = DEFAULT_OVERLAP,
    batch: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Tiles per inference call (default: 1 on CPU, 4 on CUDA).",
            rich_help_panel="Tiling and performance",
        ),
    ] = None,
    device: Annotated[
        str,
        typer.Option(
            metavar="auto|cpu|cuda[:N]|cuda:0,1|cuda:all",
            help="auto, cpu, cuda, cuda:N, several GPUs as cuda:0,1, or cuda:all (every "
            "visible GPU; one session each, files spread across them).",
            rich_help_panel="Tiling and performance",
        ),
    ] = "auto",
    fp16: Annotated[
        bool,
        typer.Option(
            "--fp16",
            help="Run the model's fp16 variant (for CUDA).",
            rich_help_panel="Tiling and performance",
        ),
    ] = False,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Run the model's int8 variant (for CPUs; a GPU runs fp32, or fp16 with --fp16).",
            rich_help_panel="Tiling and performance",
        ),
    ] = False,
    recursive: Annotated[
        bool,
        typer.Option(
            "--recursive/--no-recursive",
            help="Walk sub-folders.",
            rich_help_panel="Input selection",
        ),
    ] = True,
    glob: Annotated[
        str | None,
        typer.Option(
            "--glob",
            help="Only files whose name or relative path matches, e.g. '*.jpg'.",
            rich_help_panel="Input selection",
        ),
    ] = None,
    ext: Annotated[
        list[str] | None,
        typer.Option(
            "--ext",
            help="Only these extensions (repeatable), e.g. --ext jpg --ext png.",
            rich_help_panel="Input selection",
        ),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            metavar="keep|png|jpg|webp|tiff|gif|heic|avif",
            help="Output format: keep, png, jpg, webp, tiff, gif, heic or avif "
            "(animations: keep, gif, webp or png).",
            rich_help_panel="Output",
        ),
    ] = "keep",
    quality: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=100,
            help="JPEG/WebP quality (default 95; WebP 100 = lossless).",
            rich_help_panel="Output",
        ),
    ] = None,
    suffix: Annotated[
        str,
        typer.Option(
            help="Appended to output file names, e.g. _x4 (no '/', '\\' or '..').",
            rich_help_panel="Size and names",
        ),
    ] = "",
    alpha: Annotated[
        str,
        typer.Option(
            metavar="resize|model",
            help="Alpha channel: resize (bicubic) or model (through the network).",
            rich_help_panel="Quality",
        ),
    ] = "resize",
    tta: Annotated[
        bool,
        typer.Option(
            "--tta",
            help="x8 self-ensemble (flips and rotations averaged): ~8x slower.",
            rich_help_panel="Quality",
        ),
    ] = False,
    back_projection: Annotated[
        int,
        typer.Option(
            "--back-projection",
            min=0,
            help="Iterations of back-projection: make the result consistent with the input "
            "under bicubic downscaling.",
            rich_help_panel="Quality",
        ),
    ] = 0,
    codec: Annotated[
        str | None,
        typer.Option(
            metavar="h264|h265|av1|vp9",
            help="Video codec: h264, h265, av1 or vp9 (default: H.264, or what the container "
            "and this build allow).",
            rich_help_panel="Video",
        ),
    ] = None,
    crf: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=63,
            help="Video constant quality, lower is better (default 18 for H.264, 20 H.265, "
            "30 AV1/VP9).",
            rich_help_panel="Video",
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="K/N",
            help="Only this machine's share of the files: K of N (K from 0 to N-1, e.g. "
            "$SLURM_ARRAY_TASK_ID/4 or $JOB_COMPLETION_INDEX/4). The split hashes each file's "
            "relative path: the same on every machine, whatever exists already.",
            rich_help_panel="Input selection",
        ),
    ] = None,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing",
            help="Skip files whose output exists (resume).",
            rich_help_panel="Output",
        ),
    ] = False,
    max_pixels: Annotated[
        int,
        typer.Option(
            min=1,
            help="Refuse inputs larger than this many pixels (decompression bombs).",
            rich_help_panel="Input selection",
        ),
    ] = 100_000_000,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1024,
            help="CPU threads for inference (default: all cores).",
            rich_help_panel="Tiling and performance",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="CPU inference workers, each a session on its share of the threads taking its "
            "own files (default: 2 for 8 or more images on 2+ cores, else 1).",
            rich_help_panel="Tiling and performance",
        ),
    ] = None,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Upscale an image or a whole folder (recursively), tiled and seam-free."""
    setup_logging(verbose, quiet)
    with cli_errors(verbose), sigterm_as_interrupt(), warnings_to_log():
        from srtool.cli.upscale_view import make_observer, render_summary
        from srtool.errors import UsageError
        from srtool.infer import UpscalePlan, plan_upscale
        from srtool.infer.jobs import (
            check_name_template,
            collect_jobs,
            in_shard,
            parse_shard,
            shard_jobs,
        )
        from srtool.infer.onnx_session import expand_devices
        from srtool.infer.picture import check_outscale
        from srtool.infer.pipeline import (
            BatchInterrupted,
            BatchOptions,
            check_output_writable,
            cpu_worker_count,
            run_batch,
        )
        from srtool.infer.video import VideoOptions, describe_encoder

        tile_size = parse_tile(tile)
        shard_of = parse_shard(shard) if shard is not None else None
        expand_devices(device)  # a bad device list fails now, before any file is listed
        if workers is not None and device.lower().startswith("cuda"):
            raise UsageError(
                "--workers is for CPU inference; for several GPUs use --device cuda:0,1"
            )
        check_outscale(outscale)
        fit = (width, height) if width is not None or height is not None else None
        if fit is not None and outscale is not None:
            raise UsageError("--width/--height and --outscale cannot be combined: choose one")
        if name is not None:
            if suffix:
                raise UsageError("--name and --suffix cannot be combined: put the suffix in --name")
            check_name_template(name)
        left_out: list[tuple[str, str]] = []  # files of the folder that are not inputs
        video = VideoOptions(codec=codec.lower() if codec else None, crf=crf)

        def load_plan(cpu_workers: int = 1) -> UpscalePlan:
            return plan_upscale(
                model,
                scale=scale,
                outscale=outscale,
                device=device,
                tile=tile_size,
                overlap=overlap,
                batch=batch,
                fp16=fp16,
                threads=threads,
                int8=int8,
                cpu_workers=cpu_workers,
            )

        # --name may name the model and its scale: then the model loads before the files are
        # planned; otherwise the outputs are checked first, before the (slow) model load
        plan = load_plan() if name is not None else None
        fields = {}
        if plan is not None:
            factor = plan.outscale if plan.outscale is not None else plan.upscaler.scale
            fields = {"scale": f"{factor:g}", "model": plan.upscaler.model.info.name}
        jobs = collect_jobs(
            input,
            output,
            recursive=recursive,
            pattern=glob,
            extensions=set(ext) if ext else None,
            fmt=fmt.lower(),
            suffix=suffix,
            unsupported=left_out,
            name=name,
            name_fields=fields,
        )
        if not jobs:
            kinds = sorted({kind for _, kind in left_out})
            found = f" ({len(left_out)} other files: {'; '.join(kinds)})" if left_out else ""
            raise UsageError(f"no supported images or videos found in {input}{found}")
        if shard_of is not None:
            everything = len(jobs)
            jobs = shard_jobs(jobs, *shard_of)
            left_out = [item for item in left_out if in_shard(item[0], *shard_of)]
            if not quiet:
                err_console.print(
                    f"[yellow]note:[/] shard {shard_of[0]}/{shard_of[1]}: {len(jobs)} of "
                    f"{everything} files",
                    highlight=False,
                )
            if not jobs:  # a small folder split many ways: nothing for this machine
                return
        check_output_writable(jobs, skip_existing=skip_existing)  # before the model loads
        # which encoder the videos get (a UsageError when --codec has none in this build)
        has_video = any(job.format == "video" and not job.conflict for job in jobs)
        video_notice = (describe_encoder(video),) if has_video else ()
        cpu_workers = workers if workers is not None else cpu_worker_count(jobs)
        if plan is None or (cpu_workers > 1 and plan.upscaler.model.device == "cpu"):
            plan = load_plan(cpu_workers)
        options = BatchOptions(
            outscale=plan.outscale,
            alpha_mode=alpha,
            quality=quality,
            skip_existing=skip_existing,
            max_pixels=max_pixels,
            tta=tta,
            back_projection=back_projection,
            video=video,
            fit=fit,
        )
        if not quiet:
            for notice in (*plan.notices, *video_notice):
                err_console.print(
                    f"[yellow]note:[/] {printable(notice)}", highlight=False, soft_wrap=True
                )
        try:
            with make_observer(plan.upscalers, quiet=quiet) as observer:
                summary = run_batch(jobs, list(plan.upscalers), options, observer)
        except BatchInterrupted as stopped:  # Ctrl-C or SIGTERM: what was done, then exit 130
            err_console.print("[bold red]interrupted[/]")
            stopped.summary.left_out = left_out
            render_summary(stopped.summary, quiet=quiet, verbose=verbose)
            raise typer.Exit(130) from None
        summary.left_out = left_out
        render_summary(summary, quiet=quiet, verbose=verbose)
        if summary.failed:
            raise typer.Exit(1)
