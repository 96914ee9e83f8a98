"""``srtool data list | fetch | verify``: the datasets srtool knows by name."""

from __future__ import annotations

from pathlib import Path
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
    setup_logging,
)

data_app = SrtoolTyper(
    help="Known datasets: list them, download and checksum-verify them.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

DataRootOption = Annotated[
    Path | None,
    typer.Option(
        "--data-root",
        help="Folder holding the datasets (default: $SRTOOL_DATA, else the user cache folder).",
        show_default=False,
    ),
]


@data_app.command("list", epilog="Example: srtool data list --data-root data")
def list_datasets(data_root: DataRootOption = None, verbose: VerboseOption = False) -> None:
    """List known datasets, where each would live, and whether it is there."""
    from rich.table import Table

    from srtool import datasets
    from srtool.imageio import list_images

    setup_logging(verbose)
    with cli_errors(verbose):
        root = datasets.resolve_root(data_root)
        table = Table(title=f"datasets under {root}", title_justify="left")
        for column in ("name", "kind", "images", "status", "folder", "download"):
            table.add_column(column, overflow="fold")
        unpinned = False
        for ds in datasets.DATASETS.values():
            folder = datasets.locate(ds, root)
            if folder is None:
                status, where = "[yellow]missing[/]", ds.folder
            else:
                n = len(list_images(folder, ds.suffixes))
                status = "[green]ok[/]" if n >= ds.count else f"[red]{n} of {ds.count}[/]"
                inside = folder.is_relative_to(root)
                where = str(folder.relative_to(root)) if inside else str(folder)
            if ds.source is None:
                download = "manual" + (f": {ds.manual}" if verbose and ds.manual else "")
            else:
                download = ds.source.url if verbose else ds.source.url.rsplit("/", 1)[-1]
                if not (ds.source.sha256 and ds.source.verified):
                    download += " *"
                    unpinned = True
            table.add_row(ds.name, ds.kind, str(ds.count), status, where, download)
        console.print(table)
        if unpinned:
            console.print(
                "* archive checksum not pinned: the download is checked by file count and, "
                "for reference copies, by each file's MD5 (--verbose shows full addresses)"
            )


@data_app.command("fetch", epilog="Example: srtool data fetch Set5 Set14 --data-root data")
def fetch(
    names: Annotated[list[str], typer.Argument(help="Dataset names (see `srtool data list`).")],
    data_root: DataRootOption = None,
    url: Annotated[
        str | None, typer.Option(help="Download from this address instead (a mirror).")
    ] = None,
    sha256: Annotated[
        str | None, typer.Option(help="Expected SHA-256 of the archive; a mismatch is an error.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Download and install again even if present.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Network timeout in seconds.")] = 60.0,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Download datasets, verify their checksums and install them under the data root."""
    from srtool import datasets

    setup_logging(verbose, quiet)
    with cli_errors(verbose):
        for name in names:
            with download_bar(f"fetching {name}", quiet) as report:
                folder = datasets.fetch(
                    name,
                    data_root,
                    url=url,
                    sha256=sha256,
                    force=force,
                    timeout=timeout,
                    progress=report,
                )
            result = datasets.verify(name, data_root)
            if not quiet:
                label = datasets.get(name).name
                console.print(f"[green]{label}[/] in {folder}: {result.summary()}")


@data_app.command("verify", epilog="Example: srtool data verify Set5 BSD100 --data-root data")
def verify(
    names: Annotated[list[str], typer.Argument(help="Dataset names (see `srtool data list`).")],
    data_root: DataRootOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Compare local copies with the reference MD5 of every file (exit 1 on a difference)."""
    from srtool import datasets

    setup_logging(verbose)
    failed = False
    with cli_errors(verbose):
        for name in names:
            result = datasets.verify(name, data_root)
            colour = "green" if result.ok else "yellow" if not result.reference else "red"
            failed |= result.reference and not result.ok
            console.print(f"[{colour}]{result.name}[/] in {result.folder}: {result.summary()}")
    if failed:
        raise typer.Exit(1)
