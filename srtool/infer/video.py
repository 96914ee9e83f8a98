"""Video files: decode with PyAV, upscale every frame, encode, copy the other streams.

Frames stream through: a decoder thread demuxes the input and hands decoded RGB frames (and the
audio/subtitle packets that are copied as they are) to the calling thread through a small bounded
queue; the calling thread upscales each frame and encodes it at once. However long the video, at
most :data:`FRAMES_AHEAD` decoded frames wait, plus what the encoder itself buffers.

The output keeps the input's frame rate, time base and timestamps. Audio and subtitle streams
are remuxed without re-encoding; one the output container cannot hold is dropped with a notice.
The encode goes to a hidden temporary file beside the output (:func:`srtool.atomic.atomic_output`)
that is renamed at the end: an interrupted or failed encode leaves no partial output.

PyAV (``av``) is imported only when a video is processed.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srtool.atomic import atomic_output, remove_stale_temporaries
from srtool.errors import SrtoolError, UsageError, first_line

__all__ = [
    "VIDEO_CODECS",
    "VIDEO_SUFFIXES",
    "FRAMES_AHEAD",
    "VideoError",
    "VideoOptions",
    "VideoResult",
    "choose_encoder",
    "is_video",
    "upscale_video",
]

log = logging.getLogger("srtool")

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v"})
VIDEO_CODECS = ("h264", "h265", "av1", "vp9")
FRAMES_AHEAD = 4
"""Decoded frames (and copied packets) that may wait for the upscaler."""

# For each codec family: the codec's FFmpeg name (what containers list) and encoders to try.
_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "h264": ("h264", ("libx264", "libopenh264", "h264")),
    "h265": ("hevc", ("libx265", "hevc")),
    "av1": ("av1", ("libsvtav1", "libaom-av1", "librav1e", "av1")),
    "vp9": ("vp9", ("libvpx-vp9", "vp9")),
    "mpeg4": ("mpeg4", ("mpeg4",)),
}
_DEFAULT_ORDER = ("h264", "h265", "vp9", "av1", "mpeg4")
_LABELS = {"h264": "H.264", "h265": "H.265", "av1": "AV1", "vp9": "VP9", "mpeg4": "MPEG-4"}
# Constant-quality defaults: visually near-lossless for each encoder's scale.
_DEFAULT_CRF = {"h264": 18, "h265": 20, "av1": 30, "vp9": 30}
_MAX_CRF = {"h264": 51, "h265": 51, "av1": 63, "vp9": 63}
_CONTAINERS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
}
_POLL_SECONDS = 0.1


def is_video(path: str | Path) -> bool:
    """Whether ``path`` has a video suffix (``.mp4 .mkv .mov .webm .avi .m4v``)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class VideoError(SrtoolError):
    """This video cannot be upscaled (unreadable, no video stream, no fitting encoder...)."""


@dataclass(frozen=True)
class VideoOptions:
    """``--codec`` (None: H.264, or the first available encoder the container takes) and
    ``--crf`` (None: the codec's default in :data:`_DEFAULT_CRF`)."""

    codec: str | None = None
    crf: int | None = None

    def __post_init__(self) -> None:
        if self.codec is not None and self.codec not in VIDEO_CODECS:
            raise UsageError(
                f"unknown --codec '{self.codec}' (choose from {', '.join(VIDEO_CODECS)})"
            )
        if self.crf is not None:
            top = _MAX_CRF.get(self.codec or "h264", 63)
            if not 0 <= self.crf <= top:
                raise UsageError(f"--crf must be between 0 and {top}, got {self.crf}")


@dataclass
class VideoResult:
    frames: int
    width: int
    height: int
    encoder: str
    notices: list[str] = field(default_factory=list)


def _available(encoder: str) -> bool:
    import av

    try:
        av.codec.Codec(encoder, "w")
    except Exception:  # noqa: BLE001 - av raises UnknownCodecError, older versions ValueError
        return False
    return True


def choose_encoder(
    codec: str | None = None, container_codecs: set[str] | None = None
) -> tuple[str, str]:
    """``(family, encoder)``: the first encoder of ``codec`` (or, when None, of H.264, H.265,
    VP9, AV1, MPEG-4 in that order) that this PyAV build has and the container can hold.

    Raises :class:`UsageError` when an explicit ``codec`` has no encoder in this build, and
    :class:`VideoError` when the container takes none of the candidates.
    """
    families = (codec,) if codec is not None else _DEFAULT_ORDER
    built_in = False
    for family in families:
        name, encoders = _FAMILIES[family]
        for encoder in encoders:
            if not _available(encoder):
                continue
            built_in = True
            if container_codecs is None or name in container_codecs:
                return family, encoder
    if codec is not None and not built_in:
        raise UsageError(f"--codec {codec}: no {_LABELS[codec]} encoder in this PyAV build")
    wanted = _LABELS[codec] if codec else "any available codec"
    raise VideoError(f"this container cannot hold {wanted}")


def describe_encoder(options: VideoOptions) -> str:
    """What the videos of a run are encoded with, for a one-line notice."""
    family, encoder = choose_encoder(options.codec)
    crf = _crf(family, options)
    quality = f", crf {crf}" if crf is not None else ""
    return f"videos are encoded as {_LABELS[family]} with {encoder}{quality}"


def _crf(family: str, options: VideoOptions) -> int | None:
    if family not in _DEFAULT_CRF:
        return None
    return options.crf if options.crf is not None else _DEFAULT_CRF[family]


# ------------------------------------------------------------------ decoding in a thread

_END = object()


@dataclass
class _Frame:
    rgb: Any  # HxWx3 uint8
    pts: int | None


@dataclass
class _Packet:
    packet: Any
    index: int  # of the input stream


class _Decoder:
    """Demuxes ``container`` in a thread: decoded frames of ``video`` and the packets of
    ``copied`` streams go into a bounded queue, in file order, then ``_END`` (or the error)."""

    def __init__(self, container: Any, video: Any, copied: set[int]) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=FRAMES_AHEAD)
        self.stop = threading.Event()
        self._container, self._video, self._copied = container, video, copied
        self.thread = threading.Thread(target=self._run, name="srtool-video-decode", daemon=True)
        self.thread.start()

    def _put(self, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            copied = [s for s in self._container.streams if s.index in self._copied]
            streams = [self._video, *copied]
            for packet in self._container.demux(streams):
                if packet.stream.index == self._video.index:
                    for frame in packet.decode():
                        item = _Frame(frame.to_ndarray(format="rgb24"), frame.pts)
                        if not self._put(item):
                            return
                elif packet.dts is not None and packet.size:
                    if not self._put(_Packet(packet, packet.stream.index)):
                        return
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(exc)

    def items(self):  # noqa: ANN201 - a generator of _Frame / _Packet
        while True:
            try:
                item = self.queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    raise VideoError("decoding stopped unexpectedly") from None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2.0)


# ------------------------------------------------------------------ the whole file


def _even(size: int) -> int:
    return max(size - size % 2, 2)


def upscale_video(
    source: Path,
    target: Path,
    upscale_frame: Callable[[Any], Any],
    out_size: Callable[[int, int], tuple[int, int]],
    options: VideoOptions = VideoOptions(),
    *,
    max_pixels: int | None = None,
    on_frame: Callable[[int, int | None], None] | None = None,
    upscale_frames: Callable[[list[Any]], list[Any]] | None = None,
    frames_per_call: Callable[[int, int], int] | None = None,
) -> VideoResult:
    """Upscale the video ``source`` into ``target`` (written atomically).

    ``upscale_frame`` maps an HxWx3 uint8 RGB frame to its upscaled frame (uint8 RGB);
    ``out_size(height, width)`` is the size it returns, as (height, width). ``on_frame(done,
    total)`` follows the progress (``total`` None when the container does not say). Raises
    :class:`VideoError` for what is wrong with this file.

    ``upscale_frames`` (with ``frames_per_call(height, width)`` above 1) upscales several
    frames at once, the same result as ``upscale_frame`` on each: frames are then gathered in
    groups of that many (at most that many more decoded frames wait) and encoded in order.
    """
    import av
    import numpy as np

    try:
        container = av.open(str(source), "r")
    except av.FFmpegError as exc:
        why = getattr(exc, "strerror", None) or first_line(exc)
        raise VideoError(f"{source}: cannot read this video ({why})") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{source}: no video stream")
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        width, height = video.codec_context.width, video.codec_context.height
        if not width or not height:
            raise VideoError(f"{source}: the video stream has no frame size")
        if max_pixels is not None and width * height > max_pixels:
            raise VideoError(
                f"{source}: {width}x{height} frames exceed the limit of {max_pixels} pixels"
            )
        out_h, out_w = out_size(height, width)
        fmt = _CONTAINERS.get(target.suffix.lower())
        if fmt is None:
            known = ", ".join(sorted(VIDEO_SUFFIXES))
            raise VideoError(f"{target}: not a video file name ({known})")
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        per_call = 1
        if upscale_frames is not None and frames_per_call is not None:
            per_call = max(frames_per_call(height, width), 1)

        def upscale_group(frames: list[Any]) -> list[Any]:
            if len(frames) > 1 and upscale_frames is not None:
                return upscale_frames(frames)
            return [upscale_frame(frame) for frame in frames]

        with atomic_output(target) as temp:
            with av.open(str(temp), "w", format=fmt) as output:
                return _encode(
                    container,
                    video,
                    output,
                    source,
                    (out_h, out_w),
                    (upscale_group, per_call),
                    options,
                    on_frame,
                    np,
                )
    finally:
        container.close()


def _encode(  # noqa: PLR0913, PLR0915 - one straight pipeline
    container: Any,
    video: Any,
    output: Any,
    source: Path,
    size: tuple[int, int],
    upscaling: tuple[Callable[[list[Any]], list[Any]], int],
    options: VideoOptions,
    on_frame: Callable[[int, int | None], None] | None,
    np: Any,
) -> VideoResult:
    import av

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its settings to stderr, errors only
    family, encoder = choose_encoder(options.codec, set(output.supported_codecs))
    notices: list[str] = []
    out_h, out_w = size
    even_h, even_w = _even(out_h), _even(out_w)
    if (even_h, even_w) != (out_h, out_w):
        notices.append(
            f"{source.name}: output {out_w}x{out_h} cropped to {even_w}x{even_h} "
            "(the yuv420p encoders need even sizes)"
        )
    rate = video.average_rate or video.guessed_rate or video.base_rate or 25
    stream = output.add_stream(encoder, rate=rate)
    stream.width, stream.height = even_w, even_h
    stream.pix_fmt = "yuv420p"
    time_base = video.time_base or (1 / rate)
    stream.codec_context.time_base = time_base
    stream.time_base = time_base
    crf = _crf(family, options)
    if crf is not None:
        stream.options = {"crf": str(crf), **({"b": "0"} if family == "vp9" else {})}
    elif family == "mpeg4":
        stream.codec_context.qscale = 3  # constant quality (the default is a low bit rate)

    copied: dict[int, Any] = {}
    for other in container.streams:
        if other.index == video.index or other.type not in ("audio", "subtitle"):
            continue
        name = other.codec_context.name if other.codec_context else None
        if name not in output.supported_codecs:
            notices.append(
                f"{source.name}: {other.type} stream #{other.index} ({name}) dropped: "
                f"{output.format.name} cannot hold it"
            )
            continue
        try:
            copied[other.index] = output.add_stream_from_template(other)
        except Exception as exc:  # noqa: BLE001 - any refusal drops just this stream
            notices.append(
                f"{source.name}: {other.type} stream #{other.index} dropped ({first_line(exc)})"
            )
    for notice in notices:
        log.warning("%s", notice)

    total = video.frames or None
    frame_step = max(int(round(1 / (rate * time_base))), 1)
    decoder = _Decoder(container, video, set(copied))
    upscale_group, per_call = upscaling
    done, last_pts = 0, None
    pending: list[Any] = []  # decoded frames waiting for a full group
    stamps: list[int] = []

    def flush() -> None:
        nonlocal done
        outputs = upscale_group(pending)
        pending.clear()
        for pts, frame_out in zip(stamps, outputs):
            if frame_out.shape[:2] != (even_h, even_w):
                frame_out = np.ascontiguousarray(frame_out[:even_h, :even_w])
            frame = av.VideoFrame.from_ndarray(frame_out, format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            output.mux(stream.encode(frame))
            done += 1
            if on_frame is not None:
                on_frame(done, total)
        stamps.clear()

    try:
        for item in decoder.items():
            if isinstance(item, _Packet):
                item.packet.stream = copied[item.index]
                output.mux(item.packet)
                continue
            pts = item.pts
            if pts is None or (last_pts is not None and pts <= last_pts):
                pts = 0 if last_pts is None else last_pts + frame_step
            last_pts = pts
            pending.append(item.rgb)
            stamps.append(pts)
            del item
            if len(pending) >= per_call:
                flush()
        if pending:
            flush()
        output.mux(stream.encode(None))
    finally:
        decoder.close()
    if done == 0:
        raise VideoError(f"{source}: no frame could be decoded")
    return VideoResult(done, even_w, even_h, encoder, notices)
