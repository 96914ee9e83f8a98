"""How `srtool upscale` shows a batch as it runs: Rich progress on a terminal, one line per file
otherwise (never wrapped at the console width; control characters in names escaped)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from srtool.cli._app import console, err_console, printable
from srtool.infer.jobs import Job
from srtool.infer.pipeline import BatchSummary, FileResult, NullObserver
from srtool.infer.upscaler import Upscaler

__all__ = ["make_observer", "render_summary"]


def _text(value: object) -> str:
    """A name or message as Rich markup on one line."""
    return escape(printable(str(value)))


def _failure_line(result: FileResult) -> str:
    return f"[bold red]failed[/] {_text(result.job.name)}: {_text(result.reason)}"


class PlainObserver(NullObserver):
    """One line per finished file, for logs and pipes; failures go to stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.total = 0
        self.count = 0

    def batch_started(self, total: int) -> None:
        self.total = total

    def file_finished(self, result: FileResult) -> None:
        self.count += 1
        if result.status == "failed":
            err_console.print(_failure_line(result), highlight=False, soft_wrap=True)
        elif not self.quiet:
            where = f"[{self.count}/{self.total}]"
            if result.status == "done":
                console.print(
                    f"{where} done {_text(result.job.name)} -> {_text(result.job.target)} "
                    f"({_video_stats(result)}{result.output_megapixels:.2f} MPix, "
                    f"{result.seconds:.2f} s)",
                    highlight=False,
                    soft_wrap=True,
                )
            else:
                console.print(
                    f"{where} skipped {_text(result.job.name)} ({_text(result.reason)})",
                    highlight=False,
                    soft_wrap=True,
                )


class RichObserver:
    """Files bar, current image's tiles bar, output MPix/s and ETA."""

    def __init__(self, upscaler: Upscaler | Sequence[Upscaler]) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=False,
        )
        self.device = _devices(upscaler)
        self.files: TaskID | None = None
        self.tiles: TaskID | None = None
        self.started = time.perf_counter()
        self.megapixels = 0.0
        self.file_started_at = self.started

    def __enter__(self) -> RichObserver:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def batch_started(self, total: int) -> None:
        self.started = time.perf_counter()
        self.files = self.progress.add_task(f"files ({self.device})", total=total, rate="")
        self.tiles = self.progress.add_task("tiles", total=1, rate="", visible=False)

    def file_started(self, job: Job, width: int, height: int) -> None:
        assert self.tiles is not None
        self.file_started_at = time.perf_counter()
        self.progress.update(
            self.tiles,
            description=_text(_shorten(job.name)),
            completed=0,
            total=1,
            rate="",
            visible=True,
        )

    def tiles_done(self, done: int, total: int) -> None:
        assert self.tiles is not None
        self.progress.update(self.tiles, completed=done, total=total)

    def frames_done(self, done: int, total: int | None) -> None:
        """A video's progress, in frames, on the bar that shows an image's tiles."""
        assert self.tiles is not None
        rate = done / max(time.perf_counter() - self.file_started_at, 1e-9)
        self.progress.update(self.tiles, completed=done, total=total, rate=f"{rate:.1f} frames/s")

    def file_finished(self, result: FileResult) -> None:
        assert self.files is not None
        self.megapixels += result.output_megapixels
        rate = self.megapixels / max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(self.files, advance=1, rate=f"{rate:.2f} MPix/s")
        if result.status == "failed":
            self.progress.console.print(_failure_line(result), highlight=False)


def _devices(upscaler: Upscaler | Sequence[Upscaler]) -> str:
    """``cpu``, ``cuda`` or, for several devices, ``cuda:0,1`` (``cpu, 2 workers`` for CPU
    workers)."""
    upscalers = list(upscaler) if isinstance(upscaler, (list, tuple)) else [upscaler]
    if len(upscalers) == 1:
        return upscalers[0].model.device
    indices = [str(u.model.device_index) for u in upscalers if u.model.device == "cuda"]
    if len(indices) == len(upscalers):
        return "cuda:" + ",".join(indices)
    if all(u.model.device == "cpu" for u in upscalers):
        return f"cpu, {len(upscalers)} workers"
    return ", ".join(u.model.device for u in upscalers)


def _video_stats(result: FileResult) -> str:
    """``12 frames, 24.5 frames/s, libx264, `` for a video's done line; empty for an image."""
    if not result.frames:
        return ""
    rate = result.frames / max(result.seconds, 1e-9)
    return f"{result.frames} frames, {rate:.1f} frames/s, {_text(result.encoder)}, "


def _shorten(name: str, width: int = 40) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


@contextlib.contextmanager
def make_observer(
    upscaler: Upscaler | Sequence[Upscaler], *, quiet: bool
) -> Iterator[PlainObserver | RichObserver]:
    """Rich display on an interactive terminal (unless quiet), plain lines otherwise."""
    if quiet or not err_console.is_terminal:
        yield PlainObserver(quiet)
        return
    with RichObserver(upscaler) as observer:
        yield observer


def render_summary(summary: BatchSummary, *, quiet: bool, verbose: bool = False) -> None:
    """The closing line: counts, time, throughput (failures were reported as they happened);
    after an interruption, how many files were never reached. Before it, one line per kind of
    file left out of the input ("2 skipped: unsupported format .psd"), with the names when
    ``verbose``."""
    failed = summary.failed
    if not quiet:
        kinds = sorted(summary.left_out_kinds.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        for kind, names in kinds:
            listed = f": {', '.join(names)}" if verbose else ""
            console.print(
                f"{len(names)} skipped: {_text(kind)}{_text(listed)}",
                highlight=False,
                soft_wrap=True,
            )
        untouched = f", {summary.not_processed} not processed" if summary.interrupted else ""
        console.print(
            f"[bold]{summary.done} done[/], {summary.skipped} skipped, "
            f"[{'bold red' if failed else 'bold'}]{len(failed)} failed[/]{untouched} "
            f"in {summary.seconds:.1f} s "
            f"({summary.output_megapixels:.1f} output MPix, "
            f"{summary.megapixels_per_second:.2f} MPix/s)",
            highlight=False,
            soft_wrap=True,
        )
