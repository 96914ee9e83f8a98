"""``srtool export``: a checkpoint, run folder or community model file in, a verified ONNX out."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from srtool.cli._app import QuietOption, VerboseOption, app, cli_errors, console, setup_logging

if TYPE_CHECKING:
    from srtool.export import ExportReport


def _render(report: ExportReport) -> None:
    from rich.table import Table

    from srtool.export.card import format_db

    console.print(
        f"[bold green]exported[/] {report.out_path}  "
        f"[dim]({report.arch} x{report.scale}, {report.params:,} parameters, "
        f"{report.macs_per_output_pixel:,.0f} MACs/output pixel, "
        f"{report.size_bytes / 1e6:.2f} MB, {report.seconds:.1f} s)[/]",
        highlight=False,
    )
    rows = list(report.parity) + [r for v in report.variants for r in v.parity]
    if rows:
        table = Table(title="parity with PyTorch fp32", title_justify="left")
        for column in ("variant", "provider", "input N×C×H×W", "max abs error", "PSNR"):
            table.add_column(
                column, justify="left" if column in ("variant", "provider") else "right"
            )
        for r in rows:
            table.add_row(
                r.variant,
                r.provider,
                "×".join(map(str, r.shape)),
                f"{r.max_abs:.3g}",
                format_db(r.psnr_db),
            )
        console.print(table)
    else:
        console.print("[yellow]parity not checked[/] (--no-parity)")
    for v in report.variants:
        colour = "green" if v.accepted else "yellow"
        where = str(v.path) if v.path else "not written"
        console.print(f"[bold {colour}]{v.precision}[/] {where}: {v.note}", highlight=False)
        if v.psnr_fp32 is not None:
            console.print(
                f"  PSNR-Y on {v.eval_dir} ({v.eval_images} images): fp32 {v.psnr_fp32:.3f} dB, "
                f"{v.precision} {v.psnr_variant:.3f} dB (Δ {v.psnr_delta:+.3f} dB); "
                f"speed-up {v.speedup:.2f}x (fp32 {v.seconds_fp32:.3f} s, "
                f"{v.precision} {v.seconds_variant:.3f} s)",
                highlight=False,
            )
            console.print(
                f"  {v.precision} vs fp32 outputs: PSNR {format_db(v.fidelity_psnr)}, "
                f"max abs error {v.fidelity_max_abs:.3g}",
                highlight=False,
            )
    if report.card_path:
        console.print(f"[dim]model card: {report.card_path}[/]", highlight=False)


def _format_from_suffix(output: Path) -> str:
    suffix = output.suffix.lower()
    return {".safetensors": "safetensors", ".pth": "pth", ".pt": "pth"}.get(suffix, "onnx")


@app.command(epilog="Example: srtool export runs/demo -o out/demo.onnx --fp16")
def export(
    source: Annotated[
        Path,
        typer.Argument(
            help="An srtool checkpoint (.safetensors), a training run folder, or a community "
            "model file (.pth/.pt/.safetensors: ESRGAN, Real-ESRGAN Compact, SwinIR, SPAN, ...)."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="The file to write (.onnx, or see --format).",
            rich_help_panel="Output",
        ),
    ],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar="onnx|safetensors|pth",
            help="onnx (verified, for `srtool upscale`), or safetensors / pth: plain weights "
            "that spandrel, chaiNNer and ComfyUI load (default: from the output's suffix, "
            "else onnx).",
            show_default=False,
            rich_help_panel="Output",
        ),
    ] = None,
    fp16: Annotated[
        bool,
        typer.Option(
            "--fp16",
            help="Also write OUT.fp16.onnx (fp16 weights, fp32 I/O) for GPUs.",
            rich_help_panel="Output",
        ),
    ] = False,
    int8: Annotated[
        Path | None,
        typer.Option(
            "--int8",
            metavar="CALIB_DIR",
            help="Also write OUT.int8.onnx (static int8, for CPUs) calibrated on these photos.",
            rich_help_panel="Quantisation (int8)",
        ),
    ] = None,
    int8_eval: Annotated[
        Path | None,
        typer.Option(
            "--int8-eval",
            metavar="HR_DIR",
            help="HR images to measure the int8 PSNR cost and speed-up on, e.g. Set5 "
            "(default: the calibration folder).",
            rich_help_panel="Quantisation (int8)",
        ),
    ] = None,
    int8_max_loss: Annotated[
        float,
        typer.Option(
            "--int8-max-loss",
            min=0.0,
            help="Keep the int8 model only if it loses at most this many dB PSNR-Y.",
            rich_help_panel="Quantisation (int8)",
        ),
    ] = 0.05,
    int8_recalibrate: Annotated[
        bool,
        typer.Option(
            "--int8-recalibrate",
            help="Calibrate every range on CALIB_DIR even when the checkpoint carries the "
            "ranges of quantisation-aware training.",
            rich_help_panel="Quantisation (int8)",
        ),
    ] = False,
    int8_from: Annotated[
        Path | None,
        typer.Option(
            "--int8-from",
            metavar="CKPT",
            help="Quantise this checkpoint of the same network (e.g. its quantisation-aware "
            "fine-tune) for OUT.int8.onnx; fp32 stays SOURCE's and is the reference.",
            rich_help_panel="Quantisation (int8)",
        ),
    ] = None,
    opset: Annotated[
        int, typer.Option("--opset", min=17, help="ONNX opset version.", rich_help_panel="Output")
    ] = 17,
    exporter: Annotated[
        str,
        typer.Option(
            "--exporter",
            metavar="dynamo|torchscript",
            help="dynamo (torch.export based) or torchscript (legacy tracer).",
            rich_help_panel="Output",
        ),
    ] = "dynamo",
    parity: Annotated[
        bool,
        typer.Option(
            "--parity/--no-parity",
            help="Check onnxruntime against PyTorch on two input sizes.",
            rich_help_panel="Checks",
        ),
    ] = True,
    card: Annotated[
        bool,
        typer.Option(
            "--card/--no-card",
            help="Write a model card (OUT.md) beside the model.",
            rich_help_panel="Output",
        ),
    ] = True,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Export a model to ONNX for `srtool upscale`, verified against PyTorch, or as plain
    weights (safetensors / pth) for spandrel-based tools."""
    setup_logging(verbose, quiet)
    with cli_errors(verbose):
        from srtool.errors import UsageError, require_train_extra

        require_train_extra("srtool export")
        kind = (fmt or "").lower() or _format_from_suffix(output)
        if kind not in ("onnx", "safetensors", "pth"):
            raise UsageError(f"--format {fmt}: use onnx, safetensors or pth")
        if kind != "onnx":
            if fp16 or int8 is not None:
                raise UsageError("--fp16 and --int8 are ONNX variants; use --format onnx")
            from srtool.export.weights import export_weights

            written = export_weights(source, output, kind)
            if not quiet:
                console.print(
                    f"[bold green]exported[/] {written.out_path}  [dim]({written.arch} "
                    f"x{written.scale}, {written.tensors} tensors, {written.params:,} "
                    f"parameters, {written.size_bytes / 1e6:.2f} MB, plain {kind} weights)[/]",
                    highlight=False,
                )
            return
        from srtool.export import export_onnx

        if exporter not in ("dynamo", "torchscript"):
            raise UsageError(f"--exporter {exporter}: use dynamo or torchscript")
        if int8_eval is not None and int8 is None:
            raise UsageError("--int8-eval needs --int8 CALIB_DIR")
        if int8_recalibrate and int8 is None:
            raise UsageError("--int8-recalibrate needs --int8 CALIB_DIR")
        if int8_from is not None and int8 is None:
            raise UsageError("--int8-from needs --int8 CALIB_DIR")
        status = console.status("exporting…") if not quiet else contextlib.nullcontext()
        with status:
            report = export_onnx(
                source,
                output,
                opset=opset,
                fp16=fp16,
                int8_calib_dir=int8,
                int8_eval_dir=int8_eval,
                int8_max_loss_db=int8_max_loss,
                int8_recalibrate=int8_recalibrate,
                int8_source=int8_from,
                check_parity=parity,
                exporter=exporter,  # type: ignore[arg-type]
                write_card=card,
            )
        if not quiet:
            _render(report)
