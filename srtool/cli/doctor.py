"""``srtool doctor``: can this machine run what you ask? Versions, providers, GPUs, CUDA."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from srtool.cli._app import VerboseOption, app, cli_errors, console, setup_logging


def _gib(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**30:.1f} GiB"


@app.command()
def doctor(
    device: Annotated[
        str,
        typer.Option(
            metavar="auto|cpu|cuda[:N]",
            help="The device to check: auto, cpu, cuda or cuda:N. Exit code 0 when it works.",
        ),
    ] = "auto",
    verbose: VerboseOption = False,
) -> None:
    """Check versions, providers, GPUs and CUDA libraries; say how to fix what is missing.

    Example: srtool doctor --device cuda
    """
    setup_logging(verbose)
    with cli_errors(verbose):
        from srtool.doctor import diagnose

        report = diagnose(device)
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("srtool", f"{report.srtool} (Python {report.python}, {report.platform})")
        ort = report.onnxruntime or "not importable"
        if report.onnxruntime_package:
            ort += f" ({report.onnxruntime_package}"
            ort += (
                f", built for CUDA {report.onnxruntime_cuda})" if report.onnxruntime_cuda else ")"
            )
        table.add_row("onnxruntime", ort)
        table.add_row("providers", ", ".join(report.providers) or "none")
        torch = report.torch or "not installed (needed for train and export only)"
        if report.torch and report.torch_cuda:
            torch += f" (CUDA {report.torch_cuda})"
        table.add_row("torch", torch)
        table.add_row("NVIDIA driver", f"CUDA {report.driver}" if report.driver else "not found")
        for gpu in report.gpus:
            table.add_row(
                f"cuda:{gpu.index}",
                f"{escape(gpu.name)}, {_gib(gpu.free_bytes)} free of {_gib(gpu.total_bytes)}",
            )
        for lib in report.libraries:
            state = "[green]found[/]" if lib.found else f"[red]missing[/] (pip: {lib.package})"
            table.add_row(lib.soname, state)
        if report.cuda_session is not None:
            table.add_row(
                "CUDA session",
                "[green]works[/]"
                if report.cuda_session
                else f"[red]fails[/]: {escape(report.cuda_error or '')}",
            )
        console.print(table)
        for problem in report.problems:
            console.print(f"[red]problem:[/] {escape(problem)}", highlight=False)
        for note in report.notes:
            console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
        for fix in report.fixes:
            console.print(f"[yellow]fix:[/] {escape(fix)}", highlight=False)
        verdict = f"--device {device}: " + ("works" if report.ok else "does not work")
        console.print(("[green]" if report.ok else "[red]") + verdict + "[/]")
        if not report.ok:
            raise typer.Exit(1)
