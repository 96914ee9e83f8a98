"""``srtool models list | add``: shipped models, converted ones in the cache, well-known ones."""

from __future__ import annotations

from typing import Annotated

import typer

from srtool.cli._app import (
    QuietOption,
    SrtoolTyper,
    VerboseOption,
    app,
    cli_errors,
    console,
    download_bar,
    printable,
    setup_logging,
)

models_app = SrtoolTyper(
    help="Models: list shipped and cached ones, add any model file or well-known model by name.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@models_app.command("list", epilog="Example: srtool models list")
def list_models(verbose: VerboseOption = False) -> None:
    """Shipped and cached models (name, scale, architecture, parameters, size, source), then the
    well-known models `srtool models add NAME` can fetch."""
    from rich.markup import escape
    from rich.table import Table

    from srtool.infer.catalog import DEFAULT_MODEL_FOR_SCALE, MODEL_FILE, shipped_models
    from srtool.infer.modelcache import CATALOGUE, cache_root, cached_models
    from srtool.infer.onnx_session import read_metadata

    setup_logging(verbose)
    with cli_errors(verbose):
        table = Table(title="models", title_justify="left")
        for column in ("name", "scale", "arch", "params", "size", "source"):
            table.add_column(column, overflow="fold")
        names = set()
        default_scale = {name: scale for scale, name in DEFAULT_MODEL_FOR_SCALE.items()}
        for name, folder in shipped_models().items():
            names.add(name)
            meta = read_metadata(folder / MODEL_FILE)
            size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
            params = meta.get("srtool.params")
            table.add_row(
                name,
                f"x{meta['srtool.scale']}" if "srtool.scale" in meta else "?",
                meta.get("srtool.arch", "?"),
                f"{int(params):,}" if params and params.isdigit() else "?",
                _size(size),
                "shipped"
                + (f", default for --scale {default_scale[name]}" if name in default_scale else "")
                + (f": {escape(str(folder))}" if verbose else ""),
            )
        for m in cached_models():
            names.add(m.name)
            table.add_row(
                escape(printable(m.name)),
                f"x{m.scale}" if m.scale else "?",
                escape(m.arch or "?"),
                f"{m.params:,}" if m.params else "?",
                _size(m.size_bytes()),
                "cached: " + escape(printable(m.source)),
            )
        console.print(table)
        console.print(f"[dim]cache: {escape(str(cache_root()))}[/]", highlight=False)
        hashes = {m.sha256 for m in cached_models()}
        available = [
            e for e in CATALOGUE.values() if e.name not in names and e.sha256 not in hashes
        ]
        if available:
            console.print(
                "well-known models (`srtool models add NAME`; needs srtool\\[train]):",
                highlight=False,
            )
            for e in available:
                pin = "" if e.sha256 else " (checksum not pinned)"
                console.print(
                    f"  {e.name}  x{e.scale} {e.arch}: {e.description}{pin}",
                    highlight=False,
                    soft_wrap=True,
                )


@models_app.command("add", epilog="Example: srtool models add ../weights/4x-model.pth --name mine")
def add(
    source: Annotated[
        str,
        typer.Argument(
            help="A model file (.pth/.pt/.safetensors), an http(s) address, or a well-known "
            "model name (see `srtool models list`).",
            show_default=False,
        ),
    ],
    sha256: Annotated[
        str | None,
        typer.Option("--sha256", help="Expected SHA-256 of the file; a mismatch is an error."),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Name to use with --model (default: the file's name)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Network timeout in seconds.")] = 60.0,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Fetch or take a model file, verify it, convert it to ONNX once and cache it (needs
    the train extra, torch, for the conversion; the cached model then runs without it)."""
    from srtool.infer.modelcache import add_model

    setup_logging(verbose, quiet)
    with cli_errors(verbose):
        with download_bar("fetching", quiet) as report:
            result = add_model(source, sha256=sha256, name=name, timeout=timeout, progress=report)
        if quiet:
            return
        m = result.model
        done = "converted and cached" if result.converted else "already cached"
        console.print(
            f"[green]{printable(m.name)}[/]: {done} in {m.folder} "
            f"(x{m.scale}, {m.arch}); use it with --model {printable(m.name)}",
            highlight=False,
            soft_wrap=True,
        )
        if result.pinned:
            console.print(f"sha256 {result.sha256} (verified)", highlight=False)
        else:
            console.print(
                f"sha256 {result.sha256} (not pinned: compare it with the publisher's checksum; "
                "pass --sha256 to have it checked)",
                highlight=False,
                soft_wrap=True,
            )
