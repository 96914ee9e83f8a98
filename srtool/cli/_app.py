"""The Typer application and what every command shares: consoles, logging, error translation.

Commands live in sibling modules, parse their options, call ONE library function and render its
result. Heavy imports (onnxruntime, torch) happen inside command bodies so ``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.exceptions import TyperException

from srtool import __version__
from srtool.errors import SrtoolError


def _unix_style(params: list[Any]) -> list[Any]:
    """Flags without a ``<bool>`` value (they take none); arguments named in upper case."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
        elif isinstance(param, TyperArgument) and param.metavar is None:
            param.metavar = (param.name or "value").upper()
    return params


class SrtoolCommand(TyperCommand):
    """A command whose help reads like the usage line of a Unix tool.

    Flags show no ``<bool>`` value (they take none), arguments are upper-case (``INPUT``), and the
    usage line names required arguments bare and optional ones in brackets.
    """

    def get_params(self, ctx: Any) -> list[Any]:
        return _unix_style(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [re.sub(r"^\{(.*)\}", r"\1", piece) for piece in super().collect_usage_pieces(ctx)]


class SrtoolGroup(TyperGroup):
    """The command group: options rendered like ``SrtoolCommand``'s, commands listed by use."""

    ORDER = ("upscale", "evaluate", "train", "export", "models", "data", "doctor")

    def get_params(self, ctx: Any) -> list[Any]:
        return _unix_style(super().get_params(ctx))

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(self.ORDER)}
        return sorted(names, key=lambda name: (rank.get(name, len(rank)), name))


class SrtoolTyper(typer.Typer):
    """A Typer application built of ``SrtoolGroup`` and ``SrtoolCommand`` unless told otherwise."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", SrtoolGroup)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
        kwargs.setdefault("cls", SrtoolCommand)
        return super().command(*args, **kwargs)


app = SrtoolTyper(
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


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a non-UTF-8 file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return _ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str) -> str:
    """``text`` on one line: control characters (a newline in a file name, terminal escape codes)
    and undecodable bytes of file names written as Python-style escapes."""
    return _UNPRINTABLE.sub(_escape_char, text)


class _PlainLogHandler(logging.StreamHandler):
    """One line per message on whatever ``sys.stderr`` is now (a pipe or a log file)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def setup_logging(verbose: bool, quiet: bool = False) -> None:
    """Route the library's ``srtool`` logger to stderr: through Rich on a terminal, as plain
    single lines (never wrapped at the console width) in a pipe or a log file."""
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    logger = logging.getLogger("srtool")
    logger.handlers.clear()
    handler: logging.Handler
    if err_console.is_terminal:
        handler = RichHandler(console=err_console, show_time=False, show_path=verbose)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = _PlainLogHandler()
        handler.setFormatter(logging.Formatter("%(levelname)-8s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


@contextlib.contextmanager
def warnings_to_log() -> Iterator[None]:
    """Python warnings raised inside the block (numpy, Pillow, onnxruntime's Python side: in any
    thread) go to the ``srtool`` logger at debug level, shown with ``--verbose``, instead of
    stderr."""
    logger = logging.getLogger("srtool")

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        logger.debug("%s: %s (%s:%d)", category.__name__, message, filename, lineno)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM stops the command exactly as Ctrl-C does (a KeyboardInterrupt in
    the main thread: clean stop, summary, exit 130). Installed only from the main thread
    (Python's rule); the previous handler is restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def cli_errors(verbose: bool) -> Iterator[None]:
    """Turn library exceptions into one red line and the error's exit code.

    With ``verbose`` the traceback is printed too. Unexpected exceptions exit 1; Ctrl-C exits 130.
    The line is never wrapped and control characters in it are escaped (``printable``).
    """
    try:
        yield
    except (typer.Exit, typer.Abort, TyperException):
        raise  # usage errors and exits that Typer reports itself
    except SrtoolError as exc:
        if verbose:
            err_console.print_exception()
        err_console.print(
            f"[bold red]error:[/] {escape(printable(str(exc)))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - the one place that reports anything unexpected
        if verbose:
            err_console.print_exception()
        err_console.print(
            f"[bold red]error:[/] {type(exc).__name__}: {escape(printable(str(exc)))}"
            + ("" if verbose else " (run with --verbose for the traceback)"),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


@contextlib.contextmanager
def download_bar(description: str, quiet: bool) -> Iterator[Callable[[int, int | None], None]]:
    """A transient Rich download bar; yields the ``progress(done, total)`` callback to pass on."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn())
    with Progress(
        *columns, TransferSpeedColumn(), console=console, disable=quiet, transient=True
    ) as bar:
        task = bar.add_task(description, total=None)

        def report(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield report
