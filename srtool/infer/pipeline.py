"""The batch pipeline: decode ahead, infer, encode behind, never losing a file.

Three stages overlap: a reader thread decodes the next images, the calling thread runs the
network (with several devices or CPU workers (:func:`cpu_worker_count`), one inference thread
each, each taking the next decoded image), and writer threads (:func:`encoder_count`: one per
two cores, at least one) encode and atomically write finished images, several files at once.
Bounded queues keep memory flat however many files there are. A file that fails (corrupt,
unreadable, unwritable, or any unexpected error while decoding or encoding it, a full disk
included) is reported and the batch goes on. A video file is streamed frame by frame by the
inference thread instead (:mod:`srtool.infer.video`: its own decoder thread, frames encoded as
they are upscaled).

The batch never hangs on a worker: should the reader or the writer thread die all the same, the
main thread notices at its next poll, reports every file not finished as failed and returns the
summary. Ctrl-C stops it at once: the file being written is finished (never left half-written),
a reader stuck in a slow read is left behind (it writes nothing), and :class:`BatchInterrupted`
carries the summary so far.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from srtool.atomic import remove_stale_temporaries
from srtool.errors import ImageReadError, SrtoolError, UsageError, first_line
from srtool.imageio import (
    ANIMATION_FORMATS,
    DEFAULT_MAX_PIXELS,
    Animation,
    AnimationReader,
    Picture,
    read_media,
    write_animation,
    write_image,
)
from srtool.infer.jobs import Job, input_problem
from srtool.infer.picture import (
    check_alpha_mode,
    check_outscale,
    upscale_animation,
    upscale_picture,
)
from srtool.infer.upscaler import Upscaler
from srtool.infer.video import VideoOptions, is_video

__all__ = [
    "BatchOptions",
    "FileResult",
    "BatchSummary",
    "BatchObserver",
    "NullObserver",
    "BatchInterrupted",
    "check_output_writable",
    "run_batch",
]

log = logging.getLogger("srtool")

_DECODE_AHEAD = 2
_ENCODE_BEHIND = 1  # finished images waiting for a free writer (each writer holds one more)
_MAX_ENCODERS = 8
CPU_WORKER_MIN_FILES = 8
"""Images a CPU batch needs before :func:`cpu_worker_count` splits the cores between two
workers (below it, the last file running alone on half the cores can cost more than the
split saves)."""
_POLL_SECONDS = 0.1
_ABANDON_SECONDS = 2.0  # how long a stopped batch waits for a reader still inside a read
# Errors of the write probe that mean nothing can be written to the output at all.
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR)


@dataclass(frozen=True)
class BatchOptions:
    outscale: float | None = None
    alpha_mode: str = "resize"
    quality: int | None = None
    skip_existing: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    tta: bool = False
    back_projection: int = 0
    video: VideoOptions = VideoOptions()  # --codec and --crf, for video files
    fit: tuple[int | None, int | None] | None = None  # --width/--height (replaces outscale)

    def __post_init__(self) -> None:
        # now, not at the first file: all may be skipped
        check_alpha_mode(self.alpha_mode)
        check_outscale(self.outscale)
        if self.fit is not None:
            if not any(self.fit):
                raise UsageError("--width/--height: give at least one of them")
            if any(side is not None and side < 1 for side in self.fit):
                raise UsageError("--width and --height must be at least 1")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise UsageError(f"--quality must be between 1 and 100, got {self.quality}")


@dataclass(frozen=True)
class FileResult:
    job: Job
    status: str  # "done" | "skipped" | "failed"
    reason: str = ""
    seconds: float = 0.0
    output_megapixels: float = 0.0
    frames: int = 0  # of a video
    encoder: str = ""  # of a video


@dataclass
class BatchSummary:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    not_processed: int = 0  # files an interrupted batch never reached
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (name, kind): not inputs

    @property
    def left_out_kinds(self) -> dict[str, list[str]]:
        """The files of the input that were not upscaled, by kind ("unsupported format .psd")."""
        kinds: dict[str, list[str]] = {}
        for name, kind in self.left_out:
            kinds.setdefault(kind, []).append(name)
        return kinds

    def _count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def done(self) -> int:
        return self._count("done")

    @property
    def skipped(self) -> int:
        return self._count("skipped") + len(self.left_out)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def output_megapixels(self) -> float:
        return sum(r.output_megapixels for r in self.results)

    @property
    def megapixels_per_second(self) -> float:
        return self.output_megapixels / self.seconds if self.seconds > 0 else 0.0


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, which the CLI turns into the same) stopped the batch; ``summary``
    holds what was finished before."""

    def __init__(self, summary: BatchSummary) -> None:
        super().__init__("interrupted")
        self.summary = summary


class BatchObserver(Protocol):
    """Receives progress; calls are serialised (never two at once)."""

    def batch_started(self, total: int) -> None: ...

    def file_started(self, job: Job, width: int, height: int) -> None: ...

    def tiles_done(self, done: int, total: int) -> None: ...

    def frames_done(self, done: int, total: int | None) -> None: ...

    def file_finished(self, result: FileResult) -> None: ...


class NullObserver:
    """An observer that ignores every event; a base for observers that need only some."""

    def batch_started(self, total: int) -> None:
        pass

    def file_started(self, job: Job, width: int, height: int) -> None:
        pass

    def tiles_done(self, done: int, total: int) -> None:
        pass

    def frames_done(self, done: int, total: int | None) -> None:
        pass

    def file_finished(self, result: FileResult) -> None:
        pass


@dataclass
class _Decoded:
    job: Job
    picture: Picture | AnimationReader | None = None  # an animation is decoded frame by frame
    result: FileResult | None = None  # set when the file is finished before inference
    video: bool = False  # a video file: decoded, upscaled and encoded as it streams


@dataclass
class _Finished:
    job: Job
    picture: Picture | Animation
    started: float


def encoder_count(cores: int | None = None) -> int:
    """Writer threads of a batch: one per two cores (the network keeps the others busy on a
    CPU run; on a GPU run encoding is the host's main work), at least 1, at most 8. Each holds
    one finished image, so memory stays bounded by ``encoders + 1`` outputs."""
    if cores is None:
        from srtool.infer.onnx_session import cpu_thread_count

        cores = cpu_thread_count()
    return max(1, min(_MAX_ENCODERS, cores // 2))


def cpu_worker_count(jobs: Sequence[Job], cores: int | None = None) -> int:
    """Inference workers for ``jobs`` on a CPU: 2 (each a session on half the cores, taking its
    own files) for a batch of at least ``CPU_WORKER_MIN_FILES`` images and no video on 2 or
    more cores, else 1 (one session on every core).

    One session spreads each layer of one image over all cores and waits at every layer for the
    slowest; with the encoder taking turns on the same cores, that wait grows. Two sessions on
    their own files never wait for each other: on 2 cores they gave 7-9 % more output MPix/s
    with efficient-x4 on folders of photos (README, performance). A video runs on one worker's
    cores, so a batch with one keeps a single worker.
    """
    if cores is None:
        from srtool.infer.onnx_session import cpu_thread_count

        cores = cpu_thread_count()
    runnable = [job for job in jobs if job.conflict is None]
    if cores < 2 or any(job.format == "video" for job in runnable):
        return 1
    return 2 if len(runnable) >= CPU_WORKER_MIN_FILES else 1


class _Stages:
    """Several threads running the same ``target``, seen as one stage: ``alive`` while all of
    them are (one dying stops the batch, as a single writer dying did), ``any_alive`` while one
    can still take work, ``error`` the first error."""

    def __init__(self, name: str, target, count: int) -> None:  # noqa: ANN001
        self.stages = [
            _Stage(f"{name}-{index}" if count > 1 else name, target) for index in range(count)
        ]

    @property
    def alive(self) -> bool:
        return all(stage.alive for stage in self.stages)

    @property
    def any_alive(self) -> bool:
        return any(stage.alive for stage in self.stages)

    @property
    def error(self) -> BaseException | None:
        return next((stage.error for stage in self.stages if stage.error is not None), None)

    def join(self) -> None:
        for stage in self.stages:
            stage.thread.join()


class _Stage:
    """A worker thread; an exception that ends it is kept in ``error`` for the caller."""

    def __init__(self, name: str, target) -> None:  # noqa: ANN001
        self.name = name
        self.error: BaseException | None = None

        def run() -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self.error = exc
                log.debug("thread %s stopped", name, exc_info=exc)

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    @property
    def any_alive(self) -> bool:  # one thread: the same as alive (see _Stages)
        return self.alive


_END = object()
_DEAD = object()


def _put(
    q: queue.Queue,
    item: object,
    stop: threading.Event,
    consumer: _Stage | _Stages | None = None,
) -> bool:
    """Hand ``item`` on; False when the batch stops or the ``consumer`` thread has died."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            if consumer is not None and not consumer.any_alive:
                return False
    return False


def _get(q: queue.Queue, stop: threading.Event, producer: _Stage | None = None) -> object | None:
    """The next item; None when the batch stops, ``_DEAD`` when the ``producer`` thread has died
    and left nothing more."""
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            if producer is not None and not producer.alive:
                try:
                    return q.get_nowait()  # what it handed on just before it ended
                except queue.Empty:
                    return _DEAD
    return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}" if str(exc) else type(exc).__name__


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    if isinstance(exc, SrtoolError):
        return str(exc)
    return _describe(exc)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def _nearest_existing(folder: Path) -> Path:
    while folder.parent != folder:
        try:
            if os.path.lexists(folder):
                break
        except OSError:
            break
        folder = folder.parent
    return folder


def _write_probe(folder: Path) -> OSError | None:
    """Create and remove a hidden file in ``folder``; the error when that is refused."""
    try:
        fd, name = tempfile.mkstemp(prefix=".srtool-probe-", dir=folder)
    except OSError as exc:
        return exc
    os.close(fd)
    try:
        os.unlink(name)
    except OSError:
        pass
    return None


def check_output_writable(jobs: list[Job], *, skip_existing: bool = False) -> None:
    """Fail fast, before any image is decoded, when none of the outputs can be written: each
    folder that would receive one (or the nearest folder that exists above it) is probed.

    Raises :class:`UsageError` when every probe is refused for lack of permission, a read-only
    file system or a file where a folder should be. Other errors (a full disk) are left to the
    files, which are then reported one by one.
    """
    folders: dict[Path, None] = {}
    for job in jobs:
        if job.conflict or (skip_existing and _exists(job.target)):
            continue
        folders.setdefault(_nearest_existing(job.target.parent))
    refused: tuple[Path, OSError] | None = None
    for folder in folders:
        error = _write_probe(folder)
        if error is None or error.errno not in _UNWRITABLE:
            return
        refused = refused or (folder, error)
    if refused is not None:
        folder, error = refused
        raise UsageError(
            f"cannot write to {folder} ({error.strerror or error}): no output can be written"
        )


def run_batch(
    jobs: list[Job],
    upscaler: Upscaler | Sequence[Upscaler],
    options: BatchOptions = BatchOptions(),
    observer: BatchObserver | None = None,
) -> BatchSummary:
    """Upscale every job's file; returns what happened to each (every job gets one result).

    ``upscaler`` may be a list, one per device (``--device cuda:0,1``): each runs in its own
    inference thread, taking the next decoded file from the shared reader, and hands its output
    to the shared writer; which device ran a file does not change its output file.

    Raises :class:`UsageError` before any work when no output can be written
    (:func:`check_output_writable`). Ctrl-C stops cleanly with :class:`BatchInterrupted`: files
    already written stay, the one being written is never left half-written.
    """
    upscalers = list(upscaler) if isinstance(upscaler, (list, tuple)) else [upscaler]
    if not upscalers:
        raise UsageError("run_batch needs at least one upscaler")
    check_output_writable(jobs, skip_existing=options.skip_existing)
    observer = observer or NullObserver()
    lock = threading.Lock()
    summary = BatchSummary()
    reported: set[int] = set()
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=_DECODE_AHEAD)
    finished: queue.Queue = queue.Queue(maxsize=_ENCODE_BEHIND)
    encoders = encoder_count()
    order = {id(job): index for index, job in enumerate(jobs)}

    def report(result: FileResult) -> None:
        with lock:
            summary.results.append(result)
            reported.add(id(result.job))
            observer.file_finished(result)
        if result.status == "failed":
            log.debug("%s failed: %s", result.job.name, result.reason)

    def read_one(job: Job) -> _Decoded:
        def failed(reason: str) -> _Decoded:
            return _Decoded(job, result=FileResult(job, "failed", reason))

        if job.conflict:
            return failed(job.conflict)
        try:
            if options.skip_existing and job.target.exists():
                remove_stale_temporaries(job.target)  # what a killed write of it left
                return _Decoded(job, result=FileResult(job, "skipped", "output exists"))
            problem = input_problem(job.source)  # (again: it may have changed since planning)
            if problem is not None:
                return failed(problem)
            if is_video(job.source):
                return _Decoded(job, video=True)
            media = read_media(job.source, max_pixels=options.max_pixels)
            if isinstance(media, AnimationReader) and job.format not in ANIMATION_FORMATS:
                return failed(
                    f"{job.source}: an animation ({media.frame_count} frames) cannot be written "
                    f"as {job.format.upper()}; use --format keep, gif, webp or png"
                )
            return _Decoded(job, picture=media)
        except ImageReadError as exc:
            return failed(str(exc))
        except MemoryError:
            return failed(f"{job.source}: not enough memory to read this file")
        except Exception as exc:  # noqa: BLE001 - whatever a decoder raises, it is this file's
            log.debug("reading %s failed", job.source, exc_info=True)
            return failed(f"{job.source}: cannot read ({_reason(exc)})")

    def read_all() -> None:
        for job in jobs:
            if stop.is_set():
                return
            if not _put(decoded, read_one(job), stop):
                return
        _put(decoded, _END, stop)

    def write_one(item: _Finished) -> FileResult:
        job, picture = item.job, item.picture
        try:
            job.target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(job.target)
            if isinstance(picture, Animation):
                write_animation(job.target, picture, format=job.format, quality=options.quality)
            else:
                write_image(job.target, picture, format=job.format, quality=options.quality)
        except MemoryError:
            return FileResult(job, "failed", f"{job.target}: not enough memory to encode it")
        except Exception as exc:  # noqa: BLE001 - e.g. libtiff's RuntimeError on a full disk
            log.debug("writing %s failed", job.target, exc_info=True)
            reason = _reason(exc)
            if not isinstance(exc, (OSError, SrtoolError)):
                reason = f"{job.target}: cannot write ({reason})"
            return FileResult(job, "failed", reason)
        return FileResult(
            job,
            "done",
            seconds=time.perf_counter() - item.started,
            output_megapixels=picture.megapixels,
        )

    def write_all() -> None:
        while True:
            item = _get(finished, stop)
            if item is None or item is _END:
                return
            assert isinstance(item, _Finished)
            report(write_one(item))
            del item

    # (done, total) tiles of the file each inference worker runs: one display adds them up
    tiles: dict[int, tuple[int, int]] = {}

    def tile_progress(worker: int) -> Callable[[int, int], None]:
        def on_tile(done: int, total: int) -> None:
            if stop.is_set():  # a worker thread of a stopped batch: end at this tile
                raise _Stopped
            with lock:
                tiles[worker] = (done, total)
                observer.tiles_done(
                    sum(d for d, _ in tiles.values()), sum(t for _, t in tiles.values())
                )

        return on_tile

    def infer_one(worker: int, upscaler: Upscaler, item: _Decoded) -> bool:
        """One decoded file through ``upscaler``, its output handed to the writer; False when
        the writer is gone or the batch stops."""
        if item.result is not None:
            report(item.result)
            return True
        if item.video:
            report(_run_video(item.job, upscaler, options, observer, lock, stop))
            return True
        picture = item.picture
        assert picture is not None
        with lock:
            observer.file_started(item.job, picture.width, picture.height)
        started = time.perf_counter()
        settings = dict(
            outscale=options.outscale,
            alpha_mode=options.alpha_mode,
            tta=options.tta,
            back_projection=options.back_projection,
            on_tile=tile_progress(worker),
            fit=options.fit,
        )
        try:
            output: Picture | Animation
            if isinstance(picture, AnimationReader):  # frame by frame, the same path
                output = upscale_animation(picture, upscaler, **settings)
            else:
                output = upscale_picture(picture, upscaler, **settings)
        except SrtoolError as exc:
            if isinstance(exc, UsageError):  # the model or the options, not this file
                raise
            report(FileResult(item.job, "failed", str(exc)))
            return True
        except MemoryError:
            report(FileResult(item.job, "failed", "not enough memory for this image"))
            return True
        finally:
            with lock:
                tiles.pop(worker, None)
        del picture, item.picture
        return _put(finished, _Finished(item.job, output, started), stop, writer)

    def infer_all(worker: int, upscaler: Upscaler) -> None:
        """Inference worker ``worker``: takes decoded files until the reader's end. With several
        workers, one that fails unexpectedly (a device gone bad) reports its file as failed and
        stops; the others go on with the rest. A usage error stops the whole batch."""
        while writer.alive:
            item = _get(decoded, stop, reader)
            if item is None or item is _DEAD:
                return
            if item is _END:
                _put(decoded, _END, stop)  # the end, again, for the other workers
                return
            assert isinstance(item, _Decoded)
            try:
                if not infer_one(worker, upscaler, item):
                    return
            except Exception as exc:
                if len(upscalers) == 1 or isinstance(exc, UsageError):
                    raise
                where = _device_label(upscaler)
                log.warning("inference on %s stopped: %s", where, _describe(exc))
                report(FileResult(item.job, "failed", f"{item.job.source}: {_describe(exc)}"))
                raise

    observer.batch_started(len(jobs))
    start = time.perf_counter()
    reader = _Stage("srtool-decode", read_all)
    writer = _Stages("srtool-encode", write_all, encoders)
    workers: list[_Stage] = []
    try:
        if len(upscalers) == 1:  # in the calling thread: Ctrl-C reaches the inference directly
            infer_all(0, upscalers[0])
        else:
            workers = [
                _Stage(f"srtool-infer-{i}", lambda i=i, up=up: infer_all(i, up))
                for i, up in enumerate(upscalers)
            ]
            _wait_for(workers)
        for _ in range(encoders):  # one end mark per writer
            _put(finished, _END, stop, writer)
        writer.join()
        stop.set()  # a reader still at work (the writer died) ends at its next hand-over
        reader.thread.join(_ABANDON_SECONDS)
    except BaseException as exc:
        stop.set()
        for worker in workers:  # each ends at its next tile or hand-over
            worker.thread.join()
        writer.join()  # each finishes the file it is writing: never a half-written one
        # A reader can be stuck in a read (a hung network share); it writes nothing: leave it.
        reader.thread.join(_ABANDON_SECONDS)
        summary.seconds = time.perf_counter() - start
        _job_order(summary, order)
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, BatchInterrupted):
            summary.interrupted = True
            summary.not_processed = sum(1 for job in jobs if id(job) not in reported)
            raise BatchInterrupted(summary) from None
        raise
    # Every job gets a result: those a dead worker never finished are failures, named here.
    why = _unfinished_reason(reader, writer, workers)
    for job in jobs:
        if id(job) not in reported:
            report(FileResult(job, "failed", why))
    summary.seconds = time.perf_counter() - start
    _job_order(summary, order)
    return summary


class _Stopped(KeyboardInterrupt):
    """Ends an inference worker thread of a batch that stops (Ctrl-C in the calling thread)."""


def _device_label(upscaler: Upscaler) -> str:
    model = getattr(upscaler, "model", None)
    device = getattr(model, "device", "?")
    return f"cuda:{model.device_index}" if device == "cuda" else str(device)


def _wait_for(workers: list[_Stage]) -> None:
    """Until every inference worker has ended; a usage error in one of them (the model or the
    options, not a file) is raised here, and stops the batch."""
    while True:
        for worker in workers:
            if isinstance(worker.error, UsageError):
                raise worker.error
        alive = [worker for worker in workers if worker.alive]
        if not alive:
            return
        alive[0].thread.join(_POLL_SECONDS)


def _job_order(summary: BatchSummary, order: dict[int, int]) -> None:
    """Results in the order of the jobs, whichever writer finished first."""
    summary.results.sort(key=lambda result: order.get(id(result.job), len(order)))


def _unfinished_reason(reader: _Stage, writer: _Stage | _Stages, workers: list[_Stage]) -> str:
    for stage, what in ((reader, "reading"), (writer, "writing")):
        if stage.error is not None:
            return f"not processed: {what} stopped ({_describe(stage.error)})"
    errors = [w.error for w in workers if w.error is not None]
    if errors and len(errors) == len(workers):  # every device failed
        return f"not processed: inference stopped ({_describe(errors[0])})"
    if reader.alive:
        return "not processed: reading did not finish"
    return "not processed"


def _run_video(
    job: Job,
    upscaler: Upscaler,
    options: BatchOptions,
    observer: BatchObserver,
    lock: threading.Lock,
    stop: threading.Event | None = None,
) -> FileResult:
    """One video file, streamed frame by frame (see :mod:`srtool.infer.video`); in a worker
    thread, a ``stop`` of the batch ends it at the next frame."""
    from srtool.infer.picture import output_size, resize_high_quality, size_plan
    from srtool.infer.video import upscale_video

    started = time.perf_counter()
    frames_done = getattr(observer, "frames_done", None)
    announced = False

    def begin(height: int, width: int) -> None:
        """Before each frame or group: end at a stop of the batch; announce the file once."""
        nonlocal announced
        if stop is not None and stop.is_set():
            raise _Stopped
        if not announced:
            with lock:
                observer.file_started(job, width, height)
            announced = True

    def plan(height: int, width: int) -> tuple[int, tuple[int, int]]:
        return size_plan(height, width, upscaler.scale, options.outscale, options.fit)

    def upscale_frame(rgb):  # noqa: ANN001, ANN202
        begin(*rgb.shape[:2])
        picture = upscale_picture(
            Picture(rgb),
            upscaler,
            outscale=options.outscale,
            tta=options.tta,
            back_projection=options.back_projection,
            fit=options.fit,
        )
        return picture.pixels

    def frames_per_call(height: int, width: int) -> int:
        """Several frames share session calls when one plain network pass makes them (no
        ensemble, no back-projection); else one at a time."""
        if options.tta or options.back_projection or plan(height, width)[0] != 1:
            return 1
        return upscaler.images_per_call(height, width)

    def upscale_frames(frames):  # noqa: ANN001, ANN202
        """Several frames of one size through one engine call per group: the same frames as
        ``upscale_frame`` gives one by one (one network pass, then the same resize)."""
        height, width = frames[0].shape[:2]
        begin(height, width)
        target = plan(height, width)[1]
        outputs = upscaler.render_many(frames, dtype=frames[0].dtype)
        return [resize_high_quality(out, target) for out in outputs]

    def on_frame(done: int, total: int | None) -> None:
        if frames_done is not None:
            with lock:
                frames_done(done, total)

    def out_size(height: int, width: int) -> tuple[int, int]:
        return output_size(height, width, upscaler.scale, options.outscale, options.fit)

    try:
        video = upscale_video(
            job.source,
            job.target,
            upscale_frame,
            out_size,
            options.video,
            max_pixels=options.max_pixels,
            on_frame=on_frame,
            upscale_frames=upscale_frames,
            frames_per_call=frames_per_call,
        )
    except UsageError:
        raise  # the model or the options, not this file
    except SrtoolError as exc:
        return FileResult(job, "failed", str(exc))
    except MemoryError:
        return FileResult(job, "failed", "not enough memory for this video")
    except Exception as exc:  # noqa: BLE001 - a decoder's, an encoder's or the disk's error
        log.debug("upscaling video %s failed", job.source, exc_info=True)
        return FileResult(job, "failed", f"{job.source}: {_reason(exc)}")
    return FileResult(
        job,
        "done",
        seconds=time.perf_counter() - started,
        output_megapixels=video.frames * video.width * video.height / 1e6,
        frames=video.frames,
        encoder=video.encoder,
    )
