"""The batch pipeline: decode ahead, infer, encode behind, never losing a file.

Three stages overlap: a reader thread decodes the next images, the calling thread runs the
network, and a writer thread encodes and atomically writes finished images. Bounded queues keep
memory flat however many files there are. A file that fails (corrupt, unreadable, unwritable) is
reported and the batch goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from srtool.atomic import remove_stale_temporaries
from srtool.errors import ImageReadError, ImageWriteError, SrtoolError, UsageError
from srtool.imageio import DEFAULT_MAX_PIXELS, Picture, read_image, write_image
from srtool.infer.jobs import Job
from srtool.infer.picture import check_alpha_mode, upscale_picture
from srtool.infer.upscaler import Upscaler

__all__ = ["BatchOptions", "FileResult", "BatchSummary", "BatchObserver", "run_batch"]

log = logging.getLogger("srtool")

_DECODE_AHEAD = 2
_ENCODE_BEHIND = 1
_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class BatchOptions:
    outscale: float | None = None
    alpha_mode: str = "resize"
    quality: int | None = None
    skip_existing: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    tta: bool = False
    back_projection: int = 0

    def __post_init__(self) -> None:
        check_alpha_mode(self.alpha_mode)  # now, not at the first file: all may be skipped


@dataclass(frozen=True)
class FileResult:
    job: Job
    status: str  # "done" | "skipped" | "failed"
    reason: str = ""
    seconds: float = 0.0
    output_megapixels: float = 0.0


@dataclass
class BatchSummary:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def _count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def done(self) -> int:
        return self._count("done")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def output_megapixels(self) -> float:
        return sum(r.output_megapixels for r in self.results)

    @property
    def megapixels_per_second(self) -> float:
        return self.output_megapixels / self.seconds if self.seconds > 0 else 0.0


class BatchObserver(Protocol):
    """Receives progress; calls are serialised (never two at once)."""

    def batch_started(self, total: int) -> None: ...

    def file_started(self, job: Job, width: int, height: int) -> None: ...

    def tiles_done(self, done: int, total: int) -> None: ...

    def file_finished(self, result: FileResult) -> None: ...


class _NullObserver:
    def batch_started(self, total: int) -> None:
        pass

    def file_started(self, job: Job, width: int, height: int) -> None:
        pass

    def tiles_done(self, done: int, total: int) -> None:
        pass

    def file_finished(self, result: FileResult) -> None:
        pass


@dataclass
class _Decoded:
    job: Job
    picture: Picture | None = None
    result: FileResult | None = None  # set when the file is finished before inference


@dataclass
class _Finished:
    job: Job
    picture: Picture
    started: float


class _Stage:
    """A worker thread whose exception is re-raised in the caller by ``join``."""

    def __init__(self, name: str, target) -> None:  # noqa: ANN001
        self.error: BaseException | None = None

        def run() -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self.error = exc

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> object | None:
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            continue
    return None


_END = object()


def run_batch(
    jobs: list[Job],
    upscaler: Upscaler,
    options: BatchOptions = BatchOptions(),
    observer: BatchObserver | None = None,
) -> BatchSummary:
    """Upscale every job's file; returns what happened to each. Ctrl-C stops cleanly: files
    already written stay, the one being written is never left half-written."""
    observer = observer or _NullObserver()
    lock = threading.Lock()
    summary = BatchSummary()
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=_DECODE_AHEAD)
    finished: queue.Queue = queue.Queue(maxsize=_ENCODE_BEHIND)

    def report(result: FileResult) -> None:
        with lock:
            summary.results.append(result)
            observer.file_finished(result)
        if result.status == "failed":
            log.debug("%s failed: %s", result.job.name, result.reason)

    def read_all() -> None:
        for job in jobs:
            if stop.is_set():
                return
            if job.conflict:
                item = _Decoded(job, result=FileResult(job, "failed", job.conflict))
            elif options.skip_existing and job.target.exists():
                item = _Decoded(job, result=FileResult(job, "skipped", "output exists"))
            else:
                try:
                    item = _Decoded(
                        job, picture=read_image(job.source, max_pixels=options.max_pixels)
                    )
                except ImageReadError as exc:
                    item = _Decoded(job, result=FileResult(job, "failed", str(exc)))
            if not _put(decoded, item, stop):
                return
        _put(decoded, _END, stop)

    def write_all() -> None:
        while True:
            item = _get(finished, stop)
            if item is None or item is _END:
                return
            assert isinstance(item, _Finished)
            job, picture = item.job, item.picture
            try:
                job.target.parent.mkdir(parents=True, exist_ok=True)
                remove_stale_temporaries(job.target)
                write_image(job.target, picture, format=job.format, quality=options.quality)
            except (ImageWriteError, OSError) as exc:
                report(FileResult(job, "failed", _reason(exc)))
                continue
            height, width = picture.pixels.shape[:2]
            report(
                FileResult(
                    job,
                    "done",
                    seconds=time.perf_counter() - item.started,
                    output_megapixels=height * width / 1e6,
                )
            )

    def on_tile(done: int, total: int) -> None:
        with lock:
            observer.tiles_done(done, total)

    observer.batch_started(len(jobs))
    start = time.perf_counter()
    reader = _Stage("srtool-decode", read_all)
    writer = _Stage("srtool-encode", write_all)
    try:
        while True:
            item = _get(decoded, stop)
            if item is None or item is _END:
                break
            assert isinstance(item, _Decoded)
            if item.result is not None:
                report(item.result)
                continue
            picture = item.picture
            assert picture is not None
            with lock:
                observer.file_started(item.job, picture.pixels.shape[1], picture.pixels.shape[0])
            started = time.perf_counter()
            try:
                output = upscale_picture(
                    picture,
                    upscaler,
                    outscale=options.outscale,
                    alpha_mode=options.alpha_mode,
                    tta=options.tta,
                    back_projection=options.back_projection,
                    on_tile=on_tile,
                )
            except SrtoolError as exc:
                if isinstance(exc, UsageError):  # the model or the options, not this file
                    raise
                report(FileResult(item.job, "failed", str(exc)))
                continue
            except MemoryError:
                report(FileResult(item.job, "failed", "not enough memory for this image"))
                continue
            del picture, item.picture
            _put(finished, _Finished(item.job, output, started), stop)
            del output
        _put(finished, _END, stop)
        writer.join()
        reader.join()
    except BaseException:
        stop.set()
        reader.thread.join()
        writer.thread.join()
        raise
    summary.seconds = time.perf_counter() - start
    return summary


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)
