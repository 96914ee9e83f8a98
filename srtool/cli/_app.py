"""The Typer application and what every command shares: consoles, logging, error translation.

Commands live in sibling modules, parse their options, call ONE library function and render its
result. Heavy imports (onnxruntime, torch) happen inside command bodies so ``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer.exceptions import TyperException

from srtool import __version__
from srtool.errors import SrtoolError

app = typer.Typer(
    name="srtool",
    help="Image super-resolution: train, export, upscale and evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

console = Console()
err_console = Console(stderr=True)

VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Log details and show tracebacks of failures.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")]


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"srtool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print version."),
    ] = False,
) -> None:
    """Image super-resolution: train, export, upscale and evaluate."""


def parse_tile(value: str) -> int | None:
    """``--tile``: ``auto`` -> None (sized from free memory), else a size in pixels (0 = whole)."""
    from srtool.errors import UsageError

    if value.strip().lower() == "auto":
        return None
    try:
        tile = int(value)
    except ValueError:
        tile = -1
    if tile < 0:
        raise UsageError(f"--tile {value}: use a size in pixels, 0 (whole image) or auto")
    return tile


def setup_logging(verbose: bool, quiet: bool = False) -> None:
    """Route the library's ``srtool`` logger to stderr through Rich."""
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    logger = logging.getLogger("srtool")
    logger.handlers.clear()
    handler = RichHandler(console=err_console, show_time=False, show_path=verbose)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


@contextlib.contextmanager
def cli_errors(verbose: bool) -> Iterator[None]:
    """Turn library exceptions into one red line and the error's exit code.

    With ``verbose`` the traceback is printed too. Unexpected exceptions exit 1; Ctrl-C exits 130.
    """
    try:
        yield
    except (typer.Exit, typer.Abort, TyperException):
        raise  # usage errors and exits that Typer reports itself
    except SrtoolError as exc:
        if verbose:
            err_console.print_exception()
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - the one place that reports anything unexpected
        if verbose:
            err_console.print_exception()
        err_console.print(
            f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))}"
            + ("" if verbose else " (run with --verbose for the traceback)"),
            highlight=False,
        )
        raise typer.Exit(1) from None
